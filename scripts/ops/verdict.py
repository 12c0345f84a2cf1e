"""The readiness verdict `ops readiness --record` keeps for `pulumi up` (components/require_gate.py).

Stored as the String parameter /flexnet-beacon/<stack>/readiness-verdict: counts, never device
names; the window, the lines read and their SHA-256, the threshold, the time. `passed` is the
whole verdict (scripts/ops/readiness_outcome.py): false when the evidence is inconclusive, when a
request came without a certificate in the recent window, or below the threshold; `reasons` holds
the codes of why (e.g. inconclusive:unreadable-lines), never the names behind them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from components.require_gate import verdict_parameter

from .aws import Aws
from .common import InputError, iso

if TYPE_CHECKING:
    from .readiness_model import Outcome
    from .readiness_outcome import Judgement
    from .log_window import Reading


def verdict_of(stack: str, outcome: "Outcome", reading: "Reading", min_ready: float, now: dt.datetime, judgement: "Judgement | None" = None,
               rules_digest: str | None = None) -> dict[str, Any]:
    """What `pulumi up` reads (components/require_gate.py): no device names, only counts."""
    judgement = judgement or outcome.judgement(min_ready)
    return {
        "stack": stack,
        "passed": judgement.passed,
        "verdict": judgement.state,
        "reasons": [f"{kind}:{code}" for kind, code, _ in judgement.reasons],
        "minReadyPercent": min_ready,
        "readyPercent": round(outcome.ready_percent, 2),
        "devices": len(outcome.counted),
        "ready": outcome.totals["ready"],
        "requestsWithoutCertificateRecent": outcome.without_certificate_recent,
        "unseen": outcome.totals["unseen"] if outcome.expected is not None else None,
        "recentSince": iso(dt.datetime.fromtimestamp(max(outcome.aggregator.recent_from, int(reading.start.timestamp())), dt.timezone.utc)),
        "logGroup": reading.log_group,
        # What the update checks the verdict was judged on (components/require_gate.py).
        "windowSeconds": int((reading.end - reading.start).total_seconds()),
        "recentSeconds": int(reading.end.timestamp()) - max(outcome.aggregator.recent_from, int(reading.start.timestamp())),
        "rulesSha256": rules_digest,
        "since": iso(reading.start),
        "until": iso(reading.end),
        "lines": reading.events,
        "logsSha256": reading.digest.hexdigest(),
        "recordedAt": iso(now),
    }


def record_verdict(
    aws: Aws, stack: str | None, outcome: "Outcome", reading: "Reading", min_ready: float | None, now: dt.datetime, judgement: "Judgement | None" = None,
    rules_digest: str | None = None,
) -> tuple[str, dict[str, Any]]:
    if min_ready is None:
        raise InputError("--record: got no --min-ready; expected the threshold the verdict is judged at (the stack's requireMinReadyPercent)")
    if not stack:
        raise InputError("--record: got no --stack; expected the stack whose switch the verdict is for")
    verdict = verdict_of(stack, outcome, reading, min_ready, now, judgement, rules_digest)
    name = verdict_parameter(stack)
    aws.client("ssm").put_parameter(
        Name=name, Value=json.dumps(verdict, sort_keys=True), Type="String", Overwrite=True,
        Description="flexnet-beacon: the last ops readiness --record verdict (pulumi up reads it before observe -> require)",
    )
    return name, verdict
