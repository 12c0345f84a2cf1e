"""What a deployment of this configuration cannot do on a real beacon, as warnings.

Pure: from the validated config and the CRL egress. The plan prints these, `pulumi up` logs
them, and `make doctor` lists them per stack file. They are warnings, not errors: a lab stack
may deploy before its certificate exists, and the sample stacks use documentation names.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .certs.trust import CrlEgress
from .config import BeaconConfig

# Names reserved for documentation and testing (RFC 2606, RFC 6761): nobody serves a CRL there.
PLACEHOLDER_DOMAINS = ("example.com", "example.net", "example.org")
PLACEHOLDER_TLDS = ("example", "test", "invalid", "localhost")


def is_placeholder_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if any(host == d or host.endswith("." + d) for d in PLACEHOLDER_DOMAINS):
        return True
    return host.rsplit(".", 1)[-1] in PLACEHOLDER_TLDS


def device_crl_sources(crl: CrlEgress) -> list[str]:
    """URLs that carry the device certificates' own CRL (explicit, lab hosting, the sample's CDP)."""
    return [
        url
        for url, where in sorted(crl.sources.items())
        if any(s in ("crlUrls", "crlHosting") or s.startswith("CDP of sample device") for s in where)
    ]


def readiness_warnings(cfg: BeaconConfig, crl: CrlEgress) -> list[str]:
    warnings = []
    if not cfg.server_certificate_secret_arn:
        warnings.append(
            "serverCertificateSecretArn is empty: every converge run stops before IIS serves https on 443 "
            "(publish the beacon's PFX with `python -m scripts.ops publish-server-cert`, then set the key)"
        )
    placeholders = [url for url in crl.urls if is_placeholder_host(urlsplit(url).hostname or "")]
    for url in placeholders:
        where = ", ".join(crl.sources.get(url, [])) or "config"
        warnings.append(
            f"CRL/AIA URL {url} ({where}) is on a documentation name (RFC 2606): no beacon can fetch it "
            "(a CRL IIS needs and cannot fetch makes it answer 403.13)"
        )
    device_urls = device_crl_sources(crl)
    if cfg.revocation_checking and device_urls and all(url in placeholders for url in device_urls):
        warnings.append(
            "revocationChecking is on but no device CRL is reachable (every device CRL URL is a placeholder): "
            "every device would get 403.13; point crlUrls at the real CDP, or use crlHosting s3"
        )
    return warnings
