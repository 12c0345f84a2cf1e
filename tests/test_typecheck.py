"""Static type gate: basedpyright over the program, components, scripts and policy pack.

Pulumi mocks pass a misspelt key inside a nested args dict straight through to the engine; the
type checker, reading pulumi_aws's TypedDicts, does not. Proven here on broken copies, checked in
the same run as the project (each run loads pulumi_aws's stubs, some four seconds: one run keeps
the suite's slowest test short).
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

NESTED = """import pulumi_aws as aws

aws.ec2.Instance(
    "beacon",
    ami="ami-0123456789abcdef0",
    instance_type="t3.large",
    metadata_options={"KEY": "required", "http_put_response_hop_limit": 1},
)
"""
SELF_TESTS = {
    "misspelt.py": NESTED.replace("KEY", "http_tokenz"),
    "correct.py": NESTED.replace("KEY", "http_tokens"),
    "typed_args.py": "import pulumi_aws as aws\n"
                     "aws.ec2.InstanceArgs(ami='ami-1', instance_type='t3.large', metadata_options={'http_tokens': 'required'})\n",
}


def project_paths() -> list[str]:
    """What pyrightconfig.json's include names (paths on the command line replace it)."""
    return json.loads((ROOT / "pyrightconfig.json").read_text())["include"]


def check(paths: list[str]) -> tuple[dict[str, list[str]], dict]:
    """One checker run from the project root (its pyrightconfig.json): file -> its error messages."""
    result = subprocess.run([str(BASEDPYRIGHT), "--pythonpath", sys.executable, "--outputjson", *paths], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    errors: dict[str, list[str]] = {}
    for item in report["generalDiagnostics"]:
        if item["severity"] == "error":
            errors.setdefault(item["file"], []).append(f"{item['range']['start']['line'] + 1}: {item['message']}")
    return errors, report["summary"]


def test_project_is_clean_and_the_checker_catches_what_mocks_pass(tmp_path: Path) -> None:
    for name, text in SELF_TESTS.items():
        (tmp_path / name).write_text(text)
    errors, summary = check([*project_paths(), *(str(tmp_path / name) for name in SELF_TESTS)])
    self_test = {Path(file).name: found for file, found in errors.items() if Path(file).parent == tmp_path}
    project = {file: found for file, found in errors.items() if Path(file).parent != tmp_path}

    assert project == {}, json.dumps(project, indent=1)[-4000:]
    # Every project file was read: the paths on the command line did not narrow the check.
    assert summary["filesAnalyzed"] >= len(list(ROOT.glob("components/**/*.py"))) + len(list(ROOT.glob("scripts/**/*.py")))

    misspelt = self_test.get("misspelt.py", [])
    assert len(misspelt) == 1 and misspelt[0].startswith("7: ") and "InstanceMetadataOptionsArgsDict" in misspelt[0], misspelt
    # The same program with the right key is clean: the failure above is the typo, nothing else.
    assert "correct.py" not in self_test, self_test
    # The components use ...Args classes, which are stricter still: a dict is not accepted at all.
    assert any("InstanceMetadataOptionsArgs" in e for e in self_test.get("typed_args.py", [])), self_test
