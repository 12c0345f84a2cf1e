"""`verify-bundle DIR... --stack NAME [--signer THUMBPRINT]`: offline proof that device kits
(bundle.py, kit format 2) are unaltered and work against a stack, before they are sent out.
For each kit:

- integrity (kit_integrity.py): only regular files of bounded size are read; manifest.sig and
  windows/install.json.sig verify with the expected kit signer (--signer, default the PKI's
  kit-signer.pem); every file is listed with its SHA-256, none missing, none extra; install.json
  lists every file install.ps1 reads; install.ps1 is the static template; keys are 0600;
- the PFX opens with its password (PKI_PASSWORD, or the kit's row of passwords.csv) and holds
  the same certificate and key as unix/device.pem and unix/device.key (an encrypted key opens
  with the same password);
- the certificate has Client Authentication, is valid now and for at least --min-days, and the
  IIS verdict of `pki check` (components/certs/verdict.py with the stack's clientCaCertificates,
  mapping rules and the current CRL) is accept: trusted chain, not revoked, a mapping matches;
- the CA files are exactly the expected set: the chain of the device certificate the stack
  trusts and the beacons' server trust (bundle._server_trust: this PKI's, or --server-ca),
  no more, no less; install.json's supersedes are the earlier certificates of the name in the
  PKI's index;
- the agent files name the stack's beacons: mgsft_rollout_response (LF only, exactly the
  expected settings), mgssetup.ini, install.json.

Exit 0 when every kit passes, 1 when one fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from components.certs import facts as cert_facts
from components.certs import verdict as cert_verdict
from components.iis import mapping_rules

from . import beacons, bundle, kit_integrity, kit_signing, live_check, parallel
from . import bundle_files as kit
from .inputs import PASSWORD_ENV, non_negative_int, parse_at
from .progress import Progress, out
from .store import Pki, PkiError

PRIVATE_FILES = ("windows/device.pfx", "unix/device.key")
VERIFY_PARALLEL_FROM, VERIFY_CHUNK = 8, 4
_THUMBPRINT_TEXT = re.compile(r"[0-9A-Fa-f]{2}(?:[ :]?[0-9A-Fa-f]{2}){19}")
ENCRYPTED_KEY = (b"-----BEGIN ENCRYPTED " + b"PRIVATE KEY-----")


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="a kit (bundles/NAME) or a bundles directory (every kit in it)")
    beacons.add_target_arguments(parser)
    parser.add_argument("--signer", metavar="THUMBPRINT", help="SHA-1 thumbprint of the kit signer the kits must be signed by (default: the PKI's kit-signer.pem)")
    parser.add_argument("--server-ca", action="append", default=[], metavar="FILE", help="root CA (PEM/DER) of the beacons' server certificate, as given to bundle, when this PKI did not issue it")
    parser.add_argument("--server-trust", choices=("kit", "preinstalled"), default="kit", help="as given to bundle: preinstalled = the kits carry no server root")
    parser.add_argument("--crl", action="extend", nargs="+", default=[], metavar="FILE", help="the CRL(s) the beacons fetch (default: the PKI dir's crl.pem and root-crl.pem)")
    parser.add_argument("--passwords", metavar="FILE", help="passwords.csv of the kits (default: next to their bundles directory)")
    parser.add_argument("--min-days", type=non_negative_int, default=30, metavar="DAYS", help="the certificate must stay valid this long (default 30)")
    parser.add_argument("--at", metavar="ISO8601", help="verify at this time (default now)")
    parser.add_argument("--json", action="store_true")
    live_check.add_live_arguments(parser)  # --live, --connect, --live-deadline


def _kits(dirs: list[str]) -> list[Path]:
    found: list[Path] = []
    for text in dirs:
        folder = Path(text)
        if os.path.lexists(folder / kit.MANIFEST):  # whatever it is: kit_integrity refuses what is not a regular file
            found.append(folder)
        elif folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
                            and os.path.lexists(p / kit.MANIFEST))
        else:
            raise PkiError(f"{folder}: no such kit or bundles directory")
    if not found:
        raise PkiError(f"no kit (a directory with manifest.json) in {', '.join(dirs)}")
    return found


def expected_signer(text: str | None, pki: Pki) -> tuple[str, x509.Certificate | None]:
    """(thumbprint, certificate when the PKI holds it) of the signer the kits must carry."""
    own = kit_signing.load_signer_cert(pki)
    if text is None:
        if own is None:
            raise PkiError(f"no kit signer to verify against: give --signer THUMBPRINT (bundle printed it) or --dir of the PKI "
                           f"that made the kits (no {kit_signing.signer_paths(pki)[0]})")
        return cert_facts.thumbprint(own), own
    if not _THUMBPRINT_TEXT.fullmatch(text.strip()):
        raise PkiError(f"--signer: got {text!r}; expected the 40 hexadecimal digits of the kit signer's SHA-1 thumbprint (bundle prints it)")
    thumbprint = re.sub(r"[ :]", "", text.strip()).upper()
    return thumbprint, own if own is not None and cert_facts.thumbprint(own) == thumbprint else None


class Verifier:
    def __init__(self, args: argparse.Namespace, pki: Pki):
        self.target = beacons.resolve(args, need_stack=True)
        assert self.target.trust is not None
        self.at = parse_at(args.at)
        self.min_days = args.min_days
        self.trusted: list[x509.Certificate] = []
        for path in self.target.trust.ca_files:
            try:
                self.trusted += cert_facts.read_certificates(path)
            except (OSError, ValueError) as exc:
                raise PkiError(f"{self.target.stack_file}: clientCaCertificates {path}: unreadable ({exc})") from None
        issuing = cert_facts.issuing_cas([c for c in self.trusted if cert_facts.is_ca(c)])
        self.mappings = mapping_rules.allow_mappings(issuing, self.target.trust.extra_rules, self.target.trust.include_organization)
        self.denials = mapping_rules.deny_mappings(issuing, self.target.trust.deny_rules, self.target.trust.include_organization)
        paths = [Path(p) for p in args.crl] or [p for p in (pki.crl_pem, pki.root_crl_pem) if p.is_file()]
        if not paths:
            raise PkiError(f"no CRL to check revocation with: give --crl FILE (what the beacons fetch from the CDP) or --dir PKI (no {pki.crl_pem})")
        self.crls: list[x509.CertificateRevocationList] = []
        for path in paths:
            try:
                self.crls += cert_facts.read_crls(path)
            except (OSError, ValueError) as exc:
                raise PkiError(f"--crl {path}: unreadable ({exc})") from None
        self.passwords_file = Path(args.passwords) if args.passwords else None
        self.signer_thumbprint, self.signer_cert = expected_signer(args.signer, pki)
        if not args.server_ca and not pki.has_ca():
            raise PkiError("which CA issued the beacons' server certificate? give --server-ca FILE (as given to bundle) or --dir of the PKI "
                           "that issued it: the kit must carry exactly that trust")
        self.server_certs, _ = bundle._server_trust(args, pki, self.target.hosts, pki.chain() if pki.has_ca() else [])
        # Read once here, shared by the worker processes: the earlier certificates of each name.
        self.index = pki.certificates if pki.has_ca() else {}
        self.index_path = pki.index_path

    def password(self, folder: Path, manifest: dict[str, Any]) -> bytes:
        if manifest.get("password") == PASSWORD_ENV:
            if not os.environ.get(PASSWORD_ENV):
                raise PkiError(f"the kits were made with {PASSWORD_ENV}: set it to verify them")
            return os.environ[PASSWORD_ENV].encode("utf-8")
        path = self.passwords_file or folder.resolve().parent.parent / "passwords.csv"
        rows = kit.read_passwords(path)
        if folder.name not in rows:
            raise ValueError(f"no password for {folder.name} in {path}")
        return rows[folder.name].encode("utf-8")

    def verify(self, folder: Path) -> tuple[dict[str, Any], list[str]]:
        files = kit_integrity.read_kit(folder)
        checked = kit_integrity.check_kit(files, self.signer_thumbprint, self.signer_cert)
        manifest, problems = checked.manifest, checked.problems
        if manifest and manifest.get("device") != folder.name:
            problems.append(f"manifest.json is for device {manifest.get('device')!r}, the directory is {folder.name!r}")
        for relative in PRIVATE_FILES:
            if files.modes.get(relative, 0) & 0o077:
                problems.append(f"{relative} is readable by others (mode {files.modes[relative]:o}; expected 600)")
        if problems:
            return manifest, problems  # nothing of an unverified kit is believed
        data, install = files.data, checked.install
        folders = kit.PLATFORM_DIRS[manifest["platform"]]
        password = self.password(folder, manifest) if manifest.get("password") is not None else None
        cert = key = None
        if "windows" in folders:
            try:
                key, cert, _ = pkcs12.load_key_and_certificates(data["windows/device.pfx"], password)
            except ValueError as exc:
                return manifest, [f"windows/device.pfx does not open with its password ({exc})"]
            if key is None or cert is None:
                return manifest, ["windows/device.pfx holds no certificate and key"]
        sent: list[x509.Certificate] = []
        if "unix" in folders:
            unix = x509.load_pem_x509_certificates(data["unix/device.pem"])
            raw_key = data["unix/device.key"]
            encrypted = raw_key.startswith(ENCRYPTED_KEY)
            if encrypted != bool(manifest.get("encryptKey")):
                problems.append(f"unix/device.key is {'' if encrypted else 'not '}encrypted; manifest.json says encryptKey {manifest.get('encryptKey')}")
            if not encrypted and "windows" in folders:
                problems.append("unix/device.key is unencrypted next to windows/device.pfx (a kit for both platforms encrypts it)")
            try:
                unix_key = serialization.load_pem_private_key(raw_key, password if encrypted else None)
            except (ValueError, TypeError) as exc:
                return manifest, problems + [f"unix/device.key does not open{' with its password' if encrypted else ''} ({exc})"]
            if cert is None:
                cert, key = unix[0], unix_key
            elif unix[0] != cert:
                problems.append("unix/device.pem is not the certificate of windows/device.pfx")
            spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            for what, other in (("windows/device.pfx", key), ("unix/device.key", unix_key)):
                if other is not None and other.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != spki:
                    problems.append(f"the key in {what} is not the certificate's key")
            sent = unix[1:]
        assert cert is not None
        problems += self._certificate(data, manifest, install, cert, sent)
        problems += self._agent_files(data, manifest, install)
        return manifest, problems

    def _certificate(self, data: dict[str, bytes], manifest: dict[str, Any], install: dict[str, Any] | None,
                     cert: x509.Certificate, sent: list[x509.Certificate]) -> list[str]:
        problems: list[str] = []
        if "clientAuth" not in (cert_facts.eku_names(cert) or []):
            problems.append("the certificate has no Client Authentication EKU")
        left = cert.not_valid_after_utc - self.at
        if left < dt.timedelta(days=self.min_days):
            problems.append(f"the certificate ends {cert_facts.iso(cert.not_valid_after_utc)}: less than --min-days {self.min_days} days from {cert_facts.iso(self.at)}")
        verdict = cert_verdict.iis_verdict(cert, self.trusted, self.crls, self.at, self.mappings, intermediates=sent, denials=self.denials)
        if not verdict.accepted:
            problems.append(f"the beacons would answer {verdict.status} {verdict.reason}: {verdict.detail}")
        device_chain = list(verdict.path[1:])  # what the stack trusts of the device certificate's chain, up to its root
        if install is not None:
            pfx = install.get("pfx") or {}
            if pfx.get("thumbprint") != cert_facts.thumbprint(cert):
                problems.append("windows/install.json names another device certificate thumbprint")
            elif (pfx.get("subject"), pfx.get("issuer"), pfx.get("notAfter")) != (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), cert_facts.iso(cert.not_valid_after_utc)):
                problems.append("windows/install.json: pfx subject, issuer or notAfter is not the device certificate's")
            if device_chain:
                problems += self._windows_cas(data, install, device_chain)
            problems += self._supersedes(manifest, install)
        if "unix/device.pem" in data and device_chain:
            wanted = [cert_facts.thumbprint(c) for c in device_chain if not cert_facts.is_self_signed(c)]
            if [cert_facts.thumbprint(c) for c in sent] != wanted:
                problems.append("unix/device.pem: the certificates after the device's are not the intermediates of the chain the stack trusts")
        return problems

    def _windows_cas(self, data: dict[str, bytes], install: dict[str, Any], device_chain: list[x509.Certificate]) -> list[str]:
        """Exactly the CA files the kit should carry: no extra root, none missing."""
        problems: list[str] = []
        expected = {(cert_facts.thumbprint(c), store): c for _, store, c in bundle.kit_ca_files(device_chain, self.server_certs)}
        found: set[tuple[str, str]] = set()
        for entry in install.get("caCertificates", []):
            name = str(entry.get("file"))
            try:
                ca = x509.load_der_x509_certificate(data[f"windows/{name}"])
            except (KeyError, ValueError):
                problems.append(f"windows/{name} is not a DER certificate of the kit")
                continue
            thumbprint, store = cert_facts.thumbprint(ca), str(entry.get("store"))
            if thumbprint != entry.get("thumbprint") or store not in ("Root", "CA") or (store == "Root" and not cert_facts.is_self_signed(ca)):
                problems.append(f"windows/install.json: {name} has another thumbprint or store than the certificate in it")
            if (thumbprint, store) not in expected:
                kind = "root" if store == "Root" else "CA certificate"
                problems.append(f"windows/{name}: an extra {kind} {ca.subject.rfc4514_string()!r} ({thumbprint}): neither in the device "
                                "certificate's chain the stack trusts nor the beacons' server trust")
            found.add((thumbprint, store))
        for (thumbprint, store), ca in expected.items():
            if (thumbprint, store) not in found:
                problems.append(f"windows/install.json: the CA file of {ca.subject.rfc4514_string()!r} ({thumbprint}, LocalMachine\\{store}) is missing")
        return problems

    def _supersedes(self, manifest: dict[str, Any], install: dict[str, Any]) -> list[str]:
        item = self.index.get(str(manifest.get("device")))
        if not isinstance(item, dict) or str(item.get("serial", "")).lower() != str(manifest.get("serial")):
            return []  # not this PKI's current certificate of the name (checked elsewhere): nothing to compare with
        try:
            wanted = kit.supersedes(item, f"{self.index_path}: certificates.{manifest.get('device')}")
        except PkiError as exc:
            return [str(exc)]
        if install.get("supersedes") != wanted:
            return [f"windows/install.json: supersedes {install.get('supersedes')}; expected {wanted} (the earlier certificates of this name in the PKI's index)"]
        return []

    def _agent_files(self, data: dict[str, bytes], manifest: dict[str, Any], install: dict[str, Any] | None) -> list[str]:
        problems: list[str] = []
        hosts = self.target.hosts
        urls_of_stack = [beacons.download_url(h) for h in hosts]
        if manifest.get("stack") not in (None, self.target.stack):
            problems.append(f"the kit was made for stack {manifest.get('stack')}, not {self.target.stack}")
        if install is not None:
            lines = data["windows/mgssetup.ini"].decode("ascii", "replace").split("\r\n")
            deploy = [line.split("=", 1)[1] for line in lines if line.startswith("DEPLOYSERVERURL=")]
            if f"{kit.PREFERENCE}=True" not in lines or "[Common]" not in lines:
                problems.append(f"windows/mgssetup.ini does not set {kit.PREFERENCE}=True in [Common]")
            if len(deploy) != 1 or deploy[0] not in urls_of_stack:
                problems.append(f"windows/mgssetup.ini DEPLOYSERVERURL is not a beacon of the stack ({', '.join(hosts)})")
            urls = install.get("beaconUrls") or []
            if not urls or any(u not in urls_of_stack for u in urls):
                problems.append("windows/install.json beaconUrls are not the stack's beacons")
        if f"unix/{kit.ROLLOUT_NAME}" in data:
            problems += self._unix_files(data, hosts)
        return problems

    def _unix_files(self, data: dict[str, bytes], hosts: list[str]) -> list[str]:
        problems: list[str] = []
        raw = data[f"unix/{kit.ROLLOUT_NAME}"]
        if b"\r" in raw:
            problems.append(f"unix/{kit.ROLLOUT_NAME} has CR characters (UNIX line endings only)")
        settings: dict[str, str] = {}
        for line in raw.decode("ascii", "replace").split("\n"):
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                settings[key] = value
        host = (settings.get("MGSFT_BOOTSTRAP_DOWNLOAD") or "").removeprefix("https://").removesuffix(beacons.DOWNLOAD_PATH)
        expected = {"MGSFT_BOOTSTRAP_DOWNLOAD": beacons.download_url(host), "MGSFT_BOOTSTRAP_UPLOAD": beacons.upload_url(host), **dict(kit.ROLLOUT_SETTINGS)}
        if settings != expected:
            problems.append(f"unix/{kit.ROLLOUT_NAME} has other settings than the expected {', '.join(expected)}")
        if host not in hosts:
            problems.append(f"unix/{kit.ROLLOUT_NAME} names {host!r}, not a beacon of the stack ({', '.join(hosts)})")
        wanted = {cert_facts.thumbprint(c): c for c in self.server_certs if cert_facts.is_self_signed(c)}
        if "unix/cert.pem" not in data:
            if wanted:
                problems.append("unix/cert.pem is missing: the kit should carry the root of the beacons' server certificate")
            return problems
        if not wanted:
            problems.append("unix/cert.pem is in a kit whose server trust is preinstalled: it would replace the agent's CA file")
        cas = x509.load_pem_x509_certificates(data["unix/cert.pem"]) if data["unix/cert.pem"].strip() else []
        if not all(cert_facts.is_self_signed(c) for c in cas):
            problems.append("unix/cert.pem holds certificates that are not root CAs (SSLCACertificateFile takes roots)")
        found = {cert_facts.thumbprint(c) for c in cas}
        for thumbprint in sorted(found - set(wanted)):
            problems.append(f"unix/cert.pem: an extra root {thumbprint}: not the beacons' server trust")
        for thumbprint in sorted(set(wanted) - found):
            problems.append(f"unix/cert.pem lacks the root {wanted[thumbprint].subject.rfc4514_string()!r} of the beacons' server certificate")
        return problems


def _result(verifier: Verifier, folder: Path) -> dict[str, Any]:
    try:
        manifest, problems = verifier.verify(folder)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # a damaged or tampered kit: a failure, not a crash
        manifest, problems = {}, [f"unreadable kit ({type(exc).__name__}: {exc})"]
    return {"kit": folder.as_posix(), "device": manifest.get("device", folder.name), "ok": not problems, "problems": problems,
            "platform": manifest.get("platform"), "serial": manifest.get("serial"), "notAfter": manifest.get("notAfter"),
            "bootstrapBeacon": manifest.get("bootstrapBeacon")}


def cmd_verify_bundle(args: argparse.Namespace, pki: Pki) -> int:
    live_check.check_live_arguments(args)  # bad input before any work
    verifier = Verifier(args, pki)
    kits = _kits(args.dirs)
    results: list[dict[str, Any]] = []

    def work(span: Any) -> list[dict[str, Any]]:  # opening each PFX runs PBKDF2: worker processes share it
        return [_result(verifier, folder) for folder in kits[span.start:span.stop]]

    with parallel.Workers(work, parallel.choose_jobs(None, len(kits), VERIFY_PARALLEL_FROM)) as workers, Progress("verified", len(kits)) as progress:

        def finished(chunk: list[dict[str, Any]]) -> None:
            results.extend(chunk)
            progress.advance(len(chunk))

        workers.run(parallel.spans(len(kits), VERIFY_CHUNK), finished)
    failed = [r for r in results if not r["ok"]]
    live = live_check.run(args, results, lambda folder: verifier.password(folder, kit.read_manifest(folder) or {}))  # None without --live
    if args.json:
        out(json.dumps({"stack": verifier.target.stack, "beacons": verifier.target.hosts, "signer": verifier.signer_thumbprint,
                        "at": cert_facts.iso(verifier.at), "kits": results, **({"live": live} if live is not None else {})}, indent=2, ensure_ascii=False))
    else:
        for r in results:
            if r["ok"]:
                out(f"ok    {r['device']}  ({r['platform']}, serial {r['serial']}, until {r['notAfter']}, bootstrap {r['bootstrapBeacon']})")
            else:
                out(f"FAIL  {r['device']}: " + "; ".join(r["problems"]))
        out(f"{len(results)} kit(s) checked against stack {verifier.target.stack} ({', '.join(verifier.target.hosts)}) and kit signer "
            f"{verifier.signer_thumbprint}: {len(results) - len(failed)} ok, {len(failed)} failed")
        for line in live_check.report_lines(live, results):
            out(line)
    return 1 if failed or not live_check.all_admitted(live) else 0
