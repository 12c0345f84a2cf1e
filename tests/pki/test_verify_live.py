"""`verify-bundle --live`: each kit's own certificate and key in a real mutual-TLS handshake with
the beacons it names, through `ops probe`'s client, against the tests/tls OpenSSL server
(client certificates required from the device CA, the CRL checked) on loopback, the beacon's
name kept for SNI and Host (--connect only changes the address).

A renewed device's new kit is admitted and its old kit, revoked with --revoke-old, refused once
the beacon has the new CRL (even when verify-bundle is given the old one); a kit of a foreign
CA is refused; a beacon the kit does not trust is named as such; silent and dripping servers
stay within the deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from pki_cli import ok, pki
from scripts.ops import probe
from scripts.pki import bundle as bundle_module
from scripts.pki import live_check
from scripts.pki.store import PkiError
from tests.tls.conftest import BeaconServer

HOST = "beacon1.example.test"
SECRET = "live-kit-password-1"
ENV: dict[str, str | None] = {"PKI_PASSWORD": SECRET}


def stack_text(ca: str) -> str:
    return (f"config:\n  aws:region: us-east-1\n  flexnet-beacon:beaconCount: 1\n  flexnet-beacon:beaconHostnames:\n    - {HOST}\n"
            f"  flexnet-beacon:clientCaCertificates:\n    - {ca}\n  flexnet-beacon:extraMappingRules:\n    - Subject.O=Example Corp\n")


@pytest.fixture(autouse=True)
def no_syncfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """bundle's one filesystem sync waits for every other process's writes: skipped in tests."""
    monkeypatch.setattr(bundle_module, "sync_filesystem", lambda path: None)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project: the PKI (device CA + name-constrained server CA, the beacon's certificate,
    two devices), a stack 'lab' whose beacons trust the device CA, and a foreign PKI."""
    base = tmp_path_factory.mktemp("live")
    (base / "Pulumi.yaml").write_text("name: flexnet-beacon\n")
    d = base / "pki"
    ok(d, "init-ca", "--cn", "Live Devices CA", "--o", "Example Corp", "--crl-url", "http://crl.example.test/devices.crl")
    ok(d, "init-server-ca", "--server-domain", "example.test")
    ok(d, "issue-server", "--dns", HOST, "--name", "beacon1")
    for name in ("dev-0001", "dev-0002"):
        ok(d, "issue-client", "--cn", name, "--o", "Example Corp")
    other = base / "other"
    ok(other, "init-ca", "--cn", "Other Devices CA", "--o", "Example Corp", "--crl-url", "http://crl.other.test/other.crl")
    ok(other, "issue-client", "--cn", "dev-9", "--o", "Example Corp")
    ok(other, "issue-server", "--dns", HOST, "--name", "impostor-beacon")  # a beacon certificate the kits do not trust
    (base / "certs").mkdir()
    shutil.copy(d / "ca.pem", base / "certs" / "ca.pem")
    shutil.copy(other / "ca.pem", base / "certs" / "other.pem")
    (base / "stacks").mkdir()
    (base / "stacks" / "Pulumi.lab.yaml").write_text(stack_text("certs/ca.pem"))
    (base / "stacks" / "Pulumi.stranger.yaml").write_text(stack_text("certs/other.pem"))  # says the beacons trust the other CA
    return base


@pytest.fixture
def project(lab: Path, tmp_path: Path) -> Path:
    target = tmp_path / "lab"
    shutil.copytree(lab, target)
    return target


@contextlib.contextmanager
def beacon(project: Path, cert: str = "pki/issued/beacon1.pem", key: str = "pki/private/beacon1.key") -> Iterator[BeaconServer]:
    """The beacon on loopback: requires a client certificate from the device CA, checks the
    device CA's current CRL (as IIS does with the CRL it fetched)."""
    d = project / "pki"
    server = BeaconServer(project / cert, project / key, [d / "ca.pem"], [d / "crl.pem"], chain_crl_check=False)
    try:
        yield server
    finally:
        server.close()


def verify(project: Path, kits: Path, *extra: str, pki_dir: str = "pki", stack: str = "lab") -> tuple[int, str, str]:
    return pki(project / pki_dir, "verify-bundle", str(kits), "--stack-config", str(project / "stacks" / f"Pulumi.{stack}.yaml"), *extra, env=ENV)


def thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()


# ---------------------------------------------------------------------------------------------
# Admitted, refused


def test_renewed_kit_admitted_and_the_old_revoked_kit_refused_by_the_beacon(project: Path) -> None:
    d = project / "pki"
    ok(d, "bundle", "dev-0001", "--stack-config", str(project / "stacks/Pulumi.lab.yaml"), "--out", str(project / "old"), env=ENV)
    shutil.copy(d / "crl.pem", project / "crl-before.pem")
    old_cert = x509.load_pem_x509_certificate((d / "issued/dev-0001.pem").read_bytes())
    ok(d, "renew", "dev-0001", "--revoke-old")
    ok(d, "crl")
    ok(d, "bundle", "dev-0001", "--stack-config", str(project / "stacks/Pulumi.lab.yaml"), env=ENV)
    install = json.loads((d / "bundles/dev-0001/windows/install.json").read_text())
    assert install["supersedes"] == [thumbprint(old_cert)] != [install["pfx"]["thumbprint"]]

    with beacon(project) as server:
        connect = f"127.0.0.1:{server.port}"
        code, out, err = verify(project, d / "bundles", "--live", "--connect", connect)
        assert code == 0, out + err
        assert f"live  ok    dev-0001 -> {HOST} ({connect}): admitted, HTTP 200" in out
        event = server.next_event()
        assert (event.accepted, event.detail, event.path) == (True, "dev-0001", "/ManageSoftDL/")

        # The old kit: offline it passes with the CRL from before the renewal; the beacon has the new one.
        server.drain()
        code, out, _ = verify(project, project / "old/bundles", "--crl", str(project / "crl-before.pem"), "--live", "--connect", connect, "--json")
        assert code == 1
        result = json.loads(out)
        assert [k["ok"] for k in result["kits"]] == [True]  # offline
        [live] = result["live"]
        [row] = live["beacons"]
        assert live["admitted"] is False and row["outcome"] == "refused", row
        event = server.next_event()  # why, as the beacon saw it (the client sees the alert, or only the close that follows it)
        assert not event.accepted and "certificate revoked" in event.detail

        # With the PKI's current CRL the offline check already fails: no handshake is tried.
        server.drain()
        code, out, _ = verify(project, project / "old/bundles", "--live", "--connect", connect)
        assert code == 1 and "FAIL  dev-0001" in out and "403.13" in out and "1 kit(s) failed offline: not tried live" in out
        assert server.events.empty()


def test_a_kit_of_a_foreign_ca_is_refused_and_an_untrusted_beacon_is_named(project: Path) -> None:
    other = project / "other"
    stranger = project / "stacks/Pulumi.stranger.yaml"
    server_ca = str(project / "pki/server-ca.pem")
    ok(other, "bundle", "dev-9", "--stack-config", str(stranger), "--server-ca", server_ca, env=ENV)
    with beacon(project) as server:
        code, out, _ = verify(project, other / "bundles", "--server-ca", server_ca, "--live", "--connect", f"127.0.0.1:{server.port}", pki_dir="other", stack="stranger")
        assert code == 1 and "ok    dev-9" in out  # offline: the stack file claims the beacons trust the other CA ...
        assert f"live  FAIL  dev-9 -> {HOST}" in out and ": refused" in out  # ... the beacon does not
        event = server.next_event()
        assert not event.accepted and "unable to get local issuer certificate" in event.detail

    # A beacon serving a certificate the kit does not trust: the device would not talk to it.
    ok(project / "pki", "bundle", "dev-0002", "--stack-config", str(project / "stacks/Pulumi.lab.yaml"), env=ENV)
    with beacon(project, "other/issued/impostor-beacon.pem", "other/private/impostor-beacon.key") as server:
        results = live_check.live_results([project / "pki/bundles/dev-0002"], lambda folder: SECRET.encode(), live_check.parse_connect(f"127.0.0.1:{server.port}"))
    [row] = results[0]["beacons"]
    assert row["outcome"] == "untrusted-beacon" and f"does not verify for {HOST}" in row["detail"] and not results[0]["admitted"]


def test_a_unix_kit_with_an_encrypted_key_and_passwords_csv(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = project / "pki"
    ok(d, "bundle", "dev-0002", "--platform", "unix", "--encrypt-key", "--random-passwords", "--stack-config", str(project / "stacks/Pulumi.lab.yaml"), env=ENV)
    assert b"ENCRYPTED PRIVATE KEY" in (d / "bundles/dev-0002/unix/device.key").read_bytes().splitlines()[0]
    keys: list[str] = []
    real_attempt = probe.attempt

    def attempt(target: Any, ca: str, identity: probe.Identity, *args: Any, **kw: Any) -> probe.Row:
        keys.append(os.readlink(identity.key) if identity.key and os.path.islink(identity.key) else str(identity.key))
        return real_attempt(target, ca, identity, *args, **kw)

    monkeypatch.setattr(probe, "attempt", attempt)
    with beacon(project) as server:
        code, out, _ = pki(d, "verify-bundle", str(d / "bundles"), "--stack-config", str(project / "stacks/Pulumi.lab.yaml"),
                           "--live", "--connect", f"127.0.0.1:{server.port}", env={"PKI_PASSWORD": None})  # the password from passwords.csv
        assert code == 0, out
        assert server.next_event().detail == "dev-0002"
    assert f"live  ok    dev-0002 -> {HOST}" in out
    assert keys and all(k.startswith("/memfd:") for k in keys)  # the decrypted key was never a file


# ---------------------------------------------------------------------------------------------
# Bounded time, arguments


class SlowServer:
    """Accepts TCP connections and then either says nothing or drips a TLS record header and one
    byte at a time (each read returns before any per-read timeout)."""

    def __init__(self, drip: bool):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.drip = drip
        self.stop = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)
            if self.drip:
                threading.Thread(target=self.dribble, args=(conn,), daemon=True).start()

    def dribble(self, conn: socket.socket) -> None:
        try:
            conn.sendall(bytes([22, 3, 3, 0x40, 0]))  # a handshake record of 16 KiB ...
            while not self.stop.is_set():
                conn.sendall(b"\x02")  # ... that never ends
                time.sleep(0.1)
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("drip", [False, True], ids=["silent", "dripping"])
def test_the_live_check_stays_within_its_deadline(project: Path, drip: bool) -> None:
    d = project / "pki"
    ok(d, "bundle", "dev-0002", "--stack-config", str(project / "stacks/Pulumi.lab.yaml"), env=ENV)
    kits = [d / "bundles/dev-0002"] * 3
    server = SlowServer(drip)
    try:
        started = time.monotonic()
        results = live_check.live_results(kits, lambda folder: SECRET.encode(), live_check.parse_connect(f"127.0.0.1:{server.port}"),
                                          timeout=5.0, deadline_seconds=1.0)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed < 2.0, elapsed  # per-connection timeout 5 s, three kits: the deadline bounds them all
    outcomes = [r["beacons"][0]["outcome"] for r in results]
    assert outcomes == ["inconclusive", "not-attempted", "not-attempted"], results
    assert not any(r["admitted"] for r in results)


def test_connect_and_live_arguments(project: Path) -> None:
    assert live_check.parse_connect("10.0.1.10:8443") == live_check.Connect("10.0.1.10", 8443)
    assert live_check.parse_connect("[::1]:443") == live_check.Connect("::1", 443)
    assert live_check.parse_connect("lb.example.test") == live_check.Connect("lb.example.test", None)
    for bad in ("host:0", "host:70000", "bad host:443", "a:b:c", ""):
        with pytest.raises(PkiError, match="--connect"):
            live_check.parse_connect(bad)
    d = project / "pki"
    stack = str(project / "stacks/Pulumi.lab.yaml")
    for args, expect in ((("--connect", "127.0.0.1:1"), "--connect goes with --live"),
                         (("--live", "--connect", "bad host"), "--connect: got 'bad host'"),
                         (("--live", "--live-deadline", "0"), "--live-deadline")):
        code, out, err = pki(d, "verify-bundle", str(d), "--stack-config", stack, *args, env=ENV)
        assert code == 2 and "Traceback" not in err and expect in err, err
