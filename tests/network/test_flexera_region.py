"""flexeraRegion: Flexera's documented hosts per region, in both the Network Firewall domain rules
and the Route 53 Resolver DNS Firewall, and no host of another region (issue 19).

Whole conversations of these hosts through Suricata are replayed by test_firewall_flows with the
rendered policy; here: the data, the config rules, and what a stack with only `flexeraRegion` set
renders into both firewalls.
"""

from __future__ import annotations

import json
import re

import pytest

from components.config import ConfigInvalid, load
from components.network.dns_rules import dns_allows
from components.network.flexera import FLEXERA_REGIONS, REGION_TLD, REVOCATION_DOMAINS, flexera_hosts
from conftest import Planned, plan_stack, stack_raw

CLOUD = [r for r in FLEXERA_REGIONS if r != "on-premises"]
# What Flexera's "Ports and URLs for Inventory Beacons" lists per region (the .com names switched
# to the region's top-level domain): sign-in and web application server, batch server, inventory server.
DOCUMENTED = {region: {f"app.flexera.{tld}", f"beacon.flexnetmanager.{tld}", f"data.flexnetmanager.{tld}"} for region, tld in REGION_TLD.items()}


def _stack(region: str) -> Planned:
    """A new stack with only flexeraRegion set: no hand-written parent domains."""
    return plan_stack("dev", {"flexeraRegion": region, "flexeraParentDomains": []}, stack_name=f"flex-{region}")


@pytest.fixture(scope="module")
def planned() -> dict[str, Planned]:
    return {region: _stack(region) for region in CLOUD}


def _suricata_rules(p: Planned) -> str:
    return "\n".join(g.inputs["ruleGroup"]["rulesSource"]["rulesString"] for g in p.of_type("networkfirewall/ruleGroup:RuleGroup"))


def _dns_allowed(p: Planned) -> list[str]:
    (allowed,) = [d for d in p.of_type("route53/resolverFirewallDomainList:ResolverFirewallDomainList") if d.name.endswith("-allowed")]
    return list(allowed.inputs["domains"])


def _suricata_admits(rules: str, proto: str, name: str) -> bool:
    """Does a pass rule of this protocol name this host (exact, or as a subdomain of a dotted entry)?"""
    keyword = "tls.sni" if proto == "tls" else "http.host"
    for rule in rules.splitlines():
        if not rule.startswith(f"pass {proto} ") or keyword not in rule:
            continue
        match = re.search(r'content:"([^"]+)"', rule)
        if not match:
            continue
        value = match.group(1).lower()
        anchored = "endswith" in rule
        if anchored and "dotprefix" in rule and (name == value[1:] or name.endswith(value)):
            return True  # '.d' with dotprefix: the domain and its subdomains
        if anchored and "startswith" in rule and value == name:
            return True  # exact name
    return False


@pytest.mark.parametrize("region", CLOUD)
def test_each_region_is_its_documented_hosts_and_the_revocation_servers(region: str) -> None:
    hosts = set(flexera_hosts(region))
    assert DOCUMENTED[region] <= hosts
    assert set(REVOCATION_DOMAINS) <= hosts
    assert hosts - DOCUMENTED[region] == set(REVOCATION_DOMAINS)


def test_on_premises_adds_nothing_of_flexeras_cloud() -> None:
    assert flexera_hosts("on-premises") == ()


@pytest.mark.parametrize("region", CLOUD)
def test_a_stack_with_only_the_region_reaches_every_documented_host_through_both_firewalls(planned, region: str) -> None:
    p = planned[region]
    rules, dns = _suricata_rules(p), _dns_allowed(p)
    revocation_samples = ["crl.r2m02.amazontrust.com", "ocsp.sca1b.amazontrust.com", "crl3.digicert.com", "crl4.digicert.com", "x1.c.lencr.org"]
    for host in sorted(DOCUMENTED[region]) + revocation_samples:
        assert dns_allows(dns, host), f"DNS firewall answers NXDOMAIN for {host}"
        assert _suricata_admits(rules, "tls", host), f"no TLS pass for {host}"
        assert _suricata_admits(rules, "http", host), f"no HTTP pass for {host} (revocation on port 80)"


@pytest.mark.parametrize("region", CLOUD)
def test_no_host_of_another_region_is_reachable(planned, region: str) -> None:
    p = planned[region]
    rules, dns = _suricata_rules(p), _dns_allowed(p)
    for other in CLOUD:
        if other == region:
            continue
        for host in DOCUMENTED[other]:
            assert not dns_allows(dns, host), host
            assert not _suricata_admits(rules, "tls", host) and not _suricata_admits(rules, "http", host), host


def test_the_checker_above_can_fail() -> None:
    rules = 'pass tls $HOME_NET any -> $EXTERNAL_NET 443 (tls.sni; content:"app.flexera.com"; startswith; endswith; nocase; sid:1;)'
    assert _suricata_admits(rules, "tls", "app.flexera.com") and not _suricata_admits(rules, "tls", "app.flexera.eu")
    assert not _suricata_admits(rules.replace("startswith; ", ""), "tls", "app.flexera.com"), "unanchored at the start: not an exact pass"
    dotted = 'pass http $HOME_NET any -> $EXTERNAL_NET 80 (http.host; dotprefix; content:".amazontrust.com"; endswith; sid:2;)'
    assert _suricata_admits(dotted, "http", "crl.r2m02.amazontrust.com") and not _suricata_admits(dotted, "http", "amazontrust.com.evil")


def test_the_outputs_show_the_allowlist_by_group(planned) -> None:
    allowlist = planned["eu"].outputs["egressAllowlist"]
    assert set(DOCUMENTED["eu"]) <= set(allowlist["flexera-parent"])


# --- configuration -------------------------------------------------------------------------------

def _load(**values) -> None:
    raw, region = stack_raw("dev")
    raw.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()})
    load(raw, "dev", region)


def test_an_unknown_region_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigInvalid) as refused:
        _load(flexeraRegion="us")
    assert "flexeraRegion: got 'us'; expected one of na, eu, apac, on-premises" in str(refused.value)


def test_on_premises_needs_the_parent() -> None:
    with pytest.raises(ConfigInvalid) as refused:
        _load(flexeraRegion="on-premises", flexeraParentDomains=[])
    assert "flexeraParentDomains: got '[]'; expected the parent's domains" in str(refused.value)
    _load(flexeraRegion="on-premises", flexeraParentDomains=["fnms.corp.example"])
