"""index.json entries: made from a certificate just signed (:func:`entry_for`), and checked when
the index is read (:func:`index_problem`), so that a hand-edited or damaged index is refused with
one line naming the entry instead of being trusted (or ending in a traceback).

Imports nothing from this package but nothing either that imports it: store.py (reading the
index), journal.py (recovery) and issue.py (issuing) all use it.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from itertools import chain, compress, repeat
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from components.certs import facts as cert_facts

from .names import first_name_problem

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
    if not any(map(operator.contains, certificates.values(), repeat("previous"))):  # most PKIs: one C-level pass
        return []
    return [(name, record) for name, item in certificates.items() for record in item.get("previous") or ()]


def serial_of(item: dict[str, Any]) -> int:
    """The serial of a checked entry (hex, colons allowed)."""
    return int(str(item["serial"]).replace(":", ""), 16)


_serial_text = re.compile(r"[0-9A-Fa-f:]{1,60}").fullmatch
_iso_text = _ISO.fullmatch


def _entry_problem(item: Any, authority: bool = False) -> str | int:
    """The entry's serial (an int), or what is wrong with it (a str). Only when :func:`_all_usable`
    found something to look at (it checks the same rules, all entries at once)."""
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
    bad_name = first_name_problem(certificates)  # names steer paths (issued/NAME.pem ...): checked as on the command line
    if bad_name is not None:
        return f"entry certificates.{bad_name[0]!r}: the name is not usable: {bad_name[1]}"
    if _all_usable(authorities, certificates):
        return None
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


# index.json is checked on every read, and `crl` over 100,000 entries has a second for all its
# work. The quick check visits each entry once, taking the fields every entry of this CA has
# (_FIELDS) into a tuple, and then checks a column at a time by C-level passes over the tuples
# (set, join, bytes.translate of the joined text), not by Python code per entry. A pass proves
# every entry meets _entry_problem's rules (serials and times are held to the stricter forms
# entry_for writes); anything else (a missing field, another form, an error) is looked at entry
# by entry, which names the entry at fault.
_FIELDS = operator.itemgetter("serial", "kind", "source", "status", "notBefore", "notAfter", "revokedAt", "subject", "sha1", "reason")
_PLAIN_SIZE = 10  # an entry with only _FIELDS (no "ca", "san", "previous")
_SERIALS, _COMBINATION, _STATUSES = operator.itemgetter(0), operator.itemgetter(1, 2, 3), operator.itemgetter(3)
_VALIDITY, _REVOKED_AT, _SUBJECT, _SHA1 = operator.itemgetter(4, 5), operator.itemgetter(6), operator.itemgetter(7), operator.itemgetter(8)
_COMBINATIONS = frozenset((k, s, t) for k in KINDS for s in SOURCES for t in STATUSES)
_HEX_DIGITS = b"0123456789abcdef"  # serials as entry_for writes them: lowercase hex, no colons
_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_TIME_SHAPE = b"0000-00-00T00:00:00Z\n"  # "2026-01-31T12:00:00Z", as entry_for writes times
_ISO_COLUMN = re.compile(r"(?:%s\n)*" % _ISO.pattern).fullmatch  # other ISO 8601 forms index.json may hold


def _times(values: Any, count: int) -> bool:
    """``count`` values, every one an ISO 8601 time (see _entry_problem)."""
    if count == 0:
        return True
    try:
        text = "\n".join(values) + "\n"
    except TypeError:
        return False
    try:
        if text.encode("ascii").translate(_ZEROS) == _TIME_SHAPE * count:
            return True
    except UnicodeEncodeError:
        pass
    return text.count("\n") == count and bool(_ISO_COLUMN(text))


def _all_usable(authorities: dict[str, Any], certificates: dict[str, Any]) -> bool:
    """True when every entry is well-formed and every serial unique (see above); False means
    "look closer", not "refused"."""
    items = list(certificates.values())
    count = len(items)
    if not count:
        return True
    try:  # an entry that is not an object, lacks a field or holds an unhashable kind: look closer
        rows = list(map(_FIELDS, items))
        sizes = list(map(len, items))
        if not set(map(_COMBINATION, rows)) <= _COMBINATIONS:
            return False
    except (KeyError, TypeError):
        return False
    serials = list(map(_SERIALS, rows))
    try:
        text = "\n".join(serials)
        if text.count("\n") != count - 1 or text.encode("ascii").translate(None, _HEX_DIGITS + b"\n") or max(map(len, serials)) > 40:
            return False
    except (TypeError, UnicodeEncodeError):
        return False
    if set(map(type, map(_SUBJECT, rows))) != {str} or set(map(type, map(_SHA1, rows))) != {str}:
        return False
    try:
        validity = set(chain.from_iterable(map(_VALIDITY, rows)))  # bulk-issued certificates share their times: few distinct
    except TypeError:
        return False
    revoked = list(compress(rows, map(operator.eq, map(_STATUSES, rows), repeat("revoked"))))
    if not (_times(validity, len(validity)) and _times(map(_REVOKED_AT, revoked), len(revoked))):
        return False
    numbers = set(map(str.lstrip, serials, repeat("0")))
    if "" in numbers or len(numbers) != count:  # an empty serial or serial 0, or two entries with one serial
        return False
    extra: list[int] = []  # the authorities' serials and the superseded certificates' ("previous", written by renew)
    for item in authorities.values():
        serial = _entry_problem(item, authority=True)
        if isinstance(serial, str):
            return False
        extra.append(serial)
    for item in compress(items, map(operator.ne, sizes, repeat(_PLAIN_SIZE))):  # with "ca", "san" or "previous" (few)
        if "ca" in item and item["ca"] != SERVER_CA:
            return False
        previous = item.get("previous")
        if previous is not None and type(previous) is not list:
            return False
        for record in previous or ():
            serial = _previous_problem(record)
            if isinstance(serial, str):
                return False
            extra.append(serial)
    if len(set(extra)) != len(extra):
        return False
    return not any(format(serial, "x") in numbers for serial in extra)
