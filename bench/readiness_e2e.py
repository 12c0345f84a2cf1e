"""Benchmark: `ops readiness` end to end against moto's CloudWatch Logs (loopback HTTP server).

N synthetic IIS lines (bench.readiness.pool: the observe-mode fields, 5,000 devices, a header
every 25,000 lines), spread evenly over the last `--hours` hours and over `--streams` beacon
streams, are put into a moto server in this process (ThreadedMotoServer, as the ops tests use);
then, in the same command, interleaved:

- ours: `python -m scripts.ops readiness --region us-east-1 --stack dev --issuer-cn ... --json
  --min-ready 0 --since 7d` in this process (boto3 paging FilterLogEvents, parsing, judging);
- baseline: a bare boto3 loop that pages FilterLogEvents over the same window and touches each
  message (the reading alone).

moto's time per FilterLogEvents page grows with the events stored (0.3 s a page at 200,000 lines, 0.7 s
at 500,000), so the times are moto's more than AWS's, and 10,000,000 lines are out of reach: the
difference between ours and the bare read is the part of readiness beyond reading.

    python -m bench.readiness_e2e [--lines N] [--streams N] [--hours H] [--runs N] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import statistics
import sys
import tempfile
import time

from bench.plan import machine
from bench.readiness import ROOT, append_row, pool

GROUP = "/flexnet-beacon/dev/iis"
PAGE = 10_000  # FilterLogEvents' most events a page


def server() -> str:
    from moto.server import ThreadedMotoServer

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    scratch = tempfile.mkdtemp(prefix="bench-readiness-")
    os.environ.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": f"{scratch}/none", "AWS_SHARED_CREDENTIALS_FILE": f"{scratch}/none",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
    })
    return endpoint


def client():
    import boto3.session

    return boto3.session.Session(region_name="us-east-1").client("logs")


def load(lines: int, streams: int, hours: float, devices: int) -> tuple[int, int]:
    """Put `lines` events (each stream its own header first) spread over the last `hours`; (start ms, end ms)."""
    logs = client()
    logs.create_log_group(logGroupName=GROUP)
    source = pool(devices)
    end = int(time.time() * 1000) - 60_000
    start = end - int(hours * 3_600_000)
    per_stream = lines // streams
    for s in range(streams):
        stream = f"i-{s:017x}"
        logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
        batch: list[dict] = []
        size = 0
        for i in range(per_stream):
            text = source[(i + s * 7919) % len(source)] if i >= 4 else source[i]  # the pool starts with a header
            stamp = start + (end - start) * i // per_stream
            if not text.startswith("#"):
                moment = dt.datetime.fromtimestamp(stamp / 1000, dt.timezone.utc)
                text = f"{moment:%Y-%m-%d %H:%M:%S}{text[19:]}"
            batch.append({"timestamp": stamp, "message": text})
            size += len(text) + 26
            if len(batch) == PAGE or size > 900_000:
                logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=batch)
                batch, size = [], 0
        if batch:
            logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=batch)
    return start, end


def bare(start: int, end: int) -> int:
    logs = client()
    token, events = None, 0
    while True:
        page = logs.filter_log_events(logGroupName=GROUP, startTime=start - 3_600_000, endTime=end + 60_000, limit=PAGE,
                                      **({"nextToken": token} if token else {}))
        for event in page.get("events") or []:
            events += len(event["message"]) > 0
        token = page.get("nextToken")
        if not token:
            return events


def ours() -> dict:
    from scripts.ops.cli import main as ops_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = ops_main(["readiness", "--region", "us-east-1", "--stack", "dev", "--issuer-cn", "Example Devices CA", "--json",
                         "--min-ready", "0", "--since", "7d"])
    if code not in (0, 1):
        raise SystemExit(f"ops readiness exited {code}: {err.getvalue()[-2000:]}")
    return json.loads(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readiness_e2e")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", metavar="FILE")
    args = parser.parse_args(argv)
    server()
    began = time.perf_counter()
    start, end = load(args.lines, args.streams, args.hours, args.devices)
    print(f"loaded {args.lines:,} lines into moto in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    bare_times, our_times = [], []
    result: dict = {}
    for i in range(args.runs):
        t = time.perf_counter()
        read = bare(start, end)
        bare_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = ours()
        our_times.append(time.perf_counter() - t)
        print(f"run {i + 1}/{args.runs}: bare read {bare_times[-1]:.2f}s ({read:,} events) ours {our_times[-1]:.2f}s "
              f"({result['read']['events']:,} events, {result['read']['pages']} pages, {result['totals']['devices']:,} devices)", file=sys.stderr)
    b, o = statistics.median(bare_times), statistics.median(our_times)
    load_average = os.getloadavg()[0]
    row = (f"| {dt.date.today().isoformat()} | {machine()} | end to end against moto (ThreadedMotoServer on loopback): {args.lines:,} lines "
           f"in {args.streams} streams over {args.hours:g} h, {result['totals']['devices']:,} devices, {result['read']['pages']} pages "
           f"(load average {load_average:.1f}) | {args.lines / o:,.0f} lines/s ({o:.2f} s) | bare FilterLogEvents paging loop "
           f"{args.lines / b:,.0f} lines/s ({b:.2f} s) | {o / b:.2f}x the time | - |")
    print(row)
    if args.write:
        append_row(ROOT / args.write, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
