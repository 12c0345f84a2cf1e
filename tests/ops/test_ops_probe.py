"""probe against real TLS servers on loopback: the mTLS server of tests/tls (CERT_REQUIRED, CRL
checks on the whole chain), the same server misconfigured to admit everyone (CERT_NONE) or
certificate-less clients (CERT_OPTIONAL), and an IIS-like server that completes the handshake
and answers HTTP 403 (as IIS does with 403.7) instead of a TLS alert."""

from __future__ import annotations

import json
import time
import socket
import ssl
from pathlib import Path
from typing import Iterator

import pytest

from tests.ops_fixtures.support import BeaconCa, run
from tests.tls.conftest import BeaconServer, Event, Lab, build_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    built = build_lab(tmp_path_factory.mktemp("ops-probe"), intermediate=True)
    d = built.directory
    crls = [d / "crl.pem", d / "root-crl.pem"]
    cert, key = d / "issued" / "localhost.pem", d / "private" / "localhost.key"
    open_door = BeaconServer(cert, key, [d / "chain.pem"], crls, chain_crl_check=True)
    open_door.context.verify_mode = ssl.CERT_NONE  # never asks for a client certificate
    optional = BeaconServer(cert, key, [d / "chain.pem"], crls, chain_crl_check=True)
    optional.context.verify_mode = ssl.CERT_OPTIONAL  # checks a certificate if one comes, admits none
    iis_like = Http403Server(cert, key, [d / "chain.pem"], crls, chain_crl_check=True)
    trickle = TrickleServer(cert, key, [d / "chain.pem"], crls, chain_crl_check=True)
    built.servers.update({"open-door": open_door, "optional": optional, "iis-like": iis_like, "trickle": trickle})
    yield built
    for server in built.servers.values():
        server.close()


class TrickleServer(BeaconServer):
    """Completes TLS, then answers one byte every 0.2 s: a per-read timeout never trips."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.context.verify_mode = ssl.CERT_OPTIONAL

    def _handle(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            return
        with tls:
            try:
                tls.recv(4096)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000:
                    tls.sendall(bytes([byte]))
                    time.sleep(0.2)
            except (ssl.SSLError, OSError):
                pass


class Http403Server(BeaconServer):
    """TLS 1.2 only, client certificate optional; no certificate -> HTTP 403 (IIS 403.7)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.context.verify_mode = ssl.CERT_OPTIONAL
        self.context.maximum_version = ssl.TLSVersion.TLSv1_2

    def _handle(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.events.put(Event(False, str(exc)))
            conn.close()
            return
        with tls:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                request += chunk
            if tls.getpeercert():
                body, status = b"beacon ok\n", "200 OK"
            else:
                body, status = b"403 - Forbidden: Access is denied.\n", "403 Forbidden"
            tls.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


def url(lab: Lab, server: str) -> str:
    return f"https://localhost:{lab.servers[server].port}/ManageSoftDL/"


def matrix_args(lab: Lab) -> list[str]:
    valid, revoked = lab.cases["valid"], lab.cases["revoked"]
    return [
        "--ca", str(lab.server_ca), "--connect", "127.0.0.1",
        "--cert", str(valid.cert), "--key", str(valid.key),
        "--revoked-cert", str(revoked.cert), "--revoked-key", str(revoked.key),
    ]


def test_a_correct_beacon_passes_the_matrix(lab: Lab, capsys) -> None:
    code, out, err = run(capsys, "probe", url(lab, "fresh"), *matrix_args(lab), "--tls12")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[1].split()[:5] == ["CASE", "TLS", "EXPECT", "GOT", "RESULT"]
    assert len([line for line in lines if line.endswith(")") or " ok " in line]) >= 6
    assert "ok: refuses what it must refuse, admits the device certificates" in out
    code, out, _ = run(capsys, "--json", "probe", url(lab, "fresh"), *matrix_args(lab))
    result = json.loads(out)
    assert code == 0 and result["ok"] and not result["admitsWhatItShouldRefuse"]
    rows = {r["case"]: r for r in result["matrix"]}
    assert rows["no client certificate"]["outcome"] == "refused"
    assert rows["device-valid.pem"]["outcome"] == "admitted" and rows["device-valid.pem"]["httpStatus"] == 200
    assert rows["device-revoked.pem (revoked)"]["outcome"] == "refused"
    # A CA made for the run with the issuing CA's subject (and the device's subject): refused, 403.16 on IIS.
    assert rows["foreign CA with the issuing CA's name"]["outcome"] == "refused" and result["enforcement"] == "require"
    # TLS 1.3: the server's alert (certificate revoked) usually arrives; a bare close also counts as refused.
    detail = rows["device-revoked.pem (revoked)"]["detail"].lower()
    assert "revoked" in detail or "closed after the handshake" in detail


def test_a_beacon_that_admits_everyone_is_flagged(lab: Lab, capsys) -> None:
    code, out, _ = run(capsys, "probe", url(lab, "open-door"), *matrix_args(lab))
    assert code == 1
    failing = [line for line in out.splitlines() if "FAIL: ADMITTED" in line]
    assert len(failing) == 3
    assert any(line.startswith("no client certificate") for line in failing)
    assert any(line.startswith("device-revoked.pem (revoked)") for line in failing)
    assert any(line.startswith("foreign CA with the issuing CA's name") for line in failing)
    assert "FAIL: the beacon admits what it must refuse (device-revoked.pem (revoked), foreign CA with the issuing CA's name, no client certificate)" in out


def test_a_beacon_with_optional_client_certificates_is_flagged(lab: Lab, capsys) -> None:
    code, out, _ = run(capsys, "--json", "probe", url(lab, "optional"), *matrix_args(lab))
    assert code == 1
    result = json.loads(out)
    assert result["admitsWhatItShouldRefuse"] is True
    bad = [r["case"] for r in result["matrix"] if r["admitsWhatItShouldRefuse"]]
    assert bad == ["no client certificate"]  # a certificate that comes is still checked: revoked refused


def test_http_403_counts_as_refused(lab: Lab, capsys) -> None:
    valid = lab.cases["valid"]
    code, out, err = run(
        capsys, "--json", "probe", url(lab, "iis-like"), "--ca", str(lab.server_ca), "--connect", "127.0.0.1", "--cert", str(valid.cert), "--key", str(valid.key)
    )
    assert code == 0, out + err
    rows = json.loads(out)["matrix"]
    assert rows[0]["outcome"] == "refused" and rows[0]["httpStatus"] == 403 and rows[0]["tls"] == "default"


def test_a_device_the_beacon_refuses_fails_without_a_security_flag(lab: Lab, capsys) -> None:
    impostor = lab.cases["impostor"]
    code, out, _ = run(capsys, "probe", url(lab, "fresh"), "--ca", str(lab.server_ca), "--connect", "127.0.0.1", "--cert", str(impostor.cert), "--key", str(impostor.key))
    assert code == 1
    assert "FAIL: impostor.pem not handled as expected: agents holding such a certificate lose contact" in out
    assert "admits what it must refuse" not in out


def test_probe_errors_are_one_line(lab: Lab, capsys, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    from cryptography.hazmat.primitives import serialization

    other_ca.write_bytes(BeaconCa("Someone Else").cert.public_bytes(serialization.Encoding.PEM))
    valid = lab.cases["valid"]
    code, _, err = run(capsys, "probe", url(lab, "fresh"), "--ca", str(other_ca), "--connect", "127.0.0.1")
    assert code == 1 and err.count("\n") == 1 and "the beacon's certificate does not verify for localhost" in err
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    code, _, err = run(capsys, "probe", f"https://127.0.0.1:{port}/", "--ca", str(lab.server_ca))
    assert code == 1 and err.count("\n") == 1 and f"cannot connect to 127.0.0.1:{port}" in err
    for args, message in [
        (["http://localhost/ManageSoftDL/", "--ca", str(lab.server_ca)], "expected https://HOST[:PORT]/ManageSoftDL/"),
        ([url(lab, "fresh"), "--ca", str(lab.server_ca), "--cert", str(valid.cert)], "--cert and --key go in pairs"),
        ([url(lab, "fresh"), "--ca", str(tmp_path / "missing.pem")], "missing.pem: unreadable"),
        ([url(lab, "fresh"), "--ca", str(lab.server_ca), "--cert", str(valid.cert), "--key", str(lab.cases["revoked"].key)], "do not load or do not match"),
    ]:
        code, out, err = run(capsys, "probe", *args)
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_observe_admits_requests_without_a_certificate_and_still_refuses_bad_ones(lab: Lab, capsys, tmp_path: Path) -> None:
    """An observe beacon (certificates negotiated, not required: the 'optional' server) passes
    under --enforcement observe, from the flag or from the stack outputs; a require beacon fails it."""
    code, out, err = run(capsys, "--json", "probe", url(lab, "optional"), *matrix_args(lab), "--enforcement", "observe")
    assert code == 0, out + err
    rows = {r["case"]: r for r in json.loads(out)["matrix"]}
    assert rows["no client certificate"]["expect"] == "admit" and rows["no client certificate"]["outcome"] == "admitted"
    assert rows["device-revoked.pem (revoked)"]["outcome"] == "refused" and rows["foreign CA with the issuing CA's name"]["outcome"] == "refused"
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"enforcement": "observe"}))
    code, out, _ = run(capsys, "--json", "--stack-outputs", str(outputs), "probe", url(lab, "optional"), *matrix_args(lab))
    assert code == 0 and json.loads(out)["enforcement"] == "observe"
    # A beacon that requires certificates is not what observe means: devices without one would be cut off.
    code, out, _ = run(capsys, "probe", url(lab, "fresh"), *matrix_args(lab), "--enforcement", "observe")
    assert code == 1 and "no client certificate not handled as expected" in out


def test_one_deadline_per_connection_bounds_a_trickling_beacon(lab: Lab, capsys) -> None:
    started = time.monotonic()
    code, out, _ = run(capsys, "--json", "probe", url(lab, "trickle"), "--ca", str(lab.server_ca), "--connect", "127.0.0.1", "--timeout", "1")
    elapsed = time.monotonic() - started
    rows = json.loads(out)["matrix"]
    assert code == 1 and rows and all(r["outcome"] in ("inconclusive", "admitted", "refused") for r in rows)
    assert elapsed < 2 * len(rows) + 5, elapsed  # a byte every 0.2 s for 1,040 bytes: 200 s per row without the deadline
