"""The mTLS matrix against a live beacon, from the operator's machine.

Rows: no client certificate (refused under enforcement require; admitted under observe, where
anonymous requests still pass), each device certificate (must be admitted to /ManageSoftDL/), a
revoked certificate (must be refused), and a certificate from a throwaway CA made for the run
whose subject equals the issuing CA's (must be refused: a beacon that trusts CAs by name would
admit it). Each row is a fresh TLS connection verifying the beacon's own certificate against --ca
and sending GET <path>.

A refusal counts only when the beacon completed its part of TLS first: it sent its certificate,
which verified against --ca for the URL's host, and finished its handshake messages (seen through
OpenSSL's message callback, :class:`Handshake`). After that, what counts as refused: a TLS alert
or reset (HTTP.sys with clientcertnegotiation=enable, or TLS 1.3), a connection closed without an
HTTP answer, or HTTP 401/403 (IIS 403.7 no certificate, 403.13 revoked, 403.16 untrusted, 401.2
no mapping; over the internet IIS sends the status without the sub-status). Anything else that
stops a row (plain HTTP or garbage on the port, silence until the timeout, a non-HTTP answer) is
"inconclusive" and fails the probe: it proves nothing. Admitted: any other HTTP answer below 500
(a 404 still means the certificate got through). HTTP 5xx is neither: the row is an error.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from cryptography import x509

from components.certs import facts as cert_facts
from components.safe_files import CERTIFICATE_FILE_LIMIT, FileRefused, check_regular

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
    outcome: str  # admitted | refused | inconclusive (nothing proven) | error
    detail: str
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == ("admitted" if self.identity.expect == "admit" else "refused")

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
    if not chosen.startswith("/") or any(ch.isspace() or ord(ch) < 0x21 or ord(ch) > 0x7E for ch in chosen):
        raise InputError(f"--path: got {chosen!r}; expected an absolute path like /ManageSoftDL/ (printable ASCII)")
    _check_host(parts.hostname, "URL host")
    if connect is not None:
        _check_host(connect, "--connect")
    return Target(url, parts.hostname, port, chosen, connect or parts.hostname)


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _check_host(text: str, what: str) -> str:
    """An IP address or a DNS name (what the socket and SNI can take; no UnicodeError later)."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if len(text) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in text.rstrip(".").split(".")):
        raise InputError(f"{what}: got {text!r}; expected a host name like beacon.example.com or an IP address")
    return text


def _check_file(path: str, what: str) -> str:
    try:
        check_regular(path, CERTIFICATE_FILE_LIMIT)
    except OSError as exc:
        raise InputError(f"{what} {path}: {'no such file' if isinstance(exc, FileNotFoundError) else (exc.strerror or exc)}") from None
    except FileRefused as exc:
        raise InputError(f"{what} {path}: {exc}") from None
    return path


MODES = ("require", "observe")
FOREIGN_LABEL = "foreign CA with the issuing CA's name"


def identities(certs_keys: Sequence[tuple[str, str]], revoked: Sequence[tuple[str, str]], enforcement: str = "require") -> list[Identity]:
    if enforcement not in MODES:
        raise InputError(f"--enforcement: got {enforcement!r}; expected require or observe")
    rows = [Identity("no client certificate", "refuse" if enforcement == "require" else "admit")]
    for cert, key in certs_keys:
        rows.append(Identity(Path(cert).name, "admit", _check_file(cert, "--cert"), _check_file(key, "--key")))
    for cert, key in revoked:
        rows.append(Identity(f"{Path(cert).name} (revoked)", "refuse", _check_file(cert, "--revoked-cert"), _check_file(key, "--revoked-key")))
    return rows


def foreign_identity(device_cert: str, folder: Path) -> Identity:
    """A certificate from a CA made for this run whose subject is the issuing CA's (the issuer of
    ``device_cert``), for the device's subject, with clientAuth: the beacon must refuse it (403.16).
    Written into ``folder`` (a private temporary directory the caller removes), key 0600."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        device = cert_facts.read_certificates(device_cert)[0]
    except (OSError, ValueError) as exc:
        raise InputError(f"--cert {device_cert}: not a certificate ({exc})") from None
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(device.issuer).issuer_name(device.issuer).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(device.subject).issuer_name(device.issuer).public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = folder / "foreign.pem", folder / "foreign.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return Identity(FOREIGN_LABEL, "refuse", str(cert_path), str(key_path))


def certificate_notes(rows: Sequence[Identity]) -> list[str]:
    """Warnings about the given client certificates that explain a refusal in advance."""
    notes = []
    now = now_utc()
    for identity in rows:
        if identity.cert is None or identity.label == FOREIGN_LABEL:
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


class Handshake:
    """What the beacon did in the TLS handshake, seen through OpenSSL's message callback: did it
    send its certificate and finish its part (ServerHelloDone in TLS 1.2, Finished in TLS 1.3)?
    OpenSSL verifies the certificate (against --ca, for the URL's host) when it arrives, so a
    handshake that got past it without a verification error proves the beacon is the beacon.
    Only then does a closed connection or an alert count as the beacon refusing the client."""

    def __init__(self) -> None:
        self.certificate = False
        self.done = False
        self.alert: str | None = None
        self.observed = True

    def __call__(self, conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: Any) -> None:
        if direction != "read":
            return
        if content_type == _HANDSHAKE:
            if msg_type == _CERTIFICATE:
                self.certificate = True
            elif msg_type in (_SERVER_DONE, _FINISHED) and self.certificate:
                self.done = True
        elif content_type == _ALERT and self.alert is None:
            self.alert = _alert_name(msg_type)


_HANDSHAKE, _ALERT, _CERTIFICATE, _SERVER_DONE, _FINISHED = 22, 21, 11, 14, 20  # TLS numbers (RFC 5246, 8446)


def _alert_name(value: Any) -> str:
    names = getattr(ssl, "_TLSAlertType", None)
    try:
        return names(int(value)).name.lower().replace("_", " ") if names is not None else f"alert {value}"
    except (ValueError, TypeError):
        return f"alert {value}"


def _observe(ctx: ssl.SSLContext) -> Handshake:
    observer = Handshake()
    try:
        setattr(ctx, "_msg_callback", observer)  # CPython's (undocumented) hook for SSL_CTX_set_msg_callback
    except (AttributeError, TypeError, NotImplementedError):
        observer.observed = False
    return observer


def _not_tls_hint(exc: BaseException) -> str:
    text = f"{getattr(exc, 'reason', '') or ''} {exc}".lower()
    if any(word in text for word in ("wrong version number", "record layer failure", "packet length too long", "http request", "unknown protocol")):
        return " (the port answered something that is not TLS: plain HTTP, or another service?)"
    return ""


def _inconclusive(identity: Identity, label: str, why: str) -> Row:
    return Row(identity, label, "inconclusive", why)


def attempt(target: Target, ca: str, identity: Identity, tls12: bool = False, timeout: float = 10.0, deadline: float | None = None) -> Row:
    """One row. A refusal counts only after the beacon completed its part of TLS (see
    :class:`Handshake`); whatever else stops the connection is inconclusive, never "refused".
    deadline (time.monotonic()): no wait goes past it, so many rows together stay bounded even
    against a beacon that answers a byte at a time (each wait is at most ``timeout`` anyway)."""
    label = "TLS 1.2" if tls12 else "default"
    ctx = _context(ca, identity, tls12)
    seen = _observe(ctx)

    def wait() -> float:  # the time the next connect, handshake (a whole one, in CPython) or read may take
        return timeout if deadline is None else max(min(timeout, deadline - time.monotonic()), 0.001)

    try:
        raw = socket.create_connection((target.connect, target.port), timeout=wait())
    except (OSError, UnicodeError) as exc:
        raise OpsError(f"cannot connect to {target.connect}:{target.port} ({getattr(exc, 'strerror', None) or exc}): is the beacon up and port {target.port} open to this address?") from None
    data = b""
    with raw:
        try:
            raw.settimeout(wait())
            tls = ctx.wrap_socket(raw, server_hostname=target.host)
        except ssl.SSLCertVerificationError as exc:
            raise OpsError(
                f"the beacon's certificate does not verify for {target.host} with --ca {ca}: {exc.verify_message or exc} "
                "(wrong --ca, or the beacon serves another certificate)"
            ) from None
        except (socket.timeout, TimeoutError):
            if seen.done:
                return _inconclusive(identity, label, f"the beacon finished its part of the handshake, then did not answer within {timeout:g} s")
            return _inconclusive(identity, label, f"no TLS handshake from the beacon within {timeout:g} s (a silent port, or a firewall dropping packets)")
        except (ssl.SSLError, OSError) as exc:
            closed = isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError))
            if not seen.observed:
                return _inconclusive(identity, label, f"handshake stopped ({getattr(exc, 'reason', None) or exc}); this Python cannot observe the handshake, so it proves no refusal")
            if seen.done and seen.alert:
                return Row(identity, label, "refused", f"TLS alert from the beacon after its part of the handshake: {seen.alert}")
            if seen.done and closed:
                return Row(identity, label, "refused", f"the beacon closed the connection after its part of the handshake ({type(exc).__name__})")
            if seen.done:
                return _inconclusive(identity, label, f"the handshake failed on this side after the beacon's part ({getattr(exc, 'reason', None) or exc})")
            return _inconclusive(
                identity, label,
                f"the beacon did not complete its part of the TLS handshake ({getattr(exc, 'reason', None) or type(exc).__name__}){_not_tls_hint(exc)}",
            )
        with tls:  # the beacon's certificate verified and its part finished: from here a close is a refusal
            request = f"GET {target.path} HTTP/1.1\r\nHost: {target.host}\r\nUser-Agent: flexnet-beacon-ops-probe\r\nConnection: close\r\n\r\n"
            try:
                tls.sendall(request.encode("ascii"))
                while len(data) < READ_LIMIT:
                    tls.settimeout(wait())
                    chunk = tls.recv(8192)
                    if not chunk:
                        break
                    data += chunk
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                if not data:  # TLS 1.3: a refusal whose alert did not arrive before the close
                    return Row(identity, label, "refused", "connection closed after the handshake without an HTTP answer")
            except ssl.SSLError as exc:
                if not data and seen.alert:  # TLS 1.3: the verdict on our certificate arrives after the handshake
                    return Row(identity, label, "refused", f"TLS alert after the handshake: {seen.alert}")
                if not data:
                    return _inconclusive(identity, label, f"TLS error after the handshake without an alert from the beacon ({exc.reason or exc})")
            except (socket.timeout, TimeoutError):
                if not data:
                    return _inconclusive(identity, label, f"no HTTP answer within {timeout:g} s after the handshake")
            except (ConnectionError, OSError) as exc:
                if not data:
                    return Row(identity, label, "refused", f"connection reset without an HTTP answer ({type(exc).__name__})")
    status, line = _status(data)
    if status is None and not data:
        return Row(identity, label, "refused", "connection closed after the handshake without an HTTP answer")
    if status is None:
        return _inconclusive(identity, label, f"not an HTTP answer: {line[:60]!r}")
    if status in (401, 403):
        return Row(identity, label, "refused", line, status)
    if status >= 500:
        return Row(identity, label, "error", f"{line} (a server error: neither a clean refusal nor an admission)", status)
    return Row(identity, label, "admitted", line, status)


def summary_lines(rows: Sequence[Row]) -> list[str]:
    """The verdict lines after the table (FAIL lines, or the one ok line)."""
    admits = [r for r in rows if r.security_failure]
    unproven = [r for r in rows if r.outcome == "inconclusive"]
    locked_out = [r for r in rows if not r.ok and not r.security_failure and r.outcome != "inconclusive"]
    lines = []
    if admits:
        lines.append(f"FAIL: the beacon admits what it must refuse ({', '.join(sorted({r.identity.label for r in admits}))}): check sslFlags SslRequireCert, anonymous authentication, the CRL"
                     " and the trusted CAs (a CA trusted by name, not by key, admits the foreign CA)")
    if unproven:
        lines.append(
            f"FAIL: inconclusive for {', '.join(sorted({r.identity.label for r in unproven}))}: {unproven[0].detail}; "
            "a refusal counts only after the beacon completed its part of TLS (its certificate verified with --ca for the URL's host): "
            "check the URL, --connect and the port"
        )
    if locked_out:
        lines.append(f"FAIL: {', '.join(sorted({r.identity.label for r in locked_out}))} not handled as expected: agents holding such a certificate lose contact (see verify)")
    if not (admits or unproven or locked_out):
        if any(r.identity.expect == "admit" for r in rows):
            lines.append("ok: refuses what it must refuse, admits the device certificates")
        else:
            lines.append("ok: refuses what it must refuse; device certificates were not tested (give --cert/--key to prove they are admitted)")
    return lines


def run_matrix(target: Target, ca: str, rows: Sequence[Identity], tls12_too: bool, timeout: float) -> list[Row]:
    """Each row within `timeout` seconds in all (connect, handshake, request, answer), whatever the
    beacon trickles: one deadline per connection, not per read."""
    results = [attempt(target, ca, identity, False, timeout, time.monotonic() + timeout) for identity in rows]
    if tls12_too:
        results += [attempt(target, ca, identity, True, timeout, time.monotonic() + timeout) for identity in rows]
    return results


def load_ca(path: str) -> list[x509.Certificate]:
    try:
        return cert_facts.read_certificates(path)
    except OSError as exc:
        raise InputError(f"--ca {path}: unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"--ca {path}: {exc}") from None
