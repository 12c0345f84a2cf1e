"""A protected stack does not deploy what cannot work: `pulumi up` stops, `pulumi preview` and the
offline plan warn (components/deployability.py deploy_gate, wired in __main__.py).

Proved under Pulumi mocks in both modes: the update is refused before any resource is registered,
the preview of the same stack renders every resource and says what would stop the update, and a
stack that fixes each problem deploys. Also FreshestCRL (delta CRL) URLs reach the CRL egress.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import scripts.offline as offline
from components.deployability import deploy_blockers, deploy_gate, source_key
from components.stack import prepare
from conftest import stack_raw

CALLER = offline.MOCK_ACCOUNT
OTHER = "210987654321"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _points(url: str) -> list[x509.DistributionPoint]:
    return [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]


def _certificate(cn: str, key, issuer=None, issuer_key=None, *, ca: bool, crl: str | None = None, delta: str | None = None):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if crl:
        builder = builder.add_extension(x509.CRLDistributionPoints(_points(crl)), critical=False)
    if delta:
        builder = builder.add_extension(x509.FreshestCRL(_points(delta)), critical=False)
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def real_pki(tmp_path_factory) -> Path:
    """A CA and a device whose CRLs are on a name nobody reserved for documentation."""
    base = tmp_path_factory.mktemp("pki")
    ca_key, device_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Corp Devices CA", ca_key, ca=True, delta="http://pki.corp-devices.net/ca+.crl")
    device = _certificate("laptop-1", device_key, ca, ca_key, ca=False, crl="http://pki.corp-devices.net/ca.crl")
    (base / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (base / "device.pem").write_bytes(device.public_bytes(serialization.Encoding.PEM))
    return base


def _secret(account: str, name: str, stack: str = "prod") -> str:
    return f"arn:aws:secretsmanager:us-east-1:{account}:secret:flexnet-beacon/{stack}/{name}-AbCdEf"


def _fixed_prod(account: str = CALLER) -> dict[str, str]:
    raw, _ = stack_raw("prod")
    raw.update({
        "clientCaCertificates": '["ca.pem"]',
        "sampleDeviceCertificate": "device.pem",
        "crlUrls": "[]",
        "serverCertificateSecretArn": _secret(account, "server-pfx"),
        "serverCertificatePasswordSecretArn": _secret(account, "server-pfx-password"),
    })
    return raw


class _Monitors:
    """Every RecordingMonitor a run makes, to see what was registered before a refusal."""

    def __init__(self, monkeypatch) -> None:
        self.made: list[offline.RecordingMonitor] = []
        original = offline.RecordingMonitor
        outer = self

        class Watched(original):  # type: ignore[misc, valid-type]
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                outer.made.append(self)

        monkeypatch.setattr(offline, "RecordingMonitor", Watched)


# --- the decision, pure -------------------------------------------------------------------------------

def test_the_shipped_prod_stack_is_stopped_for_each_placeholder_url_naming_its_key() -> None:
    raw, region = stack_raw("prod")
    prepared = prepare(raw, "prod", region)
    assert prepared.cfg.protection
    blockers = deploy_blockers(prepared.cfg, prepared.crl, CALLER)
    assert len(blockers) == 2 and all("is on a documentation name" in line for line in blockers)
    assert {line.split(":", 1)[0] for line in blockers} == {"crlUrls", "clientCaCertificates"}
    assert all("\n" not in line for line in blockers)


def test_unprotected_stacks_only_warn_and_only_about_foreign_secrets() -> None:
    raw, region = stack_raw("dev")
    raw["serverCertificateSecretArn"] = _secret(OTHER, "server-pfx", "dev")
    raw["serverCertificatePasswordSecretArn"] = _secret(CALLER, "server-pfx-password", "dev")
    prepared = prepare(raw, "dev", region)
    assert not prepared.cfg.protection and deploy_blockers(prepared.cfg, prepared.crl, CALLER) == []
    warnings, blockers = deploy_gate(prepared.cfg, prepared.crl, CALLER, updating=True)
    assert blockers == [] and len(warnings) == 1 and warnings[0].startswith(f"serverCertificateSecretArn: got {_secret(OTHER, 'server-pfx', 'dev')}")


def test_source_keys() -> None:
    assert source_key(["crlUrls"]) == "crlUrls"
    assert source_key(["CDP of sample device CN=x"]) == "sampleDeviceCertificate"
    assert source_key(["CDP of CN=CA", "crlUrls"]) == "clientCaCertificates/crlUrls"
    assert source_key(["Delta CRL of CN=CA"]) == "clientCaCertificates"
    assert source_key(["crlHosting"]) == "crlBucketName"


def test_delta_crl_urls_join_the_crl_egress(real_pki: Path) -> None:
    raw, region = stack_raw("prod")
    raw.update(_fixed_prod())
    prepared = prepare(raw, "prod", region, base=real_pki)
    assert "http://pki.corp-devices.net/ca+.crl" in prepared.crl.urls
    assert prepared.crl.sources["http://pki.corp-devices.net/ca+.crl"] == ["Delta CRL of CN=Corp Devices CA"]
    assert "pki.corp-devices.net" in prepared.allowlist["crl"]


# --- the program, under mocks: update and preview ------------------------------------------------------

def test_update_of_the_shipped_prod_stack_stops_before_any_resource(monkeypatch) -> None:
    monitors = _Monitors(monkeypatch)
    raw, region = stack_raw("prod")
    with pytest.raises(Exception) as refused:
        offline.run_program("prod", raw, region, preview=False)
    message = str(refused.value)
    assert type(refused.value).__name__ == "RunError"
    assert message.startswith("stack prod is protected and this update would deploy a beacon that cannot work (2 problems):")
    assert "Traceback" not in message
    assert [r for m in monitors.made for r in m.recorded] == [], "nothing may be registered before the refusal"


def test_preview_of_the_shipped_prod_stack_renders_and_warns() -> None:
    raw, region = stack_raw("prod")
    run = offline.run_program("prod", raw, region, preview=True)
    assert len(run.resources) > 50
    warned = [msg for level, msg in run.log if level == "warning" and msg.startswith("pulumi up will stop: ")]
    assert len(warned) == 2


def test_a_fixed_protected_stack_deploys(real_pki: Path) -> None:
    run = offline.run_program("prod", _fixed_prod(), "us-east-1", base=real_pki, preview=False)
    assert any(r.type == "aws:ec2/instance:Instance" for r in run.resources)
    assert not [msg for level, msg in run.log if level == "warning" and "will stop" in msg]


def test_update_stops_on_a_secret_of_another_account(real_pki: Path, monkeypatch) -> None:
    monitors = _Monitors(monkeypatch)
    with pytest.raises(Exception) as refused:
        offline.run_program("prod", _fixed_prod(account=OTHER), "us-east-1", base=real_pki, preview=False)
    lines = str(refused.value).splitlines()[1:]
    assert [line.split(":", 1)[0].strip(" -") for line in lines] == ["serverCertificateSecretArn", "serverCertificatePasswordSecretArn"]
    assert all(f"expected a secret in account {CALLER}" in line for line in lines)
    assert [r for m in monitors.made for r in m.recorded] == []
