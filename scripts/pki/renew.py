"""`renew NAME [--days N] [--grace-days D | --revoke-old] [--key TYPE]`: a new certificate and a
new key for a device, under the same name and subject, so that `bundle NAME` makes the new kit
and readiness and the expiry watch still count one device.

The old certificate becomes history: its file moves to issued/NAME.<SERIAL>.pem and NAME's index
entry lists it in "previous" (serial, thumbprint, notAfter, status, graceUntil ...), which the
next kit's install.json names under "supersedes" so that install.ps1 removes it from the device's
store. Its key is deleted (the new key replaces private/NAME.key, and pfx/NAME.pfx, its export,
is removed): devices already hold it, the PKI never needs it again, and a key kept is a key that
can be stolen. It stays valid for the grace period (default 30 days, for devices not yet
reinstalled), after which `crl` revokes it with reason superseded; --revoke-old revokes it now.

Atomic across an interruption: renew_journal.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from components.certs import facts as cert_facts

from . import build, guard, renew_journal
from .entries import entry_for, superseded_record
from .files import PRIVATE_FILE, PUBLIC_FILE, atomic_write
from .inputs import DEFAULT_DAYS, PROG, now_utc, positive_days
from .issue import leaf_profile
from .parallel import signals_deferred
from .progress import note, out
from .store import Pki, PkiError, cert_pem, key_pem

DEFAULT_GRACE_DAYS = 30  # long enough for a software-distribution cycle to reach devices that were off
MAX_GRACE_DAYS = 3650


def add_renew_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the device (client certificate) to renew")
    parser.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["client"], help="validity of the new certificate (default 365)")
    old = parser.add_mutually_exclusive_group()
    old.add_argument("--grace-days", type=_grace_days, metavar="D",
                     help=f"the old certificate stays valid D more days, then `crl` revokes it (reason superseded; default {DEFAULT_GRACE_DAYS})")
    old.add_argument("--revoke-old", action="store_true", help="revoke the old certificate now (reason superseded); then run crl")
    parser.add_argument("--key", choices=build.KEY_TYPES, help="key type of the new key (default: the old certificate's)")


def _grace_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_GRACE_DAYS:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a whole number of days from 0 to {MAX_GRACE_DAYS}")
    return value


def key_type_of(public_key: Any, default: str) -> str:
    """The key type (build.KEY_TYPES) of a certificate's key, so a renewed device keeps what its
    platform was issued for (e.g. RSA for old Windows builds); ``default`` when none fits."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1":
        return "ec"
    if isinstance(public_key, rsa.RSAPublicKey) and f"rsa{public_key.key_size}" in build.KEY_TYPES:
        return f"rsa{public_key.key_size}"
    return default


def _renewable(pki: Pki, name: str) -> dict[str, Any]:
    item = pki.entry(name)
    if item.get("kind") != "client":
        raise PkiError(f"renew: {name!r} is a {item.get('kind')} certificate; renew takes device (client) certificates "
                       "(a beacon's: issue-server under a new name, then `ops rotate`)")
    if item.get("source") != "key":
        raise PkiError(f"renew: {name!r} was signed from a CSR: its key is on the device; sign a new CSR from it (sign-csr) instead")
    if item.get("status") != "valid":
        raise PkiError(f"renew: {name!r} is revoked ({item.get('revokedAt')}, {item.get('reason') or 'unspecified'}): renewing it would "
                       "admit the device again; issue-client --cn under a new name if it should come back")
    pki.check_file_serial(name, item)  # renew the certificate the file holds, or nothing
    return item


def cmd_renew(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    grace_days = DEFAULT_GRACE_DAYS if args.grace_days is None else args.grace_days
    with pki.locked():  # recovers an interrupted issue or renew first
        name = args.name
        item = _renewable(pki, name)
        old_cert = pki.load_cert(pki.issued / f"{name}.pem")
        ca_cert, ca_key = pki.issuing()
        guard.check_issuer(pki, ca_cert)
        guard.check_subject(old_cert.subject, guard.ca_subjects(pki), name)
        key = build.new_key(args.key or key_type_of(old_cert.public_key(), pki.index["ca"].get("keyType", "ec")))
        now = now_utc()
        template = build.CertificateTemplate(leaf_profile(pki, "client", args.days), ca_cert, ca_key)
        new_cert, clamped = template.sign(old_cert.subject, key.public_key(), now)
        entry = entry_for(new_cert, "client", "key")
        renewal = renew_journal.Renewal(name, item["serial"], entry["serial"])
        stamp = cert_facts.iso(now)
        assert stamp is not None
        grace_until = None if args.revoke_old else cert_facts.iso(now + dt.timedelta(days=grace_days))
        record = superseded_record(item, f"issued/{renewal.history_file()}", stamp, grace_until)
        if args.revoke_old:
            record.update(status="revoked", revokedAt=stamp, reason="superseded")
        entry["previous"] = [*(item.get("previous") or []), record]

        renew_journal.begin(pki.renew_journal_path, renewal)  # 1: before any file of the renewal
        try:
            atomic_write(renewal.staged_key(pki.private), key_pem(key), PRIVATE_FILE)  # 2: staged, durable
            atomic_write(renewal.staged_cert(pki.issued), cert_pem(new_cert), PUBLIC_FILE)
            atomic_write(pki.issued / renewal.history_file(), cert_pem(old_cert), PUBLIC_FILE)
        except BaseException:  # an error or Ctrl-C before the commit: nothing happened
            renew_journal.undo(pki, renewal)
            raise
        with signals_deferred():  # Ctrl-C/SIGTERM wait for the commit and the renames (SIGKILL: renew_journal recovers)
            pki.certificates[name] = entry
            pki.save_index()  # 3: the commit point
            removed = renew_journal.finish(pki, renewal)  # 4
    out(f"renewed {name!r}: serial {entry['serial']}, until {entry['notAfter']}, thumbprint {entry['sha1']} "
        f"({pki.issued / (name + '.pem')}, new key {pki.private / (name + '.key')})")
    old = f"serial {record['serial']}, thumbprint {record['thumbprint']}"
    if args.revoke_old:
        out(f"  previous certificate ({old}) revoked (superseded), kept as {pki.issued / renewal.history_file()}; "
            f"run `{PROG} --dir {pki.root} crl` and publish the CRL: devices still using it are refused from then on")
    else:
        out(f"  previous certificate ({old}) kept as {pki.issued / renewal.history_file()}, valid until {grace_until} "
            f"(grace {grace_days} days): the first `crl` after that revokes it (superseded); `revoke --serial {record['serial']}` ends it earlier")
    out(f"  its key is deleted{' and ' + ', '.join(removed) + ' removed' if removed else ''}; next: `bundle {name}` for the new kit "
        "(its install.ps1 removes the previous certificate from the device's store)")
    if clamped:
        note(f"note: the certificate was cut to end with the issuing CA ({cert_facts.iso(ca_cert.not_valid_after_utc)})")
    return 0
