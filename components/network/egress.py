"""The beacon's egress allowlist: named domain groups, as a pure function of config.

Groups (each can be switched off with egressDisabledGroups, and extended in config):
- crl: hosts of the CRL distribution points the beacon must reach to check revocation
  (crlUrls, crlDomains; derived from the certificates by components/certs/trust.py later).
- flexera-parent: the beacon's parent: the hosts of the Flexera One region (flexeraRegion,
  components/network/flexera.py) plus flexeraParentDomains (on-premises: only those).
- aws-endpoints: the AWS APIs SSM, the converge script and the logs need in the stack's region
  (not S3: it goes through the VPC's gateway endpoint).
- windows-update: Microsoft's update and certificate trust list hosts.
- windows-extras (off unless windowsExtrasEgress): Defender cloud protection and definitions,
  Microsoft and DigiCert OCSP/CRL, Delivery Optimization.

'.example.com' means the domain and all its subdomains (Network Firewall domain list form).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..beacon.policy import dns_suffix, partition_for
from ..config import EGRESS_GROUPS, BeaconConfig, domain_problem
from .flexera import flexera_hosts

# Microsoft's documented Windows Update endpoints, plus the CTL/CRL hosts Windows uses to keep
# its trusted roots and check Microsoft-signed binaries.
WINDOWS_UPDATE_DOMAINS = (
    ".windowsupdate.com",
    ".update.microsoft.com",
    ".windowsupdate.microsoft.com",
    ".delivery.mp.microsoft.com",
    ".download.microsoft.com",
    "go.microsoft.com",
    "crl.microsoft.com",
    "www.microsoft.com",
)


# windows-extras (off unless windowsExtrasEgress): what a Windows Server keeps itself healthy with
# beyond Windows Update. Microsoft Defender Antivirus cloud protection and security intelligence
# ("Configure and validate Microsoft Defender Antivirus network connections": *.wdcp.microsoft.com,
# *.wdcpalt.microsoft.com, *.wd.microsoft.com, definitionupdates.microsoft.com); Microsoft and
# DigiCert OCSP and CRL hosts on port 80 (Microsoft Entra private network connector requirements:
# crl3/crl4/ocsp.digicert.com, crl.microsoft.com, oneocsp.microsoft.com, ocsp.msocsp.com);
# Delivery Optimization ("Delivery Optimization workflow": *.prod.do.dsp.mp.microsoft.com and
# geo*.do.dsp.mp.microsoft.com on 443, emdl.ws.microsoft.com and *.dl.delivery.mp.microsoft.com on 80).
WINDOWS_EXTRAS_DOMAINS = (
    ".wdcp.microsoft.com",
    ".wdcpalt.microsoft.com",
    ".wd.microsoft.com",
    "definitionupdates.microsoft.com",
    "oneocsp.microsoft.com",
    "ocsp.msocsp.com",
    "ocsp.digicert.com",
    "crl3.digicert.com",
    "crl4.digicert.com",
    ".do.dsp.mp.microsoft.com",
    ".dl.delivery.mp.microsoft.com",
    "emdl.ws.microsoft.com",
)


# The AWS APIs the beacon calls: SSM (agent, Run Command, Session Manager), Secrets Manager (the
# server PFX), CloudWatch Logs and metrics. Also the interface endpoints of privateAwsEndpoints.
AWS_API_SERVICES = ("ssm", "ssmmessages", "ec2messages", "secretsmanager", "logs", "monitoring")


def aws_endpoint_domains(region: str) -> tuple[str, ...]:
    suffix = dns_suffix(partition_for(region))
    # No S3 entry: `.s3.<region>` would admit every bucket of the region. S3 goes through the
    # VPC's gateway endpoint, whose policy names the buckets (components/network/endpoints.py).
    return tuple(f"{svc}.{region}.{suffix}" for svc in AWS_API_SERVICES)


def builtin_domains(group: str, region: str, flexera_region: str = "na") -> tuple[str, ...]:
    if group == "flexera-parent":
        return flexera_hosts(flexera_region)
    if group == "aws-endpoints":
        return aws_endpoint_domains(region)
    if group == "windows-update":
        return WINDOWS_UPDATE_DOMAINS
    if group == "windows-extras":
        return WINDOWS_EXTRAS_DOMAINS
    return ()


def egress_allowlist(cfg: BeaconConfig, crl_hosts: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Enabled group -> sorted, de-duplicated domains. `crl_hosts` come from the certificates."""
    allowlist: dict[str, list[str]] = {}
    for group in EGRESS_GROUPS:
        setting = cfg.egress_groups[group]
        if not setting.enabled:
            continue
        candidates = builtin_domains(group, cfg.region, cfg.flexera_region) + setting.extra_domains + (crl_hosts if group == "crl" else ())
        # A fully qualified name's trailing dot is dropped (crl.example.com. -> crl.example.com).
        candidates = tuple(d.lower()[:-1] if d.endswith(".") and not d.endswith("..") else d.lower() for d in candidates)
        for domain in candidates:
            problem = domain_problem(domain)
            if problem:  # config is validated; this guards hosts derived from certificates
                raise ValueError(f"egress group {group}: {domain!r} is not usable: {problem}")
        allowlist[group] = _normalise(candidates)
    return allowlist


def _normalise(domains: tuple[str, ...]) -> list[str]:
    unique = {d.lower() for d in domains}
    # A host already covered by a '.domain' entry in the same group is redundant.
    wildcards = {d for d in unique if d.startswith(".")}
    kept = {d for d in unique if d.startswith(".") or not any(d == w[1:] or d.endswith(w) for w in wildcards)}
    return sorted(kept)


def flatten(allowlist: Mapping[str, Sequence[str]]) -> list[str]:
    return sorted({d for domains in allowlist.values() for d in domains})
