"""readiness: IIS W3C logs in CloudWatch Logs (moto on loopback), judged per device.

The recorded logs (tests/ops_fixtures/iis-w3c-beacon-*.log) are lines as IIS 10 writes them
with the observe-mode custom fields (crt-subject, crt-issuer, crt-serial, crt-flags): directive
lines, '+' for spaces, '-' for empty values, a restart that changes the fields mid-file, a
truncated line and a stray one. They are recorded around 2026-06-01 12:00 UTC and shifted to the
last hours before they go into moto (CloudWatch Logs takes events of the last 14 days only),
one event per line as the CloudWatch agent ships them.

Devices in the recording (configured issuing CA: Example Devices CA), all in the recent window:
  laptop-0001  certificate, both beacons, 200                         ready
  laptop-0002  a certificate at 06:15                                   ready
  203.0.113.20 requests without a certificate (laptop-0002's address)   no-certificate (never merged)
  laptop-0042  certificate with a quoted O in its subject               ready
  laptop-0100  certificate of Other Corp Issuing CA, 200                other-issuer
  198.51.100.77 never a certificate                                     no-certificate
  laptop-0007  200, then 403.13 (revoked)                               failing
  kiosk-0003   certificate of an issuer IIS does not know, 403.16       failing
  laptop-0055  403.17 (expired), on beacon-2                            failing
plus a scanner on / and /.env (not an agent path: ignored) and two malformed lines of 31: more
than 1% unreadable, so every verdict on the recording is inconclusive (and not ready besides).
Verdicts that pass are tested on generated lines (tests/ops/test_readiness_model.py too).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from scripts.ops import readiness, readiness_model, w3c
from scripts.ops.readiness_model import Aggregator, status_meaning
from scripts.ops.outputs import StackOutputs
from scripts.ops.readiness_rules import rule_set
from scripts.ops.readiness import parse_since
from tests.ops_fixtures.readiness_logs import BEACON_1, BEACON_2, GROUP, Cert, header, line, put_lines, put_now, recorded, shifted
from tests.ops_fixtures.support import HERE, Hooks, aws_env, boto_client, error_response, outputs_file, run

RECORDED_NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    aws_env(monkeypatch, tmp_path)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return {"tmp": tmp_path, "outputs": str(outputs_file(tmp_path)), "delta": now - dt.timedelta(minutes=10) - RECORDED_NOW, "monkeypatch": monkeypatch}


@pytest.fixture
def logged(env: dict[str, Any]) -> dict[str, Any]:
    put_lines(BEACON_1, shifted(recorded("iis-w3c-beacon-1.log"), env["delta"]))
    put_lines(BEACON_2, shifted(recorded("iis-w3c-beacon-2.log"), env["delta"]))
    return env


def one_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("ops: error: ")]
    assert len(errors) == 1 and len(err.splitlines()) == 1, err
    return errors[0]


def by_identity(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["identity"]: d for d in result["devices"]}


# ---------------------------------------------------------------------------------------------
# The verb against moto


def test_table_of_the_recorded_logs(logged, capsys) -> None:
    code, out, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness")
    assert code == 1, err  # inconclusive (2 of 31 lines unreadable), even as a report only
    lines = out.splitlines()
    assert lines[0].startswith(f"readiness: {GROUP}, ") and re.search(r"; recent window 24h: from \S+Z$", lines[0])
    assert lines[1] == "configured issuing CAs: Example Devices CA; mappings (mtls.issuerRules of " + logged["outputs"] + \
        "): Allow mapping 'Agents - Example Devices CA' (Issuer.CN=Example Devices CA)"
    assert lines[3].split()[:5] == ["STATE", "DEVICE", "REQUESTS", "RECENT", "LAST"]
    rows = {row.split()[1]: row.split() for row in lines[4:13]}
    assert [row.split()[0] for row in lines[4:13]] == ["FAILING"] * 3 + ["OTHER-ISSUER"] + ["NO-CERTIFICATE"] * 2 + ["ready"] * 3
    assert rows["laptop-0007"][5] == "403.13" and "403.13 x1, 200 x1" in " ".join(rows["laptop-0007"])
    assert rows["laptop-0002"][2] == "1"  # its requests without a certificate are not merged into it any more
    assert rows["203.0.113.20"][2:4] == ["(address)", "2"]
    assert "certificates came from this address too (laptop-0002)" in out
    assert "Other Corp Issuing CA (not configured)" in out
    assert "Kiosk Vendor Device CA (not configured) (unrecognised by IIS)" in out
    assert "198.51.100.77 (address)" in out
    assert re.search(r"^403\.13 +1 +1 +client certificate revoked", out, re.M)
    assert re.search(r"^403\.17 +1 +1 +client certificate expired or not yet valid", out, re.M)
    assert "2 to other paths (not agents) ignored, 2 malformed" in out
    assert f"malformed ({BEACON_1}): 7 values for the 25 fields of the #Fields: line in force: " in out
    assert "malformed (i-7f0c2bfe3eaaa5b58): 4 values for the 22 fields of the #Fields: line in force: \\tnot a log line" in out
    assert "9 device(s): 3 ready (33.3%), 0 refused by a mapping rule, 1 with a certificate from another issuer, 2 without a certificate, 3 failing (401/403)" in out
    assert lines[-3:] == [
        "inconclusive: 2 of 31 line(s) unreadable (6.5%, more than 1%)",
        "not ready: 4 request(s) without a certificate in the recent window, from 198.51.100.77, 203.0.113.20: under require each would be refused (403.7)",
        "FAIL: the evidence is inconclusive: keep enforcement at observe",
    ]
    assert "line(s) read from /flexnet-beacon/dev/iis in 1 page(s)" in err and "Traceback" not in err


def test_json_shape(logged, capsys) -> None:
    code, out, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--json", "--min-ready", "30")
    assert code == 1, err
    result = json.loads(out)
    assert {"ok", "verdict", "reasons", "logGroup", "region", "since", "until", "recentWindow", "recentSince", "minReadyPercent", "minDevices",
            "readyPercent", "issuerCNs", "mappings", "mappingsFrom", "totals", "statuses", "read", "malformed", "notes", "devices"} <= set(result)
    assert (result["ok"], result["verdict"], result["logGroup"], result["region"], result["minReadyPercent"], result["readyPercent"]) == (
        False, "inconclusive", GROUP, "us-east-1", 30.0, 33.33)
    assert [(r["kind"], r["code"]) for r in result["reasons"]] == [("inconclusive", "unreadable-lines"), ("not-ready", "requests-without-certificate")]
    assert result["totals"] == {"devices": 9, "ready": 3, "refusedByRule": 0, "otherIssuer": 1, "noCertificate": 2, "failing": 3,
                                "earlierWithoutCertificate": 0, "unseen": 0, "requestsWithoutCertificateRecent": 4}
    assert result["issuerCNs"] == ["Example Devices CA"] and result["issuerCNsFrom"].startswith("mtls.issuerRules of ")
    assert result["mappings"] == [{"name": "Agents - Example Devices CA", "permissionMode": "Allow", "rules": ["Issuer.CN=Example Devices CA"]}]
    assert result["agentPaths"] == ["/ManageSoftDL/", "/ManageSoftRL/"]  # from beacons[].agentUrls
    devices = by_identity(result)
    enrolled = devices["laptop-0002"]
    assert (enrolled["state"], enrolled["kind"], enrolled["requests"], enrolled["lastStatus"]) == ("ready", "certificate", 1, "200")
    first = dt.datetime.fromisoformat(enrolled["firstSeen"].replace("Z", "+00:00"))
    assert first == RECORDED_NOW.replace(hour=6, minute=15, second=0) + logged["delta"]  # its own request, not the address's
    assert enrolled["certificate"] == {
        "subject": "C=US, O=Example Corp, CN=laptop-0002",
        "issuer": "C=US, O=Example Corp, CN=Example Devices CA",
        "issuerCN": "Example Devices CA",
        "issuerConfigured": True,
        "issuerRecognisedByServer": True,
        "serial": "4f1a09773d",
        "flags": 1,
        "mapping": "Agents - Example Devices CA",
    }
    assert enrolled["beacon"] == f"beacon-1 ({BEACON_1})" and enrolled["clientIp"] == "203.0.113.20"
    assert enrolled["userAgent"] == "FlexNet Inventory Agent/2024 R1" and enrolled["why"] == "admitted by Allow mapping 'Agents - Example Devices CA'"
    address = devices["203.0.113.20"]  # the old code merged these two requests into laptop-0002 (same address and user agent)
    assert (address["kind"], address["state"], address["requests"], address["certificate"]) == ("address", "no-certificate", 2, None)
    assert address["certificatesFromTheSameAddress"] == ["laptop-0002"]
    assert address["withoutCertificate"] == {"downloads": 2, "uploads": 0, "recentDownloads": 2, "recentUploads": 0}
    revoked = devices["laptop-0007"]
    assert (revoked["state"], revoked["lastStatus"], revoked["statuses"]) == ("failing", "403.13", {"200": 1, "403.13": 1})
    assert "revoked" in revoked["lastStatusMeaning"] and revoked["why"].startswith("refused in the recent window: 403.13 x1")
    assert devices["kiosk-0003"]["certificate"]["issuerRecognisedByServer"] is False
    assert devices["laptop-0100"]["state"] == "other-issuer" and devices["laptop-0100"]["certificate"]["issuerConfigured"] is False
    assert devices["laptop-0042"]["certificate"]["subject"] == 'C=US, O="Example, Inc.", CN=laptop-0042'
    assert devices["laptop-0055"]["beacon"] == BEACON_2  # not among the outputs' beacons: the stream name
    anonymous = devices["198.51.100.77"]
    assert (anonymous["kind"], anonymous["state"], anonymous["certificate"], anonymous["requests"]) == ("address", "no-certificate", None, 2)
    assert anonymous["userAgent"] == "Mozilla/4.0 (compatible; FlexNet Agent 2019)"
    assert [d["state"] for d in result["devices"]] == ["failing"] * 3 + ["other-issuer"] + ["no-certificate"] * 2 + ["ready"] * 3
    statuses = {s["status"]: s for s in result["statuses"]}
    assert statuses["403.16"] == {"status": "403.16", "meaning": "client certificate untrusted or invalid", "requests": 1, "devices": 1}
    assert statuses["200"] == {"status": "200", "meaning": "success", "requests": 12, "devices": 7} and list(statuses)[:3] == ["403.13", "403.16", "403.17"]
    assert result["read"]["requests"] == 15 and result["read"]["recentRequests"] == 15 and result["read"]["ignoredOtherPaths"] == 2
    assert result["read"]["fieldsHeaders"] == 3 and result["read"]["streamsWithoutFieldsLine"] == {}
    assert result["malformed"]["count"] == 2 and len(result["malformed"]["examples"]) == 2
    assert result["malformed"]["examples"][0]["line"].endswith("GET /ManageSoftDL/")


def clean_fleet(now: dt.datetime) -> list[str]:
    """8 devices in the last hours, every request with a certificate: 3 ready, 1 other-issuer, 4 refused."""
    start = now - dt.timedelta(hours=3)
    lines = header(start)
    for number in range(8):
        at = start + dt.timedelta(minutes=number)
        status = "403 13" if number >= 4 else "200 0"
        issuer = "Other Corp Issuing CA" if number == 3 else "Example Devices CA"
        lines.append(line(at, f"198.51.100.{number}", cert=Cert(f"laptop-{number:04d}", f"0{number}", issuer=issuer), status=status))
    return lines


@pytest.mark.parametrize(("min_ready", "code"), [("37.5", 0), ("37.6", 1)])  # 3 of 8 ready: exactly 37.5%
def test_min_ready_exit_codes(env, capsys, min_ready, code) -> None:
    put_now(BEACON_1, clean_fleet(dt.datetime.now(dt.timezone.utc)))
    got, out, err = run(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", min_ready)
    assert got == code, err
    last = out.splitlines()[-1]
    if code:
        assert out.splitlines()[-2:] == [f"not ready: ready share 37.5% is below --min-ready {float(min_ready):g}%", "FAIL: not ready: keep enforcement at observe"]
    else:
        assert last == f"ok: ready share 37.5% reaches --min-ready {float(min_ready):g}%, no request without a certificate in the recent window"


def test_issuer_cn_flag_and_all_paths(logged, capsys) -> None:
    code, out, _ = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--json", "--issuer-cn", "Other Corp Issuing CA", "--all-paths")
    result = json.loads(out)
    devices = by_identity(result)
    assert devices["laptop-0100"]["state"] == "ready" and devices["laptop-0001"]["state"] == "other-issuer"
    assert devices["192.0.2.99"]["statuses"] == {"200": 1, "404": 1}  # the scanner counts now
    assert result["totals"]["devices"] == 10 and result["issuerCNsFrom"] == "--issuer-cn" and result["agentPaths"] is None
    assert result["mappings"] == [{"name": "Agents - Other Corp Issuing CA", "permissionMode": "Allow", "rules": ["Issuer.CN=Other Corp Issuing CA"]}]
    code, out, _ = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--top", "2")
    assert "... 7 more device(s) (all in --json)" in out


def test_many_pages_and_progress(env, capsys, monkeypatch) -> None:
    """More events than one page: the code's page size is forced small; every page is read,
    devices span pages and streams, progress goes to stderr. Devices 30-34 sent requests without
    a certificate before the recent window (--recent 4h) and with one in it: those requests are
    listed per address, not merged, and do not block; devices 35-39 never sent one: they do."""
    monkeypatch.setattr(readiness, "PAGE_LIMIT", 37)
    monkeypatch.setattr(readiness, "PROGRESS_SECONDS", 0.0)
    pages: list[int] = []
    hooks = Hooks(monkeypatch)
    hooks.after("logs", "FilterLogEvents", lambda parsed: pages.append(len(parsed.get("events", []))))
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=5)
    for beacon, stream in enumerate((BEACON_1, BEACON_2)):
        lines = header(start)
        for minute in range(120):
            for device in range(2):
                number = beacon * 2 + device + 4 * (minute % 10)  # 40 devices, every one on every page range
                at = start + dt.timedelta(minutes=minute, seconds=device)
                cert = None if number >= 35 or (number >= 30 and minute < 60) else Cert(f"device-{number:04d}", f"1a-{number:02x}")
                lines.append(line(at, f"198.51.100.{number}", cert=cert))
        put_lines(stream, shifted(lines, dt.timedelta(0)))
    code, out, err = run(capsys, "readiness", "--region", "us-east-1", "--stack", "dev", "--issuer-cn", "Example Devices CA", "--json",
                         "--min-ready", "87.5", "--recent", "4h")
    assert code == 1, err
    result = json.loads(out)
    assert len(pages) == result["read"]["pages"] and len(pages) >= (2 * (4 + 240)) // 37
    assert max(pages) == 37 and sum(pages) == 2 * (4 + 240) == result["read"]["events"]
    assert result["totals"] == {"devices": 40, "ready": 35, "refusedByRule": 0, "otherIssuer": 0, "noCertificate": 5, "failing": 0,
                                "earlierWithoutCertificate": 5, "unseen": 0, "requestsWithoutCertificateRecent": 30}
    assert result["verdict"] == "not-ready" and [r["code"] for r in result["reasons"]] == ["requests-without-certificate"]
    devices = by_identity(result)
    assert devices["device-0032"]["requests"] == 6 and devices["device-0032"]["state"] == "ready"  # its 6 with a certificate only
    assert devices["198.51.100.32"]["state"] == "earlier-no-certificate" and devices["198.51.100.32"]["recentRequests"] == 0
    assert devices["198.51.100.37"]["state"] == "no-certificate"
    assert result["mappingsFrom"] == "stacks/Pulumi.dev.yaml" and result["issuerCNsFrom"] == "--issuer-cn"
    progress = [text for text in err.splitlines() if re.match(r"ops: [\d,]+ line\(s\) read from /flexnet-beacon/dev/iis in \d+ page\(s\)", text)]
    assert len(progress) >= 5, err


def test_window_starting_inside_a_log_file_reads_the_header_before_it(logged, capsys) -> None:
    """--since 3h: both streams' #Fields: lines are older than the window (beacon-1's from the
    06:00 restart, beacon-2's from midnight); each is looked up once, the lines parse."""
    code, out, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--since", "3h", "--json")
    assert code == 1, err  # the stray line is 1 of 6 lines
    result = json.loads(out)
    assert result["read"]["fieldsHeadersFromBeforeTheWindow"] == 2 and result["malformed"]["count"] == 1  # the stray line
    assert result["read"]["streamsWithoutFieldsLine"] == {} and [r["code"] for r in result["reasons"] if r["kind"] == "inconclusive"] == ["unreadable-lines"]
    devices = by_identity(result)
    assert set(devices) == {"laptop-0001", "laptop-0042", "laptop-0055", "198.51.100.77"}
    assert devices["laptop-0055"]["lastStatus"] == "403.17"
    assert any("began inside a log file" in n for n in result["notes"])


def test_lines_without_any_header_and_junk_are_inconclusive(env, capsys) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
    junk = [
        f"{now:%Y-%m-%d %H:%M:%S} 10.0.1.10 GET /ManageSoftDL/ - 443 - 198.51.100.1 agent - 200 0 0 12 - - - 0",
        "\x00\x01\xff binary",
        "#Fields:",
        "#Remark: a remark",
    ]
    put_lines(BEACON_1, [(int(now.timestamp() * 1000) + i, text) for i, text in enumerate(junk)])
    code, out, err = run(capsys, "--stack-outputs", env["outputs"], "readiness", "--json", "--min-ready", "0")
    assert code == 1 and "Traceback" not in err  # inconclusive at any --min-ready
    result = json.loads(out)
    assert result["malformed"]["count"] == 3 and result["totals"]["devices"] == 0
    reasons = [e["reason"] for e in result["malformed"]["examples"]]
    assert reasons == ["no #Fields: line before it in its log stream"] * 2 + ["#Fields: directive without field names"]
    assert result["malformed"]["examples"][1]["line"] == "\\x00\\x01\\xff binary"
    assert result["verdict"] == "inconclusive" and result["ok"] is False
    assert [r["code"] for r in result["reasons"]] == ["no-agent-requests", "unreadable-lines", "no-fields-line"]
    assert result["read"]["streamsWithoutFieldsLine"] == {BEACON_1: 2}
    assert f"1 stream(s) whose #Fields: line cannot be found: {BEACON_1}" in result["reasons"][2]["text"]


@pytest.mark.parametrize("min_ready", [None, "0", "100"])
def test_an_empty_log_group_is_inconclusive_and_says_what_to_check(env, capsys, min_ready) -> None:
    boto_client("logs").create_log_group(logGroupName=GROUP)
    code, out, _ = run(capsys, "--stack-outputs", env["outputs"], "readiness", *(["--min-ready", min_ready] if min_ready else []))
    assert code == 1
    assert "note: no log events in /flexnet-beacon/dev/iis in the window: is the CloudWatch agent shipping the IIS logs" in out
    assert "0 device(s): 0 ready (0.0%)" in out
    last = out.splitlines()[-3:]
    assert last[0] == "inconclusive: no agent requests in the window"
    assert last[1].startswith("inconclusive: beacon beacon-1 (i-7f0c2bfe3eaaa5b58) sent no IIS log line since ")  # the one beacon of the outputs
    assert last[2] == "FAIL: the evidence is inconclusive: keep enforcement at observe"


# ---------------------------------------------------------------------------------------------
# Errors: one line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "garbage"], "--since: got 'garbage'; expected a duration like 7d, 12h, 90m, 2w or a UTC time"),
        (["--since", "0d"], "--since: got '0d'; expected a duration of more than 0"),
        (["--since", "2999-01-01"], "--since: 2999-01-01T00:00:00Z is not in the past"),
        (["--min-ready", "150"], "--min-ready: got '150'; expected a percentage from 0 to 100"),
        (["--min-ready", "most"], "--min-ready: got 'most'; expected a percentage from 0 to 100"),
        (["--top", "-1"], "--top: got '-1'; expected a whole number"),
        (["--log-group", "iis logs"], "--log-group: got 'iis logs'; expected a CloudWatch Logs group name"),
        (["--issuer-cn", " "], "--issuer-cn: got ' '; expected the CN of an issuing CA"),
        (["--stack", "prod"], "--stack prod but the stack outputs"),
        (["--recent", "yesterday"], "--recent: got 'yesterday'; expected a duration like 24h, 90m, 2d or 1w"),
        (["--recent", "0h"], "--recent: got '0h'; expected a duration of more than 0"),
        (["--min-devices", "some"], "--min-devices: got 'some'; expected a whole number"),
        (["--pki", "/nonexistent/pki"], "--pki /nonexistent/pki: no index.json (expected a scripts.pki CA directory"),
    ],
)
def test_bad_input_is_one_line_exit_2(env, capsys, args, message) -> None:
    code, out, err = run(capsys, "--stack-outputs", env["outputs"], "readiness", *args)
    assert (code, out) == (2, "")
    assert message in one_line(err)


def test_missing_facts_are_named(env, capsys) -> None:
    code, _, err = run(capsys, "readiness", "--region", "us-east-1")
    assert code == 2 and "readiness needs the IIS log group: pass --stack-outputs FILE (logGroups.iis), --stack NAME or --log-group NAME" in one_line(err)
    code, _, err = run(capsys, "readiness", "--region", "us-east-1", "--log-group", GROUP)
    assert code == 2 and ("readiness needs the configured issuing CAs: pass --stack NAME (its stacks/Pulumi.NAME.yaml), --stack-outputs FILE "
                          "(mtls.issuerRules) or --issuer-cn CN") in one_line(err)
    # A stack of this project needs neither: its stack file names the CAs (and the region); the
    # old code stopped here with "readiness needs the configured issuing CAs".
    code, _, err = run(capsys, "readiness", "--stack", "dev")
    assert code == 1 and "log group /flexnet-beacon/dev/iis not found in us-east-1" in one_line(err)
    code, _, err = run(capsys, "readiness", "--stack", "nosuchstack", "--region", "us-east-1")
    assert code == 2 and "readiness needs the configured issuing CAs" in one_line(err)
    outputs = outputs_file(env["tmp"], **{"mtls.issuerRules": None})
    code, _, err = run(capsys, "--stack-outputs", str(outputs), "readiness")
    assert code == 2 and f"stack outputs {outputs}: missing mtls.issuerRules" in one_line(err)
    outputs = outputs_file(env["tmp"], **{"mtls.issuerRules": "Example Devices CA"})
    code, _, err = run(capsys, "--stack-outputs", str(outputs), "readiness")
    assert code == 2 and "mtls.issuerRules is 'Example Devices CA'; expected a list of CNs" in one_line(err)


def test_outputs_without_the_iis_log_group_fall_back_to_the_stack_name(env, capsys) -> None:
    outputs = outputs_file(env["tmp"], **{"logGroups.iis": None})
    code, out, err = run(capsys, "--stack-outputs", str(outputs), "readiness")
    assert code == 1 and out == ""
    assert "log group /flexnet-beacon/dev/iis not found in us-east-1" in one_line(err)


def test_aws_errors(env, capsys) -> None:
    hooks = Hooks(env["monkeypatch"])
    text = "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: logs:FilterLogEvents"
    hooks.before("logs", "FilterLogEvents", lambda params: error_response("AccessDeniedException", text))
    code, _, err = run(capsys, "--stack-outputs", env["outputs"], "readiness")
    assert code == 1 and "access denied for FilterLogEvents in us-east-1: User: arn:aws:iam::123456789012:user/ops" in one_line(err)


def test_a_repeated_page_token_stops_with_an_error_not_a_partial_report(logged, capsys) -> None:
    hooks = Hooks(logged["monkeypatch"])
    hooks.after("logs", "FilterLogEvents", lambda parsed: parsed.update(nextToken="stuck"))
    code, out, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness")
    assert (code, out) == (1, "")
    assert "FilterLogEvents on /flexnet-beacon/dev/iis answered the same nextToken twice after 31 line(s)" in one_line(err)


# ---------------------------------------------------------------------------------------------
# The W3C reader and the aggregation, directly


def recorded_report(min_ready: float | None = 95.0) -> tuple[list[str], dict[str, Any]]:
    """The report of the recorded logs at their own time (2026-06-01 12:00 UTC, --since 7d,
    --recent 24h), as `readiness --stack-outputs build/dev-outputs.json --min-ready 95` prints it:
    the example in docs/operations.md."""
    reading = readiness.Reading(GROUP, RECORDED_NOW - dt.timedelta(days=7), RECORDED_NOW, pages=1)
    aggregator = Aggregator(readiness_model.AGENT_PATHS, recent_from=int((RECORDED_NOW - dt.timedelta(hours=24)).timestamp()))
    events = [(BEACON_1, 0, text) for text in recorded("iis-w3c-beacon-1.log")] + [(BEACON_2, 0, text) for text in recorded("iis-w3c-beacon-2.log")]
    reading.events = len(events)
    aggregator.feed(events)
    outputs = StackOutputs("build/dev-outputs.json", json.loads((HERE / "outputs-dev.json").read_text(encoding="utf-8")))
    found = rule_set(None, outputs, None, False)
    source = found.issuer_source
    outcome = aggregator.finish(found.issuer_cns, {BEACON_1: "beacon-1"}, found.rules)
    judgement = outcome.judgement(min_ready)
    notes = found.notes + readiness.reading_notes(outcome, reading)
    text = readiness.lines(outcome, reading, judgement, min_ready=min_ready, top=None, notes=notes, recent="24h")
    body = readiness.payload(outcome, reading, judgement, region="us-east-1", min_ready=min_ready, min_devices=None, issuer_source=source,
                             paths=readiness_model.AGENT_PATHS, notes=notes, recent="24h")
    return text, body


def test_the_runbook_example_is_this_code_s_output() -> None:
    docs = (HERE.parent.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    text, body = recorded_report()
    assert "\n".join(text) in docs
    devices = by_identity(body)
    keys = ("ok", "verdict", "reasons", "minReadyPercent", "readyPercent", "totals")
    excerpt = {**{k: body[k] for k in keys}, "devices": [devices["laptop-0002"], devices["203.0.113.20"]]}
    assert json.dumps(excerpt, indent=2) in docs


def test_w3c_header_changes_mid_stream_and_decoding() -> None:
    lines = [
        "\ufeff#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        "#Date: 2026-06-01 00:00:00",
        "#Fields: date time c-ip cs(User-Agent) sc-status crt-subject",
        "2026-06-01 00:00:01 198.51.100.1 Mozilla/5.0+(Windows+NT+10.0;+Win64) 200 C=US,+O=Example+Corp,+CN=laptop-0001\r",
        "#Fields: date time sc-status c-ip cs(User-Agent) sc-substatus crt-flags",
        "2026-06-01 06:00:00 403 198.51.100.2 - 7 0",
        "2026-06-01 06:00:01 403 198.51.100.2 -",
    ]
    got = list(w3c.parse_lines(lines))
    assert got[0] == {
        "date": "2026-06-01",
        "time": "00:00:01",
        "c-ip": "198.51.100.1",
        "cs(User-Agent)": "Mozilla/5.0+(Windows+NT+10.0;+Win64)",
        "sc-status": "200",
        "crt-subject": "C=US,+O=Example+Corp,+CN=laptop-0001",
    }
    assert w3c.decode(got[0]["cs(User-Agent)"]) == "Mozilla/5.0 (Windows NT 10.0; Win64)"
    assert got[1] == {"date": "2026-06-01", "time": "06:00:00", "sc-status": "403", "c-ip": "198.51.100.2", "cs(User-Agent)": "-", "sc-substatus": "7", "crt-flags": "0"}
    assert w3c.decode(got[1]["cs(User-Agent)"]) == ""
    assert isinstance(got[2], w3c.Malformed) and got[2].reason == "5 values for the 7 fields of the #Fields: line"
    stream = w3c.Stream()
    assert isinstance(stream.feed("2026-06-01 00:00:01 x"), w3c.Malformed)
    assert stream.feed("#Software: Microsoft Internet Information Services 10.0") is None and stream.software.endswith("10.0")


def test_w3c_quoted_values_only_when_the_plain_split_does_not_fit() -> None:
    assert w3c.split_values('a "b c" d', 3) == ["a", "b c", "d"]
    assert w3c.split_values('a "say ""hi""" d', 3) == ["a", 'say "hi"', "d"]
    assert w3c.split_values('a "b" d', 3) == ["a", '"b"', "d"]  # fits as it is: kept literally
    assert w3c.split_values('a "b c d', 3) is None  # unclosed
    assert w3c.split_values("a  b", 3) == ["a", "", "b"]
    assert w3c.split_quoted('"x"y z') is None


def test_dn_parsing_as_iis_writes_cert_subject_and_cert_issuer() -> None:
    issuer = w3c.decode("C=US,+O=Example+Corp,+CN=Example+Devices+CA")
    assert w3c.parse_dn(issuer) == [("C", "US"), ("O", "Example Corp"), ("CN", "Example Devices CA")]
    assert w3c.dn_value(issuer, "cn") == "Example Devices CA"
    assert w3c.parse_dn('C=US, O="Example, Inc.", CN="A ""quoted"" name"') == [("C", "US"), ("O", "Example, Inc."), ("CN", 'A "quoted" name')]
    assert w3c.dn_value("DC=com, DC=example, CN=Users, CN=laptop-0001", "CN") == "laptop-0001"  # most significant first
    assert w3c.dn_value(r"CN=Smith\, John; O=X", "CN") == "Smith, John"
    assert w3c.dn_value("not a name", "CN") is None
    assert (w3c.cert_flags("3"), w3c.cert_flags("-"), w3c.cert_flags("0x1"), w3c.cert_flags("x")) == (3, None, 1, None)
    assert w3c.serial_hex("04-67-F3-02") == "0467f302" and w3c.serial_hex("-") == ""


def _feed(aggregator: Aggregator, stream: str, *lines: str) -> None:
    for line in lines:
        aggregator.add(stream, line, 0)


HEADER = "#Fields: date time c-ip cs(User-Agent) cs-uri-stem sc-status sc-substatus crt-subject crt-issuer crt-serial crt-flags"
CERT = "C=US,+CN=dev-1 C=US,+CN=Example+Devices+CA 0a 1"


def test_aggregation_never_merges_by_address_and_judges_every_recent_request() -> None:
    """The old code folded 10.0.0.1's requests without a certificate into dev-1 (same address and
    user agent, all before dev-1's certificate): a device absorbed that way hid its own, or another
    device's, refusal under require. Now they stay per address and make the stack not ready."""
    agg = Aggregator(["/ManageSoftDL/"])
    _feed(
        agg,
        "b1",
        HEADER,
        "2026-06-01 00:00:00 10.0.0.1 agent /ManageSoftDL/ 200 0 - - - 0",  # dev-1 before its certificate, or another device
        "2026-06-01 00:10:00 10.0.0.1 agent /ManageSoftDL/ 200 0 " + CERT,  # dev-1 with it
        "2026-06-01 00:00:00 10.0.0.9 agent /ManageSoftDL/ 200 0 C=US,+CN=dev-9 C=US,+CN=Example+Devices+CA 0b 1",
        "2026-06-01 00:20:00 10.0.0.9 agent /ManageSoftDL/ 200 0 - - - 0",  # NAT: another device without one, later
        "2026-06-01 00:30:00 10.0.0.5 agent /ManageSoftdl/x 401 2 C=US,+CN=dev-5 C=US,+CN=Example+Devices+CA 0c 1",
        "2026-06-01 00:31:00 10.0.0.5 agent /other 200 0 - - - 0",  # not an agent path
    )
    # out of order across streams: the newest request is shown, whatever order the pages come in
    _feed(agg, "b2", HEADER, "2026-06-01 00:05:00 10.0.0.1 agent /ManageSoftDL/ 403 7 - - - 0")
    outcome = agg.finish(["Example Devices*"])  # IIS matchCriteria wildcard
    states = {d.identity: (d.state, d.requests, d.last_status) for d in outcome.devices}
    assert states == {
        "dev-1": ("ready", 1, "200"),
        "10.0.0.1": ("no-certificate", 2, "403.7"),
        "dev-9": ("ready", 1, "200"),
        "10.0.0.9": ("no-certificate", 1, "200"),
        "dev-5": ("failing", 1, "401.2"),
    }
    assert by_identity({"devices": [d.to_dict() for d in outcome.devices]})["10.0.0.9"]["certificatesFromTheSameAddress"] == ["dev-9"]
    assert agg.ignored_paths == 1 and outcome.totals["ready"] == 2 and outcome.without_certificate_recent == 3
    assert outcome.below(41) and not outcome.below(40) and not outcome.below(None)
    judgement = outcome.judgement(0)  # any request without a certificate fails the verdict, whatever the threshold
    assert (judgement.state, [c for _, c, _ in judgement.reasons]) == ("not-ready", ["requests-without-certificate"])


def test_a_configured_issuer_iis_does_not_recognise_is_not_ready_and_is_named() -> None:
    agg = Aggregator()
    _feed(agg, "b1", HEADER, "2026-06-01 00:00:00 10.0.0.1 agent /ManageSoftDL/ 200 0 C=US,+CN=dev-1 C=US,+CN=Example+Devices+CA 0a 3")
    outcome = agg.finish(["Example Devices CA"])
    device = outcome.devices[0]
    assert (device.state, device.issuer_configured, device.issuer_recognised) == ("other-issuer", True, False)
    notes = readiness.reading_notes(outcome, readiness.Reading(GROUP, RECORDED_NOW, RECORDED_NOW, events=1))
    assert any("issuer CN is a configured CA but IIS does not recognise the issuer (CERT_FLAGS bit 1), e.g. dev-1" in n for n in notes)


def test_aggregation_without_the_certificate_fields_multi_line_events_and_crlf() -> None:
    agg = Aggregator()
    agg.add("b1", "#Fields: date time c-ip cs(User-Agent) sc-status\r\n2026-06-01 00:00:00 10.0.0.1 a 200\r\n", 0)
    agg.add("b1", "2026-06-01 25:00:00 10.0.0.1 a 200", 0)
    agg.add("b1", "2026-13-01 00:00:00 10.0.0.1 a 200", 0)
    outcome = agg.finish(["CA"])
    assert agg.without_cert_fields == 1 and agg.malformed == 2 and [d.state for d in outcome.devices] == ["no-certificate"]
    assert agg.malformed_examples[0]["reason"] == "date/time 2026-06-01 25:00:00 is not yyyy-mm-dd hh:mm:ss"


def test_status_meanings_and_since() -> None:
    assert status_meaning("403.7") == "client certificate required"
    assert status_meaning("401.1").startswith("logon failed: the account the certificate mapping names cannot log on")
    assert status_meaning("401.2").startswith("logon failed by server configuration")
    assert status_meaning("401.99") == "unauthorized (sub-status 99)" and status_meaning("503") == "server error"
    now = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc)
    assert parse_since("7d", now) == now - dt.timedelta(days=7)
    assert parse_since("90 min", now) == now - dt.timedelta(minutes=90)
    assert parse_since("2w", now) == now - dt.timedelta(days=14)
    assert parse_since("2026-05-25", now) == dt.datetime(2026, 5, 25, tzinfo=dt.timezone.utc)
    assert parse_since("2026-05-31T10:00:00+02:00", now) == dt.datetime(2026, 5, 31, 8, tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------------------------------------
# --record: the verdict pulumi up reads (components/require_gate.py), end to end against moto


@pytest.mark.parametrize(("min_ready", "passed"), [("37.5", True), ("37.6", False)])
def test_record_keeps_the_verdict_the_update_checks(env, capsys, min_ready, passed) -> None:
    from components.config import load
    from components.require_gate import switch_problem, verdict_parameter
    from conftest import stack_raw

    put_now(BEACON_1, clean_fleet(dt.datetime.now(dt.timezone.utc)))
    got, out, err = run(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", min_ready, "--record")
    assert got == (0 if passed else 1), err
    name = verdict_parameter("dev")
    assert f"recorded in {name}: {'passed' if passed else 'not passed'} at --min-ready {float(min_ready):g}" in out
    stored = boto_client("ssm").get_parameter(Name=name)["Parameter"]
    verdict = json.loads(stored["Value"])
    assert stored["Type"] == "String"
    assert verdict["stack"] == "dev" and verdict["passed"] is passed and verdict["minReadyPercent"] == float(min_ready)
    assert verdict["devices"] == 8 and verdict["ready"] == 3 and verdict["lines"] > 0 and len(verdict["logsSha256"]) == 64
    assert verdict["verdict"] == ("ready" if passed else "not-ready") and verdict["reasons"] == ([] if passed else ["not-ready:below-min-ready"])
    assert verdict["requestsWithoutCertificateRecent"] == 0 and verdict["recentSince"].endswith("Z")
    assert "identity" not in stored["Value"] and "laptop" not in stored["Value"], "counts only, no device names"
    # What the program does with it: a deployed observe stack whose file says require.
    raw, region = stack_raw("dev")
    raw.update(enforcement="require", requireMinReadyPercent="37")
    cfg = load(raw, "dev", region)
    deployed = json.dumps({"enforcement": "observe", "requireMinReadyPercent": 37})
    refused, _ = switch_problem(cfg, deployed, stored["Value"], False, dt.datetime.now(dt.timezone.utc))
    assert (refused is None) is passed, refused


def test_record_of_inconclusive_evidence_does_not_pass(logged, capsys) -> None:
    """The recorded logs are 6.5% unreadable: the verdict pulumi up reads says passed false, at any threshold."""
    from components.require_gate import verdict_parameter

    got, out, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--min-ready", "0", "--record")
    assert got == 1, err
    verdict = json.loads(boto_client("ssm").get_parameter(Name=verdict_parameter("dev"))["Parameter"]["Value"])
    assert (verdict["passed"], verdict["verdict"]) == (False, "inconclusive")
    assert verdict["reasons"] == ["inconclusive:unreadable-lines", "not-ready:requests-without-certificate"]
    assert "203.0.113" not in json.dumps(verdict) and "recorded in /flexnet-beacon/dev/readiness-verdict: not passed at --min-ready 0" in out


def test_record_needs_a_threshold_and_says_so_before_reading_anything(logged, capsys) -> None:
    got, _, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--record")
    assert got == 2 and "--record: got no --min-ready" in one_line(err)
