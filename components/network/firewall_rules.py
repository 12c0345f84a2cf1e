"""Network Firewall rules as pure data: Suricata rule strings for STRICT_ORDER rule groups.

Order of evaluation (policy priorities follow the list returned by `rule_groups`):
1. ingress: pass TCP 443 (and 80 when allowHttp) from the allowed CIDRs to the beacons.
2. egress-handshake: pass the TCP handshake to the egress ports, both directions; with strict
   order the domain rules never see SNI or Host unless the handshake gets through.
3. egress-domains: pass http by Host and tls by SNI for each allowlisted domain.
Everything else falls to the policy's defaults: aws:drop_established + aws:alert_established.

Capacity is fixed when a rule group is created, so it carries headroom (see `capacity_for`);
crossing it replaces the rule group, which `pulumi preview` shows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

# Rule variables referenced by the rules; defined per rule group (ip_sets).
HOME_NET = "HOME_NET"
BEACON_NET = "BEACON_NET"
AGENT_NET = "AGENT_NET"

_SAFE_DOMAIN = re.compile(r"\.?[a-z0-9-]+(\.[a-z0-9-]+)+")


@dataclass(frozen=True)
class RuleGroupSpec:
    key: str  # short name: ingress, egress-handshake, egress-domains
    description: str
    rules: tuple[str, ...]
    ip_sets: Mapping[str, tuple[str, ...]]

    @property
    def capacity(self) -> int:
        return capacity_for(len(self.rules))

    @property
    def rules_string(self) -> str:
        return "\n".join(self.rules) + "\n"


def capacity_for(rule_count: int) -> int:
    """Double the rules, rounded up to a multiple of 50 (minimum 50): room to grow in place."""
    return max(50, math.ceil(rule_count * 2 / 50) * 50)


def _msg(text: str) -> str:
    return text.replace('"', "'").replace(";", ",").replace("\\", "/")


def ingress_rules(agent_cidrs: Sequence[str], beacon_cidrs: Sequence[str], allow_http: bool) -> RuleGroupSpec:
    ports = [443] + ([80] if allow_http else [])
    rules = []
    for offset, port in enumerate(ports):
        rules.append(
            f'pass tcp ${AGENT_NET} any -> ${BEACON_NET} {port} '
            f'(msg:"{_msg(f"agents to beacon tcp/{port}")}"; flow:to_server; sid:{100001 + offset}; rev:1;)'
        )
    return RuleGroupSpec(
        key="ingress",
        description="Agents to beacons: " + ", ".join(f"tcp/{p}" for p in ports),
        rules=tuple(rules),
        ip_sets={AGENT_NET: tuple(agent_cidrs), BEACON_NET: tuple(beacon_cidrs)},
    )


def egress_handshake_rules(vpc_cidr: str, egress_ports: Sequence[int]) -> RuleGroupSpec:
    ports = sorted(set(egress_ports))
    port_list = str(ports[0]) if len(ports) == 1 else "[" + ",".join(map(str, ports)) + "]"
    rules = (
        f'pass tcp ${HOME_NET} any -> $EXTERNAL_NET {port_list} '
        f'(msg:"egress tcp handshake"; flow:not_established, to_server; sid:200001; rev:1;)',
        f'pass tcp $EXTERNAL_NET {port_list} -> ${HOME_NET} any '
        f'(msg:"egress tcp handshake reply"; flow:not_established, to_client; sid:200002; rev:1;)',
    )
    return RuleGroupSpec(
        key="egress-handshake",
        description="TCP handshakes to the egress ports, so SNI and Host can be inspected",
        rules=rules,
        ip_sets={HOME_NET: (vpc_cidr,)},
    )


def _content(domain: str) -> str:
    if domain.startswith("."):
        # dotprefix turns "example.com" into ".example.com": one rule matches the domain and
        # every subdomain, but not "badexample.com".
        return f'dotprefix; content:"{domain}"; endswith;'
    return f'content:"{domain}"; startswith; endswith;'


def egress_domain_rules(vpc_cidr: str, allowlist: Mapping[str, Sequence[str]]) -> RuleGroupSpec:
    rules = []
    sid = 300001
    for group, domains in allowlist.items():
        for domain in domains:
            if not _SAFE_DOMAIN.fullmatch(domain):
                raise ValueError(f"egress group {group}: refusing domain {domain!r} in a Suricata rule")
            msg = _msg(f"egress {group} {domain}")
            rules.append(
                f'pass tls ${HOME_NET} any -> $EXTERNAL_NET any '
                f'(tls.sni; {_content(domain)} nocase; msg:"{msg} (tls sni)"; flow:to_server, established; sid:{sid}; rev:1;)'
            )
            rules.append(
                f'pass http ${HOME_NET} any -> $EXTERNAL_NET any '
                f'(http.host; {_content(domain)} msg:"{msg} (http host)"; flow:to_server, established; sid:{sid + 1}; rev:1;)'
            )
            sid += 2
    if not rules:
        # An empty rules string is rejected by the API; keep a harmless alert so the group exists.
        rules.append(f'alert tcp ${HOME_NET} any -> $EXTERNAL_NET any (msg:"egress allowlist empty"; flow:to_server, established; sid:{sid}; rev:1;)')
    return RuleGroupSpec(
        key="egress-domains",
        description=(
            "Egress allowlist by TLS SNI and HTTP Host: " + ", ".join(g for g, d in allowlist.items() if d)
            if any(allowlist.values())
            else "Egress allowlist (empty)"
        ),
        rules=tuple(rules),
        ip_sets={HOME_NET: (vpc_cidr,)},
    )


def rule_groups(
    vpc_cidr: str,
    beacon_cidrs: Sequence[str],
    agent_cidrs: Sequence[str],
    allow_http: bool,
    egress_ports: Sequence[int],
    allowlist: Mapping[str, Sequence[str]],
) -> list[RuleGroupSpec]:
    """The policy's stateful rule groups, in evaluation order."""
    return [
        ingress_rules(agent_cidrs, beacon_cidrs, allow_http),
        egress_handshake_rules(vpc_cidr, egress_ports),
        egress_domain_rules(vpc_cidr, allowlist),
    ]
