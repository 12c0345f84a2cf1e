"""publish-server-cert against moto (a real HTTP server on loopback): two secrets under
flexnet-beacon/<stack>/, tags, new versions instead of second secrets, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.certs import facts as cert_facts
from tests.ops_fixtures.support import CLIENT_ONLY, OTHER_PASS, PFX_PASS, REGION, BeaconCa, aws_env, boto_client, outputs_file, run

HOST = "ec2-198-51-100-53.us-east-1.compute.amazonaws.com"  # beacons[0].hostname of the recorded outputs


@pytest.fixture(scope="module")
def ca() -> BeaconCa:
    return BeaconCa()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("PKI_PASSWORD", PFX_PASS)
    return tmp_path


def tags_of(arn: str) -> dict[str, str]:
    described = boto_client("secretsmanager").describe_secret(SecretId=arn)
    return {t["Key"]: t["Value"] for t in described.get("Tags", [])}


def test_first_publish_creates_two_tagged_secrets_and_prints_the_config_lines(env: Path, ca: BeaconCa, capsys) -> None:
    pfx, cert = ca.pfx(env / "beacon.pfx")
    outputs = outputs_file(env)
    code, out, err = run(capsys, "--stack-outputs", str(outputs), "publish-server-cert", str(pfx), "--stack", "dev")
    assert code == 0, err
    sm = boto_client("secretsmanager")
    names = sorted(s["Name"] for s in sm.list_secrets()["SecretList"])
    assert names == ["flexnet-beacon/dev/server-pfx", "flexnet-beacon/dev/server-pfx-password"]
    stored = sm.get_secret_value(SecretId="flexnet-beacon/dev/server-pfx")
    assert stored["SecretBinary"] == pfx.read_bytes()
    assert sm.get_secret_value(SecretId="flexnet-beacon/dev/server-pfx-password")["SecretString"] == PFX_PASS
    pfx_arn = stored["ARN"]
    password_arn = sm.describe_secret(SecretId="flexnet-beacon/dev/server-pfx-password")["ARN"]
    tags = tags_of(pfx_arn)
    assert tags["Project"] == "flexnet-beacon" and tags["flexnet-beacon:stack"] == "dev"
    assert tags["flexnet-beacon:thumbprint"] == cert_facts.thumbprint(cert)
    assert tags["flexnet-beacon:component"] == "server-certificate" and tags["ManagedBy"] == "scripts.ops"
    assert f"pulumi config set flexnet-beacon:serverCertificateSecretArn {pfx_arn} --stack dev" in out
    assert f"pulumi config set flexnet-beacon:serverCertificatePasswordSecretArn {password_arn} --stack dev" in out
    assert "created" in out and f":{REGION}:" in pfx_arn
    # The stack's config validation accepts exactly these ARNs (region, prefix).
    from components.config import _secret_arn_problem

    assert _secret_arn_problem(pfx_arn, REGION, "dev") is None
    assert _secret_arn_problem(password_arn, REGION, "dev") is None


def test_publishing_again_adds_versions_never_second_secrets(env: Path, ca: BeaconCa, capsys) -> None:
    first, _ = ca.pfx(env / "first.pfx")
    code, _, err = run(capsys, "publish-server-cert", str(first), "--stack", "dev", "--hostname", HOST, "--region", REGION)
    assert code == 0, err
    sm = boto_client("secretsmanager")
    arn = sm.describe_secret(SecretId="flexnet-beacon/dev/server-pfx")["ARN"]

    code, out, err = run(capsys, "publish-server-cert", str(first), "--stack", "dev", "--hostname", HOST, "--region", REGION, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["secrets"]["pfx"]["action"] == "unchanged" and result["secrets"]["password"]["action"] == "unchanged"

    second, cert2 = ca.pfx(env / "second.pfx")
    code, out, err = run(capsys, "publish-server-cert", str(second), "--stack", "dev", "--hostname", HOST, "--region", REGION, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["secrets"]["pfx"]["action"] == "new-version" and result["secrets"]["pfx"]["arn"] == arn
    assert result["secrets"]["password"]["action"] == "unchanged"  # same password: no version
    assert result["certificate"]["thumbprint"] == cert_facts.thumbprint(cert2)
    assert len(sm.list_secrets()["SecretList"]) == 2
    versions = sm.list_secret_version_ids(SecretId=arn)["Versions"]
    assert len(versions) == 2
    current = sm.get_secret_value(SecretId=arn)
    assert current["SecretBinary"] == second.read_bytes()
    assert tags_of(arn)["flexnet-beacon:thumbprint"] == cert_facts.thumbprint(cert2)


def test_new_password_and_kms_key(env: Path, ca: BeaconCa, capsys, monkeypatch) -> None:
    first, _ = ca.pfx(env / "a.pfx", password=PFX_PASS)
    assert run(capsys, "publish-server-cert", str(first), "--stack", "dev", "--hostname", HOST, "--region", REGION)[0] == 0
    monkeypatch.setenv("PKI_PASSWORD", OTHER_PASS)
    second, _ = ca.pfx(env / "b.pfx", password=OTHER_PASS)
    key_id = boto_client("kms").create_key()["KeyMetadata"]["KeyId"]
    code, out, err = run(capsys, "publish-server-cert", str(second), "--stack", "dev", "--hostname", HOST, "--region", REGION, "--kms-key-id", key_id, "--json")
    assert code == 0, err
    assert json.loads(out)["secrets"]["password"]["action"] == "new-version"
    assert "kms:Decrypt" in err  # the beacon role needs the key policy to let it decrypt
    sm = boto_client("secretsmanager")
    assert sm.get_secret_value(SecretId="flexnet-beacon/dev/server-pfx-password")["SecretString"] == OTHER_PASS
    assert sm.describe_secret(SecretId="flexnet-beacon/dev/server-pfx")["KmsKeyId"] == key_id


def test_wildcard_san_covers_the_beacon_and_check_only_calls_nothing(env: Path, ca: BeaconCa, capsys, monkeypatch) -> None:
    pfx, _ = ca.pfx(env / "w.pfx", dns=("*.us-east-1.compute.amazonaws.com",))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: any AWS call would fail
    outputs = outputs_file(env)
    code, out, err = run(capsys, "--stack-outputs", str(outputs), "publish-server-cert", str(pfx), "--stack", "dev", "--check-only")
    assert code == 0, err
    assert "acceptable for ec2-198-51-100-53.us-east-1.compute.amazonaws.com" in out and "nothing published" in out


@pytest.mark.parametrize(
    ("kwargs", "args", "message"),
    [
        ({"eku": CLIENT_ONLY}, (), "lacks serverAuth: a beacon certificate needs serverAuth and clientAuth"),
        ({"dns": ("other.example.com",)}, (), f"SAN (other.example.com) does not cover the beacon host name(s) {HOST}"),
        ({"days": 10}, (), "(< --min-days 30)"),
        ({"days": 40}, ("--min-days", "60"), "(< --min-days 60)"),
        ({"dns": ("*.compute.amazonaws.com",)}, (), "does not cover"),  # a wildcard covers one label only
        ({"not_before_days": 2}, (), "not valid before"),
    ],
)
def test_refusals_are_one_line_exit_2_and_publish_nothing(env: Path, ca: BeaconCa, capsys, kwargs, args, message) -> None:
    pfx, _ = ca.pfx(env / "bad.pfx", **kwargs)
    code, out, err = run(capsys, "--stack-outputs", str(outputs_file(env)), "publish-server-cert", str(pfx), "--stack", "dev", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("ops: error: ") and message in err, err
    assert boto_client("secretsmanager").list_secrets()["SecretList"] == []


def test_wrong_password_missing_file_and_missing_host(env: Path, ca: BeaconCa, capsys, monkeypatch) -> None:
    pfx, _ = ca.pfx(env / "p.pfx")
    monkeypatch.setenv("PKI_PASSWORD", "not-the-password")
    code, _, err = run(capsys, "publish-server-cert", str(pfx), "--stack", "dev", "--hostname", HOST, "--region", REGION)
    assert code == 2 and "wrong password, or not a PKCS#12" in err and err.count("\n") == 1
    code, _, err = run(capsys, "publish-server-cert", str(env / "nope.pfx"), "--stack", "dev", "--hostname", HOST, "--region", REGION)
    assert code == 2 and "nope.pfx: unreadable" in err
    code, _, err = run(capsys, "publish-server-cert", str(pfx), "--stack", "dev", "--region", REGION)
    assert code == 2 and "pass --hostname NAME or --stack-outputs FILE" in err
    code, _, err = run(capsys, "publish-server-cert", str(pfx), "--stack", "dev/../prod", "--hostname", HOST)
    assert code == 2 and "expected a Pulumi stack name" in err
    code, _, err = run(capsys, "--stack-outputs", str(outputs_file(env)), "publish-server-cert", str(pfx), "--stack", "prod")
    assert code == 2 and "are of stack 'dev'" in err


def test_a_secret_scheduled_for_deletion_is_named(env: Path, ca: BeaconCa, capsys) -> None:
    pfx, _ = ca.pfx(env / "d.pfx")
    assert run(capsys, "publish-server-cert", str(pfx), "--stack", "dev", "--hostname", HOST, "--region", REGION)[0] == 0
    boto_client("secretsmanager").delete_secret(SecretId="flexnet-beacon/dev/server-pfx", RecoveryWindowInDays=7)
    code, _, err = run(capsys, "publish-server-cert", str(pfx), "--stack", "dev", "--hostname", HOST, "--region", REGION)
    assert code == 1 and "scheduled for deletion" in err and "restore-secret --secret-id flexnet-beacon/dev/server-pfx" in err
