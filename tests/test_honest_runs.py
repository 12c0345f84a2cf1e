"""Skips and snapshot rewrites under CI, run as pytest itself would (a child pytest on a small test file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SAMPLE = '''
import pytest
from honest_runs import rewrite_golden

def test_missing_tool():
    pytest.skip("curl is not installed")

@pytest.mark.skipif(True, reason="IIS_SCHEMA_SOURCE names the full IIS_schema.xml")
def test_deliberate():
    pass

def test_golden(tmp_path):
    rewrite_golden(tmp_path / "g.json", "{}")
'''


def _run(tmp_path: Path, env: dict[str, str]) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", **env}, cwd=tmp_path, timeout=120)
    return result.stdout


def test_under_ci_a_missing_tool_fails_a_deliberate_skip_stays_and_a_golden_rewrite_is_refused(tmp_path: Path) -> None:
    out = _run(tmp_path, {"CI": "true", "UPDATE_GOLDEN": "1"})
    assert "FAILED test_sample.py::test_missing_tool" in out and "skipped under CI (curl is not installed)" in out
    assert "SKIPPED [1] test_sample.py" in out and "IIS_SCHEMA_SOURCE" in out
    assert "FAILED test_sample.py::test_golden" in out and "UPDATE_GOLDEN is refused under CI" in out
    assert not (tmp_path / "g.json").exists()


def test_locally_skips_stay_skips_and_a_golden_rewrite_fails_the_run_that_made_it(tmp_path: Path) -> None:
    out = _run(tmp_path, {"UPDATE_GOLDEN": "1"})
    assert "SKIPPED" in out and "curl is not installed" in out and "FAILED test_sample.py::test_missing_tool" not in out
    assert "FAILED test_sample.py::test_golden" in out and "rewritten by UPDATE_GOLDEN: review the diff" in out
