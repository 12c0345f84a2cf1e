"""IIS W3C extended log lines, as the CloudWatch agent ships them (one log event per line).

What IIS 10 writes (and what this module reads):

- Directive lines start with '#': `#Software: Microsoft Internet Information Services 10.0`,
  `#Version: 1.0`, `#Date: 2026-06-01 00:00:00`, `#Fields: date time s-ip cs-method ...`.
  IIS writes them at the start of every log file and again after each restart of the site or of
  the worker process, so one log stream (one beacon, many files) holds many `#Fields:` lines,
  and the fields may change between them (a logging change takes effect with a new header).
  The `#Fields:` line alone decides what each column of the lines after it means.
- Custom fields (IIS 8.5 and later: request/response headers and server variables) come after
  the standard fields, under their `logFieldName` (here `crt-subject`, `crt-issuer`,
  `crt-serial`, `crt-flags` from CERT_SUBJECT, CERT_ISSUER, CERT_SERIALNUMBER, CERT_FLAGS).
- Values are separated by one space. IIS does not quote: a space inside a value is written as
  '+' (cs(User-Agent) `Mozilla/5.0+(Windows+NT+10.0)`, and custom fields the same, e.g. an
  X-Forwarded-For value `203.0.113.9,+10.0.0.5`); a literal '+' is written as is, so '+' cannot
  be told from an encoded space. An empty or absent value is '-'. Times are UTC.
- CERT_SUBJECT / CERT_ISSUER are the names as Windows' CertNameToStr writes them, most
  significant first with ", " between the parts: `C=US, O=Example Corp, CN=Example Devices CA`,
  logged as `C=US,+O=Example+Corp,+CN=Example+Devices+CA`; a value holding a separator is
  double-quoted (`O="Example, Inc."`, a quote doubled inside). CERT_SERIALNUMBER is hex bytes
  separated by hyphens (`04-67-f3-02`). CERT_FLAGS: bit 0 set = a client certificate was
  presented; bit 1 set = its issuer is not among the CAs the server recognises.

Quoted values (the W3C draft allows `"..."` with `""` for a quote) are accepted when a line
does not split into the header's number of fields otherwise, so a tool writing them is read too.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product, repeat
from operator import add, itemgetter, lshift
from typing import Iterable, Iterator, Sequence

EMPTY = "-"
_DN_SEPARATORS = re.compile("[,;]")
_FIRST = itemgetter(0)


@dataclass(frozen=True)
class Fields:
    """The columns of a `#Fields:` line; `index` maps the lower-cased name to its position."""

    names: tuple[str, ...]
    index: dict[str, int] = field(compare=False, hash=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> "Fields":
        names = tuple(text.split())
        index: dict[str, int] = {}
        for number, name in enumerate(names):
            index.setdefault(name.lower(), number)
        return cls(names, index)

    @property
    def count(self) -> int:
        return len(self.names)

    def position(self, name: str) -> int:
        """Position of a field (case-insensitive), -1 when the header does not have it."""
        return self.index.get(name.lower(), -1)


def directive(line: str) -> tuple[str, str] | None:
    """('Fields', 'date time ...') for '#Fields: date time ...'; None for a data line."""
    text = line.lstrip("\ufeff \t")
    if not text.startswith("#"):
        return None
    name, _, rest = text[1:].partition(":")
    return name.strip(), rest.strip()


def split_quoted(line: str) -> list[str] | None:
    """Values separated by spaces where a value starting with '"' runs to its closing quote
    ('""' inside is one quote); None when a quote is not closed or not followed by a space."""
    values: list[str] = []
    i, n = 0, len(line)
    while i <= n:
        if i < n and line[i] == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    return None
                if line[i] == '"':
                    if i + 1 < n and line[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(line[i])
                i += 1
            if i < n and line[i] != " ":
                return None
            values.append("".join(buf))
            i += 1
        else:
            end = line.find(" ", i)
            if end < 0:
                end = n
            values.append(line[i:end])
            i = end + 1
    return values


def split_values(line: str, count: int) -> list[str] | None:
    """The values of a data line when they are `count`, else None (a malformed line)."""
    values = line.split(" ")
    if len(values) == count:
        return values
    if '"' in line:
        quoted = split_quoted(line)
        if quoted is not None and len(quoted) == count:
            return quoted
    return None


def decode(value: str) -> str:
    """A logged value as text: '-' is empty, '+' is a space."""
    if value == EMPTY:
        return ""
    return value.replace("+", " ")


def parse_dn(text: str) -> list[tuple[str, str]]:
    """`C=US, O=Example Corp, CN=Example Devices CA` -> [(C, US), (O, Example Corp), (CN, ...)].

    Parts are separated by ',' or ';', and the parts of one multi-valued RDN by an unquoted ' + '
    (CertNameToStr writes `OU=Contractors + CN=laptop-1`); a value may be double-quoted ('""' = a
    quote) or use backslash escapes. Text without '=' gives no parts."""
    return list(_parse_dn(text))


@lru_cache(maxsize=16384)  # judging a device reads its subject and issuer several times; one issuer for thousands of devices
def _parse_dn(text: str) -> tuple[tuple[str, str], ...]:
    if '"' not in text and "\\" not in text and "+" not in text:
        # Without quotes, escapes or multi-valued RDNs (most names), the loop below reads each
        # part between ',' or ';' as key=value; the same as str methods, when every part that is
        # not only spaces has its '='.
        pieces = [piece for piece in _DN_SEPARATORS.split(text) if piece.strip(" ")]
        if all("=" in piece for piece in pieces):
            return tuple((key.strip(), value.strip()) for key, _, value in (piece.partition("=") for piece in pieces))
    return _parse_loop(text)


def _parse_loop(text: str) -> tuple[tuple[str, str], ...]:
    parts: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and (text[i] in " ,;" or text.startswith("+ ", i)):
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip()
        i = eq + 1
        while i < n and text[i] == " ":
            i += 1
        buf: list[str] = []
        if i < n and text[i] == '"':
            i += 1
            while i < n:
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            while i < n and text[i] not in ",;" and not text.startswith(" + ", i):
                i += 1
            value = "".join(buf)
        else:
            while i < n and text[i] not in ",;" and not text.startswith(" + ", i):
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            value = "".join(buf).strip()
        parts.append((key, value))
    return tuple(parts)


def dn_value(text: str, attribute: str) -> str | None:
    """The value of one attribute of a name (the last one when repeated: IIS writes the most
    significant part first, so the last CN is the certificate's own)."""
    wanted = attribute.upper()
    found = None
    for key, value in _parse_dn(text):
        if key.upper() == wanted:
            found = value
    return found


def cert_flags(value: str) -> int | None:
    """CERT_FLAGS as a number; None when not logged."""
    if not value or value == EMPTY:
        return None
    try:
        return int(value, 0) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None


def serial_hex(value: str) -> str:
    """A logged serial number ('04-67-F3-02') as lower-case hex without separators, the form
    scripts.pki and components/certs/facts.py write ('0467f302'); bytes in the logged order."""
    text = decode(value)
    return "".join(ch for ch in text if ch not in "-: ").lower()


# ---------------------------------------------------------------------------------------------
# Batches of lines (scripts/ops/readiness_model.py): values as columns, dates and times as epoch
# seconds, with builtins that loop in C per line and Python per distinct value


def single_lines(messages: Sequence[str]) -> bool:
    """Whether each message is one data line as IIS writes it: not empty, not a directive, no CR,
    LF or BOM (a message that is anything else needs a decision of its own)."""
    if not all(messages):
        return False
    text = "".join(messages)  # one-character searches (memchr) are fast; two-character ones are not
    return "\n" not in text and "\r" not in text and "\ufeff" not in text and ("#" not in text or "#" not in set(map(_FIRST, messages)))


def columns(lines: Sequence[str], count: int, positions: Sequence[int]) -> tuple[list[list[str]], list[int] | None]:
    """The values at `positions` (position `count`: an absent field, '-') of each line, a column
    each; and None when every line has `count` values, else each line's number of values (split at
    spaces): the lines without `count` values, even read quoted, are left out of the columns.

    All lines are split in one call: joined by " \\n ", the values of line i start at i * (count + 1)
    of the split, and a field's column is a slice of it. The "\\n" between the lines (lines have
    none) all fall where they should exactly when each line has `count` values."""
    size = len(lines)
    values = " \n ".join(lines).split(" ")
    if len(values) == size * (count + 1) - 1 and "".join(values[count::count + 1]) == "\n" * (size - 1):
        return [values[p::count + 1] if p < count else [EMPTY] * size for p in positions], None
    pick = itemgetter(*positions)
    picked: list[tuple[str, ...]] = []
    counts: list[int] = []
    for line in lines:  # line by line: `count` values, else quoted ones
        row = line.split(" ")
        counts.append(len(row))
        if len(row) != count:
            quoted = split_values(line, count)
            if quoted is None:
                continue
            row, counts[-1] = quoted, count
        row.append(EMPTY)
        picked.append(pick(row) if len(positions) > 1 else (pick(row),))
    return [list(column) for column in zip(*picked)] if picked else [[] for _ in positions], counts


_DAY_CLOCKS: dict[str, int] = {}  # the 86,400 'hh:mm:ss' of a day as IIS writes them -> seconds from midnight


def day_clocks() -> dict[str, int]:
    """_DAY_CLOCKS, made on first use (about 15 ms and 9 MiB): a week of logs has every second of
    the day, and checking each on its first sight cost more."""
    if not _DAY_CLOCKS:
        hours, sixty = [f"{n:02d}" for n in range(24)], [f"{n:02d}" for n in range(60)]
        _DAY_CLOCKS.update(zip(map(":".join, product(hours, sixty, sixty)), range(86_400)))  # in order: 00:00:00 is 0, 00:00:01 is 1...
    return _DAY_CLOCKS


class Times:
    """The date and time fields of lines as epoch seconds (UTC), each distinct value checked once:
    a date as datetime.strptime('%Y-%m-%d') reads it, a time as hh:mm:ss with hh at most 23 and mm
    at most 59 (ss is not checked, and isdigit() admits digits of other scripts: as before)."""

    CACHED = 100_000  # values kept at most (then forgotten): memory flat in the number of lines

    def __init__(self) -> None:
        self._days: dict[str, int] = {}
        self._clocks: dict[str, int] = {}  # other valid times than day_clocks()' (e.g. 10:00:60)

    def day(self, text: str) -> int | None:
        """Epoch seconds of 'yyyy-mm-dd' at midnight; None when it is not a date."""
        day = self._days.get(text)
        if day is None:
            try:
                moment = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
            except ValueError:
                return None
            if len(self._days) >= self.CACHED:
                self._days.clear()
            day = self._days[text] = int(moment.timestamp())
        return day

    def clock(self, text: str) -> int:
        """Seconds from midnight to 'hh:mm:ss'; -1 when it is not a time."""
        found = day_clocks().get(text)
        if found is None:
            found = self._clocks.get(text)
        if found is not None:
            return found
        if (len(text) != 8 or text[2] != ":" or text[5] != ":" or not text[:2].isdigit() or not text[3:5].isdigit() or not text[6:].isdigit()
                or text[:2] > "23" or text[3:5] > "59"):
            return -1
        try:
            found = int(text[:2]) * 3600 + int(text[3:5]) * 60 + int(text[6:])
        except ValueError:  # a digit int() does not read (e.g. a superscript)
            return -1
        if len(self._clocks) >= self.CACHED:
            self._clocks.clear()
        self._clocks[text] = found
        return found

    def shifted(self, days: list[str], clocks: list[str], shift: int) -> Iterator[int] | None:
        """(epoch seconds << shift) of each line, as they are taken; None when a date or time is not
        valid (then ask day() and clock() line by line)."""
        one_day = days.count(days[0]) == len(days)
        if one_day:  # the usual batch: a lookup per line in day_clocks()
            day = self.day(days[0])
            if day is None:
                return None
            seconds = list(map(day_clocks().get, clocks, repeat(-1)))
            if min(seconds) >= 0:
                return map(lshift, map(add, seconds, repeat(day)), repeat(shift))
        distinct = set(clocks)  # over midnight, or times not as IIS writes them: each distinct value once
        second_of = dict(zip(distinct, map(self.clock, distinct)))
        found = {text: self.day(text) for text in set(days)}
        day_of = {text: day for text, day in found.items() if day is not None}
        if min(second_of.values()) < 0 or len(day_of) < len(found):
            return None
        return map(lshift, map(add, map(second_of.__getitem__, clocks), map(day_of.__getitem__, days)), repeat(shift))


# ---------------------------------------------------------------------------------------------
# A whole stream (tests, small files): records as dicts of decoded values


@dataclass
class Malformed:
    line: str
    reason: str


@dataclass
class Stream:
    """Parser state of one log stream: the `#Fields:` in force and the other directives."""

    fields: Fields | None = None
    software: str = ""
    date: str = ""
    headers: int = 0

    def feed(self, line: str) -> dict[str, str] | Malformed | None:
        """A record (field name -> raw value) for a data line, None for a directive or a blank
        line, Malformed for a line that does not fit the header in force (or comes before any)."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return None
        found = directive(text)
        if found is not None:
            name, rest = found
            if name.lower() == "fields":
                if not rest:
                    return Malformed(text, "#Fields: directive without field names")
                self.fields = Fields.parse(rest)
                self.headers += 1
            elif name.lower() == "software":
                self.software = rest
            elif name.lower() == "date":
                self.date = rest
            return None
        if self.fields is None:
            return Malformed(text, "no #Fields: line before it")
        values = split_values(text, self.fields.count)
        if values is None:
            return Malformed(text, f"{len(text.split(' '))} values for the {self.fields.count} fields of the #Fields: line")
        return dict(zip(self.fields.names, values))


def parse_lines(lines: Iterable[str]) -> Iterator[dict[str, str] | Malformed]:
    """Records and malformed lines of one stream, in order (directives are consumed)."""
    stream = Stream()
    for line in lines:
        for part in line.split("\n"):
            got = stream.feed(part)
            if got is not None:
                yield got
