"""Revocation: `revoke` marks a certificate revoked in index.json, `crl` signs and writes the
CRLs (crl.pem/crl.der, root-crl.* with an intermediate, server-crl.* with a server CA) and with
--publish uploads them. A certificate goes on the CRL of the CA that signed it: the server CA's
(entries with "ca": "server") or the issuing CA's (all others).

:func:`publish_crls` is also the last step of `init-ca` (the first CRLs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from components.certs import facts as cert_facts

from . import build
from .entries import SERVER_CA, entry_for, previous_items
from .files import PUBLIC_FILE, atomic_write
from .inputs import PROG, now_utc, parse_at
from .progress import note, out
from .store import Pki, PkiError, parse_serial


@dataclass
class CrlFile:
    """One CRL written by `crl`: which authority, where, its DER (what --publish uploads)."""

    label: str  # "crl", "root-crl" or "server-crl"
    der_path: Path
    der: bytes
    urls: list[str]  # the CDP URLs that point to it (from init-ca)


def revoked_entries(pki: Pki, server_ca: bool = False) -> list[tuple[int, dt.datetime | str, str]]:
    """(serial, revocation date, reason) of every revoked certificate of index.json that the
    issuing CA signed (server_ca: that the server CA signed). Dates in
    index.json's own form ("2026-01-31T12:00:00Z") stay text (build.sign_crl encodes them
    directly); others are parsed here. A revoked entry whose file is in issued/ must name that
    file's serial (a hand-edited index.json is refused, not published)."""
    entries: list[tuple[int, dt.datetime | str, str]] = []
    append = entries.append
    reasons = build.REASONS
    on_disk: set[str] = set()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # one listing, not a stat per entry
        on_disk = set(os.listdir(pki.issued))
    for name, item in pki.certificates.items():
        if item.get("status") != "revoked" or (item.get("ca") == SERVER_CA) != server_ca:
            continue
        if on_disk and f"{name}.pem" in on_disk:
            pki.check_file_serial(name, item)  # the CRL must list the certificate the file holds
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
    for name, record in [] if server_ca else previous_items(pki.certificates):  # superseded by renew (device certificates: the issuing CA's)
        if record["status"] == "revoked":
            append((parse_serial(record["serial"]), parse_at(record["revokedAt"]).replace(tzinfo=None), record.get("reason") or "superseded"))
    return entries


def end_grace_periods(pki: Pki, now: dt.datetime) -> list[str]:
    """Revoke (reason superseded, dated the end of the grace) the certificates `renew` superseded
    whose grace period has ended, so that the CRL `crl` signs next lists them; one index write.
    This is how the grace period is enforced: a relying party only learns of it from the CRL."""
    ended = []
    for name, record in previous_items(pki.certificates):
        if record["status"] == "valid" and parse_at(record["graceUntil"]) <= now:
            record.update(status="revoked", revokedAt=record["graceUntil"], reason="superseded")
            ended.append(f"{name} (serial {record['serial']})")
    if ended:
        pki.save_index()
    return ended


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
    """One CRL (kind "crl", "root-crl" or "server-crl"): number +1 recorded first, signed, PEM and DER written."""
    counter = _COUNTERS[kind]
    number = pki.next_crl_number(counter)
    pki.save_crl_number(counter, number)
    try:
        der = build.sign_crl(issuer, key, number, revoked, now, now + dt.timedelta(days=days))
    except (ValueError, InvalidSignature) as exc:  # InvalidSignature: the key is not the certificate's
        raise PkiError(f"cannot sign the {_TITLES[kind]}: {exc or 'the signature does not verify with the CA certificate (wrong key)'}") from None
    crl = x509.load_der_x509_crl(der)
    atomic_write(pem_path, build.crl_pem(der), PUBLIC_FILE)
    atomic_write(der_path, der, PUBLIC_FILE)
    if files is not None:
        files.append(CrlFile(kind, der_path, der, list(urls)))
    return (
        f"{pem_path.name}/{der_path.name}: CRL {number} of {cert_facts.common_name(issuer.subject)!r}, "
        f"{len(revoked)} revoked, nextUpdate {cert_facts.iso(crl.next_update_utc)}"
    )


_COUNTERS = {"crl": "crlNumber", "root-crl": "rootCrlNumber", "server-crl": "serverCrlNumber"}
_TITLES = {"crl": "CRL", "root-crl": "root CRL", "server-crl": "server CA's CRL"}


def publish_server_crl(pki: Pki, days: int, files: list[CrlFile] | None = None) -> str:
    """Sign and write the server CA's CRL (server-crl.pem/.der): the server certificates it
    signed and that were revoked. Agents that check the beacon's revocation fetch it."""
    cert, key = pki.server_ca()
    return _sign_and_write_crl(pki, "server-crl", cert, key, revoked_entries(pki, server_ca=True), now_utc(), days,
                               pki.server_crl_pem, pki.server_crl_der, pki.index["ca"].get("serverCrlUrls", []), files)


def publish_crls(pki: Pki, days: int, root_days: int | None = None, files: list[CrlFile] | None = None) -> list[str]:
    """Sign and write the issuing CA's CRL (the server CA's with one, the root's with an
    intermediate); numbers +1.

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
    if pki.has_server_ca():
        if pki.server_ca_key.exists():
            written.append(publish_server_crl(pki, days, files))
        else:  # kept offline, like root.key: say until when the current one holds
            current = x509.load_pem_x509_crl(pki.server_crl_pem.read_bytes()) if pki.server_crl_pem.exists() else None
            until = cert_facts.iso(current.next_update_utc) if current is not None else "(none)"
            note(f"note: {pki.server_ca_key} is not here (offline?): server-crl not re-signed; the current one is valid until {until}")
            if files is not None and pki.server_crl_der.exists():
                files.append(CrlFile("server-crl", pki.server_crl_der, pki.server_crl_der.read_bytes(), list(ca.get("serverCrlUrls", []))))
    if pki.intermediate():
        issuing = pki.index["authorities"]["issuing"]
        if not pki.root_key.exists():
            if issuing["status"] == "revoked":
                raise PkiError(f"{pki.root_key} is missing: the root's key is needed to publish the intermediate's revocation (root-crl)")
            current = x509.load_pem_x509_crl(pki.root_crl_pem.read_bytes()) if pki.root_crl_pem.exists() else None
            until = cert_facts.iso(current.next_update_utc) if current is not None else "(none)"
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


def derived_crl_url(url: str, prefix: str) -> str:
    """http://h/p/devices.crl -> http://h/p/<prefix>devices.crl (mirrors crl.der / <prefix>crl.der)."""
    parts = urlsplit(url)
    head, _, last = parts.path.rpartition("/")
    path = f"{head}/{prefix}{last or 'crl.crl'}"
    return parts._replace(path=path).geturl()


def derived_root_crl_url(url: str) -> str:
    """http://h/p/devices.crl -> http://h/p/root-devices.crl (mirrors crl.der / root-crl.der)."""
    return derived_crl_url(url, "root-")


def cmd_revoke(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    if (args.name is None) == (args.serial is None):
        raise PkiError("revoke takes a NAME or --serial HEX (one of them)")
    with pki.locked():  # recovers the journal of an interrupted command first: its certificates are found too
        if args.name is not None:
            label, item = args.name, pki.entry(args.name)
            pki.check_file_serial(args.name, item)  # revoke the certificate the file holds, or nothing
        else:
            serial = parse_serial(args.serial)
            matches = [(n, i) for n, i in pki.certificates.items() if parse_serial(i["serial"]) == serial]
            if not matches:  # a certificate renew superseded (NAME itself is the current one)
                matches = [(f"{n}'s superseded certificate ({r['file']})", r) for n, r in previous_items(pki.certificates) if parse_serial(r["serial"]) == serial]
            authorities = pki.index.get("authorities", {})
            if not matches and pki.intermediate() and parse_serial(authorities["issuing"]["serial"]) == serial:
                matches = [("the issuing CA (ca.pem)", authorities["issuing"])]
            elif not matches and "server" in authorities and parse_serial(authorities["server"]["serial"]) == serial:
                raise PkiError(f"serial {args.serial} is the server CA (a root): it cannot be revoked; bundle kits without it instead")
            elif not matches and any(parse_serial(a["serial"]) == serial for a in authorities.values()):
                raise PkiError(f"serial {args.serial} is the root CA: it cannot be revoked; retire the PKI instead")
            if not matches:
                matches = [_record_unlisted(pki, serial, args.serial)]
            label, item = matches[0]
            if label in pki.certificates:  # not the issuing CA, nor a superseded certificate (its file is NAME.SERIAL.pem)
                pki.check_file_serial(label, item)
        if item["status"] == "revoked":
            raise PkiError(f"{label} (serial {item['serial']}) is already revoked ({item['revokedAt']}, {item['reason']})")
        item["status"] = "revoked"
        item["revokedAt"] = cert_facts.iso(now_utc())
        item["reason"] = args.reason
        pki.save_index()
    out(f"revoked {label} (serial {item['serial']}, {args.reason}); run `{PROG} --dir {pki.root} crl` and publish the CRL")
    return 0


def _record_unlisted(pki: Pki, serial: int, text: str) -> tuple[str, dict[str, Any]]:
    """A certificate of this CA (or of the server CA) in issued/ that index.json does not list
    (e.g. left by an older version killed mid-run): record it, so that it can be revoked.
    Refuses when there is none."""
    issuers: list[tuple[x509.Certificate, str | None]] = [(pki.load_cert(pki.ca_pem), None)]
    if pki.has_server_ca():
        issuers.append((pki.load_cert(pki.server_ca_pem), SERVER_CA))
    for path in sorted(pki.issued.glob("*.pem")) if pki.issued.is_dir() else []:
        try:
            cert = pki.load_cert(path)
        except PkiError:
            continue
        if cert.serial_number != serial:
            continue
        signer = _signer(cert, issuers)
        if signer is False:
            raise PkiError(f"{path} has serial {text} but was not issued by {pki.ca_pem}: not this CA's to revoke")
        name = path.stem
        if name in pki.certificates:
            raise PkiError(f"{path} has serial {text} but index.json lists another certificate under {name!r}: index.json or the file was changed by hand; restore it")
        eku = cert_facts.eku_names(cert) or []
        kind = "server" if "serverAuth" in eku else "client"
        source = "key" if (pki.private / f"{name}.key").is_file() else "csr"
        item = entry_for(cert, kind, source)
        if signer == SERVER_CA:
            item["ca"] = SERVER_CA
        pki.add_certificate(name, item)
        note(f"note: {path} (serial {text}) was not in index.json; recorded it as {name!r}")
        return name, item
    raise PkiError(f"no certificate with serial {text} in {pki.root}/index.json or {pki.issued}/")


def _signer(cert: x509.Certificate, issuers: list[tuple[x509.Certificate, str | None]]) -> str | None | bool:
    """The "ca" label of the CA among ``issuers`` that signed ``cert``; False when none did."""
    for ca_cert, label in issuers:
        try:
            cert.verify_directly_issued_by(ca_cert)
            return label
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


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
        ended = end_grace_periods(pki, now_utc())
        lines = publish_crls(pki, args.days, args.root_days, files)
    if ended:
        out(f"revoked {len(ended)} superseded certificate(s) whose grace period after renew ended (reason superseded): {', '.join(ended[:5])}{' ...' if len(ended) > 5 else ''}")
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
