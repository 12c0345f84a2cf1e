"""The readiness verdict `ops readiness --record` keeps for `pulumi up` (components/require_gate.py).

Stored as the String parameter /flexnet-beacon/<stack>/readiness-verdict: counts, never device
names; the window, the lines read and their SHA-256, the threshold, the time.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from components.require_gate import verdict_parameter

from .aws import Aws
from .common import InputError, iso

if TYPE_CHECKING:
    from .fleet import Outcome
    from .readiness import Reading
def verdict_of(stack: str, outcome: "Outcome", reading: "Reading", min_ready: float, now: dt.datetime) -> dict[str, Any]:
    """What `pulumi up` reads (components/require_gate.py): no device names, only counts."""
    return {
        "stack": stack,
        "passed": not outcome.below(min_ready),
        "minReadyPercent": min_ready,
        "readyPercent": round(outcome.ready_percent, 2),
        "devices": len(outcome.devices),
        "ready": outcome.totals["ready"],
        "logGroup": reading.log_group,
        "since": iso(reading.start),
        "until": iso(reading.end),
        "lines": reading.events,
        "logsSha256": reading.digest.hexdigest(),
        "recordedAt": iso(now),
    }


def record_verdict(aws: Aws, stack: str | None, outcome: "Outcome", reading: "Reading", min_ready: float | None, now: dt.datetime) -> tuple[str, dict[str, Any]]:
    if min_ready is None:
        raise InputError("--record: got no --min-ready; expected the threshold the verdict is judged at (the stack's requireMinReadyPercent)")
    if not stack:
        raise InputError("--record: got no --stack; expected the stack whose switch the verdict is for")
    verdict = verdict_of(stack, outcome, reading, min_ready, now)
    name = verdict_parameter(stack)
    aws.client("ssm").put_parameter(
        Name=name, Value=json.dumps(verdict, sort_keys=True), Type="String", Overwrite=True,
        Description="flexnet-beacon: the last ops readiness --record verdict (pulumi up reads it before observe -> require)",
    )
    return name, verdict
