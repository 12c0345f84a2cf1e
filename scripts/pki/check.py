"""The verbs that only read: `inspect` (a certificate or CRL as JSON), `check` (would an IIS
beacon accept this device certificate? the verdict of components/certs/verdict.py with the
mappings the deployment writes) and `list` (what index.json records).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from components.certs import facts as cert_facts

from components.certs import verdict as cert_verdict

from components.iis import mapping_rules

from .inputs import now_utc, parse_at, required_attr
from .progress import out
from .store import Pki, PkiError

PROJECT = "flexnet-beacon"


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
    # Only `check --stack-config` needs YAML: not imported at start-up of every verb.
    from components.config import ConfigInvalid, load, stack_file_to_raw
    from components.stack_yaml import read_stack_document

    try:
        document = read_stack_document(path) or {}  # no aliases, a regular UTF-8 file of at most 4 MiB
    except OSError as exc:
        raise PkiError(f"--stack-config {path}: unreadable ({exc.strerror})") from None
    except ValueError as exc:
        raise PkiError(f"--stack-config {path}: {exc}") from None
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
        payload.update({"certificate": cert_path.as_posix(), "subject": leaf.subject.rfc4514_string(), "serial": cert_facts.serial_hex(leaf.serial_number), "at": cert_facts.iso(at)})
        out(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        out(verdict.line())
    return 0 if verdict.accepted else 1


def _status_text(row: dict[str, Any], now: dt.datetime) -> str:
    text = row["status"] + (" (expired)" if row["expired"] else "")
    if not row.get("superseded"):
        return text
    if row["status"] == "revoked":
        return f"superseded, revoked ({row.get('reason') or 'unspecified'})"
    if parse_at(row["graceUntil"]) <= now:
        return f"superseded, grace ended {row['graceUntil']}: run crl"
    return f"superseded, valid until {row['graceUntil']}" + (" (expired)" if row["expired"] else "")


def cmd_list(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    now = now_utc()
    rows = []
    for _, item in sorted(pki.index.get("authorities", {}).items()):
        rows.append({"name": f"({item['file']})", **item})
    for name, item in sorted(pki.certificates.items()):
        rows.append({"name": name, **item})
        for record in item.get("previous") or ():  # what `renew` superseded: history of the device, not another device
            rows.append({"name": name, "kind": item["kind"], "superseded": True, **record})
    if args.expiring is not None:
        limit = now + dt.timedelta(days=args.expiring)  # one device per name: its current certificate decides
        rows = [r for r in rows if r["status"] == "valid" and not r.get("superseded") and parse_at(r["notAfter"]) <= limit]
    for row in rows:
        row["expired"] = parse_at(row["notAfter"]) < now
    if args.json:
        out(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        out("nothing expires within %d days" % args.expiring if args.expiring is not None else "nothing issued")
        return 0
    headers = ("NAME", "KIND", "STATUS", "NOT AFTER", "SERIAL")
    table = [(r["name"], r["kind"], _status_text(r, now), r["notAfter"], r["serial"]) for r in rows]
    widths = [max(len(str(row[i])) for row in [headers, *table]) for i in range(len(headers) - 1)]
    for row in [headers, *table]:
        out("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + str(row[-1]))
    return 0
