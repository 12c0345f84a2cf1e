"""scripts.pki (the offline PKI CLI) and the pure certificate helpers (components/certs/, components/iis/mapping_rules.py).

Every verb, every misuse (exit 2, one line, no traceback), file modes, PFX round trips, CSR
signing, bulk issue, CSV import, `check` verdicts. Real handshakes are in tests/tls/.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from components.certs import facts as cert_facts

from components.certs import verdict as cert_verdict

from components.iis import mapping_rules
from conftest import ROOT
from pki_cli import fails, init_ca, ok, pki, read_index
from scripts.pki import cli
from scripts.pki import inputs as pki_inputs

CRL_URL = "http://crl.example.com/devices-ca.crl"
CA_CN = "Example Devices CA"


# ---------------------------------------------------------------------------------------------
# Helpers


def cert_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def init(directory: Path, *extra: str) -> Path:
    return init_ca(directory, CA_CN, CRL_URL, *extra)


index = read_index


def make_csr(cn: str | None, key: Any = None, o: str | None = None) -> tuple[x509.CertificateSigningRequest, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o)] if o else []) + ([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attrs))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)  # ignored by the CA
        .sign(key, hashes.SHA256())
    )
    return csr, key


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root-only PKI with a server and two clients, for read-only tests."""
    d = tmp_path_factory.mktemp("shared") / "pki"
    init(d)
    ok(d, "issue-server", "--dns", "beacon.example.com", "--dns", "beacon2.example.com", "--ip", "10.0.0.5")
    ok(d, "issue-client", "--cn", "laptop-01", "--o", "Example Corp", "--ou", "Sales")
    ok(d, "issue-client", "--cn", "laptop-02")
    return d


@pytest.fixture(scope="module")
def chained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root + intermediate PKI with one client."""
    d = tmp_path_factory.mktemp("chained") / "pki"
    init(d, "--intermediate", "--aia-url", "http://pki.example.com/ca.crt")
    ok(d, "issue-client", "--cn", "device-1")
    return d


# ---------------------------------------------------------------------------------------------
# init-ca


def test_init_ca_layout_extensions_and_modes(shared: Path) -> None:
    for name in ("ca.pem", "ca.key", "chain.pem", "crl.pem", "crl.der", "index.json"):
        assert (shared / name).is_file(), name
    assert not (shared / "root.pem").exists() and not (shared / "root-crl.pem").exists()
    assert mode(shared / "ca.key") == 0o600
    assert mode(shared / "private") == 0o700 and mode(shared) == 0o700
    assert mode(shared / "ca.pem") == 0o644
    ca = cert_of(shared / "ca.pem")
    assert cert_facts.common_name(ca.subject) == CA_CN and ca.subject == ca.issuer and cert_facts.is_self_signed(ca)
    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(ca, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    assert ext(ca, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(ca.public_key())
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp256r1"
    assert cert_facts.cdp_urls(ca) == []  # the root has no CDP; what it issues does
    assert (shared / "chain.pem").read_bytes() == (shared / "ca.pem").read_bytes()
    crl = x509.load_der_x509_crl((shared / "crl.der").read_bytes())
    assert crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert crl.public_bytes(serialization.Encoding.PEM) == (shared / "crl.pem").read_bytes()
    idx = index(shared)
    assert idx["ca"]["crlUrls"] == [CRL_URL] and idx["ca"]["intermediate"] is False


def test_init_ca_intermediate(chained: Path) -> None:
    root, ca = cert_of(chained / "root.pem"), cert_of(chained / "ca.pem")
    assert mode(chained / "root.key") == 0o600 and mode(chained / "ca.key") == 0o600
    assert cert_facts.common_name(ca.subject) == CA_CN and cert_facts.common_name(root.subject) == f"{CA_CN} Root"
    ca.verify_directly_issued_by(root)
    bc = ext(ca, x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    assert ext(ca, x509.AuthorityKeyIdentifier).value.key_identifier == ext(root, x509.SubjectKeyIdentifier).value.digest
    assert cert_facts.cdp_urls(ca) == ["http://crl.example.com/root-devices-ca.crl"]  # the root's CRL
    assert cert_facts.read_certificates(chained / "chain.pem") == [ca, root]
    device = cert_of(chained / "issued" / "device-1.pem")
    device.verify_directly_issued_by(ca)
    assert cert_facts.cdp_urls(device) == [CRL_URL]
    assert cert_facts.aia_urls(device) == ["http://pki.example.com/ca.crt"] == cert_facts.aia_urls(device, "caIssuers")
    crl = x509.load_pem_x509_crl((chained / "crl.pem").read_bytes())
    root_crl = x509.load_der_x509_crl((chained / "root-crl.der").read_bytes())
    assert crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())
    assert root_crl.issuer == root.subject and root_crl.is_signature_valid(root.public_key())


def test_no_aia_without_aia_url(shared: Path) -> None:
    laptop = cert_of(shared / "issued" / "laptop-01.pem")
    with pytest.raises(x509.ExtensionNotFound):
        laptop.extensions.get_extension_for_class(x509.AuthorityInformationAccess)


def test_init_ca_refuses_to_overwrite(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    fails(d, "init-ca", "--cn", "Another", expect="a CA already exists")
    fails(d, "init-ca", "--cn", "Another", "--intermediate", expect="refusing to overwrite")
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before


def test_rsa_keys_and_key_encipherment(tmp_path: Path) -> None:
    d = init(tmp_path / "pki", "--key", "rsa2048")
    ok(d, "issue-client", "--cn", "rsa-device")
    ca, device = cert_of(d / "ca.pem"), cert_of(d / "issued" / "rsa-device.pem")
    assert isinstance(ca.public_key(), rsa.RSAPublicKey) and ca.public_key().key_size == 2048
    assert isinstance(device.public_key(), rsa.RSAPublicKey)
    ku = ext(device, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    ok(d, "issue-client", "--cn", "ec-device", "--key", "ec")
    ku = ext(cert_of(d / "issued" / "ec-device.pem"), x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment


# ---------------------------------------------------------------------------------------------
# issue-server / issue-client


def test_issue_server(shared: Path) -> None:
    cert = cert_of(shared / "issued" / "beacon.example.com.pem")
    ca = cert_of(shared / "ca.pem")
    assert mode(shared / "private" / "beacon.example.com.key") == 0o600
    assert cert_facts.eku_names(cert) == ["serverAuth", "clientAuth"]
    assert cert_facts.subject_alt_names(cert) == {"dns": ["beacon.example.com", "beacon2.example.com"], "ip": ["10.0.0.5"]}
    assert cert_facts.common_name(cert.subject) == "beacon.example.com"
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment and not ku.value.key_cert_sign
    assert not cert_facts.is_ca(cert) and ext(cert, x509.BasicConstraints).critical
    assert cert_facts.cdp_urls(cert) == [CRL_URL]
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ext(ca, x509.SubjectKeyIdentifier).value.digest
    cert.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key((shared / "private" / "beacon.example.com.key").read_bytes(), None)
    assert key.public_key() == cert.public_key()
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=397) <= lifetime <= dt.timedelta(days=397, minutes=6)


def test_issue_server_name_and_days(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    ok(d, "issue-server", "--dns", "b.example.com", "--name", "beacon-b", "--days", "30")
    cert = cert_of(d / "issued" / "beacon-b.pem")
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert index(d)["certificates"]["beacon-b"]["kind"] == "server"


def test_issue_client(shared: Path) -> None:
    cert = cert_of(shared / "issued" / "laptop-01.pem")
    assert cert_facts.eku_names(cert) == ["clientAuth"]
    assert cert.subject.rfc4514_string() == "CN=laptop-01,OU=Sales,O=Example Corp"
    assert cert_facts.subject_alt_names(cert) == {}
    assert mode(shared / "private" / "laptop-01.key") == 0o600
    entry = index(shared)["certificates"]["laptop-01"]
    assert entry["kind"] == "client" and entry["status"] == "valid"
    assert entry["serial"] == cert_facts.serial_hex(cert.serial_number) and entry["notAfter"] == cert_facts.iso(cert.not_valid_after_utc)


def test_validity_is_cut_to_the_issuing_ca(tmp_path: Path) -> None:
    d = init(tmp_path / "pki", "--days", "20")
    code, _, err = pki(d, "issue-client", "--cn", "long", "--days", "400")
    assert code == 0 and "cut to end with the issuing CA" in err
    assert cert_of(d / "issued" / "long.pem").not_valid_after_utc == cert_of(d / "ca.pem").not_valid_after_utc


def test_bulk_count_200(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    code, out, err = pki(d, "issue-client", "--count", "200", "--prefix", "dev-", "--o", "Example Corp")
    assert code == 0, err
    assert err.splitlines() == ["issued 100/200", "issued 200/200"]
    assert "issued 200 client certificates (dev-0001 .. dev-0200)" in out
    issued = index(d)["certificates"]
    assert sorted(issued) == [f"dev-{i:04d}" for i in range(1, 201)]
    assert len({e["serial"] for e in issued.values()}) == 200
    assert len(list((d / "private").iterdir())) == 200
    assert all(mode(p) == 0o600 for p in (d / "private").iterdir())
    assert cert_facts.common_name(cert_of(d / "issued" / "dev-0137.pem").subject) == "dev-0137"
    # A second batch must not collide.
    fails(d, "issue-client", "--count", "2", "--prefix", "dev-", "--start", "200", expect="'dev-0200' is already issued")
    ok(d, "issue-client", "--count", "2", "--prefix", "dev-", "--start", "201")
    assert "dev-0202" in index(d)["certificates"]


def test_csv_import(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text("cn,o,ou\nlaptop-a,Example Corp,Sales\nlaptop-b,,\n\nlaptop-c,Other Org,Field\n")
    ok(d, "issue-client", "--from-csv", str(csv_file), "--ou", "Default OU")
    assert cert_of(d / "issued" / "laptop-a.pem").subject.rfc4514_string() == "CN=laptop-a,OU=Sales,O=Example Corp"
    assert cert_of(d / "issued" / "laptop-b.pem").subject.rfc4514_string() == "CN=laptop-b,OU=Default OU"
    assert cert_of(d / "issued" / "laptop-c.pem").subject.rfc4514_string() == "CN=laptop-c,OU=Field,O=Other Org"


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("name,o\nx,y\n", "expected a header row with columns cn,o,ou"),
        ("cn,o,ou,extra\nx,y,z,w\n", "unknown column(s) extra"),
        ("cn,o\ndup,\ndup,\n", "appears twice"),
        ("cn,o\nok-1,\n../evil,\n", "devices.csv:3: cn '../evil' is not usable"),
        ("cn,o\n,Example\n", "devices.csv:2: empty cn"),
        ("cn,o,ou\n", "no rows after the header"),
    ],
)
def test_csv_import_misuse(tmp_path: Path, content: str, expect: str) -> None:
    d = init(tmp_path / "pki")
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text(content)
    fails(d, "issue-client", "--from-csv", str(csv_file), expect=expect)
    assert index(d)["certificates"] == {} and not list((d / "issued").iterdir())


# ---------------------------------------------------------------------------------------------
# sign-csr


def test_sign_csr_files_directory_and_der(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    csr_dir = tmp_path / "csrs"
    csr_dir.mkdir()
    csr_a, key_a = make_csr("device-a", o="Example Corp")
    csr_b, _ = make_csr("device-b")
    (csr_dir / "a.csr").write_bytes(csr_a.public_bytes(serialization.Encoding.PEM))
    (csr_dir / "b.pem").write_bytes(csr_b.public_bytes(serialization.Encoding.PEM))
    (csr_dir / "notes.txt").write_text("ignored")
    csr_c, _ = make_csr("device-c", key=rsa.generate_private_key(65537, 2048))
    der = tmp_path / "c.der"
    der.write_bytes(csr_c.public_bytes(serialization.Encoding.DER))
    out = ok(d, "sign-csr", str(csr_dir), str(der), "--ou", "Field")
    assert out.count("signed ") == 3
    a = cert_of(d / "issued" / "device-a.pem")
    assert a.public_key() == key_a.public_key()
    assert a.subject.rfc4514_string() == "CN=device-a,OU=Field,O=Example Corp"
    assert cert_facts.eku_names(a) == ["clientAuth"]  # the CSR asked for serverAuth: ignored
    assert not (d / "private" / "device-a.key").exists()
    assert index(d)["certificates"]["device-a"]["source"] == "csr"
    assert ext(cert_of(d / "issued" / "device-c.pem"), x509.KeyUsage).value.key_encipherment
    fails(d, "export-pfx", "device-a", expect="no private key for 'device-a'", env={"PKI_PASSWORD": "pw"})


def test_sign_csr_rejects_tampered_csr(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    good, _ = make_csr("device-good")
    csr, _ = make_csr("device-tamp")
    der = csr.public_bytes(serialization.Encoding.DER)
    tampered = der.replace(b"device-tamp", b"device-evil")
    assert tampered != der and x509.load_der_x509_csr(tampered)  # still parses
    (tmp_path / "good.csr").write_bytes(good.public_bytes(serialization.Encoding.PEM))
    bad = tmp_path / "tampered.csr"
    bad.write_bytes(x509.load_der_x509_csr(tampered).public_bytes(serialization.Encoding.PEM))
    fails(d, "sign-csr", str(tmp_path / "good.csr"), str(bad), expect="tampered.csr: CSR signature does not verify")
    assert index(d)["certificates"] == {}  # all or nothing: the good one was not signed either


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        ("garbage", "not a certificate signing request"),
        ("no-cn", "the CSR subject has no CN"),
        ("rsa1024", "unsupported key RSA 1024"),
        ("bad-name", "is not usable"),
        ("missing", "no such file or directory"),
        ("empty-dir", "no *.csr or *.pem files"),
    ],
)
def test_sign_csr_misuse(tmp_path: Path, kind: str, expect: str) -> None:
    d = init(tmp_path / "pki")
    path = tmp_path / "req.csr"
    if kind == "garbage":
        path.write_text("hello")
    elif kind == "no-cn":
        path.write_bytes(make_csr(None, o="Example Corp")[0].public_bytes(serialization.Encoding.PEM))
    elif kind == "rsa1024":
        path.write_bytes(make_csr("weak", key=rsa.generate_private_key(65537, 1024))[0].public_bytes(serialization.Encoding.PEM))
    elif kind == "bad-name":
        path.write_bytes(make_csr("a/b")[0].public_bytes(serialization.Encoding.PEM))
    elif kind == "empty-dir":
        path = tmp_path / "empty"
        path.mkdir()
    fails(d, "sign-csr", str(path), expect=expect)


# ---------------------------------------------------------------------------------------------
# revoke / crl


def test_revoke_and_crl(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    for name in ("a", "b", "c"):
        ok(d, "issue-client", "--cn", name)
    ok(d, "revoke", "a", "--reason", "keyCompromise")
    serial_b = index(d)["certificates"]["b"]["serial"]
    colon_upper = ":".join(serial_b[i:i + 2] for i in range(0, len(serial_b), 2)).upper()
    ok(d, "revoke", "--serial", colon_upper)  # reason defaults to unspecified
    assert "run `python -m scripts.pki" in ok(d, "revoke", "c", "--reason", "superseded")
    out = ok(d, "crl", "--days", "3")
    assert "CRL 2" in out and "3 revoked" in out
    ca = cert_of(d / "ca.pem")
    crl = x509.load_pem_x509_crl((d / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key()) and crl.issuer == ca.subject
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=3)
    summary = cert_facts.crl_summary(crl)
    reasons = {r["serial"]: r["reason"] for r in summary["revoked"]}
    entries = index(d)["certificates"]
    assert reasons == {entries["a"]["serial"]: "keyCompromise", serial_b: None, entries["c"]["serial"]: "superseded"}
    assert entries["a"]["status"] == "revoked" and entries["a"]["reason"] == "keyCompromise" and entries["a"]["revokedAt"]
    ok(d, "crl")
    crl3 = x509.load_der_x509_crl((d / "crl.der").read_bytes())
    assert crl3.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert crl3.next_update_utc - crl3.last_update_utc == dt.timedelta(days=7)


def test_revoke_misuse(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--cn", "dev")
    ok(d, "revoke", "dev")
    fails(d, "revoke", "dev", expect="already revoked")
    fails(d, "revoke", "nobody", expect="unknown name 'nobody'")
    fails(d, "revoke", "--serial", "abcdef", expect="no certificate with serial abcdef")
    fails(d, "revoke", "--serial", "xyz", expect="expected hex digits")
    fails(d, "revoke", expect="a NAME or --serial HEX")
    fails(d, "revoke", "dev", "--serial", "01", expect="a NAME or --serial HEX")
    fails(d, "revoke", "--serial", index(d)["authorities"]["issuing"]["serial"], expect="is the root CA")
    code, _, err = pki(d, "revoke", "dev", "--reason", "whatever")
    assert code == 2 and "invalid choice" in err


def test_revoke_intermediate_goes_to_root_crl(tmp_path: Path) -> None:
    d = init(tmp_path / "pki", "--intermediate")
    serial = index(d)["authorities"]["issuing"]["serial"]
    ok(d, "revoke", "--serial", serial, "--reason", "cessationOfOperation")
    ok(d, "crl")
    root_crl = x509.load_pem_x509_crl((d / "root-crl.pem").read_bytes())
    assert [cert_facts.serial_hex(e.serial_number) for e in root_crl] == [serial]
    assert len(list(x509.load_pem_x509_crl((d / "crl.pem").read_bytes()))) == 0


def test_crl_with_root_key_offline(tmp_path: Path) -> None:
    d = init(tmp_path / "pki", "--intermediate")
    ok(d, "crl", "--days", "2", "--root-days", "90")
    root_crl = x509.load_pem_x509_crl((d / "root-crl.pem").read_bytes())
    assert root_crl.next_update_utc - root_crl.last_update_utc == dt.timedelta(days=90)
    (d / "root.key").rename(tmp_path / "root.key.offline")
    code, out, err = pki(d, "crl")
    assert code == 0 and "root-crl not re-signed" in err and "crl.pem/crl.der: CRL 3" in out
    assert (d / "root-crl.pem").read_bytes() == root_crl.public_bytes(serialization.Encoding.PEM)
    ok(d, "revoke", "--serial", index(d)["authorities"]["issuing"]["serial"])
    fails(d, "crl", expect="root's key is needed to publish the intermediate's revocation")


# ---------------------------------------------------------------------------------------------
# export-pfx

PBES2 = bytes.fromhex("06092a864886f70d01050d")  # 1.2.840.113549.1.5.13
AES256_CBC = bytes.fromhex("060960864801650304012a")  # 2.16.840.1.101.3.4.1.42
SHA256 = bytes.fromhex("0609608648016503040201")  # 2.16.840.1.101.3.4.2.1
PBE_SHA1_3DES = bytes.fromhex("060a2a864886f70d010c0103")  # 1.2.840.113549.1.12.1.3
SHA1 = bytes.fromhex("06052b0e03021a")  # 1.3.14.3.2.26


@pytest.mark.parametrize("legacy", [False, True], ids=["aes256-sha256", "legacy-3des-sha1"])
def test_export_pfx_round_trip(chained: Path, legacy: bool) -> None:
    args = ["export-pfx", "device-1"] + (["--legacy"] if legacy else [])
    out = ok(chained, *args, env={"PKI_PASSWORD": "correct horse"})
    assert ("legacy 3DES/SHA-1" if legacy else "AES-256/SHA-256") in out
    pfx = chained / "pfx" / "device-1.pfx"
    assert mode(pfx) == 0o600 and mode(pfx.parent) == 0o700
    data = pfx.read_bytes()
    key, cert, extra = pkcs12.load_key_and_certificates(data, b"correct horse")
    assert cert == cert_of(chained / "issued" / "device-1.pem")
    assert key.public_key() == cert.public_key()
    assert extra == cert_facts.read_certificates(chained / "chain.pem")  # intermediate, then root
    assert pkcs12.load_pkcs12(data, b"correct horse").cert.friendly_name == b"device-1"
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(data, b"wrong password")
    if legacy:
        assert PBE_SHA1_3DES in data and SHA1 in data and PBES2 not in data and AES256_CBC not in data
    else:
        assert PBES2 in data and AES256_CBC in data and SHA256 in data and PBE_SHA1_3DES not in data


def test_export_pfx_prompt(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PKI_PASSWORD", raising=False)
    answers = iter(["s3cret", "s3cret"])
    monkeypatch.setattr(pki_inputs.getpass, "getpass", lambda prompt="": next(answers))
    ok(shared, "export-pfx", "laptop-01", "--allow-short-password")
    pkcs12.load_key_and_certificates((shared / "pfx" / "laptop-01.pfx").read_bytes(), b"s3cret")
    answers = iter(["one", "two"])
    fails(shared, "export-pfx", "laptop-01", "--allow-short-password", expect="the two passwords differ")
    answers = iter(["", ""])
    fails(shared, "export-pfx", "laptop-01", "--allow-short-password", expect="empty password")


def test_export_pfx_misuse(shared: Path) -> None:
    fails(shared, "export-pfx", "laptop-01", expect="PKI_PASSWORD is set but empty", env={"PKI_PASSWORD": ""})
    fails(shared, "export-pfx", "nobody", expect="unknown name 'nobody'", env={"PKI_PASSWORD": "x"})
    code, _, err = pki(shared, "export-pfx", "laptop-01", "--password", "x")  # never from argv
    assert code == 2 and "unrecognized arguments" in err


# ---------------------------------------------------------------------------------------------
# inspect / list


def test_inspect_certificate_json(shared: Path) -> None:
    path = shared / "issued" / "beacon.example.com.pem"
    cert = cert_of(path)
    info = json.loads(ok(shared, "inspect", str(path)))
    assert info["type"] == "certificate"
    assert info["subject"] == "CN=beacon.example.com" and info["issuer"] == f"CN={CA_CN},O=Example Corp"
    assert info["serial"] == format(cert.serial_number, "x").rjust(len(info["serial"]), "0")
    assert info["eku"] == ["serverAuth", "clientAuth"]
    assert info["cdp"] == [CRL_URL] and info["aia"] == {"caIssuers": [], "ocsp": []}
    assert info["san"] == {"dns": ["beacon.example.com", "beacon2.example.com"], "ip": ["10.0.0.5"]}
    assert info["isCA"] is False and info["selfSigned"] is False
    assert info["validity"] == {"notBefore": cert_facts.iso(cert.not_valid_before_utc), "notAfter": cert_facts.iso(cert.not_valid_after_utc)}
    assert info["fingerprints"] == {
        "sha1": cert.fingerprint(hashes.SHA1()).hex().upper(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex().upper(),
    }
    # DER input and a PKI name give the same answer.
    der = shared.parent / "beacon.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    assert json.loads(ok(shared, "inspect", str(der))) == info
    assert json.loads(ok(shared, "inspect", "beacon.example.com")) == info
    ca_info = json.loads(ok(shared, "inspect", str(shared / "ca.pem")))
    assert ca_info["isCA"] is True and ca_info["selfSigned"] is True and ca_info["pathLength"] == 0


def test_inspect_crl_and_bundle(chained: Path) -> None:
    for name in ("crl.pem", "crl.der"):
        info = json.loads(ok(chained, "inspect", str(chained / name)))
        assert info["type"] == "crl" and info["issuerCN"] == CA_CN and info["crlNumber"] == 1 and info["revoked"] == []
        assert info["nextUpdate"] > info["lastUpdate"]
    bundle = json.loads(ok(chained, "inspect", str(chained / "chain.pem")))
    assert [b["subjectCN"] for b in bundle] == [CA_CN, f"{CA_CN} Root"]


def test_inspect_misuse(tmp_path: Path) -> None:
    fails(tmp_path, "inspect", str(tmp_path / "missing.pem"), expect="missing.pem: unreadable")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01not a certificate")
    fails(tmp_path, "inspect", str(junk), expect="neither a certificate nor a CRL")
    pem_junk = tmp_path / "key.pem"
    pem_junk.write_text("-----BEGIN " + "PRIVATE KEY-----\nAAAA\n-----END " + "PRIVATE KEY-----\n")  # split: no key-looking literal in git
    fails(tmp_path, "inspect", str(pem_junk), expect="no PEM certificate or CRL")


def test_list_and_expiring(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--cn", "soon", "--days", "10")
    ok(d, "issue-client", "--cn", "later")
    ok(d, "issue-client", "--cn", "soon-revoked", "--days", "5")
    ok(d, "revoke", "soon-revoked")
    text = ok(d, "list")
    assert text.splitlines()[0].split() == ["NAME", "KIND", "STATUS", "NOT", "AFTER", "SERIAL"]
    assert all(name in text for name in ("(ca.pem)", "soon", "later", "soon-revoked"))
    rows = json.loads(ok(d, "list", "--json"))
    assert [r["name"] for r in rows] == ["(ca.pem)", "later", "soon", "soon-revoked"]
    assert {r["name"]: r["status"] for r in rows}["soon-revoked"] == "revoked"
    expiring = json.loads(ok(d, "list", "--expiring", "30", "--json"))
    assert [r["name"] for r in expiring] == ["soon"]  # revoked ones need no renewal
    assert "soon" in ok(d, "list", "--expiring", "30") and "later" not in ok(d, "list", "--expiring", "30")
    assert "nothing expires within 1 days" in ok(d, "list", "--expiring", "1")
    assert [r["name"] for r in json.loads(ok(d, "list", "--expiring", "4000", "--json"))] == ["(ca.pem)", "later", "soon"]  # the CA too


# ---------------------------------------------------------------------------------------------
# Misuse in general


@pytest.mark.parametrize(
    "args",
    [
        ["issue-server", "--dns", "x.example.com"],
        ["issue-client", "--cn", "x"],
        ["sign-csr", "x.csr"],
        ["revoke", "x"],
        ["crl"],
        ["export-pfx", "x"],
        ["list"],
        ["check", "x.pem"],
    ],
)
def test_verbs_need_a_ca(tmp_path: Path, args: list[str]) -> None:
    expect = "no CA in" if args[0] != "check" else "unreadable"
    fails(tmp_path / "empty", *args, expect=expect)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("../evil", "path separator"),
        ("..", "'..'"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("tab\there", "control characters"),
        ("nul\x00", "control characters"),
        (".hidden", "starts with '.'"),
        ("what?", "not allowed in Windows file names"),
        ("CON", "reserved Windows device name"),
        ("x" * 65, "at most 64"),
        (" padded", "whitespace"),
    ],
)
def test_unsafe_names_rejected(tmp_path: Path, bad: str, why: str) -> None:
    d = init(tmp_path / "pki")
    fails(d, "issue-client", "--cn", bad, expect=why)
    fails(d, "issue-server", "--dns", "ok.example.com", "--name", bad, expect=why)
    assert not list((d / "issued").iterdir()) and not list((d / "private").iterdir())


def test_duplicate_names(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--cn", "Laptop")
    fails(d, "issue-client", "--cn", "Laptop", expect="'Laptop' is already issued")
    fails(d, "issue-client", "--cn", "laptop", expect="already issued")  # Windows file names ignore case
    fails(d, "issue-server", "--dns", "laptop", expect="already issued")
    (d / "issued" / "stray.pem").write_text("left over")
    fails(d, "issue-client", "--cn", "stray", expect="exists but is not in index.json")


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["issue-server"], "at least one --dns"),
        (["issue-server", "--dns", "bad_name!"], "expected a DNS name"),
        (["issue-server", "--dns", "a.example.com", "--ip", "300.1.1.1"], "expected an IPv4 or IPv6 address"),
        (["issue-client", "--count", "3"], "--count needs --prefix"),
        (["issue-client", "--count", "0", "--prefix", "d"], "expected 1 or more"),
        (["issue-client", "--cn", "x", "--prefix", "p"], "go with --count"),
        (["issue-client", "--from-csv", "/nonexistent.csv"], "unreadable"),
        (["issue-client", "--cn", "x", "--o", ""], "--o: empty value"),
    ],
)
def test_issue_misuse(shared: Path, args: list[str], expect: str) -> None:
    fails(shared, *args, expect=expect)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--crl-url", "ldap://dir/cn=crl"], "expected an http:// URL"),
        (["--aia-url", "not a url"], "expected an http:// URL"),
        (["--root-crl-url", "http://x/r.crl"], "need --intermediate"),
        (["--intermediate", "--root-cn", CA_CN], "--root-cn must differ"),
        (["--c", "Germany"], "two-letter country"),
    ],
)
def test_init_ca_misuse(tmp_path: Path, args: list[str], expect: str) -> None:
    fails(tmp_path / "pki", "init-ca", "--cn", CA_CN, *args, expect=expect)
    assert not (tmp_path / "pki" / "ca.pem").exists()


@pytest.mark.parametrize("argv", [["bogus-verb"], ["issue-client"], ["crl", "--days", "0"], ["list", "--expiring", "soon"]])
def test_argparse_errors_exit_2(tmp_path: Path, argv: list[str]) -> None:
    code, _, err = pki(tmp_path, *argv)
    assert code == 2 and "usage:" in err and "Traceback" not in err


def test_dir_before_or_after_the_verb(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    assert cli.main(["init-ca", "--cn", "X CA", "--dir", str(d)]) == 0
    assert (d / "ca.pem").exists()
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(["list", "--json", "--dir", str(d)]) == 0
    assert json.loads(stdout.getvalue())[0]["name"] == "(ca.pem)"


def test_module_entry_point_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.pki", "--dir", str(tmp_path / "none"), "crl"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and result.stderr.startswith("pki: error: no CA in") and "Traceback" not in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "scripts.pki", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "init-ca" in help_text.stdout and "check" in help_text.stdout


# ---------------------------------------------------------------------------------------------
# Files: modes, atomicity, determinism


def test_private_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        d = init(tmp_path / "pki")
        ok(d, "issue-client", "--cn", "dev")
        ok(d, "export-pfx", "dev", "--allow-short-password", env={"PKI_PASSWORD": "pw"})
    finally:
        os.umask(old)
    assert mode(d / "ca.key") == mode(d / "private" / "dev.key") == mode(d / "pfx" / "dev.pfx") == 0o600
    assert mode(d / "private") == 0o700 and mode(d / "issued" / "dev.pem") == 0o644 and mode(d / "index.json") == 0o644


def _layout(d: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(d).as_posix(), mode(p)) for p in d.rglob("*"))


def _shape(value: Any) -> Any:
    """index.json with serials, times and fingerprints masked."""
    if isinstance(value, dict):
        return {k: ("*" if k in ("serial", "notBefore", "notAfter", "revokedAt", "sha1") else _shape(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def test_layout_is_deterministic(tmp_path: Path) -> None:
    runs = []
    for n in (1, 2):
        d = tmp_path / f"run{n}"
        init(d, "--intermediate")
        ok(d, "issue-server", "--dns", "beacon.example.com")
        ok(d, "issue-client", "--count", "3", "--prefix", "d")
        ok(d, "revoke", "d0002", "--reason", "superseded")
        ok(d, "crl")
        ok(d, "export-pfx", "d0001", "--allow-short-password", env={"PKI_PASSWORD": "pw"})
        runs.append(d)
    a, b = runs
    assert _layout(a) == _layout(b)
    assert [p for p, _ in _layout(a)] == [
        "ca.key", "ca.pem", "chain.pem", "crl.der", "crl.pem", "crlnumber.json", "index.json",
        "issued", "issued/beacon.example.com.pem", "issued/d0001.pem", "issued/d0002.pem", "issued/d0003.pem",
        "pfx", "pfx/d0001.pfx",
        "private", "private/beacon.example.com.key", "private/d0001.key", "private/d0002.key", "private/d0003.key",
        "root-crl.der", "root-crl.pem", "root.key", "root.pem",
    ]
    assert _shape(index(a)) == _shape(index(b))
    text = (a / "index.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert not [p for p in a.rglob("*.tmp")]


# ---------------------------------------------------------------------------------------------
# check (the IIS preflight), beyond the handshake matrix in tests/tls/


def check(d: Path, cert: Path | str, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, err = pki(d, "check", str(cert), "--json", *extra)
    assert code in (0, 1), err
    return code, json.loads(out)


def test_check_text_output_and_exit_codes(shared: Path) -> None:
    code, out, _ = pki(shared, "check", str(shared / "issued" / "laptop-01.pem"))
    assert code == 0 and out == "accept\n"
    code, out, _ = pki(shared, "check", "laptop-01", "--at", "2099-01-01T00:00:00Z")
    assert code == 1 and out.startswith("403.17 expired: the certificate expired")


def test_check_time_and_crl_freshness(shared: Path) -> None:
    laptop = cert_of(shared / "issued" / "laptop-01.pem")
    crl = x509.load_pem_x509_crl((shared / "crl.pem").read_bytes())
    before = cert_facts.iso(laptop.not_valid_before_utc - dt.timedelta(hours=1))
    assert check(shared, "laptop-01", "--at", before)[1]["reason"] == "not-yet-valid"
    after_crl = cert_facts.iso(crl.next_update_utc + dt.timedelta(hours=1))
    code, verdict = check(shared, "laptop-01", "--at", after_crl)
    assert code == 1 and verdict["status"] == "403.13" and verdict["reason"] == "crl-stale" and "nextUpdate" in verdict["detail"]
    # The server certificate has clientAuth too: IIS would accept it as a client.
    assert check(shared, "beacon.example.com")[1]["accepted"] is True


def test_check_crl_missing_and_forged(shared: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ok(other, "init-ca", "--cn", "Other CA")
    code, verdict = check(shared, "laptop-01", "--crl", str(other / "crl.pem"))
    assert (code, verdict["status"], verdict["reason"]) == (1, "403.13", "crl-missing")
    assert CRL_URL in verdict["detail"]
    # A CRL with our CA's name signed by another key: as good as none.
    ca = cert_of(shared / "ca.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    forged = (
        x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
        .last_update(now).next_update(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    path = tmp_path / "forged.pem"
    path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    assert check(shared, "laptop-01", "--crl", str(path))[1]["reason"] == "crl-invalid"
    # Both: the genuine one wins.
    assert check(shared, "laptop-01", "--crl", str(path), str(shared / "crl.der"))[1]["accepted"] is True


def test_check_chain_options(shared: Path, chained: Path, tmp_path: Path) -> None:
    device = chained / "issued" / "device-1.pem"
    assert check(chained, device)[1]["accepted"] is True
    # Only the intermediate in the trust store ("a non-self-signed certificate in Root"): 403.16.
    code, verdict = check(chained, device, "--chain", str(chained / "ca.pem"))
    assert (code, verdict["status"], verdict["reason"]) == (1, "403.16", "untrusted")
    # Root only, the client sends the intermediate along: trusted; but a beacon given only the
    # root derives its Issuer rule from the root, which the device does not match.
    bundle = tmp_path / "device+ca.pem"
    bundle.write_bytes(device.read_bytes() + (chained / "ca.pem").read_bytes())
    verdict = check(chained, bundle, "--chain", str(chained / "root.pem"))[1]
    assert verdict["reason"] == "no-mapping" and verdict["path"][1] == f"CN={CA_CN},O=Example Corp"
    assert check(chained, bundle, "--chain", str(chained / "root.pem"), "--issuer-cn", CA_CN)[1]["accepted"] is True
    # Without the root's CRL the intermediate's revocation status is unknown: 403.13.
    code, verdict = check(chained, device, "--crl", str(chained / "crl.pem"))
    assert verdict["reason"] == "crl-missing" and f"{CA_CN} Root" in verdict["detail"]
    # Another PKI's device against ours.
    assert check(shared, device)[1]["status"] == "403.16"


def _stack(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(text)
    return path


def test_check_stack_mapping_rules(shared: Path, tmp_path: Path) -> None:
    stack = _stack(tmp_path, "config:\n  aws:region: us-east-1\n  flexnet-beacon:extraMappingRules:\n    - Subject.O=Example Corp\n")
    code, verdict = check(shared, "laptop-01", "--stack-config", str(stack))
    assert code == 0 and verdict["allowMappings"] == [[f"Issuer.CN={CA_CN}", "Subject.O=Example Corp"]]
    code, verdict = check(shared, "laptop-02", "--stack-config", str(stack))  # no O at all
    assert (code, verdict["status"], verdict["reason"]) == (1, "401.2", "no-mapping")
    assert "Subject.O=Example Corp" in verdict["detail"] and "no such attribute" in verdict["detail"]

    case = _stack(tmp_path, 'config:\n  flexnet-beacon:extraMappingRules: \'["Subject.O=example corp"]\'\n')
    assert check(shared, "laptop-01", "--stack-config", str(case))[1]["reason"] == "no-mapping"  # "=" is case-sensitive
    relaxed = _stack(tmp_path, "config:\n  flexnet-beacon:extraMappingRules: ['Subject.O~=example*', 'Issuer.CN=Example*CA', 'Subject.OU=Sal*']\n")
    assert check(shared, "laptop-01", "--stack-config", str(relaxed))[1]["accepted"] is True

    deny = _stack(tmp_path, "config:\n  flexnet-beacon:denyMappingRules: ['Subject.OU=Sales']\n")
    code, verdict = check(shared, "laptop-01", "--stack-config", str(deny))
    assert (code, verdict["status"], verdict["reason"]) == (1, "401.2", "denied")
    assert check(shared, "laptop-02", "--stack-config", str(deny))[1]["accepted"] is True

    # The Issuer CN rule follows the issuing CA: another CN does not map.
    assert check(shared, "laptop-01", "--issuer-cn", "Some Other CA")[1]["reason"] == "no-mapping"


def test_check_stack_client_ca_certificates(shared: Path, tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: flexnet-beacon\n")
    (tmp_path / "stacks" / "certs").mkdir(parents=True)
    (tmp_path / "stacks" / "certs" / "ca.pem").write_bytes((shared / "ca.pem").read_bytes())
    stack = tmp_path / "stacks" / "Pulumi.x.yaml"
    stack.write_text("config:\n  flexnet-beacon:clientCaCertificates:\n    - stacks/certs/ca.pem\n")
    empty = tmp_path / "no-pki"
    code, verdict = check(empty, shared / "issued" / "laptop-01.pem", "--stack-config", str(stack), "--crl", str(shared / "crl.pem"))
    assert code == 0, verdict
    stack.write_text("config:\n  flexnet-beacon:clientCaCertificates:\n    - stacks/certs/missing.pem\n")
    fails(empty, "check", str(shared / "issued" / "laptop-01.pem"), "--stack-config", str(stack), expect="missing.pem: unreadable")


@pytest.mark.parametrize(
    ("stack_text", "expect"),
    [
        ("config:\n  flexnet-beacon:extraMappingRules: ['Subject.XX=1']\n", "sub-field is one of"),
        ("config:\n  flexnet-beacon:extraMappingRules: ['Owner.CN=1']\n", "field is one of"),
        ("config:\n  flexnet-beacon:extraMappingRules: ['nonsense']\n", "extraMappingRules: got 'nonsense'; expected a rule like"),
        ("config:\n  flexnet-beacon:extraMappingRules: 5\n", "extraMappingRules: got '5'; expected a list of strings"),
        ("config: [1, 2]\n", "config is list [1, 2]; expected a mapping"),
        ("config: {\n", "not valid YAML"),
    ],
)
def test_check_bad_stack_config(shared: Path, tmp_path: Path, stack_text: str, expect: str) -> None:
    fails(shared, "check", "laptop-01", "--stack-config", str(_stack(tmp_path, stack_text)), expect=expect)


def test_check_bad_input(shared: Path, tmp_path: Path) -> None:
    fails(shared, "check", "laptop-01", "--at", "yesterday", expect="--at: got 'yesterday'")
    fails(shared, "check", str(tmp_path / "nope.pem"), expect="nope.pem: unreadable")
    fails(shared, "check", "laptop-01", "--chain", str(tmp_path / "nope.pem"), expect="--chain")
    fails(shared, "check", "laptop-01", "--crl", str(shared / "ca.pem"), expect="no PEM CRL")
    fails(shared, "check", "laptop-01", "--stack-config", str(tmp_path / "none.yaml"), expect="unreadable")
    fails(tmp_path / "empty", "check", str(shared / "issued" / "laptop-01.pem"), expect="no trust anchors")


# ---------------------------------------------------------------------------------------------
# components/certs/ and components/iis/mapping_rules.py, directly


def test_read_certificates_pem_bundle_and_der(chained: Path, tmp_path: Path) -> None:
    bundle = cert_facts.read_certificates(chained / "chain.pem")
    assert len(bundle) == 2
    der = tmp_path / "root.cer"
    der.write_bytes(bundle[1].public_bytes(serialization.Encoding.DER))
    assert cert_facts.read_certificates(der) == [bundle[1]]
    with pytest.raises(ValueError):
        cert_facts.load_certificates(b"junk")
    with pytest.raises(ValueError):
        cert_facts.load_certificates(b"-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n")
    assert len(cert_facts.read_crls(chained / "crl.der")) == 1


def test_certificate_facts(shared: Path) -> None:
    cert = cert_of(shared / "issued" / "laptop-01.pem")
    assert cert_facts.common_name(cert.subject) == "laptop-01" and cert_facts.common_name(x509.Name([])) is None
    assert cert_facts.name_values(cert.subject, "ou") == ["Sales"]
    assert cert_facts.thumbprint(cert) == cert_facts.fingerprints(cert)["sha1"] and len(cert_facts.thumbprint(cert)) == 40
    assert cert_facts.serial_hex(0x1) == "01" and cert_facts.serial_hex(0xABC) == "0abc"
    assert cert_facts.eku_names(cert_of(shared / "ca.pem")) is None
    with pytest.raises(ValueError):
        cert_facts.aia_urls(cert, "bogus")


def test_mapping_rule_parsing() -> None:
    rule = mapping_rules.parse_mapping_rule("issuer.cn~=devices*")
    assert (rule.certificate_field, rule.certificate_sub_field, rule.match_criteria, rule.compare_case_sensitive) == ("Issuer", "CN", "devices*", False)
    assert str(mapping_rules.parse_mapping_rule("Subject.O=Example Corp")) == "Subject.O=Example Corp"
    assert mapping_rules.parse_mapping_rule("Subject.O=a=b").match_criteria == "a=b"
    assert mapping_rules.issuer_rule("X CA").as_iis() == {"certificateField": "Issuer", "certificateSubField": "CN", "matchCriteria": "X CA", "compareCaseSensitive": True}
    for bad in ("", "Subject.CN", "Subject.CN=", "Nobody.CN=x", "Subject.E=x", "Subject.CN=a\nb", 42):
        with pytest.raises(ValueError):
            mapping_rules.parse_mapping_rule(bad)  # type: ignore[arg-type]


def test_wildcards_and_multi_valued_attributes() -> None:
    assert mapping_rules.wildcard_match("Dev*CA", "Devices CA") and mapping_rules.wildcard_match("*", "")
    assert not mapping_rules.wildcard_match("dev*", "Devices") and mapping_rules.wildcard_match("dev*", "Devices", case_sensitive=False)
    assert not mapping_rules.wildcard_match("a.c", "abc")  # only '*' is special
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Sales"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Laptops"),
        x509.NameAttribute(NameOID.COMMON_NAME, "d"),
    ])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    assert mapping_rules.rule_matches(cert, mapping_rules.parse_mapping_rule("Subject.OU=Laptops"))
    assert not mapping_rules.rule_matches(cert, mapping_rules.parse_mapping_rule("Subject.O=*"))  # absent attribute
    assert mapping_rules.first_unmatched(cert, [mapping_rules.parse_mapping_rule("Subject.CN=d"), mapping_rules.parse_mapping_rule("Issuer.L=x")]) == mapping_rules.parse_mapping_rule("Issuer.L=x")


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="*"), max_size=6), min_size=1, max_size=4),
    fillers=st.lists(st.text(max_size=4, alphabet=st.characters(blacklist_categories=("Cs",))), min_size=4, max_size=4),
)
def test_wildcard_property(parts: list[str], fillers: list[str]) -> None:
    """Filling each '*' of a pattern with any text gives a value the pattern matches; changing
    a literal character breaks the match."""
    pattern = "*".join(parts)
    value = "".join(p + (fillers[i] if i < len(parts) - 1 else "") for i, p in enumerate(parts))
    assert mapping_rules.wildcard_match(pattern, value)
    if "*" not in pattern and pattern:
        assert not mapping_rules.wildcard_match(pattern, value + "x") and not mapping_rules.wildcard_match(pattern + "x", value)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="abcdefXYZ -.", min_size=1, max_size=12))
def test_wildcard_case_property(text: str) -> None:
    assert mapping_rules.wildcard_match(text.upper(), text.lower(), case_sensitive=False)
    assert mapping_rules.wildcard_match(text, text) and mapping_rules.wildcard_match("*" + text[1:], text)
    if text.upper() != text.lower():
        assert not mapping_rules.wildcard_match(text.upper(), text.lower(), case_sensitive=True)


def test_issuing_cas_and_mappings(chained: Path) -> None:
    root, ca = cert_of(chained / "root.pem"), cert_of(chained / "ca.pem")
    assert cert_facts.issuing_cas([root, ca, root]) == [ca]
    assert cert_facts.issuing_cas([root]) == [root]
    assert [[str(r) for r in m] for m in mapping_rules.allow_mappings([ca], [mapping_rules.parse_mapping_rule("Subject.O=X")])] == [[f"Issuer.CN={CA_CN}", "Subject.O=X"]]
    assert [[str(r) for r in m] for m in mapping_rules.deny_mappings([ca], [mapping_rules.parse_mapping_rule("Subject.OU=C")])] == [[f"Issuer.CN={CA_CN}", "Subject.OU=C"]]


def test_iis_verdict_pure(chained: Path) -> None:
    root, ca = cert_of(chained / "root.pem"), cert_of(chained / "ca.pem")
    device = cert_of(chained / "issued" / "device-1.pem")
    crls = cert_facts.read_crls(chained / "crl.pem") + cert_facts.read_crls(chained / "root-crl.der")
    now = dt.datetime.now(dt.timezone.utc)
    verdict = cert_verdict.iis_verdict(device, [root, ca], crls, now)
    assert verdict.accepted and verdict.path == (device, ca, root) and verdict.line() == "accept"
    assert verdict.to_dict()["allowMappings"] == [[f"Issuer.CN={CA_CN}"]]
    naive = now.replace(tzinfo=None)
    assert cert_verdict.iis_verdict(device, [root, ca], crls, naive).accepted  # naive = UTC
    assert cert_verdict.iis_verdict(device, [root, ca], crls, now, mappings=[]).reason == "no-mapping"
    assert cert_verdict.iis_verdict(device, [root, ca], [], now, check_revocation=False).accepted
    path, why = cert_verdict.build_path(device, [ca])
    assert path is None and "no certificate for issuer" in why


def test_cryptography_client_verifier_agrees(chained: Path, shared: Path) -> None:
    """cryptography's RFC 5280/CABF verifier accepts what the CLI issues (SAN made optional: IIS
    maps device certificates by subject and issuer, they carry none)."""
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    for d, leaf, anchors, sent in (
        (chained, "device-1", ["root.pem"], ["ca.pem"]),
        (shared, "laptop-01", ["ca.pem"], []),
        (shared, "beacon.example.com", ["ca.pem"], []),
    ):
        verifier = (
            PolicyBuilder().store(Store([cert_of(d / a) for a in anchors]))
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
            .build_client_verifier()
        )
        chain = verifier.verify(cert_of(d / "issued" / f"{leaf}.pem"), [cert_of(d / s) for s in sent]).chain
        assert len(chain) == 1 + len(anchors) + len(sent)


# ---------------------------------------------------------------------------------------------
# Bulk work: fast paths equal the plain ones, one index write, crash and Ctrl-C consistency

from scripts.pki import build as pki_build  # noqa: E402
from scripts.pki import issue as pki_issue  # noqa: E402
from scripts.pki import parallel as pki_parallel  # noqa: E402
from scripts.pki import progress as pki_progress  # noqa: E402
from scripts.pki import store as pki_store  # noqa: E402

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_dumps_index_is_json_dumps(value: Any) -> None:
    assert pki_store.dumps_index(value) == json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def test_dumps_index_unusual_values_fall_back() -> None:
    for value in ({"a": 1.5, "b": [0.25, {"c": -2e-9}]}, {"t": (1, 2)}, {"nested": {"x": {"y": [1.0]}}}):
        assert pki_store.dumps_index(value) == json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _reference_certificate(cert: x509.Certificate, issuer: x509.Certificate, issuer_key: Any, profile: pki_build.Profile) -> x509.Certificate:
    """The same certificate built with the fluent API (serial and times taken from ``cert``)."""
    public_key = cert.public_key()
    builder = (
        x509.CertificateBuilder().subject_name(cert.subject).issuer_name(issuer.subject).public_key(public_key)
        .serial_number(cert.serial_number).not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, isinstance(public_key, rsa.RSAPublicKey), False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(profile.eku)), critical=False)
    )
    if profile.dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in profile.dns]), critical=False)
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in profile.crl_urls]), critical=False)
        .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u)) for u in profile.aia_urls]), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.mark.parametrize("key_type", ["ec", "rsa2048"])
def test_certificate_template_equals_the_fluent_builder(key_type: str) -> None:
    """Pre-encoded constant extensions and the hashed SKI give the very same TBS bytes."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    ca, _ = pki_build.build_certificate(pki_build.make_name("T CA"), ca_key.public_key(), pki_build.Profile(days=100, ca=True, path_length=0), None, ca_key, now)
    for profile in (
        pki_build.Profile(days=30, eku=pki_build.CLIENT_EKU, crl_urls=[CRL_URL], aia_urls=["http://pki.example.com/ca.crt"]),
        pki_build.Profile(days=30, eku=pki_build.SERVER_EKU, dns=["b.example.com"], crl_urls=[CRL_URL, "http://alt.example.com/x.crl"], aia_urls=["http://a/ca.crt"]),
    ):
        key = pki_build.new_key(key_type)
        cert, _ = pki_build.CertificateTemplate(profile, ca, ca_key).sign(pki_build.make_name("dev ü", "Org", "Unit"), key.public_key(), now)
        assert cert.tbs_certificate_bytes == _reference_certificate(cert, ca, ca_key, profile).tbs_certificate_bytes
        cert.verify_directly_issued_by(ca)


@pytest.mark.parametrize("key_type", ["ec", "rsa2048"])
def test_sign_crl_equals_cryptography_builder(key_type: str) -> None:
    """The CRL assembled as DER has the TBSCertList cryptography's builder makes for the same
    input: versions, times (UTCTime to 2049, GeneralizedTime from 2050), reasons, order."""
    key = pki_build.new_key(key_type)
    now = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.timezone.utc)
    ca, _ = pki_build.build_certificate(pki_build.make_name("CRL CA", "Org"), key.public_key(), pki_build.Profile(days=40000, ca=True), None, key, now)
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    dates = [now, dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc), dt.datetime(2050, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(1999, 2, 28, 1, 2, 3, tzinfo=dt.timezone.utc)]
    reasons = list(pki_build.REASONS)
    serials = [1, 127, 128, 255, 256, 2**159 - 1] + [x509.random_serial_number() for _ in range(40)]
    for count in (0, 1, 2, len(serials)):
        revoked = [(serials[i], dates[i % len(dates)], reasons[i % len(reasons)]) for i in range(count)]
        as_text = [(s, cert_facts.iso(d), r) if i % 2 else (s, d, r) for i, (s, d, r) in enumerate(revoked)]  # index.json's form too
        der = pki_build.sign_crl(ca, key, 7, as_text, now, now + dt.timedelta(days=30000))
        mine = x509.load_der_x509_crl(der)
        assert mine.is_signature_valid(ca.public_key())
        reference = x509.CertificateRevocationListBuilder(
            ca.subject, now.replace(tzinfo=None), (now + dt.timedelta(days=30000)).replace(tzinfo=None),
            [x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(7)), x509.Extension(aki.oid, False, aki)],
            [pki_build.revoked_entry(s, d, r) for s, d, r in sorted(revoked)],
        ).sign(key, hashes.SHA256())
        assert mine.tbs_certlist_bytes == reference.tbs_certlist_bytes
        assert mine.signature_algorithm_oid == reference.signature_algorithm_oid
        assert pki_build.crl_pem(der) == mine.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match="159 bits"):
        pki_build.sign_crl(ca, key, 1, [(2**159, now, "unspecified")], now, now + dt.timedelta(days=1))
    with pytest.raises(ValueError, match="reason"):
        pki_build.sign_crl(ca, key, 1, [(5, now, "bogus")], now, now + dt.timedelta(days=1))


def test_crl_reads_index_json_only_and_numbers_continue(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--cn", "gone")
    ok(d, "revoke", "gone", "--reason", "keyCompromise")
    before = (d / "index.json").read_bytes()
    ok(d, "crl")
    ok(d, "crl")
    assert (d / "index.json").read_bytes() == before  # `crl` never rewrites the index
    assert json.loads((d / "crlnumber.json").read_text()) == {"crlNumber": 3}
    crl = x509.load_der_x509_crl((d / "crl.der").read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert [(r.serial_number, r.extensions.get_extension_for_class(x509.CRLReason).value.reason) for r in crl] == [
        (int(index(d)["certificates"]["gone"]["serial"], 16), x509.ReasonFlags.key_compromise)
    ]
    # A PKI made before crlnumber.json kept the number in index.json: it goes on from there.
    (d / "crlnumber.json").unlink()
    data = index(d)
    data["ca"]["crlNumber"] = 41
    (d / "index.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    assert "CRL 42 of" in ok(d, "crl")
    (d / "crlnumber.json").write_text("not json")
    fails(d, "crl", expect="crlnumber.json: unreadable")


def test_crl_with_many_entries(tmp_path: Path) -> None:
    """5,000 revoked entries from index.json (written directly: issuing them would be slow)."""
    d = init(tmp_path / "pki")
    data = index(d)
    serials = {}
    for i in range(5000):
        serial = x509.random_serial_number()
        serials[serial] = ("2026-03-01T10:00:%02dZ" % (i % 60), list(pki_build.REASONS)[i % 5])
        data["certificates"][f"old-{i:05d}"] = {
            "kind": "client", "source": "key", "serial": cert_facts.serial_hex(serial), "subject": f"CN=old-{i:05d}", "notBefore": "2026-01-01T00:00:00Z",
            "notAfter": "2027-01-01T00:00:00Z", "sha1": "00", "status": "revoked", "revokedAt": serials[serial][0], "reason": serials[serial][1],
        }
    (d / "index.json").write_text(pki_store.dumps_index(data) + "\n")
    assert "5000 revoked" in ok(d, "crl")
    crl = x509.load_der_x509_crl((d / "crl.der").read_bytes())
    assert crl.is_signature_valid(cert_of(d / "ca.pem").public_key())
    listed = {r.serial_number: r for r in crl}
    assert set(listed) == set(serials) and [r.serial_number for r in crl] == sorted(serials)
    sample = next(iter(serials))
    assert cert_facts.iso(listed[sample].revocation_date_utc) == serials[sample][0]
    assert (d / "crl.pem").read_bytes() == crl.public_bytes(serialization.Encoding.PEM)
    data["certificates"]["old-00000"]["reason"] = "whimsy"
    (d / "index.json").write_text(pki_store.dumps_index(data) + "\n")
    fails(d, "crl", expect="old-00000: unknown revocation reason 'whimsy'")


def force_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI forks only while single-threaded; a test run may hold other threads (the moto
    server of other tests), harmless to the short-lived writer: allow the fork here."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the background writer and the worker processes fork (Linux)")
    monkeypatch.setattr(pki_parallel, "can_fork", lambda: True)


def test_fork_only_while_single_threaded() -> None:
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not pki_parallel.can_fork()
        assert not pki_parallel.BackgroundWriter().start()  # falls back to writing inline
    finally:
        stop.set()
        thread.join()
    assert pki_parallel.choose_jobs(None, 3, 8) == 1 and pki_parallel.choose_jobs(4, 3, 8) == 3 and pki_parallel.choose_jobs(None, 100, 8) >= 1


def _no_leftovers(d: Path) -> None:
    names = set(index(d)["certificates"])
    assert {p.stem for p in (d / "issued").iterdir()} == names
    assert {p.stem for p in (d / "private").iterdir()} <= names
    assert not list(d.rglob("*.tmp"))


@pytest.mark.parametrize("background", [True, False], ids=["background-writer", "inline"])
def test_bulk_issue_writes_index_once_and_syncs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background: bool) -> None:
    force_fork(monkeypatch)
    monkeypatch.setattr(pki_issue, "BACKGROUND_FROM", 10 if background else 10**9)
    d = init(tmp_path / "pki")
    calls = {"save": 0, "sync": 0}
    real_save, real_sync = pki_store.Pki.save_index, pki_store.sync_filesystem
    monkeypatch.setattr(pki_store.Pki, "save_index", lambda self: (calls.__setitem__("save", calls["save"] + 1), real_save(self))[1])
    monkeypatch.setattr(pki_store, "sync_filesystem", lambda path: (calls.__setitem__("sync", calls["sync"] + 1), real_sync(path))[1])
    started = pki_store.Batch.start_background
    used = []
    monkeypatch.setattr(pki_store.Batch, "start_background", lambda self: used.append(started(self)) or used[-1])
    code, out, err = pki(d, "issue-client", "--count", "250", "--prefix", "b-")
    assert code == 0, err
    assert calls == {"save": 1, "sync": 1}
    assert used == ([True] if background else [])
    assert err.splitlines() == ["issued 100/250", "issued 200/250", "issued 250/250"]
    assert len(index(d)["certificates"]) == 250
    _no_leftovers(d)
    assert all(mode(p) == 0o600 for p in (d / "private").iterdir()) and all(mode(p) == 0o644 for p in (d / "issued").iterdir())
    leaf = cert_of(d / "issued" / "b-0250.pem")
    leaf.verify_directly_issued_by(cert_of(d / "ca.pem"))
    key = serialization.load_pem_private_key((d / "private" / "b-0250.key").read_bytes(), None)
    assert key.public_key() == leaf.public_key()
    assert index(d)["certificates"]["b-0250"]["sha1"] == cert_facts.thumbprint(leaf)


@pytest.mark.parametrize("background", [True, False], ids=["background-writer", "inline"])
def test_bulk_issue_disk_error_keeps_what_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background: bool) -> None:
    """A write fails part-way (disk full): the certificates whose files are on disk are in
    index.json, nothing else is left behind, the error is one line (exit 2)."""
    force_fork(monkeypatch)
    monkeypatch.setattr(pki_issue, "BACKGROUND_FROM", 10 if background else 10**9)
    d = init(tmp_path / "pki")
    real_write = pki_store.atomic_write

    def failing(path: Any, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
        if os.fspath(path).endswith("f-0040.pem"):
            raise OSError(28, "No space left on device", os.fspath(path))
        real_write(path, data, mode, durable)

    monkeypatch.setattr(pki_store, "atomic_write", failing)  # the forked writer sees it too
    code, _, err = pki(d, "issue-client", "--count", "100", "--prefix", "f-")
    assert code == 2 and "Traceback" not in err, err
    note_line, error_line = err.splitlines()[-2:]
    assert note_line.startswith("note: 39 certificate(s) issued and recorded in index.json; ")
    assert error_line == f"pki: error: {d / 'issued' / 'f-0040.pem'}: No space left on device"
    assert sorted(index(d)["certificates"]) == [f"f-{i:04d}" for i in range(1, 40)]
    _no_leftovers(d)
    monkeypatch.setattr(pki_store, "atomic_write", real_write)
    ok(d, "issue-client", "--count", "61", "--prefix", "f-", "--start", "40")  # the rest can be issued
    assert len(index(d)["certificates"]) == 100


def test_bulk_issue_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C part-way: exit 130, what was issued is recorded, nothing half-made stays."""
    force_fork(monkeypatch)
    monkeypatch.setattr(pki_issue, "BACKGROUND_FROM", 10)
    d = init(tmp_path / "pki")
    real_new_key, made = pki_build.new_key, []

    def interrupting(kind: str) -> Any:
        made.append(kind)
        if len(made) == 70:
            raise KeyboardInterrupt
        return real_new_key(kind)

    monkeypatch.setattr(pki_build, "new_key", interrupting)
    code, _, err = pki(d, "issue-client", "--count", "100", "--prefix", "k-")
    assert code == 130 and "interrupted" in err
    assert sorted(index(d)["certificates"]) == [f"k-{i:04d}" for i in range(1, 70)]
    _no_leftovers(d)


def test_bulk_sign_csr_in_background(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    force_fork(monkeypatch)
    monkeypatch.setattr(pki_issue, "BACKGROUND_FROM", 5)
    d = init(tmp_path / "pki")
    csr_dir = tmp_path / "csrs"
    csr_dir.mkdir()
    keys = {}
    for i in range(30):
        csr, keys[f"dev-{i:02d}"] = make_csr(f"dev-{i:02d}")
        (csr_dir / f"dev-{i:02d}.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    out = ok(d, "sign-csr", str(csr_dir))
    assert out.count("signed ") == 30 and "dev-29.csr" in out.splitlines()[-1]
    for name, key in keys.items():
        assert cert_of(d / "issued" / f"{name}.pem").public_key() == key.public_key()
        assert index(d)["certificates"][name]["source"] == "csr"
    assert not list((d / "private").iterdir())


def test_export_many_pfx_names_and_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    force_fork(monkeypatch)  # --jobs 2: worker processes
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--count", "12", "--prefix", "p-")
    ok(d, "revoke", "p-0003")
    csr, _ = make_csr("p-csr")
    (tmp_path / "p.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    ok(d, "sign-csr", str(tmp_path / "p.csr"))
    env = {"PKI_PASSWORD": "many"}
    code, out, err = pki(d, "export-pfx", "p-*", "--jobs", "2", "--allow-short-password", env=env)
    assert code == 0, err
    assert "wrote 11 PFX files (p-0001.pfx .. p-0012.pfx)" in out
    assert "skipped 1 certificate(s) signed from CSRs" in err and "and 1 revoked" in err
    exported = sorted(p.name for p in (d / "pfx").iterdir())
    assert exported == [f"p-{i:04d}.pfx" for i in range(1, 13) if i != 3]
    for name in ("p-0001", "p-0012"):
        key, cert, extra = pkcs12.load_key_and_certificates((d / "pfx" / f"{name}.pfx").read_bytes(), b"many")
        assert cert == cert_of(d / "issued" / f"{name}.pem") and key.public_key() == cert.public_key()
    assert all(mode(p) == 0o600 for p in (d / "pfx").iterdir())
    ok(d, "export-pfx", "p-0001", "p-0002", "p-0001", "--jobs", "1", "--allow-short-password", env=env)
    fails(d, "export-pfx", "zz-*", expect="pattern 'zz-*' matches no name", env=env)
    fails(d, "export-pfx", "p-csr", expect="no private key for 'p-csr'", env=env)
    fails(d, "export-pfx", "p-c?r", expect="nothing to export", env=env)


def test_progress_lines_and_bar() -> None:
    plain = io.StringIO()
    with pki_progress.Progress("issued", 250, stream=plain) as progress:
        for _ in range(250):
            progress.advance()
    assert plain.getvalue().splitlines() == ["issued 100/250", "issued 200/250", "issued 250/250"]
    quiet = io.StringIO()
    with pki_progress.Progress("issued", 1, stream=quiet) as progress:
        progress.advance()
    assert quiet.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    pytest.importorskip("rich")
    terminal = Terminal()
    with pki_progress.Progress("issued", 50, stream=terminal) as progress:
        assert progress._bar is not None
        for _ in range(50):
            progress.advance()
    assert "issued 100/" not in terminal.getvalue()  # a bar, not lines


def test_password_prompt_asks_twice_only_when_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PKI_PASSWORD", raising=False)
    asked: list[str] = []
    monkeypatch.setattr(pki_inputs.getpass, "getpass", lambda prompt: asked.append(prompt) or "typed-pw")
    assert pki_inputs.read_password() == b"typed-pw" and len(asked) == 2
    asked.clear()
    assert pki_inputs.read_password(confirm=False) == b"typed-pw" and len(asked) == 1
