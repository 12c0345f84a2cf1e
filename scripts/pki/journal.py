"""The issuing journal, PKI/issuing.journal: record before release.

index.json is written once per command, after the files (store.Batch). A command killed before
that (SIGKILL, a crash, the power) would leave certificate/key pairs on disk that no record
names: `check` accepts them, `revoke` cannot find them. So every certificate is first appended
to the journal (name, kind, source and the certificate itself, one JSON line each) and the
journal is synced, and only then are its files written. When the command ends normally the index
holds everything and the journal is deleted. Otherwise the next command that opens the PKI
(store.Pki.locked, or reading the index) recovers: a journaled certificate whose files are all
on disk is recorded in index.json; one whose files are not all there never left the CA and its
partial files are removed; temporary files of interrupted writes are removed too.

A torn last line (the process died while appending) is skipped: its files were never written,
since they are written only after the append is synced.

The journal is a file anyone with write access to the PKI can edit, so a line is acted on only
when it is what this CA's own commands write: a name that passes the command line's checks
(names.py: no separator, no '..', not absolute, not a name the PKI keeps for its own keys), a
kind of index.json, a certificate this CA signed (the issuing CA, or the server CA for a server
certificate) whose serial index.json does not know. Any other line is reported on stderr and
left alone: no file is removed or recorded for it, and the journal is kept as
issuing.journal.rejected-<time> for inspection instead of being deleted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from components.safe_files import INDEX_FILE_LIMIT, KEY_FILE_LIMIT, FileRefused, read_regular

from .entries import KINDS, SERVER_CA, entry_for, previous_items, serial_of
from .files import PRIVATE_FILE, fsync_dir
from .names import name_key, name_problem, reserved_problem
from .parallel import signals_deferred
from .progress import note

JOURNAL_FILE = "issuing.journal"


@dataclass(frozen=True)
class Record:
    name: str
    kind: str  # client | server
    source: str  # key | csr
    der: bytes  # the certificate


class Journal:
    """Appends records, each batch synced before :meth:`append` returns."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def append(self, records: Sequence[Record]) -> None:
        if not records:
            return
        data = "".join(
            json.dumps({"name": r.name, "kind": r.kind, "source": r.source, "der": base64.b64encode(r.der).decode("ascii")}, separators=(",", ":")) + "\n"
            for r in records
        ).encode("utf-8")
        created = False
        if self.fd is None:
            created = not self.path.exists()
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
        with signals_deferred():  # whole lines (a torn one is skipped on recovery anyway)
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            (getattr(os, "fdatasync", None) or os.fsync)(self.fd)
        if created:
            fsync_dir(self.path.parent)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def discard(self) -> None:
        """Everything journaled is in index.json now (or was removed): forget it."""
        self.close()
        self.path.unlink(missing_ok=True)
        fsync_dir(self.path.parent)


def read_records(path: Path) -> tuple[list[Record], int]:
    """(the usable records, how many lines were not: a torn last line, or damage)."""
    try:
        data = read_regular(path, INDEX_FILE_LIMIT)
    except FileRefused as exc:
        raise ValueError(f"{path}: {exc}") from None
    records: list[Record] = []
    bad = 0
    for line in data.splitlines():
        try:
            item = json.loads(line)
            record = Record(item["name"], item["kind"], item["source"], base64.b64decode(item["der"], validate=True))
        except (ValueError, KeyError, TypeError, binascii.Error):
            bad += 1
            continue
        if not all(isinstance(v, str) for v in (record.name, record.kind, record.source)) or record.source not in ("key", "csr"):
            bad += 1
            continue
        records.append(record)
    return records, bad


def _same_file(path: Path, expected: bytes) -> bool:
    try:
        return read_regular(path, KEY_FILE_LIMIT) == expected
    except (OSError, ValueError):
        return False


def remove_temporary_files(*directories: Path) -> int:
    """Temporary files of writes cut short (files.atomic_write: .NAME.PID.TOKEN.tmp)."""
    removed = 0
    for directory in directories:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for name in os.listdir(directory):
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        (directory / name).unlink()
                        removed += 1
    return removed


def _signer(cert: x509.Certificate, kind: str, issuers: list[tuple[x509.Certificate, str | None]]) -> str | None | bool:
    """Which of this PKI's CAs signed ``cert`` (None: the issuing CA, SERVER_CA: the server CA),
    or False: none of them (or the server CA, for a certificate that is not a server's)."""
    for ca_cert, label in issuers:
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return label if label is None or kind == "server" else False
    return False


def _line_problem(record: Record, taken: dict[str, str]) -> str | None:
    """Why a journal line must not be acted on before its certificate is even looked at."""
    problem = name_problem(record.name) or reserved_problem(record.name)
    if problem:
        return f"name {record.name!r}: {problem}"
    if record.kind not in KINDS:
        return f"name {record.name!r}: kind {record.kind!r} (expected {' or '.join(KINDS)})"
    existing = taken.get(name_key(record.name))
    if existing is not None:  # the name holds another certificate: leave both alone
        return f"name {record.name!r}: index.json holds another certificate under {existing!r}"
    return None


def recover(pki: Any) -> None:
    """Bring index.json up to date with the journal of an interrupted command (see the module
    docstring). ``pki`` is the store.Pki, locked by the caller, its index loaded."""
    path: Path = pki.journal_path
    if not path.exists():
        return
    try:
        records, bad = read_records(path)
    except (OSError, ValueError) as exc:
        raise OSError(f"{path}: the issuing journal of an interrupted command is unreadable ({exc}); "
                      "it lists certificates that may be on disk: move it aside only after checking issued/") from None
    known = {serial_of(item) for item in pki.certificates.values()}
    known |= {serial_of(item) for item in pki.index.get("authorities", {}).values()}
    known |= {serial_of(record) for _, record in previous_items(pki.certificates)}  # superseded by renew
    taken = {name_key(name): name for name in pki.certificates}
    recorded: list[str] = []
    removed: list[str] = []
    rejected: list[str] = []
    issuers: list[tuple[x509.Certificate, str | None]] = [(pki.load_cert(pki.ca_pem), None)]
    if pki.has_server_ca():
        issuers.append((pki.load_cert(pki.server_ca_pem), SERVER_CA))
    for record in records:
        try:
            cert = x509.load_der_x509_certificate(record.der)
        except ValueError:
            bad += 1
            continue
        if cert.serial_number in known:
            continue  # recorded before the interruption
        problem = _line_problem(record, taken)
        signer = _signer(cert, record.kind, issuers) if problem is None else None
        if signer is False:
            problem = f"name {record.name!r}: its certificate (serial {cert.serial_number:x}) was not signed by this PKI's CA"
        if problem is not None:
            rejected.append(problem)
            continue
        cert_path, key_path = pki.issued / f"{record.name}.pem", pki.private / f"{record.name}.key"
        cert_on_disk = _same_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        if cert_on_disk and (record.source == "csr" or key_path.is_file()):
            entry = entry_for(cert, record.kind, record.source)
            if signer == SERVER_CA:
                entry["ca"] = SERVER_CA  # signed by the server CA: its revocation goes on server-crl
            pki.add_certificate(record.name, entry)
            known.add(cert.serial_number)
            taken[name_key(record.name)] = record.name
            recorded.append(record.name)
            continue
        # Never complete, so never released: remove what was written of it.
        if cert_on_disk:
            cert_path.unlink(missing_ok=True)
        if record.source == "key":
            key_path.unlink(missing_ok=True)  # the name was free when that command began: its key
        removed.append(record.name)
    temporary = remove_temporary_files(pki.issued, pki.private)
    if recorded:
        pki.save_index()
    kept = None
    if rejected:  # evidence of a damaged or edited journal: kept, never acted on
        kept = path.with_name(f"{path.name}.rejected-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S%fZ}")
        os.replace(path, kept)
        fsync_dir(path.parent)
    else:
        Journal(path).discard()
    parts = [f"{len(recorded)} certificate(s) recorded in index.json" + (f" ({recorded[0]} .. {recorded[-1]})" if recorded else "")]
    if removed:
        parts.append(f"{len(removed)} never completed (partial files removed)")
    if temporary:
        parts.append(f"{temporary} temporary file(s) removed")
    if bad:
        parts.append(f"{bad} unusable journal line(s) skipped")
    note(f"note: recovered the issuing journal of an interrupted command: {'; '.join(parts)}")
    if rejected:
        note(f"warning: {len(rejected)} line(s) of {path} left alone (no file removed or recorded for them; the journal is kept as {kept}): "
             f"{'; '.join(rejected[:3])}{' ...' if len(rejected) > 3 else ''}")
