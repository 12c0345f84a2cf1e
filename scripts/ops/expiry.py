"""Time left on everything that locks agents out when it runs out: the beacon's certificate (from
Secrets Manager), the CA certificates, the device certificates of a PKI directory, and each CRL
as published at its CDP URL (an expired CRL makes IIS answer 403.13 to every device at once).

Items: {kind, name, until, daysLeft, state, detail, source}. state: ok | window | expired |
unreachable | invalid. Sorted by time left; unreachable/invalid CRLs first.

One device per name: a device renewed with `pki renew` is judged by its current certificate; the
certificates renew superseded (index.json: the entry's "previous") that are still valid are listed
as kind superseded-certificate until the end of their grace period, never judged as expiring
(the device no longer depends on them once it has its new kit).
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, cast
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from components.certs import facts as cert_facts
from components.safe_files import INDEX_FILE_LIMIT, read_text

from .common import PROJECT, InputError, days_left, iso, now_utc, parse_time

CLOCK_SKEW = dt.timedelta(minutes=5)  # a CRL signed this little ahead of our clock is still usable

METRIC_NAMESPACE = "FlexNetBeacon"
KINDS = ("server-certificate", "ca-certificate", "device-certificate", "crl")
SUPERSEDED = "superseded-certificate"  # listed, never judged (not in KINDS: no DaysLeft metric)
FETCH_LIMIT = 20 * 1024 * 1024


@dataclass
class Item:
    kind: str
    name: str
    until: dt.datetime | None
    source: str
    state: str = "ok"
    detail: str = ""
    days: float | None = None
    issuer: str = ""  # CRLs: the issuer's DN
    number: int | None = None  # CRLs: the CRL number

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "until": iso(self.until),
            "daysLeft": None if self.days is None else round(self.days, 2),
            "state": self.state,
            "detail": self.detail,
            "source": self.source,
        }


def judge(items: Iterable[Item], now: dt.datetime, warn_days: float, crl_warn_days: float) -> list[Item]:
    result = []
    for item in items:
        if item.until is not None:
            item.days = days_left(item.until, now)
            window = crl_warn_days if item.kind == "crl" else warn_days
            if item.state == "ok" and item.kind != SUPERSEDED:
                if item.days < 0:
                    item.state = "expired"
                elif item.days < window:
                    item.state = "window"
        result.append(item)
    order = {"unreachable": 0, "invalid": 0}
    return sorted(result, key=lambda i: (order.get(i.state, 1), i.days if i.days is not None else float("-inf"), i.kind, i.name))


def certificate_item(kind: str, cert: x509.Certificate, source: str) -> Item:
    name = cert_facts.common_name(cert.subject) or cert.subject.rfc4514_string()
    return Item(kind, name, cert.not_valid_after_utc, source, detail=f"thumbprint {cert_facts.thumbprint(cert)}")


# ---------------------------------------------------------------------------------------------
# PKI directory


def pki_items(directory: str) -> tuple[list[Item], list[x509.Certificate], list[str], list[tuple[str, Item]]]:
    """(CA and device items, CA certificates, CRL URLs of the PKI, (path, item) of local CRL files)."""
    root = Path(directory)
    index_path = root / "index.json"
    if not (root / "ca.pem").is_file() or not index_path.is_file():
        raise InputError(f"--pki {root}: no CA there (ca.pem and index.json missing)")
    try:
        index = json.loads(read_text(index_path, INDEX_FILE_LIMIT))
    except (OSError, ValueError) as exc:
        raise InputError(f"--pki {root}: index.json unreadable ({exc})") from None
    items: list[Item] = []
    cas: list[x509.Certificate] = []
    for stem in ("ca", "root"):
        path = root / f"{stem}.pem"
        if path.is_file():
            try:
                found = cert_facts.read_certificates(path)
            except (OSError, ValueError) as exc:
                raise InputError(f"--pki {path}: {exc}") from None
            for cert in found:
                cas.append(cert)
                items.append(certificate_item("ca-certificate", cert, str(path)))
    for name, entry in sorted((index.get("certificates") or {}).items()):
        if not isinstance(entry, dict):
            continue
        items += superseded_items(name, entry, str(index_path))
        if entry.get("status") != "valid":
            continue
        until = parse_time(entry.get("notAfter"))
        kind = "device-certificate" if entry.get("kind") == "client" else "server-certificate"
        items.append(Item(kind, name, until, f"{index_path} ({entry.get('kind')})", detail=f"serial {entry.get('serial')}"))
    ca = index.get("ca") or {}
    urls = [u for u in list(ca.get("crlUrls") or []) + list(ca.get("rootCrlUrls") or []) if isinstance(u, str)]
    local: list[tuple[str, Item]] = []
    for stem in ("crl", "root-crl"):
        path = root / f"{stem}.pem"
        if path.is_file():
            try:
                for crl in cert_facts.read_crls(path):
                    local.append((str(path), crl_item(crl, f"{path} (local; publish before nextUpdate)", cas)))
            except (OSError, ValueError) as exc:
                local.append((str(path), Item("crl", str(path), None, str(path), "invalid", f"unreadable CRL ({exc})")))
    return items, cas, urls, local


def superseded_items(name: str, entry: dict[str, Any], source: str) -> list[Item]:
    """The still valid certificates `pki renew` superseded for this name, each until the end of
    its grace period (or its notAfter, if sooner)."""
    items = []
    for record in entry.get("previous") or ():
        if not isinstance(record, dict) or record.get("status") != "valid":
            continue
        ends = [t for t in (parse_time(record.get("graceUntil")), parse_time(record.get("notAfter"))) if t is not None]
        detail = f"serial {record.get('serial')}, superseded by serial {entry.get('serial')} (renew); `pki crl` revokes it once its grace ends"
        items.append(Item(SUPERSEDED, name, min(ends) if ends else None, f"{source} (previous)", detail=detail))
    return items


# ---------------------------------------------------------------------------------------------
# CRLs at their CDP URLs


def fetch(url: str, timeout: float) -> bytes:
    """The body at url, bounded by ONE deadline of `timeout` seconds for connect, request and the
    whole answer (urllib's timeout is per socket operation: a host trickling a byte a second would
    hold it for minutes). The fetch runs in a daemon thread; past the deadline it is abandoned."""
    outcome: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": f"{PROJECT}-ops"})
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (http CDP URLs by design)
                outcome.put((True, answer.read(FETCH_LIMIT)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it is
            outcome.put((False, exc))

    threading.Thread(target=run, name=f"fetch {url}", daemon=True).start()
    try:
        ok, value = outcome.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"no complete answer within {timeout:g} s") from None
    if not ok:
        raise value
    return value


CERTIFICATE_SUFFIXES = (".cer", ".crt", ".p7c")  # AIA caIssuers files (RFC 5280 4.2.2.1 names .cer and .p7c)


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def crl_item(crl: x509.CertificateRevocationList, source: str, cas: Sequence[x509.Certificate]) -> Item:
    issuer = cert_facts.common_name(crl.issuer) or crl.issuer.rfc4514_string()
    number = _crl_number(crl)
    item = Item("crl", f"CRL {number if number is not None else '?'} of {issuer}", crl.next_update_utc, source)
    item.issuer, item.number = crl.issuer.rfc4514_string(), number
    item.detail = f"thisUpdate {iso(crl.last_update_utc)}, {len(list(crl))} revoked"
    if crl.next_update_utc is None:
        item.state, item.detail = "invalid", item.detail + ", no nextUpdate"
    signers = [c for c in cas if c.subject == crl.issuer]
    if signers and not any(crl.is_signature_valid(cast(CertificateIssuerPublicKeyTypes, c.public_key())) for c in signers):
        item.state, item.detail = "invalid", f"signature does not verify with the CA '{issuer}' ({item.detail})"
    elif cas and not signers:
        known = ", ".join(sorted({cert_facts.common_name(c.subject) or c.subject.rfc4514_string() for c in cas}))
        item.state, item.detail = "invalid", f"issued by '{issuer}', none of the CAs ({known}): another CA's CRL; IIS answers 403.13 ({item.detail})"
    elif not cas:
        item.detail += "; its issuer and signature not checked (no CA known: give --pki DIR or --stack-outputs FILE)"
    if crl.last_update_utc > now_utc() + CLOCK_SKEW:
        item.state, item.detail = "invalid", f"thisUpdate {iso(crl.last_update_utc)} is in the future ({item.detail})"
    return item


def crl_url_items(urls: Sequence[str], cas: Sequence[x509.Certificate], timeout: float, certificate_urls: Iterable[str] = ()) -> list[Item]:
    """One item per CRL found at each URL. certificate_urls: URLs known to serve a CA certificate
    (AIA caIssuers): a certificate there is no finding; anywhere else it is a failure row."""
    certificate_urls = set(certificate_urls)
    items = []
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https"):
            continue
        try:
            data = fetch(url, timeout)
        except urllib.error.HTTPError as exc:
            items.append(Item("crl", url, None, url, "unreachable", f"HTTP {exc.code} {exc.reason}: the beacon gets the same, devices get 403.13"))
            continue
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            items.append(Item("crl", url, None, url, "unreachable", f"cannot fetch: {reason}"))
            continue
        try:
            crls = cert_facts.load_crls(data)
        except ValueError:
            try:
                served = cert_facts.load_certificates(data)
                if url in certificate_urls or urlsplit(url).path.lower().endswith(CERTIFICATE_SUFFIXES):
                    continue  # an AIA certificate URL listed with the CRL egress URLs: not a CRL
                items.append(Item("crl", url, None, url, "invalid", f"serves a certificate ({served[0].subject.rfc4514_string()}), not a CRL: the beacon's revocation check fails, devices get 403.13"))
                continue
            except ValueError:
                items.append(Item("crl", url, None, url, "invalid", f"{len(data)} bytes that are neither a CRL nor a certificate"))
                continue
        for crl in crls:
            items.append(crl_item(crl, url, cas))
    return items


def unpublished(local: Sequence[tuple[str, Item]], published: Sequence[Item]) -> list[str]:
    """Local CRLs (path, item) newer than the published ones of the same issuer: publish them."""
    notes = []
    for path, item in local:
        for served in published:
            if served.issuer and served.issuer == item.issuer and item.number is not None and served.number is not None and item.number > served.number:
                notes.append(f"{path} holds {item.name} but {served.source} serves CRL {served.number}: publish the new one")
    return notes


# ---------------------------------------------------------------------------------------------
# CloudWatch


def metric_data(items: Sequence[Item], stack: str, now: dt.datetime) -> list[dict[str, Any]]:
    """DaysLeft per kind (the minimum: what an alarm needs) and per named item except devices
    (one metric per device would cost more than it tells); CrlUnreachable as a count."""
    data: list[dict[str, Any]] = []
    for kind in KINDS:
        values = [i.days for i in items if i.kind == kind and i.days is not None]
        if values:
            data.append({
                "MetricName": "DaysLeft",
                "Dimensions": [{"Name": "Stack", "Value": stack}, {"Name": "Kind", "Value": kind}],
                "Timestamp": now,
                "Value": round(min(values), 3),
                "Unit": "None",
            })
    for item in items:
        if item.kind in ("device-certificate", SUPERSEDED) or item.days is None:
            continue
        data.append({
            "MetricName": "DaysLeft",
            "Dimensions": [{"Name": "Stack", "Value": stack}, {"Name": "Kind", "Value": item.kind}, {"Name": "Name", "Value": item.name[:255]}],
            "Timestamp": now,
            "Value": round(item.days, 3),
            "Unit": "None",
        })
    data.append({
        "MetricName": "CrlUnreachable",
        "Dimensions": [{"Name": "Stack", "Value": stack}],
        "Timestamp": now,
        "Value": float(sum(1 for i in items if i.kind == "crl" and i.state in ("unreachable", "invalid"))),
        "Unit": "Count",
    })
    return data


def put_metrics(aws: Any, data: Sequence[dict[str, Any]]) -> int:
    cloudwatch = aws.client("cloudwatch")
    for start in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=list(data[start:start + 500]))
    return len(data)


def dedupe_urls(*groups: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for group in groups:
        for url in group:
            if isinstance(url, str) and url and url not in seen:
                seen.append(url)
    return seen


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--crl-url: got {url!r}; expected an http(s):// URL")
    return url


def fail_if_empty(items: Sequence[Item]) -> None:
    if not items:
        raise InputError("nothing to check: give --pki DIR, --stack NAME or --stack-outputs FILE (server certificate), or --crl-url URL")
