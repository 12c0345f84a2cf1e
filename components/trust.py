"""Trust material from the stack's certificate files, as pure derivations.

From the client CA chain: which certificate goes to which Windows store (self-signed to Root,
others to CA, issuing CAs also to ClientAuthIssuer), and the Issuer CN rule of the
many-to-one mapping. Certificate files are public (no keys); paths are relative to the project.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certs import common_name, issuing_cas, load_certificates
from .config import ConfigIssue


@dataclass(frozen=True)
class LoadedCertificate:
    source: str  # the config path it came from
    certificate: x509.Certificate

    @property
    def thumbprint(self) -> str:
        """SHA-1 fingerprint, upper-case hex: what Windows calls the thumbprint."""
        return hashlib.sha1(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper()

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def self_signed(self) -> bool:
        return self.certificate.subject == self.certificate.issuer

    @property
    def is_ca(self) -> bool:
        try:
            return bool(self.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        except x509.ExtensionNotFound:
            return False


def load_certificate_files(key: str, paths: Sequence[str], base: Path) -> tuple[list[LoadedCertificate], list[ConfigIssue]]:
    loaded: list[LoadedCertificate] = []
    issues: list[ConfigIssue] = []
    for path in paths:
        file = base / path
        try:
            data = file.read_bytes()
        except OSError as exc:
            issues.append(ConfigIssue(key, path, f"a readable certificate file relative to the project ({exc.strerror or exc})"))
            continue
        try:
            certs = load_certificates(data)
        except ValueError:
            issues.append(ConfigIssue(key, path, "a PEM (one or more certificates) or DER certificate file"))
            continue
        if b"PRIVATE KEY" in data:
            issues.append(ConfigIssue(key, path, "a file of public certificates only: it contains a private key; remove it from the repository"))
            continue
        loaded += [LoadedCertificate(path, cert) for cert in certs]
    return loaded, issues


@dataclass(frozen=True)
class ClientTrust:
    roots: tuple[LoadedCertificate, ...]  # LocalMachine\Root
    intermediates: tuple[LoadedCertificate, ...]  # LocalMachine\CA
    issuing: tuple[LoadedCertificate, ...]  # LocalMachine\ClientAuthIssuer; they sign device certificates


def classify(cas: Sequence[LoadedCertificate]) -> tuple[ClientTrust | None, list[ConfigIssue]]:
    issues: list[ConfigIssue] = []
    unique: dict[str, LoadedCertificate] = {}
    for ca in cas:
        unique.setdefault(ca.thumbprint, ca)
        if not ca.is_ca:
            issues.append(ConfigIssue("clientCaCertificates", ca.source, f"CA certificates only: {ca.subject} has no basicConstraints CA=true (a device certificate?)"))
    if not unique:
        issues.append(ConfigIssue("clientCaCertificates", [], "at least one CA certificate file: the CA that issues the device certificates"))
    if issues:
        return None, issues
    ordered = sorted(unique.values(), key=lambda c: (c.subject, c.thumbprint))
    roots = tuple(c for c in ordered if c.self_signed)
    intermediates = tuple(c for c in ordered if not c.self_signed)
    issuing_set = issuing_cas([c.certificate for c in ordered])
    issuing = tuple(c for c in ordered if c.certificate in issuing_set)
    subjects = {c.certificate.subject for c in ordered}
    for c in intermediates:
        if c.certificate.issuer not in subjects:
            issues.append(ConfigIssue("clientCaCertificates", c.source, f"the whole chain: the issuer of {c.subject} ({c.certificate.issuer.rfc4514_string()}) is missing"))
    for c in issuing:
        if not common_name(c.certificate.subject):
            issues.append(ConfigIssue("clientCaCertificates", c.source, f"an issuing CA with a CN (the Issuer CN mapping rule needs it): {c.subject}"))
    if issues:
        return None, issues
    return ClientTrust(roots, intermediates, issuing), []
