"""Command line of `python -m scripts.pki` (see docs/pki.md).

Exit codes: 0 done (check: accept), 1 check: reject, or crl --publish could not upload (the CRL
was written), 2 bad input or state (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import fnmatch
import getpass
import ipaddress
import json
import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from components.certs import facts as cert_facts

from components.certs import verdict as cert_verdict

from components.iis import mapping_rules
from scripts.cli_args import bounded

from . import build, parallel
from .progress import Progress
from .store import PRIVATE_FILE, PUBLIC_FILE, Batch, Pki, PkiError, atomic_write, check_name, key_pem, parse_serial

PROG = "python -m scripts.pki"
PASSWORD_ENV = "PKI_PASSWORD"
PROJECT = "flexnet-beacon"
BACKGROUND_FROM = 32  # from this many certificates, background processes write the files
PFX_PARALLEL_FROM, PFX_CHUNK = 8, 4  # export-pfx: worker processes from 8 files, 4 per unit
DEFAULT_DAYS = {"ca": 3650, "intermediate": 1825, "server": 397, "client": 365, "crl": 7}


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def iso(moment: dt.datetime | None) -> str | None:
    return cert_facts.iso(moment)


def out(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Argument checks


positive_days = bounded(int, 1, 36500, "a whole number of days")
non_negative_int = bounded(int, 0, 10**9, "a whole number")


def check_attr(value: str | None, what: str, limit: int = 64) -> str | None:
    """A subject attribute value: non-empty, no control characters, at most 64 characters."""
    if value is None:
        return None
    if not value.strip():
        raise PkiError(f"{what}: empty value")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise PkiError(f"{what} {value!r}: control characters are not allowed")
    if len(value) > limit:
        raise PkiError(f"{what} {value!r}: {len(value)} characters; at most {limit}")
    return value


def required_attr(value: str, what: str, limit: int = 64) -> str:
    """check_attr for a value that is always given (typed str, not str | None)."""
    checked = check_attr(value, what, limit)
    assert checked is not None
    return checked


def check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PkiError(f"{what}: got {url!r}; expected an http:// URL (https:// also works) with a host")
    if any(ch.isspace() for ch in url):
        raise PkiError(f"{what}: got {url!r}; a URL cannot contain whitespace")
    return url


_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_dns(name: str) -> str:
    host = name[2:] if name.startswith("*.") else name
    if not host or len(name) > 253 or not all(_DNS_LABEL.match(label) for label in host.split(".")):
        raise PkiError(f"--dns: got {name!r}; expected a DNS name like beacon.example.com (a leading '*.' is allowed)")
    return name.lower()


def check_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise PkiError(f"--ip: got {text!r}; expected an IPv4 or IPv6 address") from None


def parse_at(text: str | None) -> dt.datetime:
    if text is None:
        return now_utc()
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PkiError(f"--at: got {text!r}; expected an ISO 8601 time like 2026-01-31T12:00:00Z") from None
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


# ---------------------------------------------------------------------------------------------
# Shared steps


_ISO: dict[dt.datetime, str | None] = {}


def _iso_cached(moment: dt.datetime) -> str | None:
    """iso(): bulk-issued certificates share their second, so the text is mostly reused."""
    text = _ISO.get(moment)
    if text is None:
        if len(_ISO) > 4096:
            _ISO.clear()
        text = _ISO[moment] = iso(moment)
    return text


def entry_for(cert: x509.Certificate, kind: str, source: str, subject: x509.Name | None = None, may_have_san: bool = True) -> dict[str, Any]:
    """The index.json entry. subject/may_have_san: what the caller just put into the certificate,
    which spares re-parsing it (the extensions parse is most of the cost of an entry)."""
    item = {
        "kind": kind,
        "source": source,
        "serial": cert_facts.serial_hex(cert.serial_number),
        "subject": (subject if subject is not None else cert.subject).rfc4514_string(),
        "notBefore": _iso_cached(cert.not_valid_before_utc),
        "notAfter": _iso_cached(cert.not_valid_after_utc),
        "sha1": cert.fingerprint(hashes.SHA1()).hex().upper(),  # = cert_facts.thumbprint
        "status": "valid",
        "revokedAt": None,
        "reason": None,
    }
    sans = cert_facts.subject_alt_names(cert) if may_have_san else None
    if sans:
        item["san"] = sans
    return item


def leaf_profile(pki: Pki, kind: str, days: int, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> build.Profile:
    ca = pki.index["ca"]
    return build.Profile(
        days=days,
        eku=build.SERVER_EKU if kind == "server" else build.CLIENT_EKU,
        dns=dns,
        ips=ips,
        crl_urls=ca.get("crlUrls", []),
        aia_urls=ca.get("aiaUrls", []),
    )


class Issuer:
    """Issues leaf certificates from the issuing CA into the PKI directory.

    Made for bulk: the CA certificate and key are read once; each profile becomes a
    build.CertificateTemplate once; files go through a store.Batch (atomic, final mode from
    creation, no fsync each; for many certificates written by background processes while this
    one signs); entries are kept in memory. finish() waits for the files, keeps exactly the
    certificates whose files are all on disk, syncs once and writes index.json once. Call it in
    a ``finally``: after an error or Ctrl-C what was issued is recorded, and nothing else is left
    on disk."""

    def __init__(self, pki: Pki):
        self.pki = pki
        self.ca_cert, self.ca_key = pki.issuing()
        if self.ca_cert.not_valid_after_utc <= now_utc():
            raise PkiError(f"the issuing CA {cert_facts.common_name(self.ca_cert.subject)!r} expired {iso(self.ca_cert.not_valid_after_utc)}: it cannot issue certificates")
        self.key_type = pki.index["ca"].get("keyType", "ec")
        self.clamped = 0
        self.batch = Batch(pki.root)
        self.touched: list[tuple[str, int, list[tuple[int, int]]]] = []  # (name, files expected, their write tokens)
        self.templates: dict[tuple[Any, ...], build.CertificateTemplate] = {}
        self.private_dir = os.path.join(pki.private, "")  # strings: pathlib costs more than a signature's share
        self.issued_dir = os.path.join(pki.issued, "")
        pki.ensure_dirs()

    def template(self, kind: str, days: int, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> build.CertificateTemplate:
        wanted = (kind, days, tuple(dns), tuple(ips))
        found = self.templates.get(wanted)
        if found is None:
            found = self.templates[wanted] = build.CertificateTemplate(leaf_profile(self.pki, kind, days, dns, ips), self.ca_cert, self.ca_key)
        return found

    def issue(self, name: str, subject: x509.Name, kind: str, days: int, key_type: str | None = None,
              public_key: Any = None, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> tuple[x509.Certificate, dict[str, Any]]:
        """Sign one certificate (with a new key unless public_key), write its files, record it."""
        key = None
        if public_key is None:
            key = build.new_key(key_type or self.key_type)
            public_key = key.public_key()
        cert, clamped = self.template(kind, days, dns, ips).sign(subject, public_key, now_utc())
        entry = entry_for(cert, kind, "key" if key is not None else "csr", subject, may_have_san=bool(dns or ips))
        files: list[tuple[int, int]] = []
        self.touched.append((name, 2 if key is not None else 1, files))  # before any write: finish() cleans up
        if key is not None:
            files.append(self.batch.write(f"{self.private_dir}{name}.key", key_pem(key), PRIVATE_FILE))
        files.append(self.batch.write(f"{self.issued_dir}{name}.pem", cert.public_bytes(serialization.Encoding.PEM), PUBLIC_FILE))
        self.pki.add_certificate(name, entry)
        self.clamped += clamped
        return cert, entry

    def issue_many(self, requests: Sequence[tuple[str, x509.Name, Any]], kind: str, days: int, key_type: str | None,
                   verb: str, line: Callable[[str, dict[str, Any]], str] | None = None) -> None:
        """(name, subject, public key or None) each, with a progress display. From
        BACKGROUND_FROM certificates on, the files are written by background processes.
        line(name, entry): an optional result line per certificate for stdout."""
        if len(requests) >= BACKGROUND_FROM:
            self.batch.start_background()  # forks: before the progress bar starts its thread
        with Progress(verb, len(requests)) as progress:
            for name, subject, public_key in requests:
                _, entry = self.issue(name, subject, kind, days, key_type, public_key)
                if line is not None:
                    progress.out(line(name, entry))
                progress.advance()

    def finish(self) -> int:
        """Wait for the files; forget (index and disk) every certificate of this command whose
        files are not all written; sync once; write index.json once. Returns how many were
        issued; raises the background writer's error, if any, after recording the rest."""
        error = self.batch.drain()
        kept, total = 0, len(self.touched)
        for name, expected, files in self.touched:
            on_disk = len(files) == expected and all(self.batch.is_written(token) for token in files)
            if on_disk and name in self.pki.certificates:
                kept += 1
                continue
            self.pki.certificates.pop(name, None)  # a new name of this command: nothing else lost
            (self.pki.private / f"{name}.key").unlink(missing_ok=True)
            (self.pki.issued / f"{name}.pem").unlink(missing_ok=True)
        self.touched = []
        if kept:
            self.batch.sync()
            self.pki.save_index()
            if self.clamped:
                note(f"note: {self.clamped} certificate(s) cut to end with the issuing CA ({iso(self.ca_cert.not_valid_after_utc)})")
        if kept < total:  # only after an error or Ctrl-C
            note(f"note: {kept} certificate(s) issued and recorded in index.json; {total - kept} unfinished one(s) removed")
        if error is not None:
            raise error
        return kept


@dataclass
class CrlFile:
    """One CRL written by `crl`: which authority, where, its DER (what --publish uploads)."""

    label: str  # "crl" or "root-crl"
    der_path: Path
    der: bytes
    urls: list[str]  # the CDP URLs that point to it (from init-ca)


def revoked_entries(pki: Pki) -> list[tuple[int, dt.datetime | str, str]]:
    """(serial, revocation date, reason) of every revoked certificate of index.json. Dates in
    index.json's own form ("2026-01-31T12:00:00Z") stay text (build.sign_crl encodes them
    directly); others are parsed here."""
    entries: list[tuple[int, dt.datetime | str, str]] = []
    append = entries.append
    reasons = build.REASONS
    for name, item in pki.certificates.items():
        if item.get("status") != "revoked":
            continue
        text = item["serial"]
        try:
            serial = int(text, 16)
        except (TypeError, ValueError):
            serial = parse_serial(text)
        when = item.get("revokedAt") or ""
        if not (type(when) is str and len(when) == 20 and when[19] == "Z" and when[10] == "T"):
            try:
                when = parse_at(when).replace(tzinfo=None)
            except (PkiError, AttributeError, TypeError):
                raise PkiError(f"{pki.index_path}: {name}: revokedAt {when!r} is not an ISO 8601 time") from None
        reason = item.get("reason") or "unspecified"
        if reason not in reasons:
            raise PkiError(f"{pki.index_path}: {name}: unknown revocation reason {reason!r} (expected one of {', '.join(reasons)})")
        append((serial, when, reason))
    return entries


def _sign_and_write_crl(
    pki: Pki,
    kind: str,
    issuer: x509.Certificate,
    key: Any,
    revoked: list,
    now: dt.datetime,
    days: int,
    pem_path: Path,
    der_path: Path,
    urls: list[str],
    files: list[CrlFile] | None,
) -> str:
    """One CRL (kind "crl" or "root-crl"): number +1 recorded first, signed, PEM and DER written."""
    counter = "crlNumber" if kind == "crl" else "rootCrlNumber"
    number = pki.next_crl_number(counter)
    pki.save_crl_number(counter, number)
    try:
        der = build.sign_crl(issuer, key, number, revoked, now, now + dt.timedelta(days=days))
    except ValueError as exc:
        raise PkiError(f"cannot sign the {'CRL' if kind == 'crl' else 'root CRL'}: {exc}") from None
    crl = x509.load_der_x509_crl(der)
    atomic_write(pem_path, build.crl_pem(der), PUBLIC_FILE)
    atomic_write(der_path, der, PUBLIC_FILE)
    if files is not None:
        files.append(CrlFile(kind, der_path, der, list(urls)))
    return (
        f"{pem_path.name}/{der_path.name}: CRL {number} of {cert_facts.common_name(issuer.subject)!r}, "
        f"{len(revoked)} revoked, nextUpdate {iso(crl.next_update_utc)}"
    )


def publish_crls(pki: Pki, days: int, root_days: int | None = None, files: list[CrlFile] | None = None) -> list[str]:
    """Sign and write the issuing CA's CRL (and the root's with an intermediate); numbers +1.

    index.json is only read: the CRL numbers live in crlnumber.json, recorded before each CRL is
    written. ``files`` collects what was written (for --publish)."""
    now = now_utc()
    ca = pki.index["ca"]
    written = []
    issuing_cert, issuing_key = pki.issuing()
    revoked = revoked_entries(pki)
    written.append(
        _sign_and_write_crl(pki, "crl", issuing_cert, issuing_key, revoked, now, days, pki.crl_pem, pki.crl_der, ca.get("crlUrls", []), files)
    )
    if pki.intermediate():
        issuing = pki.index["authorities"]["issuing"]
        if not pki.root_key.exists():
            if issuing["status"] == "revoked":
                raise PkiError(f"{pki.root_key} is missing: the root's key is needed to publish the intermediate's revocation (root-crl)")
            current = x509.load_pem_x509_crl(pki.root_crl_pem.read_bytes()) if pki.root_crl_pem.exists() else None
            until = iso(current.next_update_utc) if current is not None else "(none)"
            note(f"note: {pki.root_key} is not here (offline?): root-crl not re-signed; the current one is valid until {until}")
            if files is not None and pki.root_crl_der.exists():
                files.append(CrlFile("root-crl", pki.root_crl_der, pki.root_crl_der.read_bytes(), list(ca.get("rootCrlUrls", []))))
            return written
        root_cert, root_key = pki.root_ca()
        root_revoked = []
        if issuing["status"] == "revoked":
            root_revoked.append((parse_serial(issuing["serial"]), parse_at(issuing["revokedAt"]), issuing.get("reason") or "unspecified"))
        root_days = root_days or days
        written.append(
            _sign_and_write_crl(
                pki, "root-crl", root_cert, root_key, root_revoked, now, root_days,
                pki.root_crl_pem, pki.root_crl_der, ca.get("rootCrlUrls", []), files,
            )
        )
    return written


def derived_root_crl_url(url: str) -> str:
    """http://h/p/devices.crl -> http://h/p/root-devices.crl (mirrors crl.der / root-crl.der)."""
    parts = urlsplit(url)
    head, _, last = parts.path.rpartition("/")
    path = f"{head}/root-{last or 'crl.crl'}"
    return parts._replace(path=path).geturl()


# ---------------------------------------------------------------------------------------------
# Verbs


def cmd_init_ca(args: argparse.Namespace, pki: Pki) -> int:
    with pki.locked():
        return _init_ca(args, pki)


def _init_ca(args: argparse.Namespace, pki: Pki) -> int:
    existing = pki.ca_files()
    if existing:
        names = ", ".join(p.name for p in existing)
        raise PkiError(f"a CA already exists in {pki.root}/ ({names}); refusing to overwrite it (use another --dir)")
    cn = required_attr(args.cn, "--cn")
    o, ou = check_attr(args.o, "--o"), check_attr(args.ou, "--ou")
    country = args.c
    if country is not None and not re.fullmatch(r"[A-Za-z]{2}", country):
        raise PkiError(f"--c: got {country!r}; expected a two-letter country code like DE")
    crl_urls = [check_url(u, "--crl-url") for u in args.crl_url]
    aia_urls = [check_url(u, "--aia-url") for u in args.aia_url]
    root_crl_urls = [check_url(u, "--root-crl-url") for u in args.root_crl_url]
    root_aia_urls = [check_url(u, "--root-aia-url") for u in args.root_aia_url]
    if not args.intermediate and (root_crl_urls or root_aia_urls or args.root_cn):
        raise PkiError("--root-cn, --root-crl-url and --root-aia-url need --intermediate")
    if args.intermediate and not root_crl_urls and crl_urls:
        root_crl_urls = [derived_root_crl_url(u) for u in crl_urls]
        note(f"note: the intermediate's CDP (the root's CRL) will be {', '.join(root_crl_urls)}: publish root-crl.der there (or pass --root-crl-url)")
    root_cn = required_attr(args.root_cn or f"{cn} Root", "--root-cn") if args.intermediate else cn
    if args.intermediate and root_cn == cn:
        raise PkiError("--root-cn must differ from --cn: the root and the issuing CA need distinct names")
    if not crl_urls:
        note("note: no --crl-url: issued certificates carry no CDP, and IIS (revocation checking on) answers 403.13 for them unless the CRL is pre-loaded")

    now = now_utc()
    pki.ensure_dirs()
    root_key = build.new_key(args.key)
    root_profile = build.Profile(days=args.days, ca=True, path_length=1 if args.intermediate else 0)
    root_cert, _ = build.build_certificate(build.make_name(root_cn, o, ou, country), root_key.public_key(), root_profile, None, root_key, now)
    authorities: dict[str, Any] = {}
    if args.intermediate:
        ca_key = build.new_key(args.key)
        profile = build.Profile(days=min(args.intermediate_days, args.days), ca=True, path_length=0, crl_urls=root_crl_urls, aia_urls=root_aia_urls)
        ca_cert, _ = build.build_certificate(build.make_name(cn, o, ou, country), ca_key.public_key(), profile, root_cert, root_key, now)
        pki.write_key(pki.root_key, root_key)
        pki.write_cert(pki.root_pem, root_cert)
        authorities["root"] = {"file": "root.pem", **entry_for(root_cert, "root-ca", "key")}
    else:
        ca_key, ca_cert = root_key, root_cert
    pki.write_key(pki.ca_key, ca_key)
    pki.write_cert(pki.ca_pem, ca_cert)
    chain = [ca_cert] + ([root_cert] if args.intermediate else [])
    atomic_write(pki.chain_pem, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain), PUBLIC_FILE)
    authorities["issuing"] = {"file": "ca.pem", **entry_for(ca_cert, "issuing-ca" if args.intermediate else "root-ca", "key")}
    pki.new_index({
        "commonName": cn,
        "keyType": args.key,
        "intermediate": bool(args.intermediate),
        "crlUrls": crl_urls,
        "aiaUrls": aia_urls,
        "rootCrlUrls": root_crl_urls,
        "rootAiaUrls": root_aia_urls,
    })
    pki.index["authorities"] = authorities
    pki.save_index()
    written = publish_crls(pki, DEFAULT_DAYS["crl"])
    kind = "root + issuing intermediate" if args.intermediate else "root"
    out(f"created {kind} CA {cn!r} in {pki.root}/ (key {args.key}, serial {cert_facts.serial_hex(ca_cert.serial_number)}, until {iso(ca_cert.not_valid_after_utc)})")
    for line in written:
        out(f"  {line}")
    out(f"  IIS mapping rule: Issuer.CN={cn}")
    return 0


def cmd_issue_server(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    if not args.dns:
        raise PkiError("issue-server needs at least one --dns NAME")
    dns = [check_dns(d) for d in args.dns]
    ips = [check_ip(i) for i in args.ip]
    name = args.name or dns[0].replace("*", "wildcard")
    with pki.locked():
        pki.check_new_name(name)
        subject = build.make_name(required_attr(dns[0], "--dns"), check_attr(args.o, "--o"), check_attr(args.ou, "--ou"))
        issuer = Issuer(pki)
        try:
            cert, _ = issuer.issue(name, subject, "server", args.days, args.key, dns=dns, ips=ips)
        finally:
            issuer.finish()
    out(f"issued server certificate {name!r}: {pki.issued / (name + '.pem')} (key {pki.private / (name + '.key')}), serial {cert_facts.serial_hex(cert.serial_number)}, thumbprint {cert_facts.thumbprint(cert)}")
    return 0


def _client_requests(args: argparse.Namespace) -> list[tuple[str, str | None, str | None]]:
    """(cn, o, ou) for every client certificate asked for."""
    o, ou = check_attr(args.o, "--o"), check_attr(args.ou, "--ou")
    if args.cn is not None:
        if args.prefix is not None or args.start is not None:
            raise PkiError("--prefix/--start go with --count, not --cn")
        return [(args.cn, o, ou)]
    if args.count is not None:
        if args.prefix is None:
            raise PkiError("--count needs --prefix P (names P0001, P0002, ...)")
        if args.count < 1:
            raise PkiError(f"--count: got {args.count}; expected 1 or more")
        start = 1 if args.start is None else args.start
        width = max(4, len(str(start + args.count - 1)))
        return [(f"{args.prefix}{i:0{width}d}", o, ou) for i in range(start, start + args.count)]
    path = Path(args.from_csv)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PkiError(f"{path}: unreadable ({getattr(exc, 'strerror', None) or exc})") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    if "cn" not in columns:
        raise PkiError(f"{path}: expected a header row with columns cn,o,ou (cn required); got {reader.fieldnames}")
    unknown = [c for c in columns if c not in ("cn", "o", "ou")]
    if unknown:
        raise PkiError(f"{path}: unknown column(s) {', '.join(unknown)}; expected cn,o,ou")
    rows = []
    for number, row in enumerate(reader, start=2):
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        if None in row:
            raise PkiError(f"{path}:{number}: more fields than columns")
        if not any(values.values()):
            continue
        if not values.get("cn"):
            raise PkiError(f"{path}:{number}: empty cn")
        try:
            check_name(values["cn"], "cn")
            row_o = check_attr(values.get("o") or None, "o") or o
            row_ou = check_attr(values.get("ou") or None, "ou") or ou
        except PkiError as exc:
            raise PkiError(f"{path}:{number}: {exc}") from None
        rows.append((values["cn"], row_o, row_ou))
    if not rows:
        raise PkiError(f"{path}: no rows after the header")
    return rows


def cmd_issue_client(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    requests = _client_requests(args)
    with pki.locked():
        seen: set[str] = set()
        for cn, _, _ in requests:
            pki.check_new_name(cn, seen)
            seen.add(cn.casefold())
        subjects = [(cn, build.make_name(cn, o, ou), None) for cn, o, ou in requests]
        issuer = Issuer(pki)
        total = len(requests)
        try:
            issuer.issue_many(subjects, "client", args.days, args.key, "issued")
        finally:
            issuer.finish()  # one sync, one index write; also for what was issued before an error
    if total == 1:
        out(f"issued client certificate {requests[0][0]!r}: {pki.issued / (requests[0][0] + '.pem')}, serial {pki.certificates[requests[0][0]]['serial']}")
    else:
        out(f"issued {total} client certificates ({requests[0][0]} .. {requests[-1][0]}) into {pki.issued}/")
    return 0


def _csr_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".csr", ".pem", ".req"))
            if not found:
                raise PkiError(f"{path}: no *.csr or *.pem files in this directory")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise PkiError(f"{path}: no such file or directory")
    return files


def load_csr(path: Path) -> x509.CertificateSigningRequest:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiError(f"{path}: unreadable ({exc.strerror})") from None
    try:
        if b"-----BEGIN" in data:
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise PkiError(f"{path}: not a certificate signing request (PEM or DER PKCS#10)") from None
    if not csr.is_signature_valid:
        raise PkiError(f"{path}: CSR signature does not verify (tampered or corrupt); refusing to sign it")
    return csr


def cmd_sign_csr(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    files = _csr_files(args.paths)
    o_override, ou_override = check_attr(args.o, "--o"), check_attr(args.ou, "--ou")
    requests = []
    with pki.locked():
        seen: set[str] = set()
        for path in files:
            csr = load_csr(path)
            cn = cert_facts.common_name(csr.subject)
            if not cn:
                raise PkiError(f"{path}: the CSR subject has no CN (the device name)")
            try:
                pki.check_new_name(cn, seen)
            except PkiError as exc:
                raise PkiError(f"{path}: {exc}") from None
            seen.add(cn.casefold())
            problem = build.key_problem(csr.public_key())
            if problem:
                raise PkiError(f"{path}: unsupported key {problem}")
            o = o_override or (cert_facts.name_values(csr.subject, "O") or [None])[-1]
            ou = ou_override or (cert_facts.name_values(csr.subject, "OU") or [None])[-1]
            try:
                subject = build.make_name(cn, check_attr(o, "O"), check_attr(ou, "OU"))
            except ValueError as exc:
                raise PkiError(f"{path}: unusable subject ({exc})") from None
            requests.append((path, cn, subject, csr.public_key()))
        sources = {cn: path for path, cn, _, _ in requests}
        issuer = Issuer(pki)
        try:
            issuer.issue_many(
                [(cn, subject, public_key) for _, cn, subject, public_key in requests], "client", args.days, None, "signed",
                line=lambda cn, entry: f"signed {sources[cn]} -> {pki.issued / (cn + '.pem')} (serial {entry['serial']})",
            )
        finally:
            issuer.finish()
    return 0


def cmd_revoke(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    if (args.name is None) == (args.serial is None):
        raise PkiError("revoke takes a NAME or --serial HEX (one of them)")
    with pki.locked():
        if args.name is not None:
            label, item = args.name, pki.entry(args.name)
        else:
            serial = parse_serial(args.serial)
            matches = [(n, i) for n, i in pki.certificates.items() if parse_serial(i["serial"]) == serial]
            authorities = pki.index.get("authorities", {})
            if not matches and pki.intermediate() and parse_serial(authorities["issuing"]["serial"]) == serial:
                matches = [("the issuing CA (ca.pem)", authorities["issuing"])]
            elif not matches and any(parse_serial(a["serial"]) == serial for a in authorities.values()):
                raise PkiError(f"serial {args.serial} is the root CA: it cannot be revoked; retire the PKI instead")
            if not matches:
                raise PkiError(f"no certificate with serial {args.serial} in {pki.root}/index.json")
            label, item = matches[0]
        if item["status"] == "revoked":
            raise PkiError(f"{label} (serial {item['serial']}) is already revoked ({item['revokedAt']}, {item['reason']})")
        item["status"] = "revoked"
        item["revokedAt"] = iso(now_utc())
        item["reason"] = args.reason
        pki.save_index()
    out(f"revoked {label} (serial {item['serial']}, {args.reason}); run `{PROG} --dir {pki.root} crl` and publish the CRL")
    return 0


def cmd_crl(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    target = None
    if args.publish is not None:
        from . import publish  # boto3 only when publishing

        target = publish.Target.from_args(args.publish, args.prefix, args.region, args.profile, args.max_age)
    elif args.prefix is not None or args.region is not None or args.profile is not None:
        raise PkiError("--prefix, --region and --profile go with --publish BUCKET")
    files: list[CrlFile] = []
    with pki.locked():
        lines = publish_crls(pki, args.days, args.root_days, files)
    for line in lines:
        out(f"wrote {line}")
    if target is None:
        return 0
    from . import publish

    for upload in publish.plan(target, files):
        for warning in upload.warnings:
            note(f"note: {warning}")
        publish.upload(target, upload)
        out(f"published {upload.source.name} -> {upload.url} ({len(upload.body)} bytes, {publish.CONTENT_TYPE}, max-age={target.max_age})")
    return 0


def read_password(confirm: bool = True) -> bytes:
    """PFX password from PKI_PASSWORD or a prompt (asked twice when a new PFX is written)."""
    if PASSWORD_ENV in os.environ:
        password = os.environ[PASSWORD_ENV]
        if not password:
            raise PkiError(f"{PASSWORD_ENV} is set but empty; refusing an empty PFX password")
        return password.encode("utf-8")
    try:
        first = getpass.getpass("PFX password: ")
        second = getpass.getpass("PFX password (again): ") if confirm else first
    except (EOFError, KeyboardInterrupt):
        raise PkiError(f"no password entered (set {PASSWORD_ENV} or answer the prompt)") from None
    if not first:
        raise PkiError("empty password; a PFX must be protected by one")
    if first != second:
        raise PkiError("the two passwords differ")
    return first.encode("utf-8")


def _pfx_names(args: argparse.Namespace, pki: Pki) -> list[str]:
    """Names to export: each argument a name, or a pattern with * or ? (never part of a name)
    that selects the certificates with a key here that are not revoked."""
    names: list[str] = []
    skipped = {"csr": 0, "revoked": 0}
    for text in args.names:
        if "*" in text or "?" in text:
            matched = [n for n in sorted(pki.certificates) if fnmatch.fnmatchcase(n, text)]
            if not matched:
                raise PkiError(f"pattern {text!r} matches no name in {pki.index_path}")
            for name in matched:
                item = pki.certificates[name]
                if item.get("source") == "csr":
                    skipped["csr"] += 1
                elif item["status"] == "revoked":
                    skipped["revoked"] += 1
                elif name not in names:
                    names.append(name)
            continue
        item = pki.entry(text)
        if item.get("source") == "csr":
            raise PkiError(f"no private key for {text!r} ({pki.private / (text + '.key')} missing: signed from a CSR, the key stays on the device)")
        if item["status"] == "revoked":
            note(f"warning: {text} is revoked")
        if text not in names:
            names.append(text)
    if not names:
        raise PkiError(f"nothing to export: the patterns matched only certificates signed from CSRs ({skipped['csr']}) or revoked ({skipped['revoked']})")
    if skipped["csr"] or skipped["revoked"]:
        note(f"note: patterns skipped {skipped['csr']} certificate(s) signed from CSRs (no key here) and {skipped['revoked']} revoked")
    for name in names:
        key_path = pki.private / f"{name}.key"
        if not key_path.exists():
            raise PkiError(f"no private key for {name!r} ({key_path} missing)")
    return names


def cmd_export_pfx(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    names = _pfx_names(args, pki)
    chain = pki.chain()
    password = read_password()
    pki.pfx.mkdir(mode=0o700, exist_ok=True)
    batch = Batch(pki.root)

    def export(span: Any) -> int:  # a range of positions  # PBKDF2 makes each file cost ~10 ms: worth worker processes
        for name in names[span.start:span.stop]:
            cert = pki.load_cert(pki.issued / f"{name}.pem")
            key = pki.load_key(pki.private / f"{name}.key")
            batch.write(pki.pfx / f"{name}.pfx", build.pkcs12_bytes(name, key, cert, chain, password, args.legacy), PRIVATE_FILE)
        return len(span)

    try:
        with parallel.Workers(export, parallel.choose_jobs(args.jobs, len(names), PFX_PARALLEL_FROM)) as workers, Progress("exported", len(names)) as progress:

            def exported(count: int) -> None:
                batch.pending += count
                progress.advance(count)

            workers.run(parallel.spans(len(names), PFX_CHUNK), exported)
    finally:
        batch.sync()
    scheme = "legacy 3DES/SHA-1" if args.legacy else "AES-256/SHA-256"
    if len(names) == 1:
        out(f"wrote {pki.pfx / (names[0] + '.pfx')} ({scheme}; certificate, key and {len(chain)} CA certificate(s))")
    else:
        out(f"wrote {len(names)} PFX files ({names[0]}.pfx .. {names[-1]}.pfx) into {pki.pfx}/ ({scheme}; each with certificate, key and {len(chain)} CA certificate(s))")
    return 0


def _resolve_file(text: str, pki: Pki) -> Path:
    path = Path(text)
    if path.exists() or os.sep in text or "/" in text:
        return path
    candidate = pki.issued / f"{text}.pem"  # a name of the PKI
    return candidate if candidate.exists() else path


def cmd_inspect(args: argparse.Namespace, pki: Pki) -> int:
    path = _resolve_file(args.file, pki)
    try:
        found_certs, found_crls = cert_facts.read_x509(path)
    except OSError as exc:
        raise PkiError(f"{path}: unreadable ({exc.strerror})") from None
    except ValueError as exc:
        raise PkiError(f"{path}: {exc}") from None
    items = [cert_facts.certificate_summary(c) for c in found_certs] + [cert_facts.crl_summary(c) for c in found_crls]
    out(json.dumps(items[0] if len(items) == 1 else items, indent=2, ensure_ascii=False))
    return 0


def _read_cert_list(path: Path, what: str) -> list[x509.Certificate]:
    try:
        return cert_facts.read_certificates(path)
    except OSError as exc:
        raise PkiError(f"{what} {path}: unreadable ({exc.strerror})") from None
    except ValueError as exc:
        raise PkiError(f"{what} {path}: {exc}") from None


def _read_crl_list(path: Path) -> list[x509.CertificateRevocationList]:
    try:
        return cert_facts.read_crls(path)
    except OSError as exc:
        raise PkiError(f"--crl {path}: unreadable ({exc.strerror})") from None
    except ValueError as exc:
        raise PkiError(f"--crl {path}: {exc}") from None


@dataclass
class StackTrust:
    """What `check` takes from a stack file (validated exactly as the deployment validates it)."""

    extra_rules: list[mapping_rules.MappingRule]
    deny_rules: list[mapping_rules.MappingRule]
    ca_files: list[Path]
    include_organization: bool = False


def _project_dir(stack_file: Path) -> Path:
    """Config paths are relative to the project: the nearest directory up with Pulumi.yaml."""
    for parent in stack_file.resolve().parents:
        if (parent / "Pulumi.yaml").is_file():
            return parent
    return stack_file.resolve().parent.parent


def read_stack_config(path: Path) -> StackTrust:
    """Mapping rules and client CA files of a stack file, through components.config."""
    import yaml  # only `check --stack-config` needs it: not at start-up of every verb

    from components.config import ConfigInvalid, load, stack_file_to_raw

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise PkiError(f"--stack-config {path}: unreadable ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise PkiError(f"--stack-config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise PkiError(f"--stack-config {path}: expected a mapping with a 'config:' mapping")
    raw, region, _ = stack_file_to_raw(document)
    name = path.name
    stack = name[len("Pulumi."):-len(".yaml")] if name.startswith("Pulumi.") and name.endswith(".yaml") else "stack"
    try:
        # The region matters only to ARNs, which `check` does not use.
        cfg = load(raw, stack, region or "us-east-1")
    except ConfigInvalid as invalid:
        raise PkiError(f"--stack-config {path}: " + "; ".join(str(issue) for issue in invalid.issues)) from None
    base = _project_dir(path)
    return StackTrust(
        [mapping_rules.parse_mapping_rule(text) for text in cfg.extra_mapping_rules],
        [mapping_rules.parse_mapping_rule(text) for text in cfg.deny_mapping_rules],
        [base / f for f in cfg.client_ca_certificates],
        cfg.issuer_rule_match_organization,
    )


def cmd_check(args: argparse.Namespace, pki: Pki) -> int:
    at = parse_at(args.at)
    cert_path = _resolve_file(args.cert, pki)
    presented = _read_cert_list(cert_path, "certificate")
    leaf, sent = presented[0], presented[1:]
    stack = read_stack_config(Path(args.stack_config)) if args.stack_config else StackTrust([], [], [])
    trusted: list[x509.Certificate] = []
    if args.chain:
        for item in args.chain:
            trusted += _read_cert_list(Path(item), "--chain")
    elif stack.ca_files:
        for item in stack.ca_files:
            trusted += _read_cert_list(item, f"{PROJECT}:clientCaCertificates")
    elif pki.ca_pem.is_file():
        trusted += _read_cert_list(pki.ca_pem, "CA")
        if pki.root_pem.is_file():
            trusted += _read_cert_list(pki.root_pem, "root CA")
    else:
        raise PkiError(f"no trust anchors: give --chain FILE (the beacon's root and intermediate CAs) or --dir with a CA (no {pki.ca_pem})")
    crls: list[x509.CertificateRevocationList] = []
    if args.crl:
        for item in args.crl:
            crls += _read_crl_list(Path(item))
    else:
        for path in (pki.crl_pem, pki.root_crl_pem):
            if path.is_file():
                crls += _read_crl_list(path)
    if args.issuer_cn is not None:
        cn = required_attr(args.issuer_cn, "--issuer-cn")
        mappings = [[mapping_rules.issuer_rule(cn), *stack.extra_rules]]
        denials = [[mapping_rules.issuer_rule(cn), rule] for rule in stack.deny_rules]
    else:
        # The same mappings the deployment writes (components/iis/state.py uses these functions).
        issuing = cert_facts.issuing_cas([c for c in trusted if cert_facts.is_ca(c)])
        mappings = mapping_rules.allow_mappings(issuing, stack.extra_rules, stack.include_organization)
        denials = mapping_rules.deny_mappings(issuing, stack.deny_rules, stack.include_organization)
    verdict = cert_verdict.iis_verdict(leaf, trusted, crls, at, mappings, intermediates=sent, denials=denials)
    if args.json:
        payload = verdict.to_dict()
        payload.update({"certificate": cert_path.as_posix(), "subject": leaf.subject.rfc4514_string(), "serial": cert_facts.serial_hex(leaf.serial_number), "at": iso(at)})
        out(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        out(verdict.line())
    return 0 if verdict.accepted else 1


def cmd_list(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    now = now_utc()
    rows = []
    for _, item in sorted(pki.index.get("authorities", {}).items()):
        rows.append({"name": f"({item['file']})", **item})
    for name, item in sorted(pki.certificates.items()):
        rows.append({"name": name, **item})
    if args.expiring is not None:
        limit = now + dt.timedelta(days=args.expiring)
        rows = [r for r in rows if r["status"] == "valid" and parse_at(r["notAfter"]) <= limit]
    for row in rows:
        row["expired"] = parse_at(row["notAfter"]) < now
    if args.json:
        out(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        out("nothing expires within %d days" % args.expiring if args.expiring is not None else "nothing issued")
        return 0
    headers = ("NAME", "KIND", "STATUS", "NOT AFTER", "SERIAL")
    table = [(r["name"], r["kind"], r["status"] + (" (expired)" if r["expired"] else ""), r["notAfter"], r["serial"]) for r in rows]
    widths = [max(len(str(row[i])) for row in [headers, *table]) for i in range(len(headers) - 1)]
    for row in [headers, *table]:
        out("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + str(row[-1]))
    return 0


# ---------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Offline PKI for FlexNet beacons and device certificates (docs/pki.md).")
    parser.add_argument("--dir", default="pki", help="PKI directory (default ./pki)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS, help="PKI directory (default ./pki)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, handler: Callable[[argparse.Namespace, Pki], int], help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    p = verb("init-ca", cmd_init_ca, "create the root CA (and with --intermediate an issuing intermediate)")
    p.add_argument("--cn", required=True, help="common name of the issuing CA (the IIS Issuer CN rule)")
    p.add_argument("--o", help="organisation of the CA subject")
    p.add_argument("--ou", help="organisational unit of the CA subject")
    p.add_argument("--c", help="two-letter country of the CA subject")
    p.add_argument("--intermediate", action="store_true", help="root + issuing intermediate (the root signs only the intermediate and its CRL)")
    p.add_argument("--root-cn", help="root common name with --intermediate (default '<cn> Root')")
    p.add_argument("--crl-url", action="append", default=[], metavar="URL", help="CDP of every issued certificate (repeatable)")
    p.add_argument("--root-crl-url", action="append", default=[], metavar="URL", help="CDP of the intermediate (default: root-<file> next to each --crl-url)")
    p.add_argument("--aia-url", action="append", default=[], metavar="URL", help="AIA caIssuers URL of issued certificates")
    p.add_argument("--root-aia-url", action="append", default=[], metavar="URL", help="AIA caIssuers URL of the intermediate")
    p.add_argument("--key", choices=build.KEY_TYPES, default="ec", help="key type (default ec: P-256)")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["ca"], help="root validity (default 3650)")
    p.add_argument("--intermediate-days", type=positive_days, default=DEFAULT_DAYS["intermediate"], help="intermediate validity (default 1825)")

    p = verb("issue-server", cmd_issue_server, "issue a beacon (server) certificate: EKU serverAuth + clientAuth")
    p.add_argument("--dns", action="append", default=[], metavar="NAME", help="DNS name (repeatable; the first is the CN)")
    p.add_argument("--ip", action="append", default=[], metavar="ADDR", help="IP address SAN (repeatable)")
    p.add_argument("--name", help="file name (default: the first --dns)")
    p.add_argument("--o")
    p.add_argument("--ou")
    p.add_argument("--key", choices=build.KEY_TYPES, help="key type (default: the CA's)")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["server"], help="validity (default 397)")

    p = verb("issue-client", cmd_issue_client, "issue device (client) certificates: EKU clientAuth only")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cn", help="device name (subject CN and file name)")
    source.add_argument("--count", type=int, help="bulk: this many certificates named PREFIX0001...")
    source.add_argument("--from-csv", metavar="FILE", help="bulk: CSV with columns cn,o,ou")
    p.add_argument("--prefix", help="name prefix with --count")
    p.add_argument("--start", type=non_negative_int, help="first number with --count (default 1)")
    p.add_argument("--o", help="organisation (CSV rows may override)")
    p.add_argument("--ou", help="organisational unit (CSV rows may override)")
    p.add_argument("--key", choices=build.KEY_TYPES, help="key type (default: the CA's)")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["client"], help="validity (default 365)")

    p = verb("sign-csr", cmd_sign_csr, "sign device CSRs (files, or directories of *.csr/*.pem) as client certificates")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--o", help="organisation (overrides the CSR's)")
    p.add_argument("--ou", help="organisational unit (overrides the CSR's)")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["client"], help="validity (default 365)")

    p = verb("revoke", cmd_revoke, "mark a certificate revoked (then run crl)")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--serial", metavar="HEX")
    p.add_argument("--reason", choices=list(build.REASONS), default="unspecified")

    p = verb("crl", cmd_crl, "sign and write crl.pem/crl.der (and root-crl.* with an intermediate); --publish uploads them to S3")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["crl"], help="nextUpdate in days (default 7)")
    p.add_argument("--root-days", type=positive_days, help="nextUpdate of the root's CRL (default: --days); skipped when root.key is offline")
    p.add_argument("--publish", metavar="BUCKET", help="then upload crl.der (and root-crl.der) to this S3 bucket, under the paths of the CDP URLs")
    p.add_argument("--prefix", help="with --publish: key prefix; replaces the directory part of the CDP paths (default: the CDP paths as they are, or nothing)")
    p.add_argument("--region", help="with --publish: AWS region (default: boto3's configuration)")
    p.add_argument("--profile", help="with --publish: AWS profile (default: boto3's configuration, e.g. AWS_PROFILE)")
    p.add_argument("--max-age", type=non_negative_int, default=300, metavar="SECONDS", help="with --publish: Cache-Control max-age of the objects (default 300)")

    p = verb("export-pfx", cmd_export_pfx, f"write pfx/NAME.pfx with key and chain (password from {PASSWORD_ENV} or a prompt)")
    p.add_argument("names", nargs="+", metavar="NAME", help="names, or patterns with * and ? (e.g. 'LAPTOP-*': the valid certificates with a key here); one password for all")
    p.add_argument("--legacy", action="store_true", help="3DES + SHA-1 MAC for Windows Server 2016 and older")
    p.add_argument("--jobs", type=non_negative_int, metavar="N", help="worker processes (default: one per CPU, up to 8, from 8 files on; 1 = none)")

    p = verb("inspect", cmd_inspect, "print a certificate or CRL (PEM or DER) as JSON")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="(always JSON)")

    p = verb("check", cmd_check, "would an IIS beacon accept this device certificate? (exit 0 accept, 1 reject)")
    p.add_argument("cert", metavar="CERT", help="the device certificate (PEM, may be followed by its chain; or DER)")
    p.add_argument("--chain", action="extend", nargs="+", default=[], metavar="FILE", help="the beacon's trusted CAs (default: the PKI dir's)")
    p.add_argument("--crl", action="extend", nargs="+", default=[], metavar="FILE", help="CRLs the beacon has (default: the PKI dir's)")
    p.add_argument("--stack-config", metavar="FILE", help="stacks/Pulumi.<stack>.yaml: adds extraMappingRules/denyMappingRules (and clientCaCertificates as trust without --chain)")
    p.add_argument("--issuer-cn", help="CN of the Issuer rule (default: the issuing CA(s) among the trusted certificates)")
    p.add_argument("--at", metavar="ISO8601", help="check at this time (default now)")
    p.add_argument("--json", action="store_true")

    p = verb("list", cmd_list, "list issued certificates")
    p.add_argument("--expiring", type=non_negative_int, metavar="DAYS", help="only valid certificates ending within DAYS (or already ended)")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage error (2) or --help (0)
        return int(exc.code or 0)
    pki = Pki(args.dir)
    try:
        return args.handler(args, pki)
    except PkiError as exc:
        print(f"pki: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"pki: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pki: interrupted", file=sys.stderr)
        return 130
