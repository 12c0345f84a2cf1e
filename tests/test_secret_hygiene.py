"""No private key, PFX blob or password in the repository, the plan artifacts or the mocked inputs."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
import datetime as dt

from components.secret_scan import scan
from conftest import ROOT

# Files that describe the patterns themselves with literal samples (policy/secret_patterns.py, the
# definition, and components/secret_scan.py are written so that the scan finds nothing in them).
SCANNER_FILES = {"tests/test_secret_hygiene.py"}
# Literal passwords found that are not secrets: the throwaway passwords of the PFX files that
# tests/pki/test_pki.py makes at run time (found since the scan shares the policy pack's patterns, which
# also see PKI_PASSWORD-style names and short values). By file and exact excerpt: any other literal,
# in that file or another, still fails.
KNOWN_TEST_PASSWORDS = {
    ("tests/pki/test_pki.py", 'PKI_PASSWORD": "pw"'),
    ("tests/pki/test_pki.py", 'PKI_PASSWORD": "x"'),
    ("tests/pki/test_pki.py", 'PKI_PASSWORD": "many"'),
    ("tests/pki/test_pki.py", 'PKI_PASSWORD": "correct horse"'),
}


def _self_signed():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    return key, cert


def test_scanner_finds_what_it_must_and_spares_certificates() -> None:
    key, cert = _self_signed()
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    pfx = pkcs12.serialize_key_and_certificates(b"t", key, cert, None, serialization.BestAvailableEncryption(b"pw"))
    assert [f.kind for f in scan(pem_key, "x")] == ["private key"]
    assert [f.kind for f in scan(json.dumps({"blob": base64.b64encode(pfx).decode()}), "x")] == ["pkcs12 blob"]
    assert [f.kind for f in scan('$password = "S3cret-value!"', "x")] == ["password"]
    assert [f.kind for f in scan('"password": "hunter22"', "x")] == ["password"]
    # Public certificates, placeholders and variables are not secrets.
    assert scan(cert.public_bytes(serialization.Encoding.PEM).decode(), "x") == []
    assert scan("password='<ACCOUNT PASSWORD>' $password = $generated password = ''", "x") == []
    assert scan('{"password": "serverCertificatePasswordSecretArn"}', "x") == []


def test_repository_has_no_secrets() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    findings = []
    for name in filter(None, files):
        if name in SCANNER_FILES:
            continue
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        findings += [f for f in scan(text, name) if (f.where, f.excerpt) not in KNOWN_TEST_PASSWORDS]
    assert findings == []


@pytest.fixture(scope="module")
def plan_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scripts import plan

    out = tmp_path_factory.mktemp("plan")
    for stack in ("dev", "prod"):
        plan.plan(stack, out)
    return out


def test_plan_artifacts_have_no_secrets(plan_artifacts: Path) -> None:
    files = sorted(p for p in plan_artifacts.rglob("*") if p.is_file())
    assert len(files) >= 20
    findings = [f for p in files for f in scan(p.read_text(encoding="utf-8"), str(p.relative_to(plan_artifacts)))]
    assert findings == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_mocked_resource_inputs_have_no_secrets(stack: str, request: pytest.FixtureRequest) -> None:
    planned = request.getfixturevalue(stack)
    findings = [f for r in planned.resources for f in scan(json.dumps(r.inputs), r.name)]
    assert findings == []


def test_secret_config_keys_refuse_plain_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import config

    demo = config.Key("demoPassword", "string", "", "a password-like setting", secret=True)
    monkeypatch.setattr(config, "KEYS", config.KEYS + (demo,))
    monkeypatch.setattr(config, "KEYS_BY_NAME", {**config.KEYS_BY_NAME, "demoPassword": demo})
    issues = config.validate({"demoPassword": "hunter22-plain"}, "dev", "us-east-1")
    assert [i.key for i in issues] == ["demoPassword"]
    assert "pulumi config set --secret demoPassword" in str(issues[0])
    assert "hunter22" not in str(issues[0])
    assert config.validate({"demoPassword": config.SecretValue("hunter22-plain")}, "dev", "us-east-1") == []
    # A secure: value in a stack file arrives as a secret placeholder, never decrypted.
    raw, _, secret_keys = config.stack_file_to_raw({"config": {"flexnet-beacon:demoPassword": {"secure": "AAABAKxyz"}}})
    assert isinstance(raw["demoPassword"], config.SecretValue) and secret_keys == ["flexnet-beacon:demoPassword"]


def test_secret_values_are_never_echoed_in_messages() -> None:
    from components import config

    issue = config.ConfigIssue("owner", config.SecretValue("s3cr3t-value"), "a tag value")
    assert "s3cr3t" not in str(issue)
