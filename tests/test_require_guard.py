"""The guarded switch from observe to require (scripts/require_guard.py).

The deployed stack is the reference (--deployed-outputs, issue 20 point 1); readiness itself is
stubbed (`run`): these tests decide what the guard runs, at which threshold, and what it does with
the exit code. The git reference (--base-ref) is kept and tested too.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.require_gate import switch_problem
from scripts import require_guard as guard
from scripts.plan import read_stack_file


def doc(enforcement: str | None) -> dict:
    config = {"aws:region": "us-east-1"}
    if enforcement is not None:
        config["flexnet-beacon:enforcement"] = enforcement
    return {"config": config}


@pytest.mark.parametrize("before,after,switching", [
    ("observe", "require", True),
    ("observe", None, True),       # the key removed: the default is require
    (None, "require", False),
    ("require", "observe", False),  # loosening is not guarded
    ("observe", "observe", False),
    (None, None, False),
])
def test_only_observe_to_require_is_guarded(before, after, switching) -> None:
    assert guard.decide(doc(before), doc(after)).switching is switching


def test_a_new_stack_has_nothing_to_switch_from() -> None:
    assert guard.decide(None, doc("require")).switching is False


def test_readiness_command_comes_from_the_stack_file() -> None:
    head = read_stack_file("prod")
    head["config"]["flexnet-beacon:requireMinReadyPercent"] = 95
    command = guard.readiness_command("prod", head, "14d")
    assert command[:4] == [sys.executable, "-m", "scripts.ops", "readiness"]
    args = command[4:]
    assert args[args.index("--region") + 1] == "us-east-1"
    assert args[args.index("--log-group") + 1] == "/flexnet-beacon/prod/iis"
    assert args[args.index("--min-ready") + 1] == "95"
    assert args[args.index("--since") + 1] == "14d"
    # Readiness reads the issuing CAs and the mapping rules from the stack file itself (--stack):
    # an --issuer-cn would narrow its judgment to the Issuer rules.
    assert args[args.index("--stack") + 1] == "prod" and "--issuer-cn" not in args
    assert "--stack-outputs" not in args
    with_outputs = guard.readiness_command("prod", head, "14d", outputs_file="deployed.json")[4:]
    assert with_outputs[with_outputs.index("--stack-outputs") + 1] == "deployed.json", "the deployed beacons: a silent one is inconclusive"


@pytest.mark.parametrize("exit_code,expected", [(0, 0), (1, 1), (2, 1)])
def test_the_switch_passes_only_when_readiness_does(monkeypatch, capsys, exit_code: int, expected: int) -> None:
    monkeypatch.setattr(guard, "read_base", lambda stack, ref, root=guard.ROOT: doc("observe"))
    ran: list[list[str]] = []
    code = guard.main(["--stack", "prod", "--base-ref", "HEAD"], run=lambda cmd: ran.append(cmd) or exit_code)
    out, err = capsys.readouterr()
    assert code == expected and len(ran) == 1 and ran[0][3] == "readiness"
    assert "enforcement observe -> require" in out
    assert ("refusing the switch to require" in err) is (expected == 1)


def test_no_switch_runs_nothing(monkeypatch, capsys) -> None:
    ran: list[list[str]] = []
    assert guard.main(["--stack", "dev", "--base-ref", "HEAD"], run=lambda cmd: ran.append(cmd) or 1) == 0
    assert ran == [] and "nothing to guard" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--stack", "nosuch", "--base-ref", "HEAD"], "--stack: got 'nosuch'"),
    (["--stack", "dev", "--base-ref", "no-such-ref-4f2a"], "--base-ref: got 'no-such-ref-4f2a'"),
    (["--stack", "dev", "--base-ref=--upload-pack=x"], "--base-ref: got '--upload-pack=x'"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message) -> None:
    assert guard.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


# --- the deployed stack is the reference (--deployed-outputs, issue 20 point 1) ----------------------

PILOT = guard.ROOT / "stacks" / "Pulumi.pilot.yaml"  # deployed in observe, requireMinReadyPercent 98


def outputs(enforcement: str | None = "observe", threshold: object = 98, stack: str = "pilot", **more: object) -> dict:
    """What `pulumi stack output --json` prints for a deployed stack (the parts the guard reads)."""
    found: dict = {"vpcId": "vpc-0123456789abcdef0", "logGroups": {"iis": f"/flexnet-beacon/{stack}/iis"}}
    if enforcement is not None:
        found |= {"enforcement": enforcement, "requireMinReadyPercent": threshold,
                  "enforcementRecord": f"/flexnet-beacon/{stack}/enforcement"}
    return found | more


def pilot_file(enforcement: str = "observe", threshold: int = 98) -> str:
    text = PILOT.read_text(encoding="utf-8")
    assert "flexnet-beacon:enforcement: observe\n" in text and "flexnet-beacon:requireMinReadyPercent: 98\n" in text
    return (text.replace("flexnet-beacon:enforcement: observe\n", f"flexnet-beacon:enforcement: {enforcement}\n")
                .replace("flexnet-beacon:requireMinReadyPercent: 98\n", f"flexnet-beacon:requireMinReadyPercent: {threshold}\n"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's stacks/ (files and the certificates they name) to edit."""
    shutil.copytree(guard.ROOT / "stacks", tmp_path / "stacks")
    return tmp_path


def write(project: Path, stack_text: str, deployed: object) -> str:
    (project / "stacks" / "Pulumi.pilot.yaml").write_text(stack_text, encoding="utf-8")
    path = project / "deployed.json"
    path.write_text(deployed if isinstance(deployed, str) else json.dumps(deployed, indent=2) + "\n", encoding="utf-8")
    return str(path)


def run_guard(project: Path, deployed_path: str, exit_code: int = 0, *extra: str) -> tuple[int, list[list[str]]]:
    ran: list[list[str]] = []
    code = guard.main(["--stack", "pilot", "--deployed-outputs", deployed_path, *extra],
                      run=lambda cmd: ran.append(cmd) or exit_code, root=project)
    return code, ran


def min_ready(command: list[str]) -> str:
    return command[command.index("--min-ready") + 1]


@pytest.mark.parametrize("readiness_exit,expected", [(0, 0), (1, 1)])
def test_deployed_observe_to_require_with_threshold_0_is_guarded_at_the_deployed_threshold(
        project, capsys, readiness_exit: int, expected: int) -> None:
    """The switching change cannot lower the bar: requireMinReadyPercent 0 in the file, 98 deployed."""
    path = write(project, pilot_file("require", 0), outputs("observe", 98))
    code, ran = run_guard(project, path, readiness_exit)
    out, err = capsys.readouterr()
    assert code == expected and len(ran) == 1 and ran[0][3] == "readiness"
    assert min_ready(ran[0]) == "98"
    assert "enforcement observe (deployed) -> require" in out and "cannot lower it" in out
    assert ("refusing the switch to require" in err) is (expected == 1)


def test_a_switch_may_raise_the_threshold(project, capsys) -> None:
    path = write(project, pilot_file("require", 99), outputs("observe", 50))
    code, ran = run_guard(project, path)
    assert code == 0 and min_ready(ran[0]) == "99"
    assert "raised from the deployed 50" in capsys.readouterr().out


def _git(project: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
                          cwd=project, check=True, capture_output=True, text=True).stdout


def test_the_refused_switch_followed_by_an_unrelated_commit_is_still_guarded(project, capsys) -> None:
    """Push observe -> require (refused: the deployment stays observe), then any other commit. The git
    reference sees require -> require; the deployed reference still sees the switch."""
    _git(project, "init", "-q")
    write(project, pilot_file("observe", 98), "{}")
    _git(project, "add", "stacks")
    _git(project, "commit", "-q", "-m", "pilot in observe")
    path = write(project, pilot_file("require", 0), outputs("observe", 98))
    _git(project, "commit", "-q", "-am", "switch pilot to require (the guard refuses it)")
    (project / "README.md").write_text("unrelated\n", encoding="utf-8")
    _git(project, "add", "README.md")
    _git(project, "commit", "-q", "-m", "an unrelated commit")
    capsys.readouterr()

    ran: list[list[str]] = []
    assert guard.main(["--stack", "pilot", "--base-ref", "HEAD~1"], run=lambda cmd: ran.append(cmd) or 1, root=project) == 0
    assert ran == [] and "require -> require" in capsys.readouterr().out  # the hole the git reference leaves

    code, ran = run_guard(project, path, 1)
    out, err = capsys.readouterr()
    assert code == 1 and len(ran) == 1 and min_ready(ran[0]) == "98"
    assert "observe (deployed) -> require" in out and "refusing the switch to require" in err


@pytest.mark.parametrize("deployed,file", [("require", "require"), ("require", "observe"), ("observe", "observe")])
def test_no_switch_from_deployed_observe_to_require_is_not_guarded(project, capsys, deployed: str, file: str) -> None:
    path = write(project, pilot_file(file, 0), outputs(deployed, 100))
    code, ran = run_guard(project, path, 1)
    assert code == 0 and ran == []
    assert f"enforcement {deployed} (deployed) -> {file}" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["{}", "{}\n", "{\n}\n"])
def test_a_never_deployed_stack_starting_in_require_is_allowed_and_says_so(project, capsys, text: str) -> None:
    """`pulumi stack output --json` prints {} for a stack created and never updated."""
    path = write(project, pilot_file("require", 100), text)
    code, ran = run_guard(project, path, 1)
    out = capsys.readouterr().out
    assert code == 0 and ran == []
    assert "stack pilot has never been deployed" in out and "starts in require" in out and "allowed" in out


def test_a_never_deployed_stack_starting_in_observe_has_nothing_to_guard(project, capsys) -> None:
    code, ran = run_guard(project, write(project, pilot_file("observe", 98), "{}"), 1)
    assert code == 0 and ran == [] and "starts in observe, nothing to guard" in capsys.readouterr().out


@pytest.mark.parametrize("readiness_exit,expected", [(0, 0), (1, 1)])
def test_outputs_without_enforcement_are_guarded_as_observe_at_100(
        project, capsys, readiness_exit: int, expected: int) -> None:
    """A stack deployed by an earlier version has outputs, but no `enforcement`: its mode is unknown."""
    path = write(project, pilot_file("require", 90), outputs(None))
    code, ran = run_guard(project, path, readiness_exit)
    out = capsys.readouterr().out
    assert code == expected and len(ran) == 1 and min_ready(ran[0]) == "100"
    assert "deployed by an earlier version" in out and "no enforcement output" in out
    assert "100: the deployed requireMinReadyPercent is unknown, so the strictest" in out


def test_record_and_dry_run(project, capsys) -> None:
    path = write(project, pilot_file("require", 0), outputs("observe", 98))
    code, ran = run_guard(project, path, 1, "--record", "--dry-run")
    out = capsys.readouterr().out
    assert code == 0 and ran == []  # dry run: nothing runs
    running = next(line for line in out.splitlines() if line.startswith("running: "))
    assert running.endswith(" --record") and "--stack pilot" in running and "--min-ready 98" in running
    code, ran = run_guard(project, path, 0, "--record")
    assert code == 0 and ran[0][-1] == "--record" and ran[0][ran[0].index("--stack") + 1] == "pilot"


@pytest.mark.parametrize("deployed,file_threshold,enforcement", [
    (outputs("observe", 98), 0, "observe"),
    (outputs("observe", 50), 99, "observe"),
    (outputs("observe", 100), 100, "observe"),
    (outputs(None), 90, None),
])
def test_a_verdict_recorded_at_the_guards_threshold_is_what_pulumi_up_accepts(project, capsys, deployed, file_threshold, enforcement) -> None:
    """`--record` makes the program-level gate (components/require_gate.py) pass, and only at the
    threshold the guard used: both take the deployed threshold, or the file's when higher."""
    path = write(project, pilot_file("require", file_threshold), deployed)
    _, ran = run_guard(project, path, 0, "--record")
    threshold = int(min_ready(ran[0]))
    cfg, _ = guard.validated("pilot", guard.read_head("pilot", project), project)
    record = None if enforcement is None else json.dumps({"enforcement": enforcement, "requireMinReadyPercent": deployed["requireMinReadyPercent"]})
    now = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc)

    def verdict(at: float) -> str:
        return json.dumps({"stack": "pilot", "passed": True, "minReadyPercent": at, "recordedAt": now.isoformat(),
                           "windowSeconds": 7 * 86400, "recentSeconds": 86400})

    assert switch_problem(cfg, record, verdict(threshold), record is None, now) == (None, None)
    if threshold > 0:
        refused, _ = switch_problem(cfg, record, verdict(threshold - 1), record is None, now)
        assert refused and f"--min-ready {threshold}" in refused


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("content,message", [
    (None, "which cannot be read (No such file or directory)"),
    ("", "an empty file"),
    ("   \n", "an empty file"),
    ("error: no stack named 'pilot' found\n", "not JSON"),
    ('{"enforcement": "observe",', "not JSON"),
    ("[]", "a JSON list"),
    ('"observe"', "a JSON str"),
    (outputs("observe", 98, stack="prod"), "outputs of another stack (enforcementRecord /flexnet-beacon/prod/enforcement is of stack 'prod'"),
    (outputs(None, stack="dev"), "logGroups.iis /flexnet-beacon/dev/iis is of stack 'dev'"),
    (outputs("Observe", 98), "got enforcement 'Observe'"),
    (outputs("[secret]", 98), "got enforcement '[secret]'"),
    (outputs("observe", 101), "got requireMinReadyPercent 101"),
    (outputs("observe", -1), "got requireMinReadyPercent -1"),
    (outputs("observe", 97.5), "got requireMinReadyPercent 97.5"),
    (outputs("observe", "98"), "got requireMinReadyPercent '98'"),
    (outputs("observe", True), "got requireMinReadyPercent True"),
    (outputs("observe", None), "got no requireMinReadyPercent"),
])
def test_bad_deployed_outputs_are_one_line_and_exit_2(project, capsys, content, message: str) -> None:
    path = str(project / "missing.json") if content is None else write(project, pilot_file("require", 0), content)
    code, ran = run_guard(project, path)
    err = _one_line(capsys.readouterr().err)
    assert code == 2 and ran == []
    assert err.startswith(f"{guard.PROG}: error: --deployed-outputs: ") and message in err


def test_an_invalid_stack_file_is_exit_2_when_it_would_switch(project, capsys) -> None:
    path = write(project, pilot_file("require", 150), outputs("observe", 98))
    code, ran = run_guard(project, path)
    err = _one_line(capsys.readouterr().err)
    assert code == 2 and ran == [] and "requireMinReadyPercent" in err and "150" in err


def test_an_unparsable_stack_file_is_exit_2(project, capsys) -> None:
    path = write(project, "config: [unclosed\n", outputs("observe", 98))
    code, ran = run_guard(project, path)
    err = _one_line(capsys.readouterr().err)
    assert code == 2 and ran == [] and "stacks/Pulumi.pilot.yaml" in err


@pytest.mark.parametrize("argv,message", [
    (["--stack", "pilot"], "one of the arguments --deployed-outputs --base-ref is required"),
    (["--stack", "pilot", "--base-ref", "HEAD", "--deployed-outputs", "x.json"], "not allowed with argument"),
    (["--stack", "../pilot", "--deployed-outputs", "x.json"], "--stack: got '../pilot'"),
])
def test_one_reference_is_required(capsys, argv, message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        code = guard.main(argv)
        raise SystemExit(code)
    err = _one_line(capsys.readouterr().err)
    assert exited.value.code == 2 and message in err


# --- end to end: the guard's readiness command, run for real against moto ------------------------

FIELDS = ("#Fields: date time s-sitename s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
          "cs-version cs(User-Agent) cs(Referer) cs-host sc-status sc-substatus sc-win32-status sc-bytes cs-bytes time-taken "
          "crt-subject crt-issuer crt-serial crt-flags")
LAPTOP = "C=US,+O=Example+Corp,+CN=laptop-0001 C=US,+O=Example+Corp,+CN=Example+Devices+CA 4f-1a-09-77-3c 1"


def _iis_lines(moment: dt.datetime, with_anonymous: bool) -> list[str]:
    def line(offset: int, method: str, path: str, address: str, certificate: str) -> str:
        at = moment + dt.timedelta(seconds=offset)
        return (f"{at:%Y-%m-%d %H:%M:%S} W3SVC1 BEACON-1 10.0.1.10 {method} {path} - 443 - {address} HTTP/1.1 "
                f"FlexNet+Inventory+Agent/2024+R1 - beacon1.example.com 200 0 0 512 310 15 {certificate}")

    lines = ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", f"#Date: {moment:%Y-%m-%d %H:%M:%S}", FIELDS,
             line(1, "GET", "/ManageSoftDL/", "198.51.100.10", LAPTOP),
             line(2, "POST", "/ManageSoftRL/inventory.ndi", "198.51.100.10", LAPTOP)]
    if with_anonymous:  # a device that never presents a certificate: not ready under any reading
        lines += [line(3, "GET", "/ManageSoftDL/", "203.0.113.20", "- - - 0"), line(4, "POST", "/ManageSoftRL/x.ndi", "203.0.113.20", "- - - 0")]
    return lines


@pytest.mark.parametrize("with_anonymous,expected", [(False, 0), (True, 1)])
def test_end_to_end_the_recorded_verdict_is_what_pulumi_up_accepts(monkeypatch, tmp_path, capsys, with_anonymous: bool, expected: int) -> None:
    """guard --deployed-outputs --record -> the real `ops readiness` (in process) over IIS lines in
    moto's CloudWatch Logs -> the verdict in SSM -> components/require_gate.py decides as the
    guard did. dev's file says require (requireMinReadyPercent 100); deployed: observe at 100."""
    from scripts.ops.cli import main as ops_main
    from tests.ops_fixtures.support import aws_env, boto_client

    aws_env(monkeypatch, tmp_path)
    moment = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=10)
    logs = boto_client("logs")
    logs.create_log_group(logGroupName="/flexnet-beacon/dev/iis")
    logs.create_log_stream(logGroupName="/flexnet-beacon/dev/iis", logStreamName="i-0123456789abcdef0")
    stamp = int(moment.timestamp() * 1000)
    logs.put_log_events(logGroupName="/flexnet-beacon/dev/iis", logStreamName="i-0123456789abcdef0",
                        logEvents=[{"timestamp": stamp + i, "message": m} for i, m in enumerate(_iis_lines(moment, with_anonymous))])
    deployed = tmp_path / "deployed.json"
    deployed.write_text(json.dumps(outputs("observe", 100, stack="dev")), encoding="utf-8")

    ran: list[list[str]] = []

    def readiness(command: list[str]) -> int:
        ran.append(command)
        assert command[1:4] == ["-m", "scripts.ops", "readiness"]
        return ops_main(command[3:])

    code = guard.main(["--stack", "dev", "--deployed-outputs", str(deployed), "--since", "7d", "--record"], run=readiness)
    out, err = capsys.readouterr()
    assert code == expected and len(ran) == 1, out + err
    stored = boto_client("ssm").get_parameter(Name="/flexnet-beacon/dev/readiness-verdict")["Parameter"]["Value"]
    verdict = json.loads(stored)
    assert verdict["stack"] == "dev" and verdict["minReadyPercent"] == 100 and verdict["passed"] is (expected == 0)
    cfg, _ = guard.validated("dev", guard.read_head("dev"))
    refused, _ = switch_problem(cfg, json.dumps({"enforcement": "observe", "requireMinReadyPercent": 100}), stored, False,
                                dt.datetime.now(dt.timezone.utc))
    assert (refused is None) is (expected == 0), refused
