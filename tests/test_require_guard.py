"""The guarded switch from observe to require (scripts/require_guard.py)."""

from __future__ import annotations

import sys

import pytest

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
    assert [args[i + 1] for i, a in enumerate(args) if a == "--issuer-cn"] == ["Example Device Issuing CA"]


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
