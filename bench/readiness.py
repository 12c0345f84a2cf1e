"""Benchmark: `ops readiness`'s W3C parsing + per-device aggregation against a bare loop that only splits the same lines.

Synthetic IIS W3C lines (the observe-mode fields, several thousand devices, a header every
25,000 lines, 2% scanner requests to other paths, certificates from the configured CA, another
CA, none, revoked, expired) are generated in-process into a pool of 100,000 lines; both loops go
over the same pool N times over, so the lines are the same and memory for them is the same.
Speed: both loops in this process, interleaved, medians. Memory: each loop in a fresh
subprocess over 200,000 and over 1,000,000 lines: ru_maxrss of the process (pool included) and
the tracemalloc peak of the loop alone (started after the pool is built), which must not grow
with the number of lines.

    python -m bench.readiness [--lines N] [--small N] [--devices N] [--runs N] [--write BENCHMARKS.md]
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

from bench.plan import ROOT, machine
from bench.results import append_rows

POOL = 100_000
HEADER_EVERY = 25_000
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


def pool(devices: int, seed: int = 13) -> list[str]:
    """POOL lines over one day: a header every HEADER_EVERY lines, each line a random device."""
    rng = random.Random(seed)
    kinds = rng.choices(["ca", "other", "none", "revoked", "expired"], weights=[80, 5, 10, 3, 2], k=devices)
    day = "2026-06-01"
    lines: list[str] = []
    for i in range(POOL):
        if i % HEADER_EVERY == 0:
            lines += header(day)
        seconds = i * 86400 // POOL
        stamp = f"{day} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
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


STREAM = "i-0123456789abcdef0"


def bare(lines: list[str], count: int) -> int:
    fields = 0
    for line in itertools.islice(itertools.cycle(lines), count):
        fields += len(line.split(" "))
    return fields


def events(lines: list[str]) -> list[tuple[str, int, str]]:
    """The pool as scripts.ops.readiness.read_events yields it: (stream, timestamp ms, line)."""
    return [(STREAM, 0, line) for line in lines]


def ours(pooled: list[tuple[str, int, str]], count: int) -> int:
    from scripts.ops import readiness_outcome, w3c
    from scripts.ops.readiness_model import AGENT_PATHS, Aggregator

    w3c._parse_dn.cache_clear()  # every run starts cold, as a fresh `ops readiness` does
    readiness_outcome._facts.cache_clear()
    aggregator = Aggregator(AGENT_PATHS)
    aggregator.feed(itertools.islice(itertools.cycle(pooled), count))
    return len(aggregator.finish(["Example Devices CA"]).devices)


def timed(loop, data: list, count: int) -> tuple[float, int]:
    start = time.perf_counter()
    result = loop(data, count)
    return time.perf_counter() - start, result


def child(mode: str, count: int, devices: int) -> int:
    """One loop in this (fresh) process: its peak memory as JSON on stdout."""
    lines = pool(devices)
    pooled = events(lines) if mode == "ours" else []
    import scripts.ops.readiness  # noqa: F401 (imports before the measurement)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    result = ours(pooled, count) if mode == "ours" else bare(lines, count)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "lines": count, "result": result, "maxrssKiB": after, "poolMaxrssKiB": before, "tracedPeakBytes": peak}))
    return 0


def memory(mode: str, count: int, devices: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.readiness", "--child", mode, "--lines", str(count), "--devices", str(devices)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout)


INTRO = (
    "`python -m bench.readiness`: `ops readiness`'s W3C parsing and per-device aggregation (scripts/ops/w3c.py, "
    "scripts/ops/readiness_model.py) against a bare loop that only splits the same lines on spaces, measured in the same command. "
    "1,000,000 synthetic IIS lines (5,000 devices) from a pool of 100,000 generated in-process; speed in-process, interleaved runs, "
    "medians; memory in a fresh subprocess per loop and line count (ru_maxrss includes the interpreter and the 100,000-line "
    "pool; the tracemalloc peak is the loop's own). CloudWatch Logs returns at most 10,000 events per FilterLogEvents call, "
    "one HTTPS round trip each (not measured here): on real log groups the reading, not the parsing, should bound the verb. "
    "This 2-vCPU VM is shared: the load average is in the row."
)
TABLE_HEAD = "| date | machine | what | ours | bare split loop | ratio | memory (smaller -> larger line count) |\n|---|---|---|---|---|---|---|\n"


def append_row(path: Path, row: str) -> None:
    """Add `row` to the table under '## Readiness', creating the section at the end when missing."""
    append_rows(path, SECTION, [row], intro=INTRO, table_head=TABLE_HEAD)


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readiness")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=200_000, help="the smaller line count of the memory comparison")
    parser.add_argument("--big", type=int, help="the larger line count of the memory comparison (default --lines)")
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", metavar="FILE", help="append the results to this markdown file")
    parser.add_argument("--child", choices=("ours", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.lines, args.devices)
    lines = pool(args.devices)
    pooled = events(lines)
    ours(pooled, 1000)  # imports and first-call costs out of the measurement
    bare_times, our_times = [], []
    devices = 0
    for i in range(args.runs):
        bare_times.append(timed(bare, lines, args.lines)[0])
        elapsed, devices = timed(ours, pooled, args.lines)
        our_times.append(elapsed)
        print(f"run {i + 1}/{args.runs}: bare {bare_times[-1]:.2f}s ours {our_times[-1]:.2f}s ({devices} devices)", file=sys.stderr)
    b, o = statistics.median(bare_times), statistics.median(our_times)
    load = os.getloadavg()[0]  # a shared VM: other work slows both loops alike, the ratio less than the figures
    big = args.big or args.lines
    measured = {(mode, n): memory(mode, n, args.devices) for mode in ("bare", "ours") for n in (args.small, big)}
    for (mode, n), m in measured.items():
        print(f"memory {mode} {n:,} lines: maxrss {mib(m['maxrssKiB'])} (pool {mib(m['poolMaxrssKiB'])}), traced peak {mib(m['tracedPeakBytes'] / 1024)}", file=sys.stderr)
    small_o, big_o = measured[("ours", args.small)], measured[("ours", big)]
    small_b, big_b = measured[("bare", args.small)], measured[("bare", big)]
    today = dt.date.today().isoformat()
    rows = [
        f"| {today} | {machine()} | parse + aggregate {args.lines:,} W3C lines, {devices:,} devices (in-process; load average {load:.1f}) | "
        f"{args.lines / o:,.0f} lines/s ({o:.2f} s) | {args.lines / b:,.0f} lines/s ({b:.2f} s) | {o / b:.2f}x the time | - |",
        f"| {today} | {machine()} | peak memory, fresh subprocess per loop, {args.small:,} -> {big:,} lines | ru_maxrss {mib(small_o['maxrssKiB'])} -> {mib(big_o['maxrssKiB'])}; "
        f"loop's traced peak {mib(small_o['tracedPeakBytes'] / 1024)} -> {mib(big_o['tracedPeakBytes'] / 1024)} | "
        f"ru_maxrss {mib(small_b['maxrssKiB'])} -> {mib(big_b['maxrssKiB'])}; traced peak {mib(small_b['tracedPeakBytes'] / 1024)} -> "
        f"{mib(big_b['tracedPeakBytes'] / 1024)} | {big_o['maxrssKiB'] / big_b['maxrssKiB']:.2f}x ru_maxrss at {big:,} lines | "
        f"{'flat' if big_o['tracedPeakBytes'] <= 1.1 * small_o['tracedPeakBytes'] else 'GROWS'} with the lines (x{big_o['tracedPeakBytes'] / max(small_o['tracedPeakBytes'], 1):.2f}) |",
    ]
    for row in rows:
        print(row)
    if args.write:
        for row in rows:
            append_row(ROOT / args.write, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
