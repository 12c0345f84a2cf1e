"""`verify-bundle --live`: after the offline checks, each kit's own certificate and key in a real
mutual-TLS handshake with every beacon the kit names, as the device would make it; the client is
`ops probe`'s (scripts/ops/probe.py: it counts a refusal only after the beacon completed its part
of TLS, so a dead port or a wrong address is never taken for a refusal).

As the device: a Windows kit presents the certificate and key of windows/device.pfx (opened with
the kit's password) with the PFX's intermediates, and trusts the kit's CA files (install.json
caCertificates) plus this machine's public roots (a Windows device has Microsoft's); a UNIX-only
kit presents unix/device.pem and unix/device.key and trusts unix/cert.pem only (the agent's
SSLCACertificateFile). The beacons: windows/install.json beaconUrls, or the rollout file's
download URL. SNI and Host are the beacon's name; --connect HOST[:PORT] only changes where the
connection goes (a load balancer's address, or a test's loopback server).

The key never reaches a file: it is handed to OpenSSL through an anonymous in-memory file
(memfd, Linux), or elsewhere a file in a private temporary directory removed right after.

Result per kit: {"kit", "device", "admitted", "beacons": [{"beacon", "url", "connect", "outcome",
"httpStatus", "detail"}]}; outcome: admitted (any HTTP answer below 500 to /ManageSoftDL/: the
certificate got through) | refused (TLS alert, reset or HTTP 401/403 after the beacon's part of
the handshake, with the reason) | inconclusive | error (HTTP 5xx) | untrusted-beacon (the device
would not trust the beacon's certificate) | unreachable | not-attempted (the deadline passed).
A kit is admitted when every beacon admitted it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from components.certs import facts as cert_facts
from components.safe_files import KEY_FILE_LIMIT, read_regular
from scripts.cli_args import bounded

from scripts.ops import probe
from scripts.ops.common import InputError, OpsError

from . import bundle_files as kit
from .store import PkiError

CONNECTION_TIMEOUT = 10.0  # seconds per connection, as `ops probe` (--timeout default)
DEFAULT_DEADLINE = 120.0  # seconds for the whole live check
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class Connect:
    """--connect HOST[:PORT]: where to connect instead of the beacon's name (which stays SNI and Host)."""

    host: str
    port: int | None


def parse_connect(text: str | None) -> Connect | None:
    if text is None:
        return None
    found = _HOST_PORT.match(text.strip())
    port = int(found["port"]) if found and found["port"] else None
    if not found or (port is not None and not 1 <= port <= 65535):
        raise PkiError(f"--connect: got {text!r}; expected HOST[:PORT] like 10.0.1.10:443 or [::1]:8443")
    host = found["v6"] or found["host"]
    try:
        probe.parse_target("https://beacon.invalid/", host, None)  # the same host check as `ops probe --connect`
    except InputError as exc:
        raise PkiError(str(exc)) from None
    return Connect(host, port)


@dataclass
class KitIdentity:
    """What the device presents and trusts, and where it connects."""

    chain_pem: bytes  # the certificate, then the intermediates it sends
    key_pem: bytes  # unencrypted PKCS#8: kept in memory, handed over through _Material
    trust_pem: bytes
    beacon_urls: list[str]
    platform: str


def _read(folder: Path, relative: str) -> bytes:
    return read_regular(folder / relative, KEY_FILE_LIMIT)  # every kit file is far below 1 MiB


def _pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _system_roots() -> bytes:
    """This machine's public roots (OpenSSL's default CA file), standing in for the Windows root
    store: a beacon with a public server certificate needs no root in the kit."""
    path = ssl.get_default_verify_paths().cafile
    if not path:
        return b""
    try:
        return read_regular(path, 64 * 1024 * 1024)
    except (OSError, ValueError):
        return b""


def kit_identity(folder: Path, password: Callable[[], bytes]) -> KitIdentity:
    """The kit's certificate, key, trust and beacons (ValueError/OSError when they do not load)."""
    if (folder / "windows" / "device.pfx").is_file():
        key, cert, extra = pkcs12.load_key_and_certificates(_read(folder, "windows/device.pfx"), password())
        if key is None or cert is None:
            raise ValueError("windows/device.pfx holds no certificate and key")
        install = json.loads(_read(folder, "windows/install.json").decode("ascii"))
        # What Windows would trust for the beacon: the kit's Root entries (the server CA) and the
        # public roots, never the device root the kit carries in LocalMachine\CA for chain building.
        entries = [e for e in install.get("caCertificates") or [] if isinstance(e, dict)]
        loaded = [(str(e.get("store")), x509.load_der_x509_certificate(_read(folder, f"windows/{e['file']}"))) for e in entries]
        cas = [c for store, c in loaded if store == "Root" or not cert_facts.is_self_signed(c)]
        # Sent after the certificate: its intermediates (from the PFX, else the kit's CA entries), as SChannel sends them.
        intermediates = [c for c in extra or [] if not cert_facts.is_self_signed(c)] or [c for store, c in loaded if store == "CA" and not cert_facts.is_self_signed(c)]
        urls = [u for u in install.get("beaconUrls") or [] if isinstance(u, str)]
        return KitIdentity(_pem([cert, *intermediates]), _key_pem(key), _pem(cas) + b"\n" + _system_roots(), urls, "windows")
    chain = cert_facts.load_certificates(_read(folder, "unix/device.pem"))
    key_data = _read(folder, "unix/device.key")
    key = serialization.load_pem_private_key(key_data, password() if b"ENCRYPTED" in key_data else None)
    urls = []
    for line in _read(folder, f"unix/{kit.ROLLOUT_NAME}").decode("ascii", "replace").split("\n"):
        name, _, value = line.partition("=")
        if name == "MGSFT_BOOTSTRAP_DOWNLOAD" and value:
            urls.append(value.strip())
    # No cert.pem: the server trust is preinstalled on the devices (the agent keeps its own CA file).
    trust = _read(folder, "unix/cert.pem") if (folder / "unix" / "cert.pem").is_file() else _system_roots()
    return KitIdentity(_pem(chain), _key_pem(key), trust, urls, "unix")


class _Material:
    """The identity as paths OpenSSL can open: anonymous memory files (/proc/self/fd/N of a
    memfd) where the system has them, else files in a 0700 temporary directory (key 0600),
    closed or removed on exit."""

    def __init__(self, identity: KitIdentity):
        self.identity = identity
        self.fds: list[int] = []
        self.folder: str | None = None

    def __enter__(self) -> "_Material":
        parts = {"chain": self.identity.chain_pem, "key": self.identity.key_pem, "trust": self.identity.trust_pem}
        self.paths = {name: self._place(name, data) for name, data in parts.items()}
        return self

    def _place(self, name: str, data: bytes) -> str:
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            fd = os.memfd_create(f"kit-{name}", getattr(os, "MFD_CLOEXEC", 0))
            self.fds.append(fd)
            os.write(fd, data)
            return f"/proc/self/fd/{fd}"
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="kit-live-")  # 0700
        path = os.path.join(self.folder, f"{name}.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return path

    def __exit__(self, *exc: Any) -> None:
        for fd in self.fds:
            os.close(fd)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _beacon_row(url: str, outcome: str, detail: str, status: int | None = None, where: str = "") -> dict[str, Any]:
    host = urlsplit(url).hostname or url
    return {"beacon": host, "url": url, "connect": where, "outcome": outcome, "httpStatus": status, "detail": detail}


def _check_beacon(url: str, material: _Material, device: str, connect: Connect | None, timeout: float, deadline: float) -> dict[str, Any]:
    try:
        target = probe.parse_target(url, connect.host if connect else None, None)
    except InputError as exc:
        return _beacon_row(url, "error", f"the kit's beacon URL is not usable: {exc}")
    if connect is not None and connect.port is not None:
        target = replace(target, port=connect.port)
    where = f"{target.connect}:{target.port}"
    if time.monotonic() >= deadline:
        return _beacon_row(url, "not-attempted", "the live check's deadline passed before this beacon", where=where)
    identity = probe.Identity(device, "admit", material.paths["chain"], material.paths["key"])
    try:
        row = probe.attempt(target, material.paths["trust"], identity, timeout=timeout, deadline=deadline)
    except InputError as exc:  # (an OpsError too) the kit's certificate and key do not load together
        return _beacon_row(url, "error", str(exc), where=where)
    except OpsError as exc:
        text = str(exc)
        outcome = "untrusted-beacon" if "does not verify" in text else "unreachable"
        if outcome == "untrusted-beacon":
            text = f"the device would not trust the beacon: its certificate does not verify for {target.host} with the kit's CA files" + (
                " and this machine's public roots" if material.identity.platform == "windows" else " (unix/cert.pem)") + f" ({text.split(': ', 1)[-1]})"
        return _beacon_row(url, outcome, text, where=where)
    return _beacon_row(url, row.outcome, row.detail, row.status, where)


def live_results(kits: Sequence[Path], password: Callable[[Path], bytes], connect: Connect | None,
                 timeout: float = CONNECTION_TIMEOUT, deadline_seconds: float = DEFAULT_DEADLINE) -> list[dict[str, Any]]:
    """One result per kit (module docstring), all within ``deadline_seconds``; password(folder)
    is the kit's PFX password (PKI_PASSWORD or its row of passwords.csv, as verify-bundle reads it)."""
    deadline = time.monotonic() + deadline_seconds
    results = []
    for folder in kits:
        result: dict[str, Any] = {"kit": folder.as_posix(), "device": folder.name, "admitted": False, "beacons": []}
        results.append(result)
        try:
            identity = kit_identity(folder, lambda: password(folder))
        except (OSError, ValueError, KeyError, TypeError, PkiError) as exc:
            result["problem"] = f"the kit's certificate and key do not load ({exc})"
            continue
        if not identity.beacon_urls:
            result["problem"] = "the kit names no beacon"
            continue
        with _Material(identity) as material:
            result["beacons"] = [_check_beacon(url, material, folder.name, connect, timeout, deadline) for url in identity.beacon_urls]
        result["admitted"] = all(b["outcome"] == "admitted" for b in result["beacons"])
    return results


def live_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """The text report: one line per kit and beacon."""
    lines = []
    for result in results:
        if "problem" in result:
            lines.append(f"live  FAIL  {result['device']}: {result['problem']}")
        for row in result["beacons"]:
            verdict = "ok  " if row["outcome"] == "admitted" else "FAIL"
            status = f"HTTP {row['httpStatus']}" if row["httpStatus"] is not None else row["outcome"]
            lines.append(f"live  {verdict}  {result['device']} -> {row['beacon']} ({row['connect']}): {row['outcome']}, {status}: {row['detail']}")
    admitted = sum(1 for r in results if r["admitted"])
    lines.append(f"live: {admitted} of {len(results)} kit(s) admitted by every beacon they name")
    return lines


# ---------------------------------------------------------------------------------------------
# verify-bundle's side: its arguments, the call after the offline checks, the report


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--live", action="store_true",
                        help="then a real mTLS handshake with each beacon a kit names, with the kit's own certificate and key, as the device (exit 1 when one is not admitted)")
    parser.add_argument("--connect", metavar="HOST[:PORT]", help="with --live: connect here instead of the beacon's name (SNI and Host stay the beacon's)")
    parser.add_argument("--live-deadline", type=bounded(float, 0, 3600, "seconds", low_inclusive=False), default=DEFAULT_DEADLINE, metavar="SECONDS",
                        help=f"with --live: the whole live check ends within this (default {DEFAULT_DEADLINE:g}; {CONNECTION_TIMEOUT:g} s per connection at most)")


def check_live_arguments(args: argparse.Namespace) -> Connect | None:
    """Before any work: --connect is well-formed and goes with --live."""
    if args.connect is not None and not args.live:
        raise PkiError("--connect goes with --live (it says where the live handshake connects)")
    return parse_connect(args.connect)


def run(args: argparse.Namespace, offline: Sequence[dict[str, Any]], password: Callable[[Path], bytes]) -> list[dict[str, Any]] | None:
    """With --live: the live results of the kits that passed the offline checks (the others are
    not tried: their failure is already known); None without --live."""
    if not args.live:
        return None
    passed = [Path(r["kit"]) for r in offline if r["ok"]]
    return live_results(passed, password, check_live_arguments(args), CONNECTION_TIMEOUT, args.live_deadline)


def report_lines(live: list[dict[str, Any]] | None, offline: Sequence[dict[str, Any]]) -> list[str]:
    if live is None:
        return []
    skipped = sum(1 for r in offline if not r["ok"])
    lines = live_lines(live)
    if skipped:
        lines[-1] += f"; {skipped} kit(s) failed offline: not tried live"
    return lines


def all_admitted(live: list[dict[str, Any]] | None) -> bool:
    return live is None or all(r["admitted"] for r in live)
