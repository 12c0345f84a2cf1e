"""Errors, output and time helpers shared by the verbs of `python -m scripts.ops`."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any, Sequence

from components.certs.facts import iso as iso  # the one ISO 8601 form of the project, re-exported

PROG = "python -m scripts.ops"
PROJECT = "flexnet-beacon"


class OpsError(Exception):
    """Something went wrong or was found wrong: one line on stderr, exit code 1."""

    exit_code = 1


class InputError(OpsError):
    """Bad input (arguments, files, configuration, credentials): one line on stderr, exit code 2."""

    exit_code = 2


def now_utc() -> dt.datetime:
    """The current time (tests replace this function)."""
    return dt.datetime.now(dt.timezone.utc)


def parse_time(text: Any) -> dt.datetime | None:
    """ISO 8601 from PowerShell ('o' format, 7 fractional digits) or Python; None when unusable."""
    if not isinstance(text, str) or not text.strip():
        return None
    value = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def days_left(moment: dt.datetime, now: dt.datetime) -> float:
    return (moment - now).total_seconds() / 86400.0


def out(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    """Progress and notes go to stderr, so stdout stays a clean table or JSON document."""
    print(f"ops: {text}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> list[str]:
    """Left-aligned columns; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    lines = []
    for row in cells:
        padded = [value.ljust(width) for value, width in zip(row, widths)] + [row[-1]]
        lines.append((indent + "  ".join(padded)).rstrip())
    return lines


def short(thumbprint: str | None, keep: int = 8) -> str:
    """A thumbprint shortened for tables: first and last characters."""
    if not thumbprint:
        return "-"
    text = str(thumbprint).upper()
    return text if len(text) <= 2 * keep + 1 else f"{text[:keep]}..{text[-4:]}"


def as_list(value: Any) -> list[Any]:
    """Windows PowerShell 5.1 may serialise a one-element array as the element itself, and an
    empty one as null: read either as a list."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and set(value) == {"value", "Count"} and isinstance(value["value"], list):
        return value["value"]  # the System.Array ETS wrapper of PowerShell 5.1
    return [value]
