"""Network Firewall rules as pure data: Suricata rule strings for STRICT_ORDER rule groups.

Order of evaluation (policy priorities follow the list returned by `rule_groups`):
1. ingress: pass TLS on 443 (and HTTP on 80 when allowHttp) from the allowed CIDRs to the
   beacons. Application-layer rules, because only those (and IP-only rules) pass the whole
   flow, replies included; see `ingress_rules`.
2. egress-handshake: pass the TCP handshake to the egress ports, both directions. Under the
   policy's default a handshake is not established and gets through without it; the group
   decides only under a default that drops the handshake too (aws:drop_strict), where the domain
   rules would otherwise never see SNI or Host, and it then opens the egress ports and no other.
   Kept so the egress rules do not depend on the default's handling of handshakes;
   tests/network/test_firewall_flows.py replays them under aws:drop_strict with and without it.
3. egress-domains: pass http by Host and tls by SNI for each allowlisted domain.
Everything else falls to the policy's defaults (components/network/firewall.py):
aws:drop_established_app_layer_to_server + aws:alert_established_app_layer_to_server, which let a
ClientHello (or HTTP request) split over several segments through until it is whole, then drop the
client's packets of a flow no rule passed (docs/traffic.md, "Split ClientHellos").
tests/network/test_firewall_flows.py replays whole conversations through Suricata against the rendered
policy of every stack and checks every packet, both directions.

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
    """Agents to the beacons: an application-layer pass per port, so the whole flow passes both ways.

    Why `pass tls` / `pass http` rather than `pass tcp`: Suricata applies a `pass` to the whole
    flow, both directions, only for an IP-only rule or an application-layer rule. A plain
    `pass tcp $AGENT_NET any -> $BEACON_NET 443 (flow:to_server;)` passes just the packets it
    matches (agent to beacon), and whatever protocol they carry; under a default that drops both
    directions (aws:drop_established, the policy's default until split ClientHellos made it
    application-layer) the beacon's replies (ServerHello, CertificateRequest, every response)
    would be dropped as established packets no rule passed. The application-layer rule admits TLS
    on 443 (HTTP on 80) only, and its pass covers the replies whatever the default.
    Before the protocol is known nothing is lost: the handshake is not established (the default
    passes it) and, with the stream engine inline, the packet that carries the start of the
    ClientHello (or the request line) is parsed before it is inspected, so it is the packet the
    rule passes, even when the ClientHello goes on in a second segment.
    tests/network/test_firewall_flows.py replays whole sessions through Suricata to prove it.
    """
    ports = [(443, "tls")] + ([(80, "http")] if allow_http else [])
    rules = []
    for offset, (port, proto) in enumerate(ports):
        rules.append(
            f'pass {proto} ${AGENT_NET} any -> ${BEACON_NET} {port} '
            f'(msg:"{_msg(f"agents to beacon {proto}/{port}")}"; flow:to_server; sid:{100001 + offset}; rev:2;)'
        )
    return RuleGroupSpec(
        key="ingress",
        description="Agents to beacons: " + ", ".join(f"{proto} on tcp/{port}" for port, proto in ports),
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
