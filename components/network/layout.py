"""Subnet layout of the dedicated VPC, as a pure function (no Pulumi).

The VPC is cut into four equal quarters. Quarter i (i < 3) is the protected subnet of AZ i,
where the beacons live; the last quarter holds one /28 firewall subnet per AZ (the firewall
endpoint needs only a handful of addresses). A fixed slot per AZ index means adding an AZ
later never renumbers the existing subnets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Sequence

MAX_AZS = 3
FIREWALL_SUBNET_PREFIX = 28


@dataclass(frozen=True)
class AzLayout:
    index: int
    availability_zone: str
    protected_cidr: str
    firewall_cidr: str


def split_vpc(vpc_cidr: str, zones: Sequence[str]) -> list[AzLayout]:
    vpc = ipaddress.ip_network(vpc_cidr, strict=True)
    if not 1 <= len(zones) <= MAX_AZS:
        raise ValueError(f"zones: expected 1 to {MAX_AZS} availability zones, got {len(zones)}")
    quarters = list(vpc.subnets(prefixlen_diff=2))
    if quarters[0].prefixlen > FIREWALL_SUBNET_PREFIX - 2:
        raise ValueError(f"vpcCidr: {vpc_cidr} is too small to split into protected and /28 firewall subnets; use /24 or larger")
    firewall_slots = list(quarters[3].subnets(new_prefix=FIREWALL_SUBNET_PREFIX))
    return [
        AzLayout(
            index=i,
            availability_zone=zone,
            protected_cidr=str(quarters[i]),
            firewall_cidr=str(firewall_slots[i]),
        )
        for i, zone in enumerate(zones)
    ]


def beacon_zone_indexes(beacon_count: int, az_count: int) -> list[int]:
    """Round-robin placement: beacon i lives in AZ i mod az_count."""
    return [i % az_count for i in range(beacon_count)]


def vpc_resolver_ip(vpc_cidr: str) -> str:
    """The Amazon-provided DNS resolver sits at the VPC base address plus two."""
    return str(ipaddress.ip_network(vpc_cidr).network_address + 2)
