"""Issuing: `init-ca` (the CA; with --server-domain also the server CA of server_ca.py),
`issue-server` (signed by the server CA when there is one), `issue-client` (a key made here) and
`sign-csr` (the device keeps its key), all through :class:`Issuer`, which writes the files of
many certificates in bulk and records them in index.json once.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.certs import facts as cert_facts
from components.safe_files import CERTIFICATE_FILE_LIMIT, TABLE_FILE_LIMIT, read_regular, read_text

from . import build, guard, keycrypt
from .entries import SERVER_CA, entry_for
from .files import PRIVATE_DIR, PRIVATE_FILE, PUBLIC_FILE, atomic_write
from .inputs import DEFAULT_DAYS, MAX_COUNT, check_attr, check_dns, check_ip, check_url, now_utc, required_attr, within_domains
from .keycrypt import CA_PASSWORD_ENV
from .journal import Journal, Record
from .names import name_key
from .progress import Progress, note, out
from .revocation import derived_root_crl_url, publish_crls
from .server_ca import make_server_ca, new_key_password, report_server_ca, server_ca_request
from .store import Batch, Pki, PkiError, check_name, key_pem

BACKGROUND_FROM = 32  # from this many certificates, background processes write the files
JOURNAL_CHUNK = 64  # certificates recorded in the journal (one sync) before their files are written


def leaf_profile(pki: Pki, kind: str, days: int, dns: Sequence[str] = (), ips: Sequence[str] = (), server_ca: bool = False) -> build.Profile:
    """server_ca: signed by the server CA, whose CRL (server-crl.der) is at its own CDP."""
    ca = pki.index["ca"]
    return build.Profile(
        days=days,
        eku=build.SERVER_EKU if kind == "server" else build.CLIENT_EKU,
        dns=dns,
        ips=ips,
        crl_urls=ca.get("serverCrlUrls", []) if server_ca else ca.get("crlUrls", []),
        aia_urls=[] if server_ca else ca.get("aiaUrls", []),
    )


class Issuer:
    """Issues leaf certificates from the issuing CA into the PKI directory.

    Made for bulk: the CA certificate and key are read once (and checked: guard.py); each
    profile becomes a build.CertificateTemplate once; files go through a store.Batch (atomic,
    final mode from creation, no fsync each; for many certificates written by background
    processes while this one signs); entries are kept in memory.

    Record before release: every JOURNAL_CHUNK certificates are appended to the issuing journal
    and synced (journal.py) before any of their files is written, so a command killed at any
    point leaves no certificate that the next command cannot find and record.

    finish() writes the files still pending, waits for them, keeps exactly the certificates whose
    files are all on disk, syncs once, writes index.json once and deletes the journal. Use the
    Issuer as a context manager: after an error, Ctrl-C or SIGTERM what was issued is recorded
    (and said), and nothing else is left on disk."""

    def __init__(self, pki: Pki, server_ca: bool = False):
        self.pki = pki
        self.server_ca = server_ca  # sign with the server CA (issue-server when there is one)
        if server_ca:
            self.ca_cert, self.ca_key = pki.server_ca()
            guard.check_validity(self.ca_cert, "the server CA")
        else:
            self.ca_cert, self.ca_key = pki.issuing()  # the key must belong to the certificate
            guard.check_issuer(pki, self.ca_cert)  # valid now, not revoked, chained to the root
        self.key_type = pki.index["ca"].get("keyType", "ec")
        self.clamped = 0
        self.requested = 0
        self.batch = Batch(pki.root)
        self.journal = Journal(pki.journal_path)
        self.touched: list[tuple[str, int, list[tuple[int, int]]]] = []  # (name, files expected, their write tokens)
        self.pending: list[tuple[str, str, str, bytes | None, bytes, list[tuple[int, int]]]] = []  # signed, not journaled yet
        self.templates: dict[tuple[Any, ...], build.CertificateTemplate] = {}
        self.private_dir = os.path.join(pki.private, "")  # strings: pathlib costs more than a signature's share
        self.issued_dir = os.path.join(pki.issued, "")
        pki.ensure_dirs()

    def __enter__(self) -> "Issuer":
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.finish(stopped=kind is not None)

    def template(self, kind: str, days: int, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> build.CertificateTemplate:
        wanted = (kind, days, tuple(dns), tuple(ips))
        found = self.templates.get(wanted)
        if found is None:
            found = self.templates[wanted] = build.CertificateTemplate(leaf_profile(self.pki, kind, days, dns, ips, self.server_ca), self.ca_cert, self.ca_key)
        return found

    def issue(self, name: str, subject: x509.Name, kind: str, days: int, key_type: str | None = None,
              public_key: Any = None, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> tuple[x509.Certificate, dict[str, Any]]:
        """Sign one certificate (with a new key unless public_key) and record it in memory; its
        files follow once it is journaled (:meth:`flush`)."""
        key = None
        if public_key is None:
            key = build.new_key(key_type or self.key_type)
            public_key = key.public_key()
        cert, clamped = self.template(kind, days, dns, ips).sign(subject, public_key, now_utc())
        source = "key" if key is not None else "csr"
        entry = entry_for(cert, kind, source, subject, may_have_san=bool(dns or ips))
        if self.server_ca:
            entry["ca"] = SERVER_CA  # its revocation goes on the server CA's CRL
        files: list[tuple[int, int]] = []
        self.touched.append((name, 2 if key is not None else 1, files))  # before any write: finish() cleans up
        self.pending.append((name, kind, source, key_pem(key) if key is not None else None, cert.public_bytes(serialization.Encoding.DER), files))
        self.pki.add_certificate(name, entry)
        self.clamped += clamped
        if len(self.pending) >= JOURNAL_CHUNK:
            self.flush()
        return cert, entry

    def flush(self) -> None:
        """Journal the pending certificates (one synced append), then write their files."""
        chunk, self.pending = self.pending, []
        if not chunk:
            return
        self.journal.append([Record(name, kind, source, der) for name, kind, source, _, der, _ in chunk])
        for name, _, _, key_bytes, der, files in chunk:
            if key_bytes is not None:
                files.append(self.batch.write(f"{self.private_dir}{name}.key", key_bytes, PRIVATE_FILE))
            files.append(self.batch.write(f"{self.issued_dir}{name}.pem", build.pem_armor(der, "CERTIFICATE"), PUBLIC_FILE))

    def issue_many(self, requests: Sequence[tuple[str, x509.Name, Any]], kind: str, days: int, key_type: str | None,
                   verb: str, line: Callable[[str, dict[str, Any]], str] | None = None) -> None:
        """(name, subject, public key or None) each, with a progress display. From
        BACKGROUND_FROM certificates on, the files are written by background processes.
        line(name, entry): an optional result line per certificate for stdout."""
        self.requested += len(requests)
        if len(requests) >= BACKGROUND_FROM:
            self.batch.start_background()  # forks: before the progress bar starts its thread
        with Progress(verb, len(requests)) as progress:
            for name, subject, public_key in requests:
                _, entry = self.issue(name, subject, kind, days, key_type, public_key)
                if line is not None:
                    progress.out(line(name, entry))
                progress.advance()
        self.flush()

    def finish(self, stopped: bool = False) -> int:
        """Write what is pending (also after Ctrl-C: it is signed); wait for the files; forget
        (index and disk) every certificate of this command whose files are not all written;
        sync once; write index.json once; delete the journal. Returns how many were issued;
        raises the background writer's error, if any, after recording the rest. stopped: the
        command was cut short (an error or an interruption): say what was recorded."""
        error: BaseException | None = None
        try:
            self.flush()
        except BaseException as exc:  # noqa: BLE001 - a second Ctrl-C, or a disk error: record the rest first
            error = exc
        error = self.batch.drain() or error
        kept, total = 0, len(self.touched)
        last = ""
        for name, expected, files in self.touched:
            on_disk = len(files) == expected and all(self.batch.is_written(token) for token in files)
            if on_disk and name in self.pki.certificates:
                kept += 1
                last = name
                continue
            self.pki.certificates.pop(name, None)  # a new name of this command: nothing else lost
            (self.pki.issued / f"{name}.pem").unlink(missing_ok=True)
            (self.pki.private / f"{name}.key").unlink(missing_ok=True)
        self.touched = []
        if kept:
            self.batch.sync()
            self.pki.save_index()
            if self.clamped:
                note(f"note: {self.clamped} certificate(s) cut to end with the issuing CA ({cert_facts.iso(self.ca_cert.not_valid_after_utc)})")
        self.journal.discard()  # index.json holds every certificate kept; the others are gone
        if kept < total or (stopped and max(total, self.requested) > 1):
            left = max(self.requested - total, 0)
            note(
                f"note: {kept} certificate(s) issued and recorded in index.json; {total - kept} unfinished one(s) removed"
                + (f"; {left} of {self.requested} not issued" if left else "")
                + (f" (last recorded: {last})" if last else "")
            )
        if error is not None:
            raise error
        return kept


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
    server = server_ca_request(args, cn, [cn, root_cn], crl_urls) if args.server_domain else None
    if server is None and (args.server_crl_url or args.server_cn):
        raise PkiError("--server-cn and --server-crl-url go with --server-domain DOMAIN")
    password = new_key_password(args, "ca.key" + (", root.key" if args.intermediate else "") + (", server-ca.key" if server else ""))

    now = now_utc()
    _restrict_root(pki)
    pki.ensure_dirs()
    root_key = build.new_key(args.key)
    root_profile = build.Profile(days=args.days, ca=True, path_length=1 if args.intermediate else 0)
    root_cert, _ = build.build_certificate(build.make_name(root_cn, o, ou, country), root_key.public_key(), root_profile, None, root_key, now)
    authorities: dict[str, Any] = {}
    if args.intermediate:
        ca_key = build.new_key(args.key)
        profile = build.Profile(days=min(args.intermediate_days, args.days), ca=True, path_length=0, crl_urls=root_crl_urls, aia_urls=root_aia_urls)
        ca_cert, _ = build.build_certificate(build.make_name(cn, o, ou, country), ca_key.public_key(), profile, root_cert, root_key, now)
        pki.write_key(pki.root_key, root_key, password=password)
        pki.write_cert(pki.root_pem, root_cert)
        authorities["root"] = {"file": "root.pem", **entry_for(root_cert, "root-ca", "key")}
    else:
        ca_key, ca_cert = root_key, root_cert
    pki.write_key(pki.ca_key, ca_key, password=password)
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
    if server is not None:
        make_server_ca(pki, server, args.key, args.days, password, now, (o, ou, country))
    pki.save_index()
    written = publish_crls(pki, DEFAULT_DAYS["crl"])
    kind = "root + issuing intermediate" if args.intermediate else "root"
    out(f"created {kind} CA {cn!r} in {pki.root}/ (key {args.key}, serial {cert_facts.serial_hex(ca_cert.serial_number)}, until {cert_facts.iso(ca_cert.not_valid_after_utc)})")
    if server is not None:
        report_server_ca(pki)
    for line in written:
        out(f"  {line}")
    out(f"  IIS mapping rule: Issuer.CN={cn}")
    keys = ["ca.key"] + (["root.key"] if args.intermediate else []) + (["private/server-ca.key"] if server is not None else [])
    listed = ", ".join(keys[:-1]) + " and " + keys[-1] if len(keys) > 1 else keys[0]
    if password is not None:
        out(f"  {listed} encrypted (PKCS#8, PBES2 AES-256-CBC, PBKDF2-HMAC-SHA256 {keycrypt.KDF_ROUNDS:,} rounds) with {CA_PASSWORD_ENV}: "
            f"every command that signs (issue-*, sign-csr, renew, crl) needs it. Keep {pki.root}/ on a machine only you use and back it up"
            + (", and move root.key offline (crl re-signs the root's CRL only when it is there)" if args.intermediate else ""))
    else:
        verb = "are" if len(keys) > 1 else "is"
        out(f"  {listed} {verb} NOT encrypted (mode 0600 in a 0700 directory; --encrypt-key encrypts them): whoever reads "
            f"{'them' if len(keys) > 1 else 'it'} can issue trusted devices. "
            f"Keep {pki.root}/ on an encrypted disk of a machine only you use, back it up encrypted (e.g. tar | gpg -c)"
            + (", and move root.key offline (crl re-signs the root's CRL only when it is there)" if args.intermediate else ""))
    return 0


def _restrict_root(pki: Pki) -> None:
    """The PKI directory holds the CA key: make it 0700 (an existing directory too, e.g. one
    made 0777), or refuse when that is not possible (not ours)."""
    mode = stat.S_IMODE(os.stat(pki.root).st_mode)
    if mode & 0o077 == 0:
        return
    try:
        os.chmod(pki.root, PRIVATE_DIR)
    except OSError as exc:
        raise PkiError(
            f"--dir {pki.root}: mode {mode:04o} lets other users read the CA key or replace its files, and it cannot be made 0700 "
            f"({exc.strerror or exc}); use a directory of your own"
        ) from None
    note(f"note: {pki.root}/ was mode {mode:04o}; made it 0700 (it holds the CA key: no one else may read or change it)")


def cmd_issue_server(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    if not args.dns:
        raise PkiError("issue-server needs at least one --dns NAME")
    dns = [check_dns(d) for d in args.dns]
    ips = [check_ip(i) for i in args.ip]
    domains = pki.server_domains()
    if domains:  # what the server CA's name constraints would make every device refuse: refused here
        outside = [d for d in dns if not within_domains(d, domains)]
        if outside:
            raise PkiError(f"--dns {outside[0]}: outside the server CA's domains ({', '.join(domains)}); devices would refuse it (name constraints)")
        if ips:
            raise PkiError(f"--ip {ips[0]}: the server CA excludes every IP address (name constraints; domains {', '.join(domains)}); use DNS names only")
    name = args.name or dns[0].replace("*", "wildcard")
    with pki.locked():
        pki.check_new_name(name)
        subject = build.make_name(required_attr(dns[0], "--dns"), check_attr(args.o, "--o"), check_attr(args.ou, "--ou"))
        guard.check_subject(subject, guard.ca_subjects(pki), "--dns")
        with Issuer(pki, server_ca=bool(domains)) as issuer:
            cert, _ = issuer.issue(name, subject, "server", args.days, args.key, dns=dns, ips=ips)
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
        if not 1 <= args.count <= MAX_COUNT:  # argparse checks too; a caller of this function may not
            raise PkiError(f"--count: got {args.count}; expected 1 or more and at most {MAX_COUNT}")
        start = 1 if args.start is None else args.start
        width = max(4, len(str(start + args.count - 1)))
        return [(f"{args.prefix}{i:0{width}d}", o, ou) for i in range(start, start + args.count)]
    path = Path(args.from_csv)
    try:
        text = read_text(path, TABLE_FILE_LIMIT, "utf-8-sig")  # a regular file of at most 64 MiB
    except (OSError, ValueError) as exc:
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
        if len(rows) > MAX_COUNT:
            raise PkiError(f"{path}:{number}: more than {MAX_COUNT} rows; expected at most {MAX_COUNT} devices per command (split the file)")
    if not rows:
        raise PkiError(f"{path}: no rows after the header")
    return rows


def cmd_issue_client(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    requests = _client_requests(args)
    with pki.locked():
        seen: dict[str, str] = {}  # name_key -> the first name of this request with it
        for cn, _, _ in requests:
            pki.check_new_name(cn, seen)
            seen[name_key(cn)] = cn
        subjects = [(cn, build.make_name(cn, o, ou), None) for cn, o, ou in requests]
        cas = guard.ca_subjects(pki)
        for cn, subject, _ in subjects:
            guard.check_subject(subject, cas, "--cn" if args.cn is not None else f"name {cn!r}")
        total = len(requests)
        with Issuer(pki) as issuer:  # one sync, one index write; also for what was issued before an error
            issuer.issue_many(subjects, "client", args.days, args.key, "issued")
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
    if len(files) > MAX_COUNT:
        raise PkiError(f"sign-csr: {len(files)} CSR files; expected at most {MAX_COUNT} per command")
    return files


def load_csr(path: Path) -> x509.CertificateSigningRequest:
    try:
        data = read_regular(path, CERTIFICATE_FILE_LIMIT)
    except OSError as exc:
        raise PkiError(f"{path}: unreadable ({exc.strerror})") from None
    except ValueError as exc:  # not a regular file, or too large
        raise PkiError(f"{path}: {exc}") from None
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
        seen: dict[str, str] = {}  # name_key -> the first name of this request with it
        for path in files:
            csr = load_csr(path)
            cn = cert_facts.common_name(csr.subject)
            if not cn:
                raise PkiError(f"{path}: the CSR subject has no CN (the device name)")
            try:
                pki.check_new_name(cn, seen)
            except PkiError as exc:
                raise PkiError(f"{path}: {exc}") from None
            seen[name_key(cn)] = cn
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
        cas = guard.ca_subjects(pki)
        for path, _, subject, _ in requests:
            guard.check_subject(subject, cas, str(path))
        with Issuer(pki) as issuer:
            issuer.issue_many(
                [(cn, subject, public_key) for _, cn, subject, public_key in requests], "client", args.days, None, "signed",
                line=lambda cn, entry: f"signed {sources[cn]} -> {pki.issued / (cn + '.pem')} (serial {entry['serial']})",
            )
    return 0
