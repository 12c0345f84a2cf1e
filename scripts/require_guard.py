"""The guarded switch from observe to require: refuse it while too few devices are ready.

    python -m scripts.require_guard --stack NAME --deployed-outputs FILE [--record] [--since 7d] [--dry-run]
    python -m scripts.require_guard --stack NAME --base-ref REF [--record] [--since 7d] [--dry-run]

Compares `enforcement` of stacks/Pulumi.<NAME>.yaml in the working tree with a reference.

--deployed-outputs FILE (what the workflows use): the reference is what is deployed, FILE being
`pulumi stack output --json --stack NAME` (outputs `enforcement` and `requireMinReadyPercent`).
  observe (deployed) -> require (file): guarded at the deployed requireMinReadyPercent, or the
    file's when that is higher (a change may raise the threshold, never lower it in the same step);
  require (deployed) -> anything, observe -> observe: nothing to guard;
  a stack never deployed (`{}`: created, never updated): whatever it starts in, nothing to guard;
  outputs without `enforcement` (deployed by an earlier version, mode unknown): guarded as from
    observe, at the file's requireMinReadyPercent.
--base-ref REF: the reference is the same file at git REF (the change's parent). Weaker: the push
  after a refused switch sees require -> require; kept for local use and the history.

A guarded switch runs `python -m scripts.ops readiness` against the stack's live IIS logs with
--min-ready at the threshold in force, and its exit code decides. Everything else the readiness
check needs comes from the stack file, offline: the region, the IIS log group
/flexnet-beacon/<stack>/iis and the issuing CAs' CNs (the Issuer rules the program derives from
clientCaCertificates). With --record, readiness keeps its verdict in the stack's SSM parameter
(/flexnet-beacon/<stack>/readiness-verdict), which `pulumi up` itself requires before it switches a
deployed observe stack to require (components/require_gate.py).

Exit: 0 nothing to guard, or enough devices ready; 1 refused (below the threshold, or readiness
failed); 2 bad input (unknown stack, a ref git cannot read, an unreadable or invalid outputs file,
outputs of another stack, an invalid stack file), one line naming what was given and expected.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence

from components.config import PROJECT, BeaconConfig, ConfigInvalid, stack_file_to_raw
from components.json_documents import JsonDocumentError, load_json_document
from components.stack_yaml import StackFileError, load_stack_text

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m scripts.require_guard"
ENFORCEMENT_KEY = f"{PROJECT}:enforcement"
MODES = ("observe", "require")
# /flexnet-beacon/<stack>/...: the names in the outputs that say whose outputs they are.
_OWN_NAME = re.compile(rf"^/{re.escape(PROJECT)}/(?P<stack>[^/]+)/")


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


@dataclass(frozen=True)
class Deployed:
    """What `pulumi stack output --json` says is deployed.

    never: the outputs are empty (a stack created and never updated). enforcement None with
    never False: a stack deployed by an earlier version, which had no `enforcement` output."""

    source: str
    never: bool
    enforcement: str | None
    min_ready: int | None


def enforcement_of(document: Mapping[str, Any] | None) -> str:
    """The stack file's enforcement (absent file or key: the default, require)."""
    config = (document or {}).get("config") or {}
    value = config.get(ENFORCEMENT_KEY, "require") if isinstance(config, Mapping) else "require"
    if value is None:  # `key:` with nothing after it: unset, as in Pulumi
        return "require"
    if isinstance(value, Mapping) and "secure" in value:  # encrypted: the guard could not tell a switch
        raise GuardError(f"{ENFORCEMENT_KEY}: got an encrypted value (secure:); expected plain text observe or require "
                         "(the switch must be reviewable: pulumi config set flexnet-beacon:enforcement require, without --secret)")
    if not isinstance(value, str) or value not in MODES:
        raise GuardError(f"{ENFORCEMENT_KEY}: got {value!r}; expected observe or require")
    return value


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
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", stack) or not path.is_file():
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


def _stacks_named(outputs: Mapping[str, Any]) -> dict[str, str]:
    """{stack: output that names it}: enforcementRecord and the log groups carry /flexnet-beacon/<stack>/."""
    candidates: list[tuple[str, Any]] = [("enforcementRecord", outputs.get("enforcementRecord"))]
    groups = outputs.get("logGroups")
    if isinstance(groups, Mapping):
        candidates += [(f"logGroups.{key}", value) for key, value in groups.items()]
    found: dict[str, str] = {}
    for where, value in candidates:
        match = _OWN_NAME.match(value) if isinstance(value, str) else None
        if match:
            found.setdefault(match["stack"], f"{where} {value}")
    return found


def parse_deployed(text: str, stack: str, source: str) -> Deployed:
    """The outputs' enforcement and threshold; GuardError (exit 2) for anything else than the
    JSON object `pulumi stack output --json --stack <stack>` prints."""
    expected = f"the JSON object of `pulumi stack output --json --stack {stack}`"
    if not text.strip():
        raise GuardError(f"--deployed-outputs: got {source!r}, an empty file; expected {expected} (`{{}}` for a stack never deployed)")
    try:
        outputs = load_json_document(text)
    except JsonDocumentError as exc:
        raise GuardError(f"--deployed-outputs: got {source!r}, not JSON ({exc}); expected {expected}") from None
    if not isinstance(outputs, dict):
        raise GuardError(f"--deployed-outputs: got {source!r}, a JSON {type(outputs).__name__}; expected {expected}")
    if not outputs:
        return Deployed(source, never=True, enforcement=None, min_ready=None)
    named = _stacks_named(outputs)
    if named and set(named) != {stack}:
        others = "; ".join(f"{where} is of stack {name!r}" for name, where in sorted(named.items()) if name != stack)
        raise GuardError(f"--deployed-outputs: got {source!r}, outputs of another stack ({others}); expected those of --stack {stack!r}")
    enforcement = outputs.get("enforcement")
    if enforcement is not None and enforcement not in MODES:
        raise GuardError(f"--deployed-outputs: got enforcement {enforcement!r} in {source!r}; expected 'observe' or 'require'")
    threshold = outputs.get("requireMinReadyPercent")
    if threshold is None and enforcement is not None:
        raise GuardError(f"--deployed-outputs: got no requireMinReadyPercent in {source!r} beside enforcement {enforcement!r}; "
                         "expected both (the outputs of one update)")
    min_ready: int | None = None
    if threshold is not None:
        if (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                or threshold != int(threshold) or not 0 <= threshold <= 100):
            raise GuardError(f"--deployed-outputs: got requireMinReadyPercent {threshold!r} in {source!r}; expected an integer from 0 to 100")
        min_ready = int(threshold)
    return Deployed(source, never=False, enforcement=enforcement, min_ready=min_ready)


def read_deployed(path: str, stack: str) -> Deployed:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise GuardError(f"--deployed-outputs: got {path!r}, which cannot be read ({reason}); expected a file written by "
                         f"`pulumi stack output --json --stack {stack} > FILE`") from None
    return parse_deployed(text, stack, path)


def validated(stack: str, head: Mapping[str, Any], root: Path = ROOT) -> tuple[BeaconConfig, list[str]]:
    """The stack file through the program's own validation: (config, the issuing CAs' CNs)."""
    from components.stack import prepare

    raw, region, _secret = stack_file_to_raw(head)
    try:
        prepared = prepare(raw, stack, region, base=root)
    except ConfigInvalid as invalid:
        raise GuardError(invalid.render().replace("\n", " ")) from None
    mappings = prepared.iis_state["authentication"]["clientCertificateMapping"]["manyToOneMappings"]
    issuers = sorted({m["rules"][0]["matchCriteria"] for m in mappings if m["permissionMode"] == "Allow"})
    return prepared.cfg, issuers


def readiness_command(stack: str, head: Mapping[str, Any], since: str, root: Path = ROOT, *,
                      min_ready: int | None = None, record: bool = False, outputs_file: str | None = None) -> list[str]:
    """`ops readiness` for the stack, every argument taken from its (validated) stack file;
    min_ready: the threshold in force (default: the file's requireMinReadyPercent)."""
    from components.iis.state import iis_log_group

    cfg, _issuers = validated(stack, head, root)  # validated; readiness reads the CAs itself (below)
    threshold = cfg.require_min_ready_percent if min_ready is None else min_ready
    command = [sys.executable, "-m", "scripts.ops", "readiness", "--stack", stack, "--region", cfg.region,
               "--log-group", iis_log_group(cfg), "--since", since, "--min-ready", str(threshold)]
    # No --issuer-cn: with --stack, readiness takes the issuing CAs AND the Allow/Deny mappings
    # from the stack file, so a device a rule would refuse under require is not counted ready.
    if outputs_file:  # the deployed beacons: a beacon that sent no log line makes the verdict inconclusive
        command += ["--stack-outputs", outputs_file]
    if record:
        command.append("--record")
    return command


def guard_deployed(stack: str, head: Mapping[str, Any], deployed: Deployed, root: Path = ROOT) -> tuple[list[str], int | None]:
    """(lines to print, the threshold in force when the change is a guarded switch, else None)."""
    after = enforcement_of(head)
    where = f"stacks/Pulumi.{stack}.yaml"
    if deployed.never:
        if after == "require":
            return [f"stack {stack} has never been deployed ({deployed.source} has no outputs): it starts in require, "
                    "so there is no switch to guard; allowed"], None
        return [f"stack {stack} has never been deployed ({deployed.source} has no outputs): it starts in {after}, nothing to guard"], None
    before = deployed.enforcement or "observe"
    said = f"{before} (deployed)" if deployed.enforcement else "unknown (deployed by an earlier version: no enforcement output)"
    if not (before == "observe" and after == "require"):
        return [f"enforcement {said} -> {after} ({where}): no observe-to-require switch, nothing to guard"], None
    cfg, _issuers = validated(stack, head, root)
    own = cfg.require_min_ready_percent
    if deployed.min_ready is None:  # unknown: the strictest, as pulumi up's own gate (components/require_gate.py)
        threshold, why = 100, "100: the deployed requireMinReadyPercent is unknown, so the strictest"
    elif own > deployed.min_ready:
        threshold, why = own, f"the stack file's requireMinReadyPercent {own}, raised from the deployed {deployed.min_ready}"
    else:
        threshold = deployed.min_ready
        why = f"the deployed requireMinReadyPercent {deployed.min_ready}"
        if own < deployed.min_ready:
            why += f"; the stack file's {own} cannot lower it in the same step as the switch"
    lines = [f"enforcement {said} -> {after} ({where}): devices must be ready before the switch, at --min-ready {threshold} ({why})"]
    if not deployed.enforcement:
        lines.append(f"{deployed.source} has no enforcement output: a stack deployed by an earlier version may be in observe, "
                     "so the change is guarded as a switch from observe")
    return lines, threshold


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the usage block
        self.exit(2, f"{PROG}: error: {message}\n")


def main(argv: Sequence[str] | None = None, run: Callable[[list[str]], int] | None = None, root: Path = ROOT) -> int:
    parser = _Parser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack name: stacks/Pulumi.<stack>.yaml")
    reference = parser.add_mutually_exclusive_group(required=True)
    reference.add_argument("--deployed-outputs", metavar="FILE",
                           help="`pulumi stack output --json --stack NAME` of the deployed stack: the reference (`{}`: never deployed)")
    reference.add_argument("--base-ref", help="git ref of the stack file before the change: the reference (weaker: see the docstring)")
    parser.add_argument("--since", default="7d", help="how far back readiness reads the IIS logs (default 7d)")
    parser.add_argument("--record", action="store_true",
                        help="readiness keeps its verdict in /flexnet-beacon/<stack>/readiness-verdict, which pulumi up requires "
                             "for the switch (needs ssm:PutParameter)")
    parser.add_argument("--dry-run", action="store_true", help="say what would run; run nothing")
    args = parser.parse_args(argv)
    try:
        head = read_head(args.stack, root)
        if args.deployed_outputs is not None:
            lines, threshold = guard_deployed(args.stack, head, read_deployed(args.deployed_outputs, args.stack), root)
            print("\n".join(lines), flush=True)
            if threshold is None:
                return 0
        else:
            decision = decide(read_base(args.stack, args.base_ref, root), head)
            print(decision.line(), flush=True)
            if not decision.switching:
                return 0
            threshold = None  # the file's
        command = readiness_command(args.stack, head, args.since, root, min_ready=threshold, record=args.record,
                                    outputs_file=args.deployed_outputs)
    except GuardError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print("running: python " + shlex.join(command[1:]), flush=True)  # the command as a reader would type it
    if args.dry_run:
        return 0
    code = (run or (lambda cmd: subprocess.run(cmd, cwd=root).returncode))(command)
    if code != 0:
        print(f"{PROG}: refusing the switch to require: readiness exited {code} (fewer devices ready than the threshold "
              "in force, or the logs could not be read); keep observe and onboard the rest", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
