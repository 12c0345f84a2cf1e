"""The errors an operator meets: one clear line on stderr each, exit 2 for bad input (arguments,
files, stack outputs, region, credentials) and 1 for failures (unreachable endpoint, unmanaged
instance, timeout, access denied). boto3 talks to moto on loopback; errors moto cannot produce
are answered through botocore's before-call event, so botocore builds the real ClientError."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.ops_fixtures.support import ROOT, Hooks, aws_env, create_document, error_response, golden_state, outputs_file, run


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    aws_env(monkeypatch, tmp_path)
    name, digest = create_document(golden_state())
    outputs = outputs_file(tmp_path, **{"mtls.stateDigest": digest, "mtls.documentName": name})
    return {"tmp": tmp_path, "outputs": str(outputs), "hooks": Hooks(monkeypatch), "monkeypatch": monkeypatch}


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("ops: ") or line.startswith("ops: error: ")]
    errors = [line for line in err.splitlines() if line.startswith("ops: error: ")]
    assert len(errors) == 1 and len(lines) == 1, err
    return errors[0]


def test_no_credentials(env, capsys) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env["monkeypatch"].delenv(name)
    code, out, err = run(capsys, "--stack-outputs", env["outputs"], "verify")
    assert (code, out) == (2, "")
    assert "no AWS credentials found: pass --profile NAME or set AWS_PROFILE" in one_line(err)


def test_unknown_profile(env, capsys) -> None:
    code, _, err = run(capsys, "--profile", "nosuch", "--stack-outputs", env["outputs"], "verify")
    assert code == 2 and "nosuch" in one_line(err) and "profile" in err.lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--region", "us east 1"], "--region: got 'us east 1'; expected an AWS region name like us-east-1"),
        (["--region", "xx-north-1"], "'xx-north-1' is not an AWS region this boto3 knows"),
        (["--region", "us-east-7"], "known regions like it: us-east-1, us-east-2"),
    ],
)
def test_invalid_region(env, capsys, args, message) -> None:
    code, _, err = run(capsys, "verify", "--instance-id", "i-7f0c2bfe3eaaa5b58", "--document-name", "d-x", *args)
    assert code == 2 and message in one_line(err)


def test_region_of_the_stack_wins_and_a_contradicting_flag_is_refused(env, capsys) -> None:
    code, _, err = run(capsys, "--stack-outputs", env["outputs"], "--region", "eu-west-1", "verify")
    assert code == 2
    assert "--region eu-west-1 but the stack's resources are in us-east-1 (firewallArn in" in one_line(err)
    env["monkeypatch"].setenv("AWS_REGION", "eu-west-1")  # the operator's default region is elsewhere
    env["hooks"].before("ssm", "SendCommand", lambda params: error_response("InvalidInstanceId", ""))
    code, _, err = run(capsys, "--stack-outputs", env["outputs"], "verify")
    assert "using the stack's region us-east-1" in err and "not managed by SSM in us-east-1" in err


def test_no_region_anywhere(env, capsys) -> None:
    code, _, err = run(capsys, "verify", "--instance-id", "i-7f0c2bfe3eaaa5b58", "--document-name", "d-x")
    assert code == 2 and "no AWS region: pass --region REGION, set AWS_REGION" in one_line(err)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mtls.documentName": None}, "missing mtls.documentName"),
        ({"mtls": None}, "missing mtls.documentName"),
        ({"beacons": None}, "missing beacons (verify needs"),
        ({"beacons": []}, "beacons is empty"),
        ({"beacons": [{"name": "beacon-1"}]}, "missing beacons[0].instanceId"),
        ({"beacons": [{"instanceId": "[secret]"}]}, "beacons[0].instanceId is '[secret]'"),
    ],
)
def test_stack_outputs_missing_a_key(env, capsys, changes, message) -> None:
    outputs = outputs_file(env["tmp"], **changes)
    code, out, err = run(capsys, "--stack-outputs", str(outputs), "verify")
    assert (code, out) == (2, "")
    line = one_line(err)
    assert message in line and str(outputs) in line


def test_stack_outputs_unusable_files(env, capsys) -> None:
    bad = env["tmp"] / "bad.json"
    bad.write_text("Current stack outputs (3):\n    OUTPUT  VALUE\n")
    code, _, err = run(capsys, "--stack-outputs", str(bad), "verify")
    assert code == 2 and "not JSON" in one_line(err) and "pulumi stack output --json" in err
    code, _, err = run(capsys, "--stack-outputs", str(env["tmp"] / "absent.json"), "verify")
    assert code == 2 and "absent.json: unreadable" in one_line(err)
    code, _, err = run(capsys, "verify", "--region", "us-east-1")
    assert code == 2 and "give --stack-outputs FILE" in one_line(err)
    code, _, err = run(capsys, "verify", "--region", "us-east-1", "--instance-id", "web-1")
    assert code == 2 and "--instance-id: got 'web-1'" in one_line(err)


def test_endpoint_unreachable(env, capsys) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env["monkeypatch"].setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    code, _, err = run(capsys, "--stack-outputs", env["outputs"], "verify")
    assert code == 1 and f"cannot reach the AWS endpoint http://127.0.0.1:{port}" in one_line(err)


def test_instance_not_managed_by_ssm(env, capsys) -> None:
    env["hooks"].before(
        "ssm", "SendCommand", lambda params: error_response("InvalidInstanceId", "Instances [[i-7f0c2bfe3eaaa5b58]] not in a valid state for account 123456789012")
    )
    code, _, err = run(capsys, "--stack-outputs", env["outputs"], "verify")
    assert code == 1
    line = one_line(err)
    assert "instance(s) i-7f0c2bfe3eaaa5b58 not managed by SSM in us-east-1" in line
    assert "aws ssm describe-instance-information --region us-east-1" in line


def test_command_timed_out(env, capsys) -> None:
    env["hooks"].after("ssm", "GetCommandInvocation", lambda parsed: parsed.update(Status="InProgress", StatusDetails="InProgress", ResponseCode=-1))
    code, _, err = run(capsys, "--stack-outputs", env["outputs"], "verify", "--timeout", "0.3", "--poll", "0.05")
    assert code == 1
    assert re.search(r"command [0-9a-f-]{36} timed out after 0\.3 s waiting for beacon-1 \(i-7f0c2bfe3eaaa5b58\) InProgress", one_line(err))
    assert "0/1 done: beacon-1 InProgress" in err  # the progress lines before it


@pytest.mark.parametrize(
    ("code_name", "exit_code", "message"),
    [
        ("AccessDeniedException", 1, "access denied for SendCommand in us-east-1: User: arn:aws:iam::123456789012:user/ops is not authorized"),
        ("UnrecognizedClientException", 2, "AWS rejected the credentials in us-east-1 (UnrecognizedClientException"),
        ("ExpiredTokenException", 2, "the AWS credentials have expired"),
        ("ThrottlingException", 1, "AWS SendCommand failed in us-east-1 (ThrottlingException)"),
    ],
)
def test_aws_error_codes(env, capsys, code_name, exit_code, message) -> None:
    text = "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: ssm:SendCommand"
    env["hooks"].before("ssm", "SendCommand", lambda params: error_response(code_name, text))
    code, _, err = run(capsys, "--stack-outputs", env["outputs"], "verify")
    assert code == exit_code and message in one_line(err)


def test_document_not_found(env, capsys) -> None:
    outputs = outputs_file(env["tmp"], **{"mtls.documentName": "mtls-document-gone"})
    code, _, err = run(capsys, "--stack-outputs", str(outputs), "verify")
    assert code == 1 and "SSM document 'mtls-document-gone' not found in us-east-1" in one_line(err)


def test_usage_errors_exit_2(capsys) -> None:
    assert run(capsys, "verify", "--timeout", "-1")[0] == 2
    assert run(capsys, "nonsense")[0] == 2
    assert run(capsys, "--help")[0] == 0


def test_stack_outputs_keys_read_here_are_the_ones_the_program_exports() -> None:
    """scripts.ops reads beacons[].instanceId/hostname/name, mtls.documentName/associationId/
    stateDigest, logGroups.converge and firewallArn: components/stack.py must export them."""
    source = (ROOT / "components" / "stack.py").read_text(encoding="utf-8")
    for key in ('"instanceId"', '"hostname"', '"name"', '"documentName"', '"associationId"', '"stateDigest"', '"converge"', '"firewallArn"', '"availabilityZone"'):
        assert key in source, key
    recorded = json.loads((ROOT / "tests" / "ops_fixtures" / "outputs-dev.json").read_text())
    assert recorded["logGroups"]["converge"] == "/flexnet-beacon/dev/converge"
    plan = ROOT / "build" / "plan" / "dev" / "outputs.json"
    if plan.exists():  # `make plan` output has the same shape as the recorded copy
        assert set(json.loads(plan.read_text())) >= {"beacons", "mtls", "logGroups", "firewallArn"}


def test_the_module_entry_point_and_global_flags_after_the_verb(env, capsys) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "scripts.ops", "expiry"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("ops: error: nothing to check") and done.stderr.count("\n") == 1
    outputs = outputs_file(env["tmp"], **{"mtls.documentName": None})
    code, _, err = run(capsys, "verify", "--stack-outputs", str(outputs), "--json")
    assert code == 2 and "missing mtls.documentName" in one_line(err)
