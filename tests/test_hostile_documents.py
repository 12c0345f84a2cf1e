"""Stack files and outputs files that used to end in a traceback (issue 22 point 5): deep nesting,
wrong types, duplicate keys. Each tool answers one line naming the file and exits 2; `make
doctor` reports the file and goes on with the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.json_documents import MAX_DEPTH, JsonDocumentError, depth_of, load_json_document
from components.stack_yaml import StackFileError, load_stack_text
from conftest import ROOT

DEEP_YAML = "config:\n  flexnet-beacon:x: " + "[" * 50_000 + "]" * 50_000 + "\n"
HOSTILE_STACKS = {
    "deep": DEEP_YAML,
    "config-number": "config: 5\n",
    "list": "- config\n",
    "duplicate": "config:\n  flexnet-beacon:enforcement: observe\n  flexnet-beacon:enforcement: require\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_STACKS))
def test_the_stack_loader_refuses_with_one_line(name: str) -> None:
    with pytest.raises(StackFileError) as raised:
        load_stack_text(HOSTILE_STACKS[name])
    assert "\n" not in str(raised.value)


def test_the_stack_loader_keeps_what_stack_files_need() -> None:
    document = load_stack_text("config:\n  aws:region: eu-west-1\n  flexnet-beacon:rules: [[\"a\", {\"b\": [1, 2]}]]\n")
    assert document["config"]["flexnet-beacon:rules"] == [["a", {"b": [1, 2]}]]


@pytest.mark.parametrize("text,why", [
    ("[" * 100_000 + "]" * 100_000, "nested deeper"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper"),
    ('{"enforcement": "observe", "enforcement": "require"}', "duplicate key 'enforcement'"),
    ("{", "Expecting"),
])
def test_the_json_loader_refuses(text: str, why: str) -> None:
    with pytest.raises(JsonDocumentError, match=why):
        load_json_document(text)


def test_depth_is_counted_without_recursion() -> None:
    assert depth_of(1) == 0 and depth_of([]) == 1 and depth_of({"a": [[]]}) == 3
    assert load_json_document("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("content", [json.dumps({"beacons": 5}), "[" * 50_000 + "]" * 50_000, '{"beacons": [5]}'])
@pytest.mark.parametrize("verb", ["readiness", "expiry"])
def test_ops_verbs_refuse_a_bad_outputs_file_with_exit_2(tmp_path: Path, content: str, verb: str) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(content)
    result = _run("scripts.ops", verb, "--stack", "dev", "--stack-outputs", str(outputs), "--region", "us-east-1")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and str(outputs) in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_guard_refuses_deep_deployed_outputs_with_exit_2(tmp_path: Path) -> None:
    outputs = tmp_path / "deployed.json"
    outputs.write_text("[" * 50_000 + "]" * 50_000)
    result = _run("scripts.require_guard", "--stack", "dev", "--deployed-outputs", str(outputs))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "nested deeper" in result.stderr


@pytest.mark.parametrize("name", ["deep", "config-number", "duplicate"])
def test_guard_and_pki_check_refuse_a_hostile_stack_file(tmp_path: Path, name: str) -> None:
    from scripts.require_guard import GuardError, read_head

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    path = stacks / "Pulumi.hostile.yaml"
    path.write_text(HOSTILE_STACKS[name])
    with pytest.raises(GuardError):
        read_head("hostile", root=tmp_path)
    check = _run("scripts.pki", "--dir", str(tmp_path / "pki"), "check", str(ROOT / "stacks" / "certs" / "dev-sample-device.pem"), "--stack-config", str(path))
    assert check.returncode == 2 and "Traceback" not in check.stderr, check.stderr
    assert len(check.stderr.strip().splitlines()) == 1 and f"--stack-config {path}" in check.stderr, check.stderr


def test_doctor_reports_the_bad_file_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts import doctor

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.bad.yaml").write_text(DEEP_YAML)
    (stacks / "Pulumi.good.yaml").write_text("config:\n  aws:region: eu-west-1\n")
    found = doctor.read_stack_files(tmp_path)
    assert "nested deeper" in found["bad"]["error"]
    assert found["good"]["region"] == "eu-west-1"
