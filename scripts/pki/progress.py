"""What the verbs print: result lines on stdout (:func:`out`), notes and warnings on stderr
(:func:`note`), and the progress of the bulk verbs on stderr (:class:`Progress`).

Progress on a terminal: a transient `rich` progress bar (gone when the verb ends, so only the
result lines stay). Otherwise (pipes, CI logs, tests): one plain line every ``every`` items,
e.g. ``issued 100/1000``, and the last count when it is not a multiple. Nothing for a single
item. `rich` is imported only when a bar is shown; without it the plain lines are used.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

EVERY = 100


def out(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Progress:
    def __init__(self, verb: str, total: int, every: int = EVERY, stream: TextIO | None = None):
        self.verb = verb  # past tense: "issued", "signed", "exported"
        self.total = total
        self.every = every
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "Progress":
        if self.total > 1 and _is_tty(self.stream):
            self._bar = _rich_bar(self.stream)
            if self._bar is not None:
                self._bar.start()
                self._task = self._bar.add_task(self.verb, total=self.total)
        return self

    def advance(self, count: int = 1) -> None:
        before, self.done = self.done, self.done + count
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.total > 1 and self.done // self.every != before // self.every:
            self._line()

    def out(self, text: str) -> None:
        """A result line for stdout. With a bar on the terminal and stdout the terminal too, it
        is printed above the bar (rich), so the bar is not torn; a redirected stdout gets it as is."""
        if self._bar is not None and _is_tty(sys.stdout):
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stdout.write(text + "\n")  # buffered: one write per line costs more than the signing

    def _line(self) -> None:
        print(f"{self.verb} {self.done}/{self.total}", file=self.stream, flush=True)

    def __exit__(self, *exc: Any) -> None:
        sys.stdout.flush()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.total > self.every and self.done % self.every and exc[0] is None:
            self._line()  # the tail after the last multiple


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _rich_bar(stream: TextIO) -> Any:
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    except ImportError:
        return None
    return Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
