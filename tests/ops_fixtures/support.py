"""Helpers for the scripts.ops tests: one moto server on loopback for the whole run, AWS
environment pointing at it, botocore event hooks to feed recorded answers, certificates and PFX
files made with scripts.pki's builders, and recorded converge reports.

moto answers Secrets Manager, SSM documents/SendCommand/GetCommandInvocation, CloudWatch and
CloudWatch Logs over HTTP. What moto does not do (the converge report in StandardOutputContent,
State Manager association runs, an unmanaged instance) is fed through botocore's own
before-call/after-call events, so the code under test still goes through boto3 and botocore's
response handling.
"""

from __future__ import annotations

import atexit
import logging
import base64
import copy
import datetime as dt
import json
import os
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from components.iis.document import (
    canonical_state,
    command_document,
    document_content,
    read_converge_script,
    script_digest,
    script_key,
    state_digest,
    state_key,
)
from scripts.ops import aws as ops_aws
from scripts.ops.cli import main as ops_main
from scripts.pki import build

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
GOLDEN_DEV = ROOT / "tests" / "golden" / "iis-state-dev.json"
REGION = "us-east-1"
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)  # the recorded reports' "now"
PFX_PASS = "pfx-pass-1"  # test PFX files only (the repository's secret scanner looks for literals)
OTHER_PASS = "another-pass-2"

_server: Any = None
_endpoint: str | None = None


def moto_endpoint() -> str:
    """Start moto's ThreadedMotoServer on 127.0.0.1 (a free port) once per test run."""
    global _server, _endpoint
    if _endpoint is None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            if os.environ.get("CI"):
                pytest.fail("moto[server] is not installed; requirements-dev.txt must pin it (moto[server]==5.2.5)")
            pytest.skip("moto[server] is not installed")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        _server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        _server.start()
        host, port = _server.get_host_and_port()
        _endpoint = f"http://{host}:{port}"
        atexit.register(_server.stop)
    return _endpoint


def reset_moto() -> None:
    request = urllib.request.Request(f"{moto_endpoint()}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, credentials: bool = True) -> str:
    """Environment for boto3 against moto: endpoint, region, fake keys, no config files, no IMDS."""
    endpoint = moto_endpoint()
    reset_moto()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    if credentials:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("PKI_PASSWORD", raising=False)
    return endpoint


_clients: dict[str, Any] = {}


def boto_client(service: str) -> Any:
    """A client of the tests themselves (fake keys of their own), talking to moto."""
    if service not in _clients:
        import boto3.session

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        _clients[service] = session.client(service, endpoint_url=moto_endpoint())
    return _clients[service]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`python -m scripts.ops ARGV` in process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = ops_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# botocore hooks


class FakeHttp:
    """What botocore needs of an HTTP response to turn a parsed error into a ClientError."""

    def __init__(self, status: int):
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""
        self.text = ""
        self.raw = None


def error_response(code: str, message: str = "", status: int = 400) -> tuple[FakeHttp, dict[str, Any]]:
    return FakeHttp(status), {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}


def ok_response(body: dict[str, Any]) -> tuple[FakeHttp, dict[str, Any]]:
    return FakeHttp(200), {**body, "ResponseMetadata": {"HTTPStatusCode": 200}}


class Hooks:
    """Event handlers for every session scripts.ops creates (patched into scripts.ops.aws)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.handlers: list[tuple[str, Callable[..., Any]]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        original = ops_aws.new_session

        def new_session(profile: str | None, region: str | None) -> Any:
            session = original(profile, region)
            for event, handler in self.handlers:
                session.events.register(event, handler)
            return session

        monkeypatch.setattr(ops_aws, "new_session", new_session)

    def before(self, service: str, operation: str, answer: Callable[[dict[str, Any]], Any]) -> None:
        """Answer an operation without calling moto; `answer(params)` returns (http, parsed) or None."""

        def handler(params: dict[str, Any], **_: Any) -> Any:
            body = params.get("body")
            self.calls.append((operation, body if isinstance(body, dict) else {}))
            return answer(params)

        self.handlers.append((f"before-call.{service}.{operation}", handler))

    def after(self, service: str, operation: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Edit moto's parsed answer in place before scripts.ops sees it."""

        def handler(parsed: dict[str, Any], **_: Any) -> None:
            change(parsed)

        self.handlers.append((f"after-call.{service}.{operation}", handler))


def request_body(params: dict[str, Any]) -> dict[str, Any]:
    """The JSON body botocore is about to send (SSM, Secrets Manager are JSON protocols)."""
    body = params.get("body") or b"{}"
    return json.loads(body if isinstance(body, (str, bytes)) else b"{}")


# ---------------------------------------------------------------------------------------------
# Recorded reports and the desired state


def fixture_text(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def report(name: str) -> dict[str, Any]:
    return json.loads(fixture_text(name))


def compact(value: dict[str, Any]) -> str:
    """As the converge script prints it: ConvertTo-Json -Compress, one line."""
    return json.dumps(value, separators=(",", ":"))


def golden_state(**changes: Any) -> dict[str, Any]:
    state = json.loads(GOLDEN_DEV.read_text(encoding="utf-8"))
    state.update(copy.deepcopy(changes))
    return state


STATE_BUCKET = "flexnet-beacon-dev-converge-0123456789ab"


def create_document(state: dict[str, Any], full: bool = False) -> tuple[str, str]:
    """The converge document in moto, with its state (and script) objects in the converge
    bucket, as the stack deploys them; (name, digest). `full`: the real converge script (else a
    stand-in; the document is the same static bootstrap either way)."""
    ssm, s3 = boto_client("ssm"), boto_client("s3")
    script = read_converge_script() if full else "Write-Output 'converge script elided in this test'"
    digest, script_sha = state_digest(state), script_digest(script)
    try:
        s3.create_bucket(Bucket=STATE_BUCKET)
    except Exception:  # noqa: BLE001 (exists)
        pass
    s3.put_object(Bucket=STATE_BUCKET, Key=state_key(digest), Body=canonical_state(state).encode("utf-8"))
    s3.put_object(Bucket=STATE_BUCKET, Key=script_key(script_sha), Body=script.encode("utf-8"))
    content = document_content(command_document(900, bool(state.get("reportOnly")), STATE_BUCKET, REGION, digest, script_sha))
    name = "mtls-document-898530f"
    try:
        ssm.delete_document(Name=name)
    except Exception:  # noqa: BLE001 (absent)
        pass
    ssm.create_document(Content=content, Name=name, DocumentType="Command", DocumentFormat="JSON")
    return name, digest


def outputs_file(tmp_path: Path, **changes: Any) -> Path:
    """The recorded dev outputs (as `pulumi stack output --json` writes them), edited."""
    data = json.loads(fixture_text("outputs-dev.json"))
    for path, value in changes.items():
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[part]
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    target = tmp_path / "outputs.json"
    target.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return target


def decode_state(content: str) -> dict[str, Any]:
    for line in json.loads(content)["mainSteps"][0]["inputs"]["runCommand"]:
        if line.startswith("$stateBase64 = '"):
            return json.loads(base64.b64decode(line.split("'")[1]))
    raise AssertionError("no state line")


# ---------------------------------------------------------------------------------------------
# Certificates


class BeaconCa:
    """A CA made with scripts.pki.build, issuing beacon certificates for the tests."""

    def __init__(self, cn: str = "Ops Test CA"):
        self.key = build.new_key("ec")
        now = dt.datetime.now(dt.timezone.utc)
        self.cert, _ = build.build_certificate(build.make_name(cn), self.key.public_key(), build.Profile(days=3650, ca=True, path_length=0), None, self.key, now)

    def server(
        self,
        dns: tuple[str, ...] = ("ec2-198-51-100-53.us-east-1.compute.amazonaws.com",),
        days: int = 397,
        eku: tuple[x509.ObjectIdentifier, ...] = build.SERVER_EKU,
        not_before_days: int = 0,
    ) -> tuple[x509.Certificate, Any]:
        key = build.new_key("ec")
        now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=not_before_days)
        profile = build.Profile(days=days, eku=eku, dns=dns)
        cert, _ = build.build_certificate(build.make_name(dns[0] if dns else "beacon"), key.public_key(), profile, self.cert, self.key, now)
        return cert, key

    def pfx(self, path: Path, password: str = PFX_PASS, **kwargs: Any) -> tuple[Path, x509.Certificate]:
        cert, key = self.server(**kwargs)
        path.write_bytes(build.pkcs12_bytes("beacon", key, cert, [self.cert], password.encode(), False))
        return path, cert


CLIENT_ONLY = (ExtendedKeyUsageOID.CLIENT_AUTH,)
SERVER_ONLY = (ExtendedKeyUsageOID.SERVER_AUTH,)


def freeze(monkeypatch: pytest.MonkeyPatch, moment: dt.datetime = NOW) -> None:
    """scripts.ops's clock for judging recorded reports."""
    import scripts.ops.verify as verify_module

    monkeypatch.setattr(verify_module, "now_utc", lambda: moment)
