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


@pytest.fixture(scope="module")
def self_test_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One checker run over the three self-test programs (each run loads pulumi_aws's stubs: one run
    instead of three keeps the suite's slowest worker short): file name -> its error messages."""
    folder = tmp_path_factory.mktemp("typecheck")
    config = json.loads((ROOT / "pyrightconfig.json").read_text())
    for key in ("venvPath", "venv", "include"):  # the copy finds packages through --pythonpath
        config.pop(key, None)
    (folder / "pyrightconfig.json").write_text(json.dumps(config))
    programs = {
        "misspelt.py": NESTED.replace("KEY", "http_tokenz"),
        "correct.py": NESTED.replace("KEY", "http_tokens"),
        "typed_args.py": "import pulumi_aws as aws\n"
                         "aws.ec2.InstanceArgs(ami='ami-1', instance_type='t3.large', metadata_options={'http_tokens': 'required'})\n",
    }
    for name, text in programs.items():
        (folder / name).write_text(text)
    result = subprocess.run([str(BASEDPYRIGHT), "--pythonpath", sys.executable, "--outputjson", *programs], cwd=folder,
                            capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    errors: dict[str, list[str]] = {name: [] for name in programs}
    for item in report["generalDiagnostics"]:
        if item["severity"] == "error":
            errors[Path(item["file"]).name].append(f"{item['range']['start']['line'] + 1}: {item['message']}")
    return errors


def test_checker_catches_a_misspelt_key_in_a_nested_args_dict(self_test_run: dict[str, list[str]]) -> None:
    misspelt = self_test_run["misspelt.py"]
    assert len(misspelt) == 1 and misspelt[0].startswith("7: ") and "InstanceMetadataOptionsArgsDict" in misspelt[0], misspelt
    # The same program with the right key is clean: the failure above is the typo, nothing else.
    assert self_test_run["correct.py"] == []


def test_typed_args_classes_refuse_even_a_correct_dict(self_test_run: dict[str, list[str]]) -> None:
    """The components use ...Args classes, which are stricter still: a dict is not accepted at all."""
    assert any("InstanceMetadataOptionsArgs" in e for e in self_test_run["typed_args.py"]), self_test_run["typed_args.py"]
