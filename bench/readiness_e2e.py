"""Benchmark: `ops readiness` end to end over a week of a fleet: boto3's real client, paging and
parsing against a local FilterLogEvents responder, then our reading, parsing and judging.

moto's FilterLogEvents gets slower with the size of the log group (BENCHMARKS.md: 0.7 s a page
at 500,000 lines; 10,000,000 lines would take it hours), so this benchmark answers
FilterLogEvents itself: `Responder`, a threading HTTP server on loopback in a subprocess, speaks
the JSON protocol (X-Amz-Target Logs_20140328.FilterLogEvents, application/x-amz-json-1.1) with
the members of botocore's service model (botocore/data/logs/2014-03-28/service-2.json:
FilterLogEventsRequest, FilterLogEventsResponse, FilteredLogEvent; limit at most 10,000;
tests/ops/test_readiness_responder.py checks the shapes against that model). Its log group is
generated as it is read, page by page, never held: --lines IIS lines (bench.readiness.pool: the
observe-mode fields, 5,000 devices, 2% scanners) spread evenly over the 7 days before the run
and interleaved over --streams beacon streams, in time order as FilterLogEvents returns them;
each stream's file starts with its header (#Software, #Version, #Date, #Fields) and starts again
at each UTC midnight, as IIS rolls its log daily. A filterPattern '"#Fields:"' query (readiness's
header lookup) answers the #Fields: lines of the streams asked.

Pages hold up to 10,000 events and 1 MB of them, as the service's (these lines, about 250 bytes:
about 3,700 events a page).

In the same command, one after the other:
- bare: a boto3 loop that pages FilterLogEvents over the window (limit 10,000) and touches each
  message: what reading alone costs through boto3;
- ours: `python -m scripts.ops readiness --region us-east-1 --stack dev --issuer-cn "Example
  Devices CA" --json --min-ready 0 --since <the week's start>` in this process.

    python -m bench.readiness_e2e [--lines N] [--streams N] [--days D] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from bench.plan import machine
from bench.readiness import FIELDS, ROOT, append_row, pool

GROUP = "/flexnet-beacon/dev/iis"
TARGET = "Logs_20140328.FilterLogEvents"
LIMIT = 10_000  # FilterLogEvents' most events a page: EventsLimit's max in the service model
# "Each page returned can contain up to 1 MB of log events or up to 10,000 log events" (FilterLogEvents'
# documentation in the service model). How the service counts an event's size is not documented:
# assumed as PutLogEvents counts it, the message's UTF-8 bytes plus 26.
PAGE_BYTES = 1_048_576
EVENT_OVERHEAD = 26
DAY_MS = 86_400_000
# A FilteredLogEvent's JSON, written directly (Log checks that its messages need no escapes): making
# pages of 10,000 fast enough not to be what the benchmark measures.
_EVENT = '{"logStreamName":"%s","timestamp":%d,"message":"%s","ingestionTime":%d,"eventId":"%020d%028d%08d"}'
LOOKUP_PATTERN = '"#Fields:"'  # the only filter pattern answered (scripts/ops/readiness.py's header lookup)


@dataclass(frozen=True)
class Fleet:
    """The generated log group: `lines` data lines from start_ms to end_ms (line k at
    start + (end - start) * k // lines), line k in stream k % streams."""

    lines: int
    streams: int
    start_ms: int
    end_ms: int
    devices: int = 5_000
    pool: int = 100_000  # distinct lines made (bench.readiness.pool), replayed

    def stamp(self, k: int) -> int:
        return self.start_ms + (self.end_ms - self.start_ms) * k // self.lines

    def first_at(self, ms: int) -> int:
        """The first line at or after ms."""
        if ms <= self.start_ms:
            return 0
        span = self.end_ms - self.start_ms
        k = max(0, (ms - self.start_ms) * self.lines // span - 1)
        while k < self.lines and self.stamp(k) < ms:
            k += 1
        return k

    def stream(self, k: int) -> str:
        return f"i-{k % self.streams:017x}"

    def opens_file(self, k: int) -> bool:
        """Line k is the first of its stream, or the first of its stream on a new UTC day."""
        return k < self.streams or self.stamp(k) // DAY_MS != self.stamp(k - self.streams) // DAY_MS


def _header(stamp: int) -> list[str]:
    day = dt.datetime.fromtimestamp(stamp / 1000, dt.timezone.utc)
    return ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", f"#Date: {day:%Y-%m-%d %H:%M:%S}", f"#Fields: {FIELDS}"]


class Log:
    """The events of a Fleet, made as they are asked for; the FilterLogEvents answers."""

    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        lines = [line for line in pool(fleet.devices, size=fleet.pool) if not line.startswith("#")]
        self.rests = [line[19:] for line in lines]  # what follows 'yyyy-mm-dd hh:mm:ss'
        unsafe = [r for r in self.rests if json.dumps(r)[1:-1] != r or not r.isascii()]
        assert not unsafe, f"lines needing JSON escapes or not ASCII: {unsafe[:1]}"  # answers written without escapes, sized in characters

    def events(self, position: tuple[int, int], end_ms: int, limit: int) -> tuple[list[str], tuple[int, int] | None]:
        """Up to `limit` events and PAGE_BYTES of them, as the JSON of a FilteredLogEvent each, from
        `position` (line, event within its file's header) up to end_ms; and the position after
        them, None at the end."""
        fleet, rests = self.fleet, self.rests
        k, sub = position
        out: list[str] = []
        size = 0
        second, prefix = -1, ""
        while k < fleet.lines:
            stamp = fleet.stamp(k)
            if stamp > end_ms:
                return out, None
            stream = fleet.stream(k)
            slot = (_header(stamp) if fleet.opens_file(k) else []) + [None]
            while sub < len(slot):
                text = slot[sub]
                if text is None:
                    if stamp // 1000 != second:
                        second = stamp // 1000
                        prefix = f"{dt.datetime.fromtimestamp(second, dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
                    text = prefix + rests[(k // fleet.streams + 7919 * (k % fleet.streams)) % len(rests)]
                size += len(text) + EVENT_OVERHEAD  # (the lines are ASCII: characters are bytes)
                if len(out) == limit or (out and size > PAGE_BYTES):
                    return out, (k, sub)
                out.append(_EVENT % (stream, stamp, text, stamp + 1500, stamp, k, sub))
                sub += 1
            k, sub = k + 1, 0
        return out, None

    def fields_lines(self, streams: list[str], start_ms: int, end_ms: int) -> list[tuple[str, int, str]]:
        """The #Fields: lines of `streams` in the window: at each file's start (the stream's first
        line, and its first line of each UTC day)."""
        fleet, found = self.fleet, []
        day = start_ms // DAY_MS * DAY_MS
        while day <= end_ms:
            k = fleet.first_at(max(day, start_ms))
            for _ in range(fleet.streams):
                if k >= fleet.lines or fleet.stamp(k) > end_ms:
                    break
                if fleet.stream(k) in streams and fleet.opens_file(k):
                    found.append((fleet.stream(k), fleet.stamp(k), f"#Fields: {FIELDS}"))
                k += 1
            day += DAY_MS
        return sorted(set(found), key=lambda e: (e[1], e[0]))

    def answer(self, request: dict[str, Any]) -> tuple[int, bytes, dict[str, Any] | None]:
        """(HTTP status, body, the request of the next page or None) for a FilterLogEvents request body."""
        if request.get("logGroupName") != GROUP:
            return _error("ResourceNotFoundException", "The specified log group does not exist.")
        limit = request.get("limit", LIMIT)
        if not isinstance(limit, int) or not 1 <= limit <= LIMIT:
            return _error("InvalidParameterException", f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy "
                                                       f"constraint: Member must have value less than or equal to {LIMIT}")
        start_ms, end_ms = request.get("startTime", 0), request.get("endTime", 1 << 62)
        pattern, names = request.get("filterPattern"), request.get("logStreamNames")
        after: tuple[int, int] | None = None
        if pattern is not None:
            if pattern != LOOKUP_PATTERN or not names:
                return _error("InvalidParameterException", f"this responder answers only the filter pattern {LOOKUP_PATTERN}, with logStreamNames")
            found = [_EVENT % (stream, stamp, text, stamp + 1500, stamp, 0, i)
                     for i, (stream, stamp, text) in enumerate(self.fields_lines(names, start_ms, end_ms))]
        elif names:
            return _error("InvalidParameterException", "this responder answers logStreamNames only with a filter pattern")
        else:
            token = request.get("nextToken")
            line, sub = (int(part) for part in token.split(".")) if token else (self.fleet.first_at(start_ms), 0)
            found, after = self.events((line, sub), end_ms, limit)
        body = '{"events":[' + ",".join(found) + '],"searchedLogStreams":[]' + (f',"nextToken":"{after[0]}.{after[1]}"' if after else "") + "}"
        return 200, body.encode(), ({**request, "nextToken": f"{after[0]}.{after[1]}"} if after else None)


def _error(code: str, message: str) -> tuple[int, bytes, None]:
    return 400, json.dumps({"__type": code, "message": message}).encode(), None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        responder = self.server
        assert isinstance(responder, Responder)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target")
        request = json.loads(body or b"{}")
        responder.seen.append((target, request))
        if target != TARGET:
            status, data = _error("UnknownOperationException", f"this responder answers only {TARGET}")[:2]
        else:
            status, data = responder.answer(request)
        if responder.keep_answers:
            responder.answers.append(data)
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - no line per request
        pass


class Responder(ThreadingHTTPServer):
    """The Log over HTTP on 127.0.0.1 (a free port). While the client reads a page, the next one
    is made (a thread): its time is then not in what the client waits for."""

    daemon_threads = True

    def __init__(self, fleet: Fleet, keep_answers: bool = False):
        super().__init__(("127.0.0.1", 0), Handler)
        self.log = Log(fleet)
        self.seen: list[tuple[str | None, dict[str, Any]]] = []  # (target, request) of each call
        self.keep_answers = keep_answers
        self.answers: list[bytes] = []
        self._next: dict[str, tuple[threading.Event, list[Any]]] = {}  # request (JSON) -> (made, [status, body, next request])
        self._lock = threading.Lock()

    def answer(self, request: dict[str, Any]) -> tuple[int, bytes]:
        key = json.dumps(request, sort_keys=True)
        with self._lock:
            ahead = self._next.pop(key, None)
        if ahead is not None:
            ahead[0].wait()
            status, data, following = ahead[1]
        else:
            status, data, following = self.log.answer(request)
        if following is not None:
            made: tuple[threading.Event, list[Any]] = (threading.Event(), [])

            def make() -> None:
                made[1].extend(self.log.answer(following))
                made[0].set()

            with self._lock:
                self._next = {json.dumps(following, sort_keys=True): made}  # one page ahead, no more
            threading.Thread(target=make, daemon=True).start()
        return status, data

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "Responder":
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()  # shutdown() waits a poll
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def aws_environment(endpoint: str) -> dict[str, str]:
    """The environment for boto3 to talk to `endpoint` with dummy credentials, nothing from ~/.aws
    (to apply after removing every other AWS_ variable)."""
    scratch = tempfile.mkdtemp(prefix="bench-readiness-")
    return {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": f"{scratch}/none", "AWS_SHARED_CREDENTIALS_FILE": f"{scratch}/none",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
    }


def serve(args: argparse.Namespace) -> int:
    """The responder in this (child) process: its port on stdout, then serve until killed."""
    responder = Responder(Fleet(args.lines, args.streams, args.start_ms, args.end_ms, args.devices))
    print(responder.server_address[1], flush=True)
    responder.serve_forever()
    return 0


def bare(start_ms: int, end_ms: int) -> tuple[int, int]:
    import boto3.session

    logs = boto3.session.Session(region_name="us-east-1").client("logs")
    token, events, pages = None, 0, 0
    while True:
        page = logs.filter_log_events(logGroupName=GROUP, startTime=start_ms, endTime=end_ms, limit=LIMIT, **({"nextToken": token} if token else {}))
        pages += 1
        for event in page.get("events") or []:
            events += len(event["message"]) > 0
        token = page.get("nextToken")
        if not token:
            return events, pages


def ours(since: str) -> dict:
    from scripts.ops.cli import main as ops_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = ops_main(["readiness", "--region", "us-east-1", "--stack", "dev", "--issuer-cn", "Example Devices CA", "--json",
                         "--min-ready", "0", "--since", since])
    if code not in (0, 1):
        raise SystemExit(f"ops readiness exited {code}: {err.getvalue()[-2000:]}")
    return json.loads(out.getvalue())


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readiness_e2e")
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--streams", type=int, default=4, help="beacon streams, interleaved")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--write", metavar="FILE")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-ms", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--end-ms", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)
    end_ms = int(time.time() * 1000) - 60_000
    start_ms = end_ms - int(args.days * DAY_MS)
    child = subprocess.Popen(  # its own process: making the answers does not share this process's core and GIL
        [sys.executable, "-m", "bench.readiness_e2e", "--serve", "--lines", str(args.lines), "--streams", str(args.streams),
         "--start-ms", str(start_ms), "--end-ms", str(end_ms), "--devices", str(args.devices)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        port = int((child.stdout.readline() if child.stdout else "").strip())
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(aws_environment(f"http://127.0.0.1:{port}"))
        since = f"{dt.datetime.fromtimestamp((start_ms - 60_000) / 1000, dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
        window = (start_ms - 60_000, end_ms + 3_600_000)
        load_before = os.getloadavg()[0]
        began = time.perf_counter()
        read, pages = bare(*window)
        b = time.perf_counter() - began
        print(f"bare boto3 paging: {read:,} events, {pages:,} pages in {b:.1f} s", file=sys.stderr)
        began = time.perf_counter()
        result = ours(since)
        o = time.perf_counter() - began
        load_after = os.getloadavg()[0]
    finally:
        child.terminate()
        child.wait(timeout=30)
    events, our_pages = result["read"]["events"], result["read"]["pages"]
    print(f"ops readiness: {events:,} events, {our_pages:,} pages, {result['totals']['devices']:,} devices in {o:.1f} s; "
          f"peak RSS {peak_rss_mib():.0f} MiB", file=sys.stderr)
    row = (f"| {dt.date.today().isoformat()} | {machine()} | end to end, boto3 against a local FilterLogEvents responder (loopback, own "
           f"process): {events:,} events ({args.lines:,} lines and their headers) over {args.days:g} days in {args.streams} streams, "
           f"{result['totals']['devices']:,} devices, {our_pages:,} pages of at most 1 MB (load average {load_before:.1f} -> {load_after:.1f}) | "
           f"{events / o:,.0f} lines/s ({o:.0f} s) | bare boto3 FilterLogEvents paging loop {read / b:,.0f} lines/s ({b:.0f} s) | "
           f"{o / b:.2f}x the time | peak RSS of the process (both loops) {peak_rss_mib():.0f} MiB |")
    print(row)
    if args.write:
        append_row(ROOT / args.write, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
