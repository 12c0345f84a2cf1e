"""The matrix: each client identity against a real mTLS server, with Python ssl and curl, and
`pki check` predicting the outcome (accept/reject and the IIS status class) for every case."""

from __future__ import annotations

import os

import pytest

from .conftest import CLIENTS, CURL, Lab

# OpenSSL's server-side verify message -> the IIS status the same defect gets on a beacon.
OPENSSL_TO_IIS = {
    "peer did not return a certificate": "403.7",
    "certificate required": "403.7",
    "unable to get local issuer certificate": "403.16",
    "certificate signature failure": "403.16",
    "self-signed certificate in certificate chain": "403.16",
    "unsupported certificate purpose": "403.16",
    "unsuitable certificate purpose": "403.16",
    "certificate has expired": "403.17",
    "certificate is not yet valid": "403.17",
    "certificate revoked": "403.13",
    "CRL has expired": "403.13",
    "unable to get certificate CRL": "403.13",
}

ROOT_CASES = [
    "valid",
    "no-certificate",
    "other-ca",
    "impostor",
    "expired",
    "not-yet-valid",
    "revoked",
    "server-auth-only",
    "ca-as-client",
    "stale-crl",
]
INTERMEDIATE_CASES = ["valid", "revoked", "impostor"]


def _iis_class(server_message: str) -> str | None:
    for fragment, status in OPENSSL_TO_IIS.items():
        if fragment.lower() in server_message.lower():
            return status
    return None


def _run(lab: Lab, case_name: str, client: str) -> None:
    if client == "curl" and CURL is None:
        if os.environ.get("CI"):  # CI installs curl (.ci/install-debian-packages): missing is a failure
            pytest.fail("curl is not installed; CI must install it")
        pytest.skip("curl is not installed")
    case = lab.cases[case_name]
    server = lab.servers[case.server]
    server.drain()

    outcome = CLIENTS[client](server.port, lab.server_ca, case.cert, case.key)
    event = server.next_event()

    assert outcome.ok is case.accepted, f"{client}: {outcome.detail}; server: {event.detail}"
    assert event.accepted is case.accepted, event.detail
    if case.accepted:
        assert event.path == "/ManageSoftDL/"
    else:
        assert any(fragment.lower() in event.detail.lower() for fragment in case.server_says), event.detail

    if case.cert is None:  # no certificate: IIS 403.7; nothing for `pki check` to look at
        assert _iis_class(event.detail) == "403.7"
        return
    from .conftest import check

    code, verdict = check(lab.directory, case.cert, *case.check_args)
    assert verdict["accepted"] is case.accepted, verdict
    assert code == (0 if case.accepted else 1)
    assert verdict["status"] == case.status, verdict
    assert verdict["reason"] in case.reasons, verdict
    if not case.accepted:
        # The prediction and the real handshake failure are the same IIS status class.
        assert _iis_class(event.detail) == verdict["status"], (event.detail, verdict)


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("case_name", ROOT_CASES)
def test_root_ca(root_lab: Lab, case_name: str, client: str) -> None:
    _run(root_lab, case_name, client)


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("case_name", INTERMEDIATE_CASES)
def test_intermediate_ca(intermediate_lab: Lab, case_name: str, client: str) -> None:
    _run(intermediate_lab, case_name, client)


def test_revoked_intermediate_rejects_its_devices(tmp_path) -> None:
    """The root's CRL (root-crl.pem) listing the intermediate turns every device away."""
    from .conftest import build_lab, check, python_client

    lab = build_lab(tmp_path, intermediate=True, revoke_intermediate=True)
    try:
        case = lab.cases["valid"]
        server = lab.servers["fresh"]
        outcome = python_client(server.port, lab.server_ca, case.cert, case.key)
        event = server.next_event()
        assert not outcome.ok and not event.accepted
        assert "certificate revoked" in event.detail.lower()
        code, verdict = check(lab.directory, case.cert)
        assert code == 1 and verdict["status"] == "403.13" and verdict["reason"] == "revoked"
        assert "Test Devices CA Root" in verdict["detail"]
    finally:
        for s in lab.servers.values():
            s.close()
