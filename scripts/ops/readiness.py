"""`readiness`: would every agent still reach the beacons once client certificates are required?

Reads the beacons' IIS W3C logs from CloudWatch Logs (log group `logGroups.iis`, one stream per
beacon as the CloudWatch agent ships the files, one event per line), parses them with the
`#Fields:` line in force in each stream (scripts/ops/w3c.py), and aggregates while reading, page
by page: memory grows with the number of devices, not with the number of lines
(scripts/ops/readiness_model.py). Each device is judged as IIS will judge it under require, on every
request of it in the recent window (--recent, default 24h), against the stack's certificate
mappings (scripts/ops/readiness_rules.py, scripts/ops/mapping_judgment.py); requests without a
certificate are never merged into a certificate device by address or user agent: they are listed
per address (or per device the URL names), and any of them in the recent window makes the stack
not ready. The verdict and its reasons: scripts/ops/readiness_outcome.py; the report:
scripts/ops/readiness_report.py. Only requests to the agent paths count (default: the paths of the
outputs' beacons[].agentUrls, else /ManageSoftDL/ and /ManageSoftRL/): internet scanners probing
other paths of a public beacon are not devices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time
from itertools import compress, repeat
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from botocore.exceptions import ClientError


from components.require_gate import VERDICT_MAX_AGE

from . import w3c
from .aws import Aws, error_code
from .common import PROJECT, InputError, OpsError, iso, note, now_utc, parse_time
from .expected import expected_devices
from .readiness_model import AGENT_PATHS, Aggregator, HeaderLookup, Outcome
from .mapping_judgment import Rules
from .outputs import check_stack, resolve_stack
from .readiness_report import lines, payload, reading_notes
from .readiness_rules import RuleSet, check_issuer_cns, rule_set
from .verdict import record_verdict
from .log_window import Reading

__all__ = ["Reading", "check_issuer_cns", "command", "lines", "parse_recent", "parse_since", "payload", "read_pages", "reading_notes", "run"]

if TYPE_CHECKING:
    from .context import Context

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


def parse_recent(text: str) -> tuple[float, str]:
    """--recent: a duration (24h, 90m, 2d, 1w) -> (seconds, the text as given, trimmed)."""
    m = _DURATION.match(text or "")
    if not m:
        raise InputError(f"--recent: got {text!r}; expected a duration like 24h, 90m, 2d or 1w")
    seconds = float(m[1]) * _UNIT_SECONDS[m[2][0].lower()]
    if seconds <= 0 or seconds > MAX_DAYS * 86400:
        raise InputError(f"--recent: got {text!r}; expected a duration of more than 0 and at most {MAX_DAYS} days")
    return seconds, text.strip()


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


def _not_found(log_group: str, aws: Aws) -> OpsError:
    return OpsError(
        f"log group {log_group} not found in {aws.region}: the stack creates it with its IIS logging (logGroups.iis of the "
        "stack outputs); check --log-group, the region, or that the stack is deployed with the enforcement setting"
    )


Page = tuple[list[str], list[int], list[str]]  # a page's events as columns: stream, timestamp ms, message


def read_pages(aws: Aws, reading: Reading, progress: Progress) -> Iterator[Page]:
    """The events of the log group in the window, over all streams, a FilterLogEvents page
    (PAGE_LIMIT events) at a time, as columns. Per event only builtins looping in C: the digest of a
    page is one update over its events' text, the same bytes as event by event."""
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
        events = page.get("events") or []
        if events:
            columns = _columns(events)
            streams, stamps, messages = columns
            reading.events += len(messages)
            reading.digest.update("".join(map(_DIGESTED.format, streams, stamps, messages)).encode("utf-8", "surrogatepass"))
            newest = dict(zip(streams, stamps)) if stamps == sorted(stamps) else {s: max(compress(stamps, map(s.__eq__, streams))) for s in set(streams)}
            for stream, stamp in newest.items():
                if stamp > reading.stream_last.get(stream, -1):
                    reading.stream_last[stream] = stamp
            yield columns
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


_DIGESTED = "{}\0{}\0{}\n"  # an event in the digest: stream, timestamp ms, message


def _columns(events: list[dict[str, Any]]) -> Page:
    """A page's events as columns; a member botocore left out (absent in the answer) reads '' or 0."""
    streams = list(map(dict.get, events, repeat("logStreamName"), repeat("")))
    stamps = list(map(dict.get, events, repeat("timestamp"), repeat(0)))
    messages = list(map(dict.get, events, repeat("message"), repeat("")))
    if set(map(type, streams)) | set(map(type, messages)) != {str} or set(map(type, stamps)) != {int}:  # not as the service model says
        streams = [str(s or "") for s in streams]
        stamps = [int(t or 0) for t in stamps]
        messages = [str(m or "") for m in messages]
    return streams, stamps, messages


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
    recent_from: dt.datetime | None = None,
    rules: Rules | None = None,
    expected: Mapping[str, str] | None = None,
) -> tuple[Outcome, Reading]:
    reading = Reading(log_group, start, end)
    aggregator = Aggregator(paths, header_lookup(aws, reading), int((recent_from or start).timestamp()))
    for streams, stamps, messages in read_pages(aws, reading, progress):
        aggregator.feed_columns(streams, stamps, messages)
    progress(f"{reading.events:,} line(s) read from {log_group} in {reading.pages} page(s) ({reading.seconds:.1f} s)")
    return aggregator.finish(issuer_cns, beacon_names, rules, expected), reading


# ---------------------------------------------------------------------------------------------
# The verb (registered in cli.py)

HELP = ("would every agent still get in under require? each device judged from the IIS logs (enforcement observe) against the "
        "stack's mappings; exit 1 when inconclusive, or not ready at --min-ready")
_LOG_GROUP = re.compile(r"^[A-Za-z0-9_.\-/#]{1,512}$")


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Values are checked by `command` (one error line, exit 2), not by argparse (usage + error).
    p.add_argument("--stack", help="stack name: its stacks/Pulumi.<stack>.yaml gives the mappings, issuing CAs and region; log group "
                                   "/flexnet-beacon/<stack>/iis (default: from --stack-outputs)")
    p.add_argument("--since", default="7d", help="window: a duration (7d, 12h, 90m, 2w) or a UTC time (2026-05-25T00:00:00Z); default 7d")
    p.add_argument("--recent", default="24h", help="the recent window at the end of --since (default 24h): every request of a device in it "
                                                   "must carry a certificate IIS admits, and any request without one there makes the stack not ready")
    p.add_argument("--min-ready", metavar="PERCENT", help="exit 1 unless ready: the ready share reaches this (the stack's requireMinReadyPercent) "
                                                         "and nothing came without a certificate in the recent window; default: report only")
    p.add_argument("--min-devices", metavar="N", help="inconclusive (exit 1) when fewer than N devices were seen")
    p.add_argument("--pki", metavar="DIR", help="scripts.pki CA directory: the devices issued a client certificate; those not seen are listed as unseen")
    p.add_argument("--log-group", metavar="NAME", help="IIS log group (default: logGroups.iis of the outputs, else /flexnet-beacon/<stack>/iis)")
    p.add_argument("--issuer-cn", action="append", metavar="CN", help="CN of a configured issuing CA (repeatable; default: mtls.issuerRules of "
                                                                       "the outputs, else the stack file's issuing CAs)")
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


def _paths(ctx: "Context") -> list[str]:
    if ctx.args.all_paths:
        return []
    urls: list[str] = []
    for beacon in ctx.outputs.optional("beacons") or []:
        found = beacon.get("agentUrls") if isinstance(beacon, dict) else None
        if isinstance(found, dict):
            urls += [u for u in found.values() if isinstance(u, str)]
    return agent_paths(urls) or list(AGENT_PATHS)


def silent_beacons(beacon_names: Mapping[str, str], reading: Reading, recent_from: dt.datetime) -> list[tuple[str, str]]:
    """Inconclusive reasons for the beacons of the outputs whose stream sent nothing in the recent
    window: their agents' requests would be missing from the verdict (log shipping stopped)."""
    since = int(recent_from.timestamp() * 1000)
    return [
        ("silent-beacon", f"beacon {name} ({instance}) sent no IIS log line since {iso(recent_from)}: its log shipping may have stopped, and its devices are not in this verdict")
        for instance, name in sorted(beacon_names.items())
        if reading.stream_last.get(instance, -1) < since
    ]


def _beacon_names(ctx: "Context") -> dict[str, str]:
    names: dict[str, str] = {}
    for beacon in ctx.outputs.optional("beacons") or []:
        if isinstance(beacon, dict) and isinstance(beacon.get("instanceId"), str) and isinstance(beacon.get("name"), str):
            names[beacon["instanceId"]] = beacon["name"]
    return names


def _aws(ctx: "Context", found: RuleSet) -> Aws:
    """The session: the outputs' region when they give one, else the stack file's (aws:region)."""
    if ctx.outputs.region()[0] is None and found.region:
        ctx.use_region(found.region, found.region_source)
    return ctx.aws


def command(ctx: "Context") -> int:
    args, outputs = ctx.args, ctx.outputs
    now = now_utc()
    start = parse_since(args.since, now)
    recent_seconds, recent = parse_recent(args.recent)
    recent_from = max(start, now - dt.timedelta(seconds=recent_seconds))
    min_ready = parse_percent(args.min_ready, "--min-ready")
    min_devices = parse_count(args.min_devices, "--min-devices")
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
    found = rule_set(args.issuer_cn, outputs, stack, bool(args.stack))
    notes += found.notes
    paths = _paths(ctx)
    expected = expected_devices(args.pki, now) if args.pki else None
    aws = _aws(ctx, found)
    beacon_names = _beacon_names(ctx)
    outcome, reading = run(aws, log_group, start, now, found.issuer_cns, paths, beacon_names, recent_from=recent_from,
                           rules=found.rules, expected=expected.devices if expected else None)
    judgement = outcome.judgement(min_ready, min_devices, silent_beacons(beacon_names, reading, recent_from))
    notes += reading_notes(outcome, reading)
    body = payload(outcome, reading, judgement, region=aws.region, min_ready=min_ready, min_devices=min_devices, issuer_source=found.issuer_source,
                   paths=paths, notes=notes, recent=recent, expected=expected)
    text = lines(outcome, reading, judgement, min_ready=min_ready, top=top, notes=notes, recent=recent)
    if args.record:
        name, recorded = record_verdict(aws, stack, outcome, reading, min_ready, now, judgement, found.rules_digest)
        body["recorded"] = {"parameter": name, "verdict": recorded}
        text.append(f"recorded in {name}: {'passed' if recorded['passed'] else 'not passed'} at --min-ready {min_ready:g} (pulumi up accepts it until {iso(now + VERDICT_MAX_AGE)})")
    ctx.emit(body, text)
    if judgement.state == "inconclusive":
        return 1
    return 1 if min_ready is not None and not judgement.passed else 0
