"""The kit-signing identity of a PKI and the signatures of kit format 2 (`bundle`, `verify-bundle`,
and windows/install.ps1 on the device).

    PKI/kit-signer.pem            self-signed X.509, EC P-256, CN "<issuing CA CN> kit signer",
                                  keyUsage digitalSignature (critical), EKU codeSigning, 10 years
    PKI/private/kit-signer.key    its key, PKCS#8 PEM (0600)

A signature file (manifest.sig, windows/install.json.sig) is one line of ASCII: base64 of the
IEEE P1363 encoding (r || s, 32 bytes each, big-endian) of an ECDSA P-256 / SHA-256 signature
over the exact bytes of the signed file, without a line end. P1363 is what .NET Framework's
ECDsa.VerifyData takes; OpenSSL and cryptography use DER (X9.62 Ecdsa-Sig-Value), hence the two
conversions here. The signer's SHA-1 thumbprint (as Windows shows it) is the value the operator
passes to install.ps1 -SignerThumbprint out of band.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.certs import facts as cert_facts

from . import build
from .files import PRIVATE_FILE, PUBLIC_FILE, atomic_write
from .store import Pki, PkiError

SIGNER_CERT = "kit-signer.pem"
SIGNER_KEY = "kit-signer.key"  # in PKI/private/
SIGNER_DAYS = 3650
SIGNER_SUFFIX = " kit signer"
CN_LIMIT = 64  # X.509 upper bound of a common name
COORDINATE = 32  # bytes of r and of s for P-256
SIGNATURE_TEXT = 4 * ((2 * COORDINATE + 2) // 3)  # 88 base64 characters


@dataclass(frozen=True)
class Signer:
    cert: x509.Certificate
    key: Any  # ec.EllipticCurvePrivateKey

    @property
    def thumbprint(self) -> str:
        return cert_facts.thumbprint(self.cert)

    def sign(self, data: bytes) -> bytes:
        """The signature file's bytes for ``data``."""
        return encode_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))


def p1363_from_der(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(COORDINATE, "big") + s.to_bytes(COORDINATE, "big")


def der_from_p1363(raw: bytes) -> bytes:
    if len(raw) != 2 * COORDINATE:
        raise ValueError(f"{len(raw)} bytes; expected {2 * COORDINATE} (r || s of P-256)")
    return encode_dss_signature(int.from_bytes(raw[:COORDINATE], "big"), int.from_bytes(raw[COORDINATE:], "big"))


def encode_signature(der: bytes) -> bytes:
    return base64.b64encode(p1363_from_der(der))


def decode_signature(text: bytes) -> bytes:
    """The P1363 bytes of a signature file (a final line end is tolerated); ValueError otherwise."""
    body = text[:-1] if text.endswith(b"\n") else text
    body = body[:-1] if body.endswith(b"\r") else body
    if len(body) != SIGNATURE_TEXT:
        raise ValueError(f"{len(text)} bytes; expected one line of {SIGNATURE_TEXT} base64 characters")
    try:
        raw = base64.b64decode(body, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(raw) != 2 * COORDINATE:
        raise ValueError(f"{len(raw)} bytes of signature; expected {2 * COORDINATE}")
    return raw


def verifies(cert: x509.Certificate, data: bytes, signature_file: bytes) -> bool:
    """Does the signature file hold a signature by ``cert``'s P-256 key over ``data``?"""
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        return False
    try:
        public.verify(der_from_p1363(decode_signature(signature_file)), data, ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        return False
    return True


def signer_paths(pki: Pki) -> tuple[Path, Path]:
    return pki.root / SIGNER_CERT, pki.private / SIGNER_KEY


def load_signer_cert(pki: Pki) -> x509.Certificate | None:
    """The PKI's kit-signer certificate, or None when it has none."""
    cert_path, _ = signer_paths(pki)
    if not cert_path.exists() and not cert_path.is_symlink():
        return None
    return pki.load_cert(cert_path)


def _signer_name(pki: Pki) -> x509.Name:
    issuing = pki.chain()[0]
    found = issuing.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = str(found[0].value) if found else "PKI"
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, base[: CN_LIMIT - len(SIGNER_SUFFIX)] + SIGNER_SUFFIX)])


def _new_signer(pki: Pki, now: dt.datetime) -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
    name = _signer_name(pki)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - build.BACKDATE).not_valid_after(now + dt.timedelta(days=SIGNER_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(usage, critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    return Signer(builder.sign(key, hashes.SHA256()), key)


def load_or_create(pki: Pki, now: dt.datetime) -> tuple[Signer, bool]:
    """(the PKI's kit signer, whether it was made now). The key is written first and the
    certificate last: the certificate is the commit point, so a crash in between leaves a key
    without certificate, which the next call replaces (nothing was ever signed with it)."""
    cert_path, key_path = signer_paths(pki)
    with pki.locked():  # two bundle runs (other --out) must not make two signers
        cert = load_signer_cert(pki)
        if cert is None:
            signer = _new_signer(pki, now)
            pki.ensure_dirs()
            atomic_write(key_path, signer.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()), PRIVATE_FILE)
            atomic_write(cert_path, signer.cert.public_bytes(serialization.Encoding.PEM), PUBLIC_FILE)
            return signer, True
    if not key_path.exists():
        raise PkiError(f"{cert_path} exists but {key_path} is missing: restore the key (devices check kits against "
                       f"{cert_facts.thumbprint(cert)}), or move {cert_path} away to make a new signer (then deploy install.ps1 with the new thumbprint)")
    key = pki.load_key(key_path)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PkiError(f"{key_path}: not an EC P-256 key; kit format 2 signs with ECDSA P-256 only")
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise PkiError(f"{key_path} does not belong to {cert_path} (their public keys differ): restore the key made with it")
    if cert.not_valid_after_utc <= now:
        raise PkiError(f"{cert_path} expired {cert_facts.iso(cert.not_valid_after_utc)}: move it and {key_path} away to make a new signer "
                       "(then deploy install.ps1 with the new thumbprint)")
    return Signer(cert, key), False
