"""`python -m scripts.doctor`: what a real deployment needs, with PATH, HOME and the environment faked.

A fake `pulumi` on PATH stands in for the CLI; AWS credentials come from the environment or
files written under a temporary HOME; STS answers from moto in-process. The doctor always exits
0 and, without --check-aws, makes no network call and runs no credential_process.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts import doctor

ROOT = Path(__file__).resolve().parent.parent
FAKE_KEY_ID = "AKIA" + "DOCTORTEST" + "000000"  # built here so no scanner mistakes it for a real key
FAKE_SECRET = "doctor-test-" + "0" * 28


def fake_pulumi(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "pulumi"
    script.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A bare environment: an empty HOME, PATH with only the fake bin directory and /bin (for sh)."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == name)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.doctor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


# --- Pulumi CLI -----------------------------------------------------------------------------------

def test_cli_found_and_recent_enough(env, tmp_path):
    fake_pulumi(tmp_path / "bin", "echo v3.300.1")
    result = run_cli(env, "--json")
    assert result.returncode == 0, result.stderr
    cli = check(json.loads(result.stdout), "pulumi-cli")
    assert cli["status"] == "ok" and cli["data"]["version"] == "3.300.1"
    assert cli["data"]["minimum"] == doctor.pinned("pulumi") == "3.272.0"


def test_cli_older_than_the_pinned_sdk_is_missing(env, tmp_path):
    fake_pulumi(tmp_path / "bin", "echo v3.100.0")
    cli = check(doctor.diagnose(env), "pulumi-cli")
    assert cli["status"] == "missing" and "older than the pinned Python SDK (3.272.0)" in cli["detail"]


def test_cli_absent_or_broken_is_missing_and_exit_stays_0(env, tmp_path):
    result = run_cli(env)
    assert result.returncode == 0
    assert "[missing] Pulumi CLI: the pulumi command is not on PATH" in result.stdout
    assert "Missing: Pulumi CLI" in result.stdout and "install the Pulumi CLI >= 3.272.0" in result.stdout
    fake_pulumi(tmp_path / "bin", "echo 'error: broken install' >&2; exit 3")
    cli = check(doctor.diagnose(env), "pulumi-cli")
    assert cli["status"] == "missing" and "broken install" in cli["detail"]


def test_cli_installed_but_not_on_path(env):
    fake_pulumi(Path(env["HOME"]) / ".pulumi" / "bin", "echo v3.300.0")
    cli = check(doctor.diagnose(env), "pulumi-cli")
    assert cli["status"] == "missing" and "add " in cli["fix"] and ".pulumi/bin" in cli["fix"]


def test_cli_is_asked_without_an_update_check(env, tmp_path):
    fake_pulumi(tmp_path / "bin", '[ "$PULUMI_SKIP_UPDATE_CHECK" = true ] && echo v3.300.0 || exit 1')
    assert check(doctor.diagnose(env), "pulumi-cli")["status"] == "ok"


def test_aws_plugin_found_in_pulumi_home(env):
    plugin = Path(env["HOME"]) / ".pulumi" / "plugins" / f"resource-aws-v{doctor.pinned('pulumi-aws')}"
    assert check(doctor.diagnose(env), "aws-plugin")["status"] == "info"
    plugin.mkdir(parents=True)
    assert check(doctor.diagnose(env), "aws-plugin")["status"] == "ok"


# --- AWS credentials ---------------------------------------------------------------------------------

def test_no_credentials(env):
    creds = check(doctor.diagnose(env), "aws-credentials")
    assert creds["status"] == "missing" and creds["data"]["source"] is None
    assert "OIDC role" in creds["fix"]


def test_credentials_from_the_environment_are_found_not_printed(env):
    env.update(AWS_ACCESS_KEY_ID=FAKE_KEY_ID, AWS_SECRET_ACCESS_KEY=FAKE_SECRET)
    report = doctor.diagnose(env)
    creds = check(report, "aws-credentials")
    assert creds["status"] == "ok" and creds["data"]["source"] == "env" and "not verified" in creds["detail"]
    assert FAKE_SECRET not in json.dumps(report) and FAKE_KEY_ID not in json.dumps(report)


def test_credentials_from_a_profile_file(env):
    aws = Path(env["HOME"]) / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        f"[beacons]\naws_access_key_id = {FAKE_KEY_ID}\naws_secret_access_key = {FAKE_SECRET}\n", encoding="utf-8")
    (aws / "config").write_text("[profile beacons]\nregion = eu-west-1\n", encoding="utf-8")
    env["AWS_PROFILE"] = "beacons"
    creds = check(doctor.diagnose(env), "aws-credentials")
    assert creds["status"] == "ok" and creds["data"]["source"] == "shared-credentials-file"
    assert creds["data"]["profile"] == "beacons" and creds["data"]["default_region"] == "eu-west-1"


def test_credential_process_is_not_run_without_check_aws(env, tmp_path):
    marker = tmp_path / "ran"
    helper = tmp_path / "helper.sh"
    helper.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n", encoding="utf-8")
    helper.chmod(0o755)
    aws = Path(env["HOME"]) / ".aws"
    aws.mkdir()
    (aws / "config").write_text(f"[default]\ncredential_process = {helper}\n", encoding="utf-8")
    creds = check(doctor.diagnose(env), "aws-credentials")
    assert not marker.exists()
    assert creds["status"] == "missing" and "--check-aws" in creds["detail"]


def test_no_network_without_check_aws(env, tmp_path, monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network call: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fake_pulumi(tmp_path / "bin", "echo v3.300.0")
    env.update(AWS_PROFILE="nowhere", PULUMI_BACKEND_URL="https://api.pulumi.com")
    report = doctor.diagnose(env)
    assert report["aws_called"] is False
    assert check(report, "aws-credentials")["status"] == "missing"  # a missing profile is a finding


def test_check_aws_asks_sts(env):
    moto = pytest.importorskip("moto")
    env.update(AWS_ACCESS_KEY_ID=FAKE_KEY_ID, AWS_SECRET_ACCESS_KEY=FAKE_SECRET, AWS_DEFAULT_REGION="us-east-1")
    with moto.mock_aws():
        creds = check(doctor.diagnose(env, check_aws=True), "aws-credentials")
    assert creds["status"] == "ok" and creds["data"]["account"] == "123456789012"
    assert "STS: account 123456789012" in creds["detail"]


def test_check_aws_failure_is_a_finding_not_an_error(env, monkeypatch):
    import boto3

    class Refusing:
        region_name = "us-east-1"

        def __init__(self, **kwargs: Any) -> None:
            pass

        def client(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("no route to STS")

    env.update(AWS_ACCESS_KEY_ID=FAKE_KEY_ID, AWS_SECRET_ACCESS_KEY=FAKE_SECRET)
    monkeypatch.setattr(boto3, "Session", Refusing)
    creds = check(doctor.diagnose(env, check_aws=True), "aws-credentials")
    assert creds["status"] == "missing" and "no route to STS" in creds["detail"]


# --- region, backend, stacks, policy pack ------------------------------------------------------------

def test_region_from_the_stack_files_against_the_environment(env):
    region = check(doctor.diagnose(env), "region")
    assert region["status"] == "ok" and region["data"]["stacks"] == {"dev": "us-east-1", "pilot": "us-east-1", "prod": "us-east-1"}
    env["AWS_REGION"] = "eu-west-1"
    region = check(doctor.diagnose(env, stack="prod"), "region")
    assert region["status"] == "warning" and region["data"]["stacks"] == {"prod": "us-east-1"}
    assert "eu-west-1" in region["detail"]


def test_stack_without_region_and_unknown_stack(env, tmp_path):
    root = tmp_path / "repo"
    (root / "stacks").mkdir(parents=True)
    (root / "stacks" / "Pulumi.lab.yaml").write_text("config:\n  flexnet-beacon:azCount: 1\n", encoding="utf-8")
    report = doctor.diagnose(env, root=root)
    assert check(report, "region")["status"] == "missing"
    assert check(report, "stack-files")["status"] == "ok"
    assert check(report, "policy-pack")["status"] == "missing"
    assert check(doctor.diagnose(env, stack="qa"), "stack")["status"] == "missing"


def test_backend_from_env_or_credentials_file(env):
    assert check(doctor.diagnose(env), "backend")["status"] == "missing"
    env["PULUMI_BACKEND_URL"] = "s3://state-bucket"
    backend = check(doctor.diagnose(env), "backend")
    assert backend["status"] == "warning" and "secrets provider" in backend["detail"] and "awskms" in backend["fix"]
    env["PULUMI_CONFIG_PASSPHRASE_FILE"] = "/dev/null"
    assert check(doctor.diagnose(env), "backend")["status"] == "ok"

    del env["PULUMI_BACKEND_URL"]
    token = "pul-" + "d0c7" * 10
    pulumi = Path(env["HOME"]) / ".pulumi"
    pulumi.mkdir()
    (pulumi / "credentials.json").write_text(json.dumps(
        {"current": "https://api.pulumi.com", "accessTokens": {"https://api.pulumi.com": token}}), encoding="utf-8")
    report = doctor.diagnose(env)
    backend = check(report, "backend")
    assert backend["status"] == "ok" and backend["data"]["url"] == "https://api.pulumi.com"
    assert backend["data"]["access_token"] is True and token not in json.dumps(report)


def test_policy_pack_virtualenv(tmp_path):
    root = tmp_path / "repo"
    (root / "policy").mkdir(parents=True)
    (root / "policy" / "PulumiPolicy.yaml").write_text("runtime: python\n", encoding="utf-8")
    assert doctor.check_policy_pack(root).status == "missing"
    (root / "policy" / "venv" / "bin").mkdir(parents=True)
    (root / "policy" / "venv" / "bin" / "python").write_text("", encoding="utf-8")
    assert doctor.check_policy_pack(root).status == "ok"


# --- output and exit code -----------------------------------------------------------------------------

def test_ready_when_nothing_is_missing(env, tmp_path, monkeypatch):
    fake_pulumi(tmp_path / "bin", "echo v3.300.0")
    env.update(AWS_ACCESS_KEY_ID=FAKE_KEY_ID, AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
               PULUMI_BACKEND_URL="https://api.pulumi.com", PULUMI_ACCESS_TOKEN="pul-" + "0" * 40)
    monkeypatch.setattr(doctor, "check_policy_pack", lambda root=ROOT: doctor.Check("policy-pack", "ok", "fine"))
    report = doctor.diagnose(env)
    assert report["ready"] is True and report["missing"] == []
    assert "Ready: pulumi preview --policy-pack policy" in doctor.render(report)


def test_a_crashing_diagnosis_still_exits_0(monkeypatch, capsys):
    def boom(**kwargs: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(doctor, "diagnose", boom)
    assert doctor.main(["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] is False and "unexpected" in report["checks"][0]["detail"]


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exit_info:
        doctor.main(["--no-such-flag"])
    assert exit_info.value.code == 2
