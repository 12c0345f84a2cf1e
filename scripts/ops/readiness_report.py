"""How `readiness` shows its verdict: the text report (a device table, a status table, what was
read, notes, the verdict with its reasons) and the same as one JSON document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .common import iso, table
from .expected import Expected
from .readiness_model import CERT_FIELDS, Outcome, epoch_iso, refused
from .readiness_outcome import DeviceResult, Judgement

if TYPE_CHECKING:
    from .log_window import Reading


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 2] + ".."


def _statuses_text(statuses: Mapping[str, int]) -> str:
    ordered = sorted(statuses.items(), key=lambda item: (not refused(item[0]), -item[1], item[0]))
    return ", ".join(f"{status} x{count}" for status, count in ordered)


def _device(d: DeviceResult) -> str:
    return {"address": f"{d.identity} (address)", "name": f"{d.identity} (named in the URL)"}.get(d.kind, d.identity)


def _issuer(d: DeviceResult) -> str:
    if not d.subject:
        return "-"
    issuer = d.issuer_cn or d.issuer or "-"
    if d.issuer_configured is False:
        issuer += " (not configured)"
    if d.issuer_recognised is False:
        issuer += " (unrecognised by IIS)"
    return issuer


def totals(outcome: Outcome) -> dict[str, int]:
    t = outcome.totals
    return {
        "devices": len(outcome.counted),
        "ready": t["ready"],
        "refusedByRule": t["refused-by-rule"],
        "otherIssuer": t["other-issuer"],
        "noCertificate": t["no-certificate"],
        "failing": t["failing"],
        "earlierWithoutCertificate": t["earlier-no-certificate"],
        "unseen": t["unseen"],
        "requestsWithoutCertificateRecent": outcome.without_certificate_recent,
    }


def payload(
    outcome: Outcome, reading: "Reading", judgement: Judgement, *, region: str, min_ready: float | None, min_devices: int | None,
    issuer_source: str, paths: Sequence[str], notes: Sequence[str], recent: str, expected: Expected | None = None,
) -> dict[str, Any]:
    agg = outcome.aggregator
    return {
        "ok": judgement.passed,
        "verdict": judgement.state,
        "reasons": [{"kind": kind, "code": code, "text": text} for kind, code, text in judgement.reasons],
        "logGroup": reading.log_group,
        "region": region,
        "since": iso(reading.start),
        "until": iso(reading.end),
        "recentWindow": recent,
        "recentSince": epoch_iso(agg.recent_from),
        "minReadyPercent": min_ready,
        "minDevices": min_devices,
        "readyPercent": round(outcome.ready_percent, 2),
        "issuerCNs": outcome.issuer_cns,
        "issuerCNsFrom": issuer_source,
        "mappings": [m.to_dict() for m in outcome.rules.mappings] if outcome.rules.one_to_one is None else None,
        "mappingsFrom": outcome.rules.source,
        "agentPaths": list(paths) or None,
        "expected": expected.to_dict() if expected is not None else None,
        "totals": totals(outcome),
        "statuses": outcome.status_rows(),
        "read": {
            "pages": reading.pages,
            "events": reading.events,
            "lines": agg.lines,
            "requests": agg.requests,
            "recentRequests": agg.recent_requests,
            "directives": agg.directives,
            "fieldsHeaders": agg.headers,
            "fieldsHeadersFromBeforeTheWindow": agg.headers_looked_up,
            "streamsWithoutFieldsLine": dict(sorted(agg.headerless.items())),
            "headerLookups": reading.lookups,
            "ignoredOtherPaths": agg.ignored_paths,
            "withoutCertificateFields": agg.without_cert_fields,
            "seconds": round(reading.seconds, 2),
        },
        "malformed": {"count": agg.malformed, "examples": agg.malformed_examples},
        "notes": list(notes),
        "devices": [d.to_dict() for d in outcome.devices],
    }


def verdict_lines(outcome: Outcome, judgement: Judgement, min_ready: float | None) -> list[str]:
    out = [f"{kind.replace('-', ' ')}: {text}" for kind, _, text in judgement.reasons]
    if judgement.state == "inconclusive":
        return out + ["FAIL: the evidence is inconclusive: keep enforcement at observe"]
    clean = "no request without a certificate in the recent window"
    if min_ready is None:
        tail = "not ready" if judgement.not_ready else clean
        return out + [f"ready share {outcome.ready_percent:.1f}%, {tail} (no --min-ready given: a report only)"]
    if judgement.not_ready:
        return out + ["FAIL: not ready: keep enforcement at observe"]
    return out + [f"ok: ready share {outcome.ready_percent:.1f}% reaches --min-ready {min_ready:g}%, {clean}"]


def lines(outcome: Outcome, reading: "Reading", judgement: Judgement, *, min_ready: float | None, top: int | None, notes: Sequence[str], recent: str) -> list[str]:
    agg = outcome.aggregator
    out = [
        f"readiness: {reading.log_group}, {iso(reading.start)} to {iso(reading.end)}; recent window {recent}: from {epoch_iso(agg.recent_from) or iso(reading.start)}",
        f"configured issuing CAs: {', '.join(outcome.issuer_cns)}; mappings ({outcome.rules.source}): {outcome.rules.describe()}",
    ]
    shown = outcome.devices if top is None else outcome.devices[:top]
    rows = []
    for d in shown:
        state = d.state if d.state == "ready" else d.state.upper()
        rows.append((state, _cut(_device(d), 60), d.requests, d.recent, epoch_iso(d.last) or "-", d.last_status or "-", _issuer(d), d.serial or "-", _statuses_text(d.statuses) or "-", d.why))
    out.append("")
    out += table(("STATE", "DEVICE", "REQUESTS", "RECENT", "LAST SEEN", "LAST", "ISSUER", "SERIAL", "STATUSES", "WHY"), rows)
    if len(shown) < len(outcome.devices):
        out.append(f"... {len(outcome.devices) - len(shown)} more device(s) (all in --json)")
    status_rows = outcome.status_rows()
    if status_rows:
        out.append("")
        out += table(("STATUS", "REQUESTS", "DEVICES", "MEANING"), [(r["status"], r["requests"], r["devices"], r["meaning"]) for r in status_rows])
    out.append("")
    read = f"{agg.lines:,} line(s) in {reading.pages} page(s): {agg.requests:,} request(s) ({agg.recent_requests:,} in the recent window), {agg.directives:,} directive line(s)"
    if agg.ignored_paths:
        read += f", {agg.ignored_paths:,} to other paths (not agents) ignored"
    out.append(read + f", {agg.malformed:,} malformed")
    for example in agg.malformed_examples:
        out.append(f"  malformed ({example['stream']}): {example['reason']}: {_cut(example['line'], 160)}")
    for text in notes:
        out.append(f"note: {text}")
    t = outcome.totals
    summary = (
        f"{len(outcome.counted)} device(s): {t['ready']} ready ({outcome.ready_percent:.1f}%), {t['refused-by-rule']} refused by a mapping rule, "
        f"{t['other-issuer']} with a certificate from another issuer, {t['no-certificate']} without a certificate, {t['failing']} failing (401/403)"
    )
    if t["earlier-no-certificate"]:
        summary += f"; {t['earlier-no-certificate']} without a certificate only before the recent window (not counted)"
    if outcome.expected is not None:
        summary += f"; {t['unseen']} of {outcome.expected} expected device(s) unseen"
    out.append(summary)
    return out + verdict_lines(outcome, judgement, min_ready)


def reading_notes(outcome: Outcome, reading: "Reading") -> list[str]:
    agg = outcome.aggregator
    found: list[str] = []
    if not reading.events:
        found.append(f"no log events in {reading.log_group} in the window: is the CloudWatch agent shipping the IIS logs of the beacons?")
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
    shared = [d for d in outcome.devices if d.kind == "address" and d.same_address and d.state == "no-certificate"]
    if shared:
        found.append(
            f"{len(shared)} address(es) sent requests both with and without a certificate (NAT, or a device sending its certificate on "
            "some requests only): nothing is merged by address or user agent, each such address is listed"
        )
    return found
