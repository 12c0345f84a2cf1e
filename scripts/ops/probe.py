"""The mTLS matrix against a live beacon, from the operator's machine.

Rows: no client certificate (must be refused), each device certificate (must be admitted to
/ManageSoftDL/), a revoked certificate (must be refused). Each row is a fresh TLS connection
verifying the beacon's own certificate against --ca and sending GET <path>.

What counts as refused: a TLS alert or reset (HTTP.sys with clientcertnegotiation=enable, or
TLS 1.3), a connection closed without an HTTP answer, or HTTP 401/403 (IIS 403.7 no
certificate, 403.13 revoked, 403.16 untrusted, 401.2 no mapping; over the internet IIS sends
the status without the sub-status). Admitted: any other HTTP answer below 500 (a 404 still
means the certificate got through). HTTP 5xx is neither: the row is an error.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from cryptography import x509

from components.certs import facts as cert_facts

from .common import InputError, OpsError, days_left, now_utc

DEFAULT_PATH = "/ManageSoftDL/"
READ_LIMIT = 65536


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int
    path: str
    connect: str  # address to connect to (default: host)


@dataclass(frozen=True)
class Identity:
    label: str
    expect: str  # admit | refuse
    cert: str | None = None
    key: str | None = None


@dataclass
class Row:
    identity: Identity
    tls: str
    outcome: str  # admitted | refused | error
    detail: str
    status: int | None = None

    @property
    def ok(self) -> bool:
        return (self.outcome == "admitted") == (self.identity.expect == "admit") and self.outcome != "error"

    @property
    def security_failure(self) -> bool:
        return self.identity.expect == "refuse" and self.outcome == "admitted"

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.identity.label,
            "certificate": self.identity.cert,
            "tls": self.tls,
            "expect": self.identity.expect,
            "outcome": self.outcome,
            "httpStatus": self.status,
            "detail": self.detail,
            "ok": self.ok,
            "admitsWhatItShouldRefuse": self.security_failure,
        }


def parse_target(url: str, connect: str | None, path: str | None) -> Target:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InputError(f"URL: got {url!r}; expected https://HOST[:PORT]/ManageSoftDL/ (the beacon's agent URL)")
    try:
        port = parts.port or 443
    except ValueError:
        raise InputError(f"URL: got {url!r}; the port is not a number from 1 to 65535") from None
    chosen = path or (parts.path if parts.path not in ("", "/") else DEFAULT_PATH)
    if parts.query:
        chosen += "?" + parts.query
    if not chosen.startswith("/") or any(ch.isspace() for ch in chosen):
        raise InputError(f"--path: got {chosen!r}; expected an absolute path like /ManageSoftDL/")
    return Target(url, parts.hostname, port, chosen, connect or parts.hostname)


def _check_file(path: str, what: str) -> str:
    if not Path(path).is_file():
        raise InputError(f"{what} {path}: no such file")
    return path


def identities(certs_keys: Sequence[tuple[str, str]], revoked: Sequence[tuple[str, str]]) -> list[Identity]:
    rows = [Identity("no client certificate", "refuse")]
    for cert, key in certs_keys:
        rows.append(Identity(Path(cert).name, "admit", _check_file(cert, "--cert"), _check_file(key, "--key")))
    for cert, key in revoked:
        rows.append(Identity(f"{Path(cert).name} (revoked)", "refuse", _check_file(cert, "--revoked-cert"), _check_file(key, "--revoked-key")))
    return rows


def certificate_notes(rows: Sequence[Identity]) -> list[str]:
    """Warnings about the given client certificates that explain a refusal in advance."""
    notes = []
    now = now_utc()
    for identity in rows:
        if identity.cert is None:
            continue
        try:
            cert = cert_facts.read_certificates(identity.cert)[0]
        except (OSError, ValueError) as exc:
            raise InputError(f"{identity.cert}: not a certificate ({exc})") from None
        if days_left(cert.not_valid_after_utc, now) < 0:
            notes.append(f"{identity.cert} expired {cert_facts.iso(cert.not_valid_after_utc)}: the beacon answers 403.17")
        names = cert_facts.eku_names(cert)
        if names is not None and "clientAuth" not in names and "anyExtendedKeyUsage" not in names:
            notes.append(f"{identity.cert} has no clientAuth EKU ({', '.join(names)}): the beacon refuses it")
    return notes


def _context(ca: str, identity: Identity, tls12: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise InputError(f"--ca {ca}: not a PEM CA certificate file ({exc})") from None
    if identity.cert:
        try:
            ctx.load_cert_chain(identity.cert, identity.key, password=_no_password)
        except (ssl.SSLError, OSError, ValueError, TypeError) as exc:
            raise InputError(f"{identity.cert} / {identity.key}: certificate and key do not load or do not match ({exc}); an encrypted key must be decrypted first") from None
    return ctx


def _no_password() -> str:
    raise ValueError("the key is encrypted")


def _status(data: bytes) -> tuple[int | None, str]:
    line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace").strip()
    fields = line.split(" ", 2)
    if len(fields) >= 2 and fields[0].startswith("HTTP/") and fields[1].isdigit():
        return int(fields[1]), line
    return None, line


def attempt(target: Target, ca: str, identity: Identity, tls12: bool = False, timeout: float = 10.0) -> Row:
    label = "TLS 1.2" if tls12 else "default"
    ctx = _context(ca, identity, tls12)
    try:
        raw = socket.create_connection((target.connect, target.port), timeout=timeout)
    except OSError as exc:
        raise OpsError(f"cannot connect to {target.connect}:{target.port} ({exc.strerror or exc}): is the beacon up and port {target.port} open to this address?") from None
    data = b""
    try:
        with raw:
            try:
                tls = ctx.wrap_socket(raw, server_hostname=target.host)
            except ssl.SSLCertVerificationError as exc:
                raise OpsError(
                    f"the beacon's certificate does not verify for {target.host} with --ca {ca}: {exc.verify_message or exc} "
                    "(wrong --ca, or the beacon serves another certificate)"
                ) from None
            except ssl.SSLError as exc:
                return Row(identity, label, "refused", f"TLS handshake refused: {exc.reason or exc}")
            except (ConnectionError, socket.timeout, OSError) as exc:
                return Row(identity, label, "refused", f"connection dropped during the handshake ({type(exc).__name__})")
            with tls:
                request = f"GET {target.path} HTTP/1.1\r\nHost: {target.host}\r\nUser-Agent: flexnet-beacon-ops-probe\r\nConnection: close\r\n\r\n"
                try:
                    tls.sendall(request.encode("ascii"))
                    while len(data) < READ_LIMIT:
                        chunk = tls.recv(8192)
                        if not chunk:
                            break
                        data += chunk
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    if not data:  # TLS 1.3: a refusal whose alert did not arrive before the close
                        return Row(identity, label, "refused", "connection closed after the handshake without an HTTP answer")
                except ssl.SSLError as exc:
                    if not data:  # TLS 1.3: the server's verdict on our certificate arrives after the handshake
                        return Row(identity, label, "refused", f"TLS alert after the handshake: {exc.reason or exc}")
                except socket.timeout:
                    if not data:
                        return Row(identity, label, "error", f"no HTTP answer within {timeout:g} s")
                except (ConnectionError, OSError) as exc:
                    if not data:
                        return Row(identity, label, "refused", f"connection reset without an HTTP answer ({type(exc).__name__})")
    except OpsError:
        raise
    status, line = _status(data)
    if status is None:
        return Row(identity, label, "refused", "connection closed without an HTTP answer" if not data else f"not an HTTP answer: {line[:60]!r}")
    if status in (401, 403):
        return Row(identity, label, "refused", line, status)
    if status >= 500:
        return Row(identity, label, "error", f"{line} (a server error: neither a clean refusal nor an admission)", status)
    return Row(identity, label, "admitted", line, status)


def run_matrix(target: Target, ca: str, rows: Sequence[Identity], tls12_too: bool, timeout: float) -> list[Row]:
    results = [attempt(target, ca, identity, False, timeout) for identity in rows]
    if tls12_too:
        results += [attempt(target, ca, identity, True, timeout) for identity in rows]
    return results


def load_ca(path: str) -> list[x509.Certificate]:
    try:
        return cert_facts.read_certificates(path)
    except OSError as exc:
        raise InputError(f"--ca {path}: unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"--ca {path}: {exc}") from None
