"""The readiness model: what the agents sent, aggregated while the lines are read.

Pure (no AWS): scripts/ops/readiness.py feeds it the lines it reads; :meth:`Aggregator.finish`
judges the devices (scripts/ops/readiness_outcome.py) and readiness renders the result.

Nothing is merged by client address or user agent (every FlexNet agent sends the same user agent,
and many devices sit behind one NAT address):
- a request with a client certificate counts for that certificate as logged (subject, issuer,
  serial, flags: a :class:`Presentation`); the presentations of one subject CN are one device;
- a request without one counts for the device its URL names, when it names one (a policy
  download `deviceName-UID.npl`, scripts/ops/mapping_judgment.py), else for its client address
  (an :class:`Anonymous` entry: at least one device nobody can name from the log).
Every tally keeps its requests in the recent window (from `recent_from`) apart.
"""

from __future__ import annotations

import datetime as dt
from operator import itemgetter
from typing import Callable, Iterable, Mapping, Sequence

from . import w3c
from .readiness_outcome import (
    STATES,
    STATUS_MEANINGS,
    DeviceResult,
    Outcome,
    epoch_iso,
    judge_anonymous,
    judge_certificate,
    refused,
    status_meaning,
)
from .mapping_judgment import Rules, issuer_mappings, npl_device

__all__ = ["AGENT_PATHS", "CERT_FIELDS", "STATES", "STATUS_MEANINGS", "Aggregator", "Anonymous", "DeviceResult", "HeaderLookup",
           "Outcome", "Presentation", "epoch_iso", "refused", "status_meaning"]

EXAMPLES = 5  # malformed lines kept as examples
AGENT_PATHS = ("/ManageSoftDL/", "/ManageSoftRL/")
CERT_FIELDS = ("crt-subject", "crt-issuer", "crt-serial", "crt-flags")
EVERYTHING_RECENT = -(1 << 62)
_REFUSED = ("401", "403")


class Presentation:
    """One client certificate as logged (subject, issuer, serial, flags: raw values) and the
    requests that carried it: counts, first/last seen (epoch seconds), statuses, the refused
    statuses of the recent window, the addresses it came from."""

    __slots__ = ("subject", "issuer", "serial", "flags", "requests", "recent", "first", "last", "last_line", "last_plan", "last_stream", "statuses",
                 "recent_refused", "ip", "ips")

    def __init__(self, subject: str, issuer: str, serial: str, flags: str):
        self.subject, self.issuer, self.serial, self.flags = subject, issuer, serial, flags
        self.requests = 0
        self.recent = 0
        self.first = 1 << 62
        self.last = -1
        self.last_line = ""  # the request of `last`, as read (its values taken apart only when asked for: last_request)
        self.last_plan: _Plan | None = None
        self.last_stream = ""
        self.statuses: dict[str, int] = {}
        self.recent_refused: dict[str, int] = {}
        self.ip = ""
        self.ips: set[str] = set()

    @property
    def last_request(self) -> tuple[str, str, str, str]:
        """(status, client ip, user agent, stream) of the last request."""
        plan = self.last_plan
        if plan is None:
            return ("", "", "", "")
        count, pick, pad = plan.positions[:3]
        values = w3c.split_values(self.last_line, count) or []
        if pad:
            values.append("-")
        _, _, ip, agent, status, sub = pick(values)[:6]
        return (status if sub == "0" or sub == "-" else f"{status}.{sub}", ip, agent, self.last_stream)


class Anonymous:
    """Requests without a client certificate from one client address, or naming one device."""

    __slots__ = ("key", "kind", "requests", "recent", "first", "last", "last_request", "statuses", "uploads", "recent_uploads", "ips")

    def __init__(self, key: str, kind: str):
        self.key = key
        self.kind = kind  # address | name
        self.requests = 0
        self.recent = 0
        self.first = 1 << 62
        self.last = -1
        self.last_request: tuple[str, str, str, str] = ("", "", "", "")
        self.statuses: dict[str, int] = {}
        self.uploads = 0  # to the upload application (ManageSoftRL); the rest are downloads
        self.recent_uploads = 0
        self.ips: set[str] = set()


class _Plan:
    """Positions of the fields the aggregation reads, for one #Fields: line. An absent field
    points at the '-' the hot loop appends after the values (position `count`), only when the
    header lacks one (`pad`). `pick` takes them out of a line's values in one call, in the order
    date, time, c-ip, cs(User-Agent), sc-status, sc-substatus, crt-subject, crt-issuer,
    crt-serial, crt-flags, cs-uri-stem."""

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
        picked = (at("date"), at("time"), at("c-ip"), at("cs(User-Agent)"), at("sc-status"), at("sc-substatus"), subject,
                  at("crt-issuer"), at("crt-serial"), at("crt-flags"), at("cs-uri-stem"))
        self.positions = (
            count, itemgetter(*picked), count in picked, timed, filter_paths and fields.position("cs-uri-stem") >= 0, self.has_cert_fields,
        )


class _StreamState:
    __slots__ = ("plan", "looked_up")

    def __init__(self) -> None:
        self.plan: _Plan | None = None
        self.looked_up = False


HeaderLookup = Callable[[str, int], "str | None"]


class Aggregator:
    """Feed it log lines (stream, text, event time); judge the devices at the end."""

    def __init__(self, paths: Sequence[str] = (), header_lookup: HeaderLookup | None = None, recent_from: int | None = None):
        self.paths = tuple(paths)
        self.prefixes = tuple(p.lower() for p in paths)
        self.header_lookup = header_lookup
        self.recent_from = EVERYTHING_RECENT if recent_from is None else recent_from
        self.presentations: dict[tuple[str, str, str, str], Presentation] = {}
        self._by_subject: dict[str, Presentation] = {}  # logged subject -> its presentation seen last
        self.addresses: dict[str, Anonymous] = {}  # client ip -> its requests without a certificate naming no device
        self.named: dict[str, Anonymous] = {}  # device name (case-folded) -> its requests without a certificate
        self.streams: dict[str, _StreamState] = {}
        self.headerless: dict[str, int] = {}  # stream -> lines that came before any #Fields: line it has
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._days: dict[str, int] = {}
        self._day_text, self._day_value = "", 0
        self._minutes: dict[str, int] = {}
        self.lines = 0
        self.requests = 0
        self.recent_requests = 0
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

    def _clock(self, text: str) -> int:
        """Seconds from midnight to 'hh:mm:ss'."""
        minute = self._minutes.get(text[:5])
        if minute is None:
            minute = self._minute(text[:5])
        if len(text) != 8 or text[5] != ":" or not text[6:].isdigit():
            raise ValueError(text)
        return minute + int(text[6:])

    def _anonymous(self, ip: str, uri: str) -> Anonymous:
        """The entry of a request without a certificate: the device its URL names, else its address."""
        name = npl_device(uri) if uri[-4:].lower() == ".npl" else None
        if name is not None:
            key = name.casefold()
            entry = self.named.get(key)
            if entry is None:
                entry = self.named[key] = Anonymous(name, "name")
        else:
            entry = self.addresses.get(ip)
            if entry is None:
                entry = self.addresses[ip] = Anonymous(ip, "address")
        entry.ips.add(ip)
        return entry

    # -- the hot path --------------------------------------------------------------------------

    def add(self, stream: str, message: str, event_ms: int) -> None:
        """One log event."""
        self.feed(((stream, event_ms, message),))

    def feed(self, events: Iterable[tuple[str, int, str]]) -> None:
        """Log events (stream, timestamp ms, message): normally one line each; an event holding
        several lines is split. One loop with everything in local variables: this is where the
        time goes with millions of lines."""
        presentations, streams, by_subject = self.presentations, self.streams, self._by_subject
        prefixes, exact, recent_from = self.prefixes, self.paths, self.recent_from
        day_text, day_value = self._day_text, self._day_value
        clock_text: str | None = None  # the time of the last line read, `seconds` from midnight
        seconds = 0
        current: str | None = None
        state = _StreamState()
        plan: _Plan | None = None
        count = 0
        pick = itemgetter(0)
        pad = False
        timed = filter_paths = cert_fields = False
        lines = requests = recent = ignored = without = 0
        try:
            for stream, stamp, line in events:
                if "\n" in line:  # an event of several lines: each on its own, then on with the next event
                    self._day_text, self._day_value = day_text, day_value
                    self.feed([(stream, stamp, part) for part in line.split("\n")])
                    day_text, day_value = self._day_text, self._day_value
                    current = None
                    continue
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
                        count, pick, pad, timed, filter_paths, cert_fields = plan.positions
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
                                count, pick, pad, timed, filter_paths, cert_fields = plan.positions
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
                            count, pick, pad, timed, filter_paths, cert_fields = plan.positions
                            self.headers_looked_up += 1
                    if plan is None:
                        self.headerless[stream] = self.headerless.get(stream, 0) + 1
                        self._bad(stream, line, "no #Fields: line before it in its log stream")
                        continue
                values = line.split(" ")
                if len(values) != count:
                    quoted = w3c.split_values(line, count)
                    if quoted is None:
                        self._bad(stream, line, f"{len(values)} values for the {count} fields of the #Fields: line in force")
                        continue
                    values = quoted
                if pad:
                    values.append("-")  # what an absent field reads
                day, clock, ip, agent, status, sub, subject, issuer, serial, flags, uri = pick(values)
                if filter_paths and not uri.startswith(exact) and not uri.lower().startswith(prefixes):  # IIS paths are case-insensitive
                    ignored += 1
                    continue
                if timed:
                    if clock != clock_text or day != day_text:  # lines come in time order: mostly the same second
                        try:
                            if day != day_text:
                                day_value = self._day(day)
                                day_text = day
                            seconds = self._clock(clock)
                        except ValueError:
                            self._bad(stream, line, f"date/time {day} {clock} is not yyyy-mm-dd hh:mm:ss")
                            continue
                        clock_text = clock
                    at = day_value + seconds
                else:
                    at = stamp // 1000
                if sub != "0" and sub != "-":
                    status = f"{status}.{sub}"
                requests += 1
                if subject != "-":
                    tally = by_subject.get(subject)  # one string hashed, not four
                    if tally is None or tally.issuer != issuer or tally.serial != serial or tally.flags != flags:
                        key = (subject, issuer, serial, flags)
                        tally = presentations.get(key)
                        if tally is None:
                            tally = presentations[key] = Presentation(*key)
                        by_subject[subject] = tally
                    if ip != tally.ip:
                        tally.ip = ip
                        tally.ips.add(ip)
                    if at >= recent_from:
                        recent += 1
                        tally.recent += 1
                        if status[:3] in _REFUSED:
                            tally.recent_refused[status] = tally.recent_refused.get(status, 0) + 1
                    tally.requests += 1
                    statuses = tally.statuses
                    statuses[status] = statuses.get(status, 0) + 1
                    if at < tally.first:
                        tally.first = at
                    if at >= tally.last:
                        tally.last = at
                        tally.last_line = line  # taken apart only if asked for (last_request)
                        tally.last_plan = plan
                        tally.last_stream = stream
                else:
                    if not cert_fields:  # (a subject is '-' without them)
                        without += 1
                    entry = self._anonymous(ip, uri)
                    upload = uri[1:13].lower() == "managesoftrl"
                    entry.uploads += upload
                    if at >= recent_from:
                        recent += 1
                        entry.recent += 1
                        entry.recent_uploads += upload
                    entry.requests += 1
                    statuses = entry.statuses
                    statuses[status] = statuses.get(status, 0) + 1
                    if at < entry.first:
                        entry.first = at
                    if at >= entry.last:
                        entry.last = at
                        entry.last_request = (status, ip, agent, stream)
        finally:
            self.lines += lines
            self.requests += requests
            self.recent_requests += recent
            self.ignored_paths += ignored
            self.without_cert_fields += without
            self._day_text, self._day_value = day_text, day_value

    # -- the result ----------------------------------------------------------------------------

    def devices(self) -> dict[str, list[Presentation]]:
        """The certificate devices: presentations grouped by the subject's CN (the whole subject
        without one); renewed certificates of one device (same CN) are one device."""
        found: dict[str, list[Presentation]] = {}
        for presentation in self.presentations.values():
            text = w3c.decode(presentation.subject)
            found.setdefault(w3c.dn_value(text, "CN") or text, []).append(presentation)
        return found

    def finish(
        self,
        issuer_cns: Sequence[str],
        beacon_names: Mapping[str, str] | None = None,
        rules: Rules | None = None,
        expected: "Mapping[str, str] | None" = None,
    ) -> Outcome:
        """Judge every device. rules: the mappings IIS will apply (default: an Allow mapping per
        issuer CN); expected: the devices issued a certificate (case-folded CN -> CN, e.g. from
        --pki), listed as unseen when nothing of theirs is in the window."""
        rules = rules or issuer_mappings(issuer_cns, "the issuing CAs' Issuer rules")
        names = beacon_names or {}
        devices = self.devices()
        by_name: dict[str, str] = {}
        for key in devices:
            by_name.setdefault(key.casefold(), key)
            by_name.setdefault(key.split(".")[0].casefold(), key)  # a CN that is the device's FQDN
        attached: dict[str, list[Anonymous]] = {}
        loose: list[Anonymous] = list(self.addresses.values())
        for folded, entry in self.named.items():
            owner = by_name.get(folded)
            if owner is None:
                loose.append(entry)
            else:
                attached.setdefault(owner, []).append(entry)
        results = [
            judge_certificate(key, presentations, attached.get(key, []), issuer_cns, rules, names)
            for key, presentations in devices.items()
        ]
        addresses_seen: dict[str, list[str]] = {}
        first_certificate_at: dict[str, int] = {}  # address -> earliest certificate of a device seen there
        for key, presentations in devices.items():
            for p in presentations:
                for ip in p.ips:
                    first_certificate_at[ip] = min(first_certificate_at.get(ip, p.first), p.first)
            for ip in {ip for p in presentations for ip in p.ips}:
                addresses_seen.setdefault(ip, []).append(key)
        results += [judge_anonymous(entry, addresses_seen, names, first_certificate_at) for entry in loose]
        seen = {r.identity.casefold() for r in results} | set(by_name)
        unseen = sorted(cn for folded, cn in (expected or {}).items() if folded not in seen)
        return Outcome.of(self, results, list(issuer_cns), rules, unseen, len(expected) if expected is not None else None)
