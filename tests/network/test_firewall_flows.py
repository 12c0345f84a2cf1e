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
- ClientHellos too big for one TCP segment (a Go 1.24+ client's default X25519MLKEM768 key
  share makes it about 1.5 KB, the CloudWatch agent's and SSM Agent's among them) pass whole,
  with no packet dropped, to every allowlisted host of every shipped stack and from agents to
  every beacon subnet: with the boundary inside the SNI itself, with Go's layout (SNI whole in
  the first segment, the message not), and with the server acknowledging the first segment
  before the second arrives. Split ClientHellos to hosts not on the allowlist are refused, and
  so are non-TLS bytes on an allowed port.
- "Dropped" is precise, per the policy's drop default as emulated in suricata_replay
  (`default_action_rules`): the TCP handshake gets through; under an application-layer default
  the earlier segments of a ClientHello or HTTP request get through too, and the packet that
  completes it is the first dropped (by the emulated rule for that protocol, which needs the
  message parsed whole); anything else from the client's first data packet on. From there every
  client-to-server packet is dropped (and every server-to-client one, unless the default is
  server-directed only).

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
from components.network.firewall import STATEFUL_DEFAULT_ACTIONS
from components.stack import prepare
from conftest import Planned, stack_raw
from scripts.offline import run_program
from suricata_replay import needs_suricata

ROOT = Path(__file__).resolve().parents[2]
OUTSIDER = "192.0.2.200"  # TEST-NET-1: never in a variant's allowedIngressCidrs
AGENT_ANYWHERE = "203.0.113.7"  # an agent when AGENT_NET is 0.0.0.0/0
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1\r\n"
RDP_CONNECT = bytes.fromhex("030000130ee00000000000010008000b000000")
RDP_CONFIRM = bytes.fromhex("030000130ed000001234000201080001000000")
GARBAGE = sr._filler(700, "not-tls")  # bytes that are no protocol Suricata knows (ciphertext-like)
SPLIT = "ClientHello in 2 segments"  # in the names of the split-ClientHello conversations
SPLIT_LAYOUTS = {  # name suffix -> split_client_hello arguments
    "SNI cut": dict(cut_sni=True),  # the boundary falls inside the SNI
    "Go layout, ACK between": dict(cut_sni=False, ack_between=True),  # SNI whole in segment 1, server ACKs it
}


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
    Variant("pilot", "pilot"),
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
    Variant(
        # A new stack with only flexeraRegion set: every documented host of its region (derived
        # from its allowlist, revocation servers included) passes; another region's is dropped.
        "flexera-eu-only",
        "dev",
        {"flexeraRegion": "eu", "flexeraParentDomains": []},
        also_try=("app.flexera.eu", "beacon.flexnetmanager.eu", "data.flexnetmanager.eu", "crl.r2m02.amazontrust.com",
                  "app.flexera.com", "beacon.flexnetmanager.com", "data.flexnetmanager.au", "app.flexera.au"),
        must_drop=("app.flexera.com", "beacon.flexnetmanager.com", "data.flexnetmanager.au", "app.flexera.au"),
    ),
    Variant(
        "windows-extras-on",
        "prod",
        {"windowsExtrasEgress": "true"},
        also_try=("definitionupdates.microsoft.com", "kv601.prod.do.dsp.mp.microsoft.com", "ocsp.digicert.com", "evil.wdcp.microsoft.com.example.net"),
        must_drop=("evil.wdcp.microsoft.com.example.net",),
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
        # A ClientHello too big for one segment (an agent whose TLS library sends a post-quantum
        # key share by default): the first data packet carries an incomplete handshake message.
        for layout, split in SPLIT_LAYOUTS.items():
            plan.tls(f"agent tls, {SPLIT} ({layout}) -> {beacon}:443", agent, beacon, 443, BEACON_NAME, True,
                     hello=sr.split_client_hello(BEACON_NAME, **split))
        plan.http(f"agent http -> {beacon}:80", agent, beacon, 80, BEACON_NAME, policy.allow_http, path="/ManageSoftDL/")
    beacon = beacons[0]
    plan.tls("agent tls -> beacon:80", agent, beacon, 80, BEACON_NAME, False)
    plan.http("agent http (not tls) -> beacon:443", agent, beacon, 443, BEACON_NAME, False, path="/ManageSoftDL/")
    plan.raw("agent ssh banner (not tls) -> beacon:443", agent, beacon, 443, SSH_BANNER, SSH_BANNER, False)
    plan.raw("agent garbage (not tls) -> beacon:443", agent, beacon, 443, GARBAGE, GARBAGE[::-1], False)
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
            # The same with the ClientHello of a Go 1.24+ client (CloudWatch agent, SSM Agent):
            # every allowlisted host, every refused one, the boundary inside the SNI.
            plan.tls(f"egress tls {name}:{port}, {SPLIT} (SNI cut)", source, plan.external_server(), port, name, verdict,
                     client_name="beacon.internal", server_name=name.lower(), hello=sr.split_client_hello(name, cut_sni=True))
        for port in http_ports:
            plan.http(f"egress http {name}:{port}", source, plan.external_server(), port, name, verdict)
    # Go's own layout, the server acknowledging the first segment before the second arrives, to
    # the AWS endpoints the agents call; and non-TLS bytes to an allowed port.
    for entry in policy.allowlist.get("aws-endpoints", []):
        name = entry.lstrip(".")
        plan.tls(f"egress tls {name}:443, {SPLIT} (Go layout, ACK between)", beacons[0], plan.external_server(), 443, name,
                 True, client_name="beacon.internal", hello=sr.split_client_hello(name, cut_sni=False, ack_between=True))
    for port in tls_ports:
        plan.raw(f"egress garbage (not tls) :{port}", beacons[0], plan.external_server(), port, GARBAGE, GARBAGE[::-1], False)
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
    emulated = sr.emulation(policy.default_actions)
    assert emulated.action, f"the policy has no stateful drop default: {policy.default_actions}"
    plan = conversations_for(variant, policy)
    run = sr.replay(workdir, plan.conversations, sr.policy_rules(policy.rules, policy.default_actions), policy.address_groups)
    problems = run.accounting_problems()
    for name, passes in plan.expect_pass.items():
        verdict = run[name]
        kind = plan.payload[name][0]
        found = verdict.problems_if_passed() if passes else verdict.problems_if_blocked(emulated, kind)
        # A refused flow's parser record: complete under the classic defaults (every packet is still
        # inspected); under an application-layer one Suricata stops at the flow drop, and the first
        # drop's rule (it needs the ClientHello / request parsed whole) stands for the parser.
        if passes or not emulated.app_layer:
            found += payload_problems(verdict, plan.payload[name])
        if found:
            problems.append(f"{name}: expected {'pass' if passes else 'drop'}: {'; '.join(found)}\n    {verdict.describe()}")
    return policy, run, plan, problems


@needs_suricata
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
def test_whole_conversations_pass_or_drop_as_the_policy_says(variant: Variant, tmp_path: Path) -> None:
    policy, run, plan, problems = check(variant, tmp_path)
    problems += split_client_hello_problems(variant, policy, run, plan)
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


SHIPPED_STACKS = sorted(path.name.split(".")[1] for path in (ROOT / "stacks").glob("Pulumi.*.yaml"))


def test_every_shipped_stack_is_replayed() -> None:
    plain = {v.id for v in VARIANTS if v.id == v.stack and not v.overrides}
    assert SHIPPED_STACKS and set(SHIPPED_STACKS) <= plain, f"stacks without a plain variant: {sorted(set(SHIPPED_STACKS) - plain)}"


def allowlisted_hosts(allowlist: dict[str, list[str]]) -> list[str]:
    """Names each allowlist entry admits, as the replay sends them: `d` and `x.d` for `.d`, else the host."""
    hosts: list[str] = []
    for entries in allowlist.values():
        for entry in entries:
            bare = entry.lstrip(".")
            hosts += [bare, f"x.{bare}"] if entry.startswith(".") else [bare]
    return list(dict.fromkeys(hosts))


def split_client_hello_problems(variant: Variant, policy: Policy, run: sr.Replay, plan: Plan) -> list[str]:
    """Issue 19, point 5: a ClientHello in two TCP segments costs no retransmission.

    For every allowlisted host on every TLS egress port and from an agent to every beacon subnet,
    a split ClientHello conversation exists and not one of its packets was dropped, either way
    (problems_if_passed), the first segment being an incomplete ClientHello; split ClientHellos
    to hosts off the allowlist are refused from the segment that completes the ClientHello on,
    by the rule that needs it parsed whole; non-TLS bytes are refused (problems_if_blocked).
    """
    emulated = sr.emulation(policy.default_actions)
    tls_ports = [p for p in policy.egress_ports if p != 80]
    beacons = [_host(cidr, 10) for cidr in policy.address_groups["BEACON_NET"]]
    wanted = {f"egress tls {h}:{p}, {SPLIT} (SNI cut)" for h in allowlisted_hosts(policy.allowlist) for p in tls_ports}
    wanted |= {f"agent tls, {SPLIT} ({layout}) -> {b}:443" for b in beacons for layout in SPLIT_LAYOUTS}
    problems = [f"no split-ClientHello conversation {n!r} (or not expected to pass)"
                for n in sorted(wanted) if not plan.expect_pass.get(n)]
    split = [n for n in plan.expect_pass if SPLIT in n]
    refused = [n for n in split if not plan.expect_pass[n]]
    if not refused:
        problems.append("no split ClientHello to a host off the allowlist")
    for name in split:
        verdict = run[name]
        first, last = verdict.first_data, verdict.first_message_end
        hello = b"".join(p.frame[54:] for p in verdict.sent[first : last + 1] if p.kind == "data" and p.to_server)
        if last == first or not verdict.sent[first].frame[54:].startswith(b"\x16\x03\x01") or len(hello) < 1400:
            problems.append(f"{name}: the first data packet is not the first of a 2-segment ClientHello")
        if plan.expect_pass[name]:
            problems += [f"{name}: {p}" for p in verdict.problems_if_passed()]
        else:
            problems += [f"{name}: {p}" for p in verdict.problems_if_blocked(emulated, "tls")]
    garbage = [n for n in plan.expect_pass if "garbage" in n]
    if not garbage or any(plan.expect_pass[n] for n in garbage):
        problems.append(f"non-TLS bytes on an allowed port not tried, or expected to pass: {garbage}")
    problems += [f"{n}: {p}" for n in garbage for p in run[n].problems_if_blocked(emulated, "raw")]
    print(f"{variant.id}: {len(split) - len(refused)} split ClientHellos passed whole, {len(refused)} refused, "
          f"{len(garbage)} non-TLS refused")
    return problems


BOTH_DIRECTIONS_DEFAULTS = ["aws:drop_established", "aws:alert_established"]  # the policy's defaults before issue 19
BIDIRECTIONAL_APP_LAYER = ["aws:drop_established_app_layer", "aws:alert_established_app_layer"]


@needs_suricata
def test_why_the_default_is_application_layer_server_directed(tmp_path: Path) -> None:
    """The same split ClientHellos (the server ACKing the first segment before the second arrives)
    under three drop defaults, with the dev stack's rules:

    - aws:drop_established (the previous default): the first segment of a ClientHello to an
      allowlisted host is dropped, the SNI being incomplete; the client gets it through only by
      retransmitting after a timeout (the replay sends the rest regardless).
    - aws:drop_established_app_layer (bidirectional): the segment gets through, but the server's
      ACK of it is an established packet no rule has passed yet, and is dropped (AWS documents
      such drops of window updates, keep-alives and resets "immediately after the TCP handshake").
    - the policy's default, aws:drop_established_app_layer_to_server: nothing of it is dropped.
    Each time the ClientHello to a host off the allowlist is refused.
    """
    policy = declared_policy(VARIANTS[0])
    assert policy.default_actions == STATEFUL_DEFAULT_ACTIONS
    host = policy.allowlist["aws-endpoints"][0]
    source = _host(policy.address_groups["BEACON_NET"][0], 10)
    conversations = [
        sr.Conversation(name, source, 40000 + i, f"198.18.1.{i + 1}", 443,
                        sr.tls_session(sni, client_name="beacon.internal", hello=sr.split_client_hello(sni, ack_between=True)))
        for i, (name, sni) in enumerate([("allowed", host), ("refused", "unlisted.example.net")])
    ]
    verdicts = {}
    for defaults in (BOTH_DIRECTIONS_DEFAULTS, BIDIRECTIONAL_APP_LAYER, STATEFUL_DEFAULT_ACTIONS):
        run = sr.replay(tmp_path / defaults[0].split(":")[1], conversations, sr.policy_rules(policy.rules, defaults), policy.address_groups)
        assert not run.accounting_problems(), run.accounting_problems()
        assert not run["refused"].problems_if_blocked(sr.emulation(defaults), "tls"), run["refused"].describe()
        verdicts[defaults[0]] = run["allowed"]
    old, bidirectional, chosen = verdicts.values()
    first = old.first_data
    assert old.sent[first].to_server and first in old.dropped, old.describe()
    assert old.flow.get("action") == "pass"  # the second segment completed the SNI: the flow passes, late
    early_ack = first + 1
    assert not bidirectional.sent[early_ack].to_server and bidirectional.sent[early_ack].kind == "ack"
    assert set(bidirectional.dropped) == {early_ack}, bidirectional.describe()
    assert not chosen.problems_if_passed(), chosen.describe()


PRE_FIX_INGRESS = (
    'pass tcp $AGENT_NET any -> $BEACON_NET 443 (msg:"agents to beacon tcp/443"; flow:to_server; sid:100001; rev:1;)'
)


@needs_suricata
def test_replay_catches_a_pass_that_covers_one_direction_only(tmp_path: Path) -> None:
    """The harness sees what the flow-level pass fixed: a packet-level `pass tcp ... flow:to_server`.

    Under a default that drops both directions (aws:drop_established, the policy's default when
    the ingress rule was fixed) that rule passes the agent's packets only; every established
    packet from the beacon (the ServerHello and certificate request, every response) is dropped.
    Under today's server-directed default the replies would pass, but the rule would also pass
    any protocol on 443: an SSH banner gets through, which `pass tls` refuses (the replays above).
    """
    policy = declared_policy(VARIANTS[0])
    beacon = _host(policy.address_groups["BEACON_NET"][0], 10)
    session = sr.Conversation("agent tls", AGENT_ANYWHERE, 40000, beacon, 443, sr.tls_session("beacon.example.com"))
    ssh = sr.Conversation("agent ssh", AGENT_ANYWHERE, 40001, beacon, 443, sr.raw_exchange(SSH_BANNER, SSH_BANNER))
    rules = sr.policy_rules([PRE_FIX_INGRESS], BOTH_DIRECTIONS_DEFAULTS)
    run = sr.replay(tmp_path / "both", [session], rules, policy.address_groups)
    assert not run.accounting_problems()
    verdict = run["agent tls"]
    replies = {i for i, p in enumerate(verdict.sent) if not p.to_server and p.kind != "syn-ack"}
    assert set(verdict.dropped) == replies, verdict.describe()
    assert verdict.problems_if_passed()
    run = sr.replay(tmp_path / "now", [session, ssh], sr.policy_rules([PRE_FIX_INGRESS], policy.default_actions), policy.address_groups)
    assert not run.accounting_problems()
    assert not run["agent ssh"].dropped, run["agent ssh"].describe()


# --- the harness itself (no Suricata needed) --------------------------------------------------


def _assert_consistent(packets: list[sr.Packet], max_segment: int = sr.MSS) -> None:
    """Sequence numbers: each side's segments follow on, and every ACK acknowledges all the peer sent."""
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
        assert len(payload) <= max_segment
        assert (packet.kind == "data") == bool(payload) and (packet.message >= 0) == bool(payload)


def test_conversation_is_complete_and_consistent() -> None:
    conversation = sr.Conversation("c", "203.0.113.7", 40000, "10.80.0.10", 443, sr.tls_session("beacon.example.com"))
    packets = conversation.packets()
    assert [(p.kind, p.to_server) for p in packets[:3]] == [("syn", True), ("syn-ack", False), ("ack", True)]
    assert [(p.kind, p.to_server) for p in packets[-4:]] == [("fin", True), ("ack", False), ("fin", False), ("ack", True)]
    _assert_consistent(packets)
    data = b"".join(p.frame[54:] for p in packets if p.to_server)
    assert data.startswith(b"\x16\x03\x01") and b"beacon.example.com" in data
    reply = b"".join(p.frame[54:] for p in packets if not p.to_server)
    assert reply.startswith(b"\x16\x03\x03") and b"\x0d\x00" in reply  # ServerHello ... CertificateRequest


def _extensions(record: bytes) -> dict[int, bytes]:
    """Parse a ClientHello record as a server would; every length must add up."""
    import struct

    assert record[:3] == b"\x16\x03\x01" and struct.unpack("!H", record[3:5])[0] == len(record) - 5
    assert record[5] == 1 and int.from_bytes(record[6:9], "big") == len(record) - 9
    body = record[9:]
    i = 2 + 32
    i += 1 + body[i]  # session id
    i += 2 + struct.unpack("!H", body[i : i + 2])[0]  # cipher suites
    i += 1 + body[i]  # compression methods
    end = i + 2 + struct.unpack("!H", body[i : i + 2])[0]
    assert end == len(body)
    i += 2
    out = {}
    while i < end:
        ext_type, length = struct.unpack("!HH", body[i : i + 4])
        assert ext_type not in out
        out[ext_type] = body[i + 4 : i + 4 + length]
        i += 4 + length
    assert i == end
    return out


@pytest.mark.parametrize("name", ["ssm.us-east-1.amazonaws.com", "x.flexnetmanager.com", "a.b.c.d.ctldl.windowsupdate.com"])
def test_split_client_hello_is_a_post_quantum_client_hello_in_two_segments(name: str) -> None:
    for layout, split in SPLIT_LAYOUTS.items():
        hello = sr.split_client_hello(name, **split)
        record = hello.data
        ext = _extensions(record)
        assert 1400 < len(record) < 1700 and len(hello.chunks) == 2
        assert ext[0][5:].decode() == name  # server_name
        assert b"\x03\x04" in ext[43]  # supported_versions: TLS 1.3
        shares = ext[51][2:]
        assert shares[:4] == b"\x11\xec\x04\xc0" and len(shares) == 4 + 1216 + 4 + 32  # X25519MLKEM768, X25519
        assert shares[4 + 1216 : 4 + 1216 + 4] == b"\x00\x1d\x00\x20"
        first = hello.chunks[0]
        if split["cut_sni"]:
            assert name not in first.decode("latin-1") and name not in hello.chunks[1].decode("latin-1")
            assert name.startswith(first[-(len(first) - record.index(name.encode())):].decode())
        else:
            assert name.encode() in first
        session = sr.tls_session(name, hello=hello)
        packets = sr.Conversation("c", "10.80.0.10", 40000, "198.18.0.1", 443, session).packets()
        _assert_consistent(packets, sr.MAX_SEGMENT)
        kinds = [(p.kind, p.to_server) for p in packets[3:6]]
        if split.get("ack_between"):
            assert kinds == [("data", True), ("ack", False), ("data", True)]
        else:
            assert kinds == [("data", True), ("data", True), ("ack", False)]


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
    server_directed = sr.default_action_rules(STATEFUL_DEFAULT_ACTIONS)
    drops = [r for r in server_directed if r.startswith("drop ")]
    assert [r.split(" (")[0] for r in drops] == [
        "drop tls any any -> any any", "drop http any any -> any any", "drop tcp any any -> any any",
        "drop tcp any any -> any any", "drop ip any any -> any any",
    ]
    assert all("to_server" in r and "to_client" not in r for r in drops)
    assert "ssl_state:client_hello;" in drops[0] and "http.header_names;" in drops[1]
    assert f"lua:{sr.ALPROTO_UNKNOWN_LUA};" in drops[3]
    assert [r.replace("alert ", "drop ", 1).replace("alert_", "drop_") for r in server_directed if r.startswith("alert ")] == [
        r.replace(str(s), str(s + 10)) for r, s in zip(drops, range(9_000_031, 9_000_036))
    ]
    bidirectional = sr.default_action_rules(["aws:drop_established_app_layer"])
    assert bidirectional[-1].startswith("drop ip any any -> any any (") and "flow:established,to_client;" in bidirectional[-1]
    emulated = sr.emulation(STATEFUL_DEFAULT_ACTIONS)
    assert emulated.app_layer and not emulated.server_to_client
    assert sr.emulation(["aws:drop_established_app_layer"]).server_to_client
    assert not sr.emulation(["aws:drop_established"]).app_layer


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
