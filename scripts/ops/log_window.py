"""What `ops readiness` read from a log group in its window: pages, lines, time, and a SHA-256 over
every event read (what a recorded verdict was judged on); and, per stream, the requests read by
key until the readiness model makes its tallies of them (:class:`KeyedRequests`)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress, islice, repeat
from operator import and_, le, not_
from typing import Any

# A request's mark: its time (epoch seconds) shifted left, its line number below, so that the
# greatest mark is the latest request and, at the same second, the one read last.
SEQUENCE_BITS = 40
NUMBER = (1 << SEQUENCE_BITS) - 1  # the line number in a mark
NO_MARK = -(1 << 127)


@dataclass
class Reading:
    log_group: str
    start: dt.datetime
    end: dt.datetime
    pages: int = 0
    events: int = 0
    seconds: float = 0.0
    lookups: int = 0
    # SHA-256 over every event read (stream, time, message): what a recorded verdict was judged on.
    digest: Any = field(default_factory=hashlib.sha256)
    # The last event time (ms) of each stream read (a stream per beacon instance): a beacon whose
    # log shipping stopped has none in the recent window, and its devices would be invisible.
    stream_last: dict[str, int] = field(default_factory=dict)


class KeyedRequests:
    """The requests of one stream, by key (a string): how many outside and inside the recent
    window, the earliest and the latest mark of each key, the line number of each key's first
    request (the order the tallies are made in). Per request only builtins looping in C."""

    __slots__ = ("older", "recent", "first", "last", "order", "latest")

    def __init__(self) -> None:
        self.older: Counter[str] = Counter()
        self.recent: Counter[str] = Counter()
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.order: dict[str, int] = {}
        self.latest = NO_MARK  # the latest mark so far

    def add(self, keys: list[str], marks: list[int], recent_from: int) -> int:
        """Requests (a key and a mark each, in the order read); how many are in the recent window
        (from the mark recent_from)."""
        in_order = marks[0] > self.latest and marks == sorted(marks)
        earliest, latest = (marks[0], marks[-1]) if in_order else (min(marks), max(marks))
        if earliest >= recent_from:
            self.recent.update(keys)
            recent = len(keys)
        elif latest < recent_from:
            self.older.update(keys)
            recent = 0
        else:
            inside = list(map(le, repeat(recent_from), marks))
            recent_keys = list(compress(keys, inside))
            self.recent.update(recent_keys)
            self.older.update(compress(keys, map(not_, inside)))
            recent = len(recent_keys)
        if in_order:
            self.in_order(keys, marks)
        else:
            self.out_of_order(keys, marks)
        if latest > self.latest:
            self.latest = latest
        return recent

    def in_order(self, keys: list[str], marks: list[int]) -> None:
        """Requests after all read so far, in time order (as IIS writes a stream): a key's last mark
        here is its latest; its earliest is known, or is its first mark here if it is new."""
        last = self.last
        known = len(last)
        last.update(zip(keys, marks))
        if len(last) > known:
            firsts = dict(zip(reversed(keys), reversed(marks)))
            for key in list(islice(reversed(last), len(last) - known)):  # the keys added (last in `last`)
                self.first[key] = firsts[key]
                self.order[key] = firsts[key] & NUMBER

    def out_of_order(self, keys: list[str], marks: list[int]) -> None:
        """Any requests: each key's earliest and latest mark kept request by request (min, max in C)."""
        first, last = self.first, self.last
        known = len(last)
        first.update(zip(keys, map(min, map(first.get, keys, repeat(-NO_MARK)), marks)))  # (each pair made as update takes it)
        last.update(zip(keys, map(max, map(last.get, keys, repeat(NO_MARK)), marks)))
        if len(last) > known:
            numbered = dict(zip(reversed(keys), map(and_, reversed(marks), repeat(NUMBER))))  # each key's first line number here
            for key in list(islice(reversed(last), len(last) - known)):
                self.order[key] = numbered[key]
