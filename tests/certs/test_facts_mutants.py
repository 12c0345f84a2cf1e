"""Certificate and CRL facts: the cases mutation testing found untested (docs/testing.md, facts).

`pki inspect` prints certificate_summary / crl_summary; these pin every key and value of both for a
certificate that carries every extension they read, and the readers' refusals word for word.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from components.certs import facts

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"), x509.NameAttribute(NameOID.COMMON_NAME, "Devices CA")])
OTHER_NAME = x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not a URL")]))


def _uri(url: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(url)


def _point(*names: x509.GeneralName) -> x509.DistributionPoint:
    return x509.DistributionPoint(full_name=list(names), relative_name=None, reasons=None, crl_issuer=None)


def _certificate(key, *, ca: bool = False, extensions: tuple = ()) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "laptop-0001")]) if not ca else CA_NAME)
        .issuer_name(CA_NAME).public_key(key.public_key()).serial_number(0x0ABC)
        .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(CA_KEY, hashes.SHA256())


DEVICE_KEY = ec.generate_private_key(ec.SECP384R1())
DEVICE = _certificate(DEVICE_KEY, extensions=(
    x509.KeyUsage(True, True, True, True, True, False, False, True, True),  # every bit a leaf can have, encipher/decipherOnly too
    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, x509.ObjectIdentifier("1.3.6.1.4.1.311.99.1")]),
    x509.SubjectAlternativeName([x509.DNSName("laptop.example.com"), x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                                 x509.RFC822Name("it@example.com"), _uri("urn:device:0001")]),
    x509.CRLDistributionPoints([_point(_uri("http://crl.example.com/a.crl"), OTHER_NAME), _point(_uri("http://crl.example.com/a.crl"))]),
    x509.FreshestCRL([_point(_uri("http://crl.example.com/delta.crl"), OTHER_NAME)]),
    x509.AuthorityInformationAccess([
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP, _uri("http://ocsp.example.com")),
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, _uri("http://crl.example.com/ca.crt")),
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, OTHER_NAME),
    ]),
    x509.SubjectKeyIdentifier(b"\x01\x02"),
    x509.AuthorityKeyIdentifier(b"\x0a\x0b", None, None),
))


def test_certificate_summary_of_a_certificate_with_every_extension() -> None:
    assert facts.certificate_summary(DEVICE) == {
        "type": "certificate",
        "subject": "CN=laptop-0001",
        "subjectCN": "laptop-0001",
        "issuer": "CN=Devices CA,O=Example Corp",
        "issuerCN": "Devices CA",
        "serial": "0abc",
        "validity": {"notBefore": "2026-03-01T12:00:00Z", "notAfter": "2026-03-31T12:00:00Z"},
        "eku": ["clientAuth", "1.3.6.1.4.1.311.99.1"],
        "keyUsage": ["digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement",
                     "encipherOnly", "decipherOnly"],
        "san": {"dns": ["laptop.example.com"], "ip": ["192.0.2.7"], "email": ["it@example.com"], "uri": ["urn:device:0001"]},
        "cdp": ["http://crl.example.com/a.crl"],
        "aia": {"caIssuers": ["http://crl.example.com/ca.crt"], "ocsp": ["http://ocsp.example.com"]},
        "isCA": False,
        "pathLength": None,
        "selfSigned": False,
        "publicKey": "EC P-384",
        "signatureHash": "sha256",
        "subjectKeyId": "0102",
        "authorityKeyId": "0a0b",
        "fingerprints": {"sha1": DEVICE.fingerprint(hashes.SHA1()).hex().upper(), "sha256": DEVICE.fingerprint(hashes.SHA256()).hex().upper()},
    }
    assert facts.delta_crl_urls(DEVICE) == ["http://crl.example.com/delta.crl"]
    assert facts.aia_urls(DEVICE) == ["http://ocsp.example.com", "http://crl.example.com/ca.crt"]


def test_a_ca_summary_shows_its_path_length_and_cert_signing_usage() -> None:
    ca = _certificate(CA_KEY, ca=True, extensions=(x509.KeyUsage(False, False, False, False, False, True, True, False, False),))
    summary = facts.certificate_summary(ca)
    assert (summary["isCA"], summary["pathLength"], summary["selfSigned"]) == (True, 0, True)
    assert summary["keyUsage"] == ["keyCertSign", "cRLSign"] and summary["subjectKeyId"] is None and summary["authorityKeyId"] is None
    assert facts.key_usage_names(_certificate(DEVICE_KEY)) is None


def test_an_unknown_aia_method_is_refused() -> None:
    with pytest.raises(ValueError) as refused:
        facts.aia_urls(DEVICE, "crl")
    assert str(refused.value) == "method: got 'crl'; expected caIssuers, ocsp or None"


@pytest.mark.parametrize("key,description", [
    (rsa.generate_private_key(65537, 1024), "RSA 1024"),
    (ec.generate_private_key(ec.SECP256R1()), "EC P-256"),
    (ec.generate_private_key(ec.SECP384R1()), "EC P-384"),
    (ec.generate_private_key(ec.SECP521R1()), "EC P-521"),
    (ec.generate_private_key(ec.SECP256K1()), "EC secp256k1"),
    (ed25519.Ed25519PrivateKey.generate(), "Ed25519PublicKey"),
])
def test_public_key_description(key, description: str) -> None:
    assert facts.public_key_description(_certificate(key)) == description


def test_crl_summary() -> None:
    builder = (
        x509.CertificateRevocationListBuilder().issuer_name(CA_NAME).last_update(NOW).next_update(NOW + dt.timedelta(days=7))
        .add_extension(x509.CRLNumber(12), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(b"\x0a\x0b", None, None), critical=False)
    )
    for serial, reason in ((0x1F2, x509.ReasonFlags.key_compromise), (0x0A, None)):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - dt.timedelta(hours=serial))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(CA_KEY, hashes.SHA256())
    assert facts.crl_summary(crl) == {
        "type": "crl",
        "issuer": "CN=Devices CA,O=Example Corp",
        "issuerCN": "Devices CA",
        "crlNumber": 12,
        "lastUpdate": "2026-03-01T12:00:00Z",
        "nextUpdate": "2026-03-08T12:00:00Z",
        "authorityKeyId": "0a0b",
        "revoked": [
            {"serial": "0a", "date": "2026-03-01T02:00:00Z", "reason": None},
            {"serial": "01f2", "date": "2026-02-08T18:00:00Z", "reason": "keyCompromise"},
        ],
        "fingerprints": {"sha1": crl.fingerprint(hashes.SHA1()).hex().upper(), "sha256": crl.fingerprint(hashes.SHA256()).hex().upper()},
    }
    bare = x509.CertificateRevocationListBuilder().issuer_name(CA_NAME).last_update(NOW).next_update(NOW).sign(CA_KEY, hashes.SHA256())
    assert facts.crl_number(bare) is None and facts.crl_summary(bare)["authorityKeyId"] is None



def test_iso_reads_a_naive_moment_as_utc_whatever_the_local_zone(tokyo: None) -> None:
    assert facts.iso(dt.datetime(2026, 3, 1, 12, 0, 5, 999)) == "2026-03-01T12:00:05Z"
    assert facts.iso(dt.datetime(2026, 3, 1, 21, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))) == "2026-03-01T12:00:00Z"
    assert facts.iso(None) is None


@pytest.mark.parametrize("data,message", [
    (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "no PEM CRL in the data"),
    (b"\x30\x03\x02\x01\x01", "neither a PEM nor a DER CRL"),
])
def test_load_crls_refusals(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        facts.load_crls(data)
    assert str(refused.value) == message


@pytest.mark.parametrize("data,message", [
    (b"-----BEGIN " + b"PRIVATE KEY-----\nMIIB\n-----END " + b"PRIVATE KEY-----\n", "no PEM certificate or CRL in the file"),
    (b"\x30\x03\x02\x01\x01", "neither a certificate nor a CRL (PEM or DER)"),
])
def test_read_x509_refusals(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "thing.pem"
    path.write_bytes(data)
    with pytest.raises(ValueError) as refused:
        facts.read_x509(path)
    assert str(refused.value) == message


def test_read_x509_reads_der_of_either_kind(tmp_path: Path) -> None:
    (tmp_path / "c.der").write_bytes(DEVICE.public_bytes(serialization.Encoding.DER))
    assert facts.read_x509(tmp_path / "c.der") == ([DEVICE], [])


def test_summary_of_a_certificate_without_basic_constraints_signed_without_a_hash() -> None:
    """Ed25519 signs without a separate hash algorithm; a certificate may lack basicConstraints."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")])
    bare = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1)).sign(key, None))
    summary = facts.certificate_summary(bare)
    assert (summary["isCA"], summary["pathLength"], summary["signatureHash"], summary["selfSigned"]) == (False, None, None, True)
