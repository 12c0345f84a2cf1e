"""argparse value types shared by the command lines: a number within bounds, with a clear message."""

from __future__ import annotations

import argparse
from typing import Callable


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
