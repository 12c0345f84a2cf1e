"""`verify-bundle DIR... --stack NAME`: offline proof that device kits (bundle.py) work against a
stack, before they are sent out. For each kit:

- integrity: manifest.json lists every file with its SHA-256 and nothing else is there; the
  keys are 0600; install.ps1 is the static template, byte for byte;
- the PFX opens with its password (PKI_PASSWORD, or the kit's row of passwords.csv) and holds
  the same certificate and key as unix/device.pem and unix/device.key;
- the certificate has Client Authentication, is valid now and for at least --min-days, and the
  IIS verdict of `pki check` (components/certs/verdict.py with the stack's clientCaCertificates,
  mapping rules and the current CRL) is accept: trusted chain, not revoked, a mapping matches;
  the kit's CA files hold the root the beacons trust and install.json names their thumbprints;
- the agent files name the stack's beacons: mgsft_rollout_response (LF only, exactly the
  expected settings), mgssetup.ini, install.json; unix/cert.pem holds root CAs only, and the root
  of the beacons' server certificate when this PKI issued it.

Exit 0 when every kit passes, 1 when one fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from components.certs import facts as cert_facts

from components.certs import verdict as cert_verdict

from components.iis import mapping_rules

from . import beacons, parallel
from . import bundle_files as kit
from .inputs import PASSWORD_ENV, non_negative_int, parse_at
from .progress import Progress, out
from .store import Pki, PkiError

PRIVATE_FILES = ("windows/device.pfx", "unix/device.key")
VERIFY_PARALLEL_FROM, VERIFY_CHUNK = 8, 4


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="a kit (bundles/NAME) or a bundles directory (every kit in it)")
    beacons.add_target_arguments(parser)
    parser.add_argument("--crl", action="extend", nargs="+", default=[], metavar="FILE", help="the CRL(s) the beacons fetch (default: the PKI dir's crl.pem and root-crl.pem)")
    parser.add_argument("--passwords", metavar="FILE", help="passwords.csv of the kits (default: next to their bundles directory)")
    parser.add_argument("--min-days", type=non_negative_int, default=30, metavar="DAYS", help="the certificate must stay valid this long (default 30)")
    parser.add_argument("--at", metavar="ISO8601", help="verify at this time (default now)")
    parser.add_argument("--json", action="store_true")


def _kits(dirs: list[str]) -> list[Path]:
    found: list[Path] = []
    for text in dirs:
        folder = Path(text)
        if (folder / "manifest.json").is_file():
            found.append(folder)
        elif folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file())
        else:
            raise PkiError(f"{folder}: no such kit or bundles directory")
    if not found:
        raise PkiError(f"no kit (a directory with manifest.json) in {', '.join(dirs)}")
    return found


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
        self.server_roots = self._server_roots(pki)

    def _server_roots(self, pki: Pki) -> set[str]:
        """Thumbprint of this PKI's root when it issued a server certificate for a beacon."""
        if not pki.has_ca():
            return set()
        for item in pki.certificates.values():
            names = (item.get("san") or {}).get("dns", [])
            if item.get("kind") == "server" and item.get("status") == "valid" and set(names) & set(self.target.hosts):
                return {cert_facts.thumbprint(pki.chain()[-1])}
        return set()

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
        problems: list[str] = []
        manifest = kit.read_manifest(folder)
        if manifest is None:
            return {}, ["manifest.json is missing or not a kit manifest"]
        if manifest.get("device") != folder.name:
            problems.append(f"manifest.json is for device {manifest.get('device')!r}, the directory is {folder.name!r}")
        problems += self._integrity(folder, manifest)
        if problems:
            return manifest, problems
        try:
            key, cert, _ = pkcs12.load_key_and_certificates((folder / "windows/device.pfx").read_bytes(), self.password(folder, manifest))
        except ValueError as exc:
            return manifest, [f"windows/device.pfx does not open with its password ({exc})"]
        if key is None or cert is None:
            return manifest, ["windows/device.pfx holds no certificate and key"]
        unix = cert_facts.read_certificates(folder / "unix/device.pem")
        unix_key = serialization.load_pem_private_key((folder / "unix/device.key").read_bytes(), None)
        spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if unix[0] != cert:
            problems.append("unix/device.pem is not the certificate of windows/device.pfx")
        for what, other in (("windows/device.pfx", key), ("unix/device.key", unix_key)):
            if other.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != spki:
                problems.append(f"the key in {what} is not the certificate's key")
        problems += self._certificate(folder, cert, unix[1:])
        problems += self._agent_files(folder, manifest)
        return manifest, problems

    def _integrity(self, folder: Path, manifest: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        listed = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
        assert isinstance(listed, dict)
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()} - {"manifest.json"}
        for extra in sorted(present - set(listed)):
            problems.append(f"{extra} is not listed in manifest.json")
        for relative, item in sorted(listed.items()):
            path = folder / relative
            if path.is_symlink() or not path.is_file():
                problems.append(f"{relative} is missing")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != (item or {}).get("sha256"):
                problems.append(f"{relative} differs from its SHA-256 in manifest.json")
        for relative in PRIVATE_FILES:
            path = folder / relative
            if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o077:
                problems.append(f"{relative} is readable by others (mode {stat.S_IMODE(path.stat().st_mode):o}; expected 600)")
        script = folder / "windows/install.ps1"
        if script.is_file() and script.read_bytes() != kit.template_bytes():
            problems.append("windows/install.ps1 is not the static template scripts/pki/windows/install.ps1")
        return problems

    def _certificate(self, folder: Path, cert: x509.Certificate, sent: list[x509.Certificate]) -> list[str]:
        problems: list[str] = []
        if "clientAuth" not in (cert_facts.eku_names(cert) or []):
            problems.append("the certificate has no Client Authentication EKU")
        left = cert.not_valid_after_utc - self.at
        if left < dt.timedelta(days=self.min_days):
            problems.append(f"the certificate ends {cert_facts.iso(cert.not_valid_after_utc)}: less than --min-days {self.min_days} days from {cert_facts.iso(self.at)}")
        verdict = cert_verdict.iis_verdict(cert, self.trusted, self.crls, self.at, self.mappings, intermediates=sent, denials=self.denials)
        if not verdict.accepted:
            problems.append(f"the beacons would answer {verdict.status} {verdict.reason}: {verdict.detail}")
        data = json.loads((folder / "windows/install.json").read_text(encoding="ascii"))
        if data.get("pfx", {}).get("thumbprint") != cert_facts.thumbprint(cert):
            problems.append("install.json names another device certificate thumbprint")
        kit_roots: set[str] = set()
        for entry in data.get("caCertificates", []):
            ca = x509.load_der_x509_certificate((folder / "windows" / str(entry.get("file"))).read_bytes())
            self_signed = cert_facts.is_self_signed(ca)
            if cert_facts.thumbprint(ca) != entry.get("thumbprint") or entry.get("store") != ("Root" if self_signed else "CA"):
                problems.append(f"install.json: {entry.get('file')} has another thumbprint or store")
            if self_signed:
                kit_roots.add(cert_facts.thumbprint(ca))
        if verdict.path and cert_facts.thumbprint(verdict.path[-1]) not in kit_roots:
            problems.append(f"the kit's CA files lack the root the beacons trust ({verdict.path[-1].subject.rfc4514_string()})")
        return problems

    def _agent_files(self, folder: Path, manifest: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        hosts = self.target.hosts
        if manifest.get("stack") not in (None, self.target.stack):
            problems.append(f"the kit was made for stack {manifest.get('stack')}, not {self.target.stack}")
        raw = (folder / "unix" / kit.ROLLOUT_NAME).read_bytes()
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
        ini = (folder / "windows/mgssetup.ini").read_bytes()
        lines = ini.decode("ascii", "replace").split("\r\n")
        deploy = [line.split("=", 1)[1] for line in lines if line.startswith("DEPLOYSERVERURL=")]
        if f"{kit.PREFERENCE}=True" not in lines or "[Common]" not in lines:
            problems.append(f"windows/mgssetup.ini does not set {kit.PREFERENCE}=True in [Common]")
        if len(deploy) != 1 or deploy[0] not in [beacons.download_url(h) for h in hosts]:
            problems.append(f"windows/mgssetup.ini DEPLOYSERVERURL is not a beacon of the stack ({', '.join(hosts)})")
        urls = json.loads((folder / "windows/install.json").read_text(encoding="ascii")).get("beaconUrls") or []
        if not urls or any(u not in [beacons.download_url(h) for h in hosts] for u in urls):
            problems.append("windows/install.json beaconUrls are not the stack's beacons")
        cas = cert_facts.read_certificates(folder / "unix/cert.pem")
        if not all(cert_facts.is_self_signed(c) for c in cas):
            problems.append("unix/cert.pem holds certificates that are not root CAs (SSLCACertificateFile takes roots)")
        if self.server_roots and not self.server_roots & {cert_facts.thumbprint(c) for c in cas}:
            problems.append("unix/cert.pem lacks the root CA of the beacons' server certificate (issued by this PKI)")
        return problems


def _result(verifier: Verifier, folder: Path) -> dict[str, Any]:
    try:
        manifest, problems = verifier.verify(folder)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # a damaged or tampered kit: a failure, not a crash
        manifest, problems = {}, [f"unreadable kit ({type(exc).__name__}: {exc})"]
    return {"kit": folder.as_posix(), "device": manifest.get("device", folder.name), "ok": not problems, "problems": problems,
            "serial": manifest.get("serial"), "notAfter": manifest.get("notAfter"), "bootstrapBeacon": manifest.get("bootstrapBeacon")}


def cmd_verify_bundle(args: argparse.Namespace, pki: Pki) -> int:
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
    if args.json:
        out(json.dumps({"stack": verifier.target.stack, "beacons": verifier.target.hosts, "at": cert_facts.iso(verifier.at), "kits": results}, indent=2, ensure_ascii=False))
    else:
        for r in results:
            if r["ok"]:
                out(f"ok    {r['device']}  (serial {r['serial']}, until {r['notAfter']}, bootstrap {r['bootstrapBeacon']})")
            else:
                out(f"FAIL  {r['device']}: " + "; ".join(r["problems"]))
        out(f"{len(results)} kit(s) checked against stack {verifier.target.stack} ({', '.join(verifier.target.hosts)}): {len(results) - len(failed)} ok, {len(failed)} failed")
    return 1 if failed else 0
