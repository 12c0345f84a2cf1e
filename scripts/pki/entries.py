"""index.json entries: made from a certificate just signed (:func:`entry_for`), and checked when
the index is read (:func:`index_problem`), so that a hand-edited or damaged index is refused with
one line naming the entry instead of being trusted (or ending in a traceback).

Imports nothing from this package but nothing either that imports it: store.py (reading the
index), journal.py (recovery) and issue.py (issuing) all use it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from components.certs import facts as cert_facts

INDEX_VERSION = 1
KINDS = ("client", "server")
SOURCES = ("key", "csr")
STATUSES = ("valid", "revoked")
AUTHORITY_KINDS = ("root-ca", "issuing-ca", "server-ca")
SERVER_CA = "server"  # an entry's "ca" when the server CA signed it (absent: the issuing CA)
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")

_ISO_CACHE: dict[dt.datetime, str | None] = {}


def _iso_cached(moment: dt.datetime) -> str | None:
    """cert_facts.iso(): bulk-issued certificates share their second, so the text is mostly reused."""
    text = _ISO_CACHE.get(moment)
    if text is None:
        if len(_ISO_CACHE) > 4096:
            _ISO_CACHE.clear()
        text = _ISO_CACHE[moment] = cert_facts.iso(moment)
    return text


def entry_for(cert: x509.Certificate, kind: str, source: str, subject: x509.Name | None = None, may_have_san: bool = True) -> dict[str, Any]:
    """The index.json entry. subject/may_have_san: what the caller just put into the certificate,
    which spares re-parsing it (the extensions parse is most of the cost of an entry)."""
    item = {
        "kind": kind,
        "source": source,
        "serial": cert_facts.serial_hex(cert.serial_number),
        "subject": (subject if subject is not None else cert.subject).rfc4514_string(),
        "notBefore": _iso_cached(cert.not_valid_before_utc),
        "notAfter": _iso_cached(cert.not_valid_after_utc),
        "sha1": cert.fingerprint(hashes.SHA1()).hex().upper(),  # = cert_facts.thumbprint
        "status": "valid",
        "revokedAt": None,
        "reason": None,
    }
    sans = cert_facts.subject_alt_names(cert) if may_have_san else None
    if sans:
        item["san"] = sans
    return item


def superseded_record(item: dict[str, Any], file: str, superseded_at: str, grace_until: str | None) -> dict[str, Any]:
    """What entry["previous"] keeps of a certificate replaced by `renew`: enough to revoke it
    (serial), to list it, and for the next kit to remove it from the device's store (the
    thumbprint, as Windows shows it). grace_until: when `crl` revokes it (None: revoked now)."""
    return {
        "serial": item["serial"],
        "thumbprint": item["sha1"],
        "subject": item.get("subject"),
        "notBefore": item.get("notBefore"),
        "notAfter": item["notAfter"],
        "file": file,
        "supersededAt": superseded_at,
        "graceUntil": grace_until,
        "status": "valid",
        "revokedAt": None,
        "reason": None,
    }


def previous_items(certificates: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, record) of every superseded certificate, oldest first per name."""
    return [(name, record) for name, item in certificates.items() for record in item.get("previous") or ()]


def serial_of(item: dict[str, Any]) -> int:
    """The serial of a checked entry (hex, colons allowed)."""
    return int(str(item["serial"]).replace(":", ""), 16)


_serial_text = re.compile(r"[0-9A-Fa-f:]{1,60}").fullmatch
_iso_text = _ISO.fullmatch


def _entry_problem(item: Any, authority: bool = False) -> str | int:
    """The entry's serial (an int), or what is wrong with it (a str). Read for every entry each
    time index.json is loaded: kept cheap (100,000 entries in about 0.3 s)."""
    if type(item) is not dict:
        return f"expected an object, got {type(item).__name__}"
    serial = item.get("serial")
    if type(serial) is not str or not _serial_text(serial) or not 0 < len(digits := serial.replace(":", "")) <= 40:
        return f"serial {serial!r} is not a hexadecimal serial number"
    number = int(digits, 16)
    if number == 0:
        return "serial 0 is not a certificate serial number"
    kind = item.get("kind")
    if kind not in (AUTHORITY_KINDS if authority else KINDS):
        return f"kind {kind!r}; expected one of {', '.join(AUTHORITY_KINDS if authority else KINDS)}"
    if not authority and item.get("source") not in SOURCES:
        return f"source {item.get('source')!r}; expected one of {', '.join(SOURCES)}"
    status = item.get("status")
    if status not in STATUSES:
        return f"status {status!r}; expected one of {', '.join(STATUSES)}"
    for key in ("notAfter",) if authority else ("notBefore", "notAfter"):
        value = item.get(key)
        if type(value) is not str or not _iso_text(value):
            return f"{key} {value!r} is not an ISO 8601 time"
    if status == "revoked":
        when = item.get("revokedAt")
        if type(when) is not str or not _iso_text(when):
            return f"revokedAt {when!r} is not an ISO 8601 time"
    for key in ("subject", "sha1"):
        if key in item and type(item[key]) is not str:
            return f"{key} {item[key]!r} is not text"
    if "ca" in item and item["ca"] != SERVER_CA:
        return f"ca {item['ca']!r}; expected {SERVER_CA!r} (signed by the server CA) or no such key (the issuing CA)"
    return number


_thumbprint_text = re.compile(r"[0-9A-F]{40}").fullmatch


def _previous_problem(record: Any) -> str | int:
    """A superseded certificate (entry["previous"][i], written by `renew`): its serial, or what
    is wrong with it."""
    if type(record) is not dict:
        return f"expected an object, got {type(record).__name__}"
    serial = record.get("serial")
    if type(serial) is not str or not _serial_text(serial) or not 0 < len(digits := serial.replace(":", "")) <= 40 or int(digits, 16) == 0:
        return f"serial {serial!r} is not a hexadecimal serial number"
    if type(record.get("thumbprint")) is not str or not _thumbprint_text(record["thumbprint"]):
        return f"thumbprint {record.get('thumbprint')!r} is not 40 uppercase hexadecimal digits"
    status = record.get("status")
    if status not in STATUSES:
        return f"status {status!r}; expected one of {', '.join(STATUSES)}"
    keys = ("notAfter", "graceUntil", "revokedAt") if status == "revoked" else ("notAfter", "graceUntil")
    for key in keys:
        value = record.get(key)
        if key == "graceUntil" and value is None:
            continue  # revoked when it was superseded (renew --revoke-old)
        if type(value) is not str or not _iso_text(value):
            return f"{key} {value!r} is not an ISO 8601 time"
    if status == "valid" and record.get("graceUntil") is None:
        return "status valid without graceUntil (a superseded certificate stays valid only for its grace period)"
    return int(digits, 16)


def index_problem(data: Any) -> str | None:
    """What is wrong with a parsed index.json, as one line naming the entry; None when usable."""
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
        return f"not a version {INDEX_VERSION} PKI index"
    ca = data.get("ca")
    if not isinstance(ca, dict):
        return "'ca' is not an object"
    for key in ("crlUrls", "aiaUrls", "rootCrlUrls", "rootAiaUrls", "serverCrlUrls"):
        if key in ca and not (isinstance(ca[key], list) and all(isinstance(u, str) for u in ca[key])):
            return f"ca.{key} {ca[key]!r} is not a list of URLs"
    if "serverDomains" in ca and not (isinstance(ca["serverDomains"], list) and ca["serverDomains"] and all(isinstance(d, str) for d in ca["serverDomains"])):
        return f"ca.serverDomains {ca['serverDomains']!r} is not a list of DNS names"
    for key in ("crlNumber", "rootCrlNumber"):
        if key in ca and (type(ca[key]) is not int or ca[key] < 0):
            return f"ca.{key} {ca[key]!r} is not a CRL number"
    if "keyType" in ca and ca["keyType"] not in ("ec", "rsa2048", "rsa3072"):
        return f"ca.keyType {ca['keyType']!r}; expected ec, rsa2048 or rsa3072"
    authorities = data.get("authorities", {})
    if not isinstance(authorities, dict):
        return "'authorities' is not an object"
    certificates = data.get("certificates")
    if not isinstance(certificates, dict):
        return "'certificates' is not an object"
    seen: dict[int, str] = {}
    for label, item, authority in [
        *((f"authorities.{k}", v, True) for k, v in authorities.items()),
        *((f"certificates.{k}", v, False) for k, v in certificates.items()),
    ]:
        serial = _entry_problem(item, authority)
        if isinstance(serial, str):
            return f"entry {label}: {serial}"
        if serial in seen:
            return f"entry {label}: serial {item['serial']} is also the serial of {seen[serial]} (a serial names one certificate)"
        seen[serial] = label
        previous = None if authority else item.get("previous")
        if previous is None:
            continue
        if type(previous) is not list:
            return f"entry {label}: previous is not a list"
        for position, record in enumerate(previous):
            where = f"{label}.previous[{position}]"
            serial = _previous_problem(record)
            if isinstance(serial, str):
                return f"entry {where}: {serial}"
            if serial in seen:
                return f"entry {where}: serial {record['serial']} is also the serial of {seen[serial]} (a serial names one certificate)"
            seen[serial] = where
    return None
