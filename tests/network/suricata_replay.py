"""Replay whole TCP conversations through Suricata in simulated IPS mode and account for every packet.

Used by tests/network/test_firewall_flows.py. Three parts:

1. Packets: complete TCP conversations (3-way handshake, the payload exchange with an ACK for each
   message, FIN teardown in both directions; a message can be cut into chosen segments, with the
   receiver's ACK between them: `Segmented`) with realistic payloads: a TLS 1.2 mutual-TLS session
   (ClientHello with SNI; ServerHello + Certificate + CertificateRequest + ServerHelloDone; the
   client's Certificate, ClientKeyExchange, CertificateVerify, ChangeCipherSpec and Finished; the
   server's ChangeCipherSpec and Finished; application data both ways; close_notify), optionally
   opened by a Go 1.24+ client's post-quantum ClientHello in two segments (`split_client_hello`),
   and HTTP/1.1 (GET with Host, a 200 response with a body). Every conversation is written into
   one pcap.

2. The policy: the rule groups in policy priority order, then the policy's stateful default
   actions emulated as final rules (see `default_action_rules`: the application-layer defaults,
   which wait for a ClientHello or HTTP request to be whole, are several rules and a Lua match),
   in a suricata.yaml that matches what Network Firewall does: IPS (`--simulate-ips`), stream
   inline, action-order pass first.

3. The verdict per packet: every eve.json `drop` event (`flows: all`: one per dropped packet)
   is mapped by its `pcap_cnt` to the very packet written, and checked against its flow (flow_id);
   the `flow` record gives the packets the flow saw each way, the final TCP state and whether a
   rule passed the flow (`action: pass`); the engine's counters must add up: decoded = written,
   ips.accepted + ips.blocked = written, ips.blocked = drop events = drops by rules + the flow
   drops that follow an application-layer drop rule in the same flow (an engine exception, such
   as an app-layer parser error, would drop the flow for another reason).
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
MSS = 1400  # how a message is cut into segments unless it says otherwise (`Segmented`)
MAX_SEGMENT = 1460  # the MSS of a 1500-byte MTU: the largest segment a `Segmented` message may use

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
    message: int = -1  # data packets: the index of the message they carry a segment of


@dataclass(frozen=True)
class Segmented:
    """A message sent as exactly these TCP segments (instead of MSS-sized chunks).

    `ack_after`: indices of segments the receiver acknowledges at once, before the next segment
    arrives (a receiver in quick-ACK mode, as at the start of a Linux connection).
    """

    chunks: tuple[bytes, ...]
    ack_after: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        assert self.chunks and all(0 < len(c) <= MAX_SEGMENT for c in self.chunks), [len(c) for c in self.chunks]
        assert all(0 <= i < len(self.chunks) - 1 for i in self.ack_after), self.ack_after

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


@dataclass(frozen=True)
class Conversation:
    """One TCP connection from `client`:`sport` to `server`:`dport`, start to finish."""

    name: str
    client: str
    sport: int
    server: str
    dport: int
    messages: tuple[tuple[bool, "bytes | Segmented"], ...]  # (to_server, payload), in order

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.client, self.sport, self.server, self.dport)

    def packets(self) -> list[Packet]:
        seq = {True: 1_000_000 + self.sport * 7, False: 3_000_000 + self.sport * 11}  # next seq per sender

        def send(to_server: bool, flags: int, payload: bytes = b"", kind: str = "ack", message: int = -1) -> Packet:
            src, dst, sport, dport = (
                (self.client, self.server, self.sport, self.dport)
                if to_server
                else (self.server, self.client, self.dport, self.sport)
            )
            ackn = 0 if flags == SYN else seq[not to_server]
            frame = tcp_frame(src, dst, sport, dport, seq[to_server], ackn, flags, payload)
            seq[to_server] += len(payload) + (1 if flags & (SYN | FIN) else 0)
            return Packet(to_server, kind, frame, message)

        out = [send(True, SYN, kind="syn"), send(False, SYN | ACK, kind="syn-ack"), send(True, ACK)]
        for m, (to_server, payload) in enumerate(self.messages):
            if isinstance(payload, Segmented):
                chunks, early_acks = list(payload.chunks), set(payload.ack_after)
            else:
                chunks, early_acks = [payload[i : i + MSS] for i in range(0, len(payload), MSS)], set()
            for i, chunk in enumerate(chunks):
                out.append(send(to_server, ACK | (PSH if i == len(chunks) - 1 else 0), chunk, kind="data", message=m))
                if i in early_acks:
                    out.append(send(not to_server, ACK))  # acknowledged before the next segment arrives
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


X25519MLKEM768, X25519 = 0x11EC, 0x001D
MLKEM768_SHARE = 1184 + 32  # an ML-KEM-768 encapsulation key, then the X25519 share


def _ext(ext_type: int, body: bytes) -> bytes:
    return struct.pack("!HH", ext_type, len(body)) + body


def _vec16(body: bytes) -> bytes:
    return struct.pack("!H", len(body)) + body


def pq_client_hello(sni: str, sni_last: bool = False) -> tuple[bytes, int]:
    """A ClientHello as a Go 1.24+ client sends it by default (crypto/tls with Config.CurvePreferences
    nil): TLS 1.3 and 1.2 offered, key shares for X25519MLKEM768 (1216 bytes) and X25519: about
    1.5 KB, more than one TCP segment.

    The extensions are those of Go's default client (server_name, ec_point_formats,
    session_ticket, renegotiation_info, extended_master_secret, SCT, status_request,
    supported_groups, supported_versions, psk_key_exchange_modes, key_share,
    signature_algorithms(_cert), ALPN). Go writes server_name first (`sni_last=False`: the name is
    whole in the first segment, the message is not); clients that permute their extensions (Chrome,
    BoringSSL) can put it after the key share (`sni_last=True`: with `split_client_hello` the name
    itself is cut in two by the segment boundary). Returns the record and the offset of the name.
    """
    name = sni.encode()
    server_name = _ext(0, _vec16(b"\x00" + _vec16(name)))
    groups = b"".join(struct.pack("!H", g) for g in (X25519MLKEM768, X25519, 0x0017, 0x0018, 0x0019))
    key_share = _ext(51, _vec16(
        struct.pack("!H", X25519MLKEM768) + _vec16(_filler(MLKEM768_SHARE, "mlkem768:" + sni))
        + struct.pack("!H", X25519) + _vec16(_filler(32, "x25519:" + sni))
    ))
    sig_algs = _vec16(b"".join(struct.pack("!H", a) for a in (
        0x0804, 0x0403, 0x0807, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0503, 0x0603, 0x0201, 0x0203)))
    before = [
        _ext(11, b"\x01\x00"),  # ec_point_formats: uncompressed
        _ext(35, b""),  # session_ticket
        _ext(0xFF01, b"\x00"),  # renegotiation_info
        _ext(23, b""),  # extended_master_secret
        _ext(18, b""),  # signed_certificate_timestamp
        _ext(5, b"\x01\x00\x00\x00\x00"),  # status_request: OCSP
        _ext(10, _vec16(groups)),  # supported_groups
        _ext(43, b"\x04\x03\x04\x03\x03"),  # supported_versions: TLS 1.3, TLS 1.2
        _ext(45, b"\x01\x01"),  # psk_key_exchange_modes: psk_dhe_ke
        key_share,
    ]
    after = [
        _ext(13, sig_algs),  # signature_algorithms
        _ext(50, sig_algs),  # signature_algorithms_cert
        _ext(16, _vec16(b"\x02h2\x08http/1.1")),  # ALPN
    ]
    extensions = before + [server_name] + after if sni_last else [server_name] + before + after
    suites = b"".join(struct.pack("!H", c) for c in (
        0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC009, 0xC013, 0xC00A, 0xC014))
    head = b"\x03\x03" + _filler(32, "client-random:" + sni) + b"\x20" + _filler(32, "session-id:" + sni) + _vec16(suites) + b"\x01\x00"
    body = head + _vec16(b"".join(extensions))
    record = b"\x16\x03\x01" + struct.pack("!H", 4 + len(body)) + _handshake(1, body)
    offset = record.index(server_name) + 9  # type, length, list length, name type, name length
    assert record[offset : offset + len(name)] == name
    return record, offset


def split_client_hello(sni: str, cut_sni: bool = True, ack_between: bool = False) -> Segmented:
    """`pq_client_hello` in two TCP segments, as a TCP stack sends a 1.5 KB write.

    cut_sni: the name is last, and the boundary falls inside it (neither segment has the whole
    name; the first segment is as long as a real MSS allows). Otherwise Go's own layout, cut at
    the harness MSS: the name is whole in the first segment, the message is not.
    ack_between: the server acknowledges the first segment before the second arrives.
    """
    record, offset = pq_client_hello(sni, sni_last=cut_sni)
    if cut_sni:
        cut = offset + min(max(1, len(sni) // 2), MAX_SEGMENT - offset)
        assert offset < cut < offset + len(sni), (sni, offset, cut)
    else:
        cut = MSS
        assert offset + len(sni) <= cut
    assert len(record) - cut <= MAX_SEGMENT
    return Segmented((record[:cut], record[cut:]), ack_after=(0,) if ack_between else ())


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
    sni: str, client_name: str = "device-0001.example.com", server_name: str | None = None, hello_padding: int = 0,
    hello: "bytes | Segmented | None" = None,
) -> tuple[tuple[bool, "bytes | Segmented"], ...]:
    """A whole mutual-TLS 1.2 session: handshake, a request, a multi-segment response, an upload, close_notify.

    hello: the ClientHello to send instead of `client_hello(sni, hello_padding)`, e.g.
    `split_client_hello(sni)` (the server still answers TLS 1.2, so that its certificate and the
    client's stay visible to the parser).
    """
    server = server_name or sni
    return (
        (True, hello if hello is not None else client_hello(sni, hello_padding)),
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

# The application-layer defaults: (first sid, server-directed only). Each is several rules, one
# per case, at sid + the offset in APP_LAYER_CASES.
APP_LAYER_DEFAULTS = {
    "aws:drop_established_app_layer": (9_000_010, False),
    "aws:alert_established_app_layer": (9_000_020, False),
    "aws:drop_established_app_layer_to_server": (9_000_030, True),
    "aws:alert_established_app_layer_to_server": (9_000_040, True),
}

# Suricata 7.0 cannot say "protocol not identified yet" in a rule (`app-layer-protocol:unknown`
# arrived in 8.0, and `!proto` never matches that state), so that one case is a Lua match.
ALPROTO_UNKNOWN_LUA = "aws_alproto_unknown.lua"
ALPROTO_UNKNOWN_SCRIPT = """\
-- Matches a packet of a flow whose application-layer protocol Suricata has not identified (yet).
function init(args)
    local needs = {}
    needs["packet"] = tostring(true)
    return needs
end

function match(args)
    local alproto = SCFlowAppLayerProto()
    if alproto == nil or alproto == "unknown" then
        return 1
    end
    return 0
end
"""

# case -> (sid offset, rule head, rule options); `to_client` only for the bidirectional defaults.
APP_LAYER_CASES = {
    # TLS: the ClientHello has been parsed whole (so its SNI, if any, was there for the pass rules).
    "tls": (1, "tls any any -> any any", "flow:established,to_server; ssl_state:client_hello;"),
    # HTTP: the request's headers have been parsed whole (so its Host was there for the pass rules).
    "http": (2, "http any any -> any any", 'flow:established,to_server; http.header_names; content:"|0d 0a 0d 0a|"; endswith;'),
    # any other protocol Suricata identified, or protocol detection failed (not TLS, not HTTP)
    "other": (3, "tcp any any -> any any", "flow:established,to_server; app-layer-protocol:!tls; app-layer-protocol:!http;"),
    # a client packet not identified as anything yet: not a ClientHello or request in progress either
    "unknown": (4, "tcp any any -> any any", f"flow:established,to_server; lua:{ALPROTO_UNKNOWN_LUA};"),
    # UDP, ICMP, ...: no application layer to wait for (as Drop established: all their packets)
    "not-tcp": (5, "ip any any -> any any", "flow:to_server; ip_proto:!TCP;"),
    # bidirectional only: every server-to-client packet of an established flow no rule passed
    # (the server's banner, and its ACKs, window updates or resets before a pass rule applies)
    "to_client": (6, "ip any any -> any any", "flow:established,to_client;"),
}


@dataclass(frozen=True)
class DefaultEmulation:
    """What the policy's stateful drop default does to a conversation no rule passes, as emulated."""

    action: str  # the drop default, "" if the policy has none
    sids: dict[str, int]  # case -> sid of the emulated drop rule ("any" for the classic ones)
    app_layer: bool  # waits for the ClientHello / HTTP request to be complete before dropping
    server_to_client: bool  # also drops the server's packets (the classic ones and the bidirectional app layer)

    def first_dropped(self, verdict: "FlowVerdict", kind: str) -> int:
        """Index of the first packet the default drops in a refused conversation of this kind.

        Classic defaults: the client's first data packet. Application-layer defaults: for TLS and
        HTTP, the packet that completes the client's first message (the ClientHello, the request
        headers; its earlier segments get through); anything else, the first data packet.
        """
        return verdict.first_message_end if self.app_layer and kind in ("tls", "http") else verdict.first_data


def emulation(actions: Sequence[str]) -> DefaultEmulation:
    drops = [a for a in actions if a.startswith("aws:drop")]
    assert len(drops) <= 1, f"at most one stateful drop default: {drops}"
    if not drops:
        return DefaultEmulation("", {}, False, False)
    action = drops[0]
    if action in APP_LAYER_DEFAULTS:
        base, to_server_only = APP_LAYER_DEFAULTS[action]
        sids = {case: base + offset for case, (offset, _, _) in APP_LAYER_CASES.items() if case != "to_client" or not to_server_only}
        return DefaultEmulation(action, sids, True, not to_server_only)
    if action not in DEFAULT_SIDS:
        raise ValueError(f"no emulation for stateful default action {action!r}")
    return DefaultEmulation(action, {"any": DEFAULT_SIDS[action]}, False, True)


def default_action_rules(actions: Sequence[str]) -> list[str]:
    """The policy's stateful default actions as the last rules of the rules file.

    Network Firewall applies them to a packet no rule passed or dropped. Suricata runs them after
    every pass rule (action-order pass first), and a packet or flow one of the policy's pass rules
    has passed is not inspected any further, which is exactly "no rule passed it". Emulated here:

    - aws:drop_established -> `drop ip any any -> any any (flow:established; ...)`: every packet of
      an established flow (for TCP: after the 3-way handshake; for other protocols once both
      directions were seen); the handshake itself is not established and gets through. (The
      Developer Guide now says Drop established drops the client-to-server packets and passes the
      server's; this emulation keeps the both-directions reading, a superset of what it drops.)
    - aws:drop_strict -> `drop ip any any -> any any (flow:stateless; ...)`: every packet, the
      handshake included. `flow:stateless` (Suricata: "packets that are and are not part of an
      established connection", so every packet) keeps the rule from being IP-only: Suricata
      inspects an IP-only rule on the first packet of each direction only, so once a pass rule had
      taken a flow's SYN (the egress-handshake group's), the drop never saw its ClientHello and a
      refused one went through (seen in a replay). AWS names the two together: "a TCP-layer rule
      using a flow:stateless rule would still match, as would the aws:drop_strict default action"
      (Developer Guide, "Stream exception policy").
    - aws:alert_established / aws:alert_strict -> the same with `alert`: logs, decides nothing.
    - aws:drop_established_app_layer_to_server ("Application drop established (server-directed
      only)") -> one drop rule per case of APP_LAYER_CASES, client-to-server packets of established
      flows only: a TLS flow's packets get through until its ClientHello is complete (then, if no
      pass rule took the flow, that packet and the rest of the flow are dropped), an HTTP flow's
      until its request headers are; any other protocol, a failed protocol detection, a packet not
      identified as anything, and non-TCP traffic are dropped at once. The server's packets are
      never dropped by it (AWS: "Drops only client-to-server traffic in established connections").
    - aws:drop_established_app_layer ("Application drop established (bidirectional)") -> the same,
      plus every server-to-client packet of an established flow no rule passed (AWS: it "drops
      server-initiated banner packets" and TCP window updates, keep-alives and resets seen
      "immediately after the TCP handshake" before a pass rule applies).
    - the alert_* application-layer defaults -> the same rules with `alert`.

    What this cannot show: how AWS's engine decides that a ClientHello or request is "complete"
    (here: Suricata 7's TLS and HTTP parsers), how long it waits for one that never completes
    (here: for ever, as long as the flow stays TLS), and what it does with a packet no protocol
    is identified for yet (here: dropped, as the Developer Guide names only segmented
    ClientHellos and HTTP requests as let through). Suricata 7 also drops the whole flow, both
    directions, once an application-layer drop rule has matched (eve drop reason "flow drop");
    AWS's server-directed default would still forward the server's packets, but the server has
    received nothing to answer by then.
    """
    rules = []
    for action in actions:
        verb = "drop" if action.startswith("aws:drop") else "alert"
        if action in APP_LAYER_DEFAULTS:
            base, to_server_only = APP_LAYER_DEFAULTS[action]
            for case, (offset, head, options) in APP_LAYER_CASES.items():
                if case == "to_client" and to_server_only:
                    continue
                rules.append(f'{verb} {head} (msg:"{action} ({case})"; {options} sid:{base + offset}; rev:1;)')
            continue
        sid = DEFAULT_SIDS.get(action)
        if sid is None:
            raise ValueError(f"no emulation for stateful default action {action!r}")
        flow = "flow:established; " if action.endswith("_established") else "flow:stateless; "
        rules.append(f'{verb} ip any any -> any any (msg:"{action}"; {flow}sid:{sid}; rev:1;)')
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


def suricata_yaml(address_groups: Mapping[str, Sequence[str]], rule_path: str | None = None) -> str:
    """rule_path: where the rules' Lua scripts are (the emulated application-layer defaults use one)."""
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
    ]
    if rule_path:
        lines += [f"default-rule-path: {rule_path}", "security:", "  lua:", "    allow-rules: yes"]
    lines += [
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

    @property
    def first_message_end(self) -> int:
        """Index of the packet that completes the client's first message (the ClientHello, the request)."""
        first = self.sent[self.first_data].message
        return max(i for i, p in enumerate(self.sent) if p.kind == "data" and p.message == first)

    def problems_if_blocked(self, emulated: "DefaultEmulation", kind: str) -> list[str]:
        """Why this is not a conversation whose payload the firewall refused (empty: it was).

        The handshake always gets through (it is not established). The default's drops start at
        `emulated.first_dropped` (the first data packet, or under an application-layer default the
        packet that completes the ClientHello or request): from there on every client-to-server
        packet is dropped. The server's established packets are all dropped by a both-directions
        default (by the bidirectional application-layer one even before that point: an ACK of the
        first segment, say); under a server-directed one they may pass, or go with Suricata's flow
        drop, and nothing is asserted about them beyond "no default rule dropped one".
        The first drop must come from the emulated rule for this kind of payload (for TLS: the one
        that needs the ClientHello parsed whole, which proves the SNI was seen and refused); any
        later one from a default rule or from the flow drop that follows it.
        """
        out = []
        start = emulated.first_dropped(self, kind)
        early = sorted(i for i in self.dropped if i < start and self.sent[i].to_server)
        if early:
            out.append("dropped before the default could decide " + ", ".join(self.label(i) for i in early))
        established = self.first_data  # the handshake's three packets come first
        passed = [
            i for i in range(established, len(self.sent))
            if i not in self.dropped
            and ((self.sent[i].to_server and i >= start) or (not self.sent[i].to_server and emulated.server_to_client))
        ]
        if passed:
            out.append("passed " + ", ".join(self.label(i) for i in passed))
        if "any" in emulated.sids:
            first_sids = {emulated.sids["any"]}
        elif kind in ("tls", "http"):
            first_sids = {emulated.sids[kind]}
        else:
            first_sids = {emulated.sids["other"], emulated.sids["unknown"]}
        first = self.dropped.get(start)
        if first is not None and first.get("alert", {}).get("signature_id") not in first_sids:
            out.append(f"{self.label(start)} dropped by {first.get('alert', {}).get('signature_id')} "
                       f"({first.get('drop', {}).get('reason')}), expected the default's {sorted(first_sids)}")
        for i, event in sorted(self.dropped.items()):
            sid = event.get("alert", {}).get("signature_id")
            reason = event.get("drop", {}).get("reason")
            if sid is None and not (reason == "flow drop" and i > start):
                out.append(f"{self.label(i)} dropped without a rule ({reason})")
            elif sid is not None and sid not in emulated.sids.values():
                out.append(f"{self.label(i)} dropped by sid {sid}, not by the default ({sorted(emulated.sids.values())})")
            elif sid is not None and not self.sent[i].to_server and not emulated.server_to_client:
                out.append(f"{self.label(i)}: a server-directed default dropped a server-to-client packet by rule {sid}")
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
        # Rules drop packets; after an application-layer drop rule Suricata also drops the rest of
        # that flow ("flow drop"). Nothing else may: an engine exception would be another reason.
        reasons = ips["drop_reason"]
        if ips["blocked"] != reasons["rules"] + reasons["flow_drop"]:
            out.append(f"drops not caused by a rule: {reasons}")
        for verdict in self.verdicts.values():
            by_rule = [i for i, e in verdict.dropped.items() if e.get("drop", {}).get("reason") == "rules"]
            after_flow_drop = [i for i, e in verdict.dropped.items() if e.get("drop", {}).get("reason") == "flow drop"]
            if after_flow_drop and (not by_rule or min(after_flow_drop) < min(by_rule)):
                out.append(f"{verdict.conversation.name}: flow drop without a rule drop before it")
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
    (workdir / ALPROTO_UNKNOWN_LUA).write_text(ALPROTO_UNKNOWN_SCRIPT)
    (workdir / "suricata.yaml").write_text(suricata_yaml(address_groups, rule_path=str(workdir)))
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
