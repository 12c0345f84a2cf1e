"""The readiness model's reading of unusual #Fields: lines and of unreadable lines: the cases the
mutation run of scripts/ops/readiness_model.py found untested (docs/testing.md)."""

from __future__ import annotations

import datetime as dt
from typing import Iterator

import pytest

from scripts.ops.readiness_model import AGENT_PATHS, BATCH, EXAMPLES, Aggregator

STREAM = "u_ex-i-0abc"
SUBJECT, ISSUER = "C=US,+O=Example+Corp,+CN=laptop-0001", "C=US,+O=Example+Corp,+CN=Example+Devices+CA"
JUNE = int(dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp())


def read(*lines: str, event_ms: int = 0) -> Aggregator:
    agg = Aggregator(AGENT_PATHS)
    for text in lines:
        agg.add(STREAM, text, event_ms)
    return agg


def test_a_fields_line_without_the_sub_status_counts_every_request() -> None:
    agg = read("#Fields: date time c-ip cs-uri-stem sc-status cs(User-Agent) crt-subject crt-issuer crt-serial crt-flags",
               f"2026-06-01 12:00:00 198.51.100.7 /ManageSoftDL/ 200 FlexNet+Agent {SUBJECT} {ISSUER} 0a-1b 1",
               f"2026-06-01 12:05:00 198.51.100.7 /ManageSoftRL/inventory.ndi 403 FlexNet+Agent {SUBJECT} {ISSUER} 0a-1b 1")
    (presentation,) = agg.presentations.values()
    assert agg.malformed == 0 and agg.requests == 2
    assert presentation.requests == 2 and presentation.statuses == {"200": 1, "403": 1} and presentation.ips == {"198.51.100.7"}
    assert (presentation.first, presentation.last) == (JUNE, JUNE + 300)
    assert presentation.last_request == ("403", "198.51.100.7", "FlexNet+Agent", STREAM)  # the stream it came from


def test_a_fields_line_with_a_date_but_no_time_reads_the_event_time() -> None:
    event = (JUNE + 3600) * 1000
    agg = read("#Fields: date c-ip cs-uri-stem sc-status sc-substatus cs(User-Agent) crt-subject crt-issuer crt-serial crt-flags",
               f"2026-06-01 198.51.100.7 /ManageSoftDL/ 200 0 FlexNet+Agent {SUBJECT} {ISSUER} 0a-1b 1", event_ms=event)
    (presentation,) = agg.presentations.values()
    assert agg.malformed == 0 and presentation.requests == 1
    assert presentation.first == presentation.last == JUNE + 3600  # the event's time: the line holds no time of day


def test_the_line_s_date_and_time_win_over_the_event_time() -> None:
    agg = read("#Fields: date time c-ip cs-uri-stem sc-status sc-substatus cs(User-Agent) crt-subject crt-issuer crt-serial crt-flags",
               f"2026-06-01 12:00:00 198.51.100.7 /ManageSoftDL/ 200 0 FlexNet+Agent {SUBJECT} {ISSUER} 0a-1b 1", event_ms=0)
    (presentation,) = agg.presentations.values()
    assert presentation.first == presentation.last == JUNE


def test_unreadable_lines_are_all_counted_and_the_first_few_shown_cut_at_300_characters() -> None:
    header = "#Fields: date time c-ip cs-uri-stem sc-status sc-substatus cs(User-Agent) crt-subject crt-issuer crt-serial crt-flags"
    exact, longer = "x" * 300, "y" * 301
    agg = read(header, exact, longer, *(f"junk-{n}" for n in range(EXAMPLES)))
    assert agg.malformed == EXAMPLES + 2
    shown = agg.malformed_examples
    assert len(shown) == EXAMPLES
    assert shown[0]["line"] == exact and shown[1]["line"] == "y" * 300 + "..."
    assert shown[0]["reason"] == "1 values for the 11 fields of the #Fields: line in force" and shown[0]["stream"] == STREAM


def test_feed_reads_its_events_a_batch_at_a_time() -> None:
    """The events are taken BATCH at a time (memory bounded by a batch, whatever the stream): a
    source that fails after the first batch has had that batch counted."""
    def events() -> Iterator[tuple[str, int, str]]:
        yield STREAM, 0, "#Fields: date time c-ip cs-uri-stem sc-status sc-substatus cs(User-Agent) crt-subject crt-issuer crt-serial crt-flags"
        for n in range(BATCH + 100):
            yield STREAM, 0, f"2026-06-01 12:00:00 198.51.100.{n % 250} /ManageSoftDL/ 200 0 FlexNet+Agent - - - 0"
        raise ConnectionError("the source broke")

    agg = Aggregator(AGENT_PATHS)
    with pytest.raises(ConnectionError):
        agg.feed(events())
    assert agg.lines == BATCH


FIELDS = ["date", "time", "c-ip", "cs-uri-stem", "sc-status", "sc-substatus", "cs(User-Agent)", "crt-subject", "crt-issuer", "crt-serial", "crt-flags"]
VALUES = {"date": "2026-06-01", "time": "12:00:00", "c-ip": "198.51.100.7", "cs-uri-stem": "/ManageSoftDL/", "sc-status": "200",
          "sc-substatus": "0", "cs(User-Agent)": "FlexNet+Agent", "crt-subject": SUBJECT, "crt-issuer": ISSUER, "crt-serial": "0a-1b",
          "crt-flags": "1"}


@pytest.mark.parametrize("first", ["time", "crt-subject", "crt-flags", "crt-issuer", "c-ip", "cs-uri-stem"])
def test_any_field_may_come_first(first: str) -> None:
    """W3C logs name their fields in any order: a field at position 0 is a field like any other."""
    order = [first, *(f for f in FIELDS if f != first)]
    scanner = {**VALUES, "cs-uri-stem": "/.env", "sc-status": "404"}
    agg = read("#Fields: " + " ".join(order), " ".join(VALUES[f] for f in order), " ".join(scanner[f] for f in order))
    (presentation,) = agg.presentations.values()
    assert agg.malformed == 0 and agg.without_cert_fields == 0
    assert agg.requests == 1 and agg.ignored_paths == 1  # not an agent path: not a request of the device
    assert (presentation.subject, presentation.issuer, presentation.serial, presentation.flags) == (SUBJECT, ISSUER, "0a-1b", "1")
    assert presentation.first == JUNE and presentation.ips == {"198.51.100.7"}


def test_without_crt_flags_the_certificate_fields_are_not_read() -> None:
    """The certificate fields are read only when the #Fields: line has crt-subject and crt-flags
    (IIS logs the four together): with one missing, the requests count as without a certificate."""
    order = [f for f in FIELDS if f != "crt-flags"]
    agg = read("#Fields: " + " ".join(order), " ".join(VALUES[f] for f in order), " ".join(VALUES[f] for f in order))
    assert agg.presentations == {} and agg.without_cert_fields == 2 and agg.requests == 2  # two batches (one add each)
    assert list(agg.addresses) == ["198.51.100.7"]


@pytest.mark.parametrize("headers_before", [False, True], ids=["headers in the same page", "headers in an earlier page"])
def test_a_page_interleaving_two_beacons_keeps_each_request_with_its_own_stream(headers_before: bool) -> None:
    """FilterLogEvents pages interleave the beacons' streams: each line is read as part of its own
    stream (its beacon, its order), whatever its neighbours; on the line-by-line path (a page
    with #Fields: lines) and on the batch path (a page of data lines only) alike."""
    header = "#Fields: " + " ".join(FIELDS)

    def request(device: str, minute: int) -> str:
        values = {**VALUES, "crt-subject": f"C=US,+O=Example+Corp,+CN={device}", "time": f"12:{minute:02d}:00"}
        return " ".join(values[f] for f in FIELDS)

    agg = Aggregator(AGENT_PATHS)
    streams = ["beacon-a", "beacon-b", "beacon-a", "beacon-b", "beacon-a", "beacon-b"]
    messages = [header, header, request("laptop-a", 1), request("laptop-b", 2), request("laptop-a", 3), request("laptop-b", 4)]
    if headers_before:
        agg.feed_columns(streams[:2], [0] * 2, messages[:2])
        agg.feed_columns(streams[2:], [0] * 4, messages[2:])
    else:
        agg.feed_columns(streams, [0] * 6, messages)
    seen = {p.subject.rsplit("=", 1)[1]: (p.requests, p.last_request[3], p.last - JUNE) for p in agg.presentations.values()}
    assert seen == {"laptop-a": (2, "beacon-a", 180), "laptop-b": (2, "beacon-b", 240)}
    assert agg.malformed == 0 and agg.headerless == {} and agg.lines == 6


def test_line_numbers_run_on_from_page_to_page() -> None:
    """A device named by two spellings keeps the first one read: the line numbers that order the
    tallies continue across pages (each page a batch of data lines only)."""
    header = "#Fields: " + " ".join(FIELDS)

    def policy(name: str, minute: int) -> str:
        values = {**VALUES, "cs-uri-stem": f"/ManageSoftDL/Policies/Merged/{name}-c0a80a01.npl", "time": f"12:{minute:02d}:00",
                  "crt-subject": "-", "crt-issuer": "-", "crt-serial": "-", "crt-flags": "0"}
        return " ".join(values[f] for f in FIELDS)

    agg = Aggregator(AGENT_PATHS)
    agg.feed_columns([STREAM], [0], [header])
    agg.feed_columns([STREAM] * 3, [0] * 3, [policy("laptop-0007", 1), policy("laptop-0008", 2), policy("DESK-0004", 3)])
    agg.feed_columns([STREAM] * 2, [0] * 2, [policy("desk-0004", 4), policy("laptop-0009", 5)])
    assert agg.lines == 6
    assert [(entry.key, entry.requests) for entry in agg.named.values()] == [
        ("laptop-0007", 1), ("laptop-0008", 1), ("DESK-0004", 2), ("laptop-0009", 1)]


def test_ignored_paths_and_bad_times_are_counted_across_batches_with_their_stream() -> None:
    header = "#Fields: " + " ".join(FIELDS)
    scanner = " ".join({**VALUES, "cs-uri-stem": "/.env", "sc-status": "404"}[f] for f in FIELDS)
    bad_time = " ".join({**VALUES, "time": "25:00:00"}[f] for f in FIELDS)
    agg = read(header, scanner, scanner, bad_time)  # each add() is a batch of its own
    assert agg.ignored_paths == 2 and agg.requests == 0
    assert agg.malformed == 1
    assert agg.malformed_examples == [{"stream": STREAM, "reason": "date/time 2026-06-01 25:00:00 is not yyyy-mm-dd hh:mm:ss", "line": bad_time}]


def test_a_batch_with_a_bad_time_still_reads_its_good_lines_midnight_included() -> None:
    """One unreadable time sends its batch through the line-by-line path: the others, a request
    at 00:00:00 among them, keep their times; a bad time on a line that is not an agent request
    (a scanner's) is not an unreadable agent line."""
    header = "#Fields: " + " ".join(FIELDS)
    midnight = " ".join({**VALUES, "time": "00:00:00"}[f] for f in FIELDS)
    bad_time = " ".join({**VALUES, "time": "25:00:00", "c-ip": "198.51.100.9"}[f] for f in FIELDS)
    scanner_bad_time = " ".join({**VALUES, "time": "99:99:99", "cs-uri-stem": "/.env"}[f] for f in FIELDS)
    agg = Aggregator(AGENT_PATHS)
    agg.feed_columns([STREAM] * 4, [0] * 4, [header, midnight, bad_time, scanner_bad_time])
    (presentation,) = agg.presentations.values()
    assert presentation.first == presentation.last == JUNE - 12 * 3600 and presentation.ips == {"198.51.100.7"}
    assert agg.malformed == 1 and agg.malformed_examples[0]["line"] == bad_time
    assert agg.requests == 1 and agg.ignored_paths == 1


def test_a_carriage_return_ends_a_line_and_nothing_else_is_stripped() -> None:
    """CRLF logs: the CR goes, the rest of the line stays as it is: a value ending in 'X' keeps it,
    and a space before the CR is an empty value too many (unreadable, as without the CR)."""
    order = [f for f in FIELDS if f != "cs(User-Agent)"] + ["cs(User-Agent)"]
    good = " ".join({**VALUES, "cs(User-Agent)": "AgentX"}[f] for f in order)
    agg = Aggregator(AGENT_PATHS)
    agg.feed_columns([STREAM] * 3, [0] * 3, ["#Fields: " + " ".join(order) + "\r", good + "\r", good + " \r"])
    (presentation,) = agg.presentations.values()
    assert presentation.last_request[2] == "AgentX" and presentation.requests == 1
    assert agg.malformed == 1 and agg.malformed_examples[0]["reason"] == "12 values for the 11 fields of the #Fields: line in force"


def test_a_byte_order_mark_goes_and_only_it() -> None:
    """A BOM before a line (a log file's first line, or any line a copy put one on) is dropped, and
    nothing after it: a first value starting with 'X' keeps it."""
    order = ["cs(User-Agent)", *(f for f in FIELDS if f != "cs(User-Agent)")]
    line = " ".join({**VALUES, "cs(User-Agent)": "XAgent"}[f] for f in order)
    agg = read("\ufeff#Fields: " + " ".join(order), "\ufeff" + line)
    (presentation,) = agg.presentations.values()
    assert agg.malformed == 0 and agg.requests == 1 and presentation.last_request[2] == "XAgent"


def test_a_fields_line_without_names_is_unreadable_in_its_stream() -> None:
    agg = read("#Fields:")
    assert agg.malformed == 1
    assert agg.malformed_examples == [{"stream": STREAM, "reason": "#Fields: directive without field names", "line": "#Fields:"}]


def test_two_beacons_with_different_fields_lines_in_one_page_each_read_by_its_own() -> None:
    """A page whose streams were written under different #Fields: lines (one beacon's logging
    changed): each stream's lines are read with its own, never with the other's."""
    order_b = list(reversed(FIELDS))

    def request(order: list[str], device: str) -> str:
        return " ".join({**VALUES, "crt-subject": f"C=US,+O=Example+Corp,+CN={device}"}[f] for f in order)

    agg = Aggregator(AGENT_PATHS)
    agg.feed_columns(["beacon-a", "beacon-b"], [0, 0], ["#Fields: " + " ".join(FIELDS), "#Fields: " + " ".join(order_b)])
    agg.feed_columns(["beacon-a", "beacon-b", "beacon-a", "beacon-b"], [0] * 4,
                     [request(FIELDS, "laptop-a"), request(order_b, "laptop-b"), request(FIELDS, "laptop-c"), request(order_b, "laptop-d")])
    assert agg.malformed == 0
    assert sorted((p.subject.rsplit("=", 1)[1], p.last_request[3], p.first) for p in agg.presentations.values()) == [
        ("laptop-a", "beacon-a", JUNE), ("laptop-b", "beacon-b", JUNE), ("laptop-c", "beacon-a", JUNE), ("laptop-d", "beacon-b", JUNE)]


def test_lines_before_any_fields_line_are_unreadable_and_the_event_reads_on() -> None:
    """A data line before its stream's #Fields: line is unreadable (named with its stream); the
    lines after it in the same event are read, the event time standing in for a missing time."""
    order = [f for f in FIELDS if f != "time"]
    data = " ".join(VALUES[f] for f in order)
    agg = Aggregator(AGENT_PATHS)
    agg.add(STREAM, "\n".join([data, "#Fields: " + " ".join(order), data]), (JUNE + 60) * 1000)
    assert agg.malformed == 1 and agg.headerless == {STREAM: 1}
    assert agg.malformed_examples == [{"stream": STREAM, "reason": "no #Fields: line before it in its log stream", "line": data}]
    (presentation,) = agg.presentations.values()
    assert presentation.requests == 1 and presentation.first == JUNE + 60


def _line(values: dict[str, str]) -> str:
    return " ".join({**VALUES, **values}[f] for f in FIELDS)


NO_CERT = {"crt-subject": "-", "crt-issuer": "-", "crt-serial": "-", "crt-flags": "0"}


def test_refusals_and_uploads_are_summed_over_every_request_of_a_tally() -> None:
    agg = read("#Fields: " + " ".join(FIELDS),
               _line({"sc-status": "403", "sc-substatus": "13"}), _line({"sc-status": "403", "sc-substatus": "13", "c-ip": "198.51.100.8"}),
               _line({**NO_CERT, "cs-uri-stem": "/ManageSoftRL/inventory.ndi"}),
               _line({**NO_CERT, "cs-uri-stem": "/ManageSoftRL/inventory.ndi", "sc-status": "403", "sc-substatus": "7"}))
    (presentation,) = agg.presentations.values()
    assert presentation.recent_refused == {"403.13": 2} and presentation.statuses == {"403.13": 2}
    address = agg.addresses["198.51.100.7"]
    assert (address.requests, address.uploads, address.recent_uploads) == (2, 2, 2)


def test_a_policy_download_is_not_an_upload() -> None:
    agg = read("#Fields: " + " ".join(FIELDS), _line({**NO_CERT, "cs-uri-stem": "/ManageSoftDL/Policies/Merged/desk-0004-c0a80a01.npl"}))
    (named,) = agg.named.values()
    assert (named.key, named.requests, named.uploads) == ("desk-0004", 1, 0)


@pytest.mark.parametrize("cn,named", [("LAPTOP-0001", "laptop-0001"), ("laptop-0002.corp.example.com", "LAPTOP-0002"),
                                      ("laptop-0003.corp.example.com", "LAPTOP-0003.CORP.EXAMPLE.COM")])
def test_a_policy_naming_a_certificate_device_is_that_device_s(cn: str, named: str) -> None:
    """The name in a policy URL is matched to the certificate devices case-blind, by the whole CN
    or by its first label (a CN that is the device's FQDN)."""
    agg = read("#Fields: " + " ".join(FIELDS), _line({"crt-subject": f"C=US,+O=Example+Corp,+CN={cn}"}),
               _line({**NO_CERT, "cs-uri-stem": f"/ManageSoftDL/Policies/Merged/{named}-c0a80a01.npl"}))
    outcome = agg.finish(["Example Devices CA"])
    assert outcome.rules.source == "the issuing CAs' Issuer rules"
    (device,) = [d for d in outcome.devices if d.kind != "address"]
    assert (device.identity, device.state) == (cn, "no-certificate")
    assert device.why == f"1 request(s) in the recent window naming it in the URL ({named}-*.npl) came without a certificate"


def test_blank_and_bom_only_lines_inside_an_event_are_skipped_not_the_rest() -> None:
    header = "#Fields: " + " ".join(FIELDS)
    agg = Aggregator(AGENT_PATHS)
    agg.add(STREAM, "\n".join([header, "", _line({}), "\ufeff", _line({"c-ip": "198.51.100.8"})]), 0)
    (presentation,) = agg.presentations.values()
    assert presentation.requests == 2 and presentation.ips == {"198.51.100.7", "198.51.100.8"} and agg.malformed == 0


def test_an_address_counts_as_enrolled_from_its_earliest_certificate() -> None:
    """Requests without a certificate from an address after the first certificate any device
    presented from it block, however old: the earliest of the devices there counts."""
    agg = Aggregator(AGENT_PATHS, recent_from=JUNE + 7200)
    agg.add(STREAM, "#Fields: " + " ".join(FIELDS), 0)
    agg.add(STREAM, _line({"time": "12:00:00", "crt-subject": "C=US,+CN=laptop-0001"}), 0)
    agg.add(STREAM, _line({"time": "12:10:00", **NO_CERT}), 0)
    agg.add(STREAM, _line({"time": "12:30:00", "crt-subject": "C=US,+CN=laptop-0002"}), 0)
    outcome = agg.finish(["Example Devices CA"])
    (address,) = [d for d in outcome.devices if d.kind == "address"]
    assert address.state == "no-certificate"
    assert "; after a certificate had come from this address (2026-06-01T12:00:00Z)" in address.why


def test_an_expected_device_seen_only_by_its_policy_url_is_not_unseen() -> None:
    agg = read("#Fields: " + " ".join(FIELDS), _line({**NO_CERT, "cs-uri-stem": "/ManageSoftDL/Policies/Merged/desk-0004-c0a80a01.npl"}))
    outcome = agg.finish(["Example Devices CA"], expected={"desk-0004": "DESK-0004", "laptop-0009": "laptop-0009"})
    assert [d.identity for d in outcome.devices if d.state == "unseen"] == ["laptop-0009"]
