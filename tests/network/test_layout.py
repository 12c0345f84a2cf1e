"""Subnet layout of the dedicated VPC (components/network/layout.py): pure, so checked exhaustively."""

from __future__ import annotations

import ipaddress
import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import config
from components.network import layout

ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")

# No .hypothesis/ example database in the work tree; examples stay deterministic per run.
FAST = settings(max_examples=150, deadline=None, database=None)


@st.composite
def vpc_cidrs(draw, min_prefix: int = 16, max_prefix: int = 24) -> str:
    """Any IPv4 network of the given prefix range, host bits cleared."""
    prefix = draw(st.integers(min_prefix, max_prefix))
    address = draw(st.integers(0, 2**32 - 1))
    return str(ipaddress.ip_network((address >> (32 - prefix) << (32 - prefix), prefix)))


def _nets(azs: list[layout.AzLayout]) -> list[ipaddress.IPv4Network]:
    return [ipaddress.ip_network(c) for az in azs for c in (az.protected_cidr, az.firewall_cidr)]


def _check_layout(vpc_cidr: str, zones: tuple[str, ...]) -> None:
    vpc = ipaddress.ip_network(vpc_cidr)
    azs = layout.split_vpc(vpc_cidr, zones)

    assert [az.index for az in azs] == list(range(len(zones)))
    assert [az.availability_zone for az in azs] == list(zones)
    for az in azs:
        protected = ipaddress.ip_network(az.protected_cidr)
        firewall = ipaddress.ip_network(az.firewall_cidr)
        # str() round-trips: the CIDRs are canonical (no host bits set).
        assert str(protected) == az.protected_cidr and str(firewall) == az.firewall_cidr
        assert protected.subnet_of(vpc) and firewall.subnet_of(vpc)
        assert firewall.prefixlen == layout.FIREWALL_SUBNET_PREFIX == 28
        assert protected.prefixlen == vpc.prefixlen + 2
        # The protected subnet is never smaller than the firewall subnet.
        assert protected.num_addresses >= firewall.num_addresses
    for a, b in itertools.combinations(_nets(azs), 2):
        assert not a.overlaps(b), f"{a} overlaps {b} in {vpc_cidr}"

    # Stable when AZs are added: every shorter zone list is a prefix of the longer layout.
    for count in range(1, len(zones) + 1):
        fewer = layout.split_vpc(vpc_cidr, zones[:count])
        assert [(a.protected_cidr, a.firewall_cidr) for a in fewer] == [
            (a.protected_cidr, a.firewall_cidr) for a in azs[:count]
        ]


@pytest.mark.parametrize("prefix", range(16, 25))
@pytest.mark.parametrize("az_count", [1, 2, 3])
def test_every_prefix_and_zone_count(prefix: int, az_count: int) -> None:
    for base in ("10.0.0.0", "172.16.0.0", "192.168.0.0", "10.255.0.0"):
        cidr = str(ipaddress.ip_network(f"{base}/{prefix}", strict=False))
        _check_layout(cidr, ZONES[:az_count])


@FAST
@given(vpc_cidrs(), st.integers(1, 3))
def test_layout_properties_for_random_vpcs(vpc_cidr: str, az_count: int) -> None:
    _check_layout(vpc_cidr, ZONES[:az_count])


def test_default_config_layout_is_the_documented_one() -> None:
    cfg = config.load({}, "dev", "us-east-1")
    azs = layout.split_vpc(cfg.vpc_cidr, ZONES[: cfg.az_count])
    assert cfg.vpc_cidr == "10.80.0.0/22" and cfg.az_count == 2
    assert [(a.protected_cidr, a.firewall_cidr) for a in azs] == [
        ("10.80.0.0/24", "10.80.3.0/28"),
        ("10.80.1.0/24", "10.80.3.16/28"),
    ]


def test_exact_layout_of_a_16_with_three_zones() -> None:
    azs = layout.split_vpc("10.0.0.0/16", ZONES)
    assert [(a.protected_cidr, a.firewall_cidr) for a in azs] == [
        ("10.0.0.0/18", "10.0.192.0/28"),
        ("10.0.64.0/18", "10.0.192.16/28"),
        ("10.0.128.0/18", "10.0.192.32/28"),
    ]


def test_first_az_unchanged_from_one_to_three_zones() -> None:
    one = layout.split_vpc("192.168.10.0/24", ZONES[:1])[0]
    three = layout.split_vpc("192.168.10.0/24", ZONES)[0]
    assert (one.protected_cidr, one.firewall_cidr) == (three.protected_cidr, three.firewall_cidr)
    assert (one.protected_cidr, one.firewall_cidr) == ("192.168.10.0/26", "192.168.10.192/28")


@pytest.mark.parametrize("prefix", range(16, 25))
def test_every_cidr_the_config_accepts_splits_into_max_azs(prefix: int) -> None:
    """config.validate and layout agree: whatever vpcCidr passes validation can be split 3 ways."""
    cfg = config.load({"vpcCidr": f"10.20.0.0/{prefix}", "azCount": "3"}, "dev", "eu-west-1")
    assert len(layout.split_vpc(cfg.vpc_cidr, ZONES)) == layout.MAX_AZS


@pytest.mark.parametrize("prefix", range(25, 31))
def test_too_small_vpc_is_refused(prefix: int) -> None:
    cidr = str(ipaddress.ip_network(f"10.0.0.0/{prefix}"))
    with pytest.raises(ValueError, match="too small"):
        layout.split_vpc(cidr, ZONES[:1])
    # The config rejects the same CIDRs before layout ever sees them.
    with pytest.raises(config.ConfigInvalid, match="vpcCidr"):
        config.load({"vpcCidr": cidr, "azCount": "1"}, "dev", "eu-west-1")


@pytest.mark.parametrize("cidr", ["10.0.0.0/31", "10.0.0.0/32"])
def test_tiny_vpc_raises_value_error(cidr: str) -> None:
    with pytest.raises(ValueError):
        layout.split_vpc(cidr, ZONES[:1])


@pytest.mark.parametrize("count", [0, 4, 5])
def test_bad_zone_count(count: int) -> None:
    zones = [f"eu-west-1{c}" for c in "abcdef"[:count]]
    with pytest.raises(ValueError, match="zones: expected 1 to 3"):
        layout.split_vpc("10.0.0.0/16", zones)


def test_host_bits_set_is_refused() -> None:
    with pytest.raises(ValueError):
        layout.split_vpc("10.0.0.1/16", ZONES[:1])


def test_round_robin_examples() -> None:
    assert layout.beacon_zone_indexes(1, 1) == [0]
    assert layout.beacon_zone_indexes(1, 3) == [0]
    assert layout.beacon_zone_indexes(5, 2) == [0, 1, 0, 1, 0]
    assert layout.beacon_zone_indexes(7, 3) == [0, 1, 2, 0, 1, 2, 0]
    assert layout.beacon_zone_indexes(0, 2) == []


@FAST
@given(st.integers(1, 20), st.integers(1, 3))
def test_round_robin_is_balanced(beacons: int, azs: int) -> None:
    placement = layout.beacon_zone_indexes(beacons, azs)
    assert len(placement) == beacons
    assert all(0 <= z < azs for z in placement)
    counts = Counter(placement)
    assert max(counts.values()) - min(counts.values()) <= 1
    # The first beacons fill distinct zones before any zone gets a second one.
    first = placement[: min(beacons, azs)]
    assert first == list(range(len(first)))
    # Adding a beacon never moves an existing one.
    assert layout.beacon_zone_indexes(beacons + 1, azs)[:beacons] == placement


@pytest.mark.parametrize(
    ("cidr", "resolver"),
    [("10.80.0.0/22", "10.80.0.2"), ("172.16.0.0/16", "172.16.0.2"), ("192.168.255.0/24", "192.168.255.2")],
)
def test_resolver_ip(cidr: str, resolver: str) -> None:
    assert layout.vpc_resolver_ip(cidr) == resolver


@FAST
@given(vpc_cidrs())
def test_resolver_is_base_plus_two_inside_first_protected_subnet(vpc_cidr: str) -> None:
    resolver = ipaddress.ip_address(layout.vpc_resolver_ip(vpc_cidr))
    assert resolver == ipaddress.ip_network(vpc_cidr).network_address + 2
    first = layout.split_vpc(vpc_cidr, ZONES[:1])[0]
    assert resolver in ipaddress.ip_network(first.protected_cidr)
