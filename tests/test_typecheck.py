"""Static type gate: basedpyright over the program, components, scripts and policy pack.

Pulumi mocks pass a misspelt key inside a nested args dict straight through to the engine; the
type checker, reading pulumi_aws's TypedDicts, does not. Proven here on a broken copy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BASEDPYRIGHT = Path(sys.executable).with_name("basedpyright")
pytestmark = pytest.mark.skipif(not BASEDPYRIGHT.exists(), reason="basedpyright is in requirements-dev.txt")


def run_checker(cwd: Path, *paths: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BASEDPYRIGHT), "--pythonpath", sys.executable, *paths], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_project_is_clean() -> None:
    result = run_checker(ROOT)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 errors" in result.stdout


NESTED = """import pulumi_aws as aws

aws.ec2.Instance(
    "beacon",
    ami="ami-0123456789abcdef0",
    instance_type="t3.large",
    metadata_options={"KEY": "required", "http_put_response_hop_limit": 1},
)
"""


def test_checker_catches_a_misspelt_key_in_a_nested_args_dict(tmp_path: Path) -> None:
    config = json.loads((ROOT / "pyrightconfig.json").read_text())
    for key in ("venvPath", "venv", "include"):  # the copy finds packages through --pythonpath
        config.pop(key, None)
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    program = tmp_path / "program.py"
    program.write_text(NESTED.replace("KEY", "http_tokenz"))
    result = run_checker(tmp_path, "program.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "program.py:7:" in result.stdout and "InstanceMetadataOptionsArgsDict" in result.stdout and "1 error" in result.stdout, result.stdout
    # The same program with the right key is clean: the failure above is the typo, nothing else.
    program.write_text(NESTED.replace("KEY", "http_tokens"))
    result = run_checker(tmp_path, "program.py")
    assert result.returncode == 0, result.stdout


def test_typed_args_classes_refuse_even_a_correct_dict(tmp_path: Path) -> None:
    """The components use ...Args classes, which are stricter still: a dict is not accepted at all."""
    config = json.loads((ROOT / "pyrightconfig.json").read_text())
    for key in ("venvPath", "venv", "include"):
        config.pop(key, None)
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    (tmp_path / "program.py").write_text(
        "import pulumi_aws as aws\n"
        "aws.ec2.InstanceArgs(ami='ami-1', instance_type='t3.large', metadata_options={'http_tokens': 'required'})\n"
    )
    result = run_checker(tmp_path, "program.py")
    assert result.returncode == 1 and "InstanceMetadataOptionsArgs" in result.stdout, result.stdout
