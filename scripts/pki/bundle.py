"""`bundle`: a device onboarding kit per device, bundles/<name>/ (layout: bundle_files.py).

    python -m scripts.pki bundle NAME... | --all-clients | --prefix P
        (--stack NAME | --stack-config FILE | --stack-outputs FILE | --beacon-host HOST ...)
        [--out DIR] [--server-ca FILE] [--unix-client-cert PATH --unix-client-key PATH]
        [--random-passwords] [--legacy] [--force] [--jobs N]

Each kit is written into a temporary directory next to the others and renamed into place whole,
so bundles/<name>/ either does not exist or is complete; an interrupted run leaves at most
temporary directories, which the next run removes. A rerun skips the complete kits made with
the same settings (device serial, beacons, stack, encryption, password source, paths), refuses
kits made with other settings unless --force, and writes the rest. PFX passwords: PKI_PASSWORD
(one for all), else one random password per device, recorded in DIR/passwords.csv (0600, next
to bundles/, never inside a kit) before the kit that uses it is written.

The PFX encryption (PBKDF2, 50,000 rounds) dominates: kits are made by worker processes
(parallel.Workers), each writing and renaming whole kits; the files are made durable by one
filesystem sync at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import secrets
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.certs import facts as cert_facts

from . import beacons, build, parallel
from . import bundle_files as kit
from .files import PRIVATE_DIR, PRIVATE_FILE, PUBLIC_FILE, atomic_write, fsync_dir, sync_filesystem
from .inputs import PASSWORD_ENV, non_negative_int, now_utc, parse_at
from .progress import Progress, note, out
from .store import Pki, PkiError, check_name, key_pem

BUNDLE_PARALLEL_FROM, BUNDLE_CHUNK = 4, 4
MIN_SHARED_PASSWORD = 12  # a shared PKI_PASSWORD protects every kit's key: offline guessing must not pay
LIST_EACH_UP_TO = 20  # name each kit written when there are at most this many


def add_bundle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="device names of this PKI")
    parser.add_argument("--all-clients", action="store_true", help="every valid client certificate with its key here")
    parser.add_argument("--prefix", help="the valid client certificates whose name starts with this")
    beacons.add_target_arguments(parser)
    parser.add_argument("--out", metavar="DIR", help="write DIR/bundles/<name>/ and DIR/passwords.csv (default: the PKI directory)")
    parser.add_argument("--server-ca", action="append", default=[], metavar="FILE", help="root CA (PEM/DER) of the beacons' server certificate, when this PKI did not issue it")
    parser.add_argument("--unix-client-cert", metavar="PATH", help="where your UNIX agent reads its client certificate (not documented by Flexera: no default)")
    parser.add_argument("--unix-client-key", metavar="PATH", help="where your UNIX agent reads its client key (not documented by Flexera: no default)")
    parser.add_argument("--random-passwords", action="store_true", help=f"one random PFX password per device even when {PASSWORD_ENV} is set")
    parser.add_argument("--allow-short-password", action="store_true", help=f"accept a {PASSWORD_ENV} shorter than {MIN_SHARED_PASSWORD} characters")
    parser.add_argument("--legacy", action="store_true", help="3DES + SHA-1 MAC PFX for Windows Server 2016 and older")
    parser.add_argument("--force", action="store_true", help="rebuild kits that exist with other settings")
    parser.add_argument("--jobs", type=non_negative_int, metavar="N", help="worker processes (default: one per CPU, up to 8; 1 = none)")


def _select(args: argparse.Namespace, pki: Pki) -> list[str]:
    """Names to bundle: client certificates with a key here, valid now and not revoked. Named
    ones that are not are errors; --all-clients/--prefix skip them with a count."""
    if bool(args.names) + bool(args.all_clients) + (args.prefix is not None) != 1:
        raise PkiError("which devices? give NAME..., --all-clients or --prefix P (one of them)")
    now = now_utc()

    def problem(name: str, item: dict[str, Any]) -> str | None:
        if item.get("kind") != "client":
            return f"{name!r} is a {item.get('kind')} certificate, not a device (client) certificate"
        if item.get("source") == "csr":
            return f"{name!r} was signed from a CSR: its key stays on the device, so there is no PFX to make"
        if item.get("status") != "valid":
            return f"{name!r} is {item.get('status')}: issue a new certificate under a new name"
        if parse_at(item["notAfter"]) <= now:
            return f"{name!r} expired {item['notAfter']}"
        return None

    if args.names:
        names: list[str] = []
        for name in args.names:
            check_name(name, "device name")
            why = problem(name, pki.entry(name))
            if why:
                raise PkiError(why)
            if name not in names:
                names.append(name)
        return names
    skipped = 0
    names = []
    for name, item in sorted(pki.certificates.items()):
        if args.prefix is not None and not name.startswith(args.prefix):
            continue
        if item.get("kind") != "client":
            continue
        if problem(name, item):
            skipped += 1
            continue
        check_name(name, f"{pki.index_path}: device name")  # a hand-edited index must not steer paths
        names.append(name)
    if skipped:
        note(f"note: skipped {skipped} client certificate(s) that are revoked, expired or signed from CSRs")
    if not names:
        raise PkiError("no device to bundle: no valid client certificate with its key here" + (f" starts with {args.prefix!r}" if args.prefix else ""))
    return names


def _san_covers(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def _server_trust(args: argparse.Namespace, pki: Pki, hosts: list[str], chain: list[x509.Certificate]) -> tuple[list[x509.Certificate], str]:
    """The CA certificates the agents need to trust the beacons' server certificate."""
    if args.server_ca:
        certs: list[x509.Certificate] = []
        for item in args.server_ca:
            try:
                certs += cert_facts.read_certificates(item)
            except OSError as exc:
                raise PkiError(f"--server-ca {item}: unreadable ({exc.strerror})") from None
            except ValueError as exc:
                raise PkiError(f"--server-ca {item}: {exc}") from None
        if not any(cert_facts.is_self_signed(c) for c in certs):
            raise PkiError("--server-ca: no self-signed root CA among the certificates (the agents trust a root)")
        return certs, "--server-ca"
    servers = {n: i for n, i in pki.certificates.items() if i.get("kind") == "server" and i.get("status") == "valid"}
    missing = [h for h in hosts if not any(_san_covers(d, h) for i in servers.values() for d in (i.get("san") or {}).get("dns", []))]
    if missing:
        raise PkiError(f"which CA issued the beacons' server certificate? this PKI issued none for {', '.join(missing)}: give --server-ca FILE (its root CA), so the agents can trust the beacon")
    return [chain[-1]], "this PKI (it issued the beacons' server certificate)"


def _check_stack_trusts(target: beacons.Target, chain: list[x509.Certificate]) -> None:
    if target.trust is None:
        note("note: no stack given: not checked that the beacons trust this CA (verify-bundle --stack does)")
        return
    trusted: set[str] = set()
    for path in target.trust.ca_files:
        try:
            trusted |= {cert_facts.thumbprint(c) for c in cert_facts.read_certificates(path)}
        except (OSError, ValueError) as exc:
            raise PkiError(f"{target.stack_file}: clientCaCertificates {path}: unreadable ({exc})") from None
    issuing = chain[0]
    if cert_facts.thumbprint(issuing) not in trusted:
        raise PkiError(f"stack {target.stack} does not trust this PKI's issuing CA {issuing.subject.rfc4514_string()!r} (not in its clientCaCertificates): its beacons would refuse these devices (403.16)")


@dataclass
class Plan:
    """What every kit of one run shares (workers inherit it by fork; nothing is pickled)."""

    pki: Pki
    root: Path
    target: beacons.Target
    device_chain: list[x509.Certificate]
    windows_cas: list[tuple[str, str, x509.Certificate]]
    unix_ca: bytes
    settings: dict[str, Any]
    passwords: dict[str, str]
    shared_password: bytes | None
    legacy: bool
    unix_cert: str | None
    unix_key: str | None

    @cached_property
    def intermediates_pem(self) -> bytes:
        """The device chain without its root, sent after the certificate (unix/device.pem)."""
        return b"".join(kit.pem(c) for c in self.device_chain if not cert_facts.is_self_signed(c))

    def files(self, name: str) -> dict[str, tuple[bytes, int]]:
        cert = self.pki.load_cert(self.pki.issued / f"{name}.pem")
        if cert_facts.serial_hex(cert.serial_number) != str(self.pki.certificates[name].get("serial", "")).lower():
            raise PkiError(f"{self.pki.issued / (name + '.pem')} is not the certificate index.json records for {name!r} (serial differs)")
        key = self.pki.load_key(self.pki.private / f"{name}.key")
        if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            raise PkiError(f"{self.pki.private / (name + '.key')} is not the key of {self.pki.issued / (name + '.pem')}")
        password = self.shared_password if self.shared_password is not None else self.passwords[name].encode("utf-8")
        host = kit.bootstrap_host(name, self.target.hosts)
        files: dict[str, tuple[bytes, int]] = {
            "windows/device.pfx": (build.pkcs12_bytes(name, key, cert, [], password, self.legacy), PRIVATE_FILE),
            "windows/install.ps1": (kit.template_bytes(), PUBLIC_FILE),
            "windows/install.json": (kit.install_json(name, self.target.stack, cert, self.windows_cas, self.target.hosts), PUBLIC_FILE),
            "windows/mgssetup.ini": (kit.mgssetup_ini(host), PUBLIC_FILE),
            "unix/device.pem": (kit.pem(cert) + self.intermediates_pem, PUBLIC_FILE),
            "unix/device.key": (key_pem(key), PRIVATE_FILE),
            "unix/cert.pem": (self.unix_ca, PUBLIC_FILE),
            f"unix/{kit.ROLLOUT_NAME}": (kit.rollout_response(host), PUBLIC_FILE),
            "unix/UNIXConfig.ini": (kit.unix_config_ini(), PUBLIC_FILE),
            "unix/INSTALL.txt": (kit.unix_install_text(name, self.target.stack, self.unix_cert, self.unix_key), PUBLIC_FILE),
        }
        for file, _, ca in self.windows_cas:
            files[f"windows/{file}"] = (kit.der(ca), PUBLIC_FILE)
        entries = {**self.settings, "device": name, "serial": cert_facts.serial_hex(cert.serial_number), "thumbprint": cert_facts.thumbprint(cert),
                   "notAfter": cert_facts.iso(cert.not_valid_after_utc), "subject": cert.subject.rfc4514_string(), "bootstrapBeacon": host}
        files["manifest.json"] = (kit.manifest(entries, {k: v[0] for k, v in files.items()}), PUBLIC_FILE)
        return files

    def write(self, name: str) -> None:
        """Build the kit in root/.tmp-XXXX and rename it to root/<name> (replacing a stale one)."""
        final = kit.bundle_dir(self.root, name)
        files = self.files(name)
        tmp = self.root / f".tmp-{secrets.token_hex(8)}"
        try:
            os.mkdir(tmp, PRIVATE_DIR)
            for sub in ("windows", "unix"):
                os.mkdir(tmp / sub, PRIVATE_DIR)
            for relative, (data, mode) in sorted(files.items(), key=lambda item: item[0] == "manifest.json"):
                _write_new(tmp / relative, data, mode)
            if os.path.lexists(final):
                old = self.root / f".old-{secrets.token_hex(8)}"
                os.rename(final, old)  # a symbolic link planted there is moved, never followed
                os.rename(tmp, final)
                _remove(old)
            else:
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _bundles_root(args: argparse.Namespace, pki: Pki) -> Path:
    base = Path(args.out) if args.out else pki.root
    root = base / "bundles"
    if root.is_symlink():
        raise PkiError(f"{root}: a symbolic link; give a real directory with --out")
    root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(root: Path) -> Any:
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PkiError(f"{root}: another bundle run is writing here") from None
        yield
    finally:
        os.close(fd)


def _sort_out(plan: Plan, names: list[str], force: bool) -> tuple[list[str], int]:
    """(names to write, complete kits skipped); stale kits are an error without --force."""
    todo: list[str] = []
    stale: list[tuple[str, list[str]]] = []
    skipped = 0
    serials = {n: plan.pki.certificates[n]["serial"] for n in names}
    for name in names:
        folder = kit.bundle_dir(plan.root, name)
        if not os.path.lexists(folder):
            todo.append(name)
            continue
        found = kit.read_manifest(folder) if folder.is_dir() and not folder.is_symlink() else None
        same = found is not None and found.get("serial") == serials[name] and all(found.get(k) == v for k, v in plan.settings.items())
        if same and found is not None and kit.files_intact(folder, found) and (plan.shared_password is not None or name in plan.passwords):
            skipped += 1
        elif same or force or found is None:
            todo.append(name)  # damaged (e.g. a crash before the final sync) or asked for: rebuilt
        else:
            differ = [k for k, v in plan.settings.items() if found.get(k) != v] + (["serial"] if found.get("serial") != serials[name] else [])
            stale.append((name, differ))
    if stale:
        name, differ = stale[0]
        raise PkiError(f"{len(stale)} kit(s) exist with other settings (e.g. {plan.root / name}: {', '.join(differ)} differ); run with --force to rebuild them")
    return todo, skipped


def cmd_bundle(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    target = beacons.resolve(args)
    names = _select(args, pki)
    unix_cert = kit.check_unix_path(args.unix_client_cert, "--unix-client-cert")
    unix_key = kit.check_unix_path(args.unix_client_key, "--unix-client-key")
    chain = pki.chain()
    _check_stack_trusts(target, chain)
    server_certs, server_source = _server_trust(args, pki, target.hosts, chain)
    windows_chain: list[x509.Certificate] = []
    for cert in chain + server_certs:
        if cert not in windows_chain:
            windows_chain.append(cert)
    shared: bytes | None = None
    if PASSWORD_ENV in os.environ and not args.random_passwords:
        shared = os.environ[PASSWORD_ENV].encode("utf-8")
        if not shared:
            raise PkiError(f"{PASSWORD_ENV} is set but empty; refusing an empty PFX password (unset it for random per-device passwords)")
        if len(os.environ[PASSWORD_ENV]) < MIN_SHARED_PASSWORD and not args.allow_short_password:
            raise PkiError(f"{PASSWORD_ENV}: {len(os.environ[PASSWORD_ENV])} characters; expected at least {MIN_SHARED_PASSWORD} (it protects every kit's key against offline guessing; unset it for random per-device passwords, or pass --allow-short-password)")
    root = _bundles_root(args, pki)
    passwords_path = root.parent / "passwords.csv"
    settings = {
        "kitVersion": kit.KIT_VERSION, "stack": target.stack, "beacons": target.hosts, "legacy": bool(args.legacy),
        "password": PASSWORD_ENV if shared is not None else "passwords.csv",
        "serverTrust": [cert_facts.thumbprint(c) for c in server_certs],
        "unixClientCertificatePath": unix_cert, "unixClientKeyPath": unix_key,
    }
    unix_ca = b"".join(kit.pem(c) for c in server_certs if cert_facts.is_self_signed(c))
    with _locked(root):
        for leftover in [*root.glob(".tmp-*"), *root.glob(".old-*")]:  # what an interrupted run left
            _remove(leftover)
        plan = Plan(pki, root, target, chain, kit.ca_files(windows_chain), unix_ca, settings,
                    kit.read_passwords(passwords_path) if shared is None else {}, shared, bool(args.legacy), unix_cert, unix_key)
        todo, skipped = _sort_out(plan, names, args.force)
        if todo and shared is None:
            for name in todo:  # recorded (durably) before any kit that uses them exists
                plan.passwords[name] = kit.new_password()
            atomic_write(passwords_path, kit.passwords_csv(plan.passwords), PRIVATE_FILE)
        done = _run(plan, todo, args.jobs)
    _report(args, plan, todo, done, skipped, passwords_path, server_source)
    return 0


def _run(plan: Plan, todo: list[str], jobs: int | None) -> int:
    done = 0

    def work(span: Any) -> int:
        for name in todo[span.start:span.stop]:
            plan.write(name)
        return len(span)

    try:
        with parallel.Workers(work, parallel.choose_jobs(jobs, len(todo), BUNDLE_PARALLEL_FROM)) as workers, Progress("bundled", len(todo)) as progress:

            def finished(count: int) -> None:
                nonlocal done
                done += count
                progress.advance(count)

            workers.run(parallel.spans(len(todo), BUNDLE_CHUNK), finished)
    except KeyboardInterrupt:
        complete = sum(1 for name in todo if os.path.isdir(plan.root / name))  # whole kits only: each appears by one rename
        note(f"note: {complete} of {len(todo)} kit(s) complete in {plan.root}/; run the same command again to write the rest")
        raise
    finally:
        if todo:
            sync_filesystem(plan.root)
            fsync_dir(plan.root)
    return done


def _report(args: argparse.Namespace, plan: Plan, todo: list[str], done: int, skipped: int, passwords_path: Path, server_source: str) -> None:
    if len(todo) <= LIST_EACH_UP_TO:
        for name in todo:
            out(f"wrote {plan.root / name}/")
    scheme = "legacy 3DES/SHA-1" if args.legacy else "AES-256-CBC, PBKDF2-HMAC-SHA256 50,000 rounds"
    where = f"PFX password from {PASSWORD_ENV}" if plan.shared_password is not None else f"one random PFX password per device in {passwords_path} (0600; keep it apart from the kits)"
    out(f"{done} kit(s) written, {skipped} complete kit(s) skipped, in {plan.root}/ ({scheme}; {where})")
    out(f"beacons: {', '.join(plan.target.hosts)} (from {', '.join(plan.target.sources)}); server CA for the agents: {server_source}")
    if not (plan.unix_cert and plan.unix_key):
        note("note: UNIX: Flexera's documentation does not say where the UNIX agent reads its client certificate and key, so "
             "unix/device.pem and unix/device.key are not placed by this kit; give --unix-client-cert PATH --unix-client-key PATH "
             "(the paths your agent version reads, from Flexera) to have them named in unix/INSTALL.txt")
    stack = f"--stack {plan.target.stack}" if plan.target.stack else "--stack NAME"
    out(f"next: python -m scripts.pki --dir {plan.pki.root} verify-bundle {plan.root} {stack}; then install (docs/onboarding.md)")
