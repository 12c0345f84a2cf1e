"""Whole conversations through the firewall policy, every packet accounted for, both directions.

The contract of the firewall rules (components/network/firewall_rules.py) as traffic: for each
stack and for config variants, the Pulumi program is run under mocks, and the policy it declares
(the rule groups in priority order, their rule variables, the stateful default actions) is
replayed through Suricata 7, the engine Network Firewall runs, in simulated IPS mode with the
stream engine inline. How the policy becomes a Suricata run (defaults emulated as final rules,
action order, address groups) and how every packet's verdict is read back is in
tests/network/suricata_replay.py.

What each conversation must come to is worked out here from the CONFIGURATION (the stack file,
the variant's overrides and the documented defaults of components/config.py), never from what the
program made of it (its outputs, its rule variables): the beacon subnets are the first azCount
quarters of vpcCidr, cut here with `ipaddress`; the agents are addresses in allowedIngressCidrs;
the outsiders are addresses proven outside all of them; the allowlist is built here from the
egress groups the configuration enables, the domains it adds and the CRL and AIA URLs of its
certificates. (The host lists Microsoft, AWS and Flexera document are data the test shares with
the program: components/network/egress.py, flexera.py.) So a program that widens AGENT_NET,
widens BEACON_NET or re-enables a disabled group fails here (the mutation tests at the end).

- An agent's mutual-TLS session to each beacon subnet passes whole: no packet dropped in either
  direction (the flow record counts every packet sent, the teardown completes, the flow was
  passed by a rule, and the engine's accepted + blocked counters add up to the pcap). Agents are
  the first and last address of every allowed CIDR; when the configuration admits everyone
  (0.0.0.0/0) the replay says so and sends from addresses all over the address space instead.
- Outsiders are always tried when someone is not admitted: the addresses just outside every
  allowed CIDR and one far from all of them; their TLS and HTTP to a beacon are dropped.
- HTTP to a beacon on 80 passes only with allowHttp; TLS on 80, non-TLS on 443, other ports,
  and addresses of the VPC outside the beacon subnets are dropped.
- Each allowlisted domain passes by TLS SNI and HTTP Host on the egress ports (`.example.com`:
  the domain itself and any subdomain; an exact host: only itself); look-alikes, unlisted hosts,
  the hosts of disabled groups and any name the rules mention without the configuration asking
  for it are dropped.
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
- The egress-handshake rule group decides nothing under the policy's default (a handshake is not
  established, the default lets it through); it is replayed under aws:drop_strict, where it is
  what opens an egress connection, on the egress ports only (`test_egress_handshake_group_under_drop_strict`).

One pcap and one Suricata run per stack or variant; each test reports every mismatch at once.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

import suricata_replay as sr
from components.config import KEYS_BY_NAME
from components.network import firewall_rules
from components.network.egress import AWS_API_SERVICES, WINDOWS_EXTRAS_DOMAINS, WINDOWS_UPDATE_DOMAINS
from components.network.firewall import STATEFUL_DEFAULT_ACTIONS
from components.network.flexera import REGION_TLD, REGIONAL_HOSTS, REVOCATION_DOMAINS
from conftest import Planned, stack_raw
from scripts.offline import run_program
from suricata_replay import needs_suricata

ROOT = Path(__file__).resolve().parents[2]
# Agents when the configuration admits everyone (0.0.0.0/0): far apart, both halves of the space.
ANYONE = ("203.0.113.7", "192.0.2.200", "100.64.1.1", "11.22.33.44")
# Where an outsider far from every allowed CIDR is looked for first (documentation ranges).
FAR_OUTSIDERS = ("192.0.2.200", "198.51.100.200", "203.0.113.200", "100.64.0.200")
EXTERNAL_SERVERS = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544: the replay's internet servers
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


VARIANT = {v.id: v for v in VARIANTS}


def variant_config(variant: Variant) -> tuple[dict[str, str], str]:
    """The stack file's config with the variant's overrides, as Pulumi hands it to the program."""
    raw, region = stack_raw(variant.stack)
    for key, value in variant.overrides.items():
        raw[key] = value if isinstance(value, str) else json.dumps(value)
    return raw, region


# --- the policy the program declares ----------------------------------------------------------


@dataclass
class Policy:
    rules: list[str]  # every rule group's rules, in policy priority order
    groups: dict[str, list[str]]  # rule group resource name -> its rules, in priority order
    address_groups: dict[str, tuple[str, ...]]  # what the engine runs with, never an expectation
    default_actions: list[str]


def declared_policy(variant: Variant) -> Policy:
    raw, region = variant_config(variant)
    planned = Planned(run_program(variant.stack, raw, region))
    policy = planned.one("firewallPolicy:FirewallPolicy").inputs["firewallPolicy"]
    groups = {g.arn: g for g in planned.of_type("ruleGroup:RuleGroup")}
    by_name: dict[str, list[str]] = {}
    address_groups: dict[str, tuple[str, ...]] = {}
    for ref in sorted(policy["statefulRuleGroupReferences"], key=lambda ref: ref["priority"]):
        group = groups[ref["resourceArn"]]
        body = group.inputs["ruleGroup"]
        by_name[group.name] = body["rulesSource"]["rulesString"].splitlines()
        for ip_set in body["ruleVariables"]["ipSets"]:
            cidrs = tuple(ip_set["ipSet"]["definitions"])
            # Suricata's address groups are global; Network Firewall's are per rule group. Same
            # meaning as long as every group that names a variable gives it the same CIDRs.
            assert address_groups.setdefault(ip_set["key"], cidrs) == cidrs, ip_set["key"]
    return Policy(
        rules=[rule for rules in by_name.values() for rule in rules],
        groups=by_name,
        address_groups=address_groups,
        default_actions=list(policy["statefulDefaultActions"]),
    )


_SNI_CONTENT = re.compile(r'tls\.sni; (?:dotprefix; )?content:"([^"]+)"')


def names_in_rules(rules: list[str]) -> list[str]:
    """The names the rules pass by SNI: tried as probes (what they must come to is the configuration's call)."""
    return [m[1] for rule in rules for m in _SNI_CONTENT.finditer(rule)]


# --- what the configuration says --------------------------------------------------------------


def setting(raw: dict[str, str], key: str) -> Any:
    """A config value as given (arrays, integers and booleans as JSON text), else its documented default."""
    spec = KEYS_BY_NAME[key]
    if key not in raw:
        return spec.default
    return raw[key] if spec.type == "string" else json.loads(raw[key])


def _certificate_urls(path: Path) -> list[str]:
    """CRL distribution points (full and delta) and AIA caIssuers of every CA-issued certificate in a PEM file."""
    urls = []
    for cert in x509.load_pem_x509_certificates(path.read_bytes()):
        if cert.subject == cert.issuer:
            continue  # a root: revocation is checked against what the certificates below it name
        for kind in (x509.CRLDistributionPoints, x509.FreshestCRL):
            try:
                points = cert.extensions.get_extension_for_class(kind).value
            except x509.ExtensionNotFound:
                continue
            urls += [n.value for p in points for n in p.full_name or [] if isinstance(n, x509.UniformResourceIdentifier)]
        try:
            access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        except x509.ExtensionNotFound:
            continue
        urls += [d.access_location.value for d in access
                 if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
                 and isinstance(d.access_location, x509.UniformResourceIdentifier)]
    return urls


def revocation_endpoints(raw: dict[str, str], region: str) -> tuple[list[str], set[int]]:
    """Hosts and ports the beacon fetches CRLs and CA certificates from: crlUrls, crlHosting s3, and
    the URLs in clientCaCertificates and sampleDeviceCertificate; http(s) with a host name only (an
    ldap:// entry or an IP address cannot pass a filter by name)."""
    urls = list(setting(raw, "crlUrls"))
    if setting(raw, "crlHosting") == "s3":
        urls.append(f"http://{setting(raw, 'crlBucketName')}.s3.{region}.amazonaws.com/")
    sample = setting(raw, "sampleDeviceCertificate")
    for path in list(setting(raw, "clientCaCertificates")) + ([sample] if sample else []):
        urls += _certificate_urls(ROOT / path)
    hosts, ports = [], set()
    for url in urls:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host or re.fullmatch(r"[\d.]+|.*:.*", host):
            continue
        hosts.append(host)
        ports.add(parts.port or (80 if parts.scheme == "http" else 443))
    return hosts, ports


def configured_allowlist(raw: dict[str, str], region: str) -> dict[str, tuple[str, ...]]:
    """Enabled egress group -> its domains, from the keys that describe them (docs: the egress groups)."""
    flexera_region = setting(raw, "flexeraRegion")
    tld = REGION_TLD.get(flexera_region)  # None: on-premises, nothing of Flexera's cloud
    aws_suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    groups = {
        "crl": revocation_endpoints(raw, region)[0] + setting(raw, "crlDomains"),
        "flexera-parent": ([h.format(tld=tld) for h in REGIONAL_HOSTS] + list(REVOCATION_DOMAINS) if tld else [])
        + setting(raw, "flexeraParentDomains"),
        "aws-endpoints": [f"{service}.{region}.{aws_suffix}" for service in AWS_API_SERVICES]
        + setting(raw, "awsEndpointsExtraDomains"),
        "windows-update": list(WINDOWS_UPDATE_DOMAINS) + setting(raw, "windowsUpdateExtraDomains"),
    }
    if setting(raw, "windowsExtrasEgress"):
        groups["windows-extras"] = list(WINDOWS_EXTRAS_DOMAINS)
    disabled = set(setting(raw, "egressDisabledGroups"))
    return {
        group: tuple(sorted({d.lower().removesuffix(".") for d in domains}))
        for group, domains in groups.items() if group not in disabled
    }


def uncovered(cidrs: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """The IPv4 space outside every CIDR of `cidrs`, as networks."""
    rest = [ipaddress.IPv4Network("0.0.0.0/0")]
    # CIDR blocks nest or are disjoint: a piece of `rest` holds `net` (cut), lies in it (gone) or misses it (kept).
    for net in ipaddress.collapse_addresses(cidrs):
        rest = [piece for r in rest if not r.subnet_of(net)
                for piece in (r.address_exclude(net) if net.subnet_of(r) else [r])]
    return sorted(rest)


# Not used as an outsider: "this network", multicast, reserved and broadcast (not a host's source).
NOT_A_SOURCE = [ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")]


@dataclass(frozen=True)
class Expected:
    """What the firewall must do, by the configuration."""

    vpc: ipaddress.IPv4Network
    beacon_cidrs: tuple[ipaddress.IPv4Network, ...]  # the protected subnets: the first azCount quarters of vpcCidr
    other_quarters: tuple[ipaddress.IPv4Network, ...]  # the rest of the VPC (the last holds the firewall subnets)
    agent_cidrs: tuple[ipaddress.IPv4Network, ...]  # allowedIngressCidrs
    allow_http: bool
    egress_ports: tuple[int, ...]  # egressPorts and the ports of the revocation URLs
    allowlist: dict[str, tuple[str, ...]]

    @property
    def anyone_admitted(self) -> bool:
        return not uncovered(list(self.agent_cidrs))

    @property
    def beacons(self) -> list[str]:
        return [_host(net, 10) for net in self.beacon_cidrs]

    def ingress_sources(self) -> tuple[list[str], list[str]]:
        """(agents, outsiders). Agents: the first and last address of each allowed CIDR, or ANYONE if
        everyone is admitted. Outsiders: the address on each side of every allowed CIDR that no other
        allowed CIDR holds, and one far from all of them; never in the VPC or the replay's servers."""
        if self.anyone_admitted:
            return list(ANYONE), []
        agents = list(dict.fromkeys(str(a) for net in self.agent_cidrs for a in (net.network_address, net.broadcast_address)))
        outside = uncovered(list(self.agent_cidrs))
        near = []
        for net in ipaddress.collapse_addresses(self.agent_cidrs):
            if int(net.network_address) > 0:
                near.append(net.network_address - 1)
            if int(net.broadcast_address) < 2**32 - 1:
                near.append(net.broadcast_address + 1)
        far = [ipaddress.IPv4Address(a) for a in FAR_OUTSIDERS] + [net[min(1, net.num_addresses - 1)] for net in outside]
        usable = [a for a in near + far
                  if any(a in net for net in outside) and not any(a in net for net in [self.vpc, EXTERNAL_SERVERS, *NOT_A_SOURCE])]
        outsiders = [a for a in usable if a in near] + [a for a in usable if a not in near][:1]
        return agents, list(dict.fromkeys(str(a) for a in outsiders))


def expected_from_config(variant: Variant) -> Expected:
    raw, region = variant_config(variant)
    vpc = ipaddress.IPv4Network(setting(raw, "vpcCidr"))
    quarters = list(vpc.subnets(prefixlen_diff=2))
    az_count = setting(raw, "azCount")
    return Expected(
        vpc=vpc,
        beacon_cidrs=tuple(quarters[:az_count]),
        other_quarters=tuple(quarters[az_count:]),
        agent_cidrs=tuple(ipaddress.IPv4Network(c) for c in setting(raw, "allowedIngressCidrs")),
        allow_http=setting(raw, "allowHttp"),
        egress_ports=tuple(sorted(set(setting(raw, "egressPorts")) | revocation_endpoints(raw, region)[1])),
        allowlist=configured_allowlist(raw, region),
    )


def allowed(allowlist: Mapping[str, Sequence[str]], name: str) -> bool:
    """The documented meaning of an allowlist entry: `.example.com` is the domain and every subdomain."""
    name = name.lower()
    for entries in allowlist.values():
        for entry in entries:
            if name == entry or (entry.startswith(".") and (name == entry[1:] or name.endswith(entry))):
                return True
    return False


def _host(net: ipaddress.IPv4Network, offset: int) -> str:
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
    notes: list[str] = field(default_factory=list)  # what the replay wants said (who is an outsider)

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


def conversations_for(variant: Variant, policy: Policy, expected: Expected) -> Plan:
    plan = Plan()
    beacons = expected.beacons
    agents, outsiders = expected.ingress_sources()
    agent = agents[0]
    if expected.anyone_admitted:
        plan.notes.append(f"allowedIngressCidrs {[str(c) for c in expected.agent_cidrs]} admit everyone: "
                          f"agents from {', '.join(ANYONE)}, no outsider exists")
    else:
        assert outsiders, f"{variant.id}: no address outside {expected.agent_cidrs}"
        plan.notes.append(f"outsiders {', '.join(outsiders)} (outside {[str(c) for c in expected.agent_cidrs]})")

    # Ingress: every allowed source to every beacon subnet, a whole mutual-TLS session.
    for beacon in beacons:
        for source in agents:
            plan.tls(f"agent {source} tls -> {beacon}:443", source, beacon, 443, BEACON_NAME, True)
        # A ClientHello too big for one segment (an agent whose TLS library sends a post-quantum
        # key share by default): the first data packet carries an incomplete handshake message.
        for layout, split in SPLIT_LAYOUTS.items():
            plan.tls(f"agent tls, {SPLIT} ({layout}) -> {beacon}:443", agent, beacon, 443, BEACON_NAME, True,
                     hello=sr.split_client_hello(BEACON_NAME, **split))
        plan.http(f"agent http -> {beacon}:80", agent, beacon, 80, BEACON_NAME, expected.allow_http, path="/ManageSoftDL/")
    beacon = beacons[0]
    plan.tls("agent tls -> beacon:80", agent, beacon, 80, BEACON_NAME, False)
    plan.http("agent http (not tls) -> beacon:443", agent, beacon, 443, BEACON_NAME, False, path="/ManageSoftDL/")
    plan.raw("agent ssh banner (not tls) -> beacon:443", agent, beacon, 443, SSH_BANNER, SSH_BANNER, False)
    plan.raw("agent garbage (not tls) -> beacon:443", agent, beacon, 443, GARBAGE, GARBAGE[::-1], False)
    plan.tls("agent tls -> beacon:8443", agent, beacon, 8443, BEACON_NAME, False)
    plan.raw("agent ssh -> beacon:22", agent, beacon, 22, SSH_BANNER, SSH_BANNER, False)
    plan.raw("agent rdp -> beacon:3389", agent, beacon, 3389, RDP_CONNECT, RDP_CONFIRM, False)
    for quarter in expected.other_quarters:  # the VPC outside the beacon subnets: no beacon there
        host = _host(quarter, 10)
        plan.tls(f"agent tls -> {host}:443 (VPC, not a beacon subnet)", agent, host, 443, BEACON_NAME, False)
    for outsider in outsiders:
        plan.tls(f"outsider {outsider} tls -> beacon:443", outsider, beacon, 443, BEACON_NAME, False)
        plan.http(f"outsider {outsider} http -> beacon:80", outsider, beacon, 80, BEACON_NAME, False)

    # Egress: the allowlist's names, their look-alikes, unlisted hosts, on every egress port.
    tls_ports = [p for p in expected.egress_ports if p != 80]
    http_ports = [p for p in expected.egress_ports if p != 443]
    names: list[str] = []
    for entries in expected.allowlist.values():
        for entry in entries:
            bare = entry.lstrip(".")
            names += [f"x.{bare}", bare] if entry.startswith(".") else [bare, f"x.{bare}"]
            names += [f"evil{bare}", f"{bare}.evil.net"]
    names += list(variant.also_try) + ["unlisted.example.net", "example.com"]
    # Whatever the rules pass by name is tried too: a name the configuration does not ask for is refused.
    names += [n for entry in names_in_rules(policy.rules) for n in (entry.lstrip("."), f"x.{entry.lstrip('.')}")]
    first_exact = next((e for entries in expected.allowlist.values() for e in entries if not e.startswith(".")), None)
    mixed_case = [first_exact.upper()] if first_exact else []  # SNI is not normalised (nocase); Host is
    names = list(dict.fromkeys(names + mixed_case))
    for i, name in enumerate(names):
        source = beacons[i % len(beacons)]
        verdict = allowed(expected.allowlist, name)
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
    for entry in expected.allowlist.get("aws-endpoints", ()):
        name = entry.lstrip(".")
        plan.tls(f"egress tls {name}:443, {SPLIT} (Go layout, ACK between)", beacons[0], plan.external_server(), 443, name,
                 True, client_name="beacon.internal", hello=sr.split_client_hello(name, cut_sni=False, ack_between=True))
    for port in tls_ports:
        plan.raw(f"egress garbage (not tls) :{port}", beacons[0], plan.external_server(), port, GARBAGE, GARBAGE[::-1], False)
    for name in variant.must_drop:
        assert not allowed(expected.allowlist, name), f"{variant.id}: {name} is allowed, the variant is not testing what it says"
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


def verdict_problems(plan: "Plan", run: sr.Replay, emulated: sr.DefaultEmulation) -> list[str]:
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
    return problems


def check(variant: Variant, workdir: Path) -> tuple[Policy, Expected, sr.Replay, Plan, list[str]]:
    policy = declared_policy(variant)
    expected = expected_from_config(variant)
    emulated = sr.emulation(policy.default_actions)
    assert emulated.action, f"the policy has no stateful drop default: {policy.default_actions}"
    plan = conversations_for(variant, policy, expected)
    run = sr.replay(workdir, plan.conversations, sr.policy_rules(policy.rules, policy.default_actions), policy.address_groups)
    return policy, expected, run, plan, verdict_problems(plan, run, emulated)


@needs_suricata
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
def test_whole_conversations_pass_or_drop_as_the_policy_says(variant: Variant, tmp_path: Path) -> None:
    policy, expected, run, plan, problems = check(variant, tmp_path)
    problems += split_client_hello_problems(variant, expected, policy, run, plan)
    passed = sum(plan.expect_pass.values())
    print(
        f"{variant.id}: {len(plan.conversations)} conversations ({passed} pass, {len(plan.conversations) - passed} drop), "
        f"{run.total_packets} packets, suricata {run.seconds:.2f}s; " + "; ".join(plan.notes)
    )
    assert not problems, f"{variant.id}: {len(problems)} of {len(plan.conversations)} conversations wrong:\n" + "\n".join(problems)
    # The contract's centre, asserted on its own as well: agents' TLS to every beacon subnet, and
    # outsiders refused whenever the configuration leaves anyone out.
    agent_sessions = [n for n in plan.expect_pass if n.startswith("agent ") and ":443" in n and plan.expect_pass[n]]
    assert len(agent_sessions) >= 2 * len(expected.beacon_cidrs)
    assert all(not run[n].dropped and run[n].flow["action"] == "pass" for n in agent_sessions)
    outsider_sessions = [n for n in plan.expect_pass if n.startswith("outsider ")]
    assert bool(outsider_sessions) != expected.anyone_admitted
    assert not any(plan.expect_pass[n] or run[n].flow.get("action") == "pass" for n in outsider_sessions)


SHIPPED_STACKS = sorted(path.name.split(".")[1] for path in (ROOT / "stacks").glob("Pulumi.*.yaml"))


def test_every_shipped_stack_is_replayed() -> None:
    plain = {v.id for v in VARIANTS if v.id == v.stack and not v.overrides}
    assert SHIPPED_STACKS and set(SHIPPED_STACKS) <= plain, f"stacks without a plain variant: {sorted(set(SHIPPED_STACKS) - plain)}"


def allowlisted_hosts(allowlist: dict[str, tuple[str, ...]]) -> list[str]:
    """Names each allowlist entry admits, as the replay sends them: `d` and `x.d` for `.d`, else the host."""
    hosts: list[str] = []
    for entries in allowlist.values():
        for entry in entries:
            bare = entry.lstrip(".")
            hosts += [bare, f"x.{bare}"] if entry.startswith(".") else [bare]
    return list(dict.fromkeys(hosts))


def split_client_hello_problems(variant: Variant, expected: Expected, policy: Policy, run: sr.Replay, plan: Plan) -> list[str]:
    """Issue 19, point 5: a ClientHello in two TCP segments costs no retransmission.

    For every allowlisted host on every TLS egress port and from an agent to every beacon subnet,
    a split ClientHello conversation exists and not one of its packets was dropped, either way
    (problems_if_passed), the first segment being an incomplete ClientHello; split ClientHellos
    to hosts off the allowlist are refused from the segment that completes the ClientHello on,
    by the rule that needs it parsed whole; non-TLS bytes are refused (problems_if_blocked).
    """
    emulated = sr.emulation(policy.default_actions)
    tls_ports = [p for p in expected.egress_ports if p != 80]
    wanted = {f"egress tls {h}:{p}, {SPLIT} (SNI cut)" for h in allowlisted_hosts(expected.allowlist) for p in tls_ports}
    wanted |= {f"agent tls, {SPLIT} ({layout}) -> {b}:443" for b in expected.beacons for layout in SPLIT_LAYOUTS}
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
    expected = expected_from_config(VARIANTS[0])
    host = expected.allowlist["aws-endpoints"][0]
    source = expected.beacons[0]
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
    beacon = expected_from_config(VARIANTS[0]).beacons[0]
    session = sr.Conversation("agent tls", ANYONE[0], 40000, beacon, 443, sr.tls_session("beacon.example.com"))
    ssh = sr.Conversation("agent ssh", ANYONE[0], 40001, beacon, 443, sr.raw_exchange(SSH_BANNER, SSH_BANNER))
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


# --- the egress-handshake group, under the default it exists for ------------------------------

STRICT_DEFAULTS = ["aws:drop_strict", "aws:alert_strict"]
HANDSHAKE_GROUP = "-egress-handshake"  # the end of its resource name


def handshake_refused_problems(verdict: sr.FlowVerdict, sid: int) -> list[str]:
    """Why this is not a connection refused at the TCP handshake (empty: it was). The SYN, the SYN-ACK
    and the ACK are each dropped by the default's rule, so no real client gets a connection; the
    replay sends the rest regardless, and what happens to it proves nothing."""
    wrong = [verdict.label(i) for i in range(3) if verdict.dropped.get(i, {}).get("alert", {}).get("signature_id") != sid]
    return [f"handshake packets not dropped by the default (sid {sid}): {', '.join(wrong)}"] if wrong else []


@needs_suricata
def test_egress_handshake_group_under_drop_strict(tmp_path: Path) -> None:
    """The egress-handshake group decides nothing under the policy's default, which lets a TCP
    handshake through (it is not established). Under aws:drop_strict, which drops every packet
    no rule passes, it is what opens an egress connection, and only on the egress ports:

    - with the policy's rules: TLS and HTTP to a host of every enabled group on every egress port
      (80, 443 and the CRL's 8080 in this variant) pass whole; to an unlisted host, and non-TLS
      bytes, the handshake gets through and the client's first data packet is the first dropped;
      an allowlisted host on a port that is no egress port is refused at the handshake;
    - without the group's rules, every one of those conversations is refused at the handshake.

    What else drop_strict would cost, and why it is not the policy's default: the ingress group
    has no handshake rule (an agent's SYN is dropped), and the first segment of a split
    ClientHello is dropped even to an allowlisted host (its SNI is not readable yet).
    """
    variant = VARIANT["dev-egress-8080-extra-crl"]
    policy, expected = declared_policy(variant), expected_from_config(variant)
    (handshake_group,) = [name for name in policy.groups if name.endswith(HANDSHAKE_GROUP)]
    without_group = [rule for name, rules in policy.groups.items() if name != handshake_group for rule in rules]
    strict = sr.emulation(STRICT_DEFAULTS)
    sid = strict.sids["any"]
    beacon = expected.beacons[0]
    tls_ports = [p for p in expected.egress_ports if p != 80]
    http_ports = [p for p in expected.egress_ports if p != 443]
    assert 8080 in tls_ports and 8080 in http_ports, expected.egress_ports

    plan = Plan()
    hosts = [entries[0].lstrip(".") for entries in expected.allowlist.values() if entries]  # the group's rules know ports, not names
    for host in hosts + ["unlisted.example.net"]:
        passes = allowed(expected.allowlist, host)
        for port in tls_ports:
            plan.tls(f"egress tls {host}:{port}", beacon, plan.external_server(), port, host, passes, client_name="beacon.internal")
        for port in http_ports:
            plan.http(f"egress http {host}:{port}", beacon, plan.external_server(), port, host, passes)
    for port in tls_ports:
        plan.raw(f"egress garbage (not tls) :{port}", beacon, plan.external_server(), port, GARBAGE, GARBAGE[::-1], False)
    opened = list(plan.expect_pass)
    assert sum(plan.expect_pass.values()) >= 4 * len(tls_ports + http_ports)
    off_port = next(p for p in range(8443, 9000) if p not in expected.egress_ports)
    closed = [
        sr.Conversation(f"egress tls {hosts[0]}:{off_port} (no egress port)", beacon, 41000, plan.external_server(), off_port,
                        sr.tls_session(hosts[0], client_name="beacon.internal")),
        sr.Conversation("agent tls -> beacon:443", ANYONE[0], 41001, beacon, 443, sr.tls_session(BEACON_NAME)),
    ]
    split = sr.Conversation(f"egress tls {hosts[0]}:443, {SPLIT}", beacon, 41002, plan.external_server(), 443,
                            sr.tls_session(hosts[0], client_name="beacon.internal", hello=sr.split_client_hello(hosts[0])))
    conversations = plan.conversations + closed + [split]

    run = sr.replay(tmp_path / "with", conversations, sr.policy_rules(policy.rules, STRICT_DEFAULTS), policy.address_groups)
    problems = verdict_problems(plan, run, strict)
    problems += [f"{c.name}: {p}" for c in closed for p in handshake_refused_problems(run[c.name], sid)]
    verdict = run[split.name]
    if sorted(verdict.dropped) != [verdict.first_data]:
        problems.append(f"{split.name}: expected only the first segment dropped: {verdict.describe()}")
    assert not problems, "with the egress-handshake group, under drop_strict:\n" + "\n".join(problems)

    run = sr.replay(tmp_path / "without", plan.conversations, sr.policy_rules(without_group, STRICT_DEFAULTS), policy.address_groups)
    problems = run.accounting_problems() + [f"{n}: {p}" for n in opened for p in handshake_refused_problems(run[n], sid)]
    assert not problems, "without the egress-handshake group, under drop_strict:\n" + "\n".join(problems)


# --- the replay fails a program that strays from the configuration ----------------------------


def _widen_agent_net(monkeypatch: pytest.MonkeyPatch) -> None:
    real = firewall_rules.ingress_rules
    monkeypatch.setattr(firewall_rules, "ingress_rules", lambda agents, beacons, allow_http: real(["0.0.0.0/0"], beacons, allow_http))


def _widen_beacon_net(monkeypatch: pytest.MonkeyPatch) -> None:
    real = firewall_rules.ingress_rules
    monkeypatch.setattr(firewall_rules, "ingress_rules", lambda agents, beacons, allow_http: real(agents, ["10.0.0.0/8"], allow_http))


def _re_enable_windows_update(monkeypatch: pytest.MonkeyPatch) -> None:
    import components.stack as stack

    real = stack.egress_allowlist
    monkeypatch.setattr(stack, "egress_allowlist",
                        lambda cfg, crl_hosts=(): {**real(cfg, crl_hosts), "windows-update": sorted(WINDOWS_UPDATE_DOMAINS)})


def _names_windows_update(plan: Plan, name: str) -> bool:
    kind, host = plan.payload[name]
    return kind != "raw" and allowed({"windows-update": WINDOWS_UPDATE_DOMAINS}, host)


# mutation -> (variant whose configuration it contradicts, the conversations that must then fail)
MUTATIONS = {
    "AGENT_NET 0.0.0.0/0 while allowedIngressCidrs are 203.0.113.0/24, 198.51.100.0/24":
        (_widen_agent_net, "prod-http-restricted", lambda plan, name: name.startswith("outsider ")),
    "BEACON_NET 10.0.0.0/8 instead of the protected subnets":
        (_widen_beacon_net, "dev", lambda plan, name: "not a beacon subnet" in name),
    "windows-update allowed while egressDisabledGroups names it":
        (_re_enable_windows_update, "prod-groups-disabled", _names_windows_update),
}


@needs_suricata
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_replay_fails_a_program_that_strays_from_the_configuration(
    mutation: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The expectations come from the configuration: a program that admits more than it says
    fails exactly the conversations the configuration refuses and the mutation lets through."""
    mutate, variant_id, should_fail = MUTATIONS[mutation]
    mutate(monkeypatch)
    _, _, _, plan, problems = check(VARIANT[variant_id], tmp_path)
    failed = {problem.split(": expected ")[0] for problem in problems}
    must_fail = {name for name in plan.expect_pass if should_fail(plan, name)}
    assert must_fail and not any(plan.expect_pass[name] for name in must_fail), must_fail
    assert failed == must_fail, f"{mutation}: failed {sorted(failed)}, expected {sorted(must_fail)}"


# --- the expectations themselves (no Suricata needed) -----------------------------------------


def test_expectations_come_from_the_configuration() -> None:
    dev, prod = expected_from_config(VARIANT["dev"]), expected_from_config(VARIANT["prod"])
    # The layout: the first azCount quarters of vpcCidr are the beacon subnets.
    assert [str(n) for n in dev.beacon_cidrs] == ["10.80.0.0/24"] and dev.beacons == ["10.80.0.10"]
    assert [str(n) for n in prod.beacon_cidrs] == ["10.81.0.0/24", "10.81.1.0/24"]
    assert [str(n) for n in prod.other_quarters] == ["10.81.2.0/24", "10.81.3.0/24"]
    # The CRL group: dev's from its sample certificate's CDP and AIA (an ldap:// CDP is no host).
    assert dev.allowlist["crl"] == ("crl.example.com", "pki.example.com") and dev.egress_ports == (80, 443)
    crl443 = expected_from_config(VARIANT["dev-egress-443-only"])
    assert crl443.allowlist["crl"] == ("crl.example.com",) and crl443.egress_ports == (443,)
    assert expected_from_config(VARIANT["dev-egress-8080-extra-crl"]).egress_ports == (80, 443, 8080)
    groups = expected_from_config(VARIANT["prod-groups-disabled"]).allowlist
    assert set(groups) == {"crl", "aws-endpoints"}
    assert "windows-extras" in expected_from_config(VARIANT["windows-extras-on"]).allowlist
    assert "windows-extras" not in prod.allowlist
    eu = expected_from_config(VARIANT["flexera-eu-only"]).allowlist["flexera-parent"]
    assert "beacon.flexnetmanager.eu" in eu and not any(d.endswith(".com") and "flexera" in d for d in eu)
    assert "ssm.us-east-1.amazonaws.com" in prod.allowlist["aws-endpoints"]


def test_outsiders_are_always_there_unless_everyone_is_admitted() -> None:
    for variant in VARIANTS:
        expected = expected_from_config(variant)
        agents, outsiders = expected.ingress_sources()
        everyone = any(c.prefixlen == 0 for c in expected.agent_cidrs)
        assert expected.anyone_admitted == everyone, variant.id
        if everyone:
            assert agents == list(ANYONE) and outsiders == [], variant.id
            continue
        assert outsiders, variant.id
        for outsider in map(ipaddress.ip_address, outsiders):
            assert not any(outsider in c for c in expected.agent_cidrs) and outsider not in expected.vpc
        for agent in map(ipaddress.ip_address, agents):
            assert any(agent in c for c in expected.agent_cidrs)
    restricted = expected_from_config(VARIANT["prod-http-restricted"])
    agents, outsiders = restricted.ingress_sources()
    assert agents == ["203.0.113.0", "203.0.113.255", "198.51.100.0", "198.51.100.255"]
    # just outside each CIDR on both sides (a /23 in the rules would admit one of them), and one far away
    assert outsiders == ["198.51.99.255", "198.51.101.0", "203.0.112.255", "203.0.114.0", "192.0.2.200"]

    def sources(*cidrs: str) -> tuple[list[str], list[str]]:
        from dataclasses import replace

        return replace(restricted, agent_cidrs=tuple(ipaddress.IPv4Network(c) for c in cidrs)).ingress_sources()

    assert sources("0.0.0.0/1", "128.0.0.0/1") == (list(ANYONE), [])  # everyone, without a 0.0.0.0/0
    assert sources("10.0.1.0/24", "10.0.2.0/24")[1] == ["10.0.0.255", "10.0.3.0", "192.0.2.200"]  # not the 10.0.2.0 between
    # every documentation address taken: the far outsider comes from the space left, a usable source
    far = ipaddress.ip_address(sources("192.0.0.0/8", "198.51.100.0/24", "203.0.113.0/24", "100.64.0.0/10")[1][-1])
    assert far.is_global and not any(far in ipaddress.ip_network(c) for c in ("192.0.0.0/8", "100.64.0.0/10"))


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
    # flow:stateless: every packet, and not an IP-only rule (see default_action_rules)
    assert sr.default_action_rules(["aws:drop_strict", "aws:alert_strict"]) == [
        'drop ip any any -> any any (msg:"aws:drop_strict"; flow:stateless; sid:9000001; rev:1;)',
        'alert ip any any -> any any (msg:"aws:alert_strict"; flow:stateless; sid:9000003; rev:1;)',
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
