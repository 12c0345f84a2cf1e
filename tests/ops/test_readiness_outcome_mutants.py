"""The readiness verdict's parts: the cases mutation testing found untested (docs/testing.md,
readiness_outcome): requests without a certificate from one address or naming one device, and the
one-line lists and tallies the reasons are written with."""

from __future__ import annotations

import pytest

from scripts.ops.readiness_model import Anonymous
from scripts.ops.readiness_outcome import _counts, _listed, judge_anonymous, refused

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
