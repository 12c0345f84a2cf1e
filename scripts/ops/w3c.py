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

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Iterator

EMPTY = "-"


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
