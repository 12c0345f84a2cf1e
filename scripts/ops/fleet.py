"""The readiness model: devices, the requests counted for them, and the verdict on each.

Pure (no AWS): scripts/ops/readiness.py feeds it the lines it reads and renders what it returns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from components.certs.verdict import IIS_STATUS
from components.iis.mapping_rules import wildcard_match

from . import w3c
from .common import iso

EXAMPLES = 5  # malformed lines kept as examples
AGENT_PATHS = ("/ManageSoftDL/", "/ManageSoftRL/")
CERT_FIELDS = ("crt-subject", "crt-issuer", "crt-serial", "crt-flags")
STATES = ("failing", "other-issuer", "no-certificate", "ready")

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


# ---------------------------------------------------------------------------------------------
# Aggregation


class Device:
    """One device: counts, first/last seen (epoch seconds) and its most recent request."""

    __slots__ = ("key", "kind", "requests", "first", "last", "last_request", "statuses")

    def __init__(self, key: str, kind: str):
        self.key = key
        self.kind = kind  # certificate | address
        self.requests = 0
        self.first = 1 << 62
        self.last = -1
        # (status, subject, issuer, serial, flags, client ip, user agent, stream): raw logged values
        self.last_request: tuple[str, str, str, str, str, str, str, str] = ("", "", "", "", "", "", "", "")
        self.statuses: dict[str, int] = {}

    def absorb(self, other: "Device") -> None:
        self.requests += other.requests
        self.first = min(self.first, other.first)
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        if other.last > self.last:
            self.last, self.last_request = other.last, other.last_request


class _Plan:
    """Positions of the fields the aggregation reads, for one #Fields: line. An absent field
    points at the '-' the hot loop appends after the values (position `count`)."""

    __slots__ = ("fields", "positions", "has_cert_fields")

    def __init__(self, fields: w3c.Fields, filter_paths: bool):
        self.fields = fields
        count = fields.count

        def at(name: str) -> int:
            position = fields.position(name)
            return position if position >= 0 else count

        timed = fields.position("date") >= 0 and fields.position("time") >= 0
        self.has_cert_fields = fields.position("crt-subject") >= 0 and fields.position("crt-flags") >= 0
        subject = at("crt-subject") if self.has_cert_fields else count
        self.positions = (
            count,
            at("date"),
            at("time"),
            at("c-ip"),
            at("cs(User-Agent)"),
            at("sc-status"),
            at("sc-substatus"),
            subject,
            at("crt-issuer"),
            at("crt-serial"),
            at("crt-flags"),
            at("cs-uri-stem"),
            timed,
            filter_paths and fields.position("cs-uri-stem") >= 0,
            self.has_cert_fields,
        )


class _StreamState:
    __slots__ = ("plan", "looked_up")

    def __init__(self) -> None:
        self.plan: _Plan | None = None
        self.looked_up = False


HeaderLookup = Callable[[str, int], "str | None"]


class Aggregator:
    """Feed it log lines (stream, text, event time); read the per-device result at the end."""

    def __init__(self, paths: Sequence[str] = (), header_lookup: HeaderLookup | None = None):
        self.paths = tuple(paths)
        self.prefixes = tuple(p.lower() for p in paths)
        self.header_lookup = header_lookup
        self.devices: dict[str, Device] = {}
        self.anonymous: dict[tuple[str, str], Device] = {}
        self.cert_from: dict[tuple[str, str], tuple[int, str]] = {}  # (ip, agent) -> latest (time, device key) with a certificate
        self.streams: dict[str, _StreamState] = {}
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._subjects: dict[str, Device] = {}  # logged CERT_SUBJECT -> its device
        self._days: dict[str, int] = {}
        self._day_text, self._day_value = "", 0
        self._minutes: dict[str, int] = {}
        self._stream_state = _StreamState()
        self.lines = 0
        self.requests = 0
        self.directives = 0
        self.headers = 0
        self.headers_looked_up = 0
        self.ignored_paths = 0
        self.without_cert_fields = 0
        self.malformed = 0
        self.malformed_examples: list[dict[str, str]] = []

    # -- parsing helpers ---------------------------------------------------------------------

    def _bad(self, stream: str, line: str, reason: str) -> None:
        self.malformed += 1
        if len(self.malformed_examples) < EXAMPLES:
            shown = line if len(line) <= 300 else line[:300] + "..."
            self.malformed_examples.append({"stream": stream, "reason": reason, "line": shown.encode("unicode_escape").decode("ascii")})

    def _plan(self, text: str) -> _Plan:
        fields = w3c.Fields.parse(text)
        plan = self._plans.get(fields.names)
        if plan is None:
            plan = self._plans[fields.names] = _Plan(fields, bool(self.prefixes))
        return plan

    @property
    def fields_seen(self) -> list[w3c.Fields]:
        """The distinct #Fields: lines seen."""
        return [plan.fields for plan in self._plans.values()]

    def _day(self, text: str) -> int:
        day = self._days.get(text)
        if day is None:
            moment = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
            day = self._days[text] = int(moment.timestamp())
        return day

    def _minute(self, text: str) -> int:
        """Seconds from midnight to 'hh:mm' (cached: 1,440 at most)."""
        if len(text) != 5 or text[2] != ":" or not text[:2].isdigit() or not text[3:].isdigit() or text[:2] > "23" or text[3:] > "59":
            raise ValueError(text)
        minute = self._minutes[text] = int(text[:2]) * 3600 + int(text[3:]) * 60
        return minute

    def _certificate_device(self, subject: str) -> Device:
        """The device of a logged CERT_SUBJECT: its CN (the whole name without one); several
        logged subjects with the same CN are one device."""
        text = w3c.decode(subject)
        key = w3c.dn_value(text, "CN") or text
        device = self.devices.get(key)
        if device is None:
            device = self.devices[key] = Device(key, "certificate")
        self._subjects[subject] = device
        return device

    # -- the hot path --------------------------------------------------------------------------

    def add(self, stream: str, message: str, event_ms: int) -> None:
        """One log event."""
        self.feed(((stream, event_ms, message),))

    def feed(self, events: Iterable[tuple[str, int, str]]) -> None:
        """Log events (stream, timestamp ms, message): normally one line each; an event holding
        several lines is split. One loop with everything in local variables: this is where the
        time goes with millions of lines."""
        anonymous, cert_from, subjects, minutes, streams = self.anonymous, self.cert_from, self._subjects, self._minutes, self.streams
        prefixes, exact = self.prefixes, self.paths
        day_text, day_value = self._day_text, self._day_value
        current: str | None = None
        state = self._stream_state
        plan: _Plan | None = None
        count = i_date = i_time = i_ip = i_agent = i_status = i_sub = i_subject = i_issuer = i_serial = i_flags = i_uri = 0
        timed = filter_paths = cert_fields = False
        lines = requests = ignored = without = 0
        try:
            for stream, stamp, message in events:
                for line in message.split("\n") if "\n" in message else (message,):
                    if line[-1:] == "\r":
                        line = line.rstrip("\r")
                    if not line:
                        continue
                    lines += 1
                    if stream != current:
                        state = streams.get(stream)
                        if state is None:
                            state = streams[stream] = _StreamState()
                        current, plan = stream, state.plan
                        if plan is not None:
                            count, i_date, i_time, i_ip, i_agent, i_status, i_sub, i_subject, i_issuer, i_serial, i_flags, i_uri, timed, filter_paths, cert_fields = plan.positions
                    if line[0] == "\ufeff":
                        line = line.lstrip("\ufeff")
                        if not line:
                            continue
                    if line[0] == "#":
                        found = w3c.directive(line)
                        if found is not None:
                            self.directives += 1
                            if found[0].lower() == "fields":
                                if found[1]:
                                    plan = state.plan = self._plan(found[1])
                                    count, i_date, i_time, i_ip, i_agent, i_status, i_sub, i_subject, i_issuer, i_serial, i_flags, i_uri, timed, filter_paths, cert_fields = plan.positions
                                    self.headers += 1
                                else:
                                    self._bad(stream, line, "#Fields: directive without field names")
                            continue
                    if plan is None:
                        if not state.looked_up and self.header_lookup is not None:
                            state.looked_up = True
                            header = self.header_lookup(stream, stamp)
                            found = w3c.directive(header) if header else None
                            if found is not None and found[1]:
                                plan = state.plan = self._plan(found[1])
                                count, i_date, i_time, i_ip, i_agent, i_status, i_sub, i_subject, i_issuer, i_serial, i_flags, i_uri, timed, filter_paths, cert_fields = plan.positions
                                self.headers_looked_up += 1
                        if plan is None:
                            self._bad(stream, line, "no #Fields: line before it in its log stream")
                            continue
                    values = line.split(" ")
                    if len(values) != count:
                        quoted = w3c.split_values(line, count)
                        if quoted is None:
                            self._bad(stream, line, f"{len(values)} values for the {count} fields of the #Fields: line in force")
                            continue
                        values = quoted
                    values.append("-")  # what an absent field reads
                    if filter_paths:
                        uri = values[i_uri]
                        if not uri.startswith(exact) and not uri.lower().startswith(prefixes):  # IIS paths are case-insensitive
                            ignored += 1
                            continue
                    if timed:
                        day, clock = values[i_date], values[i_time]
                        try:
                            if day != day_text:
                                day_value = self._day(day)
                                day_text = day
                            minute = minutes.get(clock[:5])
                            if minute is None:
                                minute = self._minute(clock[:5])
                            if len(clock) != 8 or clock[5] != ":" or not clock[6:].isdigit():
                                raise ValueError(clock)
                            at = day_value + minute + int(clock[6:])
                        except ValueError:
                            self._bad(stream, line, f"date/time {day} {clock} is not yyyy-mm-dd hh:mm:ss")
                            continue
                    else:
                        at = stamp // 1000
                    status = values[i_status]
                    sub = values[i_sub]
                    if sub != "0" and sub != "-":
                        status = f"{status}.{sub}"
                    subject = values[i_subject]
                    if not cert_fields:
                        without += 1
                    requests += 1
                    pair = (values[i_ip], values[i_agent])
                    if subject != "-":
                        device = subjects.get(subject)
                        if device is None:
                            device = self._certificate_device(subject)
                        seen = cert_from.get(pair)
                        if seen is None or at >= seen[0]:
                            cert_from[pair] = (at, device.key)
                    else:
                        device = anonymous.get(pair)
                        if device is None:
                            device = anonymous[pair] = Device(" ".join(pair), "address")
                    device.requests += 1
                    statuses = device.statuses
                    statuses[status] = statuses.get(status, 0) + 1
                    if at < device.first:
                        device.first = at
                    if at >= device.last:
                        device.last = at
                        device.last_request = (status, subject, values[i_issuer], values[i_serial], values[i_flags], pair[0], pair[1], stream)
        finally:
            self.lines += lines
            self.requests += requests
            self.ignored_paths += ignored
            self.without_cert_fields += without
            self._day_text, self._day_value = day_text, day_value

    # -- the result ----------------------------------------------------------------------------

    def finish(self, issuer_cns: Sequence[str], beacon_names: Mapping[str, str] | None = None) -> "Outcome":
        devices = dict(self.devices)
        superseded = 0
        superseded_requests = 0
        standalone: list[Device] = []
        for pair, anonymous in self.anonymous.items():
            seen = self.cert_from.get(pair)
            if seen is not None and anonymous.last <= seen[0] and seen[1] in devices:
                devices[seen[1]].absorb(anonymous)
                superseded += 1
                superseded_requests += anonymous.requests
            else:
                standalone.append(anonymous)
        judged = [judge(d, issuer_cns, beacon_names or {}) for d in list(devices.values()) + standalone]
        order = {state: number for number, state in enumerate(STATES)}
        judged.sort(key=lambda r: (order[r.state], -r.last, r.identity))
        return Outcome(self, judged, list(issuer_cns), superseded, superseded_requests)


@dataclass
class DeviceResult:
    identity: str
    kind: str
    state: str
    requests: int
    first: int
    last: int
    last_status: str
    subject: str
    issuer: str
    issuer_cn: str | None
    issuer_configured: bool | None
    issuer_recognised: bool | None
    serial: str
    flags: int | None
    client_ip: str
    user_agent: str
    beacon: str
    statuses: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "kind": self.kind,
            "state": self.state,
            "requests": self.requests,
            "firstSeen": epoch_iso(self.first),
            "lastSeen": epoch_iso(self.last),
            "lastStatus": self.last_status,
            "lastStatusMeaning": status_meaning(self.last_status),
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
            },
            "clientIp": self.client_ip or None,
            "userAgent": self.user_agent or None,
            "beacon": self.beacon,
            "statuses": dict(sorted(self.statuses.items())),
        }


def epoch_iso(epoch: int) -> str | None:
    if epoch < 0 or epoch >= 1 << 62:
        return None
    return iso(dt.datetime.fromtimestamp(epoch, dt.timezone.utc))


def _beacon(stream: str, names: Mapping[str, str]) -> str:
    for instance_id, name in names.items():
        if instance_id and instance_id in stream:
            return f"{name} ({stream})"
    return stream


def judge(device: Device, issuer_cns: Sequence[str], beacon_names: Mapping[str, str]) -> DeviceResult:
    status, subject_raw, issuer_raw, serial_raw, flags_raw, ip, agent, stream = device.last_request
    flags = w3c.cert_flags(flags_raw)
    subject = w3c.decode(subject_raw)
    issuer = w3c.decode(issuer_raw)
    present = bool(subject) or (flags is not None and bool(flags & 1))
    issuer_cn = w3c.dn_value(issuer, "CN") if issuer else None
    configured = None
    recognised = None
    if present:
        configured = issuer_cn is not None and any(wildcard_match(cn, issuer_cn) for cn in issuer_cns)
        recognised = None if flags is None else not bool(flags & 2)
    if refused(status):
        state = "failing"
    elif not present:
        state = "no-certificate"
    elif not configured or recognised is False:
        state = "other-issuer"
    else:
        state = "ready"
    return DeviceResult(
        identity=device.key if device.kind == "certificate" else f"{ip} {w3c.decode(agent) or '-'}",
        kind=device.kind,
        state=state,
        requests=device.requests,
        first=device.first,
        last=device.last,
        last_status=status,
        subject=subject,
        issuer=issuer,
        issuer_cn=issuer_cn,
        issuer_configured=configured,
        issuer_recognised=recognised,
        serial=w3c.serial_hex(serial_raw) if serial_raw != "-" else "",
        flags=flags,
        client_ip=w3c.decode(ip),
        user_agent=w3c.decode(agent),
        beacon=_beacon(stream, beacon_names),
        statuses=device.statuses,
    )


@dataclass
class Outcome:
    aggregator: Aggregator
    devices: list[DeviceResult]
    issuer_cns: list[str]
    superseded: int
    superseded_requests: int
    totals: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.totals = {state: 0 for state in STATES}
        for d in self.devices:
            self.totals[d.state] += 1

    @property
    def ready_percent(self) -> float:
        return 100.0 * self.totals["ready"] / len(self.devices) if self.devices else 0.0

    def below(self, min_ready: float | None) -> bool:
        if min_ready is None:
            return False
        return self.totals["ready"] * 100.0 < min_ready * len(self.devices) or (not self.devices and min_ready > 0)

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


