"""Mutation testing of the modules that decide who gets in: `make mutants` (not part of `make test`).

    python -m scripts.mutants [MODULE ...]     # all of TARGETS when none is named
    python -m scripts.mutants --list

For each module, one at a time: a snapshot of the working tree (the files git tracks or would
track: `git ls-files --cached --others --exclude-standard`) is copied to mutants/<module>/, so
neither mutmut nor a concurrent edit touches what is run; mutmut (requirements-dev.txt) mutates
that module alone in its copy and runs, for every mutant, those of the module's owning tests
(TARGETS) that execute the mutated function, with one worker. Results: mutants/<module>/result.json
and a table row per module on stdout.

Every mutant that survives (the tests pass with it) must be explained in docs/testing.md, by its
mutmut name (`components.network.dns_rules.x_dns_allows__mutmut_5`): equivalent because ..., or
the test that kills it. Exit 0 when none is unexplained, 1 when one is (its diff is printed),
2 on bad input (an unknown module) or when mutmut cannot run (its log is named).

What mutmut mutates (its documented behaviour, checked in its source): the bodies of functions
and methods; not module-level code (constant tables, compiled regular expressions, the
dataclass fields' defaults) and not functions under a decorator other than @staticmethod or
@classmethod (@property, @lru_cache). docs/testing.md lists what that leaves out per module.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m scripts.mutants"
WORK = ROOT / "mutants"
DOC = ROOT / "docs" / "testing.md"
# The packages a mutated module is imported from (mutmut copies them to its mutants/ directory);
# every other file of the snapshot is copied beside them for the tests (stacks/, pricing/ ...).
SOURCE_PACKAGES = ("components", "scripts")
_MUTANT_NAME = re.compile(r"`([A-Za-z_][\w.]*__mutmut_\d+)`")


@dataclass(frozen=True)
class Target:
    module: str  # the file mutated
    tests: tuple[str, ...]  # the tests that own it (mutmut runs those that execute the mutated function)


TARGETS: dict[str, Target] = {
    "verdict": Target("components/certs/verdict.py", (
        "tests/certs/test_verdict_mutants.py", "tests/certs/test_verdict_edges.py", "tests/pki/test_pki.py",
        "tests/tls/test_handshakes.py")),
    "facts": Target("components/certs/facts.py", (
        "tests/certs/test_facts_mutants.py", "tests/pki/test_pki.py", "tests/pki/test_pki_hostile_round2.py")),
    "mapping_rules": Target("components/iis/mapping_rules.py", (
        "tests/iis/test_mapping_rules_mutants.py", "tests/iis/test_wildcard_match.py", "tests/iis/test_iis_state.py",
        "tests/iis/test_mapping_names.py", "tests/test_config_validators.py", "tests/pki/test_pki.py")),
    "firewall_rules": Target("components/network/firewall_rules.py", (
        "tests/network/test_firewall_rules_mutants.py", "tests/network/test_firewall_rules.py")),
    "dns_rules": Target("components/network/dns_rules.py", (
        "tests/network/test_dns_rules_mutants.py", "tests/network/test_dns_firewall.py")),
    "egress": Target("components/network/egress.py", (
        "tests/network/test_egress_mutants.py", "tests/network/test_egress.py", "tests/network/test_firewall_rules.py")),
    "mapping_judgment": Target("scripts/ops/mapping_judgment.py", (
        "tests/ops/test_mapping_judgment_mutants.py", "tests/ops/test_readiness_model.py")),
    "readiness_outcome": Target("scripts/ops/readiness_outcome.py", (
        "tests/ops/test_readiness_outcome_mutants.py", "tests/ops/test_readiness_model.py", "tests/ops/test_ops_readiness.py")),
    "readiness_model": Target("scripts/ops/readiness_model.py", (
        "tests/ops/test_readiness_model_mutants.py", "tests/ops/test_readiness_model.py", "tests/ops/test_readiness_speed.py",
        "tests/ops/test_ops_readiness.py")),
    "require_guard": Target("scripts/require_guard.py", (
        "tests/test_require_guard_mutants.py", "tests/test_require_guard.py")),
}

# mutmut's exit codes of a mutant's test run -> what this report counts (mutmut/stats.py).
KILLED, SURVIVED, TIMEOUT, NO_TESTS = "killed", "survived", "timed out", "no tests"
_STATUS = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS, 36: TIMEOUT, -24: TIMEOUT, 24: TIMEOUT,
           152: TIMEOUT, 255: TIMEOUT}


def status_of(exit_code: int | None) -> str:
    """killed | survived | timed out | no tests | other (not run, skipped, crashed: counted as not killed)."""
    return _STATUS.get(exit_code, "other") if exit_code is not None else "other"


def snapshot(destination: Path) -> int:
    """Copy the files git tracks or would track into destination; the number copied."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    copied = 0
    for name in listed:
        source = ROOT / name
        if not name or name.startswith("mutants/") or not source.is_file():  # deleted in the work tree
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied += 1
    return copied


def write_config(stage: Path, target: Target) -> None:
    """mutmut's configuration ([mutmut] of setup.cfg in its working directory)."""
    others = sorted(p.name for p in stage.iterdir() if p.name not in SOURCE_PACKAGES and p.name != "setup.cfg")
    lines = [
        "[mutmut]",
        "source_paths =", *(f"    {p}" for p in SOURCE_PACKAGES),
        f"only_mutate = {target.module}",
        "also_copy =", *(f"    {p}" for p in others),
        "pytest_add_cli_args_test_selection =", *(f"    {t}" for t in target.tests),
        # one process: no xdist workers inside a mutant's test run
        "pytest_add_cli_args =", "    -p", "    no:xdist",
        # the plan's tests run the Pulumi runtime (gRPC threads): a worker forked from the process
        # that ran them hangs, so the workers are forked from a server that never ran a test
        "process_isolation = forkserver",
        "use_git_change_detection = false",
        "",
    ]
    (stage / "setup.cfg").write_text("\n".join(lines), encoding="utf-8")


def explained_names() -> set[str]:
    return set(_MUTANT_NAME.findall(DOC.read_text(encoding="utf-8"))) if DOC.is_file() else set()


def run_target(name: str, target: Target, mutmut: Path) -> dict:
    stage = WORK / name
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    snapshot(stage)
    missing = [t for t in target.tests if not (stage / t).is_file()]
    tests = tuple(t for t in target.tests if t not in missing)
    write_config(stage, Target(target.module, tests))
    log = stage / "mutmut.log"
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.run([str(mutmut), "run", "--max-children", "1"], cwd=stage, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = round(time.monotonic() - started)
    meta = stage / "mutants" / (target.module + ".meta")
    if code != 0 or not meta.is_file():
        raise RuntimeError(f"mutmut exited {code} for {target.module}; see {log.relative_to(ROOT)}")
    exit_codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    by_status: dict[str, list[str]] = {}
    for mutant, exit_code in sorted(exit_codes.items(), key=lambda item: _natural(item[0])):
        by_status.setdefault(status_of(exit_code), []).append(mutant)
    result = {
        "module": target.module,
        "tests": list(tests),
        "missingTests": missing,
        "seconds": seconds,
        "generated": len(exit_codes),
        **{status: len(by_status.get(status, [])) for status in (KILLED, SURVIVED, TIMEOUT, NO_TESTS, "other")},
        "notKilled": {status: mutants for status, mutants in by_status.items() if status not in (KILLED, TIMEOUT)},
        "timedOut": by_status.get(TIMEOUT, []),
    }
    (stage / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _natural(mutant: str) -> tuple[str, int]:
    head, _, number = mutant.rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else 0


def diff_of(name: str, mutant: str, mutmut: Path) -> str:
    shown = subprocess.run([str(mutmut), "show", mutant], cwd=WORK / name, capture_output=True, text=True)
    return shown.stdout.strip() or shown.stderr.strip()


def row(result: dict) -> str:
    detected = result[KILLED] + result[TIMEOUT]
    score = f"{100.0 * detected / result['generated']:.1f}%" if result["generated"] else "-"
    return (f"| {result['module']} | {result['generated']} | {result[KILLED]} | {result[SURVIVED]} | {result[TIMEOUT]} | "
            f"{result[NO_TESTS] + result['other']} | {score} | {result['seconds']} s |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"some of: {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--list", action="store_true", help="print each module, its file and its tests; run nothing")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        print(f"{PROG}: error: MODULE: got {unknown[0]!r}; expected one of {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    chosen = args.modules or list(TARGETS)
    if args.list:
        for name in chosen:
            print(f"{name}: {TARGETS[name].module} <- {' '.join(TARGETS[name].tests)}")
        return 0
    mutmut = Path(sys.executable).parent / "mutmut"
    if not mutmut.is_file():
        print(f"{PROG}: error: mutmut: got no {mutmut}; expected it installed from requirements-dev.txt (make mutants)", file=sys.stderr)
        return 2
    rows, unexplained = [], 0
    explained = explained_names()
    for name in chosen:
        print(f"{name}: mutating {TARGETS[name].module} (one worker) ...", flush=True)
        try:
            result = run_target(name, TARGETS[name], mutmut)
        except RuntimeError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        rows.append(row(result))
        print(rows[-1], flush=True)
        if result["missingTests"]:
            print(f"  owning tests not in the tree (left out): {', '.join(result['missingTests'])}")
        for mutant in result["timedOut"]:
            print(f"  timed out (counted as detected; check it is not the machine's load): {mutant}")
        for status, mutants in result["notKilled"].items():
            for mutant in mutants:
                if mutant in explained:
                    continue
                unexplained += 1
                print(f"  {status}, not explained in docs/testing.md: {mutant}\n" + "\n".join(
                    "    " + line for line in diff_of(name, mutant, mutmut).splitlines()))
    print("\n| module | mutants | killed | survived | timed out | not run | score | time |\n|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if unexplained:
        print(f"{unexplained} mutant(s) not killed and not explained in docs/testing.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
