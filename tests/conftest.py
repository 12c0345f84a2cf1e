"""Shared helpers: run the Pulumi program under mocks with a stack file plus overrides."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.config import stack_file_to_raw  # noqa: E402
from components.stack_yaml import read_stack_document  # noqa: E402
from scripts.offline import ProgramRun, run_program  # noqa: E402


class Planned:
    """One mocked program run, with lookups tests need."""

    def __init__(self, run: ProgramRun):
        self.run = run
        self.resources = run.resources
        self.outputs = run.outputs

    def of_type(self, suffix: str) -> list[Any]:
        return [r for r in self.resources if r.type.endswith(suffix)]

    def one(self, suffix: str, name: str | None = None) -> Any:
        found = [r for r in self.of_type(suffix) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {suffix} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def by_name(self, name: str) -> Any:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, name
        return found[0]


def stack_raw(stack: str) -> tuple[dict[str, str], str]:
    raw, region, _ = stack_file_to_raw(read_stack_document(ROOT / "stacks" / f"Pulumi.{stack}.yaml"))
    assert region
    return raw, region


def plan_stack(stack: str = "dev", overrides: dict[str, Any] | None = None, stack_name: str | None = None, base: Path | None = None) -> Planned:
    """The program under mocks with a stack file plus overrides. base: the project directory the
    certificate files are relative to (default the repository; e.g. a tmp_path holding them)."""
    raw, region = stack_raw(stack)
    for key, value in (overrides or {}).items():
        if key == "aws:region":
            region = value
        else:
            raw[key] = value if isinstance(value, str) else json.dumps(value)
    return Planned(run_program(stack_name or stack, raw, region, base=base))


@pytest.fixture(scope="session")
def dev() -> Planned:
    return plan_stack("dev")


@pytest.fixture(scope="session")
def prod() -> Planned:
    return plan_stack("prod")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI a skip is a failure unless tests/honest_runs.py lists it as deliberate."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    from honest_runs import ci_skip_problem

    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    problem = ci_skip_problem(reason)
    if problem:
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid}: {problem}"


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A local time zone nine hours from UTC, so naive and local readings of a moment differ."""
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def pytest_configure(config: pytest.Config) -> None:
    """An xdist worker leaves without tearing down its interpreter. Its heap (pulumi, moto, botocore:
    some 2,400 modules) took two seconds to dismantle after every result had been sent, and the
    controller waits for that. Registered first, so it runs after every other exit handler (tmp_path's
    lock removal, weakref finalizers such as TemporaryDirectory's); logging is flushed here."""
    import os

    if not os.environ.get("PYTEST_XDIST_WORKER") or "coverage" in sys.modules:
        return  # (coverage writes its data at exit: a measured run leaves the usual way)
    import atexit
    import logging

    def leave() -> None:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(leave)
