"""The converge report reader and judge (scripts/ops/report.py) on recorded reports: compliant,
drift, failed, Windows PowerShell 5.1 shapes, noise around the JSON, SSM's 24,000-character cut,
and the example report next to the converge script."""

from __future__ import annotations

import json

import pytest

from scripts.ops.report import ReportError, computer_name, evaluate, extract_report, render_beacon, verdict
from tests.ops_fixtures.support import NOW, ROOT, compact, fixture_text, golden_state, report


def by_name(checks):
    return {c.name: c for c in checks}


def test_compliant_report_passes_every_check_against_the_desired_state() -> None:
    checks = evaluate(report("report-compliant.json"), NOW, golden_state())
    assert verdict(checks) == "ok", [c.to_dict() for c in checks if c.result != "ok"]
    named = by_name(checks)
    assert set(named) == {"run", "enforcement", "binding", "sslFlags", "anonymous", "mappings", "HTTP.sys", "trust", "CRL"}
    assert "until 2027-01-15 (228 days)" in named["binding"].detail
    assert named["anonymous"].detail == "off"
    assert named["mappings"].items == ["Allow 'Agents - Example Devices CA': Issuer.CN=Example Devices CA"]
    assert "clientcertnegotiation=enable" in named["HTTP.sys"].detail
    lines = render_beacon("beacon-1", checks)
    assert lines[1].split() == ["CHECK", "RESULT", "DETAIL"]


def test_drift_report_fails_on_each_drifted_item() -> None:
    checks = by_name(evaluate(report("report-drift.json"), NOW, golden_state()))
    assert checks["run"].result == "fail" and checks["run"].detail.startswith("drift: 4 difference(s)")
    assert checks["sslFlags"].result == "fail" and "missing SslRequireCert" in checks["sslFlags"].detail
    assert checks["anonymous"].result == "fail"
    assert checks["HTTP.sys"].result == "fail"
    assert "clientcertnegotiation=disable (desired enable)" in checks["HTTP.sys"].items
    assert "sslctlstorename=(none) (desired ClientAuthIssuer)" in checks["HTTP.sys"].items
    assert checks["trust"].result == "fail" and "1 CA certificate(s) missing" in checks["trust"].detail
    assert checks["CRL"].result == "fail" and "403.13" in checks["CRL"].detail
    assert checks["warnings"].result == "warn"
    assert checks["binding"].result == "ok"  # the certificate itself is fine


def test_failed_report_names_the_error() -> None:
    checks = by_name(evaluate(report("report-failed.json"), NOW))
    assert checks["run"].result == "fail"
    assert "no server certificate: set serverCertificateSecretArn" in checks["run"].detail
    assert checks["binding"].result == "fail" and checks["HTTP.sys"].result == "fail"
    assert checks["CRL"].result == "warn"


def test_without_a_desired_state_the_mtls_essentials_are_still_checked() -> None:
    drifted = report("report-drift.json")
    checks = by_name(evaluate(drifted, NOW, None))
    assert checks["HTTP.sys"].items == ["clientcertnegotiation=disable (desired enable)"]
    assert checks["trust"].result == "fail"  # ClientAuthIssuer entry absent; mode 2 is the default expectation


def test_expected_thumbprint_and_certificate_windows() -> None:
    compliant = report("report-compliant.json")
    checks = by_name(evaluate(compliant, NOW, golden_state(), expect_thumbprint="AB" * 20))
    assert checks["binding"].result == "fail" and checks["binding"].items == [f"bound {'3F2A9C0D5B7E41A8C6D2E9F0B1A3C5D7E9F1A2B3'}, expected {'AB' * 20}"]
    assert any(item.startswith("certhash=") for item in checks["HTTP.sys"].items)
    late = NOW.replace(year=2027, month=1, day=1)
    assert by_name(evaluate(compliant, late, golden_state()))["binding"].result == "warn"
    assert by_name(evaluate(compliant, NOW.replace(year=2027, month=2), golden_state()))["binding"].result == "fail"


def test_desired_mapping_names_and_trust_mode_come_from_the_state() -> None:
    compliant = report("report-compliant.json")
    state = golden_state()
    state["authentication"]["clientCertificateMapping"]["manyToOneMappings"][0]["name"] = "Agents - Other CA"
    state["schannel"] = {"clientAuthTrustMode": 0}
    checks = by_name(evaluate(compliant, NOW, state))
    assert checks["mappings"].result == "fail" and "desired ['Agents - Other CA']" in checks["mappings"].detail
    assert checks["trust"].result == "fail" and "ClientAuthTrustMode 2, desired 0" in checks["trust"].detail


def test_powershell_51_shapes_and_unknown_keys_are_read() -> None:
    text = fixture_text("report-ps51-shapes.json")
    assert "\r\n" in text or "\n" in text
    parsed = extract_report(text)
    checks = by_name(evaluate(parsed, NOW, golden_state()))
    assert verdict(checks.values()) == "ok", [c.to_dict() for c in checks.values() if c.result != "ok"]
    assert checks["mappings"].items == ["Allow 'Agents - Example Devices CA': Issuer.CN=Example Devices CA"]
    assert checks["CRL"].detail == "1 URL(s) reachable from the beacon"


def test_report_is_found_among_other_output_lines() -> None:
    parsed = extract_report(fixture_text("ssm-stdout-with-noise.txt"))
    assert parsed["status"] == "compliant"
    # Two reports (a retry inside one run): the last one counts; objects that are not reports do not.
    first, second = report("report-drift.json"), report("report-compliant.json")
    text = f'{{"note": "not a report"}}\n{compact(first)}\nsome line {{ broken\n{compact(second)}\n'
    assert extract_report(text)["status"] == "compliant"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "printed nothing"),
        ("Set-BeaconMtls failed: boom\n", "no JSON report"),
        ('{"status": "compliant"}', "no JSON report"),  # an object without checks/schemaVersion is not a report
    ],
)
def test_no_report(text: str, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        extract_report(text)


def test_ssm_cut_is_recognised_and_the_computer_name_survives() -> None:
    big = report("report-compliant.json")
    big["warnings"] = ["x" * 200] * 150  # a report longer than SSM returns
    cut = compact(big)[:24000]
    with pytest.raises(ReportError, match="cut at 24000"):
        extract_report(cut)
    assert computer_name(cut) == "EC2AMAZ-DEV0001"


def test_the_example_report_of_the_converge_script_is_understood() -> None:
    example = ROOT / "docs" / "examples" / "converge-report.json"
    if not example.exists():
        pytest.skip("docs/examples/converge-report.json is not there yet")
    parsed = extract_report(example.read_text(encoding="utf-8"))
    prod = json.loads((ROOT / "tests" / "golden" / "iis-state-prod.json").read_text(encoding="utf-8"))
    finished = parsed_time(parsed)
    assert finished is not None
    checks = evaluate(parsed, finished, prod)
    # The example is a first converge: everything changed and a restart is pending (asked for with
    # exit 3010 a moment ago), which is a warning, not a failure, until the restart is overdue.
    run = by_name(checks)["run"]
    assert run.result == ("warn" if parsed["status"] == "reboot-pending" else "ok"), run.to_dict()
    assert {c.result for c in checks} <= {"ok", "warn"}, [c.to_dict() for c in checks if c.result == "fail"]
    assert by_name(checks)["locations"].result == "ok"


def _issue_12_report(status: str = "reboot-pending", requested: str | None = "2026-06-01T11:58:09.0000000Z") -> dict:
    """The compliant recording with what issue-12 scripts add: steps, checks.locations, checks.reboot."""
    rep = report("report-compliant.json")
    rep["status"] = status
    rep["rebootRequired"] = status == "reboot-pending"
    rep["steps"] = [{"name": "reboot", "status": "ok", "error": None}, {"name": "lockdown", "status": "ok", "error": None},
                    {"name": "serverCertificate", "status": "failed", "error": "secret unreadable (line 12)"},
                    {"name": "siteBinding", "status": "skipped", "error": "not run: it needs serverCertificate (failed)"}]
    rep["checks"]["locations"] = [{"location": loc, "sslFlags": "Ssl,SslNegotiateCert,SslRequireCert", "anonymousEnabled": False,
                                   "certificateMappingEnabled": True, "authenticatedUserOverride": "UseWorkerProcessUser"}
                                  for loc in ("Default Web Site", "Default Web Site/ManageSoftDL", "Default Web Site/ManageSoftRL")]
    rep["checks"]["reboot"] = {"pending": status == "reboot-pending", "recordedAt": "2026-06-01T11:58:05.0000000Z",
                               "requestedAt": requested, "reasons": ["SCHANNEL ClientAuthTrustMode set to 2"], "lastBootAt": "2026-06-01T11:00:00.0000000Z"}
    return rep


def test_a_pending_restart_is_a_warning_until_it_is_overdue() -> None:
    just_asked = by_name(evaluate(_issue_12_report(), NOW, golden_state()))["run"]
    assert just_asked.result == "warn" and "asked for at 2026-06-01T11:58:09" in just_asked.detail
    assert "SCHANNEL ClientAuthTrustMode set to 2" in just_asked.items
    overdue = by_name(evaluate(_issue_12_report(), NOW.replace(hour=14), golden_state()))["run"]
    assert overdue.result == "fail" and "not done: restart the instance" in overdue.detail
    not_asked = by_name(evaluate(_issue_12_report(requested=None), NOW, golden_state()))["run"]
    assert not_asked.result == "warn" and "exit 3010" in not_asked.detail


def test_failed_and_skipped_steps_are_listed_under_the_run() -> None:
    run = by_name(evaluate(_issue_12_report(status="failed"), NOW, golden_state()))["run"]
    assert run.result == "fail"
    assert "step serverCertificate failed: secret unreadable (line 12)" in run.items
    assert "step siteBinding skipped: not run: it needs serverCertificate (failed)" in run.items


def test_every_lockdown_location_is_judged() -> None:
    rep = _issue_12_report(status="compliant")
    assert by_name(evaluate(rep, NOW, golden_state()))["locations"].result == "ok"
    rep["checks"]["locations"][2]["anonymousEnabled"] = True
    rep["checks"]["locations"][1]["sslFlags"] = "Ssl"
    locations = by_name(evaluate(rep, NOW, golden_state()))["locations"]
    assert locations.result == "fail"
    assert locations.items == ["Default Web Site/ManageSoftDL: sslFlags Ssl", "Default Web Site/ManageSoftRL: anonymous ON"]


def test_reports_before_issue_12_are_still_read() -> None:
    """No steps, no checks.locations, no checks.reboot: the same checks as before, no new ones."""
    checks = by_name(evaluate(report("report-compliant.json"), NOW, golden_state()))
    assert "locations" not in checks and checks["run"].items == []


def parsed_time(value):
    from scripts.ops.common import parse_time

    return parse_time(value["finishedAt"])


def _observe_beacon(anonymous: bool = True, flags: str = "Ssl,SslNegotiateCert") -> dict:
    """The compliant report as a converged observe beacon would send it (site and both applications)."""
    data = report("report-compliant.json")
    data["enforcement"] = "observe"
    data["checks"]["binding"]["sslFlags"] = flags
    data["checks"]["anonymousEnabled"] = anonymous
    data["checks"]["locations"] = [
        {"location": where, "anonymousEnabled": anonymous, "certificateMappingEnabled": True, "sslFlags": flags}
        for where in ("Default Web Site", "Default Web Site/ManageSoftDL", "Default Web Site/ManageSoftRL")
    ]
    return data


def _observe_state() -> dict:
    from components.stack import prepare
    from conftest import stack_raw

    raw, region = stack_raw("dev")
    return prepare({**raw, "enforcement": "observe"}, "dev", region).iis_state


def test_a_healthy_observe_beacon_passes_verify() -> None:
    """Runbook step (a): `ops verify` right after deploying in observe must say ok."""
    checks = evaluate(_observe_beacon(), NOW, _observe_state())
    assert verdict(checks) == "ok", [c.to_dict() for c in checks if c.result != "ok"]
    named = by_name(checks)
    assert named["enforcement"].detail.startswith("observe") and named["anonymous"].detail == "on (observe)"
    assert named["locations"].result == "ok"


@pytest.mark.parametrize("change,check,words", [
    ({"anonymous": False}, "anonymous", "observe must not lock anyone out"),
    ({"flags": "Ssl,SslNegotiateCert,SslRequireCert"}, "sslFlags", "SslRequireCert set, not wanted in observe"),
    ({"flags": "Ssl"}, "sslFlags", "missing SslNegotiateCert"),
])
def test_an_observe_beacon_that_is_not_observe_fails(change: dict, check: str, words: str) -> None:
    named = by_name(evaluate(_observe_beacon(**change), NOW, _observe_state()))
    assert named[check].result == "fail" and words in named[check].detail
    assert named["locations"].result == "fail"


def test_a_require_beacon_with_observe_settings_fails() -> None:
    """The same observe beacon judged against the require state: anonymous on and no SslRequireCert fail."""
    named = by_name(evaluate(_observe_beacon(), NOW, golden_state()))
    assert named["anonymous"].result == "fail" and "devices without a mapped certificate get in" in named["anonymous"].detail
    assert named["sslFlags"].result == "fail" and "missing SslRequireCert" in named["sslFlags"].detail
