"""The FilterLogEvents responder of bench/readiness_e2e.py speaks what botocore's service model
says (issue 20, point 9), and `ops readiness` reads through it as through CloudWatch Logs.

The end-to-end benchmark of a week of logs (10,000,000 lines) answers FilterLogEvents itself,
because moto slows down with the log group's size. Its numbers mean something only if boto3's
real client, paging and parsing run against answers shaped as the service's: every request the
client sends (the benchmark's loop and readiness's, including the header lookup) has only members
of FilterLogEventsRequest, every answer only members of FilterLogEventsResponse and
FilteredLogEvent with their types, the page limit is the model's maximum, and paging returns each
event once, in time order, with each stream's file opened by its header every UTC day.

Also here: scripts/ops/readiness.py's read_pages, page by page as columns, gives the digest,
counts and newest event per stream that event-by-event reading gave.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from typing import Any

import botocore.loaders
import boto3.session
import pytest

from bench.readiness_e2e import EVENT_OVERHEAD, GROUP, LIMIT, LOOKUP_PATTERN, PAGE_BYTES, TARGET, Fleet, Log, Responder, aws_environment
from scripts.ops import readiness
from scripts.ops.aws import Aws
from scripts.ops.log_window import Reading
from scripts.ops.readiness_model import AGENT_PATHS, Aggregator

MODEL = botocore.loaders.Loader().load_service_model("logs", "service-2")
SHAPES = MODEL["shapes"]
PYTHON_TYPES = {"string": str, "long": int, "integer": int, "boolean": bool, "list": list}
NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)


def members(shape: str) -> dict[str, str]:
    """Member name -> its shape's type (string, long, list...)."""
    return {name: SHAPES[spec["shape"]]["type"] for name, spec in SHAPES[shape]["members"].items()}


def check_request(target: str | None, body: dict[str, Any]) -> None:
    request = members("FilterLogEventsRequest")
    assert target == f"{MODEL['metadata']['targetPrefix']}.FilterLogEvents" == TARGET
    assert set(body) <= set(request), set(body) - set(request)
    for name, value in body.items():
        assert isinstance(value, PYTHON_TYPES[request[name]]), (name, value)


def check_answer(data: bytes) -> dict[str, Any]:
    answer = json.loads(data)
    response, event = members("FilterLogEventsResponse"), members("FilteredLogEvent")
    assert set(answer) <= set(response) and "events" in answer, set(answer) - set(response)
    for item in answer["events"]:
        assert set(item) == set(event), set(item) ^ set(event)  # the service sends every member
        for name, value in item.items():
            assert isinstance(value, PYTHON_TYPES[event[name]]), (name, value)
    assert isinstance(answer.get("nextToken", ""), str)
    return answer


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(endpoint: str) -> None:
        for name, value in aws_environment(endpoint).items():
            monkeypatch.setenv(name, value)

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    return use


def test_the_limit_is_the_models_maximum() -> None:
    limit = SHAPES[SHAPES["FilterLogEventsRequest"]["members"]["limit"]["shape"]]
    assert (limit["type"], limit["max"]) == ("integer", LIMIT) and readiness.PAGE_LIMIT == LIMIT


def test_a_page_holds_at_most_10000_events_and_1_mb_of_them() -> None:
    """As the service's: IIS lines of about 300 bytes fill 1 MB with about 3,300 events."""
    end = int(NOW.timestamp() * 1000)
    log = Log(Fleet(8_000, 2, end - 86_400_000, end, devices=300, pool=2_000))
    position: tuple[int, int] | None = (0, 0)
    sizes: list[tuple[int, int]] = []
    while position is not None:
        page, position = log.events(position, end, LIMIT)
        sizes.append((len(page), sum(len(json.loads(e)["message"]) + EVENT_OVERHEAD for e in page)))
    assert sum(n for n, _ in sizes) == 8_000 + 4 * 2 * 2 and all(size <= PAGE_BYTES for _, size in sizes)
    assert all(PAGE_BYTES - 400 < size for _, size in sizes[:-1]) and 3_000 < sizes[0][0] < LIMIT


def test_paging_through_boto3_returns_every_event_once_in_time_order(environment: Any) -> None:
    end = int(NOW.timestamp() * 1000)
    fleet = Fleet(1_500, 3, end - 2 * 86_400_000 - 3_600_000, end, devices=300, pool=2_000)  # two midnights: three files a stream
    with Responder(fleet, keep_answers=True) as responder:
        environment(responder.endpoint)
        logs = boto3.session.Session(region_name="us-east-1").client("logs")
        events: list[dict[str, Any]] = []
        token = None
        while True:
            page = logs.filter_log_events(logGroupName=GROUP, startTime=fleet.start_ms, endTime=end, limit=400,
                                          **({"nextToken": token} if token else {}))
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                break
        with pytest.raises(logs.exceptions.InvalidParameterException):
            logs.filter_log_events(logGroupName=GROUP, limit=LIMIT + 1)
        with pytest.raises(logs.exceptions.ResourceNotFoundException):
            logs.filter_log_events(logGroupName="/flexnet-beacon/none/iis")
        lookup = logs.filter_log_events(logGroupName=GROUP, logStreamNames=[fleet.stream(1)], filterPattern=LOOKUP_PATTERN,
                                        startTime=end - 86_400_000, endTime=end)["events"]
    for target, body in responder.seen:
        check_request(target, body)
    answers = [check_answer(data) for data in responder.answers if b'"events"' in data]
    assert len(answers) == 5  # four pages and the lookup
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps) and len({e["eventId"] for e in events}) == len(events)
    fields = [e for e in events if e["message"].startswith("#Fields: ")]
    data = [e for e in events if not e["message"].startswith("#")]
    assert len(data) == fleet.lines and len(fields) == 3 * 3 and len(events) == fleet.lines + 4 * len(fields)
    for e in data:  # each line's own date and time are its event's
        assert e["message"][:19] == f"{dt.datetime.fromtimestamp(e['timestamp'] // 1000, dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    days = {(e["logStreamName"], e["timestamp"] // 86_400_000) for e in data}
    assert {(e["logStreamName"], e["timestamp"] // 86_400_000) for e in fields} == days  # a header each day each stream
    assert [(e["logStreamName"], e["message"]) for e in lookup] == [(fleet.stream(1), fields[0]["message"])]


def test_readiness_reads_through_the_responder_as_the_events_fed_directly(environment: Any) -> None:
    """The window starts inside the streams' files: readiness looks their headers up (the
    responder's filter pattern answer); what it reads and judges through boto3 is what the same
    events give fed straight to the model, and the digest is the event-by-event one."""
    end = int(NOW.timestamp() * 1000)
    fleet = Fleet(1_500, 3, end - 86_400_000, end, devices=300, pool=2_000)
    start = dt.datetime.fromtimestamp((end - 80_000_000) / 1000, dt.timezone.utc)
    with Responder(fleet) as responder:
        environment(responder.endpoint)
        aws = Aws(None, "us-east-1")
        outcome, reading = readiness.run(aws, GROUP, start, NOW, ["Example Devices CA"], list(AGENT_PATHS), progress=lambda _: None)
    for target, body in responder.seen:
        check_request(target, body)
    assert any(body.get("filterPattern") == LOOKUP_PATTERN for _, body in responder.seen)
    log = responder.log
    read, _ = log.events((fleet.first_at(int(start.timestamp() * 1000)), 0), end, 10 * fleet.lines)
    events = [json.loads(text) for text in read]
    assert reading.events == len(events) and outcome.aggregator.headers_looked_up == 3
    direct = Aggregator(AGENT_PATHS, lambda stream, before: log.fields_lines([stream], 0, before)[-1][2], int(start.timestamp()))
    direct.feed((e["logStreamName"], e["timestamp"], e["message"]) for e in events)
    judged = direct.finish(["Example Devices CA"])
    assert [d.to_dict() for d in outcome.devices] == [d.to_dict() for d in judged.devices] and len(judged.devices) > 100
    digest = hashlib.sha256()
    for e in events:
        digest.update(f"{e['logStreamName']}\0{e['timestamp']}\0{e['message']}\n".encode("utf-8", "surrogatepass"))
    assert reading.digest.hexdigest() == digest.hexdigest()
    assert reading.stream_last == {s: max(e["timestamp"] for e in events if e["logStreamName"] == s) for s in {e["logStreamName"] for e in events}}


class Pages:
    """A logs client answering FilterLogEvents with given pages (in turn)."""

    def __init__(self, pages: list[dict[str, Any]]):
        self.pages = pages

    def client(self, service: str) -> "Pages":
        return self

    def filter_log_events(self, **request: Any) -> dict[str, Any]:
        return self.pages.pop(0)


def test_read_pages_gives_what_event_by_event_reading_gave() -> None:
    """Out of time order across streams (the newest per stream is its greatest timestamp, not its
    last), a member left out (botocore leaves out what the answer lacks), an empty page."""
    first = [{"logStreamName": "b", "timestamp": 30, "message": "x y"}, {"logStreamName": "a", "timestamp": 50, "message": "é\ud800"},
             {"logStreamName": "b", "timestamp": 10, "message": ""}, {"timestamp": 5, "message": "no stream"}]
    second = [{"logStreamName": "a", "timestamp": 40, "message": "z"}, {"logStreamName": "c", "message": "no time"}]
    reading = Reading(GROUP, NOW, NOW)
    pages = list(readiness.read_pages(Pages([{"events": first, "nextToken": "1"}, {"events": [], "nextToken": "2"}, {"events": second}]),  # type: ignore[arg-type]
                                      reading, lambda _: None))
    assert pages == [(["b", "a", "b", ""], [30, 50, 10, 5], ["x y", "é\ud800", "", "no stream"]), (["a", "c"], [40, 0], ["z", "no time"])]
    assert (reading.pages, reading.events) == (3, 6)
    assert reading.stream_last == {"b": 30, "a": 50, "": 5, "c": 0}
    digest = hashlib.sha256()
    for e in first + second:
        digest.update(f"{e.get('logStreamName') or ''}\0{e.get('timestamp') or 0}\0{e['message']}\n".encode("utf-8", "surrogatepass"))
    assert reading.digest.hexdigest() == digest.hexdigest()
