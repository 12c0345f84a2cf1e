"""Benchmark: `ops readiness`'s W3C parsing + per-device aggregation + judging against a bare loop that only splits the same lines.

Synthetic IIS W3C lines (the observe-mode fields, several thousand devices, a header every
25,000 lines, 2% scanner requests to other paths, certificates from the configured CA, another
CA, none, revoked, expired) are generated in-process into a pool of 100,000 lines spread over
--span seconds (default 6,048: the density of the issue's week, 10,000,000 lines in 7 days of a
5,000-device fleet, 16.5 lines a second). The pool is replayed up to --lines, one copy after the
other, either advancing (each copy --span later: a log read in time order, as IIS writes it and
as readiness reads a stream) or repeating (the same times again: every copy goes back in time,
what the model's out-of-order path handles). The lines are made before the clock starts; both
loops read the same lines. The model gets them as scripts.ops.readiness.read_pages yields them:
pages of 10,000 as columns (stream, timestamp, message).
Speed: both loops in this process, interleaved, medians of CPU time. Memory: each loop in a fresh
subprocess over --small and over --big lines, the pages made as they are read: ru_maxrss of the
process and the tracemalloc peak of the loop alone, which must not grow with the number of lines.

    python -m bench.readiness [--lines N] [--span S] [--replay advancing|repeating] [--small N] [--big N] [--runs N] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Iterator

from bench.plan import ROOT, machine
from bench.results import append_rows

POOL = 100_000
PAGE = 10_000  # events per FilterLogEvents page (the API's maximum)
HEADER_EVERY = 25_000
WEEK_SPAN = 6_048  # seconds: 100,000 lines at the density of 10,000,000 a week
START = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
FIELDS = (
    "date time s-sitename s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs-version "
    "cs(User-Agent) cs(Referer) cs-host sc-status sc-substatus sc-win32-status sc-bytes cs-bytes time-taken "
    "crt-subject crt-issuer crt-serial crt-flags"
)
CA = "C=US,+O=Example+Corp,+CN=Example+Devices+CA"
OTHER = "C=US,+O=Other+Corp,+CN=Other+Corp+Issuing+CA"
AGENT = "FlexNet+Inventory+Agent/2024+R1"
SECTION = "## Readiness"


def header(day: str) -> list[str]:
    return ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", f"#Date: {day} 00:00:00", f"#Fields: {FIELDS}"]


def pool(devices: int, seed: int = 13, span: int = 86_400, size: int = POOL) -> list[str]:
    """`size` lines over `span` seconds from START: a header every HEADER_EVERY lines, each line a random device."""
    rng = random.Random(seed)
    kinds = rng.choices(["ca", "other", "none", "revoked", "expired"], weights=[80, 5, 10, 3, 2], k=devices)
    lines: list[str] = []
    for i in range(size):
        moment = START + dt.timedelta(seconds=i * span // size)
        if i % HEADER_EVERY == 0:
            lines += header(f"{moment:%Y-%m-%d}")
        stamp = f"{moment:%Y-%m-%d %H:%M:%S}"
        if rng.random() < 0.02:
            lines.append(f"{stamp} W3SVC1 BEACON-1 10.0.1.10 GET /.env - 443 - 192.0.2.{rng.randrange(256)} HTTP/1.1 Mozilla/5.0+zgrab/0.x - - 404 0 2 1245 180 1 - - - 0")
            continue
        number = rng.randrange(devices)
        kind = kinds[number]
        ip = f"10.{number // 65536}.{number // 256 % 256}.{number % 256}"
        status, sub, cert = "200", "0", f"C=US,+O=Example+Corp,+CN=device-{number:05d} {CA} 1a-{number:06x} 1"
        if kind == "other":
            cert = f"C=US,+O=Example+Corp,+CN=device-{number:05d} {OTHER} 2b-{number:06x} 1"
        elif kind == "none":
            cert = "- - - 0"
        elif kind == "revoked":
            status, sub = "403", "13"
        elif kind == "expired":
            status, sub = "403", "17"
        path = "/ManageSoftDL/" if rng.random() < 0.8 else "/ManageSoftRL/inventory.ndi"
        lines.append(
            f"{stamp} W3SVC1 BEACON-1 10.0.1.10 GET {path} - 443 - {ip} HTTP/1.1 {AGENT} - beacon1.example.com {status} {sub} 0 "
            f"{rng.randrange(300, 90000)} {rng.randrange(200, 4000)} {rng.randrange(1, 400)} {cert}"
        )
    return lines


def replayed(lines: list[str], count: int, span: int, advancing: bool) -> Iterator[list[str]]:
    """`count` lines of the pool replayed, in pages of PAGE: copy k of the pool k * span seconds
    later when advancing (the dates and times of its data lines and #Date: lines moved), else as is."""
    made: list[str] = []
    for copy in itertools.count():
        shift = dt.timedelta(seconds=copy * span if advancing else 0)
        moved: dict[str, str] = {}  # 'yyyy-mm-dd hh:mm:ss' -> the same moved by shift (a few thousand per copy)
        for line in lines:
            if shift and (line[:1].isdigit() or line.startswith("#Date: ")):
                at = 7 if line[0] == "#" else 0
                old = line[at:at + 19]
                new = moved.get(old)
                if new is None:
                    new = moved[old] = f"{dt.datetime.fromisoformat(old) + shift:%Y-%m-%d %H:%M:%S}"
                line = line[:at] + new + line[at + 19:]
            made.append(line)
            count -= 1
            if len(made) == PAGE or count == 0:
                yield made
                made = []
            if count == 0:
                return


STREAM = "i-0123456789abcdef0"


def bare(pages: list[list[str]] | Iterator[list[str]]) -> int:
    fields = 0
    for page in pages:
        for line in page:
            fields += len(line.split(" "))
    return fields


def ours(pages: list[list[str]] | Iterator[list[str]]) -> int:
    """Parse, aggregate and judge, as `ops readiness` does with the pages read_pages yields."""
    from scripts.ops import readiness_outcome, w3c
    from scripts.ops.readiness_model import AGENT_PATHS, Aggregator

    w3c._parse_dn.cache_clear()  # every run starts cold, as a fresh `ops readiness` does
    readiness_outcome._facts.cache_clear()
    w3c._DAY_CLOCKS.clear()
    aggregator = Aggregator(AGENT_PATHS)
    streams, stamps = [STREAM] * PAGE, [0] * PAGE  # (the lines' own dates and times count, not the event times)
    for page in pages:
        aggregator.feed_columns(streams[:len(page)], stamps[:len(page)], page)
    return len(aggregator.finish(["Example Devices CA"]).devices)


def timed(loop, pages: list[list[str]]) -> tuple[float, int]:
    """CPU seconds of this process (the VM is shared: wall time would count the other work on it)."""
    start = time.process_time()
    result = loop(pages)
    return time.process_time() - start, result


def child(mode: str, count: int, devices: int, span: int, advancing: bool) -> int:
    """One loop in this (fresh) process, over pages made as they are read: its peak memory as JSON on stdout."""
    lines = pool(devices, span=span)
    import scripts.ops.readiness  # noqa: F401 (imports before the measurement)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    pages = replayed(lines, count, span, advancing)
    result = ours(pages) if mode == "ours" else bare(pages)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "lines": count, "result": result, "maxrssKiB": after, "poolMaxrssKiB": before, "tracedPeakBytes": peak}))
    return 0


def memory(mode: str, count: int, devices: int, span: int, advancing: bool) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.readiness", "--child", mode, "--lines", str(count), "--devices", str(devices), "--span", str(span),
         "--replay", "advancing" if advancing else "repeating"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout)


INTRO = (
    "`python -m bench.readiness`: `ops readiness`'s W3C parsing, per-device aggregation and judging (scripts/ops/w3c.py, "
    "scripts/ops/readiness_model.py, scripts/ops/readiness_outcome.py) against a bare loop that only splits the same lines on "
    "spaces, measured in the same command. Synthetic IIS lines (5,000 devices) from a pool of 100,000 generated in-process and "
    "replayed (see the row); speed in-process, interleaved runs, medians of CPU time; memory in a fresh subprocess per loop and line count "
    "(ru_maxrss includes the interpreter and the pool; the tracemalloc peak is the loop's own, pages made as they are read). "
    "CloudWatch Logs returns at most 10,000 events per FilterLogEvents call, one HTTPS round trip each (not measured here: "
    "see bench/readiness_e2e.py). This 2-vCPU VM is shared: the load average is in the row."
)
TABLE_HEAD = "| date | machine | what | ours | bare split loop | ratio | memory (smaller -> larger line count) |\n|---|---|---|---|---|---|---|\n"


def append_row(path: Path, row: str) -> None:
    """Add `row` to the table under '## Readiness', creating the section at the end when missing."""
    append_rows(path, SECTION, [row], intro=INTRO, table_head=TABLE_HEAD)


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def described(count: int, span: int, advancing: bool) -> str:
    order = ("in time order (the pool replayed, each copy later)" if advancing
             else f"out of time order (the pool replayed as is: back in time every {POOL:,} lines)")
    return f"{count:,} W3C lines at {POOL / span:,.1f} lines/s ({POOL:,} over {span:,} s), {order}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readiness")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--span", type=int, default=WEEK_SPAN, help=f"seconds the {POOL:,}-line pool covers (default {WEEK_SPAN:,}: "
                                                                    "the density of 10,000,000 lines a week)")
    parser.add_argument("--replay", choices=("advancing", "repeating"), default="advancing")
    parser.add_argument("--small", type=int, default=200_000, help="the smaller line count of the memory comparison")
    parser.add_argument("--big", type=int, help="the larger line count of the memory comparison (default --lines)")
    parser.add_argument("--no-memory", action="store_true", help="speed only")
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", metavar="FILE", help="append the results to this markdown file")
    parser.add_argument("--child", choices=("ours", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    advancing = args.replay == "advancing"
    if args.child:
        return child(args.child, args.lines, args.devices, args.span, advancing)
    measured = {}  # memory first: a child process starts with this one's peak RSS (ru_maxrss survives fork and exec)
    if not args.no_memory:
        big = args.big or args.lines
        measured = {(mode, n): memory(mode, n, args.devices, args.span, advancing) for mode in ("bare", "ours") for n in (args.small, big)}
    lines = pool(args.devices, span=args.span)
    pages = list(replayed(lines, args.lines, args.span, advancing))  # made before the clock starts
    ours(pages[:1])  # imports and first-call costs out of the measurement
    bare_times, our_times = [], []
    devices = 0
    for i in range(args.runs):
        bare_times.append(timed(bare, pages)[0])
        elapsed, devices = timed(ours, pages)
        our_times.append(elapsed)
        print(f"run {i + 1}/{args.runs}: bare {bare_times[-1]:.2f}s ours {our_times[-1]:.2f}s ({devices} devices)", file=sys.stderr)
    b, o = statistics.median(bare_times), statistics.median(our_times)
    load = os.getloadavg()[0]  # a shared VM: other work slows both loops alike, the ratio less than the figures
    today = dt.date.today().isoformat()
    rows = [
        f"| {today} | {machine()} | parse + aggregate + judge {described(args.lines, args.span, advancing)}, {devices:,} devices "
        f"(in-process, CPU time; load average {load:.1f}) | {args.lines / o:,.0f} lines/s ({o:.2f} s) | {args.lines / b:,.0f} lines/s ({b:.2f} s) | "
        f"{o / b:.2f}x the time | - |",
    ]
    if measured:
        big = args.big or args.lines
        for (mode, n), m in measured.items():
            print(f"memory {mode} {n:,} lines: maxrss {mib(m['maxrssKiB'])} (pool {mib(m['poolMaxrssKiB'])}), traced peak {mib(m['tracedPeakBytes'] / 1024)}",
                  file=sys.stderr)
        small_o, big_o = measured[("ours", args.small)], measured[("ours", big)]
        small_b, big_b = measured[("bare", args.small)], measured[("bare", big)]
        rows.append(
            f"| {today} | {machine()} | peak memory, fresh subprocess per loop, {args.small:,} -> {big:,} lines ({args.replay}) | ru_maxrss "
            f"{mib(small_o['maxrssKiB'])} -> {mib(big_o['maxrssKiB'])}; loop's traced peak {mib(small_o['tracedPeakBytes'] / 1024)} -> "
            f"{mib(big_o['tracedPeakBytes'] / 1024)} | ru_maxrss {mib(small_b['maxrssKiB'])} -> {mib(big_b['maxrssKiB'])}; traced peak "
            f"{mib(small_b['tracedPeakBytes'] / 1024)} -> {mib(big_b['tracedPeakBytes'] / 1024)} | {big_o['maxrssKiB'] / big_b['maxrssKiB']:.2f}x "
            f"ru_maxrss at {big:,} lines | {'flat' if big_o['tracedPeakBytes'] <= 1.1 * small_o['tracedPeakBytes'] else 'GROWS'} with the lines "
            f"(x{big_o['tracedPeakBytes'] / max(small_o['tracedPeakBytes'], 1):.2f}) |"
        )
    for row in rows:
        print(row)
    if args.write:
        for row in rows:
            append_row(ROOT / args.write, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
