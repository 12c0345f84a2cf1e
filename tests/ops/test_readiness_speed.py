"""The readiness model's batched reading gives what reading line by line gives (issue 20, point 9).
No timing here: speed is bench/readiness.py's, as a ratio against a bare split loop.

scripts/ops/readiness_model.py reads lines in batches, with builtins that loop in C, and keeps
counts and first/last marks per key, building the tallies from the keys when they are read. The
reference below reads one line at a time, as the model did before, straight from the rules
(README of the model: the #Fields: line in force per stream, malformed lines, agent paths,
certificate tallies, requests without a certificate per named device or address, the recent
window). Generated streams mix everything the shortcuts must not change: several streams with
their own headers (reordered fields, fields missing), directives and several lines in one event,
CR, BOM, empty events, lines with too few or quoted values, bad dates and times, lines out of time
order and at the same second, policy downloads naming a device in two spellings, uploads, other
paths, a stream whose header is looked up and one whose header is not found. Fed at once, in pages
of any size, one event at a time, and in batches of 7 lines: every tally, counter and malformed
example, in order, is the reference's.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, Callable

import pytest

from scripts.ops import readiness_model, w3c
from scripts.ops.mapping_judgment import npl_device
from scripts.ops.log_window import KeyedRequests
from scripts.ops.readiness_model import AGENT_PATHS, EXAMPLES, Aggregator

HEADER = "#Fields: date time c-ip cs(User-Agent) cs-uri-stem sc-status sc-substatus crt-subject crt-issuer crt-serial crt-flags"
OTHER = "#Fields: time date c-ip cs(User-Agent) cs-uri-stem sc-status sc-substatus crt-subject crt-issuer crt-serial crt-flags"
CA = "C=US,+CN=Example+Devices+CA"


def cert(cn: str, serial: str = "0a") -> str:
    return f"C=US,+CN={cn} {CA} {serial} 1"


def day(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp())


# --- the reference: one line at a time ----------------------------------------------------------------

class Reference:
    """Line-by-line reading, from the rules; tallies as plain dicts in the order they were created."""

    def __init__(self, paths: tuple[str, ...] = (), lookup: Callable[[str, int], str | None] | None = None, recent_from: int = -(1 << 62)):
        self.paths, self.lookup, self.recent_from = paths, lookup, recent_from
        self.fields: dict[str, list[str] | None] = {}
        self.looked_up: set[str] = set()
        self.presentations: dict[tuple[str, ...], dict[str, Any]] = {}
        self.anonymous: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, key) in creation order
        self.counters = dict.fromkeys(("lines", "requests", "recent_requests", "directives", "headers", "headers_looked_up",
                                       "ignored_paths", "without_cert_fields", "malformed"), 0)
        self.examples: list[dict[str, str]] = []
        self.headerless: dict[str, int] = {}

    def bad(self, stream: str, line: str, reason: str) -> None:
        self.counters["malformed"] += 1
        if len(self.examples) < EXAMPLES:
            shown = line if len(line) <= 300 else line[:300] + "..."
            self.examples.append({"stream": stream, "reason": reason, "line": shown.encode("unicode_escape").decode("ascii")})

    def add(self, stream: str, stamp: int, message: str) -> None:
        for line in message.split("\n"):
            self.line(stream, stamp, line.rstrip("\r") if line.endswith("\r") else line)

    def line(self, stream: str, stamp: int, line: str) -> None:
        if not line:
            return
        self.counters["lines"] += 1
        self.fields.setdefault(stream, None)
        line = line.lstrip("\ufeff")
        if not line:
            return
        if line.startswith("#"):
            self.counters["directives"] += 1
            name, _, rest = line[1:].partition(":")
            if name.strip().lower() == "fields":
                if rest.strip():
                    self.fields[stream] = rest.split()
                    self.counters["headers"] += 1
                else:
                    self.bad(stream, line, "#Fields: directive without field names")
            return
        names = self.fields[stream]
        if names is None and self.lookup is not None and stream not in self.looked_up:
            self.looked_up.add(stream)
            header = self.lookup(stream, stamp)
            if header and header.split(":", 1)[1].strip():
                names = self.fields[stream] = header.split(":", 1)[1].split()
                self.counters["headers_looked_up"] += 1
        if names is None:
            self.headerless[stream] = self.headerless.get(stream, 0) + 1
            self.bad(stream, line, "no #Fields: line before it in its log stream")
            return
        values = line.split(" ")
        if len(values) != len(names):
            quoted = w3c.split_values(line, len(names))
            if quoted is None:
                self.bad(stream, line, f"{len(values)} values for the {len(names)} fields of the #Fields: line in force")
                return
            values = quoted
        lower = [n.lower() for n in names]

        def get(name: str) -> str:
            return values[lower.index(name)] if name in lower else "-"

        uri = get("cs-uri-stem")
        if self.paths and "cs-uri-stem" in lower and not uri.lower().startswith(tuple(p.lower() for p in self.paths)):
            self.counters["ignored_paths"] += 1
            return
        if "date" in lower and "time" in lower:
            at = self.time(get("date"), get("time"))
            if at is None:
                self.bad(stream, line, f"date/time {get('date')} {get('time')} is not yyyy-mm-dd hh:mm:ss")
                return
        else:
            at = stamp // 1000
        status, sub = get("sc-status"), get("sc-substatus")
        status = status if sub in ("0", "-") else f"{status}.{sub}"
        ip, agent = get("c-ip"), get("cs(user-agent)")
        self.counters["requests"] += 1
        recent = at >= self.recent_from
        self.counters["recent_requests"] += recent
        certificate_fields = "crt-subject" in lower and "crt-flags" in lower
        subject = get("crt-subject") if certificate_fields else "-"
        if subject != "-":
            key = (subject, get("crt-issuer"), get("crt-serial"), get("crt-flags"))
            tally = self.presentations.setdefault(key, self.tally())
            if recent and status[:3] in ("401", "403"):
                tally["recent_refused"][status] = tally["recent_refused"].get(status, 0) + 1
        else:
            self.counters["without_cert_fields"] += not certificate_fields
            name = npl_device(uri) if uri.lower().endswith(".npl") else None
            slot = ("name", name.casefold()) if name is not None else ("address", ip)
            tally = self.anonymous.setdefault(slot, {**self.tally(), "key": name if name is not None else ip, "uploads": 0, "recent_uploads": 0})
            upload = uri[1:13].lower() == "managesoftrl"
            tally["uploads"] += upload
            tally["recent_uploads"] += upload and recent
        tally["requests"] += 1
        tally["recent"] += recent
        tally["statuses"][status] = tally["statuses"].get(status, 0) + 1
        tally["ips"].add(ip)
        tally["first"] = min(tally["first"], at)
        if at >= tally["last"]:
            tally["last"], tally["last_request"] = at, (status, ip, agent, stream)

    @staticmethod
    def tally() -> dict[str, Any]:
        return {"requests": 0, "recent": 0, "first": 1 << 62, "last": -1, "last_request": ("", "", "", ""), "statuses": {},
                "recent_refused": {}, "ips": set()}

    @staticmethod
    def time(date: str, clock: str) -> int | None:
        try:
            midnight = int(dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp())
        except ValueError:
            return None
        hours, minutes, seconds = clock[:2], clock[3:5], clock[6:]
        if len(clock) != 8 or clock[2] != ":" or clock[5] != ":" or not (hours.isdigit() and minutes.isdigit() and seconds.isdigit()):
            return None
        if hours > "23" or minutes > "59":
            return None
        try:
            return midnight + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
        except ValueError:
            return None

    def result(self) -> dict[str, Any]:
        presentations = [(key, {k: v for k, v in t.items()}) for key, t in self.presentations.items()]
        anonymous = [(slot[0], {k: v for k, v in t.items() if k not in ("recent_refused",)}) for slot, t in self.anonymous.items()]
        return {"counters": self.counters, "examples": self.examples, "headerless": self.headerless,
                "presentations": presentations, "anonymous": anonymous}


def model_result(agg: Aggregator) -> dict[str, Any]:
    fields = ("requests", "recent", "first", "last", "last_request", "statuses", "recent_refused", "ips")
    presentations = [(key, {f: getattr(p, f) for f in fields}) for key, p in agg.presentations.items()]
    anonymous = [(a.kind, {**{f: getattr(a, f) for f in fields if f != "recent_refused"}, "key": a.key, "uploads": a.uploads,
                           "recent_uploads": a.recent_uploads})
                 for a in [*agg.addresses.values(), *agg.named.values()]]
    # the reference keeps one creation order over both kinds; the model a dict per kind
    counters = {name: getattr(agg, name) for name in Reference().counters}
    return {"counters": counters, "examples": agg.malformed_examples, "headerless": agg.headerless,
            "presentations": presentations, "anonymous": anonymous}


def by_kind(result: dict[str, Any]) -> dict[str, Any]:
    """The reference's anonymous tallies as the model keeps them: addresses first, then named."""
    ordered = [a for a in result["anonymous"] if a[0] == "address"] + [a for a in result["anonymous"] if a[0] == "name"]
    return {**result, "anonymous": ordered}


# --- generated streams ----------------------------------------------------------------------------

FULL = ("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port c-ip cs(User-Agent) sc-status sc-substatus "
        "time-taken crt-subject crt-issuer crt-serial crt-flags")
HEADERS = {
    "full": FULL,
    "reordered": "#Fields: time c-ip date cs-uri-stem sc-substatus sc-status crt-flags crt-serial crt-issuer crt-subject cs(User-Agent)",
    "no-certificate-fields": "#Fields: date time c-ip cs(User-Agent) cs-uri-stem sc-status sc-substatus",
    "no-time": "#Fields: c-ip cs(User-Agent) cs-uri-stem sc-status sc-substatus crt-subject crt-issuer crt-serial crt-flags",
    "subject-without-flags": "#Fields: date time c-ip cs-uri-stem sc-status sc-substatus crt-subject crt-issuer",
    "no-agent-or-substatus": "#Fields: date time c-ip cs-uri-stem sc-status crt-subject crt-issuer crt-serial crt-flags",
}
URIS = ["/ManageSoftDL/", "/ManageSoftDL/", "/ManageSoftDL/", "/managesoftdl/Packages/x.ndc", "/ManageSoftRL/Inventories/up.ndi.gz",
        "/ManageSoftDL/Policies/Merged/laptop-7-0AF3.npl", "/ManageSoftDL/Policies/Merged/LAPTOP-7-0af3.npl",
        "/ManageSoftRL/Policies/desk+9-11.npl", "/.env", "/wp-login.php", "-"]
CERTS = [cert("dev-1"), cert("dev-1", "0b"), cert("dev-2"), cert("Dev-2", "0c"), cert("laptop-7"), "C=US,+CN=dev-3 C=US,+CN=Other+CA 0d 3",
         "- - - 0", "- - - 0", "- - - 0"]
STATUSES = [("200", "0"), ("200", "0"), ("304", "-"), ("403", "13"), ("401", "2"), ("403", "7")]
TIMES = ["{d} {t}"] * 40 + ["{d} 25:00:00", "{d} 10:61:01", "2026-06-0x {t}", "2026-6-1 {t}", "{d} 10:00:99", "{d} 1:00:00", "{d} ",
                            "{d} 10:0٣:00"]


def data_line(rng: random.Random, header: str, moment: dt.datetime) -> str:
    names = header.split(":", 1)[1].split()
    status, sub = rng.choice(STATUSES)
    subject, issuer, serial, flags = rng.choice(CERTS).split(" ")
    stamp = rng.choice(TIMES).format(d=f"{moment:%Y-%m-%d}", t=f"{moment:%H:%M:%S}")
    date, _, clock = stamp.partition(" ")
    value = {"date": date, "time": clock, "s-ip": "10.0.1.10", "cs-method": "GET", "cs-uri-stem": rng.choice(URIS), "cs-uri-query": "-",
             "s-port": "443", "c-ip": rng.choice(["10.0.0.1", "10.0.0.2", "203.0.113.50", "10.0.0.9"]),
             "cs(user-agent)": rng.choice(["FlexNet+Agent/1", "FlexNet+Agent/2"]), "sc-status": status, "sc-substatus": sub,
             "time-taken": str(rng.randrange(1, 500)), "crt-subject": subject, "crt-issuer": issuer, "crt-serial": serial, "crt-flags": flags}
    return " ".join(value[n.lower()] for n in names)


def odd_line(rng: random.Random, header: str, moment: dt.datetime) -> str:
    line = data_line(rng, header, moment)
    return rng.choice([
        line.rsplit(" ", 1)[0],  # a value short
        line + " extra",
        line.replace("FlexNet+Agent/1", '"FlexNet Agent/1"'),  # quoted, with a space: read as one value
        line.replace("FlexNet+Agent/2", '"FlexNet Agent/2'),  # a quote not closed
        "\ufeff" + line,
        "\ufeff",
        line + "\r",
        "junk",
        "#Software: Microsoft Internet Information Services 10.0",
        "#Fields:",
        " #not a directive",
    ])


def generated(seed: int, count: int = 2500) -> list[tuple[str, int, str]]:
    """Events of up to four streams (which, by seed): s1 and s2 change headers now and then, s3
    starts without its header (looked up), s4 without one (not found); mostly clean runs, so whole
    batches are clean too."""
    rng = random.Random(seed)
    moment = dt.datetime(2026, 6, 1, 23, 50, tzinfo=dt.timezone.utc)
    headers = {"s1": FULL, "s2": FULL, "s3": FULL, "s4": FULL}
    events: list[tuple[str, int, str]] = [("s1", 0, FULL), ("s2", 0, FULL)]
    streams = [["s1"], ["s1", "s2"], ["s1", "s1", "s2", "s2", "s3", "s4"], ["s1", "s2", "s3"]][seed % 4]
    for i in range(count):
        stream = rng.choice(streams)
        roll = rng.random()
        moment += dt.timedelta(seconds=rng.choice([0, 0, 1, 2, 7]))
        if roll < 0.004:
            moment -= dt.timedelta(minutes=rng.randrange(1, 90))  # out of time order
        stamp = int(moment.timestamp() * 1000)
        if roll < 0.01 and stream in ("s1", "s2"):
            headers[stream] = HEADERS[rng.choice(list(HEADERS))]
            events.append((stream, stamp, headers[stream]))
        elif roll < 0.02:
            events.append((stream, stamp, odd_line(rng, headers[stream], moment)))
        elif roll < 0.025:
            lines = [data_line(rng, headers[stream], moment) for _ in range(rng.randrange(1, 4))]
            if stream in ("s1", "s2") and rng.random() < 0.5:
                headers[stream] = HEADERS[rng.choice(list(HEADERS))]
                lines.insert(1, headers[stream])
            events.append((stream, stamp, "\r\n".join(lines) + rng.choice(["", "\r\n"])))
        elif roll < 0.027:
            events.append((stream, stamp, rng.choice(["", "\r", "\n"])))
        else:
            events.append((stream, stamp, data_line(rng, headers[stream], moment)))
    return events


def lookup(stream: str, before_ms: int) -> str | None:
    return FULL if stream == "s3" else None


RECENT = day("2026-06-02T00:30:00")


def reference_of(events: list[tuple[str, int, str]], paths: tuple[str, ...]) -> dict[str, Any]:
    ref = Reference(paths, lookup, RECENT)
    for stream, stamp, message in events:
        ref.add(stream, stamp, message)
    return by_kind(ref.result())


def fed(events: list[tuple[str, int, str]], paths: tuple[str, ...], how: str, seed: int) -> Aggregator:
    agg = Aggregator(paths, lookup, RECENT)
    if how == "at once":
        agg.feed(events)
    elif how == "pages":
        rng, start = random.Random(seed), 0
        while start < len(events):
            size = rng.choice([1, 3, 50, 999, 1000, 1001, 2500])
            streams, stamps, messages = zip(*events[start:start + size])
            agg.feed_columns(list(streams), list(stamps), list(messages))
            start += size
            if rng.random() < 0.2:
                assert agg.presentations is not None  # reading the tallies half way must not change what comes after
    else:
        for stream, stamp, message in events:
            agg.add(stream, message, stamp)
    return agg


CASES = [(seed, AGENT_PATHS, how) for seed in (1, 2, 3, 4) for how in ("at once", "pages")] + [
    (seed, (), "at once") for seed in (2, 3)] + [(seed, AGENT_PATHS, "one by one") for seed in (1, 3)]


@pytest.mark.parametrize(("seed", "paths", "how"), CASES, ids=[f"{how}-{'agent paths' if paths else 'all paths'}-{seed}" for seed, paths, how in CASES])
def test_batched_reading_gives_what_line_by_line_reading_gives(seed: int, paths: tuple[str, ...], how: str) -> None:
    events = generated(seed)
    expected = reference_of(events, paths)
    got = model_result(fed(events, paths, how, seed))
    assert got["counters"] == expected["counters"]
    assert got["examples"] == expected["examples"] and got["headerless"] == expected["headerless"]
    assert got["presentations"] == expected["presentations"]
    assert got["anonymous"] == expected["anonymous"]
    assert expected["counters"]["malformed"] > 5 and expected["counters"]["requests"] > 1000  # the case is not empty


def test_small_batches_give_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 7 lines: every boundary case (a batch starting at a header, a key first seen in a
    later batch, a batch out of time order after one in order) many times over."""
    events = generated(5, 1200)
    expected = reference_of(events, AGENT_PATHS)
    monkeypatch.setattr(readiness_model, "BATCH", 7)
    assert model_result(fed(events, AGENT_PATHS, "at once", 5)) == expected


def test_the_generated_streams_reach_every_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The differential test above is only as good as its input: the clean batch path, the
    line-by-line scan, streams grouped in one batch, batches in and out of time order, lines split
    in one call and line by line are all taken."""
    taken: dict[str, int] = {}
    agg = Aggregator(AGENT_PATHS, lookup, RECENT)

    def counting(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            taken[name] = taken.get(name, 0) + 1
            return method(*args, **kwargs)
        return wrapper

    for name in ("_batch", "_scan", "_requests"):
        setattr(agg, name, counting(name, getattr(agg, name)))
    for name in ("in_order", "out_of_order"):
        monkeypatch.setattr(KeyedRequests, name, counting(name, getattr(KeyedRequests, name)))
    original_columns = w3c.columns

    def columns(*args: Any) -> Any:
        found = original_columns(*args)
        taken["split line by line" if found[1] is not None else "split at once"] = 1
        return found

    monkeypatch.setattr(w3c, "columns", columns)
    for seed in (1, 2, 3):
        agg.feed(generated(seed))
    assert {"_batch", "_scan", "_requests", "in_order", "out_of_order", "split line by line", "split at once"} <= taken.keys()
    assert taken["_batch"] > taken["_scan"], "most batches are clean and skip the scan"


# --- a hand-made case: the numbers checked by reading the lines -----------------------------------

EVENTS = [
    ("b1", HEADER),
    ("b1", f"2026-06-01 10:00:00 10.0.0.1 agent /ManageSoftDL/ 200 0 {cert('dev-1')}"),
    ("b1", f"2026-06-02 10:00:00 10.0.0.1 agent /ManageSoftDL/ 200 0 {cert('dev-1')}"),  # same clock, next day
    ("b1", f"2026-06-02 10:00:00 10.0.0.2 agent /ManageSoftDL/ 403 13 {cert('dev-1', '0b')}"),  # renewed, used by turns
    ("b1", f"2026-06-02 10:00:01 10.0.0.1 agent /ManageSoftDL/ 200 0 {cert('dev-1')}"),
    ("b1", f"2026-06-02 10:00:01 10.0.0.2 agent /ManageSoftRL/x 200 0 {cert('dev-1', '0b')}"),
    ("b1", f"2026-06-02 10:61:01 10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),  # bad time
    ("b1", f"2026-06-02 10:61:01 10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),  # the same bad time again
    ("b1", f"2026-06-02  10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),  # no time at all
    ("b1", f"2026-06-0x 10:00:01 10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),  # bad day, the clock of the line before
    ("b1", f"2026-06-02 10:00:01 10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),
    ("b2", f"{OTHER}\n10:00:05 2026-06-03 10.0.0.4 agent /ManageSoftDL/ 200 0 {cert('dev-4')}"),  # fields change within an event
    ("b2", f"10:00:05 2026-06-03 10.0.0.4 agent /ManageSoftDL/ 200 0 {cert('dev-4')}"),
    ("b1", f"2026-06-03 10:00:05 10.0.0.1 agent /ManageSoftDL/ 200 0 {cert('dev-1')}"),  # b1 keeps its own fields
]


def test_a_hand_made_case_at_once_and_one_by_one() -> None:
    at_once = Aggregator(AGENT_PATHS, recent_from=day("2026-06-02T00:00:00"))
    at_once.feed((stream, 0, message) for stream, message in EVENTS)
    one_by_one = Aggregator(AGENT_PATHS, recent_from=day("2026-06-02T00:00:00"))
    for stream, message in EVENTS:
        one_by_one.add(stream, message, 0)
    assert model_result(at_once) == model_result(one_by_one)
    assert (at_once.lines, at_once.requests, at_once.recent_requests, at_once.malformed, at_once.headers, at_once.directives) == (15, 9, 8, 4, 2, 2)
    got = {key[0].split("CN=")[-1] + "/" + key[2]: p for key, p in at_once.presentations.items()}
    dev_1, renewed = got["dev-1/0a"], got["dev-1/0b"]
    assert (dev_1.requests, dev_1.recent, dev_1.first, dev_1.last, dev_1.last_request, dev_1.statuses, dev_1.recent_refused, dev_1.ips) == (
        4, 3, day("2026-06-01T10:00:00"), day("2026-06-03T10:00:05"), ("200", "10.0.0.1", "agent", "b1"), {"200": 4}, {}, {"10.0.0.1"})
    assert (renewed.requests, renewed.recent, renewed.first, renewed.last, renewed.last_request, renewed.statuses, renewed.recent_refused) == (
        2, 2, day("2026-06-02T10:00:00"), day("2026-06-02T10:00:01"), ("200", "10.0.0.2", "agent", "b1"), {"403.13": 1, "200": 1}, {"403.13": 1})
    assert (got["dev-3/0a"].requests, got["dev-3/0a"].first) == (1, day("2026-06-02T10:00:01"))
    assert (got["dev-4/0a"].requests, got["dev-4/0a"].last) == (2, day("2026-06-03T10:00:05"))
    assert [e["reason"] for e in at_once.malformed_examples] == [
        "date/time 2026-06-02 10:61:01 is not yyyy-mm-dd hh:mm:ss",
        "date/time 2026-06-02 10:61:01 is not yyyy-mm-dd hh:mm:ss",
        "date/time 2026-06-02  is not yyyy-mm-dd hh:mm:ss",
        "date/time 2026-06-0x 10:00:01 is not yyyy-mm-dd hh:mm:ss",
    ]
    outcome = at_once.finish(["Example Devices CA"])
    assert {d.identity: d.requests for d in outcome.devices} == {"dev-1": 6, "dev-3": 1, "dev-4": 2}


def test_a_time_equal_to_the_starting_state_is_still_checked() -> None:
    """The first line's time is checked even when its day is the empty text the aggregator starts with."""
    aggregator = Aggregator()
    aggregator.feed([("b1", 0, "#Fields: date time c-ip sc-status"), ("b1", 0, "  10.0.0.1 200")])
    assert aggregator.malformed == 1 and aggregator.requests == 0


def test_names_without_quotes_read_the_same_by_the_shortcut() -> None:
    """w3c._parse_dn reads a name without quotes, escapes or '+' with str methods; the loop it skips
    reads any name: both give the same parts for every text of an alphabet of separators, spaces,
    tabs and values (including parts without '=' and empty ones)."""
    rng = random.Random(7)
    pieces = ["C", "CN", "O", "=", ",", ";", " ", "\t", "a", "b c", ",,", " ,", "é", "x=y"]
    loop = w3c._parse_dn.__wrapped__
    for _ in range(4000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 10)))
        assert loop(text) == w3c._parse_loop(text), text


# --- multi-valued names (review of issue 20) -----------------------------------------------------------

def test_a_multi_valued_rdn_is_split_so_a_deny_on_one_of_its_parts_matches() -> None:
    """CertNameToStr writes the parts of one RDN joined by ' + ': OU=Contractors + CN=laptop-1. Read
    as one value, a Deny on Subject.OU=Contractors would miss and the Allow mapping admit the device,
    while IIS answers 401.2."""
    from scripts.ops import mapping_judgment as mj

    assert w3c.parse_dn("OU=Contractors + CN=laptop-1, O=Example Corp") == [("OU", "Contractors"), ("CN", "laptop-1"), ("O", "Example Corp")]
    assert w3c.parse_dn('CN="A + B", O=X') == [("CN", "A + B"), ("O", "X")], "a quoted + is part of the value"
    assert w3c.parse_dn("O=Smith+Jones, CN=x") == [("O", "Smith+Jones"), ("CN", "x")]
    issuer = {"certificateField": "Issuer", "certificateSubField": "CN", "matchCriteria": "Example CA", "compareCaseSensitive": True}
    rules = mj.iis_mappings([
        {"name": "Deny 1 - Example CA", "permissionMode": "Deny", "enabled": True,
         "rules": [issuer, {"certificateField": "Subject", "certificateSubField": "OU", "matchCriteria": "Contractors", "compareCaseSensitive": True}]},
        {"name": "Agents - Example CA", "permissionMode": "Allow", "enabled": True, "rules": [issuer]},
    ], "test")
    refused = mj.judge("OU=Contractors + CN=laptop-1, O=Example Corp", "CN=Example CA", "01", rules)
    assert not refused.accepted and refused.mapping is not None and refused.mapping.name == "Deny 1 - Example CA"
    assert mj.judge("OU=Staff + CN=laptop-2, O=Example Corp", "CN=Example CA", "02", rules).accepted
