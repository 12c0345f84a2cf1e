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

Speed (bench/readiness.py, issue 20 point 9): lines are read in batches of BATCH with builtins
that loop in C per line and Python per distinct value: one str.split for a whole batch
(w3c.columns), the URL's kind and the time looked up per distinct value (w3c.Times), one key per
request (logged certificate, c-ip, status, user agent, the URL's kind) counted and marked in C per
stream (log_window.KeyedRequests). The tallies are made from the keys when they are read
(:meth:`Aggregator._tally`), once per distinct key. Lines that need a decision of their own
(directives, several lines in one event, CR, BOM, a stream without its #Fields: line yet) go
through a line-by-line scan, which hands the data lines on in batches.
"""

from __future__ import annotations

from itertools import compress, islice, repeat
from operator import floordiv, lshift, or_
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
from .log_window import NO_MARK, SEQUENCE_BITS, KeyedRequests
from .mapping_judgment import Rules, issuer_mappings, npl_device

__all__ = ["AGENT_PATHS", "CERT_FIELDS", "STATES", "STATUS_MEANINGS", "Aggregator", "Anonymous", "DeviceResult", "HeaderLookup",
           "Outcome", "Presentation", "epoch_iso", "refused", "status_meaning"]

EXAMPLES = 5  # malformed lines kept as examples
AGENT_PATHS = ("/ManageSoftDL/", "/ManageSoftRL/")
CERT_FIELDS = ("crt-subject", "crt-issuer", "crt-serial", "crt-flags")
EVERYTHING_RECENT = -(1 << 62)
_REFUSED = ("401", "403")
# Lines aggregated together. Larger batches share the per-batch work among more lines, but their
# split values (about 2 KB a line) must stay in the CPU cache: measured best from 250 to 1,000.
BATCH = 500
_CACHE_MAX = 100_000  # the URLs' cache is cleared past this many entries (flat memory)


class Presentation:
    """One client certificate as logged (subject, issuer, serial, flags: raw values) and the
    requests that carried it: counts, first/last seen (epoch seconds), statuses, the refused
    statuses of the recent window, the addresses it came from, and the last request."""

    __slots__ = ("subject", "issuer", "serial", "flags", "requests", "recent", "first", "last", "mark", "last_request", "statuses",
                 "recent_refused", "ips")

    def __init__(self, subject: str, issuer: str, serial: str, flags: str):
        self.subject, self.issuer, self.serial, self.flags = subject, issuer, serial, flags
        self.requests = 0
        self.recent = 0
        self.first = 1 << 62
        self.last = -1
        self.mark = NO_MARK  # (last << SEQUENCE_BITS) | its line number: which request is the last
        self.last_request: tuple[str, str, str, str] = ("", "", "", "")  # (status, client ip, user agent, stream)
        self.statuses: dict[str, int] = {}
        self.recent_refused: dict[str, int] = {}
        self.ips: set[str] = set()


class Anonymous:
    """Requests without a client certificate from one client address, or naming one device."""

    __slots__ = ("key", "kind", "requests", "recent", "first", "last", "mark", "last_request", "statuses", "uploads", "recent_uploads", "ips")

    def __init__(self, key: str, kind: str):
        self.key = key
        self.kind = kind  # address | name
        self.requests = 0
        self.recent = 0
        self.first = 1 << 62
        self.last = -1
        self.mark = NO_MARK
        self.last_request: tuple[str, str, str, str] = ("", "", "", "")
        self.statuses: dict[str, int] = {}
        self.uploads = 0  # to the upload application (ManageSoftRL); the rest are downloads
        self.recent_uploads = 0
        self.ips: set[str] = set()


class _Plan:
    """How the lines under one #Fields: line are read: `positions` of the fields the aggregation
    uses, in the order crt-subject, crt-issuer, crt-serial, crt-flags, c-ip, sc-status,
    sc-substatus, cs(User-Agent) (the key fields), cs-uri-stem, date, time. An absent field is at
    position `count`: it reads '-'."""

    __slots__ = ("fields", "count", "positions", "timed", "filter_paths", "has_cert_fields")

    def __init__(self, fields: w3c.Fields, filter_paths: bool):
        self.fields = fields
        count = self.count = fields.count

        def at(name: str) -> int:
            position = fields.position(name)
            return position if position >= 0 else count

        self.timed = fields.position("date") >= 0 and fields.position("time") >= 0
        self.has_cert_fields = fields.position("crt-subject") >= 0 and fields.position("crt-flags") >= 0
        subject = at("crt-subject") if self.has_cert_fields else count
        self.positions = (subject, at("crt-issuer"), at("crt-serial"), at("crt-flags"), at("c-ip"), at("sc-status"), at("sc-substatus"),
                          at("cs(User-Agent)"), at("cs-uri-stem"), at("date"), at("time"))
        self.filter_paths = filter_paths and fields.position("cs-uri-stem") >= 0


def _upload(uri: str) -> bool:
    """A request to the upload application (ManageSoftRL); the others are downloads."""
    return uri[1:13].lower() == "managesoftrl"


_SEPARATOR = "\n"  # between the values of a key: never inside a value (events are split at it)
_DOWNLOAD, _UPLOAD = "", "+"  # the URL's kind in a key, when it names no device


class _StreamState:
    __slots__ = ("plan", "looked_up")

    def __init__(self) -> None:
        self.plan: _Plan | None = None
        self.looked_up = False


HeaderLookup = Callable[[str, int], "str | None"]
_Bad = tuple[int, str, str, str]  # (line number, stream, line, reason)


class Aggregator:
    """Feed it log lines (stream, text, event time); judge the devices at the end."""

    def __init__(self, paths: Sequence[str] = (), header_lookup: HeaderLookup | None = None, recent_from: int | None = None):
        self.paths = tuple(paths)
        self.prefixes = tuple(p.lower() for p in paths)
        self.header_lookup = header_lookup
        self.recent_from = EVERYTHING_RECENT if recent_from is None else recent_from
        self._presentations: dict[tuple[str, str, str, str], Presentation] = {}
        self._addresses: dict[str, Anonymous] = {}  # client ip -> its requests without a certificate naming no device
        self._named: dict[str, Anonymous] = {}  # device name (case-folded) -> its requests without a certificate
        self._pending: dict[str, KeyedRequests] = {}  # stream -> its requests not yet in the tallies
        self.streams: dict[str, _StreamState] = {}
        self.headerless: dict[str, int] = {}  # stream -> lines that came before any #Fields: line it has
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._times = w3c.Times()
        self._uris: dict[str, tuple[bool, str]] = {}  # cs-uri-stem -> (an agent path, its kind in a key)
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

    # -- the tallies (built from the keys when read) --------------------------------------------

    @property
    def presentations(self) -> dict[tuple[str, str, str, str], Presentation]:
        self._tally()
        return self._presentations

    @property
    def addresses(self) -> dict[str, Anonymous]:
        self._tally()
        return self._addresses

    @property
    def named(self) -> dict[str, Anonymous]:
        self._tally()
        return self._named

    def _tally(self) -> None:
        """Add the pending keys to the tallies, in the order their first request was read (what
        a tally's creation order, e.g. the spelling of a named device, depends on)."""
        keys = sorted((number, stream, key) for stream, pending in self._pending.items() for key, number in pending.order.items())
        presentations, addresses, named = self._presentations, self._addresses, self._named
        for _, stream, key in keys:
            pending = self._pending[stream]
            subject, issuer, serial, flags, ip, status, sub, agent, kind = key.split(_SEPARATOR)
            new = pending.recent[key]
            total = pending.older[key] + new
            if sub != "0" and sub != "-":
                status = f"{status}.{sub}"
            tally: Presentation | Anonymous | None
            if subject != w3c.EMPTY:
                tally = presentations.get((subject, issuer, serial, flags))
                if tally is None:
                    tally = presentations[(subject, issuer, serial, flags)] = Presentation(subject, issuer, serial, flags)
                if new and status[:3] in _REFUSED:
                    tally.recent_refused[status] = tally.recent_refused.get(status, 0) + new
            else:
                name = None if not kind or kind == _UPLOAD else npl_device(kind)
                if name is not None:
                    tally = named.get(name.casefold())
                    if tally is None:
                        tally = named[name.casefold()] = Anonymous(name, "name")
                else:
                    tally = addresses.get(ip)
                    if tally is None:
                        tally = addresses[ip] = Anonymous(ip, "address")
                if kind == _UPLOAD or (kind and _upload(kind)):
                    tally.uploads += total
                    tally.recent_uploads += new
            tally.requests += total
            tally.recent += new
            tally.statuses[status] = tally.statuses.get(status, 0) + total
            tally.ips.add(ip)
            first, mark = pending.first[key] >> SEQUENCE_BITS, pending.last[key]
            if first < tally.first:
                tally.first = first
            if mark > tally.mark:
                tally.mark = mark
                tally.last = mark >> SEQUENCE_BITS
                tally.last_request = (status, ip, agent, stream)
        self._pending = {}

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

    def _uri(self, uri: str) -> tuple[bool, str]:
        """(whether it is an agent path, its kind in a key) for a cs-uri-stem: the kind is the URL
        itself when it names a device (a policy download), else _UPLOAD or _DOWNLOAD (nothing)."""
        found = self._uris.get(uri)
        if found is None:
            agent = uri.startswith(self.paths) or uri.lower().startswith(self.prefixes)  # IIS paths are case-insensitive
            kind = uri if uri[-4:].lower() == ".npl" and npl_device(uri) is not None else _UPLOAD if _upload(uri) else _DOWNLOAD
            if len(self._uris) >= _CACHE_MAX:
                self._uris.clear()
            found = self._uris[uri] = (agent, kind)
        return found

    # -- reading -------------------------------------------------------------------------------

    def add(self, stream: str, message: str, event_ms: int) -> None:
        """One log event."""
        self.feed_columns((stream,), (event_ms,), (message,))

    def feed(self, events: Iterable[tuple[str, int, str]]) -> None:
        """Log events (stream, timestamp ms, message): one line each, or several (split)."""
        iterator = iter(events)
        while True:
            chunk = list(islice(iterator, BATCH))
            if not chunk:
                return
            streams, stamps, messages = zip(*chunk)
            self.feed_columns(streams, stamps, messages)

    def feed_columns(self, streams: Sequence[str], stamps: Sequence[int], messages: Sequence[str]) -> None:
        """Log events as columns (a page of FilterLogEvents): stream, timestamp ms, message. A page
        interleaves its streams: a batch is BATCH lines a stream (each stream's are read together)."""
        size = BATCH * min(len(set(streams[:BATCH])), 16)
        for start in range(0, len(messages), size):
            self._events(streams[start:start + size], stamps[start:start + size], messages[start:start + size])

    def _events(self, streams: Sequence[str], stamps: Sequence[int], messages: Sequence[str]) -> None:
        """Events of one line each, all data lines of streams whose #Fields: line is known and the
        same (the usual page), go to _batch as they are; any other go through _scan."""
        count = len(messages)
        stream = streams[0]
        one_stream = streams.count(stream) == count
        if one_stream:
            state = self.streams.get(stream)
            plans = {state.plan if state is not None else None}
        else:
            plans = {state.plan if state is not None else None for state in map(self.streams.get, set(streams))}
        plan = plans.pop() if len(plans) == 1 else None
        if plan is not None and w3c.single_lines(messages):
            first = self.lines
            self.lines += count
            self._batch(plan, list(messages), stream if one_stream else list(streams), stamps, range(first, first + count))
        else:
            self._scan(streams, stamps, messages)

    def _scan(self, streams: Sequence[str], stamps: Sequence[int], messages: Sequence[str]) -> None:
        """Line by line: directives, several lines in one event, CR, BOM, a stream without its #Fields:
        line yet. The data lines go on to _batch a run of one #Fields: line at a time, handed on before
        a malformed line found here: malformed lines are counted and shown in the order read."""
        batch_plan: _Plan | None = None
        lines: list[str] = []
        batch_streams: list[str] = []
        batch_stamps: list[int] = []
        numbers: list[int] = []

        def hand_on() -> None:
            if lines and batch_plan is not None:
                self._batch(batch_plan, lines[:], batch_streams[:], batch_stamps[:], numbers[:])
            del lines[:], batch_streams[:], batch_stamps[:], numbers[:]

        for stream, stamp, message in zip(streams, stamps, messages):
            for line in message.split("\n") if "\n" in message else (message,):
                if line[-1:] == "\r":
                    line = line.rstrip("\r")
                if not line:
                    continue
                number = self.lines
                self.lines += 1
                state = self.streams.get(stream)
                if state is None:
                    state = self.streams[stream] = _StreamState()
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
                                state.plan = self._plan(found[1])
                                self.headers += 1
                            else:
                                hand_on()
                                self._bad(stream, line, "#Fields: directive without field names")
                        continue
                plan = state.plan
                if plan is None:
                    if not state.looked_up and self.header_lookup is not None:
                        state.looked_up = True
                        header = self.header_lookup(stream, stamp)
                        found = w3c.directive(header) if header else None
                        if found is not None and found[1]:
                            plan = state.plan = self._plan(found[1])
                            self.headers_looked_up += 1
                    if plan is None:
                        hand_on()
                        self.headerless[stream] = self.headerless.get(stream, 0) + 1
                        self._bad(stream, line, "no #Fields: line before it in its log stream")
                        continue
                if plan is not batch_plan:
                    hand_on()
                    batch_plan = plan
                lines.append(line)
                batch_streams.append(stream)
                batch_stamps.append(stamp)
                numbers.append(number)
        hand_on()

    def _batch(self, plan: _Plan, lines: list[str], stream: "list[str] | str", stamps: Sequence[int], numbers: Sequence[int]) -> None:
        """Data lines under one #Fields: line, in the order read (numbers: their line numbers;
        stream: one for all, or one per line). The malformed ones are counted in line order."""
        bad: list[_Bad] = []
        if isinstance(stream, str):
            self._requests(plan, lines, stream, stamps, numbers, bad)
        else:  # each stream on its own (its lines keep their order and numbers)
            order = sorted(range(len(lines)), key=stream.__getitem__)
            start = 0
            while start < len(order):
                name = stream[order[start]]
                end = start + stream.count(name)  # sorted: the stream's lines are together
                part = order[start:end]
                self._requests(plan, list(map(lines.__getitem__, part)), name, list(map(stamps.__getitem__, part)),
                               list(map(numbers.__getitem__, part)), bad)
                start = end
        for _, where, line, reason in sorted(bad):
            self._bad(where, line, reason)

    def _requests(self, plan: _Plan, lines: list[str], stream: str, stamps: Sequence[int], numbers: Sequence[int], bad: list[_Bad]) -> None:
        """The requests of one stream's lines under one #Fields: line: per line only builtins looping in C."""
        columns, counts = w3c.columns(lines, plan.count, plan.positions)
        if counts is not None:
            bad += [(number, stream, line, f"{got} values for the {plan.count} fields of the #Fields: line in force")
                    for number, line, got in zip(numbers, lines, counts) if got != plan.count]
            mask = [got == plan.count for got in counts]
            lines, stamps, numbers = list(compress(lines, mask)), list(compress(stamps, mask)), list(compress(numbers, mask))
            if not lines:
                return
        uris = columns[8]
        kinds = {uri: self._uri(uri) for uri in set(uris)}
        keep = None  # which lines are requests (None: all): to an agent path, with a valid time
        if plan.filter_paths and not all(agent for agent, _ in kinds.values()):
            keep = list(map({uri for uri, (agent, _) in kinds.items() if agent}.__contains__, uris))
            self.ignored_paths += len(keep) - sum(keep)
        if plan.timed:
            marks, keep = self._marks(columns[9], columns[10], lines, stream, numbers, keep, bad)
        else:
            marks = list(map(or_, map(lshift, map(floordiv, stamps, repeat(1000)), repeat(SEQUENCE_BITS)), numbers))
        suffix = {uri: kind for uri, (_, kind) in kinds.items()}
        keys = list(map(_SEPARATOR.join, zip(*columns[:8], map(suffix.__getitem__, uris))))
        if keep is not None:
            keys, marks = list(compress(keys, keep)), list(compress(marks, keep))
            if not keys:
                return
        count = len(keys)
        self.requests += count
        if not plan.has_cert_fields:
            self.without_cert_fields += count
        pending = self._pending.get(stream)
        if pending is None:
            pending = self._pending[stream] = KeyedRequests()
        self.recent_requests += pending.add(keys, marks, self.recent_from << SEQUENCE_BITS)

    def _marks(self, days: list[str], clocks: list[str], lines: list[str], stream: str, numbers: Sequence[int], keep: list[bool] | None,
               bad: list[_Bad]) -> tuple[list[int], list[bool] | None]:
        """Each line's mark (its date and time, shifted, and its line number), and which lines are
        kept: those of `keep` (None: all) whose date/time is yyyy-mm-dd hh:mm:ss (the others kept
        go to `bad`; a line not kept has mark 0)."""
        shifted = self._times.shifted(days, clocks, SEQUENCE_BITS)
        if shifted is not None:
            return list(map(or_, shifted, numbers)), keep
        marks: list[int] = []
        kept: list[bool] = []
        for number, line, day_text, clock, wanted in zip(numbers, lines, days, clocks, keep or repeat(True)):
            day, second = self._times.day(day_text), self._times.clock(clock)
            if wanted and (day is None or second < 0):
                bad.append((number, stream, line, f"date/time {day_text} {clock} is not yyyy-mm-dd hh:mm:ss"))
                wanted = False
            marks.append((day + second) << SEQUENCE_BITS | number if wanted and day is not None else 0)
            kept.append(wanted)
        return marks, kept

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
