"""A run that rewrote a snapshot or skipped a check for a missing tool proves nothing: it fails.

- `rewrite_golden`: UPDATE_GOLDEN=1 writes the new snapshot and then fails the test that wrote it
  (review the diff, run again without it); under CI (CI set, as .ci/run does) it refuses to write.
- `ci_skip_problem`: under CI every skip is a failure unless its reason matches one of
  DELIBERATE_SKIPS (a skip that is right on the CI machine too, with why). A test that skips
  because a tool is missing locally (suricata, curl, moto, check-jsonschema, basedpyright...)
  fails in CI, where .ci/run installs them, without a guard of its own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# reason pattern -> why the skip is right under CI too
DELIBERATE_SKIPS = {
    r"^only enforced in CI$": "the test's CI-only twin runs instead (never skipped under CI)",
    r"^IIS_SCHEMA_SOURCE names the full IIS_schema\.xml$": "maintainer's re-extraction of the vendored IIS schema from a Windows copy of IIS_schema.xml: no CI machine has one",
    r"^the background writer and the worker processes fork \(Linux\)$": "fork-only path; CI is Linux, so it never skips there",
}


def under_ci() -> bool:
    return bool(os.environ.get("CI"))


def rewrite_golden(path: Path, text: str) -> None:
    if under_ci():
        pytest.fail(f"UPDATE_GOLDEN is refused under CI: {path.name} must be reviewed and committed, not rewritten by the run")
    path.write_text(text)
    pytest.fail(f"{path.name} rewritten by UPDATE_GOLDEN: review the diff (git diff {path}) and run again without UPDATE_GOLDEN")


def ci_skip_problem(reason: str) -> str | None:
    """None when this skip may happen under CI; else the failure message."""
    if not under_ci():
        return None
    text = reason.removeprefix("Skipped: ").strip()
    if any(re.search(pattern, text) for pattern in DELIBERATE_SKIPS):
        return None
    return f"skipped under CI ({text}): CI installs every tool the suite uses (.ci/run, requirements-dev.txt); a skip here proves nothing"
