"""What a deployment of this configuration cannot do on a real beacon: warnings, and for a
protected stack the reasons `pulumi up` stops.

Pure: from the validated config, the CRL egress and the account the program runs in. The plan
prints the warnings, `pulumi preview` and `pulumi up` log them, and `make doctor` lists them per
stack file. On an unprotected stack (a lab) they stay warnings: it may deploy before its
certificate exists, and the sample stacks use documentation names. A protected stack (prod)
does not deploy what cannot work: `deploy_blockers` are refused by `pulumi up`, one line each,
before any resource is touched, and shown by `pulumi preview` and the offline plan as warnings.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .certs.trust import CrlEgress
from .config import BeaconConfig

# Keys whose secrets the beacon role reads: it may read only its own account's secrets.
SECRET_ARN_KEYS = (
    ("serverCertificateSecretArn", "server_certificate_secret_arn"),
    ("serverCertificatePasswordSecretArn", "server_certificate_password_secret_arn"),
    ("mappedAccountPasswordSecretArn", "mapped_account_password_secret_arn"),
)

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


def deployability_warnings(cfg: BeaconConfig, crl: CrlEgress) -> list[str]:
    warnings = []
    if not cfg.server_certificate_secret_arn:
        warnings.append(
            "serverCertificateSecretArn is empty: every converge run stops before IIS serves https on 443 "
            "(publish the beacon's PFX with `python -m scripts.ops publish-server-cert`, then set the key)"
        )
    placeholders = placeholder_urls(crl)
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


def source_key(sources: list[str]) -> str:
    """The config key a CRL/AIA URL came from (components/certs/trust.py names its sources)."""
    keys = []
    for source in sources:
        if source == "crlUrls":
            keys.append("crlUrls")
        elif source == "crlHosting":
            keys.append("crlBucketName")
        elif "sample device" in source:
            keys.append("sampleDeviceCertificate")
        elif source.startswith(("CDP of ", "AIA of ", "Delta CRL of ")):
            keys.append("clientCaCertificates")
    return "/".join(dict.fromkeys(keys)) or "crlUrls"


def placeholder_urls(crl: CrlEgress) -> list[str]:
    return [url for url in crl.urls if is_placeholder_host(urlsplit(url).hostname or "")]


def foreign_secrets(cfg: BeaconConfig, caller_account: str | None) -> list[str]:
    """Secret ARNs of another account than the one the program runs in: the beacon role is built
    in the caller's account and reads only `flexnet-beacon/<stack>/*` secrets there. None: the
    account is not known (`make doctor` without --check-aws), so no secret is judged foreign."""
    if caller_account is None:
        return []
    found = []
    for key, attribute in SECRET_ARN_KEYS:
        arn = str(getattr(cfg, attribute) or "")
        parts = arn.split(":")
        if len(parts) > 4 and parts[4] != caller_account:
            found.append(
                f"{key}: got {arn}; expected a secret in account {caller_account} (the account this update runs in): "
                "the beacon role reads only its own account's flexnet-beacon/<stack>/ secrets, so the converge run could never read it"
            )
    return found


def deploy_blockers(cfg: BeaconConfig, crl: CrlEgress, caller_account: str | None) -> list[str]:
    """Why `pulumi up` of this stack stops (empty when it may go ahead): only protected stacks
    are held to it. One line each, naming the key, the value and what was expected."""
    if not cfg.protection:
        return []
    blockers = []
    if not cfg.server_certificate_secret_arn:
        blockers.append(
            "serverCertificateSecretArn: empty; expected the beacon's PFX in Secrets Manager "
            "(`python -m scripts.ops publish-server-cert`): without it the beacon never serves https on 443"
        )
    for url in placeholder_urls(crl):
        sources = crl.sources.get(url, [])
        where = ", ".join(sources) or "config"
        blockers.append(
            f"{source_key(sources)}: CRL/AIA URL {url} ({where}) is on a documentation name (RFC 2606/6761); expected a host that "
            "serves the CRL: no beacon can fetch it, and IIS answers 403.13 when it needs a CRL it cannot fetch"
        )
    blockers += foreign_secrets(cfg, caller_account)
    return blockers


def deploy_gate(cfg: BeaconConfig, crl: CrlEgress, caller_account: str, updating: bool) -> tuple[list[str], list[str]]:
    """(warnings to log, reasons to stop): an update of a protected stack stops on its blockers;
    a preview (and the offline plan) shows them as warnings; an unprotected stack only warns
    about secrets of another account (its other readiness warnings are `deployability_warnings`)."""
    blockers = deploy_blockers(cfg, crl, caller_account)
    if not cfg.protection:
        return foreign_secrets(cfg, caller_account), []
    if updating:
        return [], blockers
    return [f"pulumi up will stop: {line}" for line in blockers], []
