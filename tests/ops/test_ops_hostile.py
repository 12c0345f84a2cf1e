"""`python -m scripts.ops` against hostile input and hostile peers (issue 15).

probe proves what it reports: against real loopback servers that speak plain HTTP, send
garbage, never answer, present the wrong certificate, or complete TLS and then answer nonsense,
no "must refuse" row counts as refused, probe exits 1 and says why (inconclusive); the real mTLS
stand-in of tests/tls still passes, and without --cert probe does not claim that device
certificates are admitted. Files: FIFOs, devices, non-UTF-8 and oversized outputs files are one
line, exit 2. Non-UTF-8 argv (--connect as bytes) is one line, exit 2 (a subprocess: only a
process gets bytes argv).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import ROOT
from tests.ops_fixtures.support import BeaconCa, run
from tests.tls.conftest import BeaconServer, Lab, build_lab, write_identity


class RawServer:
    """A TCP server on loopback whose every connection gets ``serve(conn)`` (a thread each)."""

    def __init__(self, serve: Callable[[socket.socket], None], accept: bool = True):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.serve = serve
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True) if accept else None
        if self.thread is not None:
            self.sock.settimeout(0.2)
            self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                self.serve(conn)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        if self.thread is not None:
            self.thread.join(timeout=2)


def plain_http(conn: socket.socket) -> None:
    conn.recv(4096)  # a ClientHello, read as a broken request line
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request")


def garbage(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(bytes(range(7, 250)) * 3)


def tls_then(context: ssl.SSLContext, answer: bytes | None) -> Callable[[socket.socket], None]:
    """The right certificate and a completed handshake (no client certificate asked), then an
    answer that is not HTTP, or silence until the client gives up."""

    def serve(conn: socket.socket) -> None:
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except ssl.SSLError:
            return
        with tls:
            tls.recv(4096)
            if answer is not None:
                tls.sendall(answer)
            else:
                time.sleep(1)

    return serve


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    built = build_lab(tmp_path_factory.mktemp("ops-hostile"), intermediate=True)
    d = built.directory
    cert, key = d / "issued" / "localhost.pem", d / "private" / "localhost.key"
    crls = [d / "crl.pem", d / "root-crl.pem"]
    # The wrong certificate: one for localhost, from a CA the probe does not trust.
    wrong_cert, wrong_key = write_identity(d.parent / "wrong", "wrong", *BeaconCa("Impostor CA").server(dns=("localhost",)))
    wrong = BeaconServer(wrong_cert, wrong_key, [d / "chain.pem"], crls, chain_crl_check=True)
    wrong.context.verify_mode = ssl.CERT_NONE
    anyone = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    anyone.load_cert_chain(cert, key)
    built.servers.update({  # type: ignore[arg-type]
        "plain-http": RawServer(plain_http),
        "garbage": RawServer(garbage),
        "silent": RawServer(lambda conn: None, accept=False),  # listens, never accepts: only the kernel answers (TCP)
        "wrong-certificate": wrong,
        "tls-nonsense": RawServer(tls_then(anyone, b"\x00\x01 not http at all\r\n")),
        "tls-silent": RawServer(tls_then(anyone, None)),
    })
    yield built
    for server in built.servers.values():
        server.close()


SILENT = {"silent", "tls-silent"}


def probe_args(lab: Lab, server: str, *, cert: bool = True) -> list[str]:
    valid, revoked = lab.cases["valid"], lab.cases["revoked"]
    args = [
        "probe", f"https://localhost:{lab.servers[server].port}/ManageSoftDL/", "--ca", str(lab.server_ca),
        "--connect", "127.0.0.1", "--timeout", "0.2" if server in SILENT else "10",
        "--revoked-cert", str(revoked.cert), "--revoked-key", str(revoked.key),
    ]
    if cert:
        args += ["--cert", str(valid.cert), "--key", str(valid.key)]
    return args


@pytest.mark.parametrize("server", ["plain-http", "garbage", "silent", "tls-nonsense", "tls-silent"])
def test_what_is_not_a_refusal_is_inconclusive_and_fails(lab: Lab, capsys, server: str) -> None:
    silent = server in SILENT  # each silent row costs the timeout: fewer rows
    code, out, err = run(capsys, "--json", *probe_args(lab, server, cert=not silent), *([] if silent else ["--tls12"]))
    assert code == 1, out + err
    result = json.loads(out)
    assert result["ok"] is False and result["admitsWhatItShouldRefuse"] is False
    refusing = [r for r in result["matrix"] if r["expect"] == "refuse"]
    assert len(refusing) == (2 if silent else 6)  # with a device certificate: also the foreign-CA row, twice (default and TLS 1.2)
    assert all(r["outcome"] == "inconclusive" and not r["ok"] for r in refusing), refusing
    expected = ["device-revoked.pem (revoked)", "no client certificate"] + ([] if silent else ["device-valid.pem", "foreign CA with the issuing CA's name"])
    assert result["inconclusive"] == sorted(expected)
    if server == "silent":
        assert all("no TLS handshake from the beacon within 0.2 s" in r["detail"] for r in refusing)
    if server == "tls-silent":  # normally "no HTTP answer within 0.2 s after the handshake"; a slow machine may not finish the handshake in time
        assert all("within 0.2 s" in r["detail"] for r in refusing)
    if silent:
        return
    code, out, _ = run(capsys, *probe_args(lab, server))
    assert code == 1
    assert "refuses what it must refuse" not in out
    verdict = [line for line in out.splitlines() if line.startswith("FAIL: inconclusive for ")]
    assert len(verdict) == 1 and "completed its part of TLS" in verdict[0], out
    if server == "plain-http":
        assert "not TLS" in verdict[0]


def test_a_server_with_the_wrong_certificate_proves_nothing(lab: Lab, capsys) -> None:
    code, out, err = run(capsys, *probe_args(lab, "wrong-certificate"))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "the beacon's certificate does not verify for localhost" in err
    assert "Traceback" not in err


def test_the_real_beacon_stand_in_still_passes(lab: Lab, capsys) -> None:
    code, out, err = run(capsys, "--json", *probe_args(lab, "fresh"), "--tls12")
    assert code == 0, out + err
    result = json.loads(out)
    assert result["ok"] and result["inconclusive"] == [] and result["deviceCertificatesTested"]
    for row in result["matrix"]:
        assert row["outcome"] == ("admitted" if row["expect"] == "admit" else "refused"), row
    code, out, _ = run(capsys, *probe_args(lab, "fresh"))
    assert code == 0 and out.splitlines()[-1] == "ok: refuses what it must refuse, admits the device certificates"


def test_without_cert_it_does_not_claim_devices_are_admitted(lab: Lab, capsys) -> None:
    code, out, err = run(capsys, *probe_args(lab, "fresh", cert=False))
    assert code == 0, out + err
    assert "admits the device certificates" not in out
    assert out.splitlines()[-1].startswith("ok: refuses what it must refuse; device certificates were not tested")
    code, out, _ = run(capsys, "--json", *probe_args(lab, "fresh", cert=False))
    assert json.loads(out)["deviceCertificatesTested"] is False


def one_line(code: int, out: str, err: str, expect: str) -> None:
    assert code == 2, (code, out, err)
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ops: error: ") and expect in lines[0], err


def test_hostile_files_are_one_line(lab: Lab, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PKI_PASSWORD", "x" * 16)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    url = f"https://localhost:{lab.servers['fresh'].port}/ManageSoftDL/"
    for ca, expect in ((str(fifo), "a FIFO"), ("/dev/zero", "a character device"), (str(tmp_path), "a directory")):
        one_line(*run(capsys, "probe", url, "--ca", ca), expect=expect)
    valid = lab.cases["valid"]
    one_line(*run(capsys, "probe", url, "--ca", str(lab.server_ca), "--cert", "/dev/zero", "--key", str(valid.key)), expect="--cert /dev/zero: a character device")
    not_utf8 = tmp_path / "outputs.json"
    not_utf8.write_bytes(b'{"beacons": "\xff\xfe"}')
    one_line(*run(capsys, "--stack-outputs", str(not_utf8), "verify"), expect="not UTF-8 text")
    one_line(*run(capsys, "--stack-outputs", str(fifo), "verify"), expect="a FIFO")
    one_line(*run(capsys, "--stack-outputs", "/dev/zero", "verify"), expect="a character device")
    one_line(*run(capsys, "publish-server-cert", str(fifo), "--stack", "dev", "--hostname", "b.example.com", "--check-only"), expect="a FIFO")


@pytest.mark.parametrize("connect", ["a" * 64 + ".example.com", "bad host", "x" * 300])
def test_hostile_connect_values_are_one_line(lab: Lab, capsys, connect: str) -> None:
    url = f"https://localhost:{lab.servers['fresh'].port}/ManageSoftDL/"
    one_line(*run(capsys, "probe", url, "--ca", str(lab.server_ca), "--connect", connect), expect="--connect: got")


def test_non_utf8_arguments_are_one_line() -> None:
    """argv bytes that are not UTF-8 (Python passes them on as surrogates): one line, exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "scripts.ops", "probe", b"https://localhost:1/", "--ca", "ca.pem", "--connect", b"beacon\xff"],
        cwd=ROOT, capture_output=True, timeout=60,
    )
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode("utf-8", "replace").strip() == "ops: error: --connect: got b'beacon\\xff', which is not valid UTF-8; expected UTF-8 text"
