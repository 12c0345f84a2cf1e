"""Route 53 Resolver DNS Firewall: one allowlist with the Suricata rules, blocks the rest, fails closed."""

from __future__ import annotations

import json
import re

import pytest

from components.network import dns_rules
from conftest import Planned, plan_stack


def test_dot_domain_becomes_the_domain_and_its_subdomains() -> None:
    assert dns_rules.as_dns_entries(".example.com") == ["example.com", "*.example.com"]
    assert dns_rules.as_dns_entries("crl.example.com") == ["crl.example.com"]


@pytest.mark.parametrize("region,cidr,expected", [
    ("us-east-1", "10.80.0.0/22", ["ec2.internal", "*.ec2.internal", "*.80.10.in-addr.arpa"]),
    ("eu-west-1", "172.20.0.0/16", ["eu-west-1.compute.internal", "*.eu-west-1.compute.internal", "*.20.172.in-addr.arpa"]),
    ("eu-west-1", "192.168.7.0/24", ["eu-west-1.compute.internal", "*.eu-west-1.compute.internal", "*.7.168.192.in-addr.arpa"]),
])
def test_vpc_names(region: str, cidr: str, expected: list[str]) -> None:
    assert dns_rules.vpc_domains(region, cidr) == expected


def test_dns_match_semantics() -> None:
    entries = ["example.com", "*.example.com", "crl.example.net"]
    assert dns_rules.dns_allows(entries, "example.com") and dns_rules.dns_allows(entries, "a.b.example.com")
    assert dns_rules.dns_allows(entries, "CRL.Example.NET.")
    for name in ("badexample.com", "example.com.evil.net", "x.crl.example.net", "example.co"):
        assert not dns_rules.dns_allows(entries, name), name
    assert not dns_rules.dns_allows(["*.example.com"], "example.com"), "a wildcard entry alone does not match the apex"


def _suricata_domains(rules_text: str) -> list[str]:
    """Every domain the rendered Network Firewall rules pass (tls.sni / http.host contents)."""
    found = []
    for line in rules_text.splitlines():
        m = re.search(r'(?:tls\.sni|http\.host); (dotprefix; )?content:"([^"]+)"', line)
        if m and line.startswith("pass"):
            found.append(m.group(2))
    return sorted(set(found))


VARIANTS = [
    ("dev", {}),
    ("prod", {}),
    ("dev", {"crlUrls": ["http://crl2.example.net/devices.crl", "https://pki.example.org:8443/ca.crl"], "crlDomains": [".pki.example.org"]}),
    ("dev", {"egressDisabledGroups": ["windows-update", "flexera-parent"]}),
    ("dev", {"aws:region": "eu-central-1", "flexeraParentDomains": [".beacons.example.com"], "awsEndpointsExtraDomains": ["sts.eu-central-1.amazonaws.com"]}),
    ("prod", {"privateAwsEndpoints": "true", "beaconInstallerS3Uri": "s3://beacon-media/beacon.msi", "beaconInstallerSha256": "d" * 64}),
]


@pytest.mark.parametrize("stack,overrides", VARIANTS)
def test_every_firewall_domain_resolves_and_nothing_else(stack: str, overrides: dict) -> None:
    """The contract between the two filters: what the Network Firewall passes, DNS resolves; a
    look-alike of any of it resolves to NXDOMAIN."""
    from scripts.plan import dns_firewall_view, firewall_rules_text

    p = plan_stack(stack, overrides)
    view = dns_firewall_view(p.run.resources)
    assert view["firewallFailOpen"] == "DISABLED"
    allow, block = view["rules"]
    assert (allow["action"], block["action"], block["blockResponse"], block["domains"]) == ("ALLOW", "BLOCK", "NXDOMAIN", ["*"])
    assert allow["priority"] < block["priority"]
    entries = allow["domains"]
    domains = _suricata_domains(firewall_rules_text(p.resources))
    assert domains, "the rendered rules pass some domains"
    for domain in domains:
        if domain.startswith("."):
            assert dns_rules.dns_allows(entries, domain[1:]) and dns_rules.dns_allows(entries, "a.b" + domain), domain
            assert not dns_rules.dns_allows(entries, "evil" + domain[1:]), domain
        else:
            assert dns_rules.dns_allows(entries, domain), domain
            assert not dns_rules.dns_allows(entries, "x" + domain), domain
        assert not dns_rules.dns_allows(entries, domain.lstrip(".") + ".evil.net"), domain
    # AWS APIs resolve even with the aws-endpoints group off (private endpoints answer in the VPC).
    region = overrides.get("aws:region", "us-east-1")
    for service in ("ssm", "ssmmessages", "ec2messages", "secretsmanager", "logs", "monitoring"):
        assert dns_rules.dns_allows(entries, f"{service}.{region}.amazonaws.com")
    assert dns_rules.dns_allows(entries, f"amazon-ssm-{region}.s3.{region}.amazonaws.com")
    for name in ("attacker-bucket.s3.amazonaws.com", f"attacker-bucket.s3.{region}.amazonaws.com", "example.org", "x.in-addr.arpa", "exfil.attacker.net"):
        assert not dns_rules.dns_allows(entries, name), name


def test_stack_buckets_resolve_in_both_s3_forms() -> None:
    p = plan_stack("dev", {"beaconInstallerS3Uri": "s3://beacon-media/beacon.msi", "beaconInstallerSha256": "d" * 64})
    from scripts.plan import dns_firewall_view

    entries = dns_firewall_view(p.run.resources)["rules"][0]["domains"]
    assert dns_rules.dns_allows(entries, "beacon-media.s3.us-east-1.amazonaws.com")
    assert dns_rules.dns_allows(entries, "beacon-media.s3.amazonaws.com")


@pytest.mark.parametrize("stack,protected", [("dev", False), ("prod", True)])
def test_dns_firewall_resources(stack: str, protected: bool, request: pytest.FixtureRequest) -> None:
    p: Planned = request.getfixturevalue(stack)
    vpc_id = p.outputs["vpcId"]
    association = p.one("route53/resolverFirewallRuleGroupAssociation:ResolverFirewallRuleGroupAssociation").inputs
    assert association["vpcId"] == vpc_id and 100 < association["priority"] < 9900
    assert association["mutationProtection"] == ("ENABLED" if protected else "DISABLED")
    assert p.one("route53/resolverFirewallConfig:ResolverFirewallConfig").inputs == {"resourceId": vpc_id, "firewallFailOpen": "DISABLED"}
    allow = p.one("route53/resolverFirewallRule:ResolverFirewallRule", "net-dns-allow").inputs
    assert allow["firewallDomainRedirectionAction"] == "TRUST_REDIRECTION_DOMAIN"
    association_urn = p.one("route53/resolverFirewallRuleGroupAssociation:ResolverFirewallRuleGroupAssociation").urn
    rules = {r.urn for r in p.of_type("route53/resolverFirewallRule:ResolverFirewallRule")}
    assert p.by_name("net-dns-association")  # the association waits for its rules:
    assert rules <= set(next(r for r in p.resources if r.urn == association_urn).dependencies)
    query_log = p.one("route53/resolverQueryLogConfigAssociation:ResolverQueryLogConfigAssociation").inputs
    assert query_log["resourceId"] == vpc_id
    assert p.outputs["logGroups"]["dnsQueries"] == f"/aws/vendedlogs/flexnet-beacon/{stack}/dns-queries"


def test_plan_writes_dns_firewall_json(tmp_path) -> None:
    from scripts import plan

    assert plan.main(["--stack", "dev", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "dev" / "dns-firewall.json").read_text())
    assert [r["action"] for r in document["rules"]] == ["ALLOW", "BLOCK"]
    assert document["rules"][0]["domainList"] == "flexnet-beacon-dev-allowed"
    assert "crl.example.com" in document["rules"][0]["domains"]
