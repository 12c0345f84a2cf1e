"""readiness: IIS W3C logs in CloudWatch Logs (moto on loopback), judged per device.

The recorded logs (tests/ops_fixtures/iis-w3c-beacon-*.log) are lines as IIS 10 writes them
with the observe-mode custom fields (crt-subject, crt-issuer, crt-serial, crt-flags): directive
lines, '+' for spaces, '-' for empty values, a restart that changes the fields mid-file, a
truncated line and a stray one. They are recorded around 2026-06-01 12:00 UTC and shifted to the
last hours before they go into moto (CloudWatch Logs takes events of the last 14 days only),
one event per line as the CloudWatch agent ships them.

Devices in the recording (configured issuing CA: Example Devices CA):
  laptop-0001  certificate, both beacons, 200                         ready
  laptop-0002  no certificate first (203.0.113.20), then a certificate  ready (one device)
  laptop-0042  certificate with a quoted O in its subject               ready
  laptop-0100  certificate of Other Corp Issuing CA, 200                other-issuer
  198.51.100.77 + its user agent, never a certificate                  no-certificate
  laptop-0007  200, then 403.13 (revoked)                               failing
  kiosk-0003   certificate of an issuer IIS does not know, 403.16       failing
  laptop-0055  403.17 (expired), on beacon-2                            failing
plus a scanner on / and /.env (not an agent path: ignored) and two malformed lines.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from scripts.ops import fleet, readiness, w3c
from scripts.ops.fleet import Aggregator, status_meaning
from scripts.ops.readiness import parse_since
from tests.ops_fixtures.support import HERE, Hooks, aws_env, boto_client, error_response, outputs_file, run

GROUP = "/flexnet-beacon/dev/iis"
BEACON_1 = "i-7f0c2bfe3eaaa5b58"  # beacon-1 of outputs-dev.json
BEACON_2 = "i-313de044c3a981bf5"
RECORDED_NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})")


# ---------------------------------------------------------------------------------------------
# Putting W3C lines into moto


def shifted(lines: list[str], delta: dt.timedelta) -> list[tuple[int, str]]:
    """(timestamp ms, line) with the line's date/time (data lines, #Date:) moved by delta; a line
    without a time of its own (#Fields:, #Software:, junk) takes the time of the line before it
    (the #Date: of its header), the first ones that of the first line with a time."""
    out: list[tuple[int | None, str]] = []
    for line in lines:
        prefix = "#Date: " if line.startswith("#Date: ") else ""
        body = line[len(prefix):]
        m = _STAMP.match(body)
        if m:
            moment = dt.datetime.fromisoformat(f"{m[1]}T{m[2]}+00:00") + delta
            out.append((int(moment.timestamp() * 1000), f"{prefix}{moment:%Y-%m-%d %H:%M:%S}{body[m.end():]}"))
        else:
            out.append((None, line))
    known = [stamp for stamp, _ in out if stamp is not None]
    previous = known[0] if known else 0
    events = []
    for stamp, line in out:
        previous = stamp if stamp is not None else previous
        events.append((previous, line))
    return events


def put_lines(stream: str, events: list[tuple[int, str]]) -> None:
    logs = boto_client("logs")
    try:
        logs.create_log_group(logGroupName=GROUP)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    batch = [{"timestamp": stamp, "message": line} for stamp, line in events]
    for start in range(0, len(batch), 5000):
        logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=batch[start:start + 5000])


def recorded(name: str) -> list[str]:
    return (HERE / name).read_text(encoding="utf-8").splitlines()


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
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"readiness: {GROUP}, ") and lines[0].endswith("configured issuing CAs: Example Devices CA")
    assert lines[2].split()[:4] == ["STATE", "DEVICE", "REQUESTS", "FIRST"]
    rows = {line.split()[1]: line.split() for line in lines[3:11]}
    assert [line.split()[0] for line in lines[3:11]] == ["FAILING"] * 3 + ["OTHER-ISSUER", "NO-CERTIFICATE"] + ["ready"] * 3
    assert rows["laptop-0007"][5] == "403.13" and " ".join(rows["laptop-0007"]).endswith("403.13 x1, 200 x1")
    assert rows["laptop-0002"][2] == "3"  # its two requests without a certificate joined it
    assert "Other Corp Issuing CA (not configured)" in out
    assert "Kiosk Vendor Device CA (not configured) (unrecognised by IIS)" in out
    assert "198.51.100.77 Mozilla/4.0 (compatible; FlexNet Agent 2019)" in out
    assert re.search(r"^403\.13 +1 +1 +client certificate revoked", out, re.M)
    assert re.search(r"^403\.17 +1 +1 +client certificate expired or not yet valid", out, re.M)
    assert "2 to other paths (not agents) ignored, 2 malformed" in out
    assert f"malformed ({BEACON_1}): 7 values for the 25 fields of the #Fields: line in force: " in out
    assert "malformed (i-7f0c2bfe3eaaa5b58): 4 values for the 22 fields of the #Fields: line in force: \\tnot a log line" in out
    assert "8 device(s): 3 ready (37.5%), 1 with a certificate from another issuer, 1 without a certificate, 3 failing (401/403)" in out
    assert lines[-1] == "ready share 37.5% (no --min-ready given)"
    assert "line(s) read from /flexnet-beacon/dev/iis in 1 page(s)" in err and "Traceback" not in err


def test_json_shape(logged, capsys) -> None:
    code, out, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--json", "--min-ready", "30")
    assert code == 0, err
    result = json.loads(out)
    assert {"ok", "logGroup", "region", "since", "until", "minReadyPercent", "readyPercent", "issuerCNs", "totals", "statuses", "read", "malformed", "notes", "devices"} <= set(result)
    assert (result["ok"], result["logGroup"], result["region"], result["minReadyPercent"], result["readyPercent"]) == (True, GROUP, "us-east-1", 30.0, 37.5)
    assert result["totals"] == {"devices": 8, "ready": 3, "otherIssuer": 1, "noCertificate": 1, "failing": 3}
    assert result["issuerCNs"] == ["Example Devices CA"] and result["issuerCNsFrom"].startswith("mtls.issuerRules of ")
    assert result["agentPaths"] == ["/ManageSoftDL/", "/ManageSoftRL/"]  # from beacons[].agentUrls
    devices = by_identity(result)
    moved = devices["laptop-0002"]
    assert (moved["state"], moved["kind"], moved["requests"], moved["lastStatus"]) == ("ready", "certificate", 3, "200")
    first = dt.datetime.fromisoformat(moved["firstSeen"].replace("Z", "+00:00"))
    assert first == RECORDED_NOW.replace(hour=0, minute=1, second=12) + logged["delta"]  # the request without a certificate
    assert moved["certificate"] == {
        "subject": "C=US, O=Example Corp, CN=laptop-0002",
        "issuer": "C=US, O=Example Corp, CN=Example Devices CA",
        "issuerCN": "Example Devices CA",
        "issuerConfigured": True,
        "issuerRecognisedByServer": True,
        "serial": "4f1a09773d",
        "flags": 1,
    }
    assert moved["beacon"] == f"beacon-1 ({BEACON_1})" and moved["clientIp"] == "203.0.113.20"
    assert moved["userAgent"] == "FlexNet Inventory Agent/2024 R1"
    revoked = devices["laptop-0007"]
    assert (revoked["state"], revoked["lastStatus"], revoked["statuses"]) == ("failing", "403.13", {"200": 1, "403.13": 1})
    assert "revoked" in revoked["lastStatusMeaning"]
    assert devices["kiosk-0003"]["certificate"]["issuerRecognisedByServer"] is False
    assert devices["laptop-0100"]["state"] == "other-issuer" and devices["laptop-0100"]["certificate"]["issuerConfigured"] is False
    assert devices["laptop-0042"]["certificate"]["subject"] == 'C=US, O="Example, Inc.", CN=laptop-0042'
    assert devices["laptop-0055"]["beacon"] == BEACON_2  # not among the outputs' beacons: the stream name
    anonymous = devices["198.51.100.77 Mozilla/4.0 (compatible; FlexNet Agent 2019)"]
    assert (anonymous["kind"], anonymous["state"], anonymous["certificate"], anonymous["requests"]) == ("address", "no-certificate", None, 2)
    assert [d["state"] for d in result["devices"]] == ["failing"] * 3 + ["other-issuer", "no-certificate"] + ["ready"] * 3
    statuses = {s["status"]: s for s in result["statuses"]}
    assert statuses["403.16"] == {"status": "403.16", "meaning": "client certificate untrusted or invalid", "requests": 1, "devices": 1}
    assert statuses["200"]["requests"] == 12 and list(statuses)[:3] == ["403.13", "403.16", "403.17"]
    assert result["read"]["requests"] == 15 and result["read"]["ignoredOtherPaths"] == 2
    assert result["read"]["fieldsHeaders"] == 3 and result["read"]["addressesMergedIntoCertificateDevices"] == 1
    assert result["malformed"]["count"] == 2 and len(result["malformed"]["examples"]) == 2
    assert result["malformed"]["examples"][0]["line"].endswith("GET /ManageSoftDL/")


@pytest.mark.parametrize(("min_ready", "code"), [("37.5", 0), ("37.6", 1)])  # 3 of 8 ready: exactly 37.5%
def test_min_ready_exit_codes(logged, capsys, min_ready, code) -> None:
    got, out, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--min-ready", min_ready)
    assert got == code, err
    last = out.splitlines()[-1]
    if code:
        assert last == f"FAIL: ready share 37.5% is below --min-ready {float(min_ready):g}%: keep enforcement at observe"
    else:
        assert last == f"ok: ready share 37.5% reaches --min-ready {float(min_ready):g}%"


def test_issuer_cn_flag_and_all_paths(logged, capsys) -> None:
    code, out, _ = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--json", "--issuer-cn", "Other Corp Issuing CA", "--all-paths")
    result = json.loads(out)
    devices = by_identity(result)
    assert devices["laptop-0100"]["state"] == "ready" and devices["laptop-0001"]["state"] == "other-issuer"
    assert devices["192.0.2.99 Mozilla/5.0 zgrab/0.x"]["statuses"] == {"200": 1, "404": 1}  # the scanner counts now
    assert result["totals"]["devices"] == 9 and result["issuerCNsFrom"] == "--issuer-cn" and result["agentPaths"] is None
    code, out, _ = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--top", "2")
    assert "... 6 more device(s) (all in --json)" in out


def test_many_pages_and_progress(env, capsys, monkeypatch) -> None:
    """More events than one page: the code's page size is forced small; every page is read,
    devices span pages and streams, progress goes to stderr."""
    monkeypatch.setattr(readiness, "PAGE_LIMIT", 37)
    monkeypatch.setattr(readiness, "PROGRESS_SECONDS", 0.0)
    pages: list[int] = []
    hooks = Hooks(monkeypatch)
    hooks.after("logs", "FilterLogEvents", lambda parsed: pages.append(len(parsed.get("events", []))))
    fields = "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken crt-subject crt-issuer crt-serial crt-flags"
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=5)
    for beacon, stream in enumerate((BEACON_1, BEACON_2)):
        lines = ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", f"#Date: {start:%Y-%m-%d %H:%M:%S}", f"#Fields: {fields}"]
        for minute in range(120):
            for device in range(2):
                number = beacon * 2 + device + 4 * (minute % 10)  # 40 devices, every one on every page range
                at = start + dt.timedelta(minutes=minute, seconds=device)
                ip, agent = f"198.51.100.{number}", "FlexNet+Inventory+Agent/2024+R1"
                if number >= 35 or (number >= 30 and minute < 60):  # 5 never, 5 from minute 60 on
                    cert = "- - - 0"
                else:
                    cert = f"C=US,+O=Example+Corp,+CN=device-{number:04d} C=US,+O=Example+Corp,+CN=Example+Devices+CA 1a-{number:02x} 1"
                lines.append(f"{at:%Y-%m-%d %H:%M:%S} 10.0.1.10 GET /ManageSoftDL/ - 443 - {ip} {agent} - 200 0 0 12 {cert}")
        put_lines(stream, shifted(lines, dt.timedelta(0)))
    code, out, err = run(capsys, "readiness", "--region", "us-east-1", "--stack", "dev", "--issuer-cn", "Example Devices CA", "--json", "--min-ready", "87.5")
    assert code == 0, err
    result = json.loads(out)
    assert len(pages) == result["read"]["pages"] and len(pages) >= (2 * (4 + 240)) // 37
    assert max(pages) == 37 and sum(pages) == 2 * (4 + 240) == result["read"]["events"]
    assert result["totals"] == {"devices": 40, "ready": 35, "otherIssuer": 0, "noCertificate": 5, "failing": 0}
    assert result["read"]["addressesMergedIntoCertificateDevices"] == 5
    assert by_identity(result)["device-0032"]["requests"] == 12  # 6 without, 6 with a certificate
    progress = [line for line in err.splitlines() if re.match(r"ops: [\d,]+ line\(s\) read from /flexnet-beacon/dev/iis in \d+ page\(s\)", line)]
    assert len(progress) >= 5, err


def test_window_starting_inside_a_log_file_reads_the_header_before_it(logged, capsys) -> None:
    """--since 3h: both streams' #Fields: lines are older than the window (beacon-1's from the
    06:00 restart, beacon-2's from midnight); each is looked up once, the lines parse."""
    code, out, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--since", "3h", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["read"]["fieldsHeadersFromBeforeTheWindow"] == 2 and result["malformed"]["count"] == 1  # the stray line
    devices = by_identity(result)
    assert set(devices) == {"laptop-0001", "laptop-0042", "laptop-0055", "198.51.100.77 Mozilla/4.0 (compatible; FlexNet Agent 2019)"}
    assert devices["laptop-0055"]["lastStatus"] == "403.17"
    assert any("began inside a log file" in n for n in result["notes"])


def test_lines_without_any_header_and_junk_are_counted_not_fatal(env, capsys) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
    junk = [
        f"{now:%Y-%m-%d %H:%M:%S} 10.0.1.10 GET /ManageSoftDL/ - 443 - 198.51.100.1 agent - 200 0 0 12 - - - 0",
        "\x00\x01\xff binary",
        "#Fields:",
        "#Remark: a remark",
    ]
    put_lines(BEACON_1, [(int(now.timestamp() * 1000) + i, line) for i, line in enumerate(junk)])
    code, out, err = run(capsys, "--stack-outputs", env["outputs"], "readiness", "--json", "--min-ready", "50")
    assert code == 1 and "Traceback" not in err  # no device is ready
    result = json.loads(out)
    assert result["malformed"]["count"] == 3 and result["totals"]["devices"] == 0
    reasons = [e["reason"] for e in result["malformed"]["examples"]]
    assert reasons == ["no #Fields: line before it in its log stream"] * 2 + ["#Fields: directive without field names"]
    assert result["malformed"]["examples"][1]["line"] == "\\x00\\x01\\xff binary"
    assert any("no agent requests in the window" in n for n in result["notes"])


def test_an_empty_log_group_says_what_to_check(env, capsys) -> None:
    boto_client("logs").create_log_group(logGroupName=GROUP)
    code, out, _ = run(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "100")
    assert code == 1
    assert "note: no log events in /flexnet-beacon/dev/iis in the window: is the CloudWatch agent shipping the IIS logs" in out
    assert "0 device(s): 0 ready (0.0%)" in out


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
    ],
)
def test_bad_input_is_one_line_exit_2(env, capsys, args, message) -> None:
    code, out, err = run(capsys, "--stack-outputs", env["outputs"], "readiness", *args)
    assert (code, out) == (2, "")
    assert message in one_line(err)


def test_missing_facts_are_named(env, capsys) -> None:
    code, _, err = run(capsys, "readiness", "--region", "us-east-1")
    assert code == 2 and "readiness needs the IIS log group: pass --stack-outputs FILE (logGroups.iis), --stack NAME or --log-group NAME" in one_line(err)
    code, _, err = run(capsys, "readiness", "--region", "us-east-1", "--stack", "dev")
    assert code == 2 and "readiness needs the configured issuing CAs: pass --stack-outputs FILE (mtls.issuerRules) or --issuer-cn CN" in one_line(err)
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
    """The report of the recorded logs at their own time (2026-06-01 12:00 UTC, --since 7d), as
    `readiness --stack-outputs tests/ops_fixtures/outputs-dev.json --min-ready 95` prints it:
    the example in docs/operations.md."""
    reading = readiness.Reading(GROUP, RECORDED_NOW - dt.timedelta(days=7), RECORDED_NOW, pages=1)
    aggregator = Aggregator(fleet.AGENT_PATHS)
    events = [(BEACON_1, 0, line) for line in recorded("iis-w3c-beacon-1.log")] + [(BEACON_2, 0, line) for line in recorded("iis-w3c-beacon-2.log")]
    reading.events = len(events)
    aggregator.feed(events)
    outcome = aggregator.finish(["Example Devices CA"], {BEACON_1: "beacon-1"})
    notes = readiness.reading_notes(outcome, reading)
    text = readiness.lines(outcome, reading, min_ready=min_ready, top=None, notes=notes)
    body = readiness.payload(outcome, reading, region="us-east-1", min_ready=min_ready, issuer_source="mtls.issuerRules of build/dev-outputs.json", paths=fleet.AGENT_PATHS, notes=notes)
    return text, body


def test_the_runbook_example_is_this_code_s_output() -> None:
    docs = (HERE.parent.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    text, body = recorded_report()
    assert "\n".join(text) in docs
    devices = by_identity(body)
    excerpt = {**{k: body[k] for k in ("ok", "minReadyPercent", "readyPercent", "totals")}, "devices": [devices["laptop-0002"], devices["laptop-0007"]]}
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


def test_aggregation_devices_that_move_and_devices_behind_one_address() -> None:
    agg = Aggregator(["/ManageSoftDL/"])
    _feed(
        agg,
        "b1",
        HEADER,
        "2026-06-01 00:00:00 10.0.0.1 agent /ManageSoftDL/ 200 0 - - - 0",  # dev-1 before its certificate
        "2026-06-01 00:10:00 10.0.0.1 agent /ManageSoftDL/ 200 0 " + CERT,  # dev-1 with it
        "2026-06-01 00:00:00 10.0.0.9 agent /ManageSoftDL/ 200 0 C=US,+CN=dev-9 C=US,+CN=Example+Devices+CA 0b 1",
        "2026-06-01 00:20:00 10.0.0.9 agent /ManageSoftDL/ 200 0 - - - 0",  # NAT: another device without one, later
        "2026-06-01 00:30:00 10.0.0.5 agent /ManageSoftdl/x 401 2 C=US,+CN=dev-5 C=US,+CN=Example+Devices+CA 0c 1",
        "2026-06-01 00:31:00 10.0.0.5 agent /other 200 0 - - - 0",  # not an agent path
    )
    # out of order across streams: the newest request decides, whatever order the pages come in
    _feed(agg, "b2", HEADER, "2026-06-01 00:05:00 10.0.0.1 agent /ManageSoftDL/ 403 7 - - - 0")
    outcome = agg.finish(["Example Devices*"])  # IIS matchCriteria wildcard
    states = {d.identity: (d.state, d.requests, d.last_status) for d in outcome.devices}
    assert states == {
        "dev-1": ("ready", 3, "200"),
        "dev-9": ("ready", 1, "200"),
        "10.0.0.9 agent": ("no-certificate", 1, "200"),
        "dev-5": ("failing", 1, "401.2"),
    }
    assert outcome.superseded == 1 and agg.ignored_paths == 1 and outcome.totals["ready"] == 2
    assert outcome.below(51) and not outcome.below(50) and not outcome.below(None)


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
def test_record_keeps_the_verdict_the_update_checks(logged, capsys, min_ready, passed) -> None:
    from components.config import load
    from components.require_gate import switch_problem, verdict_parameter
    from conftest import stack_raw

    got, out, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--min-ready", min_ready, "--record")
    assert got == (0 if passed else 1), err
    name = verdict_parameter("dev")
    assert f"recorded in {name}: {'passed' if passed else 'not passed'} at --min-ready {float(min_ready):g}" in out
    stored = boto_client("ssm").get_parameter(Name=name)["Parameter"]
    verdict = json.loads(stored["Value"])
    assert stored["Type"] == "String"
    assert verdict["stack"] == "dev" and verdict["passed"] is passed and verdict["minReadyPercent"] == float(min_ready)
    assert verdict["devices"] == 8 and verdict["ready"] == 3 and verdict["lines"] > 0 and len(verdict["logsSha256"]) == 64
    assert "identity" not in stored["Value"] and "laptop" not in stored["Value"], "counts only, no device names"
    # What the program does with it: a deployed observe stack whose file says require.
    raw, region = stack_raw("dev")
    raw.update(enforcement="require", requireMinReadyPercent="37")
    cfg = load(raw, "dev", region)
    deployed = json.dumps({"enforcement": "observe", "requireMinReadyPercent": 37})
    refused, _ = switch_problem(cfg, deployed, stored["Value"], False, dt.datetime.now(dt.timezone.utc))
    assert (refused is None) is passed, refused


def test_record_needs_a_threshold_and_says_so_before_reading_anything(logged, capsys) -> None:
    got, _, err = run(capsys, "--stack-outputs", logged["outputs"], "readiness", "--record")
    assert got == 2 and "--record: got no --min-ready" in one_line(err)
