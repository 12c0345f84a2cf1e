"""Benchmark: `scripts.plan --stack prod` against its floor, measured in the same run.

The floor is a Python process that only imports pulumi and the pulumi_aws modules the program
uses (their import dominates start-up). Goal: plan / floor <= 2.0.

    python -m bench.plan [--runs N] [--stack prod] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import append_rows

ROOT = Path(__file__).resolve().parent.parent
# pulumi_aws loads its submodules lazily: touching a class forces the real import.
FLOOR = (
    "import pulumi, pulumi_aws as aws\n"
    "aws.ec2.Vpc, aws.networkfirewall.Firewall, aws.iam.Role, aws.ssm.get_parameter, aws.cloudwatch.LogGroup\n"
)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def append_row(path: Path, row: str) -> None:
    """Add `row` at the end of the table under '## Plan' (other sections stay where they are)."""
    append_rows(path, "## Plan", [row])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plan")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--write", metavar="FILE", help="append the result to this markdown file")
    args = parser.parse_args(argv)
    floor_times, plan_times = [], []
    with tempfile.TemporaryDirectory() as out:
        timed([sys.executable, "-c", FLOOR])  # warm the page cache once
        for i in range(args.runs):
            floor_times.append(timed([sys.executable, "-c", FLOOR]))
            plan_times.append(timed([sys.executable, "-m", "scripts.plan", "--stack", args.stack, "--out", out]))
            print(f"run {i + 1}/{args.runs}: floor {floor_times[-1]:.2f}s plan {plan_times[-1]:.2f}s", file=sys.stderr)
    floor, planned = statistics.median(floor_times), statistics.median(plan_times)
    ratio = planned / floor
    line = (
        f"| {dt.date.today().isoformat()} | {machine()} | plan --stack {args.stack} | {planned:.2f} s | "
        f"{floor:.2f} s | {ratio:.2f}x | {'met' if ratio <= 2.0 else 'MISSED'} (goal <= 2x) |"
    )
    print(line)
    if args.write:
        append_row(ROOT / args.write, line)
    return 0 if ratio <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
