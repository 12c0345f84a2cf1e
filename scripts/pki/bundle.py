"""`bundle`: a device onboarding kit per device, bundles/<name>/ (layout: bundle_files.py).

    python -m scripts.pki bundle NAME... | --all-clients | --prefix P
        (--stack NAME | --stack-config FILE | --stack-outputs FILE | --beacon-host HOST ...)
        [--platform windows|unix|all] [--encrypt-key] [--out DIR] [--server-ca FILE]
        [--unix-client-cert PATH --unix-client-key PATH] [--random-passwords] [--legacy] [--force] [--jobs N]

Kit format 2 (bundle_files.py): windows/ and/or unix/ by --platform (default windows: a Windows
kit holds no unencrypted key), signed by the PKI's kit signer (kit_signing.py, made on first
use): manifest.sig over manifest.json, windows/install.json.sig over install.json, which lists
the hash of every file install.ps1 reads.

Each kit is written into a temporary directory next to the others and renamed into place whole,
so bundles/<name>/ either does not exist or is complete; an interrupted run leaves at most
temporary directories, which the next run removes. A rerun skips the complete kits made with
the same settings (device serial, beacons, stack, encryption, password source, paths), refuses
kits made with other settings unless --force, and writes the rest. PFX passwords: PKI_PASSWORD
(one for all), else one random password per device, recorded in DIR/passwords.csv (0600, next
to bundles/, never inside a kit) before the kit that uses it is written.

The PFX encryption (two PBKDF2 derivations of 50,000 rounds) dominates: kits are made by worker processes
(parallel.Workers), each writing and renaming whole kits; the files are made durable by one
filesystem sync at the end.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.certs import facts as cert_facts

from . import beacons, build, bundle_dirs, parallel
from . import bundle_files as kit
from . import kit_signing
from .entries import SERVER_CA
from .files import PRIVATE_FILE, PUBLIC_FILE, atomic_write, fsync_dir, sync_filesystem
from .inputs import PASSWORD_ENV, non_negative_int, now_utc, parse_at
from .keycrypt import is_blank
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
    parser.add_argument("--server-ca", action="append", default=[], metavar="FILE", help="name-constrained root CA (PEM/DER) of the beacons' server certificate, when this PKI did not issue it")
    parser.add_argument("--server-trust", choices=("kit", "preinstalled"), default="kit",
                        help="kit (default): the kit installs the beacons' name-constrained server root; preinstalled: the devices already trust the beacons' CA (public, or pushed by Group Policy), the kit installs no root")
    parser.add_argument("--unix-client-cert", metavar="PATH", help="where your UNIX agent reads its client certificate (not documented by Flexera: no default)")
    parser.add_argument("--unix-client-key", metavar="PATH", help="where your UNIX agent reads its client key (not documented by Flexera: no default)")
    parser.add_argument("--random-passwords", action="store_true", help=f"one random PFX password per device even when {PASSWORD_ENV} is set")
    parser.add_argument("--allow-short-password", action="store_true", help=f"accept a {PASSWORD_ENV} shorter than {MIN_SHARED_PASSWORD} characters")
    parser.add_argument("--platform", choices=kit.PLATFORMS, default="windows",
                        help="which kit: windows (default: most FlexNet fleets are Windows, and a Windows kit then holds no unencrypted "
                             "private key, only the PFX), unix, or all (both; the UNIX key is then always encrypted)")
    parser.add_argument("--encrypt-key", action="store_true",
                        help="encrypt unix/device.key (PKCS#8, AES-256-CBC, PBKDF2) with the device's PFX password (PKI_PASSWORD or passwords.csv); "
                             "always on with --platform all")
    parser.add_argument("--legacy", action="store_true",
                        help=f"3DES + SHA-1 MAC PFX for {build.PFX_LEGACY_FOR}: they cannot import the default AES-256/SHA-256 PFX "
                             f"(supported from {build.PFX_MODERN_FROM})")
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


_PREINSTALLED_HINT = "--server-trust preinstalled when the devices already trust the beacons' CA (a public CA, or an enterprise root pushed by Group Policy): the kit then installs no root"


def _unconstrained_problem(root: x509.Certificate, hosts: list[str]) -> str | None:
    """Why this root must not go into the devices' LocalMachine\\Root: no permitted dNSName
    constraints (it could vouch for any name), or subtrees that leave a beacon out."""
    constraints = kit.dns_constraints(root)
    if constraints is None:
        return "has no permitted dNSName name constraints, so in LocalMachine\\Root it could vouch for any name on every device"
    permitted, excluded = constraints
    outside = [h for h in hosts if not any(kit.dns_subtree_covers(b, h) for b in permitted) or any(kit.dns_subtree_covers(b, h) for b in excluded)]
    if outside:
        return f"is constrained to {', '.join(permitted)}, which does not cover the beacon(s) {', '.join(outside)}"
    return None


def _server_trust(args: argparse.Namespace, pki: Pki, hosts: list[str], chain: list[x509.Certificate]) -> tuple[list[x509.Certificate], str]:
    """The CA certificates a kit installs so that the agents trust the beacons' server
    certificate. A root among them goes into LocalMachine\\Root, which makes it vouch for every
    TLS server the device talks to: only a root whose permitted dNSName subtrees cover every
    beacon host (and nothing wider than the beacons' domains) is accepted; none at all with
    --server-trust preinstalled. ``chain`` (the device CA's) is never part of it."""
    if getattr(args, "server_trust", "kit") == "preinstalled":
        if args.server_ca:
            raise PkiError("--server-ca and --server-trust preinstalled exclude each other: preinstalled means the kit installs no root")
        return [], "preinstalled on the devices (the kit installs no root)"
    if args.server_ca:
        certs: list[x509.Certificate] = []
        for item in args.server_ca:
            try:
                certs += cert_facts.read_certificates(item)
            except OSError as exc:
                raise PkiError(f"--server-ca {item}: unreadable ({exc.strerror})") from None
            except ValueError as exc:
                raise PkiError(f"--server-ca {item}: {exc}") from None
        roots = [c for c in certs if cert_facts.is_self_signed(c)]
        if not roots:
            raise PkiError("--server-ca: no self-signed root CA among the certificates (the agents trust a root)")
        for root in roots:
            problem = _unconstrained_problem(root, hosts)
            if problem:
                raise PkiError(f"--server-ca: root {root.subject.rfc4514_string()!r} {problem}; give a name-constrained root "
                               f"(init-server-ca makes one), or {_PREINSTALLED_HINT}")
        return certs, "--server-ca (name-constrained)"
    servers = {n: i for n, i in pki.certificates.items() if i.get("kind") == "server" and i.get("status") == "valid"}

    def covering(host: str, by_server_ca: bool) -> list[str]:
        return [n for n, i in servers.items() if (i.get("ca") == SERVER_CA) == by_server_ca and any(_san_covers(d, host) for d in (i.get("san") or {}).get("dns", []))]

    missing = [h for h in hosts if not covering(h, True) and not covering(h, False)]
    if missing:
        raise PkiError(f"which CA issued the beacons' server certificate? this PKI issued none for {', '.join(missing)}: give --server-ca FILE "
                       f"(its name-constrained root CA), so the agents can trust the beacon, or {_PREINSTALLED_HINT}")
    by_device_ca = [(h, covering(h, False)[0]) for h in hosts if not covering(h, True)]
    if by_device_ca:
        host, name = by_device_ca[0]
        raise PkiError(f"the server certificate {name!r} of {host} was signed by the device CA, which has no name constraints: a kit must not put it "
                       f"into the devices' LocalMachine\\Root. Run init-server-ca --server-domain DOMAIN, issue-server again and rotate the beacons' "
                       f"certificate (ops rotate-server-cert); or {_PREINSTALLED_HINT}")
    server_ca = pki.load_cert(pki.server_ca_pem)
    problem = _unconstrained_problem(server_ca, hosts)
    if problem:  # issue-server keeps certificates inside the domains; a hand-made file may not
        raise PkiError(f"{pki.server_ca_pem}: the server CA {problem}")
    return [server_ca], f"this PKI's server CA (name-constrained to {', '.join(kit.dns_constraints(server_ca)[0])})"  # type: ignore[index]


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


def kit_ca_files(device_chain: list[x509.Certificate], server_certs: list[x509.Certificate]) -> list[tuple[str, str, x509.Certificate]]:
    """The CA files of a Windows kit: (file, store, certificate) for the device certificate's chain
    and the beacons' server trust, each once. verify-bundle expects exactly these."""
    wanted: list[x509.Certificate] = []
    for cert in device_chain + server_certs:
        if cert not in wanted:
            wanted.append(cert)
    return kit.ca_files(wanted)


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
    platform: str
    encrypt_key: bool
    signer: kit_signing.Signer

    @property
    def needs_password(self) -> bool:
        """A PFX, or an encrypted UNIX key: both take the device's password."""
        return "windows" in kit.PLATFORM_DIRS[self.platform] or self.encrypt_key

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
        password = None
        if self.needs_password:
            password = self.shared_password if self.shared_password is not None else self.passwords[name].encode("utf-8")
        host = kit.bootstrap_host(name, self.target.hosts)
        files: dict[str, tuple[bytes, int]] = {}
        if "windows" in kit.PLATFORM_DIRS[self.platform]:
            assert password is not None
            listed = {"device.pfx": build.pkcs12_bytes(name, key, cert, [], password, self.legacy), "mgssetup.ini": kit.mgssetup_ini(host)}
            for file, _, ca in self.windows_cas:
                listed[file] = kit.der(ca)
            where = f"{self.pki.index_path}: certificates.{name}"
            install = kit.install_json(name, self.target.stack, cert, self.windows_cas, self.target.hosts,
                                       kit.supersedes(self.pki.certificates[name], where), listed)
            for file, data in listed.items():
                files[f"windows/{file}"] = (data, PRIVATE_FILE if file == "device.pfx" else PUBLIC_FILE)
            files[f"windows/{kit.INSTALL_PS1}"] = (kit.template_bytes(), PUBLIC_FILE)
            files[f"windows/{kit.INSTALL_JSON}"] = (install, PUBLIC_FILE)
            files[f"windows/{kit.INSTALL_SIG}"] = (self.signer.sign(install), PUBLIC_FILE)
            files[f"windows/{kit.SIGNER_CER}"] = (self.signer_der, PUBLIC_FILE)
        if "unix" in kit.PLATFORM_DIRS[self.platform]:
            files.update({
                "unix/device.pem": (kit.pem(cert) + self.intermediates_pem, PUBLIC_FILE),
                "unix/device.key": (key_pem(key) if not self.encrypt_key else _encrypted_key_pem(key, password), PRIVATE_FILE),
                f"unix/{kit.ROLLOUT_NAME}": (kit.rollout_response(host), PUBLIC_FILE),
                "unix/UNIXConfig.ini": (kit.unix_config_ini(), PUBLIC_FILE),
                "unix/INSTALL.txt": (kit.unix_install_text(name, self.target.stack, self.unix_cert, self.unix_key, self.encrypt_key,
                                                           server_ca=bool(self.unix_ca)), PUBLIC_FILE),
            })
            if self.unix_ca:  # preinstalled server trust: no cert.pem, which would replace the agent's CA file with nothing
                files["unix/cert.pem"] = (self.unix_ca, PUBLIC_FILE)
        entries = {**self.settings, "device": name, "serial": cert_facts.serial_hex(cert.serial_number), "thumbprint": cert_facts.thumbprint(cert),
                   "notAfter": cert_facts.iso(cert.not_valid_after_utc), "subject": cert.subject.rfc4514_string(), "bootstrapBeacon": host}
        manifest = kit.manifest(entries, {k: v[0] for k, v in files.items()})
        files[kit.MANIFEST] = (manifest, PUBLIC_FILE)
        files[kit.MANIFEST_SIG] = (self.signer.sign(manifest), PUBLIC_FILE)
        return files

    @cached_property
    def signer_der(self) -> bytes:
        return kit.der(self.signer.cert)

    def write(self, name: str) -> None:
        """Build the kit in root/.tmp-XXXX and rename it to root/<name> (replacing a stale one)."""
        final = kit.bundle_dir(self.root, name)
        files = self.files(name)
        last = (kit.MANIFEST, kit.MANIFEST_SIG)  # written last: a rerun takes a kit with them as whole
        ordered = sorted(files.items(), key=lambda item: last.index(item[0]) + 1 if item[0] in last else 0)
        bundle_dirs.place_kit(self.root, final, kit.PLATFORM_DIRS[self.platform], [(path, data, mode) for path, (data, mode) in ordered])


def _encrypted_key_pem(key: Any, password: bytes | None) -> bytes:
    """unix/device.key encrypted: PKCS#8 "ENCRYPTED PRIVATE KEY", PBES2 AES-256-CBC with
    PBKDF2-HMAC-SHA256 (build.PKCS8_KEY_ROUNDS iterations, cryptography's fixed choice)."""
    assert password is not None
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password))


def _sort_out(plan: Plan, names: list[str], force: bool) -> tuple[list[str], int, int]:
    """(names to write, complete kits skipped, kits replaced because the name has a new
    certificate, e.g. after `renew`); kits made with other settings are an error without --force.
    Kits of an older format (no manifest of this KIT_VERSION) are rebuilt."""
    todo: list[str] = []
    stale: list[tuple[str, list[str]]] = []
    skipped = renewed = 0
    serials = {n: plan.pki.certificates[n]["serial"] for n in names}
    for name in names:
        folder = kit.bundle_dir(plan.root, name)
        if not os.path.lexists(folder):
            todo.append(name)
            continue
        found = kit.read_manifest(folder) if folder.is_dir() and not folder.is_symlink() else None
        settled = found is not None and all(found.get(k) == v for k, v in plan.settings.items())
        same = settled and found is not None and found.get("serial") == serials[name]
        if same and found is not None and kit.files_intact(folder, found) and (not plan.needs_password or plan.shared_password is not None or name in plan.passwords):
            skipped += 1
        elif same or force or found is None:
            todo.append(name)  # damaged (e.g. a crash before the final sync) or asked for: rebuilt
        elif settled:
            todo.append(name)  # the same settings for a new certificate of the name: the old kit is superseded
            renewed += 1
        else:
            differ = [k for k, v in plan.settings.items() if found.get(k) != v]
            stale.append((name, differ))
    if stale:
        name, differ = stale[0]
        raise PkiError(f"{len(stale)} kit(s) exist with other settings (e.g. {plan.root / name}: {', '.join(differ)} differ); run with --force to rebuild them")
    return todo, skipped, renewed


def cmd_bundle(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    target = beacons.resolve(args)
    names = _select(args, pki)
    for name in names:  # a hand-edited "previous" stops the run here, before any kit is written
        kit.supersedes(pki.certificates[name], f"{pki.index_path}: certificates.{name}")
    unix_cert = kit.check_unix_path(args.unix_client_cert, "--unix-client-cert")
    unix_key = kit.check_unix_path(args.unix_client_key, "--unix-client-key")
    if args.encrypt_key and args.platform == "windows":
        raise PkiError("--encrypt-key: a Windows kit has no key file to encrypt (its key is in the PFX); use it with --platform unix (--platform all always encrypts)")
    encrypt_key = bool(args.encrypt_key) or args.platform == "all"  # no kit holds an unencrypted key next to a PFX
    needs_password = args.platform != "unix" or encrypt_key
    chain = pki.chain()
    _check_stack_trusts(target, chain)
    server_certs, server_source = _server_trust(args, pki, target.hosts, chain)
    shared: bytes | None = None
    if needs_password and PASSWORD_ENV in os.environ and not args.random_passwords:
        shared = os.environ[PASSWORD_ENV].encode("utf-8")
        if not shared:
            raise PkiError(f"{PASSWORD_ENV} is set but empty; refusing an empty PFX password (unset it for random per-device passwords)")
        if is_blank(os.environ[PASSWORD_ENV]):
            raise PkiError(f"{PASSWORD_ENV}: only whitespace ({len(os.environ[PASSWORD_ENV])} characters); expected a password: it protects every kit's key (unset it for random per-device passwords)")
        if len(os.environ[PASSWORD_ENV]) < MIN_SHARED_PASSWORD and not args.allow_short_password:
            raise PkiError(f"{PASSWORD_ENV}: {len(os.environ[PASSWORD_ENV])} characters; expected at least {MIN_SHARED_PASSWORD} (it protects every kit's key against offline guessing; unset it for random per-device passwords, or pass --allow-short-password)")
    signer, created = kit_signing.load_or_create(pki, now_utc())
    if created:
        cert_path, key_path = kit_signing.signer_paths(pki)
        note(f"note: made the kit signer of this PKI: {cert_path} (key {key_path}, 0600), thumbprint {signer.thumbprint}")
    root = bundle_dirs.bundles_root(Path(args.out) if args.out else pki.root)
    passwords_path = root.parent / "passwords.csv"
    settings = {
        "kitVersion": kit.KIT_VERSION, "platform": args.platform, "signer": signer.thumbprint, "stack": target.stack, "beacons": target.hosts,
        "legacy": bool(args.legacy), "encryptKey": encrypt_key,
        "password": None if not needs_password else PASSWORD_ENV if shared is not None else "passwords.csv",
        "serverTrust": [cert_facts.thumbprint(c) for c in server_certs],
        "unixClientCertificatePath": unix_cert, "unixClientKeyPath": unix_key,
    }
    unix_ca = b"".join(kit.pem(c) for c in server_certs if cert_facts.is_self_signed(c))
    with bundle_dirs.locked(root):
        bundle_dirs.remove_leftovers(root)  # what an interrupted run left
        passwords = kit.read_passwords(passwords_path) if needs_password and shared is None else {}
        plan = Plan(pki, root, target, chain, kit_ca_files(chain, server_certs), unix_ca, settings, passwords, shared, bool(args.legacy),
                    unix_cert, unix_key, args.platform, encrypt_key, signer)
        todo, skipped, renewed = _sort_out(plan, names, args.force)
        if todo and needs_password and shared is None:
            for name in todo:  # recorded (durably) before any kit that uses them exists
                plan.passwords[name] = kit.new_password()
            atomic_write(passwords_path, kit.passwords_csv(plan.passwords), PRIVATE_FILE)
        done = _run(plan, todo, args.jobs)
    if renewed:
        note(f"note: {renewed} kit(s) replaced: their device has a new certificate (serial) since the kit was made")
    _report(args, plan, todo, done, skipped, passwords_path, server_source)
    return 0


def _run(plan: Plan, todo: list[str], jobs: int | None) -> int:
    done = 0

    def work(span: Any) -> int:
        written = 0
        for name in todo[span.start:span.stop]:
            if parallel.stop_requested():  # SIGINT/SIGTERM: the kit in hand was finished, no other starts
                break
            plan.write(name)
            written += 1
        return written

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
    parts = [f"platform {plan.platform}"]
    if "windows" in kit.PLATFORM_DIRS[plan.platform]:
        parts.append(f"PFX {build.pfx_scheme(bool(args.legacy))}")
    if "unix" in kit.PLATFORM_DIRS[plan.platform]:
        parts.append("unix/device.key encrypted (see unix/INSTALL.txt)" if plan.encrypt_key else "unix/device.key unencrypted (0600)")
    if plan.needs_password:
        parts.append(f"password from {PASSWORD_ENV}" if plan.shared_password is not None else f"one random password per device in {passwords_path} (0600; keep it apart from the kits)")
    out(f"{done} kit(s) written, {skipped} complete kit(s) skipped, in {plan.root}/ ({'; '.join(parts)})")
    out(f"signer thumbprint: {plan.signer.thumbprint} (deploy install.ps1 with -SignerThumbprint {plan.signer.thumbprint})")
    out(f"beacons: {', '.join(plan.target.hosts)} (from {', '.join(plan.target.sources)}); server CA for the agents: {server_source}")
    if "unix" in kit.PLATFORM_DIRS[plan.platform] and not (plan.unix_cert and plan.unix_key):
        note("note: UNIX: Flexera's documentation does not say where the UNIX agent reads its client certificate and key, so "
             "unix/device.pem and unix/device.key are not placed by this kit; give --unix-client-cert PATH --unix-client-key PATH "
             "(the paths your agent version reads, from Flexera) to have them named in unix/INSTALL.txt")
    stack = f"--stack {plan.target.stack}" if plan.target.stack else "--stack NAME"
    out(f"next: python -m scripts.pki --dir {plan.pki.root} verify-bundle {plan.root} {stack} --signer {plan.signer.thumbprint}; then install (docs/onboarding.md)")
