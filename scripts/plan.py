"""Offline plan: render a stack under Pulumi mocks, the counterpart of `pulumi preview`.

    python -m scripts.plan --stack dev [--out build/plan]

Reads stacks/Pulumi.<stack>.yaml, validates it (exit 2 with every problem, nothing written),
runs __main__.py under mocks and writes build/plan/<stack>/: resources.json, outputs.json,
firewall-rules.suricata, diagram.md. Identical inputs give byte-identical files.
"""

from __future__ import annotations

import argparse
import os
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from components import config as beacon_config
from components.network.flexera import describe as describe_flexera
from components.stack_yaml import read_stack_document
from scripts.cli_args import undecodable_argument

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"


class PlanError(Exception):
    """Bad input: printed as one message, exit code 2."""


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _make_dirs(path: Path) -> None:
    """mkdir -p with 0755 (or tighter under a stricter umask), whatever the umask: under umask 000
    plain mkdir would make the plan's directories world-writable."""
    mode = 0o755 & ~_current_umask()
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=mode, exist_ok=True)
        os.chmod(directory, mode)  # mkdir's mode is filtered by the umask only, never raised to it


def _write_public(path: Path, data: bytes) -> None:
    """The file with 0644 (or tighter under a stricter umask), whatever the umask; an existing file is rewritten in place."""
    mode = 0o644 & ~_current_umask()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, mode)  # an existing file keeps its mode through O_CREAT: set it
        out.write(data)


def read_stack_file(stack: str, stacks_dir: Path = STACKS) -> dict[str, Any]:
    if not stack or "/" in stack or "\\" in stack or stack.startswith("."):
        raise PlanError(f"--stack: got {stack!r}; expected a stack name like dev or prod")
    path = stacks_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))
        raise PlanError(f"--stack: got {stack!r}; expected one of {', '.join(known) or '(no stacks)'} ({path} does not exist)")
    try:
        # A regular UTF-8 file of at most 4 MiB, without YAML anchors or aliases (components/stack_yaml.py).
        document = read_stack_document(path) or {}
    except OSError as exc:
        raise PlanError(f"{path}: unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:  # not YAML, aliases, not UTF-8, not a regular file, too large
        raise PlanError(f"{path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise PlanError(f"{path}: expected a mapping with a 'config:' mapping")
    return document


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def firewall_rules_text(resources: list[Any]) -> str:
    """The rule groups exactly as declared, in the policy's evaluation order (its priorities)."""
    by_arn = {r.arn: r for r in resources if r.type == "aws:networkfirewall/ruleGroup:RuleGroup"}
    policy = next(r for r in resources if r.type == "aws:networkfirewall/firewallPolicy:FirewallPolicy")
    text = ""
    for ref in sorted(policy.inputs["firewallPolicy"]["statefulRuleGroupReferences"], key=lambda ref: ref["priority"]):
        group = by_arn[ref["resourceArn"]]
        rules = group.inputs["ruleGroup"]["rulesSource"]["rulesString"]
        text += f"# rule group {group.name} (priority {ref['priority']}, capacity {group.inputs['capacity']}): {group.inputs.get('description', '')}\n{rules}\n"
    return text


def plan(stack: str, out_root: Path, stacks_dir: Path = STACKS) -> dict[str, Any]:
    # Imported here so `--help` and bad-input errors stay fast (pulumi_aws takes about a second).
    import pulumi

    from components.iis.appcmd import render as render_appcmd
    from components.iis.document import read_user_data
    from components.stack import prepare
    from scripts.cost import estimate as estimate_cost
    from scripts.cost import load_prices
    from scripts.diagram import render
    from scripts.offline import run_program

    document = read_stack_file(stack, stacks_dir)
    check_out_dir(out_root, stack)  # before the program runs: a bad --out fails at once
    raw, region, secret_keys = beacon_config.stack_file_to_raw(document)
    prepared = prepare(raw, stack, region)  # raises ConfigInvalid before anything runs
    cfg = prepared.cfg

    try:
        run = run_program(stack, raw, region or "", secret_keys)
    except (pulumi.RunError, ValueError) as stopped:  # the program's own clean stop (e.g. a zone that does not exist)
        raise PlanError(str(stopped)) from None
    errors = [msg for level, msg in run.log if level == "error"]
    if errors:
        raise PlanError("the program reported errors:\n  " + "\n  ".join(errors))

    resources = [
        {
            "type": r.type,
            "name": r.name,
            "parent": r.parent.split("::")[-1] if r.parent else "",
            "custom": r.custom,
            "inputs": r.inputs,
            **({"ignoreChanges": r.ignore_changes} if r.ignore_changes else {}),
            **({"retainOnDelete": True} if r.retain_on_delete else {}),
        }
        for r in run.resources
    ]
    rules_text = firewall_rules_text(run.resources)

    cost = estimate_cost(resources, cfg.region, load_prices())

    out = out_root / stack
    files = {
        "resources.json": dump_json(resources),
        "outputs.json": dump_json(run.outputs),
        "firewall-rules.suricata": rules_text,
        "diagram.md": render(stack, resources, run.outputs),
        "iis-state.json": dump_json(prepared.iis_state),
        "ssm-document.json": ssm_document_text(run.resources),
        "user-data.ps1": read_user_data(),
        "appcmd.txt": render_appcmd(prepared.iis_state),
        "crl-egress.json": dump_json(prepared.crl.as_output()),
        "dns-firewall.json": dump_json(dns_firewall_view(run.resources)),
        "cost.json": dump_json(cost),
    }
    try:
        _make_dirs(out)
        for name, text in files.items():
            _write_public(out / name, text.encode("utf-8"))
    except OSError as exc:
        raise PlanError(f"--out {out_root}: cannot write the plan into {out} ({exc.strerror or exc}); expected a writable directory") from None

    warnings = list(prepared.warnings) + [msg for level, msg in run.log if level == "warning" and msg not in prepared.warnings]
    warnings += [f"data source {token} has no mock answer; its result is empty in this plan" for token in run.unknown_calls]
    return {
        "stack": stack,
        "out": out,
        "files": sorted(files),
        "counts": Counter(r["type"] for r in resources if r["custom"]),
        "components": Counter(r["type"] for r in resources if not r["custom"]),
        "warnings": warnings,
        "cost": cost,
        "flexera": describe_flexera(prepared.cfg.flexera_region, prepared.allowlist),
    }


def check_out_dir(out_root: Path, stack: str) -> None:
    """--out and --out/<stack> must be directories (or not exist yet), never a file: the plan
    writes eleven files there and would otherwise fail half-way (e.g. --out /etc/passwd)."""
    for path in (out_root, out_root / stack):
        if path.exists() and not path.is_dir():
            raise PlanError(f"--out: got {str(out_root)!r}; expected a directory, but {path} is a file")
    for parent in out_root.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PlanError(f"--out: got {str(out_root)!r}; expected a directory, but {parent} is a file")
            break


def ssm_document_text(recorded: list[Any]) -> str:
    """The converge Command document's content as the engine receives it (the bootstrap and the
    parameter defaults naming the deployed script and state objects)."""
    documents = [r.inputs["content"] for r in recorded if r.type == "aws:ssm/document:Document"]
    return (documents[0] if documents else "") + "\n"


def dns_firewall_view(recorded: list[Any]) -> dict[str, Any]:
    """The DNS firewall as declared: its rules in priority order, each with its domain list
    (followed through the rule's dependency on the list), and the fail-open mode."""
    lists = {r.urn: r for r in recorded if r.type == "aws:route53/resolverFirewallDomainList:ResolverFirewallDomainList"}
    rules = sorted((r for r in recorded if r.type == "aws:route53/resolverFirewallRule:ResolverFirewallRule"), key=lambda r: r.inputs["priority"])
    view = []
    for rule in rules:
        domain_list = next((lists[urn] for urn in rule.property_dependencies.get("firewallDomainListId", []) if urn in lists), None)
        entry = {"priority": rule.inputs["priority"], "name": rule.inputs.get("name"), "action": rule.inputs["action"]}
        if "blockResponse" in rule.inputs:
            entry["blockResponse"] = rule.inputs["blockResponse"]
        entry["domainList"] = domain_list.inputs.get("name") if domain_list else None
        entry["domains"] = domain_list.inputs.get("domains", []) if domain_list else []
        view.append(entry)
    configs = [r.inputs for r in recorded if r.type == "aws:route53/resolverFirewallConfig:ResolverFirewallConfig"]
    return {"rules": view, "firewallFailOpen": configs[0].get("firewallFailOpen") if configs else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.plan", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--out", default=str(ROOT / "build" / "plan"), help="output root (default build/plan)")
    given = sys.argv[1:] if argv is None else argv
    problem = undecodable_argument(given)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    args = parser.parse_args(given)
    try:
        summary = plan(args.stack, Path(args.out), STACKS)
    except beacon_config.ConfigInvalid as invalid:
        print(f"stacks/Pulumi.{args.stack}.yaml: {invalid.render()}", file=sys.stderr)
        return 2
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # anything not foreseen above: still one line, never a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    total = sum(summary["counts"].values())
    print(f"plan for stack {summary['stack']}: {total} resources in {sum(summary['components'].values())} components -> {summary['out']}")
    for typ, count in sorted(summary["counts"].items()):
        print(f"  {count:3d}  {typ}")
    from scripts.cost import render as render_cost

    for line in render_cost(summary["cost"]):
        print(line)
    print(summary["flexera"])
    for warning in summary["warnings"]:
        print(f"warning: {warning}")
    print("wrote " + ", ".join(summary["files"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
