"""The expected fleet: the devices a scripts.pki CA directory issued a client certificate to.

`readiness --pki DIR` reads DIR/index.json (scripts/pki/store.py: `certificates` NAME -> kind,
subject, serial, status, notAfter ..., refused unless scripts.pki's own check passes,
scripts/pki/entries.py index_problem) and expects every client certificate's subject CN that still
has a valid (not revoked, not expired) certificate. A device renewed under another name keeps its
CN: its certificates count once. Read only: a directory whose journal says a scripts.pki command
was interrupted is refused (scripts.pki recovers it on its next command).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from .common import InputError, parse_time


@dataclass
class Expected:
    source: str
    devices: dict[str, str] = field(default_factory=dict)  # case-folded CN -> CN, a valid certificate each
    certificates: int = 0  # valid client certificates counted (renewals included)
    excluded: int = 0  # CNs whose every certificate is revoked or expired

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "devices": len(self.devices), "validClientCertificates": self.certificates, "revokedOrExpiredOnly": self.excluded}


def _cn(subject: Any, name: str) -> str:
    try:
        found = x509.Name.from_rfc4514_string(str(subject)).get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        found = []
    return str(found[0].value) if found else name


def expected_devices(directory: str, at: dt.datetime) -> Expected:
    """The devices of DIR's index.json with a client certificate valid at `at`."""
    import json
    from pathlib import Path

    from components.safe_files import INDEX_FILE_LIMIT, FileRefused, read_text
    from scripts.pki.entries import index_problem  # only this option needs scripts.pki
    from scripts.pki.journal import JOURNAL_FILE

    root = Path(directory)
    index = root / "index.json"
    if not index.is_file():
        raise InputError(f"--pki {directory}: no index.json (expected a scripts.pki CA directory: `python -m scripts.pki --dir DIR init-ca`)")
    if (root / JOURNAL_FILE).exists():
        raise InputError(f"--pki {directory}: a scripts.pki command was interrupted ({JOURNAL_FILE}); run `python -m scripts.pki --dir {directory} list` to recover it first")
    try:
        data = json.loads(read_text(index, INDEX_FILE_LIMIT))
    except (OSError, ValueError, FileRefused) as exc:
        raise InputError(f"--pki {directory}: {index} unreadable ({getattr(exc, 'strerror', None) or exc})") from None
    problem = index_problem(data)
    if problem:
        raise InputError(f"--pki {directory}: {index}: {problem}")
    certificates: dict[str, Any] = data.get("certificates") or {}
    found = Expected(str(directory))
    issued: dict[str, str] = {}
    for name, item in certificates.items():
        if item.get("kind") != "client":
            continue
        cn = _cn(item.get("subject", ""), name)
        issued.setdefault(cn.casefold(), cn)
        until = parse_time(item.get("notAfter"))
        if item.get("status") == "valid" and until is not None and until > at:
            found.certificates += 1
            found.devices.setdefault(cn.casefold(), cn)
    found.excluded = len(set(issued) - set(found.devices))
    return found
