"""`pulumi up` itself guards the switch from observe to require against what is deployed
(components/require_gate.py, read in __main__.py before any resource): issue 20, points 1-2.

The deployed mode is the stack's own SSM parameter, the verdict is `ops readiness --record`'s.
Proved pure and under mocks, for preview and for update, including a refused switch followed by
another update (nothing changed the deployed record, so it is refused again) and a file that
lowers the threshold to 0 in the same step.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

import scripts.offline as offline
from components.config import load
from components.require_gate import (
    VERDICT_MAX_AGE,
    earlier_deployment_parameter,
    enforcement_parameter,
    enforcement_record,
    judged_rules_digest,
    switch_problem,
    verdict_parameter,
)
from conftest import stack_raw

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)


def _cfg(enforcement: str = "require", threshold: int = 95, stack: str = "pilot"):
    raw, region = stack_raw("pilot")
    raw.update(enforcement=enforcement, requireMinReadyPercent=str(threshold))
    return load(raw, stack, region)


def _record(enforcement: str, threshold: int = 95) -> str:
    return json.dumps({"enforcement": enforcement, "requireMinReadyPercent": threshold})


def _verdict(stack: str = "pilot", passed: bool = True, min_ready: float = 95, age: dt.timedelta = dt.timedelta(hours=1), **more) -> str:
    """A complete verdict as `ops readiness --record --stack pilot` writes it (7 d read, 24 h recent)."""
    verdict = {"stack": stack, "passed": passed, "minReadyPercent": min_ready, "readyPercent": 99.0,
               "recordedAt": (NOW - age).isoformat().replace("+00:00", "Z"), "windowSeconds": 7 * 86400, "recentSeconds": 86400,
               "logGroup": "/flexnet-beacon/pilot/iis", "rulesSha256": PILOT_RULES}
    verdict.update(more)
    return json.dumps(verdict)


def _pilot_rules() -> str:
    from components.stack import prepare

    raw, region = stack_raw("pilot")
    raw.update(enforcement="require")
    return judged_rules_digest(prepare(raw, "pilot", region).iis_state["authentication"]["clientCertificateMapping"])


PILOT_RULES = _pilot_rules()


# --- the decision --------------------------------------------------------------------------------

def test_observe_and_require_to_require_are_not_guarded() -> None:
    assert switch_problem(_cfg("observe"), _record("observe"), None, False, NOW) == (None, None)
    assert switch_problem(_cfg("require"), _record("require"), None, False, NOW) == (None, None)


def test_a_stack_never_deployed_may_start_in_require_and_says_so() -> None:
    refused, note = switch_problem(_cfg(), None, None, False, NOW)
    assert refused is None and note and "never been deployed" in note


def test_deployed_observe_without_a_verdict_is_refused_naming_what_to_run() -> None:
    refused, _ = switch_problem(_cfg(), _record("observe", 90), None, False, NOW)
    assert refused and refused.startswith("enforcement: got require while the deployed stack is observe")
    assert "--min-ready 95" in refused and verdict_parameter("pilot") in refused


def test_the_threshold_in_force_is_the_deployed_one_when_the_change_lowers_it() -> None:
    """The issue's case: the same change switches to require and sets requireMinReadyPercent 0."""
    lowered = _cfg(threshold=0)
    refused, _ = switch_problem(lowered, _record("observe", 90), _verdict(min_ready=0), False, NOW)
    assert refused and "judged at --min-ready 0, below the 90 in force" in refused
    assert switch_problem(lowered, _record("observe", 90), _verdict(min_ready=90), False, NOW) == (None, None)
    # Raising it in the same step is allowed, and then the higher one is in force.
    raised = _cfg(threshold=99)
    assert "below the 99 in force" in (switch_problem(raised, _record("observe", 90), _verdict(min_ready=95), False, NOW)[0] or "")


@pytest.mark.parametrize(
    ("verdict", "why"),
    [
        (_verdict(passed=False), "it did not pass"),
        (_verdict(stack="prod"), "it is for stack 'prod'"),
        (_verdict(age=VERDICT_MAX_AGE + dt.timedelta(minutes=1)), "it is older than 24 h"),
        (_verdict(age=-dt.timedelta(hours=1)), "it is from the future"),
        ("not json", "its time cannot be read"),
        (json.dumps({"stack": "pilot", "passed": True, "minReadyPercent": 95, "recordedAt": "yesterday"}), "its time cannot be read"),
    ],
)
def test_a_verdict_that_does_not_count_is_refused_saying_why(verdict: str, why: str) -> None:
    refused, _ = switch_problem(_cfg(), _record("observe"), verdict, False, NOW)
    assert refused and why in refused


def test_a_fresh_passing_verdict_at_the_threshold_allows_the_switch() -> None:
    assert switch_problem(_cfg(), _record("observe", 95), _verdict(min_ready=95), False, NOW) == (None, None)


def test_a_stack_deployed_before_the_record_existed_is_guarded() -> None:
    refused, _ = switch_problem(_cfg(), None, None, True, NOW)
    assert refused and "unknown (deployed by an earlier version)" in refused


# --- the program under mocks ---------------------------------------------------------------------

def _run(preview: bool, parameters: dict[str, str], monkeypatch, threshold: int = 95):
    raw, region = stack_raw("pilot")
    raw.update(enforcement="require", requireMinReadyPercent=str(threshold))
    made: list = []
    original = offline.RecordingMonitor

    class Watched(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(offline, "RecordingMonitor", Watched)
    try:
        return offline.run_program("pilot", raw, region, preview=preview, parameters=parameters), made
    except Exception as refused:  # noqa: BLE001 - the program's RunError
        return refused, made


def test_update_refuses_the_switch_before_any_resource_and_again_after_another_update(monkeypatch) -> None:
    deployed = {enforcement_parameter("pilot"): _record("observe", 95)}
    for attempt in range(2):  # an unrelated later update finds the same deployed record: refused again
        refused, made = _run(False, deployed, monkeypatch)
        assert type(refused).__name__ == "RunError", attempt
        assert str(refused).startswith("enforcement: got require while the deployed stack is observe")
        assert [r for m in made for r in m.recorded] == []


def test_preview_renders_and_says_the_update_will_stop(monkeypatch) -> None:
    run, _ = _run(True, {enforcement_parameter("pilot"): _record("observe", 95)}, monkeypatch)
    assert not isinstance(run, Exception) and run.resources
    assert any(level == "warning" and msg.startswith("pulumi up will stop: enforcement: got require") for level, msg in run.log)


def test_update_with_a_recorded_passing_verdict_switches_and_records_require(monkeypatch) -> None:
    verdict = _verdict(age=NOW - dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1))
    run, _ = _run(False, {enforcement_parameter("pilot"): _record("observe", 95), verdict_parameter("pilot"): verdict}, monkeypatch)
    assert not isinstance(run, Exception), run
    (record,) = [r for r in run.resources if r.type == "aws:ssm/parameter:Parameter" and r.inputs.get("name") == enforcement_parameter("pilot")]
    assert json.loads(record.inputs["insecureValue"]) == {"enforcement": "require", "requireMinReadyPercent": 95}
    assert record.inputs["insecureValue"] == enforcement_record(_cfg())
    assert run.outputs["enforcement"] == "require" and run.outputs["requireMinReadyPercent"] == 95


def test_an_earlier_versions_stack_is_guarded_under_mocks_too(monkeypatch) -> None:
    refused, _ = _run(False, {earlier_deployment_parameter("pilot"): "{}"}, monkeypatch)
    assert type(refused).__name__ == "RunError" and "unknown (deployed by an earlier version)" in str(refused)


def test_a_new_stack_in_require_deploys(monkeypatch) -> None:
    run, _ = _run(False, {}, monkeypatch)
    assert not isinstance(run, Exception)
    assert any("never been deployed" in msg for level, msg in run.log if level == "info")



@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"windowSeconds": 600}, "its --since window is 600 s"),
        ({"recentSeconds": 300}, "its --recent window is 300 s"),
        ({"windowSeconds": None}, "its --since window is None s"),
        ({"logGroup": "/flexnet-beacon/prod/iis"}, "it read '/flexnet-beacon/prod/iis', not the stack's"),
        ({"rulesSha256": None}, "it was not judged against the mappings this update deploys"),
        ({"rulesSha256": "0" * 64}, "it was not judged against the mappings this update deploys"),
    ],
)
def test_a_verdict_judged_on_other_evidence_or_rules_does_not_count(changes: dict, why: str) -> None:
    """The review's case: a hand-written or narrowed verdict (--since 10m --recent 5m, another log
    group, no --stack, yesterday's rules) must not satisfy the update."""
    refused, _ = switch_problem(_cfg(), _record("observe"), _verdict(**changes), False, NOW,
                                rules_digest=PILOT_RULES, log_group="/flexnet-beacon/pilot/iis")
    assert refused and why in refused


def test_changed_rules_change_the_digest() -> None:
    from components.stack import prepare

    raw, region = stack_raw("pilot")
    raw.update(denyMappingRules=json.dumps(["Subject.OU=Contractors"]))
    changed = judged_rules_digest(prepare(raw, "pilot", region).iis_state["authentication"]["clientCertificateMapping"])
    assert changed != PILOT_RULES


def test_an_unknown_deployed_threshold_is_the_strictest() -> None:
    refused, _ = switch_problem(_cfg(threshold=0), None, _verdict(min_ready=0), True, NOW)
    assert refused and "below the 100 in force" in refused


def test_report_only_records_observe_and_is_not_a_switch() -> None:
    raw, region = stack_raw("pilot")
    raw.update(enforcement="require", convergeReportOnly="true")
    cfg = load(raw, "pilot", region)
    assert json.loads(enforcement_record(cfg))["enforcement"] == "observe", "nothing is enforced while report-only"
    assert switch_problem(cfg, _record("observe"), None, False, NOW) == (None, None)
    # Turning report-only off later is the guarded switch.
    assert switch_problem(_cfg(), json.loads(json.dumps(enforcement_record(cfg))), None, False, NOW)[0]


def test_the_record_is_written_after_the_converge_objects(monkeypatch) -> None:
    """A failed or --target'ed update must not record require before the beacons have the state."""
    run, _ = _run(True, {}, monkeypatch)
    assert not isinstance(run, Exception)
    (record,) = [r for r in run.resources if r.type == "aws:ssm/parameter:Parameter" and r.inputs.get("name") == enforcement_parameter("pilot")]
    waits_for = {urn.rsplit("::", 1)[-1] for urn in record.dependencies}
    assert {"mtls-document", "mtls-association", "mtls-state", "mtls-script"} <= waits_for, waits_for


def test_a_stack_destroyed_and_created_again_is_not_never_deployed(monkeypatch) -> None:
    """A destroy removes the enforcement record but not the verdict `ops readiness` wrote."""
    leftover = _verdict(min_ready=50)
    refused, _ = _run(False, {verdict_parameter("pilot"): leftover}, monkeypatch)
    assert type(refused).__name__ == "RunError" and "unknown (deployed by an earlier version)" in str(refused)
