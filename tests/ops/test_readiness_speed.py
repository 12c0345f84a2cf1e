"""The shortcuts of the readiness model's hot loop give what line-by-line reading gives (issue 20,
point 9). No timing here: speed is bench/readiness.py's, as a ratio against a bare split loop.

- the time of a line is recomputed only when its text differs from the line before's (a new day
  with the same clock, a bad time after a good one, an empty time are each judged afresh);
- a presentation is found by its subject first (one string hashed) and checked against issuer,
  serial and flags, so renewed certificates of one subject used by turns stay apart;
- an event of several lines, a #Fields: line among them, changes the fields for the lines after it;
- feeding everything at once or one event at a time gives the same tallies.
"""

from __future__ import annotations

import datetime as dt

from scripts.ops.readiness_model import AGENT_PATHS, Aggregator

HEADER = "#Fields: date time c-ip cs(User-Agent) cs-uri-stem sc-status sc-substatus crt-subject crt-issuer crt-serial crt-flags"
OTHER = "#Fields: time date c-ip cs(User-Agent) cs-uri-stem sc-status sc-substatus crt-subject crt-issuer crt-serial crt-flags"
CA = "C=US,+CN=Example+Devices+CA"


def cert(cn: str, serial: str = "0a") -> str:
    return f"C=US,+CN={cn} {CA} {serial} 1"


def day(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp())


EVENTS = [
    ("b1", HEADER),
    ("b1", f"2026-06-01 10:00:00 10.0.0.1 agent /ManageSoftDL/ 200 0 {cert('dev-1')}"),
    ("b1", f"2026-06-02 10:00:00 10.0.0.1 agent /ManageSoftDL/ 200 0 {cert('dev-1')}"),  # same clock, next day
    ("b1", f"2026-06-02 10:00:00 10.0.0.2 agent /ManageSoftDL/ 403 13 {cert('dev-1', '0b')}"),  # renewed, used by turns
    ("b1", f"2026-06-02 10:00:01 10.0.0.1 agent /ManageSoftDL/ 200 0 {cert('dev-1')}"),
    ("b1", f"2026-06-02 10:00:01 10.0.0.2 agent /ManageSoftRL/x 200 0 {cert('dev-1', '0b')}"),
    ("b1", f"2026-06-02 10:61:01 10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),  # bad time
    ("b1", f"2026-06-02 10:61:01 10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),  # the same bad time again
    ("b1", f"2026-06-02  10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),  # no time at all
    ("b1", f"2026-06-0x 10:00:01 10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),  # bad day, the clock of the line before
    ("b1", f"2026-06-02 10:00:01 10.0.0.3 agent /ManageSoftDL/ 200 0 {cert('dev-3')}"),
    ("b2", f"{OTHER}\n10:00:05 2026-06-03 10.0.0.4 agent /ManageSoftDL/ 200 0 {cert('dev-4')}"),  # fields change within an event
    ("b2", f"10:00:05 2026-06-03 10.0.0.4 agent /ManageSoftDL/ 200 0 {cert('dev-4')}"),
    ("b1", f"2026-06-03 10:00:05 10.0.0.1 agent /ManageSoftDL/ 200 0 {cert('dev-1')}"),  # b1 keeps its own fields
]


def tallies(aggregator: Aggregator) -> dict:
    return {
        key[0].split("CN=")[-1] + "/" + key[2]: (p.requests, p.recent, p.first, p.last, p.last_request, dict(p.statuses), dict(p.recent_refused), p.ip, sorted(p.ips))
        for key, p in aggregator.presentations.items()
    }


def counters(aggregator: Aggregator) -> tuple:
    return (aggregator.lines, aggregator.requests, aggregator.recent_requests, aggregator.malformed, aggregator.headers, aggregator.directives)


def test_time_and_subject_shortcuts_match_line_by_line_reading() -> None:
    at_once = Aggregator(AGENT_PATHS, recent_from=day("2026-06-02T00:00:00"))
    at_once.feed((stream, 0, message) for stream, message in EVENTS)
    one_by_one = Aggregator(AGENT_PATHS, recent_from=day("2026-06-02T00:00:00"))
    for stream, message in EVENTS:
        one_by_one.add(stream, message, 0)
    assert tallies(at_once) == tallies(one_by_one)
    assert counters(at_once) == counters(one_by_one) == (15, 9, 8, 4, 2, 2)
    got = tallies(at_once)
    assert got["dev-1/0a"] == (4, 3, day("2026-06-01T10:00:00"), day("2026-06-03T10:00:05"), ("200", "10.0.0.1", "agent", "b1"),
                               {"200": 4}, {}, "10.0.0.1", ["10.0.0.1"])
    assert got["dev-1/0b"] == (2, 2, day("2026-06-02T10:00:00"), day("2026-06-02T10:00:01"), ("200", "10.0.0.2", "agent", "b1"),
                               {"403.13": 1, "200": 1}, {"403.13": 1}, "10.0.0.2", ["10.0.0.2"])
    assert got["dev-3/0a"][:4] == (1, 1, day("2026-06-02T10:00:01"), day("2026-06-02T10:00:01"))
    assert got["dev-4/0a"][:4] == (2, 2, day("2026-06-03T10:00:05"), day("2026-06-03T10:00:05"))
    reasons = [e["reason"] for e in at_once.malformed_examples]
    assert reasons == [
        "date/time 2026-06-02 10:61:01 is not yyyy-mm-dd hh:mm:ss",
        "date/time 2026-06-02 10:61:01 is not yyyy-mm-dd hh:mm:ss",
        "date/time 2026-06-02  is not yyyy-mm-dd hh:mm:ss",
        "date/time 2026-06-0x 10:00:01 is not yyyy-mm-dd hh:mm:ss",
    ]
    outcome = at_once.finish(["Example Devices CA"])
    assert {d.identity: d.requests for d in outcome.devices} == {"dev-1": 6, "dev-3": 1, "dev-4": 2}


def test_a_time_equal_to_the_starting_state_is_still_checked() -> None:
    """The first line's time is checked even when its day is the empty text the aggregator starts with."""
    aggregator = Aggregator()
    aggregator.feed([("b1", 0, "#Fields: date time c-ip sc-status"), ("b1", 0, "  10.0.0.1 200")])
    assert aggregator.malformed == 1 and aggregator.requests == 0


# --- multi-valued names (review of issue 20) -----------------------------------------------------------

def test_a_multi_valued_rdn_is_split_so_a_deny_on_one_of_its_parts_matches() -> None:
    """CertNameToStr writes the parts of one RDN joined by ' + ': OU=Contractors + CN=laptop-1. Read
    as one value, a Deny on Subject.OU=Contractors would miss and the Allow mapping admit the device,
    while IIS answers 401.2."""
    from scripts.ops import mapping_judgment as mj
    from scripts.ops import w3c

    assert w3c.parse_dn("OU=Contractors + CN=laptop-1, O=Example Corp") == [("OU", "Contractors"), ("CN", "laptop-1"), ("O", "Example Corp")]
    assert w3c.parse_dn('CN="A + B", O=X') == [("CN", "A + B"), ("O", "X")], "a quoted + is part of the value"
    assert w3c.parse_dn("O=Smith+Jones, CN=x") == [("O", "Smith+Jones"), ("CN", "x")]
    issuer = {"certificateField": "Issuer", "certificateSubField": "CN", "matchCriteria": "Example CA", "compareCaseSensitive": True}
    rules = mj.iis_mappings([
        {"name": "Deny 1 - Example CA", "permissionMode": "Deny", "enabled": True,
         "rules": [issuer, {"certificateField": "Subject", "certificateSubField": "OU", "matchCriteria": "Contractors", "compareCaseSensitive": True}]},
        {"name": "Agents - Example CA", "permissionMode": "Allow", "enabled": True, "rules": [issuer]},
    ], "test")
    refused = mj.judge("OU=Contractors + CN=laptop-1, O=Example Corp", "CN=Example CA", "01", rules)
    assert not refused.accepted and refused.mapping is not None and refused.mapping.name == "Deny 1 - Example CA"
    assert mj.judge("OU=Staff + CN=laptop-2, O=Example Corp", "CN=Example CA", "02", rules).accepted
