"""scripts.plan end to end: artifacts, determinism, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PLAN_FILES = {
    "resources.json", "outputs.json", "diagram.md", "firewall-rules.suricata",
    "iis-state.json", "ssm-document.json", "user-data.ps1", "appcmd.txt", "crl-egress.json", "cost.json",
    "dns-firewall.json",
}


def run_plan(*args: str, cwd: Path = ROOT, env: dict | None = None, umask: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.plan", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


@pytest.fixture(scope="module")
def two_prod_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    first = run_plan("--stack", "prod", "--out", str(a))
    # The second run under umask 000 (and another hash seed): same bytes, still not world-writable.
    second = run_plan("--stack", "prod", "--out", str(b / "new"), env={"PYTHONHASHSEED": "12345"}, umask=0)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    return a / "prod", b / "new" / "prod", first


def test_plan_writes_the_artifacts(two_prod_runs) -> None:
    out, _, result = two_prod_runs
    assert {p.name for p in out.iterdir()} == PLAN_FILES
    resources = json.loads((out / "resources.json").read_text())
    assert isinstance(resources, list)
    for res in resources:
        assert set(res) >= {"type", "name", "parent", "inputs"}
    types = {r["type"] for r in resources}
    assert "aws:ec2/vpc:Vpc" in types and "flexnet-beacon:index:BeaconNetwork" in types
    instance = next(r for r in resources if r["type"] == "aws:ec2/instance:Instance")
    assert instance["parent"] in ("beacon-1", "beacon-2")
    outputs = json.loads((out / "outputs.json").read_text())
    assert len(outputs["beacons"]) == 2
    diagram = (out / "diagram.md").read_text()
    assert "```mermaid" in diagram and "us-east-1a" in diagram and "us-east-1b" in diagram
    assert "beacon_2" in diagram
    assert "plan for stack prod" in result.stdout
    assert "aws:ec2/instance:Instance" in result.stdout


def test_plan_iis_artifacts(two_prod_runs) -> None:
    import hashlib

    out, _, _ = two_prod_runs
    state = json.loads((out / "iis-state.json").read_text())
    document = json.loads((out / "ssm-document.json").read_text())
    resources = json.loads((out / "resources.json").read_text())
    # The document names the state object by its digest; that object holds iis-state.json.
    digest = document["parameters"]["StateDigest"]["default"]
    state_object = next(r for r in resources if r["type"] == "aws:s3/bucketObjectv2:BucketObjectv2" and r["inputs"]["key"] == f"converge/state-{digest}.json")
    assert json.loads(state_object["inputs"]["content"]) == state
    assert hashlib.sha256(state_object["inputs"]["content"].encode()).hexdigest() == digest
    doc_resource = next(r for r in resources if r["type"] == "aws:ssm/document:Document")
    assert json.loads(doc_resource["inputs"]["content"]) == document
    user_data = (out / "user-data.ps1").read_text()
    assert all(r["inputs"]["userData"] == user_data for r in resources if r["type"] == "aws:ec2/instance:Instance")
    appcmd = (out / "appcmd.txt").read_text()
    assert "/commit:apphost" in appcmd and "Example Device Issuing CA" in appcmd
    for name in PLAN_FILES:
        text = (out / name).read_text()
        assert "PRIVATE KEY" not in text and "BEGIN ENCRYPTED" not in text, name


def test_plan_is_byte_identical(two_prod_runs) -> None:
    a, b, _ = two_prod_runs
    for name in PLAN_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_plan_rules_file_matches_the_rule_groups(two_prod_runs) -> None:
    out, _, _ = two_prod_runs
    resources = json.loads((out / "resources.json").read_text())
    rules_file = (out / "firewall-rules.suricata").read_text()
    for group in (r for r in resources if r["type"] == "aws:networkfirewall/ruleGroup:RuleGroup"):
        assert group["inputs"]["ruleGroup"]["rulesSource"]["rulesString"] in rules_file


def _stack_dir(tmp_path: Path, config: dict) -> Path:
    import yaml

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": config}))
    return stacks


def test_bad_config_exits_2_with_every_problem_and_writes_nothing(tmp_path: Path) -> None:
    from scripts import plan

    stacks = _stack_dir(
        tmp_path,
        {
            "aws:region": "us-east-1",
            "flexnet-beacon:vpcCidr": "8.8.8.0/24",
            "flexnet-beacon:azCount": 7,
            "flexnet-beacon:instanceType": "t4g.large",
            "flexnet-beacon:crlUrls": ["ldap://dc1/CN=ca"],
        },
    )
    out = tmp_path / "out"
    with pytest.raises(plan.beacon_config.ConfigInvalid) as raised:
        plan.plan("bad", out, stacks_dir=stacks)
    keys = {issue.key for issue in raised.value.issues}
    assert keys == {"vpcCidr", "azCount", "instanceType", "crlUrls"}
    assert not out.exists()


def test_bad_config_cli(tmp_path: Path) -> None:
    # Through the real command line: a copy of the project with a broken dev stack.
    result = run_plan("--stack", "nosuchstack", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--stack" in result.stderr and "nosuchstack" in result.stderr and "dev" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_bad_config_cli_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from scripts import plan

    stacks = _stack_dir(tmp_path, {"aws:region": "us-east-1", "flexnet-beacon:beaconCount": "many", "flexnet-beacon:beaconcount": 2})
    monkeypatch.setattr(plan, "STACKS", stacks)
    code = plan.main(["--stack", "bad", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "beaconCount: got 'many'; expected an integer" in err
    assert "did you mean beaconCount?" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("stack", ["../etc/passwd", "", ".hidden", "a/b"])
def test_hostile_stack_names(stack: str, tmp_path: Path) -> None:
    from scripts import plan

    with pytest.raises(plan.PlanError, match="--stack"):
        plan.plan(stack, tmp_path)


def test_invalid_yaml(tmp_path: Path) -> None:
    from scripts import plan

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.x.yaml").write_text("config: [unclosed")
    with pytest.raises(plan.PlanError, match="not valid YAML"):
        plan.plan("x", tmp_path / "out", stacks_dir=stacks)


def test_program_stop_is_exit_2_without_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from scripts import plan

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    source = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
    (stacks / "Pulumi.zones.yaml").write_text(
        source + "  flexnet-beacon:availabilityZones:\n    - us-east-1q\n"
    )
    monkeypatch.setattr(plan, "STACKS", stacks)
    code = plan.main(["--stack", "zones", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "availabilityZones: got us-east-1q; expected zones of us-east-1: us-east-1a" in err
    assert "Traceback" not in err


def test_plan_output_is_not_world_writable_under_umask_000(two_prod_runs) -> None:
    _, under_umask_000, _ = two_prod_runs
    for directory in (under_umask_000.parent, under_umask_000):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755, directory
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in under_umask_000.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes
