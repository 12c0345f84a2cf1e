"""The readiness verdict: each device judged as IIS will judge it under `require`, and the stack's.

A certificate device (one subject CN, scripts/ops/readiness_model.py) is judged on every request of it in
the recent window (on all of them when it sent none there):
  failing          a request was refused (401.x, 403.x: revoked, expired, untrusted ...)
  refused-by-rule  IIS's mappings would refuse its certificate (401.2): a Deny mapping matches,
                   or no Allow mapping does (scripts/ops/mapping_judgment.py names the rule)
  other-issuer     its issuer CN is not a configured issuing CA, or IIS does not recognise the
                   issuer (CERT_FLAGS bit 1)
  no-certificate   requests whose URL names the device came without a certificate
  ready            none of these: every request carried a certificate IIS admits
Requests without a certificate naming no known device are listed per address (or per device name
the URL gives): `no-certificate` with requests in the recent window, `earlier-no-certificate`
(listed, not counted) without. Devices issued a certificate (--pki) but not seen are `unseen`
(listed, not counted).

The stack is ready when the evidence is conclusive, no request in the recent window came without
a certificate, and the ready share reaches --min-ready; inconclusive when no agent request was
read (in the window, or in the recent window), more than 1% of the lines are unreadable, a stream's
#Fields: line cannot be found, or fewer devices than --min-devices were seen.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from components.certs.verdict import IIS_STATUS
from components.iis.mapping_rules import wildcard_match

from . import w3c
from .common import iso
from .mapping_judgment import Rules, judge

if TYPE_CHECKING:
    from .readiness_model import Aggregator, Anonymous, Presentation

COUNTED = ("failing", "refused-by-rule", "other-issuer", "no-certificate", "ready")
STATES = COUNTED + ("earlier-no-certificate", "unseen")
UNREADABLE_PERCENT = 1.0  # more unreadable lines than this share of the lines read: inconclusive
SHOWN = 5  # names shown in a one-line reason

# What each status means for a device (the acceptance verdict's table, plus the rest an agent
# can meet on a beacon). Sub-status 0 is written without it: "200", "401".
STATUS_MEANINGS: dict[str, str] = {
    **IIS_STATUS,
    "401": "authentication required (the challenge; no credentials or certificate accepted yet)",
    "401.1": "logon failed: the account the certificate mapping names cannot log on",
    "401.2": "logon failed by server configuration: no Allow mapping matched (anonymous off), or a Deny mapping matched",
    "401.3": "refused by the file's access control list",
    "401.4": "refused by an authorization filter",
    "401.5": "refused by an ISAPI/CGI application",
    "403": "forbidden",
    "403.4": "SSL required",
    "403.12": "refused by the client certificate mapper",
    "403.14": "directory listing refused",
    "403.502": "too many requests from the client's address (dynamic IP restrictions)",
    "403.503": "the client's address is refused (IP restrictions)",
}


def status_meaning(status: str) -> str:
    if status in STATUS_MEANINGS:
        return STATUS_MEANINGS[status]
    major = status.split(".")[0]
    if major in ("401", "403"):
        return f"{'unauthorized' if major == '401' else 'forbidden'} (sub-status {status.partition('.')[2] or '0'})"
    if major.isdigit():
        return {"2": "success", "3": "redirection", "4": "client error", "5": "server error"}.get(major[:1], "")
    return ""


def refused(status: str) -> bool:
    return status.startswith("401") or status.startswith("403")


def epoch_iso(epoch: int) -> str | None:
    if epoch < 0 or epoch >= 1 << 62:
        return None
    return iso(dt.datetime.fromtimestamp(epoch, dt.timezone.utc))


def _beacon(stream: str, names: Mapping[str, str]) -> str:
    for instance_id, name in names.items():
        if instance_id and instance_id in stream:
            return f"{name} ({stream})"
    return stream


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _counts(statuses: Mapping[str, int]) -> str:
    return ", ".join(f"{s} x{c}" for s, c in sorted(statuses.items(), key=lambda i: (-i[1], i[0])))


@dataclass
class DeviceResult:
    identity: str
    kind: str  # certificate | address | name | expected
    state: str
    why: str
    requests: int = 0
    recent: int = 0
    first: int = 1 << 62
    last: int = -1
    last_status: str = ""
    subject: str = ""
    issuer: str = ""
    issuer_cn: str | None = None
    issuer_configured: bool | None = None
    issuer_recognised: bool | None = None
    serial: str = ""
    flags: int | None = None
    client_ip: str = ""
    user_agent: str = ""
    beacon: str = ""
    statuses: dict[str, int] = field(default_factory=dict)
    mapping: str | None = None  # the mapping that admits or refuses it
    without: dict[str, int] | None = None  # requests without a certificate: downloads, uploads (all, recent)
    same_address: list[str] = field(default_factory=list)  # certificate devices seen from the address

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "identity": self.identity,
            "kind": self.kind,
            "state": self.state,
            "why": self.why,
            "requests": self.requests,
            "recentRequests": self.recent,
            "firstSeen": epoch_iso(self.first),
            "lastSeen": epoch_iso(self.last),
            "lastStatus": self.last_status or None,
            "lastStatusMeaning": status_meaning(self.last_status) if self.last_status else None,
            "certificate": None
            if not self.subject
            else {
                "subject": self.subject,
                "issuer": self.issuer or None,
                "issuerCN": self.issuer_cn,
                "issuerConfigured": self.issuer_configured,
                "issuerRecognisedByServer": self.issuer_recognised,
                "serial": self.serial or None,
                "flags": self.flags,
                "mapping": self.mapping,
            },
            "clientIp": self.client_ip or None,
            "userAgent": self.user_agent or None,
            "beacon": self.beacon or None,
            "statuses": dict(sorted(self.statuses.items())),
        }
        if self.without is not None:
            body["withoutCertificate"] = self.without
        if self.same_address:
            body["certificatesFromTheSameAddress"] = self.same_address
        return body


def _certificate_facts(p: "Presentation", issuer_cns: Sequence[str]) -> tuple[str, str, str | None, int | None, bool, bool | None]:
    """(subject, issuer, issuer CN, flags, issuer configured, issuer recognised by IIS)."""
    return _facts(p.subject, p.issuer, p.flags, tuple(issuer_cns))


@lru_cache(maxsize=16384)  # twice per device; the issuer's facts alike for thousands of devices
def _facts(logged_subject: str, logged_issuer: str, logged_flags: str, issuer_cns: tuple[str, ...]) -> tuple[str, str, str | None, int | None, bool, bool | None]:
    subject, issuer = w3c.decode(logged_subject), w3c.decode(logged_issuer)
    flags = w3c.cert_flags(logged_flags)
    issuer_cn = w3c.dn_value(issuer, "CN") if issuer else None
    configured = issuer_cn is not None and any(wildcard_match(cn, issuer_cn) for cn in issuer_cns)
    recognised = None if flags is None else not bool(flags & 2)
    return subject, issuer, issuer_cn, flags, configured, recognised


def judge_certificate(
    key: str, presentations: Sequence["Presentation"], attached: Sequence["Anonymous"], issuer_cns: Sequence[str],
    rules: Rules, beacon_names: Mapping[str, str],
) -> DeviceResult:
    """One certificate device, on every request of it in the recent window (else on all)."""
    recent = any(p.recent for p in presentations) or any(a.recent for a in attached)
    where = " in the recent window" if recent else ""
    window = [p for p in presentations if p.recent] if recent else list(presentations)
    refusals: dict[str, int] = {}
    for p in presentations:
        for status, count in (p.recent_refused.items() if recent else ((s, c) for s, c in p.statuses.items() if refused(s))):
            refusals[status] = refusals.get(status, 0) + count
    without = sum(a.recent if recent else a.requests for a in attached)
    problems: dict[str, str] = {}
    admitted_by: str | None = None
    refused_by: str | None = None
    for p in sorted(window, key=lambda p: -p.last):
        subject, issuer, issuer_cn, _, configured, recognised = _certificate_facts(p, issuer_cns)
        which = f" (certificate serial {w3c.serial_hex(p.serial) or '-'})" if len(window) > 1 else ""
        if not configured:
            problems.setdefault("other-issuer", f"issuer CN {issuer_cn or issuer or '-'!r} is not a configured issuing CA{which}")
        elif recognised is False:
            problems.setdefault("other-issuer", f"IIS does not recognise the issuer {issuer_cn!r} (CERT_FLAGS bit 1){which}")
        verdict = judge(subject, issuer, w3c.serial_hex(p.serial), rules)
        if not verdict.accepted:
            refused_by = refused_by or (verdict.mapping.name if verdict.mapping else None)
            if configured and recognised is not False:
                problems.setdefault("refused-by-rule", f"401.2 under require: {verdict.detail}{which}")
        elif admitted_by is None:
            admitted_by = verdict.mapping.name if verdict.mapping else "one-to-one"
    if refusals:
        worst = max(refusals, key=lambda s: (refusals[s], s))
        problems["failing"] = f"refused{where}: {_counts(refusals)} ({status_meaning(worst)})"
    if without:
        names = sorted({a.key for a in attached})
        problems["no-certificate"] = f"{without} request(s){where} naming it in the URL ({_listed(names)}-*.npl) came without a certificate"
    state = next((s for s in COUNTED if s in problems), "ready")
    last = max(presentations, key=lambda p: p.last)
    subject, issuer, issuer_cn, flags, configured, recognised = _certificate_facts(last, issuer_cns)
    status, ip, agent, stream = last.last_request
    statuses: dict[str, int] = {}
    for tally in [*presentations, *attached]:
        for s, c in tally.statuses.items():
            statuses[s] = statuses.get(s, 0) + c
    return DeviceResult(
        identity=key,
        kind="certificate",
        state=state,
        why=problems.get(state) or (f"admitted by Allow mapping '{admitted_by}'" if admitted_by != "one-to-one" else "admitted by a one-to-one mapping"),
        requests=sum(t.requests for t in [*presentations, *attached]),
        recent=sum(t.recent for t in [*presentations, *attached]),
        first=min(t.first for t in [*presentations, *attached]),
        last=max(t.last for t in [*presentations, *attached]),
        last_status=status,
        subject=subject,
        issuer=issuer,
        issuer_cn=issuer_cn,
        issuer_configured=configured,
        issuer_recognised=recognised,
        serial=w3c.serial_hex(last.serial) if last.serial != "-" else "",
        flags=flags,
        client_ip=w3c.decode(ip),
        user_agent=w3c.decode(agent),
        beacon=_beacon(stream, beacon_names),
        statuses=statuses,
        mapping=refused_by if state == "refused-by-rule" else admitted_by,
    )


def judge_anonymous(
    entry: "Anonymous", addresses_seen: Mapping[str, Sequence[str]], beacon_names: Mapping[str, str],
    first_certificate_at: Mapping[str, int] | None = None,
) -> DeviceResult:
    """Requests without a certificate from one address (or naming one device nobody else is).

    Blocking (`no-certificate`) when any came in the recent window; when the URL names a device
    that never presented a certificate (whatever their age: it is not enrolled); and when they
    came from an address after a certificate had come from it (an enrolled device that still
    sends some requests, e.g. its uploads, without one). Only requests from before any
    certificate of their address, and outside the recent window, are `earlier-no-certificate`:
    a device's history before it was enrolled."""
    recent = entry.recent > 0
    enrolled_at = (first_certificate_at or {}).get(entry.key)
    after_enrolment = entry.kind == "address" and enrolled_at is not None and entry.last > enrolled_at
    blocking = recent or entry.kind == "name" or after_enrolment
    count, uploads = (entry.recent, entry.recent_uploads) if recent else (entry.requests, entry.uploads)
    where = " in the recent window" if recent else " (none in the recent window)"
    why = f"{count} request(s) without a certificate{where}: {count - uploads} download(s), {uploads} upload(s)"
    if not recent and entry.kind == "name":
        why += "; the device never presented a certificate"
    elif not recent and after_enrolment:
        why += f"; after a certificate had come from this address ({epoch_iso(enrolled_at or 0)})"
    same: list[str] = []
    if entry.kind == "address":
        same = sorted(addresses_seen.get(entry.key, []))
        if same:
            why += f"; certificates came from this address too ({_listed(same)}): another device, or the same one without its certificate on some requests"
    else:
        why += f"; the URL names the device (policy {entry.key}-*.npl), from {_listed(sorted(entry.ips))}"
    status, ip, agent, stream = entry.last_request
    return DeviceResult(
        identity=entry.key,
        kind=entry.kind,
        state="no-certificate" if blocking else "earlier-no-certificate",
        why=why,
        requests=entry.requests,
        recent=entry.recent,
        first=entry.first,
        last=entry.last,
        last_status=status,
        client_ip=w3c.decode(ip),
        user_agent=w3c.decode(agent),
        beacon=_beacon(stream, beacon_names),
        statuses=dict(entry.statuses),
        without={"downloads": entry.requests - entry.uploads, "uploads": entry.uploads,
                 "recentDownloads": entry.recent - entry.recent_uploads, "recentUploads": entry.recent_uploads},
        same_address=same,
    )


@dataclass(frozen=True)
class Judgement:
    """The stack's verdict: inconclusive when the evidence cannot be trusted (whatever else),
    else not ready while any reason holds, else ready. Reasons are (code, text)."""

    state: str  # ready | not-ready | inconclusive
    inconclusive: tuple[tuple[str, str], ...] = ()
    not_ready: tuple[tuple[str, str], ...] = ()

    @property
    def passed(self) -> bool:
        return self.state == "ready"

    @property
    def reasons(self) -> tuple[tuple[str, str, str], ...]:
        """(inconclusive | not-ready, code, text) of every reason."""
        return tuple(("inconclusive", c, t) for c, t in self.inconclusive) + tuple(("not-ready", c, t) for c, t in self.not_ready)


@dataclass
class Outcome:
    aggregator: "Aggregator"
    devices: list[DeviceResult]
    issuer_cns: list[str]
    rules: Rules
    expected: int | None  # devices issued a certificate (--pki), None without
    totals: dict[str, int] = field(init=False)

    @classmethod
    def of(cls, agg: "Aggregator", results: list[DeviceResult], issuer_cns: list[str], rules: Rules, unseen: Sequence[str], expected: int | None) -> "Outcome":
        results = results + [DeviceResult(cn, "expected", "unseen", "issued a certificate (--pki), no request of it in the window") for cn in unseen]
        order = {state: number for number, state in enumerate(STATES)}
        results.sort(key=lambda r: (order[r.state], -r.last, r.identity))
        return cls(agg, results, issuer_cns, rules, expected)

    def __post_init__(self) -> None:
        self.totals = {state: 0 for state in STATES}
        for d in self.devices:
            self.totals[d.state] += 1

    @property
    def counted(self) -> list[DeviceResult]:
        """The devices the share is over: seen in the window, not only before the recent window."""
        return [d for d in self.devices if d.state in COUNTED]

    @property
    def ready_percent(self) -> float:
        counted = len(self.counted)
        return 100.0 * self.totals["ready"] / counted if counted else 0.0

    def below(self, min_ready: float | None) -> bool:
        """The ready share alone is below min_ready."""
        if min_ready is None:
            return False
        counted = len(self.counted)
        return self.totals["ready"] * 100.0 < min_ready * counted or (not counted and min_ready > 0)

    @property
    def without_certificate_recent(self) -> int:
        """Requests without a certificate in the recent window (any of them blocks the switch)."""
        agg = self.aggregator
        return sum(a.recent for a in agg.addresses.values()) + sum(a.recent for a in agg.named.values())

    def inconclusive(self, min_devices: int | None = None) -> list[tuple[str, str]]:
        agg = self.aggregator
        found: list[tuple[str, str]] = []
        if not agg.requests:
            found.append(("no-agent-requests", "no agent requests in the window"))
        elif not agg.recent_requests:
            found.append(("no-recent-agent-requests", f"no agent requests in the recent window (since {epoch_iso(agg.recent_from)})"))
        if agg.lines and agg.malformed * 100.0 > UNREADABLE_PERCENT * agg.lines:
            found.append(("unreadable-lines", f"{agg.malformed:,} of {agg.lines:,} line(s) unreadable ({100.0 * agg.malformed / agg.lines:.1f}%, more than {UNREADABLE_PERCENT:g}%)"))
        if agg.headerless:
            streams = sorted(agg.headerless)
            found.append(("no-fields-line", f"{len(streams)} stream(s) whose #Fields: line cannot be found: {_listed(streams)}"))
        if min_devices is not None and len(self.counted) < min_devices:
            found.append(("too-few-devices", f"{len(self.counted)} device(s) seen, fewer than --min-devices {min_devices}"))
        return found

    def judgement(self, min_ready: float | None, min_devices: int | None = None, also_inconclusive: Sequence[tuple[str, str]] = ()) -> Judgement:
        inconclusive = self.inconclusive(min_devices) + list(also_inconclusive)
        reasons: list[tuple[str, str]] = []
        without = self.without_certificate_recent
        if without:
            agg = self.aggregator
            recent = [a for a in [*agg.addresses.values(), *agg.named.values()] if a.recent]
            who = [a.key for a in sorted(recent, key=lambda a: (-a.last, a.key))]
            reasons.append(("requests-without-certificate", f"{without} request(s) without a certificate in the recent window, from {_listed(who)}: under require each would be refused (403.7)"))
        earlier = [d for d in self.devices if d.kind in ("address", "name") and d.state == "no-certificate" and not d.recent]
        if earlier:
            reasons.append(("earlier-requests-without-certificate",
                            f"{len(earlier)} not enrolled or not always sending a certificate (before the recent window): "
                            f"{_listed([d.identity for d in earlier])}: under require they would be refused (403.7)"))
        if self.counted and self.below(min_ready):  # nothing counted: inconclusive already
            reasons.append(("below-min-ready", f"ready share {self.ready_percent:.1f}% is below --min-ready {min_ready:g}%"))
        state = "inconclusive" if inconclusive else "not-ready" if reasons else "ready"
        return Judgement(state, tuple(inconclusive), tuple(reasons))

    def status_rows(self) -> list[dict[str, Any]]:
        requests: dict[str, int] = {}
        devices: dict[str, int] = {}
        for d in self.devices:
            for status, count in d.statuses.items():
                requests[status] = requests.get(status, 0) + count
                devices[status] = devices.get(status, 0) + 1
        return [
            {"status": s, "meaning": status_meaning(s), "requests": requests[s], "devices": devices[s]}
            for s in sorted(requests, key=lambda s: (not refused(s), [int(p) if p.isdigit() else 0 for p in s.split(".")]))
        ]
