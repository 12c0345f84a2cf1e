"""The switch from observe to require, guarded by `pulumi up` itself (issue 20).

The reference is what is deployed, not git history: the stack keeps its enforcement and threshold
in an SSM parameter it owns (`enforcement_parameter`), and `python -m scripts.ops readiness
--record` keeps its last verdict in another (`verdict_parameter`). When an update would turn a
deployed observe stack to require, `pulumi up` stops unless a passing verdict, younger than
`VERDICT_MAX_AGE`, exists for the threshold in force: the deployed one, or the new one if it is
higher (a change may raise the threshold, never lower it in the same step). So no path skips it:
not a later unrelated push, not a re-run, not a laptop. `pulumi preview` and the offline plan say
what would stop it.

Pure: the decision from the two parameters' values (None when absent), the time, and what the
update deploys (the digest of its mappings, its IIS log group).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Mapping

from .config import PROJECT, BeaconConfig

VERDICT_MAX_AGE = dt.timedelta(hours=24)


def enforcement_parameter(stack: str) -> str:
    return f"/{PROJECT}/{stack}/enforcement"


def verdict_parameter(stack: str) -> str:
    return f"/{PROJECT}/{stack}/readiness-verdict"


def earlier_deployment_parameter(stack: str) -> str:
    """A parameter every deployed stack has had since before the enforcement record existed (the
    CloudWatch agent's configuration): present without an enforcement record means the stack was
    deployed by an earlier version, whose mode is unknown."""
    return f"/{PROJECT}/{stack}/cloudwatch-agent"


def enforcement_record(cfg: BeaconConfig) -> str:
    """The value the stack writes: what is deployed once the update succeeds. A report-only
    converge run enforces nothing, so it records observe: turning report-only off later is then
    still a guarded switch."""
    enforced = "observe" if cfg.converge_report_only else cfg.enforcement
    return json.dumps({"enforcement": enforced, "requireMinReadyPercent": cfg.require_min_ready_percent}, sort_keys=True)


# What a verdict must have looked at to count: a week of logs, the last day judged strictly.
MIN_WINDOW = dt.timedelta(days=7) - dt.timedelta(hours=1)
MIN_RECENT = dt.timedelta(hours=24)


def judged_rules_digest(client_certificate_mapping: Mapping[str, Any]) -> str:
    """SHA-256 of the mappings a device is judged against (the desired state's
    authentication.clientCertificateMapping: many-to-one names, modes, rules; one-to-one
    certificates): `ops readiness --stack` records it, the update compares it with its own, so a
    verdict judged under other rules (or without the stack's rules) does not count."""
    judged = {
        "manyToOne": [
            {"name": m["name"], "permissionMode": m["permissionMode"], "rules": m["rules"]}
            for m in client_certificate_mapping.get("manyToOneMappings", [])
        ],
        "oneToOne": sorted(d["certificate"] for d in client_certificate_mapping.get("oneToOneMappings", [])),
    }
    return hashlib.sha256(json.dumps(judged, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _parse(value: str | None) -> Mapping[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _time(text: Any) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def switch_problem(
    cfg: BeaconConfig,
    deployed: str | None,
    verdict: str | None,
    deployed_before: bool,
    now: dt.datetime,
    rules_digest: str | None = None,
    log_group: str | None = None,
) -> tuple[str | None, str | None]:
    """(why `pulumi up` stops, or None; a note when the switch is allowed unguarded, or None).

    deployed: the enforcement record's value (None: absent). deployed_before: the stack existed
    before the record did (then its mode is unknown and the switch is guarded as from observe).
    """
    if cfg.enforcement != "require" or cfg.converge_report_only:  # report-only enforces nothing (and records observe)
        return None, None
    record = _parse(deployed)
    if record is None and not deployed_before:
        return None, f"stack {cfg.stack} has never been deployed: it starts in require, so there is no switch to guard"
    record = record or {}
    if record.get("enforcement") == "require":
        return None, None
    was = record.get("enforcement") or "unknown (deployed by an earlier version)"
    # The threshold in force: the deployed one, or the new one when it is higher (a change may
    # raise it, never lower it in the same step); 100 when the deployed one is unknown.
    deployed_threshold = record.get("requireMinReadyPercent")
    if isinstance(deployed_threshold, int) and not isinstance(deployed_threshold, bool):
        threshold = max(cfg.require_min_ready_percent, deployed_threshold)
    else:  # unknown (an earlier version's stack, a damaged record): the strictest
        threshold = 100
    head = f"enforcement: got require while the deployed stack is {was}; expected a passing `ops readiness --record`"
    found = _parse(verdict)
    if found is None:
        return f"{head} at --min-ready {threshold} within {int(VERDICT_MAX_AGE.total_seconds() // 3600)} h: none recorded ({verdict_parameter(cfg.stack)})", None
    recorded = _time(found.get("recordedAt"))
    problems = []
    if found.get("stack") != cfg.stack:
        problems.append(f"it is for stack {found.get('stack')!r}")
    if found.get("passed") is not True:
        problems.append("it did not pass")
    minimum = found.get("minReadyPercent")
    if not isinstance(minimum, (int, float)) or minimum < threshold:
        problems.append(f"it was judged at --min-ready {minimum}, below the {threshold} in force")
    if recorded is None:
        problems.append("its time cannot be read")
    elif recorded > now + dt.timedelta(minutes=5):
        problems.append(f"it is from the future ({found.get('recordedAt')})")
    elif now - recorded > VERDICT_MAX_AGE:
        problems.append(f"it is older than {int(VERDICT_MAX_AGE.total_seconds() // 3600)} h ({found.get('recordedAt')})")
    for key, least, what in (("windowSeconds", MIN_WINDOW, "--since"), ("recentSeconds", MIN_RECENT, "--recent")):
        seconds = found.get(key)
        if not isinstance(seconds, (int, float)) or seconds < least.total_seconds():
            problems.append(f"its {what} window is {seconds} s, shorter than {int(least.total_seconds())} s")
    if log_group is not None and found.get("logGroup") != log_group:
        problems.append(f"it read {found.get('logGroup')!r}, not the stack's {log_group!r}")
    if rules_digest is not None and found.get("rulesSha256") != rules_digest:
        problems.append("it was not judged against the mappings this update deploys (run it with --stack from this change)")
    if problems:
        return f"{head} at --min-ready {threshold}: the recorded verdict does not count ({'; '.join(problems)})", None
    return None, None
