"""DNS Firewall rules: the cases mutation testing found untested (docs/testing.md, dns_rules)."""

from __future__ import annotations

from components.network import dns_rules


def test_reverse_zone_of_a_vpc_wider_than_16_bits_is_its_first_octet() -> None:
    """Whole octets of the prefix: a /12 covers one whole octet (172.), a /8 one (10.)."""
    assert dns_rules.vpc_domains("eu-west-1", "172.16.0.0/12")[-1] == "*.172.in-addr.arpa"
    assert dns_rules.vpc_domains("eu-west-1", "10.0.0.0/8")[-1] == "*.10.in-addr.arpa"


def test_allowlist_holds_the_regions_own_host_names() -> None:
    entries = dns_rules.dns_allowlist({}, "eu-west-1", "10.20.0.0/16")
    assert {"eu-west-1.compute.internal", "*.eu-west-1.compute.internal", "*.20.10.in-addr.arpa"} <= set(entries)
    assert not any(entry.startswith(("None", "*.None")) or entry.endswith("ec2.internal") for entry in entries), entries
