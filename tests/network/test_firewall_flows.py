"""Whole conversations through the firewall policy, every packet accounted for, both directions.

The contract of the firewall rules (components/network/firewall_rules.py) as traffic: for each
stack and for config variants, the Pulumi program is run under mocks, and the policy it declares
(the rule groups in priority order, their rule variables, the stateful default actions) is
replayed through Suricata 7, the engine Network Firewall runs, in simulated IPS mode with the
stream engine inline. How the policy becomes a Suricata run (defaults emulated as final rules,
action order, address groups) and how every packet's verdict is read back is in
tests/network/suricata_replay.py.

- An agent's mutual-TLS session to each beacon subnet passes whole: no packet dropped in either
  direction (the flow record counts every packet sent, the teardown completes, the flow was
  passed by a rule, and the engine's accepted + blocked counters add up to the pcap).
- HTTP to a beacon on 80 passes only with allowHttp; TLS on 80, non-TLS on 443, other ports and
  agents outside allowedIngressCidrs are dropped.
- Each allowlisted domain passes by TLS SNI and HTTP Host on the egress ports (`.example.com`:
  the domain itself and any subdomain; an exact host: only itself); look-alikes, unlisted hosts
  and the hosts of disabled groups are dropped.
- "Dropped" is precise: under aws:drop_established the TCP handshake gets through, and from the
  client's first data packet on every packet, both directions, is dropped by the default.

One pcap and one Suricata run per stack or variant; each test reports every mismatch at once.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import suricata_replay as sr
from components.stack import prepare
from conftest import Planned, stack_raw
from scripts.offline import run_program
from suricata_replay import needs_suricata

DROP_ESTABLISHED = sr.DEFAULT_SIDS["aws:drop_established"]
OUTSIDER = "192.0.2.200"  # TEST-NET-1: never in a variant's allowedIngressCidrs
AGENT_ANYWHERE = "203.0.113.7"  # an agent when AGENT_NET is 0.0.0.0/0
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1\r\n"
RDP_CONNECT = bytes.fromhex("030000130ee00000000000010008000b000000")
RDP_CONFIRM = bytes.fromhex("030000130ed000001234000201080001000000")


@dataclass(frozen=True)
class Variant:
    id: str
    stack: str
    overrides: dict[str, Any] = field(default_factory=dict)
    # Names to try besides the ones derived from the variant's own allowlist (e.g. the hosts of a
    # group the variant disables), and names that must end up dropped (asserted, so the variant
    # really exercises what it is for).
    also_try: tuple[str, ...] = ()
    must_drop: tuple[str, ...] = ()


VARIANTS = [
    Variant("dev", "dev"),
    Variant("prod", "prod"),
    Variant(
        "prod-http-restricted",
        "prod",
        {"allowHttp": "true", "allowedIngressCidrs": ["203.0.113.0/24", "198.51.100.0/24"]},
    ),
    Variant(
        "dev-egress-443-only",  # no http CRL either: the effective egress ports are [443]
        "dev",
        {"egressPorts": [443], "sampleDeviceCertificate": "", "crlUrls": ["https://crl.example.com/devices-ca.crl"]},
        also_try=("pki.example.com",),
        must_drop=("pki.example.com",),
    ),
    Variant(
        "dev-egress-8080-extra-crl",
        "dev",
        {
            "egressPorts": [80, 443, 8080],
            "crlUrls": ["http://crl2.example.net:8080/devices.crl", "https://pki.example.org/issuing.crl"],
        },
    ),
    Variant(
        "prod-groups-disabled",
        "prod",
        {"egressDisabledGroups": ["windows-update", "flexera-parent"]},
        also_try=("www.microsoft.com", "x.windowsupdate.com", "flexnetmanager.com", "beacon.flexnetmanager.com"),
        must_drop=("www.microsoft.com", "x.windowsupdate.com", "flexnetmanager.com", "beacon.flexnetmanager.com"),
    ),
    Variant(
        "dev-all-groups-disabled",
        "dev",
        {"egressDisabledGroups": ["crl", "flexera-parent", "aws-endpoints", "windows-update"], "revocationChecking": "false"},
        also_try=("crl.example.com", "x.flexnetmanager.com", "ssm.us-east-1.amazonaws.com", "www.microsoft.com"),
        must_drop=("crl.example.com", "x.flexnetmanager.com", "ssm.us-east-1.amazonaws.com", "www.microsoft.com"),
    ),
]


# --- the policy the program declares ----------------------------------------------------------


@dataclass
class Policy:
    rules: list[str]  # every rule group's rules, in policy priority order
    address_groups: dict[str, tuple[str, ...]]
    default_actions: list[str]
    allowlist: dict[str, list[str]]
    allow_http: bool
    egress_ports: list[int]


def declared_policy(variant: Variant) -> Policy:
    raw, region = stack_raw(variant.stack)
    for key, value in variant.overrides.items():
        raw[key] = value if isinstance(value, str) else json.dumps(value)
    prepared = prepare(raw, variant.stack, region)  # what the program decides before any resource
    planned = Planned(run_program(variant.stack, raw, region))
    policy = planned.one("firewallPolicy:FirewallPolicy").inputs["firewallPolicy"]
    groups = {g.arn: g.inputs["ruleGroup"] for g in planned.of_type("ruleGroup:RuleGroup")}
    rules: list[str] = []
    address_groups: dict[str, tuple[str, ...]] = {}
    for ref in sorted(policy["statefulRuleGroupReferences"], key=lambda ref: ref["priority"]):
        group = groups[ref["resourceArn"]]
        rules += group["rulesSource"]["rulesString"].splitlines()
        for ip_set in group["ruleVariables"]["ipSets"]:
            cidrs = tuple(ip_set["ipSet"]["definitions"])
            # Suricata's address groups are global; Network Firewall's are per rule group. Same
            # meaning as long as every group that names a variable gives it the same CIDRs.
            assert address_groups.setdefault(ip_set["key"], cidrs) == cidrs, ip_set["key"]
    return Policy(
        rules=rules,
        address_groups=address_groups,
        default_actions=list(policy["statefulDefaultActions"]),
        allowlist=planned.outputs["egressAllowlist"],
        allow_http=prepared.cfg.allow_http,
        egress_ports=prepared.egress_ports,
    )


def allowed(allowlist: dict[str, list[str]], name: str) -> bool:
    """The documented meaning of an allowlist entry: `.example.com` is the domain and every subdomain."""
    name = name.lower()
    for entries in allowlist.values():
        for entry in entries:
            if name == entry or (entry.startswith(".") and (name == entry[1:] or name.endswith(entry))):
                return True
    return False


def _host(cidr: str, offset: int) -> str:
    net = ipaddress.ip_network(cidr)
    return str(net.network_address + min(offset, net.num_addresses - 1))


# --- the conversations ------------------------------------------------------------------------


@dataclass
class Plan:
    """The conversations of one replay, what each must come to, and what its payload is."""

    conversations: list[sr.Conversation] = field(default_factory=list)
    expect_pass: dict[str, bool] = field(default_factory=dict)
    payload: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> ("tls", sni) / ("http", host) / ("raw", "")
    next_port: int = 40000
    next_server: int = 0

    def _add(self, name: str, client: str, server: str, dport: int, messages, passes: bool, payload: tuple[str, str]) -> None:
        self.conversations.append(sr.Conversation(name, client, self.next_port, server, dport, messages))
        self.expect_pass[name] = passes
        self.payload[name] = payload
        self.next_port += 1

    def tls(self, name: str, client: str, server: str, dport: int, sni: str, passes: bool, **session) -> None:
        self._add(name, client, server, dport, sr.tls_session(sni, **session), passes, ("tls", sni))

    def http(self, name: str, client: str, server: str, dport: int, host: str, passes: bool, path: str = "/ca.crl") -> None:
        self._add(name, client, server, dport, sr.http_exchange(host, path), passes, ("http", host))

    def raw(self, name: str, client: str, server: str, dport: int, request: bytes, response: bytes, passes: bool) -> None:
        self._add(name, client, server, dport, sr.raw_exchange(request, response), passes, ("raw", ""))

    def external_server(self) -> str:
        self.next_server += 1
        return str(ipaddress.ip_address("198.18.0.0") + self.next_server)  # RFC 2544 range: outside every HOME_NET


BEACON_NAME = "beacon.example.com"


def conversations_for(variant: Variant, policy: Policy) -> Plan:
    plan = Plan()
    beacons = [_host(cidr, 10) for cidr in policy.address_groups["BEACON_NET"]]
    agent_cidrs = policy.address_groups["AGENT_NET"]
    agents = [AGENT_ANYWHERE if ipaddress.ip_network(c).prefixlen == 0 else _host(c, 7) for c in agent_cidrs]
    agent = agents[0]

    # Ingress: every allowed source to every beacon subnet, a whole mutual-TLS session.
    for beacon in beacons:
        for source in agents:
            plan.tls(f"agent {source} tls -> {beacon}:443", source, beacon, 443, BEACON_NAME, True)
        # A ClientHello too big for one segment (as with a post-quantum key share): the first
        # data packet carries an incomplete handshake message.
        plan.tls(f"agent tls, ClientHello in 2 segments -> {beacon}:443", agent, beacon, 443, BEACON_NAME, True, hello_padding=1800)
        plan.http(f"agent http -> {beacon}:80", agent, beacon, 80, BEACON_NAME, policy.allow_http, path="/ManageSoftDL/")
    beacon = beacons[0]
    plan.tls("agent tls -> beacon:80", agent, beacon, 80, BEACON_NAME, False)
    plan.http("agent http (not tls) -> beacon:443", agent, beacon, 443, BEACON_NAME, False, path="/ManageSoftDL/")
    plan.raw("agent ssh banner (not tls) -> beacon:443", agent, beacon, 443, SSH_BANNER, SSH_BANNER, False)
    plan.tls("agent tls -> beacon:8443", agent, beacon, 8443, BEACON_NAME, False)
    plan.raw("agent ssh -> beacon:22", agent, beacon, 22, SSH_BANNER, SSH_BANNER, False)
    plan.raw("agent rdp -> beacon:3389", agent, beacon, 3389, RDP_CONNECT, RDP_CONFIRM, False)
    if not any(ipaddress.ip_address(OUTSIDER) in ipaddress.ip_network(c) for c in agent_cidrs):
        plan.tls("outsider tls -> beacon:443", OUTSIDER, beacon, 443, BEACON_NAME, False)
        plan.http("outsider http -> beacon:80", OUTSIDER, beacon, 80, BEACON_NAME, False)

    # Egress: the allowlist's names, their look-alikes, unlisted hosts, on every egress port.
    tls_ports = [p for p in policy.egress_ports if p != 80]
    http_ports = [p for p in policy.egress_ports if p != 443]
    names: list[str] = []
    for entries in policy.allowlist.values():
        for entry in entries:
            bare = entry.lstrip(".")
            names += [f"x.{bare}", bare] if entry.startswith(".") else [bare, f"x.{bare}"]
            names += [f"evil{bare}", f"{bare}.evil.net"]
    names += list(variant.also_try) + ["unlisted.example.net", "example.com"]
    first_exact = next((e for entries in policy.allowlist.values() for e in entries if not e.startswith(".")), None)
    mixed_case = [first_exact.upper()] if first_exact else []  # SNI is not normalised (nocase); Host is
    names = list(dict.fromkeys(names + mixed_case))
    for i, name in enumerate(names):
        source = beacons[i % len(beacons)]
        verdict = allowed(policy.allowlist, name)
        for port in tls_ports:
            plan.tls(f"egress tls {name}:{port}", source, plan.external_server(), port, name, verdict,
                     client_name="beacon.internal", server_name=name.lower())
        for port in http_ports:
            plan.http(f"egress http {name}:{port}", source, plan.external_server(), port, name, verdict)
    for name in variant.must_drop:
        assert not allowed(policy.allowlist, name), f"{variant.id}: {name} is allowed, the variant is not testing what it says"
    return plan


# --- the tests --------------------------------------------------------------------------------


def payload_problems(verdict: sr.FlowVerdict, payload: tuple[str, str]) -> list[str]:
    """The replay is a real session as far as Suricata's parsers can tell (else a pass proves little)."""
    kind, name = payload
    events = [e for e in verdict.app_events if e["event_type"] == kind]
    if kind == "tls":
        tls = events[0]["tls"] if len(events) == 1 else {}
        # SNI, TLS 1.2, the server's certificate and, asked for by CertificateRequest, the client's.
        if (tls.get("sni"), tls.get("version")) != (name, "TLS 1.2") or not tls.get("subject") or not tls.get("client", {}).get("subject"):
            return [f"the TLS parser did not see a whole mutual-TLS handshake: {events}"]
    elif kind == "http":
        http = events[0]["http"] if len(events) == 1 else {}
        if (http.get("hostname"), http.get("status")) != (name.lower(), 200):
            return [f"the HTTP parser did not see the request and its 200 response: {events}"]
    return []


def check(variant: Variant, workdir: Path) -> tuple[Policy, sr.Replay, Plan, list[str]]:
    policy = declared_policy(variant)
    assert "aws:drop_established" in policy.default_actions, "the expectations below are those of aws:drop_established"
    plan = conversations_for(variant, policy)
    run = sr.replay(workdir, plan.conversations, sr.policy_rules(policy.rules, policy.default_actions), policy.address_groups)
    problems = run.accounting_problems()
    for name, passes in plan.expect_pass.items():
        verdict = run[name]
        found = verdict.problems_if_passed() if passes else verdict.problems_if_blocked(DROP_ESTABLISHED)
        found += payload_problems(verdict, plan.payload[name])
        if found:
            problems.append(f"{name}: expected {'pass' if passes else 'drop'}: {'; '.join(found)}\n    {verdict.describe()}")
    return policy, run, plan, problems


@needs_suricata
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
def test_whole_conversations_pass_or_drop_as_the_policy_says(variant: Variant, tmp_path: Path) -> None:
    policy, run, plan, problems = check(variant, tmp_path)
    passed = sum(plan.expect_pass.values())
    print(
        f"{variant.id}: {len(plan.conversations)} conversations ({passed} pass, {len(plan.conversations) - passed} drop), "
        f"{run.total_packets} packets, suricata {run.seconds:.2f}s"
    )
    assert not problems, f"{variant.id}: {len(problems)} of {len(plan.conversations)} conversations wrong:\n" + "\n".join(problems)
    # The contract's centre, asserted on its own as well: agents' TLS to every beacon subnet.
    agent_sessions = [n for n in plan.expect_pass if n.startswith("agent ") and ":443" in n and plan.expect_pass[n]]
    assert len(agent_sessions) >= 2 * len(policy.address_groups["BEACON_NET"])
    assert all(not run[n].dropped and run[n].flow["action"] == "pass" for n in agent_sessions)


PRE_FIX_INGRESS = (
    'pass tcp $AGENT_NET any -> $BEACON_NET 443 (msg:"agents to beacon tcp/443"; flow:to_server; sid:100001; rev:1;)'
)


@needs_suricata
def test_replay_catches_a_pass_that_covers_one_direction_only(tmp_path: Path) -> None:
    """The harness sees what the flow-level pass fixed: a packet-level `pass tcp ... flow:to_server`.

    That rule passes the agent's packets only; every established packet from the beacon (the
    ServerHello and certificate request, every response) falls to aws:drop_established.
    """
    policy = declared_policy(VARIANTS[0])
    beacon = _host(policy.address_groups["BEACON_NET"][0], 10)
    session = sr.Conversation("agent tls", AGENT_ANYWHERE, 40000, beacon, 443, sr.tls_session("beacon.example.com"))
    rules = sr.policy_rules([PRE_FIX_INGRESS], policy.default_actions)
    run = sr.replay(tmp_path, [session], rules, policy.address_groups)
    assert not run.accounting_problems()
    verdict = run["agent tls"]
    replies = {i for i, p in enumerate(verdict.sent) if not p.to_server and p.kind != "syn-ack"}
    assert set(verdict.dropped) == replies, verdict.describe()
    assert verdict.problems_if_passed()


# --- the harness itself (no Suricata needed) --------------------------------------------------


def test_conversation_is_complete_and_consistent() -> None:
    conversation = sr.Conversation("c", "203.0.113.7", 40000, "10.80.0.10", 443, sr.tls_session("beacon.example.com"))
    packets = conversation.packets()
    assert [(p.kind, p.to_server) for p in packets[:3]] == [("syn", True), ("syn-ack", False), ("ack", True)]
    assert [(p.kind, p.to_server) for p in packets[-4:]] == [("fin", True), ("ack", False), ("fin", False), ("ack", True)]
    # Sequence numbers: each side's segments follow on, and every ACK acknowledges all the peer sent.
    nxt: dict[bool, int] = {}
    for packet in packets:
        ip = packet.frame[14:34]
        tcp = packet.frame[34:54]
        payload = packet.frame[54:]
        assert int.from_bytes(ip[2:4], "big") == len(packet.frame) - 14
        seq, ack, flags = int.from_bytes(tcp[4:8], "big"), int.from_bytes(tcp[8:12], "big"), tcp[13]
        if packet.to_server in nxt:
            assert seq == nxt[packet.to_server]
        if flags & sr.ACK and (not packet.to_server) in nxt:
            assert ack == nxt[not packet.to_server]
        nxt[packet.to_server] = seq + len(payload) + (1 if flags & (sr.SYN | sr.FIN) else 0)
        assert len(payload) <= sr.MSS
    data = b"".join(p.frame[54:] for p in packets if p.to_server)
    assert data.startswith(b"\x16\x03\x01") and b"beacon.example.com" in data
    reply = b"".join(p.frame[54:] for p in packets if not p.to_server)
    assert reply.startswith(b"\x16\x03\x03") and b"\x0d\x00" in reply  # ServerHello ... CertificateRequest


def test_default_actions_are_emulated_as_final_rules() -> None:
    assert sr.default_action_rules(["aws:drop_established", "aws:alert_established"]) == [
        'drop ip any any -> any any (msg:"aws:drop_established"; flow:established; sid:9000002; rev:1;)',
        'alert ip any any -> any any (msg:"aws:alert_established"; flow:established; sid:9000004; rev:1;)',
    ]
    assert sr.default_action_rules(["aws:drop_strict", "aws:alert_strict"]) == [
        'drop ip any any -> any any (msg:"aws:drop_strict"; sid:9000001; rev:1;)',
        'alert ip any any -> any any (msg:"aws:alert_strict"; sid:9000003; rev:1;)',
    ]
    with pytest.raises(ValueError, match="no emulation"):
        sr.default_action_rules(["aws:pass"])


def test_policy_rules_refuse_what_action_order_cannot_replay_in_file_order() -> None:
    rules = sr.policy_rules(["pass tls any any -> any any (sid:1;)", "alert tcp any any -> any any (sid:2;)"], ["aws:drop_established"])
    assert rules.splitlines()[-1].startswith("drop ip any any -> any any (")
    with pytest.raises(AssertionError, match="pass/alert"):
        sr.policy_rules(["drop tcp any any -> any any 22 (sid:1;)", "pass tcp any any -> any any (sid:2;)"], [])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("flexnetmanager.com", True),
        ("x.flexnetmanager.com", True),
        ("A.B.FlexNetManager.com", True),
        ("evilflexnetmanager.com", False),
        ("flexnetmanager.com.evil.net", False),
        ("crl.example.com", True),
        ("x.crl.example.com", False),
        ("crl.example.com.evil.net", False),
        ("example.com", False),
    ],
)
def test_allowlist_oracle(name: str, expected: bool) -> None:
    assert allowed({"flexera-parent": [".flexnetmanager.com"], "crl": ["crl.example.com"]}, name) is expected
