"""The readiness verdict's parts: the cases mutation testing found untested (docs/testing.md,
readiness_outcome): requests without a certificate from one address or naming one device, and the
one-line lists and tallies the reasons are written with."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from scripts.ops.mapping_judgment import Rules, issuer_mappings, one_to_one
from scripts.ops.readiness_model import Anonymous, Presentation
from scripts.ops.readiness_outcome import (
    STATUS_MEANINGS,
    DeviceResult,
    Outcome,
    _counts,
    _listed,
    epoch_iso,
    judge_anonymous,
    judge_certificate,
    refused,
    status_meaning,
)

ADDRESS = "198.51.100.10"


def anonymous(kind: str = "address", key: str = ADDRESS, *, requests: int = 3, uploads: int = 1, recent: int = 0,
              recent_uploads: int = 0, last: int = 200) -> Anonymous:
    entry = Anonymous(key, kind)
    entry.requests, entry.uploads, entry.recent, entry.recent_uploads = requests, uploads, recent, recent_uploads
    entry.first, entry.last = 100, last
    entry.last_request = ("200", ADDRESS, "FlexNet+Agent", "u_ex-i-0abc")
    entry.statuses = {"200": requests}
    entry.ips = {ADDRESS}
    return entry


@pytest.mark.parametrize("enrolled_at,state,tail", [
    (None, "earlier-no-certificate", ""),
    (200, "earlier-no-certificate", ""),  # in the same second as the first certificate: not after it
    (150, "no-certificate", "; after a certificate had come from this address (1970-01-01T00:02:30Z)"),
    (0, "no-certificate", "; after a certificate had come from this address (1970-01-01T00:00:00Z)"),
])
def test_old_requests_without_a_certificate_block_only_after_the_address_enrolled(enrolled_at: int | None, state: str, tail: str) -> None:
    first = {} if enrolled_at is None else {ADDRESS: enrolled_at}
    result = judge_anonymous(anonymous(), {}, {"i-0abc": "beacon-1"}, first)
    assert (result.state, result.kind, result.identity) == (state, "address", ADDRESS)
    assert result.why == "3 request(s) without a certificate (none in the recent window): 2 download(s), 1 upload(s)" + tail
    assert result.beacon == "beacon-1 (u_ex-i-0abc)" and result.same_address == []
    assert result.without == {"downloads": 2, "uploads": 1, "recentDownloads": 0, "recentUploads": 0}


def test_recent_requests_without_a_certificate_block_and_count_the_recent_ones() -> None:
    result = judge_anonymous(anonymous(recent=2, recent_uploads=1), {ADDRESS: ["laptop-0002", "laptop-0001"]}, {})
    assert result.state == "no-certificate"
    assert result.why == ("2 request(s) without a certificate in the recent window: 1 download(s), 1 upload(s); certificates came "
                          "from this address too (laptop-0001, laptop-0002): another device, or the same one without its "
                          "certificate on some requests")
    assert result.same_address == ["laptop-0001", "laptop-0002"]


def test_a_device_named_in_the_url_that_never_presented_a_certificate_blocks() -> None:
    result = judge_anonymous(anonymous("name", "laptop-0009"), {ADDRESS: ["laptop-0001"]}, {})
    assert (result.state, result.kind) == ("no-certificate", "name")
    assert result.why == ("3 request(s) without a certificate (none in the recent window): 2 download(s), 1 upload(s); the device "
                          f"never presented a certificate; the URL names the device (policy laptop-0009-*.npl), from {ADDRESS}")
    assert result.same_address == []


def test_lists_and_tallies() -> None:
    assert _listed(["a", "b", "c", "d", "e"]) == "a, b, c, d, e"
    assert _listed(["a", "b", "c", "d", "e", "f", "g"]) == "a, b, c, d, e and 2 more"
    assert _counts({"200": 1, "403.16": 2, "401.2": 2, "403.13": 5}) == "403.13 x5, 401.2 x2, 403.16 x2, 200 x1"  # most first, then by status


@pytest.mark.parametrize("status,is_refused", [("401", True), ("401.2", True), ("403.13", True), ("200", False), ("404", False)])
def test_refused(status: str, is_refused: bool) -> None:
    assert refused(status) is is_refused


@pytest.mark.parametrize("status,meaning", [
    ("403.16", STATUS_MEANINGS["403.16"]),  # the table first
    ("401.7", "unauthorized (sub-status 7)"),
    ("403.99", "forbidden (sub-status 99)"),
    ("401.", "unauthorized (sub-status 0)"),  # a dot and nothing after it
    ("403.2.1", "forbidden (sub-status 2.1)"),  # everything after the first dot
    ("200.3", "success"), ("204", "success"), ("301", "redirection"), ("404", "client error"), ("404.0", "client error"),
    ("500", "server error"), ("503.2", "server error"),
    ("600", ""), ("1", ""),  # a digit that is no HTTP class
    ("-", ""), ("abc", ""), ("", ""),
])
def test_every_status_has_its_meaning(status: str, meaning: str) -> None:
    assert status_meaning(status) == meaning


# --- one certificate device: judge_certificate (the second mutation run, docs/testing.md) ----------

CA = "C=US,+O=Example+Corp,+CN=Example+Devices+CA"  # as IIS logs it ('+' for a space)
OTHER_CA = "C=US,+O=Other+Corp,+CN=Other+Issuing+CA"
SUBJECT = "C=US,+O=Example+Corp,+CN=laptop-0001"
RULES = issuer_mappings(["Example Devices CA"], "--issuer-cn")


def presentation(serial: str = "0a-1b", issuer: str = CA, *, flags: str = "1", statuses: dict[str, int] | None = None,
                 recent: int = 0, recent_refused: dict[str, int] | None = None, first: int = 100, last: int = 400) -> Presentation:
    p = Presentation(SUBJECT, issuer, serial, flags)
    p.statuses = dict(statuses or {"200": 3})
    p.requests, p.recent, p.first, p.last = sum(p.statuses.values()), recent, first, last
    p.recent_refused = dict(recent_refused or {})
    p.last_request = ("200", ADDRESS, "FlexNet+Agent", "u_ex-i-0abc")
    return p


def judged(*presentations: Presentation, attached: tuple[Anonymous, ...] = (), rules: Rules = RULES):
    return judge_certificate("laptop-0001", list(presentations), list(attached), ["Example Devices CA"], rules, {"i-0abc": "beacon-1"})


def test_outside_the_recent_window_every_request_counts_and_every_refusal_is_tallied() -> None:
    """No request of the device in the recent window: it is judged on all of them; refusals are
    read from all statuses, summed over its certificates, the most frequent explaining."""
    old = presentation("0a-1b", statuses={"200": 2, "403.13": 1, "401.2": 3}, last=300)
    older = presentation("0c-2d", statuses={"401.2": 1, "200": 1}, last=200)
    result = judged(old, older)
    assert result.state == "failing"
    assert result.why == f"refused: 401.2 x4, 403.13 x1 ({STATUS_MEANINGS['401.2']})"
    assert result.statuses == {"200": 3, "403.13": 1, "401.2": 4} and result.requests == 8 and result.recent == 0


def test_in_the_recent_window_only_its_refusals_and_its_certificates_count() -> None:
    stale_foreign = presentation("0c-2d", OTHER_CA, statuses={"403.16": 5}, last=200)  # before the window: no longer judged
    current = presentation("0a-1b", statuses={"200": 4, "403.13": 1}, recent=2, recent_refused={"403.13": 1}, last=900)
    result = judged(stale_foreign, current)
    assert (result.state, result.why) == ("failing", f"refused in the recent window: 403.13 x1 ({STATUS_MEANINGS['403.13']})")
    fine = presentation("0a-1b", statuses={"200": 4}, recent=2, last=900)
    assert judged(stale_foreign, fine).state == "ready"


def test_requests_naming_the_device_without_a_certificate_count_all_or_recent() -> None:
    named = anonymous("name", "laptop-0001", requests=5, recent=0)
    result = judged(presentation(), attached=(named,))
    assert (result.state, result.why) == ("no-certificate", "5 request(s) naming it in the URL (laptop-0001-*.npl) came without a certificate")
    named_recently = anonymous("name", "laptop-0001", requests=5, recent=2)
    result = judged(presentation(recent=1), attached=(named_recently,))
    assert result.why == "2 request(s) in the recent window naming it in the URL (laptop-0001-*.npl) came without a certificate"


def test_the_latest_certificate_explains_and_each_is_named_by_its_serial() -> None:
    earlier = presentation("0c-2d", OTHER_CA, last=200)
    later = presentation("0e-3f", "C=US,+O=Third+Corp,+CN=Third+CA", last=300)
    assert judged(earlier, later).why == "issuer CN 'Third CA' is not a configured issuing CA (certificate serial 0e3f)"
    assert judged(presentation("-", OTHER_CA, last=200), presentation(last=100)).why == \
        "issuer CN 'Other Issuing CA' is not a configured issuing CA (certificate serial -)"
    assert judged(presentation("0c-2d", OTHER_CA)).why == "issuer CN 'Other Issuing CA' is not a configured issuing CA"


def test_an_issuer_without_a_cn_or_without_any_name_is_shown_as_logged() -> None:
    assert judged(presentation(issuer="O=Other+Corp")).why == "issuer CN 'O=Other Corp' is not a configured issuing CA"
    assert judged(presentation(issuer="-")).why == "issuer CN '-' is not a configured issuing CA"


def test_an_issuer_iis_does_not_recognise() -> None:
    result = judged(presentation(flags="3"))  # CERT_FLAGS bit 1: the issuer is not trusted by the server
    assert (result.state, result.why) == ("other-issuer", "IIS does not recognise the issuer 'Example Devices CA' (CERT_FLAGS bit 1)")
    assert result.issuer_recognised is False and result.issuer_configured is True


def test_one_to_one_mappings_admit_by_serial() -> None:
    rules = one_to_one([("Example Devices CA", "0a1b")], "pki")
    result = judged(presentation("0a-1b"), rules=rules)
    assert (result.state, result.why, result.mapping) == ("ready", "admitted by a one-to-one mapping", "one-to-one")
    refused = judged(presentation("0c-2d"), rules=rules)
    assert refused.state == "refused-by-rule" and refused.mapping is None
    assert refused.why == "401.2 under require: no one-to-one mapping holds this certificate (serial 0c2d of Example Devices CA)"


def test_an_allow_mapping_admits_by_name() -> None:
    result = judged(presentation())
    assert (result.state, result.why, result.mapping) == ("ready", "admitted by Allow mapping 'Agents - Example Devices CA'",
                                                          "Agents - Example Devices CA")
    assert result.serial == "0a1b"
    assert judged(presentation("-")).serial == ""


def test_a_device_result_without_a_last_status_has_no_meaning_and_times_are_utc(tokyo: None) -> None:
    body = DeviceResult("laptop-0001", "certificate", "ready", "admitted").to_dict()
    assert body["lastStatus"] is None and body["lastStatusMeaning"] is None
    assert epoch_iso(0) == "1970-01-01T00:00:00Z" and epoch_iso(86_399) == "1970-01-01T23:59:59Z"


def outcome(*states: str, aggregator: Any = None) -> Outcome:
    return Outcome(aggregator, [DeviceResult(f"d{i}", "certificate", state, "") for i, state in enumerate(states)], [], RULES, None)


@pytest.mark.parametrize("states,min_ready,below", [
    ((), 0, False), ((), 0.5, True), ((), 1, True), (("earlier-no-certificate",), 0, False), (("earlier-no-certificate",), 0.5, True),
    (("ready", "failing"), 50, False), (("ready", "failing"), 50.1, True), (("ready",), None, False),
])
def test_below_with_and_without_counted_devices(states: tuple[str, ...], min_ready: float | None, below: bool) -> None:
    assert outcome(*states).below(min_ready) is below


def test_the_unreadable_share_is_stated_exactly() -> None:
    agg = SimpleNamespace(requests=10, recent_requests=10, lines=300, malformed=7, headerless={}, recent_from=0)
    assert outcome("ready", aggregator=agg).inconclusive() == [("unreadable-lines", "7 of 300 line(s) unreadable (2.3%, more than 1%)")]


def test_status_rows_put_refusals_first_then_by_number() -> None:
    result = outcome()
    result.devices = [DeviceResult("a", "certificate", "ready", "", statuses={"200": 2, "-": 1, "0": 1, "403.13": 1, "401.2": 2, "401": 1}),
                      DeviceResult("b", "certificate", "ready", "", statuses={"200": 1})]
    rows = result.status_rows()
    assert [r["status"] for r in rows] == ["401", "401.2", "403.13", "-", "0", "200"]
    assert rows[-1] == {"status": "200", "meaning": "success", "requests": 3, "devices": 2}


def test_a_device_issued_a_certificate_and_never_seen_is_listed_unseen_with_why() -> None:
    result = Outcome.of(None, [DeviceResult("laptop-0001", "certificate", "ready", "admitted")], [], RULES, ["laptop-0009"], 2)  # type: ignore[arg-type]
    unseen = [d for d in result.devices if d.state == "unseen"]
    assert [(d.identity, d.kind, d.why) for d in unseen] == [("laptop-0009", "expected", "issued a certificate (--pki), no request of it in the window")]
    assert result.devices[0].identity == "laptop-0001"  # the states' order: counted ones first, unseen last
