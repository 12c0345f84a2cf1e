"""Trust material from the stack's certificate files, as pure derivations.

From the client CA chain: which certificate goes to which Windows store (self-signed to Root,
others to CA, issuing CAs also to ClientAuthIssuer), and the Issuer CN rule of the
many-to-one mapping. Certificate files are public (no keys); paths are relative to the project.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from ..beacon.policy import dns_suffix, partition_for
from .facts import aia_urls, cdp_urls, common_name, delta_crl_urls, issuing_cas, load_certificates
from ..config import ConfigIssue, hostname_problem
from ..config_checks import redact_userinfo
from ..safe_files import CERTIFICATE_FILE_LIMIT, FileRefused, inside, read_regular


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
        if Path(path).is_absolute() or not inside(file, base):
            # The plan reads only the project's files: no absolute path, no symlink out of it.
            why = "an absolute path" if Path(path).is_absolute() else "it leads out of the project (a symlink?)"
            issues.append(ConfigIssue(key, path, f"a certificate file inside the project, relative to {base} ({why})"))
            continue
        try:
            data = read_regular(file, CERTIFICATE_FILE_LIMIT)  # never a FIFO or a device: they would hang or fill memory
        except OSError as exc:
            issues.append(ConfigIssue(key, path, f"a readable certificate file relative to the project ({exc.strerror or exc})"))
            continue
        except FileRefused as exc:
            issues.append(ConfigIssue(key, path, f"a certificate file relative to the project (it is {exc})"))
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


def sample_issuer_problem(sample: LoadedCertificate, trust: ClientTrust) -> ConfigIssue | None:
    """The sample device certificate must be issued (name and signature) by one of the issuing
    CAs: its CDP and AIA become the firewall's CRL egress, so a sample of another CA would open
    the wrong hosts and leave the real CRL unreachable (403.13 for every device)."""
    for ca in trust.issuing:
        if sample.certificate.issuer == ca.certificate.subject:
            try:
                sample.certificate.verify_directly_issued_by(ca.certificate)
            except (InvalidSignature, ValueError, TypeError):
                continue
            return None
    issuing = ", ".join(repr(c.subject) for c in trust.issuing) or "(none)"
    return ConfigIssue("sampleDeviceCertificate", sample.source,
                       f"a device certificate issued by one of clientCaCertificates' issuing CAs ({issuing}); "
                       f"it was issued by {sample.certificate.issuer.rfc4514_string()!r}")


# --- CRL egress: what the beacon must reach to check revocation --------------------------------

@dataclass(frozen=True)
class CrlEgress:
    urls: tuple[str, ...]  # http(s) URLs the beacon fetches (CDPs, AIA caIssuers, explicit)
    hosts: tuple[str, ...]  # their host names: the firewall's crl group
    ports: tuple[int, ...]  # their TCP ports: security group and firewall handshake
    sources: dict[str, list[str]]  # url -> where it came from
    ignored: tuple[str, ...]  # URLs the beacon cannot use through the firewall, with why

    def as_output(self) -> dict[str, Any]:
        return {
            "hosts": list(self.hosts),
            "ports": list(self.ports),
            "urls": list(self.urls),
            "sources": {url: list(where) for url, where in sorted(self.sources.items())},
            "ignored": list(self.ignored),
        }


def crl_hosting_base_url(bucket: str, region: str) -> str:
    """Lab CRL hosting: the bucket's virtual-hosted S3 endpoint over plain http (CRLs are signed;
    CryptoAPI fetches CDPs over http)."""
    suffix = dns_suffix(partition_for(region))
    return f"http://{bucket}.s3.{region}.{suffix}/"


def crl_egress(
    trust: ClientTrust,
    sample_device: LoadedCertificate | None,
    explicit_urls: Sequence[str],
    hosting_base_url: str = "",
) -> CrlEgress:
    """Every URL the beacon needs for revocation and chain building, derived from the certificates.

    CDPs of the CA certificates (the root's CRL, for the issuing CA), CDPs and AIA caIssuers of
    the sample device certificate (the issuing CA's CRL), explicit crlUrls and the lab hosting
    endpoint. ldap:// and file:// entries cannot pass the firewall's name filter and are listed
    as ignored, as are URLs whose host is an IP address.
    """
    found: dict[str, list[str]] = {}

    def add(url: str, source: str) -> None:
        found.setdefault(url, [])
        if source not in found[url]:
            found[url].append(source)

    for url in explicit_urls:
        add(url, "crlUrls")
    if hosting_base_url:
        add(hosting_base_url, "crlHosting")
    for ca in (*trust.intermediates, *trust.issuing):
        for url in cdp_urls(ca.certificate):
            add(url, f"CDP of {ca.subject}")
        for url in delta_crl_urls(ca.certificate):
            add(url, f"Delta CRL of {ca.subject}")
    if sample_device is not None:
        for url in cdp_urls(sample_device.certificate):
            add(url, f"CDP of sample device {sample_device.subject}")
        for url in delta_crl_urls(sample_device.certificate):
            add(url, f"Delta CRL of sample device {sample_device.subject}")
        for url in aia_urls(sample_device.certificate, "caIssuers"):
            add(url, f"AIA of sample device {sample_device.subject}")

    urls, hosts, ports, ignored = [], set(), set(), []
    for url in sorted(found):
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        shown = redact_userinfo(url)
        if "@" in parts.netloc:  # credentials in a certificate's URL: never copied into outputs or rules
            ignored.append(f"{shown} (user information in the URL: a public CRL/AIA URL has none)")
            continue
        if parts.scheme not in ("http", "https"):
            ignored.append(f"{shown} ({parts.scheme or 'no scheme'}: only http/https CDPs pass the firewall; the beacon skips it after urlRetrievalTimeout)")
            continue
        if not host or host.replace(".", "").isdigit() or ":" in host:
            ignored.append(f"{shown} (host is not a DNS name: the firewall filters egress by name)")
            continue
        problem = hostname_problem(host)
        if problem:  # e.g. an underscore: no firewall domain rule can be written for it
            ignored.append(f"{shown} (host {host!r} cannot be allowlisted: {problem})")
            continue
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = 0
        if port == 0 or parts.port == 0:
            ignored.append(f"{shown} (invalid port)")
            continue
        urls.append(url)
        hosts.add(host)
        ports.add(port)
    return CrlEgress(
        urls=tuple(urls),
        hosts=tuple(sorted(hosts)),
        ports=tuple(sorted(ports)),
        sources={u: found[u] for u in urls},
        ignored=tuple(ignored),
    )


def device_crl_known(egress: CrlEgress) -> bool:
    """Is a CRL for the device certificates themselves reachable (not only the root's)?"""
    return any(
        source in ("crlUrls", "crlHosting") or source.startswith("CDP of sample device")
        for where in egress.sources.values()
        for source in where
    )
