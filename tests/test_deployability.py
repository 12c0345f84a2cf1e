"""Readiness warnings: what a deployment of this config cannot do on a real beacon."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components import config
from components.certs.trust import CrlEgress
from components.deployability import is_placeholder_host, deployability_warnings
from conftest import ROOT


@pytest.mark.parametrize("host,placeholder", [
    ("example.com", True), ("crl.example.com", True), ("pki.sub.example.org", True), ("EXAMPLE.NET.", True),
    ("crl.test", True), ("ca.invalid", True), ("localhost", True), ("pki.example", True),
    ("example.co", False), ("myexample.com", False), ("example.com.evil.net", False), ("crl.contoso.com", False),
    ("testing.com", False), ("crl.examples.org", False),
])
def test_placeholder_hosts(host: str, placeholder: bool) -> None:
    assert is_placeholder_host(host) is placeholder


def _cfg(**raw: str) -> config.BeaconConfig:
    return config.load(raw, "dev", "us-east-1")


def _crl(sources: dict[str, list[str]]) -> CrlEgress:
    return CrlEgress(urls=tuple(sorted(sources)), hosts=(), ports=(80,), sources=sources, ignored=())


def test_missing_server_certificate_is_named() -> None:
    warnings = deployability_warnings(_cfg(), _crl({"http://crl.contoso.com/d.crl": ["crlUrls"]}))
    assert len(warnings) == 1 and warnings[0].startswith("serverCertificateSecretArn is empty")


def test_placeholder_crl_urls_and_unreachable_device_crl() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:flexnet-beacon/dev/pfx-AbCdEf"
    cfg = _cfg(serverCertificateSecretArn=arn, serverCertificatePasswordSecretArn=arn.replace("pfx", "pw"))
    sources = {"http://crl.example.com/devices.crl": ["crlUrls"], "http://pki.contoso.com/root.crl": ["CDP of CN=Issuing CA"]}
    warnings = deployability_warnings(cfg, _crl(sources))
    assert [w.split(" ")[0] for w in warnings] == ["CRL/AIA", "revocationChecking"]
    assert "http://crl.example.com/devices.crl (crlUrls)" in warnings[0] and "403.13" in warnings[0]
    # A real device CRL beside the placeholder: the placeholder is still named, the device CRL is reachable.
    sources["http://crl.contoso.com/devices.crl"] = ["CDP of sample device CN=laptop"]
    assert [w.split(" ")[0] for w in deployability_warnings(cfg, _crl(sources))] == ["CRL/AIA"]
    # Revocation off: no device CRL is needed.
    off = _cfg(serverCertificateSecretArn=arn, serverCertificatePasswordSecretArn=arn.replace("pfx", "pw"), revocationChecking="false")
    assert [w.split(" ")[0] for w in deployability_warnings(off, _crl({"http://crl.example.com/devices.crl": ["crlUrls"]}))] == ["CRL/AIA"]


def test_plan_prints_the_warnings(capsys, tmp_path) -> None:
    from scripts import plan

    assert plan.main(["--stack", "dev", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "serverCertificateSecretArn is empty" in text
    assert "revocationChecking is on but no device CRL is reachable" in text


def test_doctor_lists_each_stack_configs_warnings_and_errors(tmp_path: Path) -> None:
    from scripts.doctor import MISSING, WARNING, check_stack_config

    dev = check_stack_config("dev")
    assert dev.status == WARNING and any(w.startswith("serverCertificateSecretArn is empty") for w in dev.data["warnings"])
    # A stack file with a bad value: the check says what the plan would say.
    (tmp_path / "stacks").mkdir()
    shutil.copytree(ROOT / "stacks" / "certs", tmp_path / "stacks" / "certs")
    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace("10.80.0.0/22", "8.8.8.0/24")
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(text)
    broken = check_stack_config("dev", tmp_path)
    assert broken.status == MISSING and "vpcCidr" in broken.detail and "8.8.8.0/24" in broken.detail
