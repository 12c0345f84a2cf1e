"""Route 53 Resolver DNS Firewall rules as pure data, from the same allowlist as the Suricata rules.

DNS to the VPC resolver never crosses Network Firewall, so without these rules any name could be
resolved, and query names are a channel out of the VPC. The DNS firewall allows:
- every domain of the egress allowlist (the firewall's domain rules, one source of truth);
- the AWS API names the beacon needs (also when the aws-endpoints group is off: with
  privateAwsEndpoints they answer inside the VPC) and the S3 names of its gateway endpoint;
- the VPC's own names: instance host names and reverse lookups of the VPC's addresses;
then blocks every other name (NXDOMAIN) with the failure mode closed (firewallFailOpen off), and
the Resolver query log records every query with the firewall's action.

Domain list syntax (Route 53 Resolver DNS Firewall): "example.com" matches only that name;
"*.example.com" matches its subdomains, not the name itself. The allowlist's ".example.com"
(domain and subdomains) therefore becomes both entries.
"""

from __future__ import annotations

import ipaddress
from typing import Mapping, Sequence

from .egress import aws_endpoint_domains, flatten

BLOCK_ALL = "*"


def vpc_domains(region: str, vpc_cidr: str) -> list[str]:
    """Names the VPC resolver answers for the VPC itself: EC2 private host names and the
    reverse zone of the VPC's addresses (private space, answered by the resolver: never sent
    to a server an attacker controls)."""
    host_zone = "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
    network = ipaddress.ip_network(vpc_cidr)
    octets = network.network_address.exploded.split(".")
    whole = max(1, network.prefixlen // 8)  # the reverse zone of whole octets covering the VPC
    reverse = ".".join(reversed(octets[:whole])) + ".in-addr.arpa"
    return [host_zone, f"*.{host_zone}", f"*.{reverse}"]


def as_dns_entries(domain: str) -> list[str]:
    """One allowlist entry in DNS Firewall form: '.d' -> 'd' and '*.d'; an exact host as is."""
    if domain.startswith("."):
        return [domain[1:], f"*{domain}"]
    return [domain]


def dns_allowlist(
    allowlist: Mapping[str, Sequence[str]],
    region: str,
    vpc_cidr: str,
    s3_names: Sequence[str] = (),
) -> list[str]:
    """Sorted, de-duplicated DNS Firewall domains to allow."""
    domains = set(flatten(allowlist)) | set(aws_endpoint_domains(region)) | set(s3_names)
    entries = {entry for domain in domains for entry in as_dns_entries(domain)}
    entries |= set(vpc_domains(region, vpc_cidr))
    return sorted(entries)


def dns_allows(entries: Sequence[str], name: str) -> bool:
    """Would a DNS Firewall allow list with these entries match `name`? (The semantics above.)"""
    name = name.lower().rstrip(".")
    for entry in entries:
        if entry.startswith("*."):
            if name.endswith(entry[1:]):
                return True
        elif name == entry:
            return True
    return False
