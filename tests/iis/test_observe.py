"""enforcement: observe negotiates and maps certificates without requiring them; logs carry the facts."""

from __future__ import annotations

import json

import pytest

from components.iis.appcmd import render
from components.iis.state import LOG_CUSTOM_FIELDS, SSL_FLAGS, SSL_FLAGS_OBSERVE
from components.stack import prepare
from conftest import plan_stack, stack_raw


def _state(stack: str, **overrides: str) -> dict:
    raw, region = stack_raw(stack)
    raw.update(overrides)
    return prepare(raw, stack, region).iis_state


def _diff(a, b, path=()) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), path + (k,))]
    return [] if a == b else [".".join(path)]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_observe_changes_exactly_the_ssl_flags_and_anonymous_access(stack: str) -> None:
    require, observe = _state(stack), _state(stack, enforcement="observe")
    assert _diff(require, observe) == ["access.sslFlags", "authentication.anonymousEnabled", "enforcement"]
    assert (require["access"]["sslFlags"], require["authentication"]["anonymousEnabled"]) == (SSL_FLAGS, False)
    assert (observe["access"]["sslFlags"], observe["authentication"]["anonymousEnabled"]) == (SSL_FLAGS_OBSERVE, True)
    # Certificates are still negotiated in the handshake and mapped: the same mappings, the same
    # HTTP.sys flags (clientcertnegotiation, revocation), the same trust.
    assert "SslNegotiateCert" in SSL_FLAGS_OBSERVE and "SslRequireCert" not in SSL_FLAGS_OBSERVE
    assert observe["authentication"]["clientCertificateMapping"] == require["authentication"]["clientCertificateMapping"]
    assert observe["httpSys"] == require["httpSys"]


def test_switching_modes_never_touches_an_instance() -> None:
    require, observe = plan_stack("prod"), plan_stack("prod", {"enforcement": "observe"})
    instances = lambda p: {r.name: r.inputs for r in p.of_type("ec2/instance:Instance")}  # noqa: E731
    assert instances(require) == instances(observe)
    params = lambda p: p.one("ssm/association:Association", "mtls-association").inputs["parameters"]  # noqa: E731
    assert params(require)["StateDigest"] != params(observe)["StateDigest"], "State Manager runs the association again"


def test_the_pilot_stack_observes_and_the_shipped_ones_require() -> None:
    assert _state("pilot")["enforcement"] == "observe"
    assert {_state(s)["enforcement"] for s in ("dev", "prod")} == {"require"}
    text = render(_state("pilot"))
    assert '/sslFlags:"Ssl,SslNegotiateCert"' in text and "SslRequireCert" not in text
    assert 'anonymousAuthentication /enabled:"True"' in text


def test_logs_carry_status_substatus_and_the_certificate_fields() -> None:
    logging = _state("dev")["logging"]
    assert {"Date", "Time", "ClientIP", "UserAgent", "HttpStatus", "HttpSubStatus", "Win32Status"} <= set(logging["fields"])
    assert [(f["logFieldName"], f["sourceName"], f["sourceType"]) for f in logging["customFields"]] == [
        ("crt-subject", "CERT_SUBJECT", "ServerVariable"),
        ("crt-issuer", "CERT_ISSUER", "ServerVariable"),
        ("crt-serial", "CERT_SERIALNUMBER", "ServerVariable"),
        ("crt-flags", "CERT_FLAGS", "ServerVariable"),
    ]
    assert len(LOG_CUSTOM_FIELDS) == 4
    text = render(_state("dev"))
    for name, source in LOG_CUSTOM_FIELDS:
        assert f"logFieldName='{name}',sourceName='{source}',sourceType='ServerVariable'" in text


def test_pilot_plan_renders(tmp_path) -> None:
    from scripts import plan

    assert plan.main(["--stack", "pilot", "--out", str(tmp_path)]) == 0
    state = json.loads((tmp_path / "pilot" / "iis-state.json").read_text())
    assert state["access"]["sslFlags"] == SSL_FLAGS_OBSERVE
