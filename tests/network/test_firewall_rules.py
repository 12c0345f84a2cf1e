"""Network Firewall rule groups (components/network/firewall_rules.py).

Structure is checked in Python; the syntax and the matching semantics are checked with a real
Suricata (the engine Network Firewall runs) when one is installed: `suricata -T` must load
every generated rule, and a replay of a hand-built pcap proves that the domain rules match
exactly the hosts they should (dotprefix, startswith/endswith, nocase). That whole
conversations pass (every packet, both directions) or are dropped under the policy's defaults
is tests/network/test_firewall_flows.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import config
from components.network import egress, layout
from components.network import firewall_rules as fr
from suricata_replay import needs_suricata, tcp_frame

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
SID = re.compile(r"\bsid:(\d+);")


def load(region: str = "us-east-1", **raw) -> config.BeaconConfig:
    strings = {k: json.dumps(v) if isinstance(v, list) else v for k, v in raw.items()}
    return config.load(strings, "dev", region)


def groups_for(cfg: config.BeaconConfig, crl_hosts: tuple[str, ...] = ()) -> list[fr.RuleGroupSpec]:
    """The rule groups the way the program derives them: config -> layout -> egress -> rules."""
    azs = layout.split_vpc(cfg.vpc_cidr, ZONES[: cfg.az_count])
    return fr.rule_groups(
        vpc_cidr=cfg.vpc_cidr,
        beacon_cidrs=[a.protected_cidr for a in azs],
        agent_cidrs=cfg.allowed_ingress_cidrs,
        allow_http=cfg.allow_http,
        egress_ports=cfg.egress_ports,
        allowlist=egress.egress_allowlist(cfg, crl_hosts),
    )


FULL = dict(
    vpcCidr="10.80.0.0/22",
    azCount="3",
    allowHttp="true",
    allowedIngressCidrs=["203.0.113.0/24", "198.51.100.0/24"],
    egressPorts=[80, 443, 8443],
    crlUrls=["http://crl.example.com/ca.crl"],
    crlDomains=[".pki.example.org"],
    flexeraParentDomains=["beacon.flexnetmanager.example"],
)


def sids(rules) -> list[int]:
    out = []
    for rule in rules:
        found = SID.findall(rule)
        assert len(found) == 1, rule
        out.append(int(found[0]))
    return out


# --- capacity -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rules", "capacity"),
    [(0, 50), (1, 50), (25, 50), (26, 100), (50, 100), (51, 150), (100, 200), (101, 250), (1000, 2000)],
)
def test_capacity_for(rules: int, capacity: int) -> None:
    assert fr.capacity_for(rules) == capacity


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(0, 30000))
def test_capacity_properties(rules: int) -> None:
    capacity = fr.capacity_for(rules)
    assert capacity >= 50 and capacity % 50 == 0
    assert capacity >= 2 * rules
    assert capacity - 2 * rules < 50 or rules <= 25  # the least such multiple
    assert fr.capacity_for(rules + 1) >= capacity


def test_group_capacity_follows_its_rule_count() -> None:
    for group in groups_for(load(**FULL)):
        assert group.capacity == fr.capacity_for(len(group.rules))
        assert group.capacity >= len(group.rules)


# --- the three groups -----------------------------------------------------------------------

def test_groups_in_evaluation_order_with_rule_counts() -> None:
    cfg = load(**FULL)
    ingress, handshake, domains = groups_for(cfg)
    assert [g.key for g in (ingress, handshake, domains)] == ["ingress", "egress-handshake", "egress-domains"]
    assert len(ingress.rules) == 2  # 443 and 80
    assert len(handshake.rules) == 2  # to_server and the reply
    allowlist = egress.egress_allowlist(cfg)
    assert len(domains.rules) == 2 * len(egress.flatten(allowlist)) == 2 * sum(map(len, allowlist.values()))


def test_rules_string_is_one_rule_per_line() -> None:
    for group in groups_for(load(**FULL)):
        assert group.rules_string.endswith("\n")
        assert group.rules_string.splitlines() == list(group.rules)
        assert all("\n" not in rule and "\r" not in rule for rule in group.rules)
        assert group.description


def test_sids_are_unique_across_all_groups() -> None:
    many = [f"h{i}.example.com" for i in range(60)]
    cfg = load(**FULL, windowsUpdateExtraDomains=many)
    all_sids = [s for group in groups_for(cfg) for s in sids(group.rules)]
    assert len(all_sids) == len(set(all_sids))
    assert all(0 < s < 2**31 for s in all_sids)


def test_rule_groups_are_deterministic() -> None:
    a = [(g.key, g.rules, dict(g.ip_sets)) for g in groups_for(load(**FULL))]
    b = [(g.key, g.rules, dict(g.ip_sets)) for g in groups_for(load(**FULL))]
    assert a == b


def test_ingress_admits_443_only_by_default() -> None:
    group = fr.ingress_rules(["0.0.0.0/0"], ["10.80.0.0/24"], allow_http=False)
    assert len(group.rules) == 1
    rule = group.rules[0]
    assert rule.startswith("pass tls $AGENT_NET any -> $BEACON_NET 443 (")
    assert "flow:to_server" in rule
    assert not any(re.search(r"\$BEACON_NET 80\b", r) for r in group.rules)
    assert "tcp/443" in group.description and "80" not in group.description


def test_ingress_admits_80_only_with_allow_http() -> None:
    group = groups_for(load(allowHttp="true"))[0]
    assert [re.search(r"\$BEACON_NET (\d+) ", r)[1] for r in group.rules] == ["443", "80"]
    assert [r.split()[1] for r in group.rules] == ["tls", "http"]
    assert groups_for(load())[0].rules == fr.ingress_rules(["0.0.0.0/0"], ["10.80.0.0/24", "10.80.1.0/24"], False).rules


@pytest.mark.parametrize("allow_http", [False, True])
def test_ingress_passes_whole_flows(allow_http: bool) -> None:
    """Application-layer passes: Suricata passes the whole flow, the beacon's replies included.

    A `pass tcp ... (flow:to_server;)` passes only the packets it matches, of any protocol; under
    a both-directions default (aws:drop_established) the replies would be dropped
    (tests/network/test_firewall_flows.py replays it).
    """
    group = fr.ingress_rules(["203.0.113.0/24"], ["10.80.0.0/24"], allow_http)
    for rule in group.rules:
        assert re.match(r"pass (tls|http) \$AGENT_NET any -> \$BEACON_NET \d+ \(", rule), rule
        assert "pass tcp" not in rule and "pass ip" not in rule
    # sids stay with their meaning (tls/443, http/80); rev 2 since the protocol became tls/http
    assert sids(group.rules) == [100001, 100002][: len(group.rules)]
    assert all("rev:2;" in rule for rule in group.rules)


@pytest.mark.parametrize(
    ("ports", "port_list"),
    [([443], "443"), ([80, 443], "[80,443]"), ([8443, 443, 80], "[80,443,8443]"), ([443, 443], "443")],
)
def test_handshake_rules_cover_the_egress_ports(ports: list[int], port_list: str) -> None:
    group = fr.egress_handshake_rules("10.80.0.0/22", ports)
    out, back = group.rules
    assert out.startswith(f"pass tcp $HOME_NET any -> $EXTERNAL_NET {port_list} (")
    assert back.startswith(f"pass tcp $EXTERNAL_NET {port_list} -> $HOME_NET any (")
    assert "flow:not_established, to_server" in out
    assert "flow:not_established, to_client" in back


def test_handshake_rules_from_config_ports() -> None:
    handshake = groups_for(load(**FULL))[1]
    assert "$EXTERNAL_NET [80,443,8443] ->" in handshake.rules[1]


def _domain_rules(domain: str) -> tuple[str, str]:
    group = fr.egress_domain_rules("10.80.0.0/22", {"crl": [domain]})
    tls, http = group.rules
    return tls, http


def test_exact_host_uses_startswith_and_endswith() -> None:
    tls, http = _domain_rules("crl.example.com")
    assert tls.startswith("pass tls $HOME_NET any -> $EXTERNAL_NET any (")
    assert 'tls.sni; content:"crl.example.com"; startswith; endswith; nocase;' in tls
    assert http.startswith("pass http $HOME_NET any -> $EXTERNAL_NET any (")
    assert 'http.host; content:"crl.example.com"; startswith; endswith;' in http
    assert "dotprefix" not in tls + http


def test_dot_domain_uses_dotprefix_and_endswith() -> None:
    tls, http = _domain_rules(".example.com")
    assert 'tls.sni; dotprefix; content:".example.com"; endswith; nocase;' in tls
    assert 'http.host; dotprefix; content:".example.com"; endswith;' in http
    assert "startswith" not in tls + http


def test_http_host_patterns_are_lowercase() -> None:
    # Suricata refuses an http.host pattern with uppercase letters (the buffer is normalised).
    for rule in groups_for(load(**FULL))[2].rules:
        if "http.host;" in rule:
            content = re.search(r'content:"([^"]*)"', rule)[1]
            assert content == content.lower()


def test_every_domain_gets_one_sni_and_one_host_rule() -> None:
    cfg = load(**FULL)
    allowlist = egress.egress_allowlist(cfg, crl_hosts=("aia.example.net",))
    rules = fr.egress_domain_rules(cfg.vpc_cidr, allowlist).rules
    for group, domains in allowlist.items():
        for domain in domains:
            mine = [r for r in rules if f'content:"{domain}";' in r]
            assert len([r for r in mine if r.startswith("pass tls ") and "tls.sni;" in r]) == 1, domain
            assert len([r for r in mine if r.startswith("pass http ") and "http.host;" in r]) == 1, domain
            assert all(f"egress {group} {domain}" in r for r in mine)
    assert all("flow:to_server, established;" in r for r in rules)


@pytest.mark.parametrize(
    "hostile",
    [
        'a.com"; sid:1',
        'a.com"; sid:1; rev:1;) pass ip any any -> any any (sid:2;',
        "a.com;",
        "a.com\n",
        "a.com\\",
        "A.COM",
        "a com.org",
        "*.example.com",
        "..example.com",
        "example",
        "",
    ],
)
def test_hostile_domain_is_refused(hostile: str) -> None:
    with pytest.raises(ValueError, match="refusing domain"):
        fr.egress_domain_rules("10.80.0.0/22", {"crl": ["ok.example.com", hostile]})


def test_msg_cannot_break_out_of_its_quotes() -> None:
    assert fr._msg('a"b;c\\d') == "a'b,c/d"


@pytest.mark.parametrize("allowlist", [{}, {"crl": []}, {"crl": [], "flexera-parent": []}])
def test_empty_allowlist_still_yields_a_valid_rules_string(allowlist) -> None:
    group = fr.egress_domain_rules("10.80.0.0/22", allowlist)
    assert group.rules_string.strip()
    assert len(group.rules) == 1
    assert group.rules[0].startswith("alert tcp $HOME_NET any -> $EXTERNAL_NET any (")
    assert not group.rules[0].startswith("pass")
    assert group.capacity == 50


def test_all_groups_disabled_gives_an_alert_only_domain_group() -> None:
    cfg = load(egressDisabledGroups=list(config.EGRESS_GROUPS))
    domains = groups_for(cfg)[2]
    assert len(domains.rules) == 1 and domains.rules[0].startswith("alert ")
    assert "empty" in domains.description.lower()


def test_ip_sets_carry_the_cidrs() -> None:
    cfg = load(**FULL)
    ingress, handshake, domains = groups_for(cfg)
    protected = tuple(a.protected_cidr for a in layout.split_vpc(cfg.vpc_cidr, ZONES))
    assert ingress.ip_sets == {"AGENT_NET": ("203.0.113.0/24", "198.51.100.0/24"), "BEACON_NET": protected}
    assert handshake.ip_sets == {"HOME_NET": ("10.80.0.0/22",)}
    assert domains.ip_sets == {"HOME_NET": ("10.80.0.0/22",)}


def test_every_referenced_variable_is_defined_by_its_group() -> None:
    for group in groups_for(load(**FULL)):
        used = set(re.findall(r"\$([A-Z_]+)", group.rules_string)) - {"EXTERNAL_NET"}
        assert used <= set(group.ip_sets), (group.key, used)
        for cidrs in group.ip_sets.values():
            assert cidrs and all(ipaddress.ip_network(c) for c in cidrs)


# --- Suricata: the real parser and matcher ----------------------------------------------------


def test_suricata_is_installed_in_ci() -> None:
    """Locally the Suricata tests may skip; in CI (CI=true) a missing suricata is a failure."""
    if not os.environ.get("CI"):
        pytest.skip("only enforced in CI")
    assert shutil.which("suricata"), "CI must install suricata (Debian bookworm-backports) before the tests"


def _suricata_yaml(tmp_path: Path, ip_sets: dict[str, tuple[str, ...]], eve: bool = False) -> Path:
    lines = ["%YAML 1.1", "---", "vars:", "  address-groups:"]
    for name, cidrs in sorted(ip_sets.items()):
        lines.append(f'    {name}: "[{",".join(cidrs)}]"')
    lines.append('    EXTERNAL_NET: "!$HOME_NET"')
    lines += ["stats:", "  enabled: no"]
    if eve:
        lines += [
            "outputs:",
            "  - eve-log:",
            "      enabled: yes",
            "      filetype: regular",
            "      filename: eve.json",
            "      types:",
            "        - alert",
        ]
    path = tmp_path / "suricata.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _merged_ip_sets(groups: list[fr.RuleGroupSpec]) -> dict[str, tuple[str, ...]]:
    merged: dict[str, tuple[str, ...]] = {}
    for group in groups:
        for name, cidrs in group.ip_sets.items():
            assert merged.setdefault(name, tuple(cidrs)) == tuple(cidrs), name  # consistent across groups
    return merged


def _suricata_test(tmp_path: Path, rules: str, ip_sets: dict[str, tuple[str, ...]]) -> subprocess.CompletedProcess:
    rules_file = tmp_path / "beacon.rules"
    rules_file.write_text(rules)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    yaml = _suricata_yaml(tmp_path, ip_sets)
    return subprocess.run(
        ["suricata", "-T", "--init-errors-fatal", "-c", str(yaml), "-S", str(rules_file), "-l", str(logs)],
        capture_output=True, text=True, timeout=60,
    )


@needs_suricata
@pytest.mark.parametrize(
    "raw",
    [
        FULL,
        {},
        {"egressPorts": [443], "allowHttp": "false", "azCount": "1"},
        {"egressDisabledGroups": list(config.EGRESS_GROUPS)},
        {"region": "cn-north-1"},
    ],
    ids=["full", "defaults", "one-port", "empty-allowlist", "china"],
)
def test_suricata_loads_every_generated_rule(tmp_path: Path, raw: dict) -> None:
    raw = dict(raw)
    cfg = load(raw.pop("region", "us-east-1"), **raw)
    groups = groups_for(cfg, crl_hosts=("aia.example.net",))
    rules = "".join(g.rules_string for g in groups)
    result = _suricata_test(tmp_path, rules, _merged_ip_sets(groups))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    count = len(rules.splitlines())
    assert f"{count} rules successfully loaded, 0 rules failed" in output, output
    # Not even a warning (e.g. an uppercase http.host pattern, a conflicting content modifier).
    assert not re.search(r"^(Warning|Error)", output, re.M), output


@needs_suricata
@pytest.mark.parametrize(
    "broken",
    [
        # a domain that escaped its quotes, as a hostile CRL host would if it were not refused
        'pass tls $HOME_NET any -> $EXTERNAL_NET any (tls.sni; content:"a.com"; sid:1"; startswith; endswith; sid:300001; rev:1;)',
        'pass tls $HOME_NET any -> $EXTERNAL_NET any (tls.sni; content:"a.com"; no_such_keyword; sid:300001; rev:1;)',
        'pass http $HOME_NET any -> $EXTERNAL_NET any (http.host; content:"Upper.Example.com"; endswith; sid:300001; rev:1;)',
        'pass tcp $UNDEFINED_NET any -> $EXTERNAL_NET 443 (flow:to_server; sid:300001; rev:1;)',
    ],
    ids=["escaped-quote", "unknown-keyword", "uppercase-http-host", "undefined-variable"],
)
def test_suricata_check_catches_a_broken_rule(tmp_path: Path, broken: str) -> None:
    """The checker is not a rubber stamp: one bad rule among good ones fails the whole load."""
    groups = groups_for(load(**FULL))
    rules = "".join(g.rules_string for g in groups) + broken + "\n"
    result = _suricata_test(tmp_path, rules, _merged_ip_sets(groups))
    assert result.returncode != 0, result.stdout + result.stderr


@needs_suricata
def test_suricata_keywords_are_supported() -> None:
    listed = subprocess.run(["suricata", "--list-keywords=csv"], capture_output=True, text=True, timeout=60).stdout
    names = {line.split(";")[0] for line in listed.splitlines()}
    assert {"tls.sni", "http.host", "dotprefix", "startswith", "endswith", "nocase", "flow"} <= names


# A replay through Suricata's real matcher. The domain rules' action is switched from pass to
# alert so that each match shows up in eve.json; everything else is the generated text.

def _conversation(client: str, server: str, sport: int, dport: int, request: bytes) -> list[bytes]:
    syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
    c, s = 1000, 5000
    cs = lambda seq, ackn, flags, data=b"": tcp_frame(client, server, sport, dport, seq, ackn, flags, data)  # noqa: E731
    sc = lambda seq, ackn, flags: tcp_frame(server, client, dport, sport, seq, ackn, flags)  # noqa: E731
    n = len(request)
    return [
        cs(c, 0, syn),
        sc(s, c + 1, syn | ack),
        cs(c + 1, s + 1, ack),
        cs(c + 1, s + 1, psh | ack, request),
        sc(s + 1, c + 1 + n, ack),
        cs(c + 1 + n, s + 1, fin | ack),
        sc(s + 1, c + 2 + n, fin | ack),
        cs(c + 2 + n, s + 2, ack),
    ]


def _client_hello(sni: str) -> bytes:
    name = sni.encode()
    ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = (
        b"\x03\x03" + bytes(range(32)) + b"\x00"
        + struct.pack("!H", 4) + b"\x13\x01\xc0\x2f"
        + b"\x01\x00"
        + struct.pack("!H", len(ext)) + ext
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def _http_get(host: str) -> bytes:
    return f"GET /ca.crl HTTP/1.1\r\nHost: {host}\r\nUser-Agent: beacon\r\n\r\n".encode()


def _pcap(packets: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, pkt in enumerate(packets):
        out += struct.pack("<IIII", 1_700_000_000 + i // 1000, (i % 1000) * 1000, len(pkt), len(pkt)) + pkt
    return out


@needs_suricata
def test_domain_rules_match_exactly_the_allowed_hosts(tmp_path: Path) -> None:
    cfg = load(**FULL)
    domains = groups_for(cfg)[2]
    by_sid = {}
    for rule in domains.rules:
        kind = "tls" if rule.startswith("pass tls") else "http"
        by_sid[int(SID.search(rule)[1])] = (kind, re.search(r'content:"([^"]*)"', rule)[1])
    # (kind, name sent, allowlist entry that must match it or None for "dropped")
    cases = [
        ("tls", "crl.example.com", "crl.example.com"),
        ("tls", "CRL.Example.COM", "crl.example.com"),  # SNI is not normalised: nocase
        ("tls", "x.crl.example.com", None),  # exact host: no subdomains
        ("tls", "crl.example.com.evil.net", None),
        ("tls", "pki.example.org", ".pki.example.org"),  # .domain: the domain itself
        ("tls", "a.b.pki.example.org", ".pki.example.org"),  # and any subdomain
        ("tls", "badpki.example.org", None),  # but not a lookalike
        ("tls", "ssm.us-east-1.amazonaws.com", "ssm.us-east-1.amazonaws.com"),
        ("tls", "ssm.eu-west-1.amazonaws.com", None),
        ("tls", "beacon.flexnetmanager.example", "beacon.flexnetmanager.example"),
        ("tls", "eu.beacon.flexnetmanager.example", None),
        ("http", "crl.example.com", "crl.example.com"),
        ("http", "CRL.Example.com", "crl.example.com"),  # Host is normalised to lowercase
        ("http", "evil.example.com", None),
        ("http", "x.pki.example.org", ".pki.example.org"),
        ("http", "xpki.example.org", None),
    ]
    packets = []
    for i, (kind, name, _) in enumerate(cases):
        request = _client_hello(name) if kind == "tls" else _http_get(name)
        packets += _conversation("10.80.0.10", "192.0.2.10", 40000 + i, 443 if kind == "tls" else 80, request)
    (tmp_path / "replay.pcap").write_bytes(_pcap(packets))
    alerting = "".join(("alert " + r[len("pass "):]) + "\n" for r in domains.rules)
    (tmp_path / "replay.rules").write_text(alerting)
    yaml = _suricata_yaml(tmp_path, dict(domains.ip_sets), eve=True)
    result = subprocess.run(
        ["suricata", "-c", str(yaml), "-S", str(tmp_path / "replay.rules"), "-r", str(tmp_path / "replay.pcap"),
         "-k", "none", "--runmode", "single", "-l", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    hits: dict[int, set] = {}
    for line in (tmp_path / "eve.json").read_text().splitlines():
        event = json.loads(line)
        if event.get("event_type") == "alert":
            hits.setdefault(event["src_port"] - 40000, set()).add(by_sid[event["alert"]["signature_id"]])
    for i, (kind, name, entry) in enumerate(cases):
        expected = {(kind, entry)} if entry else set()
        assert hits.get(i, set()) == expected, (kind, name)
