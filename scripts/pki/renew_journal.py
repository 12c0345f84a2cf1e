"""The renewal journal, PKI/renewing.journal: `renew` replaces three things that cannot be
replaced together (issued/NAME.pem, private/NAME.key and the index entry), so index.json is the
commit point and this journal says how to finish or undo around it.

`renew NAME` (renew.py), in this order, each step durable before the next:
  1. this journal: the name, the old and the new serial;
  2. the new certificate and key under staging names (issued/.NAME.renewing.pem,
     private/.NAME.renewing.key: a leading '.' is never a PKI name) and the old certificate's
     history copy, issued/NAME.<old serial>.pem;
  3. index.json, once: NAME is the new certificate, the old one is in NAME's "previous";
  4. the staged files renamed over issued/NAME.pem and private/NAME.key (the old key is gone),
     the old certificate's export pfx/NAME.pfx removed, the journal deleted.
An interruption before 3 is undone by the next command that opens the PKI (store.Pki.locked,
or reading the index): staged files and the history copy are removed, the old certificate is
untouched. After 3 it is finished: the renames of step 4 are made. Either way the next command
sees the old state or the new one, never a mix.

The journal is a file anyone with write access to the PKI can edit: its name is checked like a
name on the command line (names.py) and its serials must be hexadecimal, so that no path built
from them (staged files, the history copy) leaves issued/ or private/; a journal that fails is
refused in one line, nothing touched.

Imports nothing from this package that imports store.py (store.py calls :func:`recover`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.safe_files import KEY_FILE_LIMIT, read_regular

from .files import PRIVATE_FILE, atomic_write, fsync_dir
from .names import name_problem, reserved_problem
from .progress import note

RENEW_JOURNAL_FILE = "renewing.journal"
_SERIAL_TEXT = re.compile(r"[0-9A-Fa-f:]{1,60}").fullmatch  # as index.json holds serials (entries.py)


@dataclass(frozen=True)
class Renewal:
    name: str
    old_serial: str
    new_serial: str

    def staged_cert(self, issued: Path) -> Path:
        return issued / f".{self.name}.renewing.pem"

    def staged_key(self, private: Path) -> Path:
        return private / f".{self.name}.renewing.key"

    def history_file(self) -> str:
        """The old certificate's file name in issued/ (a serial is hex: a safe file name part)."""
        return history_name(self.name, self.old_serial)


def history_name(name: str, serial: str) -> str:
    return f"{name}.{serial.replace(':', '')}.pem"


def begin(path: Path, renewal: Renewal) -> None:
    """Step 1: the journal, durable before any file of the renewal is written."""
    data = json.dumps({"name": renewal.name, "oldSerial": renewal.old_serial, "newSerial": renewal.new_serial}, sort_keys=True)
    atomic_write(path, (data + "\n").encode("utf-8"), PRIVATE_FILE)


def finish(pki: Any, renewal: Renewal) -> list[str]:
    """Step 4 (also recovery after the commit): staged files over the final ones, the old
    export removed, the journal deleted. Idempotent. Returns what it removed, for the report."""
    for staged, final in ((renewal.staged_cert(pki.issued), pki.issued / f"{renewal.name}.pem"),
                          (renewal.staged_key(pki.private), pki.private / f"{renewal.name}.key")):
        if staged.exists():
            os.replace(staged, final)
    fsync_dir(pki.issued)
    fsync_dir(pki.private)
    removed = []
    old_export = pki.pfx / f"{renewal.name}.pfx"
    if old_export.is_file() and not old_export.is_symlink():
        old_export.unlink()  # it holds the old certificate and key: a trap once the name is renewed
        fsync_dir(pki.pfx)
        removed.append(str(old_export))
    _discard(pki.root / RENEW_JOURNAL_FILE)
    return removed


def undo(pki: Any, renewal: Renewal) -> None:
    """Recovery before the commit: remove what the renewal wrote; the old files were never touched."""
    history = pki.issued / renewal.history_file()
    recorded = any(r.get("serial") == renewal.old_serial for r in (pki.certificates.get(renewal.name) or {}).get("previous") or ())
    for path in (renewal.staged_cert(pki.issued), renewal.staged_key(pki.private), *(() if recorded else (history,))):
        path.unlink(missing_ok=True)
    fsync_dir(pki.issued)
    fsync_dir(pki.private)
    _discard(pki.root / RENEW_JOURNAL_FILE)


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def read(path: Path) -> Renewal:
    try:
        item = json.loads(read_regular(path, KEY_FILE_LIMIT))
        renewal = Renewal(item["name"], item["oldSerial"], item["newSerial"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OSError(f"{path}: the journal of an interrupted renew is unreadable ({exc}); compare index.json with issued/ before moving it aside") from None
    problem = None
    if not all(isinstance(v, str) and v for v in (renewal.name, renewal.old_serial, renewal.new_serial)):
        problem = "name or serials are not text"
    elif bad_name := name_problem(renewal.name) or reserved_problem(renewal.name):
        problem = f"name {renewal.name!r}: {bad_name}"
    elif not (_SERIAL_TEXT(renewal.old_serial) and _SERIAL_TEXT(renewal.new_serial)):
        problem = f"serials {renewal.old_serial!r}, {renewal.new_serial!r} are not hexadecimal"
    if problem:
        raise OSError(f"{path}: the journal of an interrupted renew is damaged ({problem}); nothing was changed: "
                      "compare index.json with issued/ before moving it aside")
    return renewal


def recover(pki: Any) -> None:
    """Finish or undo an interrupted `renew` (module docstring). ``pki`` is the store.Pki, locked
    by the caller, its index loaded."""
    path = pki.root / RENEW_JOURNAL_FILE
    if not path.exists():
        return
    renewal = read(path)
    current = (pki.certificates.get(renewal.name) or {}).get("serial")
    if current == renewal.new_serial:
        finish(pki, renewal)
        note(f"note: finished the interrupted renewal of {renewal.name!r} (serial {renewal.old_serial} -> {renewal.new_serial}; it was recorded in index.json)")
    elif current == renewal.old_serial:
        undo(pki, renewal)
        note(f"note: undid the interrupted renewal of {renewal.name!r}: it was not recorded, serial {renewal.old_serial} is still its certificate")
    else:
        undo(pki, renewal)
        note(f"note: removed the files of an interrupted renewal of {renewal.name!r}: index.json names neither serial {renewal.old_serial} nor {renewal.new_serial} for it")
