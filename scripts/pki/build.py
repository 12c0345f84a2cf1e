"""Certificate, CRL and PKCS#12 builders (cryptography), free of files and argv."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

KEY_TYPES = ("ec", "rsa2048", "rsa3072")
BACKDATE = dt.timedelta(minutes=5)  # tolerate clients whose clock is a little behind

REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
}


def new_key(kind: str) -> Any:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"key type {kind!r}; expected one of {', '.join(KEY_TYPES)}")


def is_rsa(public_key: Any) -> bool:
    return isinstance(public_key, rsa.RSAPublicKey)


def key_problem(public_key: Any) -> str | None:
    """Keys SChannel accepts for client authentication: RSA >= 2048, EC P-256/384/521."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return None if public_key.key_size >= 2048 else f"RSA {public_key.key_size} (at least 2048 bits)"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        ok = public_key.curve.name in ("secp256r1", "secp384r1", "secp521r1")
        return None if ok else f"EC curve {public_key.curve.name} (P-256, P-384 or P-521)"
    return f"{type(public_key).__name__} (RSA or EC P-256/384/521)"


def make_name(cn: str, o: str | None = None, ou: str | None = None, c: str | None = None) -> x509.Name:
    attrs = []
    if c:
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, c))
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass
class Profile:
    """What goes into one certificate besides subject and key."""

    days: int
    ca: bool = False
    path_length: int | None = None
    eku: Sequence[x509.ObjectIdentifier] = ()
    dns: Sequence[str] = ()
    ips: Sequence[str] = ()
    crl_urls: Sequence[str] = ()
    aia_urls: Sequence[str] = ()
    name_constraints: x509.NameConstraints | None = None  # critical (RFC 5280 4.2.1.10)
    extra: list[x509.ExtensionType] = field(default_factory=list)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    """cryptography's builders take naive UTC (their setters convert; the constructors do not)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


class CertificateTemplate:
    """Everything of a profile that does not change from one certificate to the next, computed
    once: the issuer name, AKI, CDP, AIA, EKU and the two keyUsage variants (RSA or not).

    ``sign`` then builds each certificate with one CertificateBuilder constructed with its full
    extension list (the fluent ``add_extension`` copies the builder and re-checks duplicates on
    every call). The constant extensions are DER-encoded once and passed as raw values
    (UnrecognizedExtension carries bytes), which spares re-encoding them for every certificate;
    the certificate bytes are the same (tests/pki/test_pki.py compares). Extension order and content
    are those of :func:`build_certificate`."""

    def __init__(self, profile: Profile, issuer: x509.Certificate | None, issuer_key: Any):
        self.profile = profile
        self.issuer = issuer
        self.issuer_key = issuer_key
        self.issuer_not_after = issuer.not_valid_after_utc if issuer is not None else None
        self.basic = x509.Extension(
            x509.BasicConstraints.oid, True,
            x509.BasicConstraints(ca=profile.ca, path_length=profile.path_length if profile.ca else None),
        )
        self.usage = {rsa_key: x509.Extension(x509.KeyUsage.oid, True, _key_usage(profile.ca, rsa_key)) for rsa_key in (False, True)}
        tail: list[x509.Extension[x509.ExtensionType]] = []
        if issuer is not None:
            ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
            tail.append(x509.Extension(aki.oid, False, aki))
        if profile.crl_urls:
            points = [x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in profile.crl_urls]
            tail.append(x509.Extension(x509.CRLDistributionPoints.oid, False, x509.CRLDistributionPoints(points)))
        if profile.aia_urls:
            access = [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u)) for u in profile.aia_urls]
            tail.append(x509.Extension(x509.AuthorityInformationAccess.oid, False, x509.AuthorityInformationAccess(access)))
        for extra in profile.extra:
            tail.append(x509.Extension(extra.oid, False, extra))
        self.tail = tail
        self.middle: list[x509.Extension[x509.ExtensionType]] = []
        if profile.name_constraints is not None:
            self.middle.append(x509.Extension(x509.NameConstraints.oid, True, profile.name_constraints))
        if profile.eku:
            self.middle.append(x509.Extension(x509.ExtendedKeyUsage.oid, False, x509.ExtendedKeyUsage(list(profile.eku))))
        if profile.dns or profile.ips:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in profile.dns]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in profile.ips]
            self.middle.append(x509.Extension(x509.SubjectAlternativeName.oid, False, x509.SubjectAlternativeName(names)))
        oids = [e.oid for e in (self.basic, self.usage[False], *self.middle, *tail)]
        if len(set(oids)) != len(oids) or x509.SubjectKeyIdentifier.oid in oids:
            raise ValueError("duplicate extension in the certificate profile")
        self.basic = _pre_encoded(self.basic)
        self.usage = {k: _pre_encoded(v) for k, v in self.usage.items()}
        self.middle = [_pre_encoded(e) for e in self.middle]
        self.tail = [_pre_encoded(e) for e in self.tail]

    def validity(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime, bool]:
        """(notBefore, notAfter, clamped): backdated a little, cut to the issuer's notAfter."""
        not_before = now - BACKDATE
        not_after = now + dt.timedelta(days=self.profile.days)
        if self.issuer_not_after is not None and not_after > self.issuer_not_after:
            return not_before, self.issuer_not_after, True
        return not_before, not_after, False

    def sign(self, subject: x509.Name, public_key: Any, now: dt.datetime) -> tuple[x509.Certificate, bool]:
        not_before, not_after, clamped = self.validity(now)
        if not_after <= not_before:
            raise ValueError(f"the issuer's validity ended {self.issuer_not_after}: nothing can be issued from it")
        extensions = [
            self.basic,
            self.usage[is_rsa(public_key)],
            *self.middle,
            _subject_key_identifier(public_key),
            *self.tail,
        ]
        builder = x509.CertificateBuilder(
            issuer_name=self.issuer.subject if self.issuer is not None else subject,
            subject_name=subject,
            public_key=public_key,
            serial_number=x509.random_serial_number(),
            not_valid_before=_naive_utc(not_before),
            not_valid_after=_naive_utc(not_after),
            extensions=extensions,
        )
        return builder.sign(self.issuer_key, hashes.SHA256()), clamped


def _pre_encoded(extension: x509.Extension[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    """The same extension with its value as DER bytes (encoded once, copied into each certificate)."""
    try:
        der = extension.value.public_bytes()
    except (AttributeError, NotImplementedError, ValueError):
        return extension
    return x509.Extension(extension.oid, extension.critical, x509.UnrecognizedExtension(extension.oid, der))


_SKI_OID = x509.SubjectKeyIdentifier.oid


def _subject_key_identifier(public_key: Any) -> x509.Extension[x509.ExtensionType]:
    """RFC 5280 4.2.1.2 method 1 (SHA-1 of the subjectPublicKey bits), as
    SubjectKeyIdentifier.from_public_key computes it; for EC keys the bits are the X9.62
    uncompressed point, hashed directly (the common case in bulk issue)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        digest = hashlib.sha1(point).digest()  # noqa: S324 - the key identifier, not a signature
        return x509.Extension(_SKI_OID, False, x509.UnrecognizedExtension(_SKI_OID, b"\x04\x14" + digest))
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    return x509.Extension(_SKI_OID, False, ski)


def _key_usage(ca: bool, rsa_key: bool) -> x509.KeyUsage:
    if ca:
        usage = dict(digital_signature=False, key_cert_sign=True, crl_sign=True, key_encipherment=False)
    else:
        usage = dict(digital_signature=True, key_cert_sign=False, crl_sign=False, key_encipherment=rsa_key)
    return x509.KeyUsage(content_commitment=False, data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False, **usage)


def build_certificate(
    subject: x509.Name,
    public_key: Any,
    profile: Profile,
    issuer: x509.Certificate | None,
    issuer_key: Any,
    now: dt.datetime,
) -> tuple[x509.Certificate, bool]:
    """Sign a certificate. issuer None: self-signed. Returns (cert, clamped) where clamped says the
    validity was cut to the issuer's notAfter."""
    return CertificateTemplate(profile, issuer, issuer_key).sign(subject, public_key, now)


SERVER_EKU = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
SERVER_CA_EKU = (ExtendedKeyUsageOID.SERVER_AUTH,)  # Windows intersects a chain's EKUs: the CA can vouch for TLS servers only


def server_name_constraints(domains: Sequence[str]) -> x509.NameConstraints:
    """Permitted dNSName subtrees = the domains (each name and every name below it); every IPv4
    and IPv6 address excluded, so no certificate under the CA can vouch for an address."""
    return x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(d) for d in domains],
        excluded_subtrees=[x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")), x509.IPAddress(ipaddress.ip_network("::/0"))],
    )
CLIENT_EKU = (ExtendedKeyUsageOID.CLIENT_AUTH,)


_REASON_EXTENSIONS: dict[str, list[x509.Extension[x509.ExtensionType]]] = {
    name: [] if name == "unspecified" else [x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(flag))]
    for name, flag in REASONS.items()
}
_MAX_SERIAL = 1 << 159  # RFC 5280: at most 20 octets, positive


def revoked_entry(serial: int, date: dt.datetime, reason: str) -> x509.RevokedCertificate:
    """One CRL entry. 'unspecified' carries no reasonCode (RFC 5280 5.3.1)."""
    if not 0 < serial < _MAX_SERIAL:
        raise ValueError(f"serial {serial:x}: not a positive number of at most 159 bits")
    if reason not in _REASON_EXTENSIONS:
        raise ValueError(f"reason {reason!r}; expected one of {', '.join(REASONS)}")
    return x509.RevokedCertificateBuilder(serial, _naive_utc(date), _REASON_EXTENSIONS[reason]).build()


def build_crl(
    issuer: x509.Certificate,
    issuer_key: Any,
    number: int,
    revoked: Sequence[tuple[int, dt.datetime | str, str]],
    last_update: dt.datetime,
    next_update: dt.datetime,
) -> x509.CertificateRevocationList:
    """The CRL of :func:`sign_crl` as an object."""
    return x509.load_der_x509_crl(sign_crl(issuer, issuer_key, number, revoked, last_update, next_update))


def sign_crl(
    issuer: x509.Certificate,
    issuer_key: Any,
    number: int,
    revoked: Sequence[tuple[int, dt.datetime | str, str]],
    last_update: dt.datetime,
    next_update: dt.datetime,
) -> bytes:
    """A signed CRL, DER. revoked: (serial, date, reason name), listed by serial. 'unspecified' carries no reasonCode.
    A date is a datetime or index.json's text "YYYY-MM-DDTHH:MM:SSZ" (UTC).

    For RSA and EC issuers the TBSCertList is assembled as DER here (it is a flat list, and
    cryptography makes a Python object per entry and then reads it back: 100,000 entries cost
    about a second) and signed with the issuer key; the result is parsed back and its signature
    verified. tests/pki/test_pki.py checks the bytes equal CertificateRevocationListBuilder's. Other
    key types go through the builder, constructed once with the whole list (its
    ``add_revoked_certificate`` copies the list on every call: O(n^2))."""
    if next_update <= last_update:
        raise ValueError("nextUpdate must be after lastUpdate")
    entries = sorted(revoked, key=itemgetter(0))
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    extensions = [x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)), x509.Extension(aki.oid, False, aki)]
    algorithm = _signature_algorithm(issuer_key)
    if algorithm is None:
        builder = x509.CertificateRevocationListBuilder(
            issuer_name=issuer.subject,
            last_update=_naive_utc(last_update),
            next_update=_naive_utc(next_update),
            extensions=extensions,
            revoked_certificates=[revoked_entry(serial, _time_value(date), reason) for serial, date, reason in entries],
        )
        return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    tbs = _tbs_cert_list(algorithm, issuer.subject.public_bytes(), last_update, next_update, entries, extensions)
    public_key = issuer.public_key()  # verified against: the key must be the CA's
    if isinstance(issuer_key, rsa.RSAPrivateKey) and isinstance(public_key, rsa.RSAPublicKey):
        signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
        public_key.verify(signature, tbs, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(issuer_key, ec.EllipticCurvePrivateKey) and isinstance(public_key, ec.EllipticCurvePublicKey):
        signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        public_key.verify(signature, tbs, ec.ECDSA(hashes.SHA256()))
    else:
        raise ValueError("the issuer's key does not belong to its certificate")
    return _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature))


# DER pieces of a CRL (RFC 5280 5.1).
_ALGORITHMS = {
    "ec": bytes.fromhex("300a06082a8648ce3d040302"),  # ecdsa-with-SHA256, no parameters
    "rsa": bytes.fromhex("300d06092a864886f70d01010b0500"),  # sha256WithRSAEncryption, NULL
}
_V2 = b"\x02\x01\x01"
_ENTRY_EXTENSIONS = {
    name: b"" if name == "unspecified" else None for name in REASONS
}


def _time_value(date: dt.datetime | str) -> dt.datetime:
    return dt.datetime.fromisoformat(date.replace("Z", "+00:00")) if isinstance(date, str) else date


def _signature_algorithm(key: Any) -> bytes | None:
    if isinstance(key, rsa.RSAPrivateKey):
        return _ALGORITHMS["rsa"]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _ALGORITHMS["ec"]
    return None


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def _der(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _der_length(len(content)) + content


def _der_integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # room for the sign bit (value >= 0)
    return _der(0x02, raw)


def _der_time(moment: dt.datetime) -> bytes:
    """UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5), seconds, Z."""
    moment = _naive_utc(moment)
    if moment.year < 2050:
        return _der(0x17, moment.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return _der(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


_MONTH_DAY_TIME = r"-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\dZ"
_UTC_TIME_TEXT = re.compile(r"(?:19[5-9]\d|20[0-4]\d)" + _MONTH_DAY_TIME)  # 1950-2049: UTCTime
_GENERALIZED_TIME_TEXT = re.compile(r"(?:20[5-9]\d|2[1-9]\d\d|[3-9]\d{3})" + _MONTH_DAY_TIME)


def _der_time_text(text: str) -> bytes:
    """DER time of "YYYY-MM-DDTHH:MM:SSZ" (index.json's form) straight from the text: a CRL of
    100,000 entries has up to 100,000 distinct dates. Other forms, and days after the 28th
    (month lengths), go through datetime, which also rejects impossible dates."""
    if _UTC_TIME_TEXT.fullmatch(text):
        return b"\x17\x0d" + text.encode("ascii")[2:].translate(None, b"-T:")
    if _GENERALIZED_TIME_TEXT.fullmatch(text):
        return b"\x18\x0f" + text.encode("ascii").translate(None, b"-T:")
    return _der_time(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


def _der_extension(extension: x509.Extension[x509.ExtensionType]) -> bytes:
    body = _der(0x06, _oid_der(extension.oid.dotted_string))
    if extension.critical:
        body += b"\x01\x01\xff"
    return _der(0x30, body + _der(0x04, extension.value.public_bytes()))


def _oid_der(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray()
    for number in [parts[0] * 40 + parts[1], *parts[2:]]:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def _reason_extensions(reason: str) -> bytes:
    found = _ENTRY_EXTENSIONS.get(reason)
    if found is None:
        extension = x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(REASONS[reason]))
        found = _ENTRY_EXTENSIONS[reason] = _der(0x30, _der_extension(extension))
    return found


def _tbs_cert_list(algorithm: bytes, issuer_name: bytes, this_update: dt.datetime, next_update: dt.datetime,
                   entries: Sequence[tuple[int, dt.datetime | str, str]], extensions: Sequence[x509.Extension[x509.ExtensionType]]) -> bytes:
    times: dict[Any, bytes] = {}
    reasons = {name: _reason_extensions(name) for name in REASONS}
    parts: list[bytes] = []
    append = parts.append
    for serial, date, reason in entries:  # the hot loop of a large CRL: every length is < 128 (one byte, %c)
        when = times.get(date)
        if when is None:
            when = times[date] = _der_time_text(date) if isinstance(date, str) else _der_time(date)
        tail = reasons.get(reason)
        if tail is None:
            raise ValueError(f"reason {reason!r}; expected one of {', '.join(REASONS)}")
        if type(serial) is not int or serial <= 0 or serial.bit_length() >= 160:
            raise ValueError(f"serial {serial!r}: not a positive number of at most 159 bits")
        size = serial.bit_length() // 8 + 1
        append(b"\x30%c\x02%c%b%b%b" % (2 + size + len(when) + len(tail), size, serial.to_bytes(size, "big"), when, tail))  # SEQUENCE { INTEGER, time, extensions }
    items = b"".join(parts)
    body = _V2 + algorithm + issuer_name + _der_time(this_update) + _der_time(next_update)
    if items:
        body += _der(0x30, items)
    body += _der(0xA0, _der(0x30, b"".join(_der_extension(e) for e in extensions)))
    return _der(0x30, body)


def crl_pem(der: bytes) -> bytes:
    """PEM of a DER CRL, byte for byte what ``public_bytes(Encoding.PEM)`` gives, without
    parsing and re-serialising a large CRL."""
    return pem_armor(der, "X509 CRL")


def pem_armor(der: bytes, label: str) -> bytes:
    text = base64.b64encode(der)
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return b"-----BEGIN " + label.encode() + b"-----\n" + b"\n".join(lines) + b"\n-----END " + label.encode() + b"-----\n"


# The PKCS#12 parameters, as `openssl pkcs12 -info` reports them. tests/pki/test_kit_pfx.py checks
# them against openssl's output and checks that docs/pki.md and docs/onboarding.md state pfx_scheme().
PFX_BAG_ROUNDS = 50_000  # PBKDF2-HMAC-SHA256 iterations of the key bag and of the certificate bag
PFX_MAC_ITERATIONS = 2048  # the MAC's PKCS#12-KDF iterations: fixed by cryptography (not settable)
PFX_LEGACY_ROUNDS = 2048  # PKCS#12-KDF iterations of the legacy 3DES bags
PKCS8_KEY_ROUNDS = 2048  # PBKDF2-HMAC-SHA256 iterations of BestAvailableEncryption for PKCS#8: fixed by cryptography
PKCS8_KEY_SCHEME = f"PKCS#8, AES-256-CBC with PBKDF2-HMAC-SHA256, {PKCS8_KEY_ROUNDS:,} iterations"  # an encrypted unix/device.key
PFX_MODERN_FROM = "Windows 10 1709 and Windows Server 2019"  # PBES2 AES-256/SHA-256 PFX (Microsoft: PKCS12_PBES2_EXPORT_PARAMS)
PFX_LEGACY_FOR = "Windows 10 1607 and 1703, Windows Server 2016 and older"


def pfx_scheme(legacy: bool) -> str:
    """The PFX encryption in words (command output and the docs)."""
    if legacy:
        return (f"3DES (pbeWithSHA1And3-KeyTripleDES-CBC, {PFX_LEGACY_ROUNDS:,} iterations) for key and certificate, "
                f"SHA-1 MAC with {PFX_MAC_ITERATIONS:,} iterations")
    return (f"AES-256-CBC with PBKDF2-HMAC-SHA256, {PFX_BAG_ROUNDS:,} iterations, for key and certificate, "
            f"SHA-256 MAC with {PFX_MAC_ITERATIONS:,} iterations")


def pkcs12_bytes(name: str, key: Any, cert: x509.Certificate, chain: Sequence[x509.Certificate], password: bytes, legacy: bool) -> bytes:
    """Windows-importable PKCS#12 (pfx_scheme). Modern: PBES2 AES-256-CBC, PBKDF2/HMAC-SHA256 and
    a SHA-256 MAC (PFX_MODERN_FROM and later). Legacy: 3DES (PBE-SHA1-3DES) and a SHA-1 MAC for
    PFX_LEGACY_FOR."""
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        builder = builder.kdf_rounds(PFX_LEGACY_ROUNDS).key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1())
    else:
        builder = builder.kdf_rounds(PFX_BAG_ROUNDS).key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256())
    return pkcs12.serialize_key_and_certificates(name.encode("utf-8"), key, cert, list(chain), builder.build(password))
