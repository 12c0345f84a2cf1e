"""Benchmark: the whole-conversation firewall replay (tests/network/test_firewall_flows.py) against its floor.

The floor is the same pytest process collecting the same file without running it (interpreter,
pytest, the program's imports); the difference is the replay itself: the mocked programs, the
pcaps and one Suricata run per stack and variant. Serial (no xdist), so the figure is what the
replay costs one core of `make test`.

    python -m bench.replay [--runs N] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys

from bench.plan import ROOT, machine, timed
from bench.results import append_rows

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "tests/network/test_firewall_flows.py"]


def append_row(path, row: str, section: str = "## Firewall replay") -> None:
    """Add `row` to the table under `section`, creating the section at the end when missing."""
    intro = f"`python -m bench.replay`: {(__doc__ or '').splitlines()[0][len('Benchmark: '):]}"
    head = "| date | machine | what | median | floor | ratio | replay alone |\n|---|---|---|---|---|---|---|\n"
    append_rows(path, section, [row], intro=intro, table_head=head)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", metavar="FILE", help="append the result to this markdown file")
    args = parser.parse_args(argv)
    floor_times, replay_times = [], []
    timed(PYTEST + ["--collect-only"])  # warm the page cache once
    for i in range(args.runs):
        floor_times.append(timed(PYTEST + ["--collect-only"]))
        replay_times.append(timed(PYTEST))
        print(f"run {i + 1}/{args.runs}: floor {floor_times[-1]:.2f}s replay {replay_times[-1]:.2f}s", file=sys.stderr)
    floor, replay = statistics.median(floor_times), statistics.median(replay_times)
    line = (
        f"| {dt.date.today().isoformat()} | {machine()} | tests/network/test_firewall_flows.py, serial | {replay:.2f} s | "
        f"{floor:.2f} s | {replay / floor:.2f}x | {replay - floor:.2f} s |"
    )
    print(line)
    if args.write:
        append_row(ROOT / args.write, line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
