"""The guarded switch from observe to require: refuse it while too few devices are ready.

    python -m scripts.require_guard --stack NAME --base-ref REF [--since 7d] [--dry-run]

Compares `enforcement` of stacks/Pulumi.<NAME>.yaml in the working tree with the same file at
git REF (the pull request's base, or the commit the deploy starts from). Only a switch from
observe to require is guarded: then `python -m scripts.ops readiness` runs against the stack's
live IIS logs with --min-ready requireMinReadyPercent, and its exit code is this command's.
Everything the readiness check needs comes from the stack file, offline: the region, the IIS
log group /flexnet-beacon/<stack>/iis and the issuing CAs' CNs (the Issuer rules the program
derives from clientCaCertificates). No Pulumi CLI, no stack outputs.

Exit: 0 no switch, or enough devices ready; 1 below the threshold (or readiness failed);
2 bad input (unknown stack, a ref git cannot read, an invalid stack file).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from components.config import PROJECT, ConfigInvalid, stack_file_to_raw
from components.stack_yaml import StackFileError, load_stack_text

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m scripts.require_guard"
ENFORCEMENT_KEY = f"{PROJECT}:enforcement"


class GuardError(Exception):
    """Bad input: one line, exit 2."""


@dataclass(frozen=True)
class Decision:
    switching: bool
    before: str
    after: str

    def line(self) -> str:
        if self.switching:
            return f"enforcement {self.before} -> {self.after}: devices must be ready before the switch"
        return f"enforcement {self.before} -> {self.after}: no observe-to-require switch, nothing to guard"


def enforcement_of(document: Mapping[str, Any] | None) -> str:
    """The stack file's enforcement (absent file or key: the default, require)."""
    config = (document or {}).get("config") or {}
    value = config.get(ENFORCEMENT_KEY, "require") if isinstance(config, Mapping) else "require"
    return str(value)


def decide(base: Mapping[str, Any] | None, head: Mapping[str, Any]) -> Decision:
    before, after = enforcement_of(base), enforcement_of(head)
    return Decision(before == "observe" and after == "require", before, after)


def _load(text: str, where: str) -> dict[str, Any]:
    try:
        document = load_stack_text(text) or {}  # the plan's loader: no YAML anchors or aliases
    except StackFileError as exc:
        raise GuardError(f"{where}: {exc}") from None
    if not isinstance(document, dict):
        raise GuardError(f"{where}: expected a mapping with a 'config:' mapping")
    return document


def read_head(stack: str, root: Path = ROOT) -> dict[str, Any]:
    path = root / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise GuardError(f"--stack: got {stack!r}; expected a stack with a file stacks/Pulumi.<stack>.yaml")
    return _load(path.read_text(encoding="utf-8"), str(path.relative_to(root)))


def read_base(stack: str, ref: str, root: Path = ROOT) -> dict[str, Any] | None:
    """The stack file at `ref`, or None when the stack did not exist there (a new stack)."""
    if not ref or ref.startswith("-"):
        raise GuardError(f"--base-ref: got {ref!r}; expected a git commit, branch or tag")
    verify = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root, capture_output=True, text=True)
    if verify.returncode != 0:
        raise GuardError(f"--base-ref: got {ref!r}; git knows no such commit here (fetch it first, e.g. fetch-depth: 0)")
    shown = subprocess.run(["git", "show", f"{verify.stdout.strip()}:stacks/Pulumi.{stack}.yaml"], cwd=root, capture_output=True, text=True)
    if shown.returncode != 0:
        return None
    return _load(shown.stdout, f"{ref}:stacks/Pulumi.{stack}.yaml")


def readiness_command(stack: str, head: Mapping[str, Any], since: str, root: Path = ROOT) -> list[str]:
    """`ops readiness` for the stack, every argument taken from its (validated) stack file."""
    from components.iis.state import iis_log_group
    from components.stack import prepare

    raw, region, _secret = stack_file_to_raw(head)
    try:
        prepared = prepare(raw, stack, region, base=root)
    except ConfigInvalid as invalid:
        raise GuardError(invalid.render().replace("\n", " ")) from None
    cfg = prepared.cfg
    mappings = prepared.iis_state["authentication"]["clientCertificateMapping"]["manyToOneMappings"]
    issuers = sorted({m["rules"][0]["matchCriteria"] for m in mappings if m["permissionMode"] == "Allow"})
    command = [sys.executable, "-m", "scripts.ops", "readiness", "--region", cfg.region,
               "--log-group", iis_log_group(cfg), "--since", since,
               "--min-ready", str(cfg.require_min_ready_percent)]
    for cn in issuers:
        command += ["--issuer-cn", cn]
    return command


def main(argv: Sequence[str] | None = None, run: Callable[[list[str]], int] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack name: stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--base-ref", required=True, help="git ref of the stack file before the change")
    parser.add_argument("--since", default="7d", help="how far back readiness reads the IIS logs (default 7d)")
    parser.add_argument("--dry-run", action="store_true", help="say what would run; run nothing")
    args = parser.parse_args(argv)
    try:
        head = read_head(args.stack)
        decision = decide(read_base(args.stack, args.base_ref), head)
        print(decision.line())
        if not decision.switching:
            return 0
        command = readiness_command(args.stack, head, args.since)
    except GuardError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print("running: " + " ".join(command[1:]), flush=True)
    if args.dry_run:
        return 0
    code = (run or (lambda cmd: subprocess.run(cmd, cwd=ROOT).returncode))(command)
    if code != 0:
        print(f"{PROG}: refusing the switch to require: readiness exited {code} (fewer devices ready than "
              "requireMinReadyPercent, or the logs could not be read); keep observe and onboard the rest", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
