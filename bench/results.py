"""BENCHMARKS.md: add result rows to a section's table, creating the section when it is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def append_rows(path: Path, section: str, rows: Sequence[str], intro: str = "", table_head: str = "") -> None:
    """Insert `rows` after the last table row under `section` ("## Name"). A missing section is
    made at the end of the file with `intro` and `table_head`; a section without a table gets
    `table_head` first."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    if section not in lines:
        lines += ["", section, ""] + ([intro, ""] if intro else [])
    start = lines.index(section)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    table = [i for i in range(start, end) if lines[i].startswith("|")]
    if table:
        position = table[-1] + 1
    else:
        position = end
        while position > start + 1 and lines[position - 1] == "":
            position -= 1
        block = ["", *table_head.rstrip("\n").splitlines()]
        lines[position:position] = block
        position += len(block)
    lines[position:position] = list(rows)
    while lines and lines[-1] == "":
        lines.pop()
    path.write_text("\n".join(lines) + "\n")
