"""Pure certificate reading and the IIS client-certificate decision, shared by tools and program.

Nothing here touches the network, the clock (callers pass ``at``) or a PKI directory:

- reading: :func:`load_certificates` / :func:`read_certificates` (PEM bundle or DER),
  :func:`load_crls` / :func:`read_crls`, :func:`read_x509` (either kind, for `inspect`);
- facts about one certificate: :func:`common_name`, :func:`name_values`, :func:`cdp_urls`,
  :func:`aia_urls`, :func:`fingerprints`, :func:`thumbprint`, :func:`serial_hex`,
  :func:`eku_names`, :func:`is_ca`, :func:`is_self_signed`, :func:`subject_alt_names`,
  :func:`certificate_summary`, :func:`crl_summary`;
- IIS many-to-one mapping rules (grammar from components/mapping_rules.py):
  :func:`parse_mapping_rule`, :func:`issuer_rule`, :func:`wildcard_match`, :func:`rule_matches`,
  :func:`first_unmatched`, :func:`issuing_cas`, :func:`allow_mappings`, :func:`deny_mappings`;
- the verdict an IIS beacon (HTTP.sys + SChannel + iisClientCertificateMappingAuthentication)
  would give a device certificate: :func:`build_path`, :func:`revocation_problem`,
  :func:`iis_verdict` -> :class:`Verdict`.

Order of the checks in :func:`iis_verdict` (the first failure decides):
1. trust (403.16): a path from the certificate to a self-signed root among the trusted
   certificates, every signature verifying, every issuer a CA (basicConstraints, keyCertSign,
   pathLenConstraint);
2. time (403.17): every certificate of the path valid at ``at``;
3. usage (reported as 403.16, "untrusted or invalid"): a CA certificate used as a client, an
   EKU without clientAuth (certificate or intermediate; none = any purpose, as in Windows and
   OpenSSL), a keyUsage without digitalSignature/keyAgreement;
4. revocation (403.13): for every certificate but the root, a CRL from its issuer with a valid
   signature, fresh at ``at`` (thisUpdate <= at <= nextUpdate), not listing its serial;
5. mapping (401.2): no Deny mapping matches (all its rules) and some Allow mapping does.

The path is built here rather than with cryptography.x509.verification.ClientVerifier: that
verifier applies the web PKI profile (a SAN is required on the leaf, which device certificates
for IIS many-to-one mapping do not need) and reports one error for every cause, where the IIS
status depends on the cause. tests/test_pki.py checks ClientVerifier agrees on what the CLI issues.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .mapping_rules import MappingRule, parse_rule

__all__ = [
    "IIS_STATUS",
    "MappingRule",
    "Verdict",
    "aia_urls",
    "allow_mappings",
    "build_path",
    "cdp_urls",
    "certificate_summary",
    "common_name",
    "crl_summary",
    "deny_mappings",
    "eku_names",
    "fingerprints",
    "first_unmatched",
    "iis_verdict",
    "is_ca",
    "is_self_signed",
    "iso",
    "key_usage_names",
    "issuer_rule",
    "issuing_cas",
    "load_certificates",
    "load_crls",
    "name_values",
    "parse_mapping_rule",
    "public_key_description",
    "read_certificates",
    "read_crls",
    "read_x509",
    "revocation_problem",
    "revocation_reason",
    "rule_matches",
    "serial_hex",
    "subject_alt_names",
    "thumbprint",
    "wildcard_match",
]

# What IIS logs/answers for each outcome (sub-status codes of the IIS docs).
IIS_STATUS = {
    "403.7": "client certificate required",
    "403.13": "client certificate revoked (or revocation status unknown: CRL missing, invalid or stale)",
    "403.16": "client certificate untrusted or invalid",
    "403.17": "client certificate expired or not yet valid",
    "401.2": "no many-to-one mapping rule matched (anonymous access off)",
}

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
    """:func:`load_certificates` of a file. OSError/ValueError carry the reason."""
    return load_certificates(Path(path).read_bytes())


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
    return load_crls(Path(path).read_bytes())


def read_x509(path: str | Path) -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
    """Certificates and CRLs of one file (PEM may mix both; DER is one or the other)."""
    data = Path(path).read_bytes()
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
    """The first CN of a name (as components/trust.common_name), or None."""
    values = name_values(name, "CN")
    return values[0] if values else None


def _extension(cert: x509.Certificate | x509.CertificateRevocationList, ext_type: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def cdp_urls(cert: x509.Certificate) -> list[str]:
    """URLs of the CRLDistributionPoints extension (full names only), in order, de-duplicated."""
    points = _extension(cert, x509.CRLDistributionPoints)
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
    aia = _extension(cert, x509.AuthorityInformationAccess)
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
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is None:
        return None
    return [_EKU_NAMES.get(oid) or oid.dotted_string for oid in eku]


def key_usage_names(cert: x509.Certificate) -> list[str] | None:
    ku = _extension(cert, x509.KeyUsage)
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
    bc = _extension(cert, x509.BasicConstraints)
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
    san = _extension(cert, x509.SubjectAlternativeName)
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
    bc = _extension(cert, x509.BasicConstraints)
    ski = _extension(cert, x509.SubjectKeyIdentifier)
    aki = _extension(cert, x509.AuthorityKeyIdentifier)
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


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    ext = _extension(crl, x509.CRLNumber)
    return ext.crl_number if ext is not None else None


def revocation_reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None
    return _REASON_NAMES.get(flag, flag.value)


def crl_summary(crl: x509.CertificateRevocationList) -> dict[str, Any]:
    """The facts `pki inspect` prints for a CRL, JSON-ready."""
    aki = _extension(crl, x509.AuthorityKeyIdentifier)
    return {
        "type": "crl",
        "issuer": crl.issuer.rfc4514_string(),
        "issuerCN": common_name(crl.issuer),
        "crlNumber": _crl_number(crl),
        "lastUpdate": iso(crl.last_update_utc),
        "nextUpdate": iso(crl.next_update_utc),
        "authorityKeyId": aki.key_identifier.hex() if aki is not None and aki.key_identifier else None,
        "revoked": [
            {"serial": serial_hex(e.serial_number), "date": iso(e.revocation_date_utc), "reason": revocation_reason(e)}
            for e in sorted(crl, key=lambda e: e.serial_number)
        ],
        "fingerprints": fingerprints(crl),
    }


# ---------------------------------------------------------------------------------------------
# Many-to-one mapping rules (the grammar and MappingRule live in components/mapping_rules.py,
# shared with the IIS desired state; matching against certificates is here)


def parse_mapping_rule(text: str) -> MappingRule:
    """'Subject.O=Example Corp' / 'Issuer.CN~=devices*' -> MappingRule ("=" case-sensitive,
    "~=" case-insensitive, '*' wildcard). Raises ValueError naming the rule and what is expected."""
    if not isinstance(text, str):
        raise ValueError(f"mapping rule {text!r}: expected a string like 'Subject.O=Example Corp'")
    try:
        return parse_rule(text)
    except ValueError as exc:
        raise ValueError(f"mapping rule {text!r}: expected {exc}") from None


def issuer_rule(issuer_cn: str) -> MappingRule:
    """The many-to-one rule every Allow mapping starts with: Issuer CN = the issuing CA's CN."""
    return MappingRule("Issuer", "CN", issuer_cn, True)


def wildcard_match(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IIS matchCriteria semantics: whole value, '*' = any run of characters (also none, also
    line breaks); every other character is literal."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    flags = re.DOTALL | (0 if case_sensitive else re.IGNORECASE)
    return re.fullmatch(regex, value, flags) is not None


def rule_matches(cert: x509.Certificate, rule: MappingRule) -> bool:
    """Does the certificate's field/subfield match? With several values of the attribute (two
    OUs) any one matching is enough; an absent attribute never matches."""
    name = cert.subject if rule.certificate_field == "Subject" else cert.issuer
    values = name_values(name, rule.certificate_sub_field)
    return any(wildcard_match(rule.match_criteria, v, rule.compare_case_sensitive) for v in values)


def first_unmatched(cert: x509.Certificate, rules: Sequence[MappingRule]) -> MappingRule | None:
    """The first rule that does not match (IIS ANDs the rules of a mapping), or None."""
    for rule in rules:
        if not rule_matches(cert, rule):
            return rule
    return None


def issuing_cas(cas: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The CAs of a chain that sign device certificates: those that issue no other CA of the set
    (the same choice components/trust.classify makes for ClientAuthIssuer and the Issuer rule)."""
    unique: list[x509.Certificate] = []
    for ca in cas:
        if ca not in unique:
            unique.append(ca)
    issuers_of_others = {c.issuer for c in unique if c.subject != c.issuer}
    return [c for c in unique if c.subject not in issuers_of_others]


def issuer_rules(ca: x509.Certificate, include_organization: bool = False) -> list[MappingRule]:
    """The Issuer rules that pick out devices of one issuing CA: its CN, optionally its O."""
    rules = [issuer_rule(common_name(ca.subject) or "")]
    organizations = name_values(ca.subject, "O")
    if include_organization and organizations:
        rules.append(MappingRule("Issuer", "O", organizations[0], True))
    return rules


def allow_mappings(
    issuing: Sequence[x509.Certificate], extra_rules: Sequence[MappingRule] = (), include_organization: bool = False
) -> list[list[MappingRule]]:
    """One Allow mapping per issuing CA: its Issuer rules ANDed with the extra rules."""
    return [
        [*issuer_rules(ca, include_organization), *extra_rules] for ca in issuing if common_name(ca.subject) is not None
    ]


def deny_mappings(
    issuing: Sequence[x509.Certificate], deny_rules: Sequence[MappingRule], include_organization: bool = False
) -> list[list[MappingRule]]:
    """One Deny mapping per issuing CA and deny rule (Issuer rules AND the deny rule)."""
    return [
        [*issuer_rules(ca, include_organization), rule]
        for ca in issuing
        if common_name(ca.subject) is not None
        for rule in deny_rules
    ]


# ---------------------------------------------------------------------------------------------
# The IIS verdict


@dataclass(frozen=True)
class Verdict:
    """What an IIS beacon would do with a client certificate.

    status: None when accepted, else the IIS status ("403.16", "403.17", "403.13", "401.2").
    reason: a stable code: accepted, untrusted, expired, not-yet-valid, ca-as-client,
            wrong-usage, revoked, crl-missing, crl-invalid, crl-stale, no-mapping, denied.
    """

    accepted: bool
    status: str | None
    reason: str
    detail: str
    path: tuple[x509.Certificate, ...] = field(default=(), compare=False)
    mappings: tuple[tuple[MappingRule, ...], ...] = ()

    def line(self) -> str:
        return "accept" if self.accepted else f"{self.status} {self.reason}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "statusMeaning": IIS_STATUS.get(self.status or ""),
            "path": [c.subject.rfc4514_string() for c in self.path],
            "allowMappings": [[str(r) for r in m] for m in self.mappings],
        }


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _dn(name: x509.Name) -> str:
    return name.rfc4514_string() or "(empty name)"


def _can_issue(ca: x509.Certificate) -> bool:
    bc = _extension(ca, x509.BasicConstraints)
    ku = _extension(ca, x509.KeyUsage)
    if bc is None or not bc.ca:
        return False
    return ku is None or ku.key_cert_sign


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def build_path(
    leaf: x509.Certificate,
    trusted: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    max_depth: int = 8,
) -> tuple[tuple[x509.Certificate, ...] | None, str]:
    """A path leaf -> ... -> self-signed root, the root taken from ``trusted``.

    ``trusted``: certificates the beacon holds (LocalMachine\\Root and \\CA): the self-signed ones
    are anchors, the others can be intermediates. ``intermediates``: certificates the client sent.
    Returns (path, "") or (None, why not).
    """
    anchors = [c for c in trusted if is_self_signed(c)]
    pool = anchors + [c for c in list(trusted) + list(intermediates) if c not in anchors and c != leaf]
    if leaf in anchors:
        return (leaf,), ""
    problems: list[str] = []

    def extend(path: list[x509.Certificate]) -> tuple[x509.Certificate, ...] | None:
        current = path[-1]
        if len(path) > max_depth:
            problems.append(f"path longer than {max_depth} certificates")
            return None
        named = [c for c in pool if c.subject == current.issuer and c not in path]
        if not named:
            problems.append(f"no certificate for issuer '{_dn(current.issuer)}' among the trusted certificates")
            return None
        for candidate in named:
            if not _signed_by(current, candidate):
                problems.append(
                    f"'{_dn(current.subject)}' names issuer '{_dn(current.issuer)}' but its signature does not "
                    "verify with that CA's key (a different CA with the same name?)"
                )
                continue
            if not _can_issue(candidate):
                problems.append(f"issuer '{_dn(candidate.subject)}' is not a CA (basicConstraints/keyUsage)")
                continue
            bc = _extension(candidate, x509.BasicConstraints)
            below = sum(1 for c in path[1:] if c.subject != c.issuer)  # intermediates under it
            if bc.path_length is not None and below > bc.path_length:
                problems.append(f"'{_dn(candidate.subject)}' allows {bc.path_length} intermediate(s) below it")
                continue
            if candidate in anchors:
                return tuple(path + [candidate])
            if is_self_signed(candidate):
                problems.append(f"self-signed '{_dn(candidate.subject)}' is not a trusted root")
                continue
            found = extend(path + [candidate])
            if found:
                return found
        return None

    path = extend([leaf])
    if path:
        return path, ""
    # The most specific problem first: a signature mismatch explains more than "not found".
    problems.sort(key=lambda p: 0 if "signature" in p else 1)
    return None, problems[0] if problems else "no path to a trusted root"


def _fresh(crl: x509.CertificateRevocationList, at: dt.datetime) -> bool:
    if crl.last_update_utc > at:
        return False
    return crl.next_update_utc is None or at <= crl.next_update_utc


def revocation_problem(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    at: dt.datetime,
) -> tuple[str, str] | None:
    """None when a fresh, validly signed CRL from ``issuer`` does not list ``cert``; else
    (reason, detail) with reason revoked | crl-missing | crl-invalid | crl-stale."""
    at = _utc(at)
    named = [c for c in crls if c.issuer == issuer.subject]
    who = _dn(issuer.subject)
    if not named:
        urls = cdp_urls(cert)
        where = f" (IIS would fetch {', '.join(urls)})" if urls else " (and the certificate has no CDP to fetch one from)"
        return "crl-missing", f"no CRL from '{who}' for '{_dn(cert.subject)}'{where}"
    issuer_key = cast(CertificateIssuerPublicKeyTypes, issuer.public_key())
    signed = [c for c in named if c.is_signature_valid(issuer_key)]
    if not signed:
        return "crl-invalid", f"the CRL named '{who}' does not verify with that CA's key"
    fresh = [c for c in signed if _fresh(c, at)]
    if not fresh:
        newest = max(signed, key=lambda c: c.last_update_utc)
        if newest.last_update_utc > at:
            return "crl-stale", f"the CRL from '{who}' is not valid until {iso(newest.last_update_utc)}"
        return "crl-stale", f"the CRL from '{who}' expired at {iso(newest.next_update_utc)} (nextUpdate)"
    crl = max(fresh, key=lambda c: (_crl_number(c) or 0, c.last_update_utc))
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None:
        why = revocation_reason(entry) or "no reason given"
        return "revoked", (
            f"'{_dn(cert.subject)}' (serial {serial_hex(cert.serial_number)}) revoked {iso(entry.revocation_date_utc)} "
            f"({why}) by CRL {_crl_number(crl)} of '{who}'"
        )
    return None


def _describe_miss(cert: x509.Certificate, mappings: Sequence[Sequence[MappingRule]]) -> str:
    if not mappings:
        return "no Allow mapping is configured"
    # The mapping of this certificate's issuer explains best; else the first one.
    ordered = sorted(mappings, key=lambda m: 0 if m and rule_matches(cert, m[0]) else 1)
    rule = first_unmatched(cert, ordered[0])
    if rule is None:  # the chosen mapping matches after all: nothing to explain
        return "a mapping matches"
    name = cert.subject if rule.certificate_field == "Subject" else cert.issuer
    values = name_values(name, rule.certificate_sub_field)
    got = ", ".join(repr(v) for v in values) if values else "no such attribute"
    more = f" (and {len(mappings) - 1} other Allow mapping(s) do not match either)" if len(mappings) > 1 else ""
    return f"rule '{rule}' does not match ({rule.certificate_field}.{rule.certificate_sub_field}: {got}){more}"


def iis_verdict(
    cert: x509.Certificate,
    trusted: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: dt.datetime,
    mappings: Sequence[Sequence[MappingRule]] | None = None,
    intermediates: Sequence[x509.Certificate] = (),
    denials: Sequence[Sequence[MappingRule]] = (),
    check_revocation: bool = True,
) -> Verdict:
    """Would an IIS beacon with these trust stores, CRLs and mappings accept ``cert``?

    trusted: the beacon's LocalMachine\\Root (self-signed roots) and \\CA (intermediates).
    crls: the CRLs the beacon can get (fetched from the CDPs or pre-loaded).
    at: the moment of the request (timezone-aware, or naive UTC).
    mappings: the Allow mappings, each a list of rules that must all match; None ->
        allow_mappings(issuing_cas(non-leaf trusted CAs)): Issuer CN = an issuing CA's CN.
    intermediates: certificates the client sends along with its own.
    denials: Deny mappings, evaluated first (deny_mappings(...)).
    """
    at = _utc(at)
    if mappings is None:
        mappings = allow_mappings(issuing_cas([c for c in trusted if is_ca(c)]))
    frozen = tuple(tuple(m) for m in mappings)

    def reject(status: str, reason: str, detail: str, path: Iterable[x509.Certificate] = ()) -> Verdict:
        return Verdict(False, status, reason, detail, tuple(path), frozen)

    path, why = build_path(cert, trusted, intermediates)
    if path is None:
        return reject("403.16", "untrusted", why)

    for item in path:
        label = "the certificate" if item is cert else f"CA '{_dn(item.subject)}'"
        if at < item.not_valid_before_utc:
            return reject("403.17", "not-yet-valid", f"{label} is not valid before {iso(item.not_valid_before_utc)}", path)
        if at > item.not_valid_after_utc:
            return reject("403.17", "expired", f"{label} expired {iso(item.not_valid_after_utc)}", path)

    if is_ca(cert):
        return reject("403.16", "ca-as-client", "a CA certificate (basicConstraints cA=TRUE) cannot be a client certificate", path)
    for item in path[:-1]:
        names = eku_names(item)
        if names is not None and "clientAuth" not in names and "anyExtendedKeyUsage" not in names:
            label = "the certificate" if item is cert else f"CA '{_dn(item.subject)}'"
            return reject("403.16", "wrong-usage", f"{label} has EKU {', '.join(names) or '(empty)'} without clientAuth", path)
    ku = key_usage_names(cert)
    if ku is not None and "digitalSignature" not in ku and "keyAgreement" not in ku:
        return reject("403.16", "wrong-usage", f"keyUsage {', '.join(ku) or '(empty)'} has no digitalSignature", path)

    if check_revocation:
        for child, issuer in zip(path, path[1:]):
            problem = revocation_problem(child, issuer, crls, at)
            if problem:
                return reject("403.13", problem[0], problem[1], path)

    for denial in denials:
        if first_unmatched(cert, denial) is None:
            return reject("401.2", "denied", f"a Deny mapping matches ({' AND '.join(str(r) for r in denial)})", path)
    if not any(first_unmatched(cert, mapping) is None for mapping in frozen):
        return reject("401.2", "no-mapping", _describe_miss(cert, frozen), path)
    return Verdict(True, None, "accepted", "trusted, valid, clientAuth, not revoked, an Allow mapping matches", path, frozen)
