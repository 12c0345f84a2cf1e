"""Reading X.509 certificates and CRLs and the facts the deployment and the tools need of them.

Nothing here touches the network, the clock or a PKI directory:

- reading: :func:`load_certificates` / :func:`read_certificates` (PEM bundle or DER),
  :func:`load_crls` / :func:`read_crls`, :func:`read_x509` (either kind, for `inspect`);
- facts about one certificate: :func:`common_name`, :func:`name_values`, :func:`cdp_urls`,
  :func:`aia_urls`, :func:`fingerprints`, :func:`thumbprint`, :func:`serial_hex`,
  :func:`eku_names`, :func:`is_ca`, :func:`is_self_signed`, :func:`subject_alt_names`,
  :func:`certificate_summary`, :func:`crl_summary`; of a chain: :func:`issuing_cas`.

Mapping rules (matching a certificate's Issuer/Subject) live in components/iis/mapping_rules.py;
the verdict an IIS beacon would give a certificate in components/certs/verdict.py.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..safe_files import CERTIFICATE_FILE_LIMIT, read_regular

_PEM_CERT = re.compile(rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----.+?-----END (?:X509 |TRUSTED )?CERTIFICATE-----", re.S)
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)

# Mapping-rule subfields (IIS certificateSubField) -> name attribute.
SUBFIELDS = {
    "CN": NameOID.COMMON_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "L": NameOID.LOCALITY_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
}

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}

_REASON_NAMES = {
    x509.ReasonFlags.unspecified: "unspecified",
    x509.ReasonFlags.key_compromise: "keyCompromise",
    x509.ReasonFlags.ca_compromise: "cACompromise",
    x509.ReasonFlags.affiliation_changed: "affiliationChanged",
    x509.ReasonFlags.superseded: "superseded",
    x509.ReasonFlags.cessation_of_operation: "cessationOfOperation",
    x509.ReasonFlags.certificate_hold: "certificateHold",
    x509.ReasonFlags.privilege_withdrawn: "privilegeWithdrawn",
    x509.ReasonFlags.aa_compromise: "aACompromise",
    x509.ReasonFlags.remove_from_crl: "removeFromCRL",
}

# ---------------------------------------------------------------------------------------------
# Reading


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (in file order), or the one certificate of DER data.

    Raises ValueError when there is no certificate.
    """
    if b"-----BEGIN" in data:
        blocks = _PEM_CERT.findall(data)
        if not blocks:
            raise ValueError("no PEM certificate in the data")
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ValueError("neither a PEM certificate bundle nor a DER certificate") from None


def read_certificates(path: str | Path) -> list[x509.Certificate]:
    """:func:`load_certificates` of a file. OSError/ValueError carry the reason (a path that is
    not a regular file of at most 64 MiB is a ValueError: safe_files.FileRefused)."""
    return load_certificates(read_regular(Path(path), CERTIFICATE_FILE_LIMIT))


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL of PEM data (several may be concatenated), or the one CRL of DER data."""
    if b"-----BEGIN" in data:
        blocks = _PEM_CRL.findall(data)
        if not blocks:
            raise ValueError("no PEM CRL in the data")
        return [x509.load_pem_x509_crl(block) for block in blocks]
    try:
        return [x509.load_der_x509_crl(data)]
    except ValueError:
        raise ValueError("neither a PEM nor a DER CRL") from None


def read_crls(path: str | Path) -> list[x509.CertificateRevocationList]:
    return load_crls(read_regular(Path(path), CERTIFICATE_FILE_LIMIT))


def read_x509(path: str | Path) -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
    """Certificates and CRLs of one file (PEM may mix both; DER is one or the other)."""
    data = read_regular(Path(path), CERTIFICATE_FILE_LIMIT)
    if b"-----BEGIN" in data:
        certs = [x509.load_pem_x509_certificate(b) for b in _PEM_CERT.findall(data)]
        crls = [x509.load_pem_x509_crl(b) for b in _PEM_CRL.findall(data)]
        if not certs and not crls:
            raise ValueError("no PEM certificate or CRL in the file")
        return certs, crls
    try:
        return [x509.load_der_x509_certificate(data)], []
    except ValueError:
        pass
    try:
        return [], [x509.load_der_x509_crl(data)]
    except ValueError:
        raise ValueError("neither a certificate nor a CRL (PEM or DER)") from None


# ---------------------------------------------------------------------------------------------
# Facts about one certificate


def name_values(name: x509.Name, subfield: str) -> list[str]:
    """Values of one mapping subfield (CN, OU, O, L, S, C) in a name, in order."""
    oid = SUBFIELDS[subfield.upper()]
    return [str(attr.value) for attr in name.get_attributes_for_oid(oid)]


def common_name(name: x509.Name) -> str | None:
    """The first CN of a name (as components/certs/trust.common_name), or None."""
    values = name_values(name, "CN")
    return values[0] if values else None


def extension(cert: x509.Certificate | x509.CertificateRevocationList, ext_type: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def cdp_urls(cert: x509.Certificate) -> list[str]:
    """URLs of the CRLDistributionPoints extension (full names only), in order, de-duplicated."""
    return _distribution_point_urls(extension(cert, x509.CRLDistributionPoints))


def delta_crl_urls(cert: x509.Certificate) -> list[str]:
    """URLs of the FreshestCRL extension (RFC 5280 4.2.1.15: where the delta CRLs are): Windows
    fetches the delta CRL too when a certificate names one, so the beacon must reach it."""
    return _distribution_point_urls(extension(cert, x509.FreshestCRL))


def _distribution_point_urls(points: Any) -> list[str]:
    urls: list[str] = []
    for point in points or ():
        for general in point.full_name or ():
            if isinstance(general, x509.UniformResourceIdentifier) and general.value not in urls:
                urls.append(general.value)
    return urls


def aia_urls(cert: x509.Certificate, method: str | None = None) -> list[str]:
    """URLs of the AuthorityInformationAccess extension; method "caIssuers" or "ocsp" filters."""
    wanted = {
        None: None,
        "caIssuers": x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
        "ocsp": x509.oid.AuthorityInformationAccessOID.OCSP,
    }
    if method not in wanted:
        raise ValueError(f"method: got {method!r}; expected caIssuers, ocsp or None")
    aia = extension(cert, x509.AuthorityInformationAccess)
    urls: list[str] = []
    for desc in aia or ():
        if wanted[method] is not None and desc.access_method != wanted[method]:
            continue
        if isinstance(desc.access_location, x509.UniformResourceIdentifier) and desc.access_location.value not in urls:
            urls.append(desc.access_location.value)
    return urls


def fingerprints(obj: x509.Certificate | x509.CertificateRevocationList) -> dict[str, str]:
    """{"sha1": ..., "sha256": ...}: uppercase hex without separators (the SHA-1 one is the
    Windows thumbprint that netsh certhash and Cert:\\LocalMachine\\My use)."""
    return {
        "sha1": obj.fingerprint(hashes.SHA1()).hex().upper(),
        "sha256": obj.fingerprint(hashes.SHA256()).hex().upper(),
    }


def thumbprint(cert: x509.Certificate) -> str:
    """The Windows certificate thumbprint (SHA-1, uppercase hex)."""
    return fingerprints(cert)["sha1"]


def serial_hex(serial: int) -> str:
    """Lowercase hex of a serial number, an even number of digits (as Windows shows the bytes)."""
    text = format(serial, "x")
    return text if len(text) % 2 == 0 else "0" + text


def eku_names(cert: x509.Certificate) -> list[str] | None:
    """Extended key usages by name (dotted OID when unnamed); None when there is no EKU
    extension (then the certificate is good for every purpose, in Windows and OpenSSL alike)."""
    eku = extension(cert, x509.ExtendedKeyUsage)
    if eku is None:
        return None
    return [_EKU_NAMES.get(oid) or oid.dotted_string for oid in eku]


def key_usage_names(cert: x509.Certificate) -> list[str] | None:
    ku = extension(cert, x509.KeyUsage)
    if ku is None:
        return None
    names = []
    for attr, label in (
        ("digital_signature", "digitalSignature"),
        ("content_commitment", "nonRepudiation"),
        ("key_encipherment", "keyEncipherment"),
        ("data_encipherment", "dataEncipherment"),
        ("key_agreement", "keyAgreement"),
        ("key_cert_sign", "keyCertSign"),
        ("crl_sign", "cRLSign"),
    ):
        if getattr(ku, attr):
            names.append(label)
    if ku.key_agreement:
        if ku.encipher_only:
            names.append("encipherOnly")
        if ku.decipher_only:
            names.append("decipherOnly")
    return names


def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints cA=TRUE."""
    bc = extension(cert, x509.BasicConstraints)
    return bool(bc and bc.ca)


def is_self_signed(cert: x509.Certificate) -> bool:
    """Subject == issuer and the certificate's own key verifies its signature."""
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def subject_alt_names(cert: x509.Certificate) -> dict[str, list[str]]:
    """{"dns": [...], "ip": [...], "email": [...], "uri": [...]}, only the kinds present."""
    san = extension(cert, x509.SubjectAlternativeName)
    out: dict[str, list[str]] = {}
    if san is None:
        return out
    for kind, cls in (("dns", x509.DNSName), ("ip", x509.IPAddress), ("email", x509.RFC822Name), ("uri", x509.UniformResourceIdentifier)):
        values = [str(v) for v in san.get_values_for_type(cls)]
        if values:
            out[kind] = values
    return out


def public_key_description(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384", "secp521r1": "EC P-521"}.get(key.curve.name, f"EC {key.curve.name}")
    return type(key).__name__


def iso(moment: dt.datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, second precision."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def certificate_summary(cert: x509.Certificate) -> dict[str, Any]:
    """The facts `pki inspect` prints, JSON-ready."""
    bc = extension(cert, x509.BasicConstraints)
    ski = extension(cert, x509.SubjectKeyIdentifier)
    aki = extension(cert, x509.AuthorityKeyIdentifier)
    return {
        "type": "certificate",
        "subject": cert.subject.rfc4514_string(),
        "subjectCN": common_name(cert.subject),
        "issuer": cert.issuer.rfc4514_string(),
        "issuerCN": common_name(cert.issuer),
        "serial": serial_hex(cert.serial_number),
        "validity": {"notBefore": iso(cert.not_valid_before_utc), "notAfter": iso(cert.not_valid_after_utc)},
        "eku": eku_names(cert),
        "keyUsage": key_usage_names(cert),
        "san": subject_alt_names(cert),
        "cdp": cdp_urls(cert),
        "aia": {"caIssuers": aia_urls(cert, "caIssuers"), "ocsp": aia_urls(cert, "ocsp")},
        "isCA": is_ca(cert),
        "pathLength": bc.path_length if bc is not None and bc.ca else None,
        "selfSigned": is_self_signed(cert),
        "publicKey": public_key_description(cert),
        "signatureHash": cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else None,
        "subjectKeyId": ski.digest.hex() if ski is not None else None,
        "authorityKeyId": aki.key_identifier.hex() if aki is not None and aki.key_identifier else None,
        "fingerprints": fingerprints(cert),
    }


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    ext = extension(crl, x509.CRLNumber)
    return ext.crl_number if ext is not None else None


def revocation_reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None
    return _REASON_NAMES.get(flag, flag.value)


def crl_summary(crl: x509.CertificateRevocationList) -> dict[str, Any]:
    """The facts `pki inspect` prints for a CRL, JSON-ready."""
    aki = extension(crl, x509.AuthorityKeyIdentifier)
    return {
        "type": "crl",
        "issuer": crl.issuer.rfc4514_string(),
        "issuerCN": common_name(crl.issuer),
        "crlNumber": crl_number(crl),
        "lastUpdate": iso(crl.last_update_utc),
        "nextUpdate": iso(crl.next_update_utc),
        "authorityKeyId": aki.key_identifier.hex() if aki is not None and aki.key_identifier else None,
        "revoked": [
            {"serial": serial_hex(e.serial_number), "date": iso(e.revocation_date_utc), "reason": revocation_reason(e)}
            for e in sorted(crl, key=lambda e: e.serial_number)
        ],
        "fingerprints": fingerprints(crl),
    }


def issuing_cas(cas: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The CAs of a chain that sign device certificates: those that issue no other CA of the set
    (the same choice components/certs/trust.classify makes for ClientAuthIssuer and the Issuer rule)."""
    unique: list[x509.Certificate] = []
    for ca in cas:
        if ca not in unique:
            unique.append(ca)
    issuers_of_others = {c.issuer for c in unique if c.subject != c.issuer}
    return [c for c in unique if c.subject not in issuers_of_others]

