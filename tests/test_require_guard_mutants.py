"""The guarded switch: the cases mutation testing found untested (docs/testing.md, require_guard).

The git reference on a real repository (no stub of read_base), the readiness run through the real
subprocess path (a stand-in interpreter that records where and with what it ran), a project whose
certificates exist only in its own directory (so every `root` must reach the stack validation),
and the exact lines the guard prints and refuses with.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import require_guard as guard

KEY = guard.ENFORCEMENT_KEY
PILOT = guard.ROOT / "stacks" / "Pulumi.pilot.yaml"  # observe, requireMinReadyPercent 98


def _git(project: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
                          cwd=project, check=True, capture_output=True, text=True).stdout.strip()


def solo_text(enforcement: str = "observe", threshold: int = 98) -> str:
    text = PILOT.read_text(encoding="utf-8").replace("stacks/certs/pilot-", "stacks/certs/solo-")
    assert "stacks/certs/solo-" in text and f"{KEY}: observe\n" in text and "flexnet-beacon:requireMinReadyPercent: 98\n" in text
    return (text.replace(f"{KEY}: observe\n", f"{KEY}: {enforcement}\n")
                .replace("flexnet-beacon:requireMinReadyPercent: 98\n", f"flexnet-beacon:requireMinReadyPercent: {threshold}\n"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with one stack, `solo` (the pilot's settings), whose certificate files exist only
    here: validating it anywhere but in this directory fails."""
    (tmp_path / "stacks" / "certs").mkdir(parents=True)
    for cert in (guard.ROOT / "stacks" / "certs").glob("pilot-*.pem"):
        shutil.copy(cert, tmp_path / "stacks" / "certs" / cert.name.replace("pilot-", "solo-"))
    (tmp_path / "stacks" / "Pulumi.solo.yaml").write_text(solo_text(), encoding="utf-8")
    assert not (guard.ROOT / "stacks" / "Pulumi.solo.yaml").exists()
    return tmp_path


def commit_stack(project: Path, text: str | None, message: str) -> str:
    """Commit stacks/Pulumi.solo.yaml with this text (None: without it); the commit's id."""
    if not (project / ".git").exists():
        _git(project, "init", "-q")
    path = project / "stacks" / "Pulumi.solo.yaml"
    if text is None:
        path.unlink()
        _git(project, "add", "-A", "stacks")
    else:
        path.write_text(text, encoding="utf-8")
        _git(project, "add", "stacks")
    _git(project, "commit", "-q", "--allow-empty", "-m", message)
    return _git(project, "rev-parse", "HEAD")


def outputs_file(project: Path, enforcement: str | None = "observe", threshold: object = 98) -> str:
    found: dict = {"logGroups": {"iis": "/flexnet-beacon/solo/iis"}}
    if enforcement is not None:
        found |= {"enforcement": enforcement, "requireMinReadyPercent": threshold, "enforcementRecord": "/flexnet-beacon/solo/enforcement"}
    path = project / "deployed.json"
    path.write_text(json.dumps(found), encoding="utf-8")
    return str(path)


# --- the git reference, on a real repository ---------------------------------------------------------

def test_read_base_reads_the_stack_file_at_a_commit_of_the_projects_own_repository(project: Path) -> None:
    observed = commit_stack(project, solo_text("observe"), "solo in observe")  # an id no other repository knows
    commit_stack(project, solo_text("require"), "solo in require")
    base = guard.read_base("solo", observed, project)
    assert base is not None and base["config"][KEY] == "observe"
    assert guard.read_base("solo", "HEAD", project)["config"][KEY] == "require"  # type: ignore[index]


def test_read_base_of_a_commit_without_the_file_is_none(project: Path) -> None:
    commit_stack(project, solo_text("observe"), "solo in observe")
    before = commit_stack(project, None, "solo removed")
    assert guard.read_base("solo", before, project) is None


def test_read_base_names_the_ref_when_the_file_there_is_not_a_mapping(project: Path) -> None:
    bad = commit_stack(project, "- just\n- a list\n", "not a stack file")
    with pytest.raises(guard.GuardError) as refused:
        guard.read_base("solo", bad, project)
    assert str(refused.value).startswith(f"{bad}:stacks/Pulumi.solo.yaml: the document is a list; ")


@pytest.mark.parametrize("ref", ["", "-x", "--upload-pack=x"])
def test_a_ref_that_git_would_read_as_an_option_is_refused_before_git_runs(project: Path, ref: str) -> None:
    with pytest.raises(guard.GuardError) as refused:
        guard.read_base("solo", ref, project)
    assert str(refused.value) == f"--base-ref: got {ref!r}; expected a git commit, branch or tag"


@pytest.mark.parametrize("base,head,switching", [("observe", "require", True), ("observe", "observe", False)])
def test_the_base_ref_decides_from_the_file_at_the_ref_and_in_the_tree(project: Path, capsys, base: str, head: str, switching: bool) -> None:
    ref = commit_stack(project, solo_text(base), f"solo in {base}")
    (project / "stacks" / "Pulumi.solo.yaml").write_text(solo_text(head, 97), encoding="utf-8")
    ran: list[list[str]] = []
    code = guard.main(["--stack", "solo", "--base-ref", ref], run=lambda cmd: ran.append(cmd) or 0, root=project)
    out = capsys.readouterr().out
    assert code == 0 and len(ran) == int(switching)
    if switching:  # the threshold is the file's, and --since its default
        args = ran[0]
        assert args[args.index("--min-ready") + 1] == "97" and args[args.index("--since") + 1] == "7d"
        assert out.splitlines() == [f"enforcement {base} -> {head}: devices must be ready before the switch",
                                    "running: python " + shlex.join(args[1:])]
    else:
        assert out == f"enforcement {base} -> {head}: no observe-to-require switch, nothing to guard\n"


# --- the readiness run through the real subprocess path ----------------------------------------------

@pytest.mark.parametrize("readiness_exit,expected", [(0, 0), (3, 1)])
def test_readiness_runs_as_a_process_in_the_project(project: Path, tmp_path: Path, monkeypatch, capsys,
                                                     readiness_exit: int, expected: int) -> None:
    record = tmp_path / "ran.txt"
    stand_in = tmp_path / "python-stand-in"
    stand_in.write_text(f'#!/bin/sh\n{{ pwd; printf "%s\\n" "$@"; }} > "{record}"\nexit {readiness_exit}\n', encoding="utf-8")
    stand_in.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(stand_in))
    (project / "stacks" / "Pulumi.solo.yaml").write_text(solo_text("require"), encoding="utf-8")
    code = guard.main(["--stack", "solo", "--deployed-outputs", outputs_file(project)], root=project)
    err = capsys.readouterr().err
    where, *args = record.read_text(encoding="utf-8").splitlines()
    assert code == expected and Path(where).resolve() == project.resolve()
    assert args[:4] == ["-m", "scripts.ops", "readiness", "--stack"] and args[args.index("--min-ready") + 1] == "98"
    assert args[args.index("--stack-outputs") + 1] == str(project / "deployed.json")
    if expected:
        assert err == (f"{guard.PROG}: refusing the switch to require: readiness exited 3 (fewer devices ready than the threshold "
                       "in force, or the logs could not be read); keep observe and onboard the rest\n")


# --- what the deployed reference prints ----------------------------------------------------------------

def test_guarded_lines_name_the_file_and_why_the_threshold(project: Path) -> None:
    head = guard.read_head("solo", project)
    deployed = guard.Deployed("deployed.json", never=False, enforcement="observe", min_ready=98)
    lines, threshold = guard.guard_deployed("solo", {"config": {**head["config"], KEY: "require"}}, deployed, project)
    assert threshold == 98 and lines == [
        "enforcement observe (deployed) -> require (stacks/Pulumi.solo.yaml): devices must be ready before the switch, "
        "at --min-ready 98 (the deployed requireMinReadyPercent 98)"]
    unknown = guard.Deployed("deployed.json", never=False, enforcement=None, min_ready=None)
    lines, threshold = guard.guard_deployed("solo", {"config": {**head["config"], KEY: "require"}}, unknown, project)
    assert threshold == 100 and lines == [
        "enforcement unknown (deployed by an earlier version: no enforcement output) -> require (stacks/Pulumi.solo.yaml): "
        "devices must be ready before the switch, at --min-ready 100 (100: the deployed requireMinReadyPercent is unknown, so the strictest)",
        "deployed.json has no enforcement output: a stack deployed by an earlier version may be in observe, "
        "so the change is guarded as a switch from observe"]
    lowered = guard.Deployed("deployed.json", never=False, enforcement="observe", min_ready=99)
    assert guard.guard_deployed("solo", {"config": {**head["config"], KEY: "require"}}, lowered, project)[0][0].endswith(
        "(the deployed requireMinReadyPercent 99; the stack file's 98 cannot lower it in the same step as the switch)")
    never = guard.Deployed("deployed.json", never=True, enforcement=None, min_ready=None)
    assert guard.guard_deployed("solo", {"config": {**head["config"], KEY: "require"}}, never, project) == (
        ["stack solo has never been deployed (deployed.json has no outputs): it starts in require, so there is no switch to guard; allowed"], None)


def test_two_lines_print_as_two_lines(project: Path, capsys) -> None:
    (project / "stacks" / "Pulumi.solo.yaml").write_text(solo_text("require"), encoding="utf-8")
    code = guard.main(["--stack", "solo", "--deployed-outputs", outputs_file(project, None), "--dry-run"], root=project)
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) == 3 and out[1].startswith(f"{project / 'deployed.json'} has no enforcement output")


def test_validated_returns_the_allow_mappings_issuers(project: Path) -> None:
    cfg, issuers = guard.validated("solo", guard.read_head("solo", project), project)
    assert cfg.require_min_ready_percent == 98 and issuers == ["Example Devices CA"]


def test_readiness_command_records_only_when_asked(project: Path) -> None:
    assert "--record" not in guard.readiness_command("solo", guard.read_head("solo", project), "7d", project)


# --- parsing the references ----------------------------------------------------------------------------

def test_a_threshold_of_0_deployed_is_read() -> None:
    deployed = guard.parse_deployed(json.dumps({"enforcement": "observe", "requireMinReadyPercent": 0}), "solo", "out.json")
    assert deployed == guard.Deployed("out.json", never=False, enforcement="observe", min_ready=0)
    assert guard.parse_deployed("{}", "solo", "out.json") == guard.Deployed("out.json", never=True, enforcement=None, min_ready=None)


@pytest.mark.parametrize("text,message", [
    ("", "got 'out.json', an empty file; expected the JSON object of `pulumi stack output --json --stack solo` "
         "(`{}` for a stack never deployed)"),
    ("[]", "got 'out.json', a JSON list; expected the JSON object of `pulumi stack output --json --stack solo`"),
    (json.dumps({"enforcement": "observe"}), "got no requireMinReadyPercent in 'out.json' beside enforcement 'observe'; "
                                             "expected both (the outputs of one update)"),
    (json.dumps({"enforcementRecord": "/flexnet-beacon/a/enforcement", "logGroups": {"iis": "/flexnet-beacon/b/iis"}}),
     "got 'out.json', outputs of another stack (enforcementRecord /flexnet-beacon/a/enforcement is of stack 'a'; "
     "logGroups.iis /flexnet-beacon/b/iis is of stack 'b'); expected those of --stack 'solo'"),
])
def test_refused_outputs_messages(text: str, message: str) -> None:
    with pytest.raises(guard.GuardError) as refused:
        guard.parse_deployed(text, "solo", "out.json")
    assert str(refused.value) == f"--deployed-outputs: {message}"


def test_an_outputs_file_that_is_not_utf8_is_named_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_bytes(b'{"enforcement": "\xff"}')
    with pytest.raises(guard.GuardError) as refused:
        guard.read_deployed(str(path), "solo")
    assert str(refused.value).startswith(f"--deployed-outputs: got {str(path)!r}, which cannot be read (UnicodeDecodeError); ")


def test_a_stack_name_may_hold_capitals(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.Pilot-EU.yaml").write_text(f"config:\n  {KEY}: observe\n", encoding="utf-8")
    assert guard.read_head("Pilot-EU", tmp_path) == {"config": {KEY: "observe"}}


@pytest.mark.parametrize("config,expected", [
    (["not", "a", "mapping"], "require"),  # no enforcement to read: the default
    ({KEY: None}, "require"),  # `key:` with nothing after it
])
def test_enforcement_defaults(config: object, expected: str) -> None:
    assert guard.enforcement_of({"config": config}) == expected


@pytest.mark.parametrize("value,message", [
    ("bogus", f"{KEY}: got 'bogus'; expected observe or require"),
    (True, f"{KEY}: got True; expected observe or require"),
    ({"secure": "AAAA"}, f"{KEY}: got an encrypted value (secure:); expected plain text observe or require (the switch must be "
                         "reviewable: pulumi config set flexnet-beacon:enforcement require, without --secret)"),
    ({"plain": "observe"}, f"{KEY}: got {{'plain': 'observe'}}; expected observe or require"),
])
def test_enforcement_refusals(value: object, message: str) -> None:
    with pytest.raises(guard.GuardError) as refused:
        guard.enforcement_of({"config": {KEY: value}})
    assert str(refused.value) == message


def test_stack_is_required(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        guard.main(["--base-ref", "HEAD"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"{guard.PROG}: error: the following arguments are required: --stack\n"


def test_help_names_the_program_and_says_what_each_option_is(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exited:
        guard.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0
    assert text.startswith(f"usage: {guard.PROG} [-h] --stack STACK (--deployed-outputs FILE | --base-ref BASE_REF)")
    for fragment in (
        "The guarded switch from observe to require: refuse it while too few devices are ready.",
        "--stack STACK stack name: stacks/Pulumi.<stack>.yaml",
        "--deployed-outputs FILE `pulumi stack output --json --stack NAME` of the deployed stack: the reference (`{}`: never deployed)",
        "--base-ref BASE_REF git ref of the stack file before the change: the reference (weaker: see the docstring)",
        "--since SINCE how far back readiness reads the IIS logs (default 7d)",
        "--record readiness keeps its verdict in /flexnet-beacon/<stack>/readiness-verdict, which pulumi up requires for the "
        "switch (needs ssm:PutParameter)",
        "--dry-run say what would run; run nothing",
    ):
        assert fragment in text, fragment
    assert "Compares `enforcement`" not in text  # the first paragraph of the docstring only


def test_every_problem_of_an_invalid_stack_file_is_on_the_one_line(project: Path) -> None:
    from components.config import ConfigInvalid, stack_file_to_raw
    from components.stack import prepare

    text = solo_text("require", 150).replace("flexnet-beacon:vpcCidr: 10.82.0.0/22", "flexnet-beacon:vpcCidr: 10.82.0.0/8")
    (project / "stacks" / "Pulumi.solo.yaml").write_text(text, encoding="utf-8")
    head = guard.read_head("solo", project)
    raw, region, _ = stack_file_to_raw(head)
    with pytest.raises(ConfigInvalid) as invalid:
        prepare(raw, "solo", region, base=project)
    lines = invalid.value.render().splitlines()
    assert len(lines) >= 2, lines  # two problems: the threshold and the VPC
    with pytest.raises(guard.GuardError) as refused:
        guard.validated("solo", head, project)
    assert str(refused.value) == " ".join(lines)
