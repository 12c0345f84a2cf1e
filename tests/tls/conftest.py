"""Real mutual-TLS handshakes on loopback for the certificates `scripts.pki` makes.

A threaded Python ssl (OpenSSL) server stands in for HTTP.sys/IIS: CERT_REQUIRED, the PKI's CA
as the only trust anchor, CRL checking (leaf, or the whole chain with an intermediate) with the
PKI's CRLs loaded, and HTTP 200 for /ManageSoftDL/ after the handshake. OpenSSL's server-side
verification uses the SSL-client purpose, so EKU and keyUsage are enforced for clients.

Ordinary certificates come from the CLI; the odd ones (expired, not yet valid, impostor CA,
serverAuth-only, stale CRL) are crafted with cryptography from the PKI's own CA key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import queue
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scripts.pki.cli import main as pki_main

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
CURL = shutil.which("curl")


# ---------------------------------------------------------------------------------------------
# The CLI, in process


def pki(directory: Path, *args: str) -> tuple[int, str, str]:
    """Run `python -m scripts.pki --dir DIR ARGS` in process: (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = pki_main(["--dir", str(directory), *args])
    return code, stdout.getvalue(), stderr.getvalue()


def pki_ok(directory: Path, *args: str) -> str:
    code, out, err = pki(directory, *args)
    assert code == 0, f"pki {' '.join(args)} -> {code}: {err}"
    return out


def check(directory: Path, cert: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """`pki check --json`: (exit code, verdict)."""
    code, out, err = pki(directory, "check", str(cert), "--json", *extra)
    assert code in (0, 1), err
    return code, json.loads(out)


# ---------------------------------------------------------------------------------------------
# Crafting odd certificates


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_ca(directory: Path, stem: str = "ca") -> tuple[x509.Certificate, Any]:
    cert = x509.load_pem_x509_certificate((directory / f"{stem}.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), None)
    return cert, key


def craft_ca(subject: x509.Name, days: int = 30) -> tuple[x509.Certificate, Any]:
    """A self-signed CA (e.g. an impostor with our CA's name but its own key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def craft_leaf(
    issuer: x509.Certificate,
    issuer_key: Any,
    cn: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
) -> tuple[x509.Certificate, Any]:
    """A device certificate like the CLI's, with chosen validity and EKU."""
    key = ec.generate_private_key(ec.SECP256R1())
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


def write_identity(folder: Path, name: str, cert: x509.Certificate, key: Any, chain: tuple[x509.Certificate, ...] = ()) -> tuple[Path, Path]:
    """name.pem (certificate, then any chain the client sends) and name.key."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(_pem(cert) + b"".join(_pem(c) for c in chain))
    key_path.write_bytes(_key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def stale_crl(issuer: x509.Certificate, issuer_key: Any) -> x509.CertificateRevocationList:
    """A properly signed CRL whose nextUpdate has passed."""
    now = dt.datetime.now(dt.timezone.utc)
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - dt.timedelta(days=10))
        .next_update(now - dt.timedelta(days=3))
        .add_extension(x509.CRLNumber(99), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


# ---------------------------------------------------------------------------------------------
# The server


@dataclass
class Event:
    accepted: bool
    detail: str  # OpenSSL's verify message on rejection, the peer CN on acceptance
    path: str = ""


class BeaconServer:
    """HTTP.sys stand-in: mTLS with CRL checks, then HTTP 200 for /ManageSoftDL/."""

    def __init__(self, cert: Path, key: Path, trust: list[Path], crls: list[Path], chain_crl_check: bool):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        for path in trust:
            ctx.load_verify_locations(cafile=str(path))
        for path in crls:
            ctx.load_verify_locations(cafile=str(path))  # PEM CRLs load the same way
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN if chain_crl_check else ssl.VERIFY_CRL_CHECK_LEAF
        self.context = ctx
        self.events: queue.Queue[Event] = queue.Queue()
        self.sock = socket.create_server((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            conn.settimeout(5)
            self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except ssl.SSLCertVerificationError as exc:
            self.events.put(Event(False, exc.verify_message or str(exc)))
            conn.close()
            return
        except (ssl.SSLError, OSError) as exc:
            # e.g. reason PEER_DID_NOT_RETURN_A_CERTIFICATE -> "peer did not return a certificate"
            reason = (getattr(exc, "reason", None) or "").replace("_", " ").lower()
            self.events.put(Event(False, f"{reason}: {exc}"))
            conn.close()
            return
        with tls:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                line = request.split(b"\r\n", 1)[0].decode("latin-1")
                path = line.split(" ")[1] if line.count(" ") >= 2 else ""
                peer = tls.getpeercert() or {}
                cn = next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), "")
                if path.startswith("/ManageSoftDL/"):
                    body, status = b"beacon ok\n", "200 OK"
                else:
                    body, status = b"not found\n", "404 Not Found"
                tls.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                self.events.put(Event(True, cn, path))
            except (ssl.SSLError, OSError) as exc:
                self.events.put(Event(False, str(exc)))

    def drain(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()

    def next_event(self, timeout: float = 5) -> Event:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self._stop.set()
        # shutdown wakes the thread's accept() now; close alone would wait out its 0.2 s timeout.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=2)


# ---------------------------------------------------------------------------------------------
# Clients


@dataclass
class Outcome:
    ok: bool  # got HTTP 200 for /ManageSoftDL/
    detail: str = ""


def python_client(port: int, server_ca: Path, cert: Path | None, key: Path | None, tls12: bool = False) -> Outcome:
    ctx = ssl.create_default_context(cafile=str(server_ca))
    if tls12:  # TLS 1.2: the client certificate comes before the server's Finished
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection((HOST, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            tls.sendall(f"GET /ManageSoftDL/ HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
    except (ssl.SSLError, OSError) as exc:
        return Outcome(False, f"{type(exc).__name__}: {exc}")
    status = data.split(b"\r\n", 1)[0].decode("latin-1")
    return Outcome(status.startswith("HTTP/1.1 200") and data.endswith(b"beacon ok\n"), status or "connection closed without a response")


def curl_client(port: int, server_ca: Path, cert: Path | None, key: Path | None) -> Outcome:
    assert CURL is not None
    command = [
        CURL, "--silent", "--show-error", "--max-time", "10",
        "--resolve", f"{SERVER_NAME}:{port}:{HOST}",
        "--cacert", str(server_ca),
        "--output", "-", "--write-out", "\n%{http_code}",
    ]
    if cert is not None:
        command += ["--cert", str(cert), "--key", str(key)]
    command.append(f"https://{SERVER_NAME}:{port}/ManageSoftDL/")
    result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    lines = result.stdout.rstrip("\n").split("\n")
    ok = result.returncode == 0 and lines[-1] == "200" and "beacon ok" in result.stdout
    return Outcome(ok, f"curl exit {result.returncode}: {result.stderr.strip()} http_code={lines[-1]}")


def python_tls12_client(port: int, server_ca: Path, cert: Path | None, key: Path | None) -> Outcome:
    return python_client(port, server_ca, cert, key, tls12=True)


CLIENTS = {"python": python_client, "python-tls1.2": python_tls12_client, "curl": curl_client}


# ---------------------------------------------------------------------------------------------
# PKIs and their servers


@dataclass
class Case:
    """One client identity and what must happen to it."""

    cert: Path | None
    key: Path | None
    accepted: bool
    status: str | None  # expected `pki check` status (None: accept; "" no certificate to check)
    reasons: tuple[str, ...]  # acceptable `pki check` reasons
    server_says: tuple[str, ...]  # acceptable fragments of OpenSSL's server-side verdict
    check_args: tuple[str, ...] = ()
    server: str = "fresh"  # which server: fresh CRL, or stale CRL


@dataclass
class Lab:
    directory: Path
    server_ca: Path  # what clients trust for the beacon's own certificate
    cases: dict[str, Case]
    servers: dict[str, BeaconServer] = field(default_factory=dict)


def _start(lab: Lab, name: str, trust: list[Path], crls: list[Path], chain_check: bool) -> None:
    d = lab.directory
    lab.servers[name] = BeaconServer(d / "issued" / "localhost.pem", d / "private" / "localhost.key", trust, crls, chain_check)


def build_lab(base: Path, intermediate: bool, revoke_intermediate: bool = False) -> Lab:
    d = base / "pki"
    init = ["init-ca", "--cn", "Test Devices CA", "--o", "Example Corp", "--crl-url", "http://crl.test.invalid/devices.crl"]
    pki_ok(d, *init, *(["--intermediate"] if intermediate else []))
    pki_ok(d, "issue-server", "--dns", "localhost", "--ip", "127.0.0.1")
    pki_ok(d, "issue-client", "--cn", "device-valid", "--o", "Example Corp")
    pki_ok(d, "issue-client", "--cn", "device-revoked", "--o", "Example Corp")
    pki_ok(d, "revoke", "device-revoked", "--reason", "keyCompromise")
    if revoke_intermediate:
        serial = json.loads((d / "index.json").read_text())["authorities"]["issuing"]["serial"]
        pki_ok(d, "revoke", "--serial", serial, "--reason", "cessationOfOperation")
    pki_ok(d, "crl")

    ca_cert, ca_key = load_ca(d)
    now = dt.datetime.now(dt.timezone.utc)
    crafted = base / "crafted"
    issued = lambda name: (d / "issued" / f"{name}.pem", d / "private" / f"{name}.key")  # noqa: E731

    # Impostor: a CA with exactly our issuing CA's name, its own key; the client sends it along.
    fake_ca, fake_key = craft_ca(ca_cert.subject)
    leaf, key = craft_leaf(fake_ca, fake_key, "device-impostor", now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    impostor = write_identity(crafted, "impostor", leaf, key, (fake_ca,))

    cases = {
        "valid": Case(*issued("device-valid"), True, None, ("accepted",), ()),
        "revoked": Case(*issued("device-revoked"), False, "403.13", ("revoked",), ("certificate revoked",)),
        "impostor": Case(*impostor, False, "403.16", ("untrusted",), ("unable to get local issuer certificate", "certificate signature failure", "self-signed certificate in certificate chain")),
    }
    server_crls = [d / "crl.pem"] + ([d / "root-crl.pem"] if intermediate else [])
    trust = [d / "chain.pem"]  # Root (+ intermediate, as LocalMachine\CA holds it on the beacon)
    lab = Lab(d, d / "chain.pem", cases)
    if intermediate:
        _start(lab, "fresh", trust, server_crls, chain_check=True)
        return lab

    # Another CA altogether (made by the CLI in its own directory).
    other = base / "other"
    pki_ok(other, "init-ca", "--cn", "Other Devices CA", "--crl-url", "http://crl.other.invalid/other.crl")
    pki_ok(other, "issue-client", "--cn", "device-other")
    expired = write_identity(crafted, "expired", *craft_leaf(ca_cert, ca_key, "device-expired", now - dt.timedelta(days=30), now - dt.timedelta(days=1)))
    future = write_identity(crafted, "future", *craft_leaf(ca_cert, ca_key, "device-future", now + dt.timedelta(days=1), now + dt.timedelta(days=30)))
    server_only = write_identity(crafted, "server-only", *craft_leaf(ca_cert, ca_key, "device-server-only", now - dt.timedelta(days=1), now + dt.timedelta(days=30), (ExtendedKeyUsageOID.SERVER_AUTH,)))
    stale = crafted / "stale-crl.pem"
    stale.write_bytes(stale_crl(ca_cert, ca_key).public_bytes(serialization.Encoding.PEM))

    cases.update({
        "no-certificate": Case(None, None, False, "", (), ("peer did not return a certificate", "certificate required")),
        "other-ca": Case(other / "issued" / "device-other.pem", other / "private" / "device-other.key", False, "403.16", ("untrusted",), ("unable to get local issuer certificate",)),
        "expired": Case(*expired, False, "403.17", ("expired",), ("certificate has expired",)),
        "not-yet-valid": Case(*future, False, "403.17", ("not-yet-valid",), ("certificate is not yet valid",)),
        "server-auth-only": Case(*server_only, False, "403.16", ("wrong-usage",), ("unsuitable certificate purpose", "unsupported certificate purpose")),
        "ca-as-client": Case(d / "ca.pem", d / "ca.key", False, "403.16", ("ca-as-client",), ("unsuitable certificate purpose", "unsupported certificate purpose")),
        "stale-crl": Case(*issued("device-valid"), False, "403.13", ("crl-stale",), ("CRL has expired",), ("--crl", str(stale)), "stale"),
    })
    _start(lab, "fresh", trust, server_crls, chain_check=False)
    _start(lab, "stale", trust, [stale], chain_check=False)
    return lab


@pytest.fixture(scope="session")
def root_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = build_lab(tmp_path_factory.mktemp("tls-root"), intermediate=False)
    yield lab
    for server in lab.servers.values():
        server.close()


@pytest.fixture(scope="session")
def intermediate_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = build_lab(tmp_path_factory.mktemp("tls-intermediate"), intermediate=True)
    yield lab
    for server in lab.servers.values():
        server.close()
