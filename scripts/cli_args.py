"""argparse value types shared by the command lines: a number within bounds, with a clear message."""

from __future__ import annotations

import argparse
import os
from typing import Callable, Sequence


def bounded(kind: type, low: float, high: float, what: str, low_inclusive: bool = True) -> Callable[[str], float]:
    """An argparse `type=` that parses `kind` (int or float) and checks low..high."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; expected {what}") from None
        if not ((low <= value) if low_inclusive else (low < value)) or value > high:
            bound = f"{low:g} to {high:g}" if low_inclusive else f"more than {low:g} and at most {high:g}"
            raise argparse.ArgumentTypeError(f"got {value}; expected {bound} ({what})")
        return value

    parse.__name__ = what.replace(" ", "_")  # argparse names the type in its own errors
    return parse


def undecodable_argument(argv: Sequence[str]) -> str | None:
    """The first command-line argument that is not valid UTF-8, as a one-line message naming it,
    or None. Python hands such bytes over as lone surrogates (surrogateescape), which crash the
    first print, file name or socket that meets them (UnicodeEncodeError); commands refuse them
    up front instead. The argument is named by its option (``--prefix``) or its position."""
    for position, text in enumerate(argv):
        if _is_utf8(text):
            continue
        name, value = f"argument {position + 1}", text
        if text.startswith("--") and "=" in text and _is_utf8(text.split("=", 1)[0]):
            name, value = text.split("=", 1)
        elif position > 0 and argv[position - 1].startswith("-") and _is_utf8(argv[position - 1]):
            name = argv[position - 1]
        return f"{name}: got {_raw(value)!r}, which is not valid UTF-8; expected UTF-8 text"
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw(text: str) -> bytes:
    """The bytes the argument had (surrogateescape undone), for the message."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")

