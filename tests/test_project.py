"""The project contract: Pulumi.yaml, stack files, README and CI agree with the config table."""

from __future__ import annotations

import subprocess
import sys

import yaml

from components.config import KEYS, PROJECT, load
from components.stack_yaml import read_stack_document
from conftest import ROOT, stack_raw


def test_pulumi_yaml_layout() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"
    assert project["stackConfigDir"] == "stacks"
    declared = project["config"]
    assert list(declared) == [k.name for k in KEYS]
    for key in KEYS:
        decl = declared[key.name]
        assert decl["type"] in {"string", "integer", "boolean", "array"}
        assert decl["description"]
        # Pulumi requires every declared key without a default to be set in every stack.
        assert "default" in decl, key.name
        if decl["type"] == "array":
            assert decl["items"]["type"] in {"string", "integer"}


def test_generated_docs_are_current() -> None:
    result = subprocess.run([sys.executable, "-m", "scripts.configdoc", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_defaults_alone_are_a_valid_config() -> None:
    cfg = load({}, "sandbox", "eu-west-1")
    assert cfg.az_count == 2 and cfg.beacon_count == 1 and cfg.protection is False


def test_stack_files_use_only_declared_keys_with_declared_types() -> None:
    declared = {k.name: k for k in KEYS}
    for path in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        config = read_stack_document(path)["config"]  # the plan's loader: no YAML aliases
        assert "aws:region" in config, path.name
        for full_key, value in config.items():
            namespace, _, key = full_key.partition(":")
            if namespace != PROJECT:
                continue
            kind = declared[key].type
            python_type = {"string": str, "integer": int, "boolean": bool, "array": list}[kind]
            assert isinstance(value, python_type) and not (kind == "integer" and isinstance(value, bool)), (path.name, key)
        stack = path.name[len("Pulumi."):-len(".yaml")]
        raw, region = stack_raw(stack)
        load(raw, stack, region)


def test_readme_and_ci_contract() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make plan" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts.plan --stack $(STACK)" in makefile and "pytest" in makefile
