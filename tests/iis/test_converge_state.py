"""components/iis/state.py for issue 12: the issuer list SChannel sends, file access as the worker
process, and the role services with a reason each (the Flexera prerequisites among them)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.iis import state as iis_state
from components.stack import prepare
from conftest import ROOT, stack_raw


def _ca(cn: str, organization: str = "Example Corp") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(start + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256())
    )


def _state(tmp_path: Path, cas: list[x509.Certificate], **overrides: str) -> dict:
    from cryptography.hazmat.primitives import serialization

    (tmp_path / "cas.pem").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in cas))
    raw = {"clientCaCertificates": json.dumps(["cas.pem"]), "crlUrls": '["http://crl.example.com/d.crl"]', **overrides}
    return prepare(raw, "dev", "us-east-1", base=tmp_path).iis_state


def test_the_issuer_list_is_sent_with_exclusive_trust(tmp_path: Path) -> None:
    state = _state(tmp_path, [_ca("Devices CA")])
    assert state["schannel"] == {"clientAuthTrustMode": 2, "sendTrustedIssuerList": True}
    # The list SChannel sends is the ClientAuthIssuer store: exactly the issuing CAs of the state.
    assert [e["subject"] for e in state["trustStores"] if e["store"] == "ClientAuthIssuer"] == ["O=Example Corp,CN=Devices CA"]  # RFC 4514 order


def test_no_issuer_list_without_exclusive_trust(tmp_path: Path) -> None:
    state = _state(tmp_path, [_ca("Devices CA")], exclusiveClientTrust="false", clientAuthTrustMode="0")
    assert state["schannel"]["sendTrustedIssuerList"] is False  # it would list every root of the machine


def test_no_issuer_list_when_the_names_would_not_fit_the_handshake(tmp_path: Path, monkeypatch) -> None:
    cas = [_ca(f"Devices CA {n}", "O" * 60) for n in range(3)]
    state = _state(tmp_path, cas)
    assert state["schannel"]["sendTrustedIssuerList"] is True
    monkeypatch.setattr(iis_state, "TRUSTED_ISSUER_LIST_LIMIT", 100)
    assert _state(tmp_path, cas)["schannel"]["sendTrustedIssuerList"] is False


def test_trusted_issuer_list_bytes_counts_der_names(tmp_path: Path) -> None:
    from components.certs.trust import ClientTrust, LoadedCertificate

    ca = _ca("Devices CA")
    trust = ClientTrust(roots=(), intermediates=(), issuing=(LoadedCertificate("x.pem", ca),))
    assert iis_state.trusted_issuer_list_bytes(trust) == len(ca.subject.public_bytes()) + 2
    assert iis_state.TRUSTED_ISSUER_LIST_LIMIT < 16 * 1024  # SChannel's 16 KB, with a margin


def test_file_access_runs_as_the_worker_process_at_both_applications(tmp_path: Path) -> None:
    state = _state(tmp_path, [_ca("Devices CA")])
    assert state["serverRuntime"] == {
        "authenticatedUserOverride": "UseWorkerProcessUser",
        "locations": ["Default Web Site/ManageSoftDL", "Default Web Site/ManageSoftRL"],
    }
    # Both applications are also lock-down locations (same authentication, else uploads get 409).
    assert set(state["serverRuntime"]["locations"]) < set(state["site"]["locations"])


def test_every_role_service_has_a_reason_and_the_flexera_prerequisites_are_there() -> None:
    assert tuple(iis_state.IIS_FEATURE_REASONS) == iis_state.IIS_FEATURES
    assert all(reason.strip() for reason in iis_state.IIS_FEATURE_REASONS.values())
    # Flexera: IIS 7.0 or later with ASP.NET 4.5 or later (and what ASP.NET 4.5 needs); the
    # certificate mapping and the module the script uses; static files for the downloads.
    assert {"Web-Server", "Web-WebServer", "Web-Asp-Net45", "Web-Net-Ext45", "Web-ISAPI-Ext", "Web-ISAPI-Filter",
            "Web-Static-Content", "Web-Cert-Auth", "Web-Scripting-Tools", "Web-Filtering"} <= set(iis_state.IIS_FEATURES)
    assert "Web-Client-Auth" not in iis_state.IIS_FEATURES  # the Active Directory mapping, not ours
    doc = (ROOT / "docs" / "iis-mtls.md").read_text(encoding="utf-8")
    assert "https://docs.flexera.com/flexera/EN/ITAssets/PrerequisitesForInvBeacons.htm" in doc


def test_golden_states_carry_the_new_keys() -> None:
    for stack in ("dev", "prod"):
        raw, region = stack_raw(stack)
        state = prepare(raw, stack, region).iis_state
        assert "sendTrustedIssuerList" in state["schannel"] and state["serverRuntime"]["locations"]
