"""Replay whole TCP conversations through Suricata in simulated IPS mode and account for every packet.

Used by tests/network/test_firewall_flows.py. Three parts:

1. Packets: complete TCP conversations (3-way handshake, the payload exchange with an ACK for each
   message, FIN teardown in both directions) with realistic payloads: a TLS 1.2 mutual-TLS session
   (ClientHello with SNI; ServerHello + Certificate + CertificateRequest + ServerHelloDone; the
   client's Certificate, ClientKeyExchange, CertificateVerify, ChangeCipherSpec and Finished; the
   server's ChangeCipherSpec and Finished; application data both ways; close_notify) and HTTP/1.1
   (GET with Host, a 200 response with a body). Every conversation is written into one pcap.

2. The policy: the rule groups in policy priority order, then the policy's stateful default
   actions emulated as final rules (see `default_action_rules`), in a suricata.yaml that matches
   what Network Firewall does: IPS (`--simulate-ips`), stream inline, action-order pass first.

3. The verdict per packet: every eve.json `drop` event (`flows: all`: one per dropped packet)
   is mapped by its `pcap_cnt` to the very packet written, and checked against its flow (flow_id);
   the `flow` record gives the packets the flow saw each way, the final TCP state and whether a
   rule passed the flow (`action: pass`); the engine's counters must add up: decoded = written,
   ips.accepted + ips.blocked = written, ips.blocked = drop events = drops by rules (an engine
   exception, such as an app-layer parser error, would drop the flow for another reason).
   A conversation "passes" when none of its packets is dropped, the flow saw every packet sent in
   each direction, the teardown completed (state closed) and the flow action is pass.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import re
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import pytest

SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10
MSS = 1400

# --- packets ----------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_frame(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    """Ethernet + IPv4 + TCP with correct checksums (Suricata runs with checksum validation on)."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 64240, 0, 0) + payload
    tcp = tcp[:16] + struct.pack("!H", _checksum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip + tcp


@dataclass(frozen=True)
class Packet:
    to_server: bool
    kind: str  # syn, syn-ack, ack, data, fin
    frame: bytes


@dataclass(frozen=True)
class Conversation:
    """One TCP connection from `client`:`sport` to `server`:`dport`, start to finish."""

    name: str
    client: str
    sport: int
    server: str
    dport: int
    messages: tuple[tuple[bool, bytes], ...]  # (to_server, payload), in order

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.client, self.sport, self.server, self.dport)

    def packets(self) -> list[Packet]:
        seq = {True: 1_000_000 + self.sport * 7, False: 3_000_000 + self.sport * 11}  # next seq per sender

        def send(to_server: bool, flags: int, payload: bytes = b"", kind: str = "ack") -> Packet:
            src, dst, sport, dport = (
                (self.client, self.server, self.sport, self.dport)
                if to_server
                else (self.server, self.client, self.dport, self.sport)
            )
            ackn = 0 if flags == SYN else seq[not to_server]
            frame = tcp_frame(src, dst, sport, dport, seq[to_server], ackn, flags, payload)
            seq[to_server] += len(payload) + (1 if flags & (SYN | FIN) else 0)
            return Packet(to_server, kind, frame)

        out = [send(True, SYN, kind="syn"), send(False, SYN | ACK, kind="syn-ack"), send(True, ACK)]
        for to_server, payload in self.messages:
            chunks = [payload[i : i + MSS] for i in range(0, len(payload), MSS)]
            for i, chunk in enumerate(chunks):
                out.append(send(to_server, ACK | (PSH if i == len(chunks) - 1 else 0), chunk, kind="data"))
            out.append(send(not to_server, ACK))  # the receiver acknowledges the message
        out += [
            send(True, FIN | ACK, kind="fin"),
            send(False, ACK),
            send(False, FIN | ACK, kind="fin"),
            send(True, ACK),
        ]
        return out


def write_pcap(path: Path, conversations: Sequence[Conversation]) -> tuple[list[tuple[str, int]], dict[str, list[Packet]]]:
    """All conversations one after the other (1 ms apart) in one pcap.

    Returns, for each packet in file order, (conversation name, index in its conversation)
    (Suricata's `pcap_cnt` n is entry n - 1), and each conversation's packets.
    """
    index: list[tuple[str, int]] = []
    packets: dict[str, list[Packet]] = {}
    keys = set()
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for conversation in conversations:
        assert conversation.key not in keys, f"two conversations share a 4-tuple: {conversation.key}"
        assert conversation.name not in packets, f"two conversations named {conversation.name!r}"
        keys.add(conversation.key)
        packets[conversation.name] = conversation.packets()
        for i, packet in enumerate(packets[conversation.name]):
            t = len(index)
            out += struct.pack("<IIII", 1_700_000_000 + t // 1000, (t % 1000) * 1000, len(packet.frame), len(packet.frame))
            out += packet.frame
            index.append((conversation.name, i))
    path.write_bytes(bytes(out))
    return index, packets


# --- payloads ---------------------------------------------------------------------------------


def _filler(size: int, seed: str) -> bytes:
    """Deterministic bytes that look like ciphertext."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return out[:size]


def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def tls_record(content_type: int, body: bytes) -> bytes:
    return bytes([content_type]) + b"\x03\x03" + struct.pack("!H", len(body)) + body


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + _u24(len(body)) + body


def client_hello(sni: str, padding: int = 0) -> bytes:
    """A TLS 1.2 ClientHello with SNI; `padding` > MSS makes it span two TCP segments (as a post-quantum key share does)."""
    name = sni.encode()
    server_name = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    extensions = (
        struct.pack("!HH", 0, len(server_name)) + server_name  # server_name
        + struct.pack("!HHH", 10, 4, 2) + b"\x00\x17"  # supported_groups: secp256r1
        + struct.pack("!HHB", 11, 2, 1) + b"\x00"  # ec_point_formats: uncompressed
        + struct.pack("!HHH", 13, 6, 4) + b"\x04\x03\x08\x04"  # signature_algorithms
        + struct.pack("!HH", 0xFF01, 1) + b"\x00"  # renegotiation_info
        + (struct.pack("!HH", 21, padding) + bytes(padding) if padding else b"")  # padding
    )
    body = (
        b"\x03\x03" + _filler(32, "client-random:" + sni) + b"\x00"
        + struct.pack("!H", 4) + b"\xc0\x2f\xc0\x2b"
        + b"\x01\x00"
        + struct.pack("!H", len(extensions)) + extensions
    )
    # TLS 1.2 ClientHellos go out in a record of version 3.1 (as browsers and SChannel do).
    handshake = _handshake(1, body)
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


@lru_cache(maxsize=None)
def certificate_der(common_name: str) -> bytes:
    """A real, self-signed X.509 certificate, so that Suricata's certificate parser is satisfied.

    Ed25519 with a key derived from the name: signatures are deterministic, so the pcap is
    byte-identical from run to run.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"key:{common_name}".encode()).digest())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(f"serial:{common_name}".encode()).digest()[:16], "big") >> 1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, None)
    )
    return cert.public_bytes(Encoding.DER)


def _certificate_message(der: bytes) -> bytes:
    entry = _u24(len(der)) + der
    return _handshake(11, _u24(len(entry)) + entry)


def server_hello_flight(server_name: str, request_client_certificate: bool = True) -> bytes:
    """ServerHello + Certificate (+ CertificateRequest, as IIS asks agents for theirs) + ServerHelloDone."""
    server_hello = _handshake(
        2,
        b"\x03\x03" + _filler(32, "server-random:" + server_name) + b"\x20" + _filler(32, "session:" + server_name)
        + b"\xc0\x2f" + b"\x00" + struct.pack("!H", 5) + struct.pack("!HH", 0xFF01, 1) + b"\x00",
    )
    messages = server_hello + _certificate_message(certificate_der(server_name))
    messages += _handshake(12, b"\x03\x00\x17\x41\x04" + _filler(64, "ecdhe:" + server_name) + b"\x04\x03" + struct.pack("!H", 72) + _filler(72, "ske-sig"))
    if request_client_certificate:
        ca = b"\x30\x1a\x31\x18\x30\x16\x06\x03\x55\x04\x03\x0c\x0fExample Devices"  # one DN: CN=Example Devices
        messages += _handshake(13, b"\x02\x01\x40" + struct.pack("!H", 4) + b"\x04\x03\x08\x04" + struct.pack("!H", len(ca) + 2) + struct.pack("!H", len(ca)) + ca)
    messages += _handshake(14, b"")
    return tls_record(22, messages)


def client_key_flight(device_name: str) -> bytes:
    """Certificate + ClientKeyExchange + CertificateVerify, then ChangeCipherSpec and the encrypted Finished."""
    messages = _certificate_message(certificate_der(device_name))
    messages += _handshake(16, b"\x41\x04" + _filler(64, "client-ecdhe:" + device_name))
    messages += _handshake(15, b"\x04\x03" + struct.pack("!H", 72) + _filler(72, "cert-verify:" + device_name))
    return tls_record(22, messages) + tls_record(20, b"\x01") + tls_record(22, _filler(40, "client-finished:" + device_name))


def server_finished_flight(seed: str) -> bytes:
    return tls_record(20, b"\x01") + tls_record(22, _filler(40, "server-finished:" + seed))


def tls_application_data(size: int, seed: str) -> bytes:
    out = b""
    while size > 0:
        chunk = min(size, 16384)
        out += tls_record(23, _filler(chunk, f"{seed}:{size}"))
        size -= chunk
    return out


def tls_session(
    sni: str, client_name: str = "device-0001.example.com", server_name: str | None = None, hello_padding: int = 0
) -> tuple[tuple[bool, bytes], ...]:
    """A whole mutual-TLS 1.2 session: handshake, a request, a multi-segment response, an upload, close_notify."""
    server = server_name or sni
    return (
        (True, client_hello(sni, hello_padding)),
        (False, server_hello_flight(server)),
        (True, client_key_flight(client_name)),
        (False, server_finished_flight(server)),
        (True, tls_application_data(420, "request:" + sni)),
        (False, tls_application_data(5200, "response:" + sni)),
        (True, tls_application_data(2600, "upload:" + sni)),
        (False, tls_application_data(180, "upload-ack:" + sni)),
        (True, tls_record(21, _filler(26, "close-notify:" + sni))),
    )


def http_exchange(host: str, path: str = "/ca.crl") -> tuple[tuple[bool, bytes], ...]:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Microsoft-CryptoAPI/10.0\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    body = _filler(2900, "crl:" + host)
    response = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    return ((True, request.encode()), (False, response))


def raw_exchange(request: bytes, response: bytes = b"") -> tuple[tuple[bool, bytes], ...]:
    return ((True, request),) + (((False, response),) if response else ())


# --- the policy as a Suricata rules file ------------------------------------------------------

# sids of the emulated defaults; far from the generated ones (100000s to 300000s).
DEFAULT_SIDS = {
    "aws:drop_strict": 9_000_001,
    "aws:drop_established": 9_000_002,
    "aws:alert_strict": 9_000_003,
    "aws:alert_established": 9_000_004,
}


def default_action_rules(actions: Sequence[str]) -> list[str]:
    """The policy's stateful default actions as the last rules of the rules file.

    Network Firewall applies them to a packet no rule passed or dropped. Emulated here:
    - aws:drop_established -> `drop ip any any -> any any (flow:established; ...)`: every packet of
      an established flow (for TCP: after the 3-way handshake; for other protocols once both
      directions were seen); the handshake itself is not established and gets through.
    - aws:drop_strict -> `drop ip any any -> any any (...)`: every packet, the handshake included.
    - aws:alert_established / aws:alert_strict -> the same with `alert`: logs, decides nothing.
    `ip` covers TCP, UDP and ICMP. Suricata runs them after every pass rule (action-order pass
    first), and a packet or flow one of the policy's pass rules has passed is not inspected any
    further, which is exactly "no rule passed it".
    """
    rules = []
    for action in actions:
        sid = DEFAULT_SIDS.get(action)
        if sid is None:
            raise ValueError(f"no emulation for stateful default action {action!r}")
        verb = "drop" if action.startswith("aws:drop") else "alert"
        established = "flow:established; " if action.endswith("_established") else ""
        rules.append(f'{verb} ip any any -> any any (msg:"{action}"; {established}sid:{sid}; rev:1;)')
    return rules


_ACTION = re.compile(r"^(\w+) ")


def policy_rules(group_rules: Sequence[str], default_actions: Sequence[str]) -> str:
    """The rule groups' rules (already in priority order) followed by the emulated defaults.

    Network Firewall STRICT_ORDER evaluates the rules in the order written and the first pass or
    drop decides. Suricata 7 has no file-order mode: it sorts signatures by action (action-order),
    then by flowbits, flowint, flowvar, pktvar, hostbits and ippair use, then by priority, and
    last by sid, never by position in the file (detect-engine-sigorder.c; checked with three
    alert rules for one packet, written sid 20, 10, 15 with priority:1: they fire 15, 10, 20).
    Per-rule priorities cannot help either, as the action is compared first. So the emulation is
    action-order pass, drop, reject, alert, which decides exactly as strict order does as long as
    every generated rule is `pass` (or `alert`, which decides nothing) and the only drops are the
    defaults at the end, and that is asserted here: a generated drop or reject rule, which would
    need a real file-order engine to be replayed faithfully, stops the test instead of silently
    being evaluated in another order.
    """
    lines = [line for line in group_rules if line.strip() and not line.lstrip().startswith("#")]
    for line in lines:
        action = _ACTION.match(line)
        assert action and action[1] in ("pass", "alert"), (
            f"the replay emulates STRICT_ORDER with Suricata's action-order, valid only for pass/alert rules: {line}"
        )
    return "\n".join(lines + default_action_rules(default_actions)) + "\n"


def suricata_yaml(address_groups: Mapping[str, Sequence[str]]) -> str:
    lines = ["%YAML 1.1", "---", "vars:", "  address-groups:"]
    for name, cidrs in sorted(address_groups.items()):
        lines.append(f'    {name}: "[{",".join(cidrs)}]"')
    if "EXTERNAL_NET" not in address_groups:
        lines.append('    EXTERNAL_NET: "!$HOME_NET"')  # Network Firewall's default for EXTERNAL_NET
    lines += [
        # The order Network Firewall documents for Suricata: pass first (see policy_rules).
        "action-order: [pass, drop, reject, alert]",
        # IPS as the firewall runs it: the stream engine inline, so a data packet is reassembled,
        # handed to the app-layer parser and inspected before it is forwarded (a `pass tls` can
        # pass the very packet that carries the ClientHello).
        "stream:",
        "  inline: yes",
        "  midstream: false",
        "  checksum-validation: yes",
        # Engine exceptions (an app-layer parser error, memcaps) drop the flow in IPS mode: a replay
        # whose payloads were not realistic fails loudly instead of passing by accident.
        "exception-policy: auto",
        "app-layer:",
        "  protocols:",
        "    tls:",
        "      enabled: yes",
        "    http:",
        "      enabled: yes",
        "stats:",
        "  enabled: yes",
        "  interval: 3600",  # only the final tally, written at the end of the pcap
        "outputs:",
        "  - eve-log:",
        "      enabled: yes",
        "      filetype: regular",
        "      filename: eve.json",
        "      types:",
        "        - alert",
        "        - drop:",
        "            alerts: yes",
        "            flows: all",  # every dropped packet, not only the first of a flow
        "        - flow",  # per flow: packets each way, tcp state, action pass
        "        - tls:",  # what the parsers understood: SNI, certificates, Host, status
        "            extended: yes",
        "        - http:",
        "            extended: yes",
        "        - stats:",
        "            totals: yes",
        "            threads: no",
        "            deltas: no",
    ]
    return "\n".join(lines) + "\n"


# --- running and reading ----------------------------------------------------------------------


@dataclass
class FlowVerdict:
    """What Suricata did with one conversation, packet by packet."""

    conversation: Conversation
    sent: list[Packet]
    flow: dict = field(default_factory=dict)  # the eve flow record's "flow" object
    tcp_state: str = ""
    app_proto: str = ""
    dropped: dict[int, dict] = field(default_factory=dict)  # index in `sent` -> its eve drop event
    alerts: list[dict] = field(default_factory=list)
    app_events: list[dict] = field(default_factory=list)  # eve tls and http records: what the parser understood

    def label(self, i: int) -> str:
        packet = self.sent[i]
        return f"#{i} {packet.kind}{'->' if packet.to_server else '<-'}"

    @property
    def first_data(self) -> int:
        return next(i for i, p in enumerate(self.sent) if p.kind == "data")

    def problems_if_passed(self) -> list[str]:
        """Why this is not a conversation the firewall passed whole (empty: it was)."""
        out = []
        if self.dropped:
            out.append("dropped " + ", ".join(self.label(i) for i in sorted(self.dropped)))
        sent = (sum(p.to_server for p in self.sent), sum(not p.to_server for p in self.sent))
        seen = (self.flow.get("pkts_toserver"), self.flow.get("pkts_toclient"))
        if seen != sent:
            out.append(f"the flow saw {seen} packets (to server, to client), {sent} were sent")
        if self.flow.get("action") != "pass":
            out.append(f"flow action {self.flow.get('action')!r}, not 'pass': no rule passed the flow")
        if self.tcp_state != "closed":
            out.append(f"tcp state {self.tcp_state!r} at the end, not 'closed'")
        return out

    def problems_if_blocked(self, drop_sid: int) -> list[str]:
        """Why this is not a conversation whose payload the firewall refused (empty: it was).

        Under aws:drop_established the handshake gets through (it is not established); from the
        client's first data packet on, every packet in both directions is dropped, by the default.
        """
        out = []
        expected = set(range(self.first_data, len(self.sent)))
        if set(self.dropped) != expected:
            passed = sorted(expected - set(self.dropped))
            extra = sorted(set(self.dropped) - expected)
            if passed:
                out.append("passed " + ", ".join(self.label(i) for i in passed))
            if extra:
                out.append("dropped during the handshake " + ", ".join(self.label(i) for i in extra))
        sids = {event.get("alert", {}).get("signature_id") for event in self.dropped.values()}
        if self.dropped and sids != {drop_sid}:
            out.append(f"dropped by sids {sorted(map(str, sids))}, expected only the default {drop_sid}")
        if self.flow.get("action") == "pass":
            out.append("flow action 'pass'")
        return out

    def describe(self) -> str:
        c = self.conversation
        return (
            f"{c.name} ({c.client}:{c.sport} -> {c.server}:{c.dport}, app_proto {self.app_proto or '-'}, "
            f"flow action {self.flow.get('action', '-')}, {len(self.sent)} packets, "
            f"dropped [{', '.join(self.label(i) for i in sorted(self.dropped))}])"
        )


@dataclass
class Replay:
    verdicts: dict[str, FlowVerdict]
    stats: dict
    total_packets: int
    seconds: float

    def __getitem__(self, name: str) -> FlowVerdict:
        return self.verdicts[name]

    def accounting_problems(self) -> list[str]:
        """Every packet of the pcap was decoded, reached its flow and got exactly one verdict."""
        out = []
        decoded = self.stats["decoder"]["pkts"]
        ips = self.stats["ips"]
        drops = sum(len(v.dropped) for v in self.verdicts.values())
        if decoded != self.total_packets:
            out.append(f"decoded {decoded} packets of {self.total_packets}")
        if ips["accepted"] + ips["blocked"] != self.total_packets:
            out.append(f"accepted {ips['accepted']} + blocked {ips['blocked']} != {self.total_packets} packets")
        if ips["blocked"] != drops:
            out.append(f"blocked {ips['blocked']} packets but logged {drops} drop events")
        if ips["blocked"] != ips["drop_reason"]["rules"]:
            out.append(f"drops not caused by a rule: {ips['drop_reason']}")
        return out


def replay(
    workdir: Path,
    conversations: Sequence[Conversation],
    rules: str,
    address_groups: Mapping[str, Sequence[str]],
    suricata: str = "suricata",
) -> Replay:
    """Write the pcap, rules and yaml into `workdir`, run Suricata once, and read eve.json back."""
    workdir.mkdir(parents=True, exist_ok=True)
    index, packets = write_pcap(workdir / "replay.pcap", conversations)
    (workdir / "policy.rules").write_text(rules)
    (workdir / "suricata.yaml").write_text(suricata_yaml(address_groups))
    started = time.monotonic()
    result = subprocess.run(
        [
            suricata, "-c", str(workdir / "suricata.yaml"), "-S", str(workdir / "policy.rules"),
            "-r", str(workdir / "replay.pcap"), "--simulate-ips", "-k", "all", "--runmode", "single",
            "--init-errors-fatal", "-l", str(workdir),
        ],
        capture_output=True, text=True, timeout=120,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in (workdir / "eve.json").read_text().splitlines() if line.strip()]

    verdicts = {c.name: FlowVerdict(c, packets[c.name]) for c in conversations}
    by_key = {c.key: verdicts[c.name] for c in conversations}
    flow_of: dict[int, FlowVerdict] = {}
    for event in events:
        if event.get("event_type") == "flow":
            key = (event["src_ip"], event["src_port"], event["dest_ip"], event["dest_port"])
            assert key in by_key, f"a flow nobody sent: {event}"
            verdict = by_key[key]
            assert not verdict.flow, f"two flow records for {verdict.conversation.name}"
            verdict.flow = event["flow"]
            verdict.tcp_state = event.get("tcp", {}).get("state", "")
            verdict.app_proto = event.get("app_proto", "")
            flow_of[event["flow_id"]] = verdict
    stats: dict = {}
    for event in events:
        kind = event.get("event_type")
        if kind == "stats":
            stats = event["stats"]  # the last one is the final tally
        elif kind == "drop":
            name, i = index[event["pcap_cnt"] - 1]
            verdict = verdicts[name]
            assert flow_of.get(event["flow_id"]) is verdict, f"drop event in the wrong flow: {event}"
            assert i not in verdict.dropped, f"two drop events for {verdict.label(i)} of {name}"
            verdict.dropped[i] = event
        elif kind in ("alert", "tls", "http"):
            verdict = flow_of[event["flow_id"]]
            (verdict.alerts if kind == "alert" else verdict.app_events).append(event)
    missing = [name for name, verdict in verdicts.items() if not verdict.flow]
    assert not missing, f"no flow record for {missing}"
    assert stats, "no stats record in eve.json"
    return Replay(verdicts, stats, len(index), seconds)


needs_suricata = pytest.mark.skipif(shutil.which("suricata") is None, reason="suricata not installed (see .ci/run)")
