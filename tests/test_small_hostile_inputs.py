"""Issue 22 point 8, the smaller items: an encrypted or non-string enforcement, credentials and
port 0 in CRL/AIA URLs, README markers out of order."""

from __future__ import annotations

import json

from pathlib import Path

import pytest

from components.certs.trust import ClientTrust, crl_egress
from components.config import SecretValue
from components.config_checks import redact_userinfo, url_host_problem
from components.stack import prepare
from conftest import stack_raw
from scripts import configdoc
from scripts.require_guard import GuardError, enforcement_of

KEY = "flexnet-beacon:enforcement"
SECRETISH = "hunter2-" + "secret"  # split: no credential-bearing URL literal in the repository


@pytest.mark.parametrize("value,words", [
    ({"secure": "v1:AAAA"}, "encrypted value"),
    (5, "got 5"),
    (["require"], "got ['require']"),
    ("Require", "got 'Require'"),
])
def test_the_guard_refuses_an_enforcement_it_cannot_read(value: object, words: str) -> None:
    with pytest.raises(GuardError, match=words.replace("[", r"\[").replace("]", r"\]")):
        enforcement_of({"config": {KEY: value}})


def test_the_guard_reads_plain_values_and_the_default() -> None:
    assert enforcement_of({"config": {KEY: "observe"}}) == "observe"
    assert enforcement_of({"config": {KEY: None}}) == enforcement_of({}) == "require"


def test_the_program_refuses_a_secret_enforcement() -> None:
    from components.config import ConfigInvalid

    raw, region = stack_raw("dev")
    with pytest.raises(ConfigInvalid) as raised:
        prepare({**raw, "enforcement": SecretValue("require")}, "dev", region)
    assert "enforcement" in raised.value.render() and "never --secret" in raised.value.render()


@pytest.mark.parametrize("url,words", [
    ("http://crluser:" + SECRETISH + "@crl.example.com/devices.crl", "without user information"),
    ("http://crluser@crl.example.com/devices.crl", "without user information"),
    ("http://crl.example.com:0/devices.crl", "port is 1 to 65535"),
])
def test_crl_urls_with_credentials_or_port_0_are_refused(url: str, words: str) -> None:
    host, problem = url_host_problem(url)
    assert host is None and problem is not None and words in problem


def test_a_refused_crl_url_is_shown_without_its_password() -> None:
    from components.config import ConfigInvalid

    raw, region = stack_raw("dev")
    with pytest.raises(ConfigInvalid) as raised:
        prepare({**raw, "crlUrls": json.dumps(["http://crluser:" + SECRETISH + "@crl.example.com/devices.crl"])}, "dev", region)
    text = raised.value.render()
    assert "crlUrls" in text and "***@crl.example.com" in text and SECRETISH not in text


def test_redaction_keeps_everything_but_the_user_information() -> None:
    assert redact_userinfo("http://u:" + "p@h.example.com:8080/a@b?c=@d") == "http://***@h.example.com:8080/a@b?c=@d"
    assert redact_userinfo("http://h.example.com/a@b") == "http://h.example.com/a@b"


def test_certificate_urls_with_credentials_never_reach_the_egress() -> None:
    empty = ClientTrust.__new__(ClientTrust)
    object.__setattr__(empty, "intermediates", ())
    object.__setattr__(empty, "issuing", ())
    egress = crl_egress(empty, None, ["http://u:" + SECRETISH + "@crl.example.com/x.crl", "http://crl.example.com:0/y.crl", "http://crl.example.com/z.crl"])
    assert egress.urls == ("http://crl.example.com/z.crl",)
    assert not any(SECRETISH in line for line in egress.ignored)
    assert any("***@crl.example.com" in line for line in egress.ignored) and any("invalid port" in line for line in egress.ignored)


@pytest.mark.parametrize("text", [
    f"intro\n{configdoc.README_END}\nmiddle\n{configdoc.README_BEGIN}\nend\n",
    f"{configdoc.README_BEGIN}\n{configdoc.README_BEGIN}\n{configdoc.README_END}\n",
])
def test_configdoc_refuses_misplaced_markers(text: str) -> None:
    with pytest.raises(SystemExit, match="expected"):
        configdoc.replace_table(text)


def test_configdoc_replaces_between_the_markers_once() -> None:
    text = f"a\n{configdoc.README_BEGIN}\nSTALE-ROW-XYZ\n{configdoc.README_END}\nb\n"
    once = configdoc.replace_table(text)
    assert configdoc.replace_table(once) == once and once.startswith("a\n") and once.endswith("\nb\n") and "STALE-ROW-XYZ" not in once
