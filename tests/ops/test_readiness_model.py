"""readiness cannot pass a fleet that require would lock out (issue 20, points 3-7).

End to end against moto's CloudWatch Logs (generated IIS W3C lines with the observe-mode fields,
tests/ops_fixtures/readiness_logs.py) and directly on the readiness model:
- a NAT office: three enrolled laptops and two without a certificate behind one address, every
  agent with the same user agent: not ready, the two listed (by the name their policy download
  carries, or by the address);
- a device whose downloads carry its certificate and whose uploads do not: not ready;
- junk, a stream without its #Fields: line, an empty window: inconclusive, exit 1 at any --min-ready;
- the stack file's Deny rule (Subject.OU=Contractors) and extra Allow rule: a device observe
  served 200 is refused-by-rule, the rule named, judged with the matcher `pki check` uses;
- --pki: devices issued a certificate but not seen are unseen, renewals count once;
- `readiness --stack pilot`, nothing else, as the pilot stack file says.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from components.certs.verdict import iis_verdict
from components.iis.mapping_rules import allow_mappings, deny_mappings, parse_mapping_rule
from components.stack import PROJECT_DIR_ENV, PROJECT_ROOT
from scripts.ops import mapping_judgment as mj
from scripts.ops.readiness_model import Aggregator
from scripts.pki import build
from tests.ops_fixtures.readiness_logs import BEACON_1, BEACON_2, GROUP, Cert, header, line, put_now
from tests.ops_fixtures.support import aws_env, boto_client, outputs_file, run

OFFICE = "203.0.113.50"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    aws_env(monkeypatch, tmp_path)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return {"tmp": tmp_path, "outputs": str(outputs_file(tmp_path)), "start": now - dt.timedelta(hours=3), "monkeypatch": monkeypatch}


def readiness_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code, out, err = run(capsys, *args, "--json")
    assert "Traceback" not in err and out, err
    return code, json.loads(out)


def by_identity(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["identity"]: d for d in result["devices"]}


def minutes(start: dt.datetime, n: int) -> dt.datetime:
    return start + dt.timedelta(minutes=n)


def laptops(start: dt.datetime, count: int, ip: str = OFFICE, first: int = 1) -> list[str]:
    """Enrolled laptops: a policy download and an inventory upload each, both with the certificate."""
    lines = []
    for number in range(first, first + count):
        cert = Cert(f"laptop-{number:04d}", f"0a-{number:02x}")
        lines.append(line(minutes(start, number), ip, f"/ManageSoftDL/Policies/Merged/laptop-{number:04d}-c0a80a0{number}.npl", cert))
        lines.append(line(minutes(start, number + 30), ip, "/ManageSoftRL/Inventories/inventory.ndi", cert, method="PUT"))
    return lines


# ---------------------------------------------------------------------------------------------
# No device is hidden


def test_a_nat_office_with_two_devices_not_enrolled_is_not_ready_and_lists_them(env, capsys) -> None:
    start = env["start"]
    lines = header(start) + laptops(start, 3)
    for name, minute in (("desk-0004", 40), ("desk-0005", 41)):  # same address, same user agent, no certificate
        lines.append(line(minutes(start, minute), OFFICE, f"/ManageSoftDL/Policies/Merged/{name}-c0a80a1{minute}.npl"))
        lines.append(line(minutes(start, minute + 30), OFFICE, "/ManageSoftRL/Inventories/inventory.ndi", method="PUT"))
    put_now(BEACON_1, lines)
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "0")
    assert code == 1  # not ready at any threshold, even 0
    devices = by_identity(result)
    assert [devices[f"laptop-000{n}"]["state"] for n in (1, 2, 3)] == ["ready"] * 3
    assert (devices["desk-0004"]["kind"], devices["desk-0004"]["state"], devices["desk-0004"]["clientIp"]) == ("name", "no-certificate", OFFICE)
    assert devices["desk-0005"]["state"] == "no-certificate" and "the URL names the device (policy desk-0005-*.npl)" in devices["desk-0005"]["why"]
    office = devices[OFFICE]  # their uploads name no device: listed per address, next to the laptops seen there
    assert (office["kind"], office["state"], office["withoutCertificate"]["recentUploads"]) == ("address", "no-certificate", 2)
    assert office["certificatesFromTheSameAddress"] == ["laptop-0001", "laptop-0002", "laptop-0003"]
    assert result["totals"]["ready"] == 3 and result["totals"]["noCertificate"] == 3 and result["totals"]["requestsWithoutCertificateRecent"] == 4
    assert result["verdict"] == "not-ready" and result["ok"] is False
    reason = result["reasons"][0]
    assert reason["code"] == "requests-without-certificate" and "desk-0004" in reason["text"] and "desk-0005" in reason["text"]
    code, out, _ = run(capsys, "--stack-outputs", env["outputs"], "readiness")
    assert code == 0 and out.splitlines()[-1] == "ready share 50.0%, not ready (no --min-ready given: a report only)"
    assert "desk-0004 (named in the URL)" in out and f"{OFFICE} (address)" in out


def test_a_nat_office_whose_urls_name_nobody_is_listed_per_address() -> None:
    start = dt.datetime(2026, 6, 1, 8, tzinfo=dt.timezone.utc)
    agg = Aggregator(["/ManageSoftDL/", "/ManageSoftRL/"])
    lines = header(start) + laptops(start, 3) + [line(minutes(start, 50 + n), OFFICE) for n in range(4)]  # two more devices, plain URLs
    for text in lines:
        agg.add(BEACON_1, text, 0)
    outcome = agg.finish(["Example Devices CA"])
    states = {d.identity: (d.kind, d.state, d.requests) for d in outcome.devices}
    assert states[OFFICE] == ("address", "no-certificate", 4)
    assert sorted(k for k, v in states.items() if v[1] == "ready") == ["laptop-0001", "laptop-0002", "laptop-0003"]
    assert outcome.judgement(0).state == "not-ready" and outcome.ready_percent == 75.0


def test_downloads_with_the_certificate_and_uploads_without_are_not_ready(env, capsys) -> None:
    start = env["start"]
    cert = Cert("laptop-0010", "10-10")
    lines = header(start)
    for n in range(4):
        lines.append(line(minutes(start, n * 20), "198.51.100.10", "/ManageSoftDL/Policies/Merged/laptop-0010-c0a80a0a.npl", cert))
        lines.append(line(minutes(start, n * 20 + 5), "198.51.100.10", "/ManageSoftRL/Inventories/inventory.ndi", method="PUT"))
    put_now(BEACON_1, lines)
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "50")
    assert code == 1 and result["verdict"] == "not-ready"
    address = by_identity(result)["198.51.100.10"]
    assert address["withoutCertificate"] == {"downloads": 0, "uploads": 4, "recentDownloads": 0, "recentUploads": 4}
    assert address["certificatesFromTheSameAddress"] == ["laptop-0010"] and "0 download(s), 4 upload(s)" in address["why"]


def test_a_policy_download_without_the_certificate_naming_an_enrolled_device_makes_it_not_ready() -> None:
    start = dt.datetime(2026, 6, 1, 8, tzinfo=dt.timezone.utc)
    agg = Aggregator()
    lines = header(start) + [
        line(start, "198.51.100.11", "/ManageSoftRL/Inventories/inventory.ndi", Cert("LAPTOP-0011.corp.example.com", "11"), method="PUT"),
        line(minutes(start, 1), "198.51.100.11", "/ManageSoftDL/Policies/Merged/laptop-0011-c0a80a0b.npl"),  # its policy, no certificate
    ]
    for text in lines:
        agg.add(BEACON_1, text, 0)
    [device] = agg.finish(["Example Devices CA"]).devices
    assert (device.identity, device.state, device.requests) == ("LAPTOP-0011.corp.example.com", "no-certificate", 2)
    assert device.why == "1 request(s) in the recent window naming it in the URL (laptop-0011-*.npl) came without a certificate"


def test_requests_before_the_recent_window_do_not_block_and_every_recent_one_counts(env, capsys) -> None:
    start = env["start"]
    old = start - dt.timedelta(days=2)
    cert = Cert("laptop-0020", "20")
    lines = header(old) + [line(old, "198.51.100.20"), line(minutes(old, 1), "198.51.100.21", cert=cert, status="403 13")]
    lines += header(start) + [line(minutes(start, n), "198.51.100.20", cert=cert) for n in range(3)]
    lines += [line(minutes(start, 5), "198.51.100.22", cert=Cert("laptop-0022", "22")),
              line(minutes(start, 6), "198.51.100.22", cert=Cert("laptop-0022", "22"), status="403 17"),
              line(minutes(start, 7), "198.51.100.22", cert=Cert("laptop-0022", "22"))]  # refused once in the window, then 200
    put_now(BEACON_1, lines)
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "50", "--recent", "24h")
    devices = by_identity(result)
    assert (devices["198.51.100.20"]["state"], devices["laptop-0020"]["state"]) == ("earlier-no-certificate", "ready")  # its 403.13 was before
    assert devices["laptop-0022"]["state"] == "failing" and devices["laptop-0022"]["why"].startswith("refused in the recent window: 403.17 x1")
    assert result["totals"]["devices"] == 2 and result["totals"]["earlierWithoutCertificate"] == 1
    assert (code, result["verdict"]) == (0, "ready")
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "50", "--recent", "5d")
    assert code == 1 and by_identity(result)["laptop-0020"]["state"] == "failing" and result["verdict"] == "not-ready"


def test_renewed_certificates_of_one_device_are_one_device() -> None:
    start = dt.datetime(2026, 6, 1, 8, tzinfo=dt.timezone.utc)
    agg = Aggregator()
    lines = header(start) + [line(start, "198.51.100.30", cert=Cert("laptop-0030", "30-01")),
                             line(minutes(start, 9), "198.51.100.31", cert=Cert("laptop-0030", "30-02"))]
    for text in lines:
        agg.add(BEACON_2, text, 0)
    [device] = agg.finish(["Example Devices CA"]).devices
    assert (device.identity, device.requests, device.serial, device.state) == ("laptop-0030", 2, "3002", "ready")


# ---------------------------------------------------------------------------------------------
# Inconclusive evidence fails


@pytest.mark.parametrize(("junk", "verdict"), [(1, "ready"), (2, "inconclusive")])
def test_more_than_one_percent_unreadable_lines_is_inconclusive(env, capsys, junk, verdict) -> None:
    start = env["start"]
    data = 100 - len(header(start)) - junk
    lines = header(start) + [line(minutes(start, n), f"198.51.100.{n % 4}", cert=Cert(f"laptop-{n % 4:04d}", f"{n % 4:02x}")) for n in range(data)]
    lines += ["\tnot a log line"] * junk  # of 100 lines one junk line: 1%, not more; two: 2%
    put_now(BEACON_1, lines)
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "0")
    assert (code, result["verdict"], result["read"]["lines"], result["malformed"]["count"]) == (
        (0, "ready", 100, 1) if junk == 1 else (1, "inconclusive", 100, 2))


def test_a_stream_whose_fields_line_cannot_be_found_is_inconclusive(env, capsys) -> None:
    start = env["start"]
    put_now(BEACON_1, header(start) + laptops(start, 3, "198.51.100.40"))
    put_now(BEACON_2, [line(minutes(start, n), "198.51.100.41", cert=Cert("laptop-0041", "41")) for n in range(150)])  # no header at all
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "0", "--issuer-cn", "Example Devices CA")
    assert code == 1 and result["verdict"] == "inconclusive" and result["ok"] is False
    assert [(r["kind"], r["code"]) for r in result["reasons"]] == [("inconclusive", "unreadable-lines"), ("inconclusive", "no-fields-line")]
    assert result["read"]["streamsWithoutFieldsLine"] == {BEACON_2: 150} and result["read"]["headerLookups"] == 2


def test_min_devices_and_an_empty_recent_window(env, capsys) -> None:
    start = env["start"]
    put_now(BEACON_1, header(start) + laptops(start, 2, "198.51.100.50"))
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "100", "--min-devices", "3")
    assert code == 1 and [r["code"] for r in result["reasons"]] == ["too-few-devices"] and result["minDevices"] == 3
    assert result["reasons"][0]["text"] == "2 device(s) seen, fewer than --min-devices 3"
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "100", "--min-devices", "2")
    assert (code, result["verdict"]) == (0, "ready")
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--recent", "10m")  # nothing in the last 10 minutes
    # Nothing in the last 10 minutes: no recent request, and beacon-1 (the outputs' one beacon) silent.
    assert code == 1 and [r["code"] for r in result["reasons"]] == ["no-recent-agent-requests", "silent-beacon"]


def test_a_beacon_whose_log_shipping_stopped_makes_the_verdict_inconclusive(env, capsys) -> None:
    """Its devices would be missing from the verdict: counting only the other beacons' devices
    could call the fleet ready while devices talking to that beacon have no certificate."""
    from tests.ops_fixtures.support import outputs_file

    start = env["start"]
    outputs = json.loads(Path(env["outputs"]).read_text())
    outputs["beacons"] = outputs["beacons"] + [dict(outputs["beacons"][0], instanceId=BEACON_2, name="beacon-2")]
    two = Path(env["outputs"]).with_name("outputs-two-beacons.json")
    two.write_text(json.dumps(outputs))
    put_now(BEACON_1, header(start) + laptops(start, 2, "198.51.100.60"))
    code, result = readiness_json(capsys, "--stack-outputs", str(two), "readiness", "--min-ready", "100")
    assert code == 1 and result["verdict"] == "inconclusive"
    assert [r["code"] for r in result["reasons"]] == ["silent-beacon"] and "beacon-2 (" + BEACON_2 + ")" in result["reasons"][0]["text"]
    put_now(BEACON_2, header(start) + laptops(start, 1, "198.51.100.61", first=3))
    code, result = readiness_json(capsys, "--stack-outputs", str(two), "readiness", "--min-ready", "100")
    assert (code, result["verdict"]) == (0, "ready"), result["reasons"]


# ---------------------------------------------------------------------------------------------
# Judged as IIS will: the stack's Allow and Deny mappings


def project_with_stack(tmp: Path, name: str, extra: list[str], deny: list[str]) -> Path:
    """A project directory with stacks/Pulumi.<name>.yaml: the pilot stack plus mapping rules."""
    project = tmp / "project"
    (project / "stacks" / "certs").mkdir(parents=True)
    for cert in ("pilot-devices-ca.pem", "pilot-sample-device.pem"):
        shutil.copy(PROJECT_ROOT / "stacks" / "certs" / cert, project / "stacks" / "certs" / cert)
    text = (PROJECT_ROOT / "stacks" / "Pulumi.pilot.yaml").read_text(encoding="utf-8")
    text += f"  flexnet-beacon:extraMappingRules: {json.dumps(extra)}\n  flexnet-beacon:denyMappingRules: {json.dumps(deny)}\n"
    (project / "stacks" / f"Pulumi.{name}.yaml").write_text(text, encoding="utf-8")
    return project


def test_the_stack_file_s_deny_and_extra_allow_rules_refuse_devices_observe_served(env, capsys) -> None:
    env["monkeypatch"].setenv(PROJECT_DIR_ENV, str(project_with_stack(env["tmp"], "rules", ["Subject.O=Example Corp"], ["Subject.OU=Contractors"])))
    start = env["start"]
    lines = header(start) + [
        line(start, "198.51.100.60", cert=Cert("laptop-0060", "60")),
        line(minutes(start, 1), "198.51.100.61", cert=Cert("laptop-0061", "61", ou="Contractors")),  # 200 in observe
        line(minutes(start, 2), "198.51.100.62", cert=Cert("laptop-0062", "62", o="Other Org")),  # 200 in observe
    ]
    put_now(BEACON_1, lines, "/flexnet-beacon/rules/iis")
    code, result = readiness_json(capsys, "readiness", "--stack", "rules", "--min-ready", "50")
    assert code == 1 and result["verdict"] == "not-ready" and result["readyPercent"] == 33.33
    assert result["mappingsFrom"] == "stacks/Pulumi.rules.yaml" and result["issuerCNsFrom"] == "clientCaCertificates of stacks/Pulumi.rules.yaml"
    assert result["mappings"] == [
        {"name": "Deny 1 - Example Devices CA", "permissionMode": "Deny", "rules": ["Issuer.CN=Example Devices CA", "Subject.OU=Contractors"]},
        {"name": "Agents - Example Devices CA", "permissionMode": "Allow", "rules": ["Issuer.CN=Example Devices CA", "Subject.O=Example Corp"]},
    ]
    devices = by_identity(result)
    assert devices["laptop-0060"]["state"] == "ready" and devices["laptop-0060"]["certificate"]["mapping"] == "Agents - Example Devices CA"
    denied = devices["laptop-0061"]
    assert (denied["state"], denied["lastStatus"], denied["certificate"]["mapping"]) == ("refused-by-rule", "200", "Deny 1 - Example Devices CA")
    assert denied["why"] == ("401.2 under require: Deny mapping 'Deny 1 - Example Devices CA' (Issuer.CN=Example Devices CA AND "
                             "Subject.OU=Contractors) matches")
    unmapped = devices["laptop-0062"]
    assert unmapped["state"] == "refused-by-rule" and unmapped["why"] == (
        "401.2 under require: no Allow mapping matches: rule 'Subject.O=Example Corp' of 'Agents - Example Devices CA' does not "
        "(Subject.O: 'Other Org')")
    assert result["region"] == "us-east-1"  # the stack file's aws:region: no --region, no outputs


def _logged(name: x509.Name) -> str:
    """A name as IIS logs CERT_SUBJECT/CERT_ISSUER (CertNameToStr: encoding order, ', ', S for ST), decoded."""
    short = {NameOID.COUNTRY_NAME: "C", NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
             NameOID.COMMON_NAME: "CN", NameOID.STATE_OR_PROVINCE_NAME: "S", NameOID.LOCALITY_NAME: "L"}
    return ", ".join(f"{short[a.oid]}={a.value}" for a in name)


@pytest.mark.parametrize(("o", "ou", "extra", "deny"), [
    ("Example Corp", None, [], []),
    ("Example Corp", "Contractors", [], ["Subject.OU=Contractors"]),
    ("Example Corp", "contractors", [], ["Subject.OU=Contractors"]),  # case-sensitive: not denied
    ("Example Corp", "contractors", [], ["Subject.OU~=CONTRACT*"]),
    ("Other Org", None, ["Subject.O=Example Corp"], []),
    ("Example Corp", "Field Sales", ["Subject.O=Example*", "Subject.OU=*Sales"], ["Subject.CN=kiosk-*"]),
])
def test_the_logged_names_get_the_verdict_pki_check_gives_the_certificate(o, ou, extra, deny) -> None:
    """The same mappings (components/iis/mapping_rules.py) on the parsed certificate (what `pki check`
    runs, components/certs/verdict.py) and on the names IIS logs for it agree."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = build.new_key("ec"), build.new_key("ec")
    ca, _ = build.build_certificate(build.make_name("Example Devices CA", "Example Corp", None, "US"), ca_key.public_key(),
                                    build.Profile(days=30, ca=True, path_length=0), None, ca_key, now)
    leaf, _ = build.build_certificate(build.make_name("laptop-0070", o, ou, "US"), key.public_key(), build.Profile(days=30, eku=build.CLIENT_EKU), ca, ca_key, now)
    extras, denies = [parse_mapping_rule(r) for r in extra], [parse_mapping_rule(r) for r in deny]
    allows, denials = allow_mappings([ca], extras), deny_mappings([ca], denies)
    expected = iis_verdict(leaf, [ca], [], now, allows, denials=denials, check_revocation=False)
    rules = mj.Rules(tuple(mj.Mapping(f"deny {i}", "Deny", tuple(m)) for i, m in enumerate(denials))
                     + tuple(mj.Mapping(f"allow {i}", "Allow", tuple(m)) for i, m in enumerate(allows)), "test")
    got = mj.judge(_logged(leaf.subject), _logged(leaf.issuer), format(leaf.serial_number, "x"), rules)
    assert got.accepted is expected.accepted, (got, expected)


def test_mappings_the_outputs_carry_are_used() -> None:
    rules = mj.iis_mappings([
        {"name": "Deny kiosks", "permissionMode": "Deny", "rules": [
            {"certificateField": "Subject", "certificateSubField": "CN", "matchCriteria": "kiosk-*", "compareCaseSensitive": False}]},
        {"name": "Agents", "permissionMode": "Allow", "rules": [
            {"certificateField": "Issuer", "certificateSubField": "CN", "matchCriteria": "Example Devices CA", "compareCaseSensitive": True}]},
    ], "outputs")
    assert not mj.judge("C=US, CN=KIOSK-7", "C=US, CN=Example Devices CA", "01", rules).accepted
    assert mj.judge("C=US, CN=laptop-7", "C=US, CN=Example Devices CA", "01", rules).mapping == rules.mappings[1]
    assert mj.judge("C=US, O=A+B Corp, CN=x", "CN=Example Devices CA", "01", mj.iis_mappings([{"permissionMode": "Allow", "rules": [
        {"certificateField": "Subject", "certificateSubField": "O", "matchCriteria": "A+B Corp"}]}], "o")).accepted  # '+' is logged as a space
    with pytest.raises(ValueError, match="permissionMode"):
        mj.iis_mappings([{"name": "x", "rules": []}], "outputs")
    assert mj.npl_device("/ManageSoftDL/Policies/Merged/Machine/LAPTOP-0001-c0a80a01.npl") == "LAPTOP-0001"
    assert mj.npl_device("/ManageSoftDL/Policies/Merged/Machine/policy.npl") is None
    assert mj.npl_device("/ManageSoftRL/Inventories/LAPTOP-0001-x.ndi") is None


# ---------------------------------------------------------------------------------------------
# The expected fleet, and the pilot stack as its file says


def pki_dir(tmp: Path, now: dt.datetime) -> Path:
    """A scripts.pki directory's index.json (the shape scripts/pki/entries.py writes and checks)."""
    def entry(cn: str, serial: str, status: str = "valid", days: int = 300) -> dict[str, Any]:
        return {"kind": "client", "source": "key", "serial": serial, "subject": f"CN={cn},O=Example Corp,C=US",
                "notBefore": "2026-01-01T00:00:00Z", "notAfter": (now + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "sha1": "00" * 20, "status": status, "revokedAt": "2026-02-01T00:00:00Z" if status == "revoked" else None, "reason": None}

    certificates = {
        "laptop-0001": entry("laptop-0001", "0A01", days=5),
        "laptop-0001-2027": entry("laptop-0001", "0B01"),  # renewed: the same device
        "laptop-0002": entry("laptop-0002", "0A02"),
        "laptop-0009": entry("laptop-0009", "0A09"),
        "laptop-0099": entry("laptop-0099", "0A99", status="revoked"),
        "laptop-0098": entry("laptop-0098", "0A98", days=-1),  # expired
        "beacon1.example.com": {**entry("beacon1.example.com", "0C01"), "kind": "server"},
    }
    directory = tmp / "pki"
    directory.mkdir()
    (directory / "index.json").write_text(json.dumps({"version": 1, "ca": {}, "authorities": {}, "certificates": certificates}), encoding="utf-8")
    return directory


def test_devices_issued_a_certificate_but_not_seen_are_unseen_and_renewals_count_once(env, capsys) -> None:
    start = env["start"]
    put_now(BEACON_1, header(start) + laptops(start, 2, "198.51.100.80"))
    directory = pki_dir(env["tmp"], dt.datetime.now(dt.timezone.utc))
    code, result = readiness_json(capsys, "--stack-outputs", env["outputs"], "readiness", "--min-ready", "100", "--pki", str(directory))
    assert (code, result["verdict"]) == (0, "ready")  # unseen devices are listed, not counted
    assert result["expected"] == {"source": str(directory), "devices": 3, "validClientCertificates": 4, "revokedOrExpiredOnly": 2}
    unseen = [d for d in result["devices"] if d["state"] == "unseen"]
    assert [(d["identity"], d["kind"]) for d in unseen] == [("laptop-0009", "expected")]
    assert result["totals"]["unseen"] == 1 and result["totals"]["devices"] == 2
    code, out, _ = run(capsys, "--stack-outputs", env["outputs"], "readiness", "--pki", str(directory))
    assert "; 1 of 3 expected device(s) unseen" in out and "UNSEEN" in out


def test_readiness_stack_pilot_works_as_the_pilot_stack_file_says(env, capsys) -> None:
    """`python -m scripts.ops readiness --stack pilot`, nothing else: the region, the log group and
    the issuing CAs come from stacks/Pulumi.pilot.yaml (the old code stopped: "readiness needs the
    configured issuing CAs")."""
    assert ".venv/bin/python -m scripts.ops readiness --stack pilot" in (PROJECT_ROOT / "stacks" / "Pulumi.pilot.yaml").read_text(encoding="utf-8")
    start = env["start"]
    put_now(BEACON_1, header(start) + laptops(start, 3, "198.51.100.90"), "/flexnet-beacon/pilot/iis")
    code, out, err = run(capsys, "readiness", "--stack", "pilot")
    assert code == 0, err
    assert out.splitlines()[1] == ("configured issuing CAs: Example Devices CA; mappings (stacks/Pulumi.pilot.yaml): "
                                   "Allow mapping 'Agents - Example Devices CA' (Issuer.CN=Example Devices CA)")
    assert out.splitlines()[-1] == "ready share 100.0%, no request without a certificate in the recent window (no --min-ready given: a report only)"
    code, out, err = run(capsys, "readiness", "--stack", "pilot", "--min-ready", "98", "--record")
    assert code == 0 and "recorded in /flexnet-beacon/pilot/readiness-verdict: passed at --min-ready 98" in out, err
    assert json.loads(boto_client("ssm").get_parameter(Name="/flexnet-beacon/pilot/readiness-verdict")["Parameter"]["Value"])["passed"] is True
    assert GROUP != "/flexnet-beacon/pilot/iis"


# --- review of issue 20: certificate-less requests older than the recent window ----------------------

def _outcome(lines: list[str], recent_from: dt.datetime):
    agg = Aggregator(["/ManageSoftDL/", "/ManageSoftRL/"], recent_from=int(recent_from.timestamp()))
    for text in lines:
        agg.add(BEACON_1, text, 0)
    return agg.finish(["Example Devices CA"])


def test_a_device_never_enrolled_blocks_however_old_its_requests() -> None:
    start = dt.datetime(2026, 6, 1, 8, tzinfo=dt.timezone.utc)
    recent = start + dt.timedelta(days=3)
    lines = header(start) + [line(start, "198.51.100.40", "/ManageSoftDL/Policies/Merged/desk-9-c0a80a28.npl")]
    lines += header(recent) + [line(recent + dt.timedelta(hours=1), "198.51.100.41", cert=Cert("laptop-0041", "41"))]
    outcome = _outcome(lines, recent)
    named = {d.identity: d for d in outcome.devices}["desk-9"]
    assert (named.kind, named.state) == ("name", "no-certificate") and "never presented a certificate" in named.why
    judgement = outcome.judgement(0)
    assert judgement.state == "not-ready" and "earlier-requests-without-certificate" in [code for _, code, _ in judgement.reasons]


def test_requests_without_the_certificate_after_an_enrolment_block_however_old() -> None:
    """Downloads carry the certificate, a daily upload 30 h ago did not: under require it is 403.7."""
    start = dt.datetime(2026, 6, 1, 8, tzinfo=dt.timezone.utc)
    recent = start + dt.timedelta(days=2)
    cert = Cert("laptop-0042", "42")
    lines = header(start) + [
        line(start, "198.51.100.42", "/ManageSoftDL/Policies/Merged/laptop-0042-c0a80a2a.npl", cert),
        line(start + dt.timedelta(hours=18), "198.51.100.42", "/ManageSoftRL/Inventories/inventory.ndi", method="PUT"),
    ]
    lines += header(recent) + [line(recent + dt.timedelta(hours=2), "198.51.100.42", "/ManageSoftDL/Policies/Merged/laptop-0042-c0a80a2a.npl", cert)]
    outcome = _outcome(lines, recent)
    address = {d.identity: d for d in outcome.devices}["198.51.100.42"]
    assert address.state == "no-certificate" and "after a certificate had come from this address" in address.why
    assert outcome.judgement(0).state == "not-ready"


def test_only_requests_from_before_any_certificate_of_their_address_are_history() -> None:
    start = dt.datetime(2026, 6, 1, 8, tzinfo=dt.timezone.utc)
    recent = start + dt.timedelta(days=2)
    cert = Cert("laptop-0043", "43")
    lines = header(start) + [line(start, "198.51.100.43"), line(start + dt.timedelta(hours=1), "198.51.100.43", cert=cert)]
    lines += header(recent) + [line(recent + dt.timedelta(hours=1), "198.51.100.43", cert=cert)]
    outcome = _outcome(lines, recent)
    assert {d.identity: d.state for d in outcome.devices}["198.51.100.43"] == "earlier-no-certificate"
    assert outcome.judgement(100).state == "ready"
