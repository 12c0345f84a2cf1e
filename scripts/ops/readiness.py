"""`readiness`: which agents would still reach the beacons once client certificates are required.

Reads the beacons' IIS W3C logs from CloudWatch Logs (log group `logGroups.iis`, one stream per
beacon as the CloudWatch agent ships the files, one event per line), parses them with the
`#Fields:` line in force in each stream (scripts/ops/w3c.py), and aggregates per device while
reading, page by page: memory grows with the number of devices, not with the number of lines.

A device is the subject CN of the client certificate it presented; a request without one is
counted under its client address + user agent. An address + user agent whose requests without a
certificate all came before a certificate was presented from the same address + user agent is
the same device before and after its certificate arrived: its requests join that device.

Each device is judged on its most recent request:
  failing         the request was refused (401.x or 403.x: revoked, expired, untrusted ...)
  no-certificate  no client certificate presented
  other-issuer    a certificate whose issuer CN is not a configured issuing CA (mtls.issuerRules,
                  or --issuer-cn), or that the server does not recognise (CERT_FLAGS bit 1)
  ready           a certificate from a configured issuing CA, and the request was not refused
Ready share = ready / devices. Only requests to the agent paths count (default: the paths of
the outputs' beacons[].agentUrls, else /ManageSoftDL/ and /ManageSoftRL/): internet scanners
probing other paths of a public beacon are not devices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from botocore.exceptions import ClientError


from . import w3c
from .fleet import AGENT_PATHS, CERT_FIELDS, Aggregator, HeaderLookup, Outcome, epoch_iso, refused
from .aws import Aws, error_code
from .common import PROJECT, InputError, OpsError, iso, note, now_utc, parse_time, table
from .outputs import check_stack, resolve_stack
from components.require_gate import VERDICT_MAX_AGE
from .verdict import record_verdict

if TYPE_CHECKING:
    from .cli import Context

PAGE_LIMIT = 10_000  # events per FilterLogEvents page (the API's maximum)
PROGRESS_SECONDS = 5.0  # at most one progress line per this many seconds
# ---------------------------------------------------------------------------------------------
# Input checks (one line each, exit 2)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DAYS = 3653  # CloudWatch Logs keeps at most ten years


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """'7d', '12h', '90m', '2w' before now, or an ISO 8601 date/time (UTC unless it says)."""
    value = (text or "").strip()
    m = _DURATION.match(value)
    if m:
        seconds = float(m[1]) * _UNIT_SECONDS[m[2][0].lower()]
        if seconds <= 0 or seconds > MAX_DAYS * 86400:
            raise InputError(f"--since: got {text!r}; expected a duration of more than 0 and at most {MAX_DAYS} days")
        return now - dt.timedelta(seconds=seconds)
    moment = parse_time(value)
    if moment is None:
        raise InputError(f"--since: got {text!r}; expected a duration like 7d, 12h, 90m, 2w or a UTC time like 2026-05-25T00:00:00Z")
    if moment >= now:
        raise InputError(f"--since: {iso(moment)} is not in the past")
    if now - moment > dt.timedelta(days=MAX_DAYS):
        raise InputError(f"--since: {iso(moment)} is more than {MAX_DAYS} days ago")
    return moment


def parse_percent(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise InputError(f"{flag}: got {text!r}; expected a percentage from 0 to 100 (e.g. 95)") from None
    if not 0 <= value <= 100:
        raise InputError(f"{flag}: got {text!r}; expected a percentage from 0 to 100 (e.g. 95)")
    return value


def parse_count(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit():
        raise InputError(f"{flag}: got {text!r}; expected a whole number (0 or more)")
    return int(text)


def check_issuer_cns(values: Sequence[str], source: str) -> list[str]:
    found: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 for c in value):
            raise InputError(f"{source}: got {value!r}; expected the CN of an issuing CA, e.g. 'Example Devices CA'")
        if value.strip() not in found:
            found.append(value.strip())
    if not found:
        raise InputError(f"{source} is empty: no issuing CA to compare the device certificates' issuers with")
    return found


def agent_paths(agent_urls: Iterable[str]) -> list[str]:
    """Path prefixes of the agents' URLs (https://host/ManageSoftDL/ -> /ManageSoftDL/)."""
    found: list[str] = []
    for url in agent_urls:
        m = re.match(r"^[a-z]+://[^/]+(/[^?#]*)", url or "", re.IGNORECASE)
        path = m[1] if m else ""
        if path and path != "/" and path not in found:
            found.append(path)
    return found


# ---------------------------------------------------------------------------------------------
# CloudWatch Logs


Progress = Callable[[str], None]


@dataclass
class Reading:
    log_group: str
    start: dt.datetime
    end: dt.datetime
    pages: int = 0
    events: int = 0
    seconds: float = 0.0
    lookups: int = 0
    # SHA-256 over every event read (stream, time, message): what a recorded verdict was judged on.
    digest: Any = field(default_factory=hashlib.sha256)


def _not_found(log_group: str, aws: Aws) -> OpsError:
    return OpsError(
        f"log group {log_group} not found in {aws.region}: the stack creates it with its IIS logging (logGroups.iis of the "
        "stack outputs); check --log-group, the region, or that the stack is deployed with the enforcement setting"
    )


def read_events(aws: Aws, reading: Reading, progress: Progress) -> Iterator[tuple[str, int, str]]:
    """(stream, timestamp ms, message) of every event of the log group in the window, over all
    streams, page by page (FilterLogEvents, PAGE_LIMIT events a page)."""
    logs = aws.client("logs")
    token: str | None = None
    started = time.monotonic()
    shown = started
    request: dict[str, Any] = {
        "logGroupName": reading.log_group,
        "startTime": int(reading.start.timestamp() * 1000),
        "endTime": int(reading.end.timestamp() * 1000),
        "limit": PAGE_LIMIT,
    }
    while True:
        try:
            page = logs.filter_log_events(**request, **({"nextToken": token} if token else {}))
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise _not_found(reading.log_group, aws) from None
            raise
        reading.pages += 1
        for event in page.get("events") or []:
            reading.events += 1
            stream, stamp, message = str(event.get("logStreamName") or ""), int(event.get("timestamp") or 0), str(event.get("message") or "")
            reading.digest.update(f"{stream}\0{stamp}\0{message}\n".encode("utf-8", "surrogatepass"))
            yield stream, stamp, message
        previous, token = token, page.get("nextToken")
        now = time.monotonic()
        reading.seconds = now - started
        if token and token == previous:
            raise OpsError(f"FilterLogEvents on {reading.log_group} answered the same nextToken twice after {reading.events:,} line(s): stopped, the report would be incomplete; run it again")
        if token and now - shown >= PROGRESS_SECONDS:
            progress(f"{reading.events:,} line(s) read from {reading.log_group} in {reading.pages} page(s) ({reading.seconds:.0f} s)")
            shown = now
        if not token:
            return


HEADER_LOOKBACK_DAYS = (1, 32)  # IIS starts a new file (and header) daily by default; monthly at most


def header_lookup(aws: Aws, reading: Reading) -> HeaderLookup:
    """The newest `#Fields:` line of a stream at or before a time (a window starting inside a log
    file has the file's header before it): the last day first, then the last 32 days."""
    logs = aws.client("logs")

    def search(stream: str, start_ms: int, end_ms: int) -> str | None:
        token: str | None = None
        newest: tuple[int, str] | None = None
        request: dict[str, Any] = {
            "logGroupName": reading.log_group,
            "logStreamNames": [stream],
            "startTime": max(start_ms, 0),
            "endTime": end_ms,
            "filterPattern": '"#Fields:"',
            "limit": PAGE_LIMIT,
        }
        while True:
            try:
                page = logs.filter_log_events(**request, **({"nextToken": token} if token else {}))
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return None
                raise
            for event in page.get("events") or []:
                stamp = int(event.get("timestamp") or 0)
                for line in str(event.get("message") or "").split("\n"):
                    found = w3c.directive(line.rstrip("\r"))
                    if found and found[0].lower() == "fields" and (newest is None or stamp >= newest[0]):
                        newest = (stamp, line.rstrip("\r"))
            previous, token = token, page.get("nextToken")
            if not token or token == previous:
                return newest[1] if newest else None

    def lookup(stream: str, before_ms: int) -> str | None:
        for days in HEADER_LOOKBACK_DAYS:
            reading.lookups += 1
            found = search(stream, before_ms - days * 86_400_000, before_ms)
            if found:
                return found
        return None

    return lookup


def run(
    aws: Aws,
    log_group: str,
    start: dt.datetime,
    end: dt.datetime,
    issuer_cns: Sequence[str],
    paths: Sequence[str],
    beacon_names: Mapping[str, str] | None = None,
    progress: Progress = note,
) -> tuple[Outcome, Reading]:
    reading = Reading(log_group, start, end)
    aggregator = Aggregator(paths, header_lookup(aws, reading))
    aggregator.feed(read_events(aws, reading, progress))
    progress(f"{reading.events:,} line(s) read from {log_group} in {reading.pages} page(s) ({reading.seconds:.1f} s)")
    return aggregator.finish(issuer_cns, beacon_names), reading


# ---------------------------------------------------------------------------------------------
# Output


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 2] + ".."


def payload(outcome: Outcome, reading: Reading, *, region: str, min_ready: float | None, issuer_source: str, paths: Sequence[str], notes: Sequence[str]) -> dict[str, Any]:
    agg = outcome.aggregator
    return {
        "ok": not outcome.below(min_ready),
        "logGroup": reading.log_group,
        "region": region,
        "since": iso(reading.start),
        "until": iso(reading.end),
        "minReadyPercent": min_ready,
        "readyPercent": round(outcome.ready_percent, 2),
        "issuerCNs": outcome.issuer_cns,
        "issuerCNsFrom": issuer_source,
        "agentPaths": list(paths) or None,
        "totals": {
            "devices": len(outcome.devices),
            "ready": outcome.totals["ready"],
            "otherIssuer": outcome.totals["other-issuer"],
            "noCertificate": outcome.totals["no-certificate"],
            "failing": outcome.totals["failing"],
        },
        "statuses": outcome.status_rows(),
        "read": {
            "pages": reading.pages,
            "events": reading.events,
            "lines": agg.lines,
            "requests": agg.requests,
            "directives": agg.directives,
            "fieldsHeaders": agg.headers,
            "fieldsHeadersFromBeforeTheWindow": agg.headers_looked_up,
            "headerLookups": reading.lookups,
            "ignoredOtherPaths": agg.ignored_paths,
            "withoutCertificateFields": agg.without_cert_fields,
            "addressesMergedIntoCertificateDevices": outcome.superseded,
            "seconds": round(reading.seconds, 2),
        },
        "malformed": {"count": agg.malformed, "examples": agg.malformed_examples},
        "notes": list(notes),
        "devices": [d.to_dict() for d in outcome.devices],
    }


def _statuses_text(statuses: Mapping[str, int]) -> str:
    ordered = sorted(statuses.items(), key=lambda item: (not refused(item[0]), -item[1], item[0]))
    return ", ".join(f"{status} x{count}" for status, count in ordered)


def lines(outcome: Outcome, reading: Reading, *, min_ready: float | None, top: int | None, notes: Sequence[str]) -> list[str]:
    agg = outcome.aggregator
    out = [f"readiness: {reading.log_group}, {iso(reading.start)} to {iso(reading.end)}; configured issuing CAs: {', '.join(outcome.issuer_cns)}"]
    shown = outcome.devices if top is None else outcome.devices[:top]
    rows = []
    for d in shown:
        if d.subject:
            issuer = d.issuer_cn or d.issuer or "-"
            if d.issuer_configured is False:
                issuer += " (not configured)"
            if d.issuer_recognised is False:
                issuer += " (unrecognised by IIS)"
        else:
            issuer = "-"
        state = d.state if d.state == "ready" else d.state.upper()
        rows.append((state, _cut(d.identity, 60), d.requests, epoch_iso(d.first), epoch_iso(d.last), d.last_status, issuer, d.serial or "-", _statuses_text(d.statuses)))
    out.append("")
    out += table(("STATE", "DEVICE", "REQUESTS", "FIRST SEEN", "LAST SEEN", "LAST", "ISSUER", "SERIAL", "STATUSES"), rows)
    if len(shown) < len(outcome.devices):
        out.append(f"... {len(outcome.devices) - len(shown)} more device(s) (all in --json)")
    status_rows = outcome.status_rows()
    if status_rows:
        out.append("")
        out += table(("STATUS", "REQUESTS", "DEVICES", "MEANING"), [(r["status"], r["requests"], r["devices"], r["meaning"]) for r in status_rows])
    out.append("")
    read = f"{agg.lines:,} line(s) in {reading.pages} page(s): {agg.requests:,} request(s), {agg.directives:,} directive line(s)"
    if agg.ignored_paths:
        read += f", {agg.ignored_paths:,} to other paths (not agents) ignored"
    out.append(read + f", {agg.malformed:,} malformed")
    for example in agg.malformed_examples:
        out.append(f"  malformed ({example['stream']}): {example['reason']}: {_cut(example['line'], 160)}")
    for text in notes:
        out.append(f"note: {text}")
    t = outcome.totals
    count = len(outcome.devices)
    out.append(
        f"{count} device(s): {t['ready']} ready ({outcome.ready_percent:.1f}%), {t['other-issuer']} with a certificate from another issuer, "
        f"{t['no-certificate']} without a certificate, {t['failing']} failing (401/403)"
    )
    if min_ready is None:
        out.append(f"ready share {outcome.ready_percent:.1f}% (no --min-ready given)")
    elif outcome.below(min_ready):
        out.append(f"FAIL: ready share {outcome.ready_percent:.1f}% is below --min-ready {min_ready:g}%: keep enforcement at observe")
    else:
        out.append(f"ok: ready share {outcome.ready_percent:.1f}% reaches --min-ready {min_ready:g}%")
    return out


def reading_notes(outcome: Outcome, reading: Reading) -> list[str]:
    agg = outcome.aggregator
    found: list[str] = []
    if not reading.events:
        found.append(f"no log events in {reading.log_group} in the window: is the CloudWatch agent shipping the IIS logs of the beacons?")
    elif not outcome.devices:
        found.append("no agent requests in the window (only other paths, directives or malformed lines)")
    if agg.without_cert_fields:
        found.append(
            f"{agg.without_cert_fields:,} request(s) logged without the {', '.join(CERT_FIELDS)} fields (IIS logging not yet set up by "
            "enforcement observe): counted as without a certificate"
        )
    if agg.prefixes and any(f.position("cs-uri-stem") < 0 for f in agg.fields_seen):
        found.append("a #Fields: line without cs-uri-stem: the requests under it were counted whatever their path")
    unrecognised = [d.identity for d in outcome.devices if d.issuer_configured and d.issuer_recognised is False]
    if unrecognised:
        found.append(
            f"{len(unrecognised)} device(s) present a certificate whose issuer CN is a configured CA but IIS does not recognise the "
            f"issuer (CERT_FLAGS bit 1), e.g. {unrecognised[0]}: is that CA in the beacons' trust stores (verify), or is it another CA with the same name?"
        )
    if agg.headers_looked_up:
        found.append(f"{agg.headers_looked_up} stream(s) began inside a log file: their #Fields: line was read from before the window")
    if outcome.superseded:
        found.append(
            f"{outcome.superseded} client address + user agent pair(s) sent requests without a certificate only before a certificate "
            "came from the same address + user agent: counted as that certificate's device"
        )
    return found


# ---------------------------------------------------------------------------------------------
# The verb (registered in cli.py)

HELP = "share of agents presenting a certificate the beacons accept, from the IIS logs (enforcement observe); exit 1 below --min-ready"
_LOG_GROUP = re.compile(r"^[A-Za-z0-9_.\-/#]{1,512}$")


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Values are checked by `command` (one error line, exit 2), not by argparse (usage + error).
    p.add_argument("--stack", help="stack name: log group /flexnet-beacon/<stack>/iis (default: from --stack-outputs)")
    p.add_argument("--since", default="7d", help="window: a duration (7d, 12h, 90m, 2w) or a UTC time (2026-05-25T00:00:00Z); default 7d")
    p.add_argument("--min-ready", metavar="PERCENT", help="exit 1 when the ready share is below this (the stack's requireMinReadyPercent); default: report only")
    p.add_argument("--log-group", metavar="NAME", help="IIS log group (default: logGroups.iis of the outputs, else /flexnet-beacon/<stack>/iis)")
    p.add_argument("--issuer-cn", action="append", metavar="CN", help="CN of a configured issuing CA (repeatable; default: mtls.issuerRules of the outputs)")
    p.add_argument("--all-paths", action="store_true", help="count requests to every path, not only the agents' (/ManageSoftDL/, /ManageSoftRL/)")
    p.add_argument("--top", metavar="N", help="show only the first N devices of the table (all in --json)")
    p.add_argument("--record", action="store_true",
                   help="keep this verdict (with --min-ready) in the stack's SSM parameter /flexnet-beacon/<stack>/readiness-verdict, which "
                        "pulumi up reads before it switches a deployed observe stack to require (valid 24 h)")


def _log_group(ctx: "Context", stack: str | None, notes: list[str]) -> str:
    args, outputs = ctx.args, ctx.outputs
    if args.log_group:
        if not _LOG_GROUP.match(args.log_group):
            raise InputError(f"--log-group: got {args.log_group!r}; expected a CloudWatch Logs group name like /flexnet-beacon/dev/iis")
        return args.log_group
    given = outputs.optional("logGroups.iis")
    if isinstance(given, str) and _LOG_GROUP.match(given):
        return given
    if given is not None:
        raise InputError(f"stack outputs {outputs.source}: logGroups.iis is {given!r}; expected a log group name")
    if stack:
        name = f"/{PROJECT}/{stack}/iis"
        if outputs.given:
            notes.append(f"stack outputs {outputs.source} have no logGroups.iis (outputs from before the IIS logs were shipped?): reading {name}")
        return name
    raise InputError("readiness needs the IIS log group: pass --stack-outputs FILE (logGroups.iis), --stack NAME or --log-group NAME")


def _issuers(ctx: "Context") -> tuple[list[str], str]:
    args, outputs = ctx.args, ctx.outputs
    if args.issuer_cn:
        return check_issuer_cns(args.issuer_cn, "--issuer-cn"), "--issuer-cn"
    rules = outputs.optional("mtls.issuerRules")
    if rules is None:
        if outputs.given:
            raise InputError(
                f"stack outputs {outputs.source}: missing mtls.issuerRules (the configured issuing CAs); regenerate the file with "
                "`pulumi stack output --json` after `pulumi up`, or pass --issuer-cn CN"
            )
        raise InputError("readiness needs the configured issuing CAs: pass --stack-outputs FILE (mtls.issuerRules) or --issuer-cn CN (repeatable)")
    if not isinstance(rules, list):
        raise InputError(f"stack outputs {outputs.source}: mtls.issuerRules is {rules!r}; expected a list of CNs")
    return check_issuer_cns(rules, f"stack outputs {outputs.source}: mtls.issuerRules"), f"mtls.issuerRules of {outputs.source}"


def _paths(ctx: "Context") -> list[str]:
    if ctx.args.all_paths:
        return []
    urls: list[str] = []
    for beacon in ctx.outputs.optional("beacons") or []:
        found = beacon.get("agentUrls") if isinstance(beacon, dict) else None
        if isinstance(found, dict):
            urls += [u for u in found.values() if isinstance(u, str)]
    return agent_paths(urls) or list(AGENT_PATHS)


def _beacon_names(ctx: "Context") -> dict[str, str]:
    names: dict[str, str] = {}
    for beacon in ctx.outputs.optional("beacons") or []:
        if isinstance(beacon, dict) and isinstance(beacon.get("instanceId"), str) and isinstance(beacon.get("name"), str):
            names[beacon["instanceId"]] = beacon["name"]
    return names


def command(ctx: "Context") -> int:
    args, outputs = ctx.args, ctx.outputs
    now = now_utc()
    start = parse_since(args.since, now)
    min_ready = parse_percent(args.min_ready, "--min-ready")
    top = parse_count(args.top, "--top")
    stack = args.stack
    if stack:
        check_stack(stack)
        if outputs.given:
            resolve_stack(stack, outputs, "readiness")
    stack = stack or outputs.stack_name()
    if args.record and (min_ready is None or not stack):  # before any log is read
        raise InputError("--record: got " + ("no --min-ready" if min_ready is None else "no stack") +
                         "; expected --min-ready (the stack's requireMinReadyPercent) and --stack (or --stack-outputs)")
    notes: list[str] = []
    log_group = _log_group(ctx, stack, notes)
    issuer_cns, issuer_source = _issuers(ctx)
    paths = _paths(ctx)
    aws = ctx.aws
    outcome, reading = run(aws, log_group, start, now, issuer_cns, paths, _beacon_names(ctx))
    notes += reading_notes(outcome, reading)
    body = payload(outcome, reading, region=aws.region, min_ready=min_ready, issuer_source=issuer_source, paths=paths, notes=notes)
    text = lines(outcome, reading, min_ready=min_ready, top=top, notes=notes)
    if args.record:
        name, recorded = record_verdict(aws, stack, outcome, reading, min_ready, now)
        body["recorded"] = {"parameter": name, "verdict": recorded}
        text.append(f"recorded in {name}: {'passed' if recorded['passed'] else 'not passed'} at --min-ready {min_ready:g} (pulumi up accepts it until {iso(now + VERDICT_MAX_AGE)})")
    ctx.emit(body, text)
    return 1 if outcome.below(min_ready) else 0

