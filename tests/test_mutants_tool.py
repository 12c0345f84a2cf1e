"""scripts/mutants.py (`make mutants`): its targets, configuration, report and the explanations
docs/testing.md gives. mutmut itself is not run here (minutes per module: docs/testing.md has
the runs); what is checked is everything around it that a change could break silently."""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import pytest

from conftest import ROOT
from scripts import mutants


def test_every_target_and_its_owning_tests_exist() -> None:
    for name, target in mutants.TARGETS.items():
        assert (ROOT / target.module).is_file(), name
        assert target.tests and all((ROOT / t).is_file() for t in target.tests), (name, target.tests)
        assert Path(target.module).stem == name


def test_the_configuration_mutates_one_module_against_its_tests_in_one_process(tmp_path: Path) -> None:
    (tmp_path / "components").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "stacks").mkdir()
    (tmp_path / "tests").mkdir()
    target = mutants.TARGETS["egress"]
    mutants.write_config(tmp_path, target)
    config = configparser.ConfigParser()
    config.read(tmp_path / "setup.cfg")
    section = config["mutmut"]
    assert section["only_mutate"] == target.module
    assert section["source_paths"].split() == list(mutants.SOURCE_PACKAGES)
    assert section["also_copy"].split() == ["stacks", "tests"]
    assert section["pytest_add_cli_args_test_selection"].split() == list(target.tests)
    assert section["pytest_add_cli_args"].split() == ["-p", "no:xdist"]
    assert section["process_isolation"] == "forkserver" and section["use_git_change_detection"] == "false"


@pytest.mark.parametrize("code,status", [(1, "killed"), (3, "killed"), (0, "survived"), (5, "no tests"), (33, "no tests"), (36, "timed out"),
                                         (-24, "timed out"), (None, "other"), (2, "other")])
def test_mutmut_exit_codes(code: int | None, status: str) -> None:
    assert mutants.status_of(code) == status


def test_a_row_scores_killed_and_timed_out_over_all() -> None:
    result = {"module": "m.py", "generated": 8, "killed": 5, "survived": 1, "timed out": 1, "no tests": 1, "other": 0, "seconds": 12}
    assert mutants.row(result) == "| m.py | 8 | 5 | 1 | 1 | 1 | 75.0% | 12 s |"
    assert mutants.row({**result, "generated": 0}).endswith("| - | 12 s |")


def test_bad_module_names_and_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert mutants.main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert "MODULE: got 'nonsense'; expected one of verdict" in err
    assert mutants.main(["--list", "egress"]) == 0
    out = capsys.readouterr().out
    assert out == f"egress: components/network/egress.py <- {' '.join(mutants.TARGETS['egress'].tests)}\n"


def _functions(module: Path) -> set[str]:
    """Names mutmut gives the functions of a module: `x_f` for a function, `xǁCǁm` for a method."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(f"x_{node.name}")
        elif isinstance(node, ast.ClassDef):
            names |= {f"x\u01c1{node.name}\u01c1{item.name}" for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return names


def test_every_explained_survivor_names_a_function_of_a_target() -> None:
    """A name docs/testing.md explains must still exist: a renamed function leaves a stale
    explanation, and the next run's survivor of the new name is then the one to explain."""
    modules = {target.module[:-3].replace("/", "."): ROOT / target.module for target in mutants.TARGETS.values()}
    explained = mutants.explained_names()
    assert len(explained) > 50
    for name in sorted(explained):
        head = re.match(r"(?P<module>[\w.]+?)\.(?P<function>x[^.]+)__mutmut_\d+$", name)
        assert head and head["module"] in modules, f"{name}: not a mutant of a module in TARGETS"
        assert head["function"] in _functions(modules[head["module"]]), f"{name}: {head['module']} has no such function"
