"""Which beacons, and which trust, a device bundle is for (`bundle`, `verify-bundle`).

- The stack: stacks/Pulumi.<stack>.yaml (`--stack NAME`, or the file with `--stack-config`),
  read through components.config exactly as `pki check --stack-config` reads it
  (check.read_stack_config: clientCaCertificates, extraMappingRules, denyMappingRules), plus its
  `beaconHostnames`.
- A deployed stack's outputs (`--stack-outputs FILE`, `pulumi stack output --json`):
  `beacons[].hostname` (else `publicDns`), cross-checked with `beacons[].agentUrls`.
- `--beacon-host HOST` (repeatable): explicit host names; with a stack they must be its beacons.

Host names are checked with the deployment's own rule (components.config.hostname_problem) and
must be plain ASCII: they are the only configuration that reaches the agent files
(mgsft_rollout_response, mgssetup.ini), so nothing else can be spliced into them.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from components.json_documents import load_json_document

from .check import StackTrust, read_stack_config
from .store import PkiError

DOWNLOAD_PATH = "/ManageSoftDL/"  # the beacon's download application (components/stack.py AGENT_PATHS)
UPLOAD_PATH = "/ManageSoftRL/"  # the beacon's upload (reporting) application
STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_ASCII_HOST = re.compile(r"^[a-z0-9.-]{1,253}$")
CODE_ROOT = Path(__file__).resolve().parent.parent.parent  # the repository this code lives in


@dataclass
class Target:
    """The beacons a bundle names and what the stack trusts."""

    hosts: list[str]
    stack: str | None = None  # the stack name, when a stack file was given
    stack_file: Path | None = None
    trust: StackTrust | None = None
    sources: list[str] = field(default_factory=list)  # where the host names come from


def download_url(host: str) -> str:
    return f"https://{host}{DOWNLOAD_PATH}"


def upload_url(host: str) -> str:
    return f"https://{host}{UPLOAD_PATH}"


def check_host(text: object, what: str) -> str:
    """A beacon host name: a DNS name (the deployment's rule), lower-case ASCII, no IP address."""
    from components.config import hostname_problem

    if not isinstance(text, str):
        raise PkiError(f"{what}: got {text!r}; expected a DNS host name like beacon1.example.com")
    problem = hostname_problem(text)
    host = text.lower()
    if problem is None and not _ASCII_HOST.match(host):
        problem = "a DNS host name in ASCII (write an internationalised name in its xn-- form)"
    if problem:
        raise PkiError(f"{what}: got {text!r}; expected {problem}")
    return host


def project_root() -> Path:
    """The project whose stacks/ `--stack NAME` reads: the nearest directory up from the current
    one with a Pulumi.yaml, else the repository of this code."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    return CODE_ROOT


def stack_file(name: str) -> Path:
    if not STACK_NAME.match(name or "") or ".." in name:
        raise PkiError(f"--stack: got {name!r}; expected a Pulumi stack name (letters, digits, _ . -)")
    path = project_root() / "stacks" / f"Pulumi.{name}.yaml"
    if not path.is_file():
        raise PkiError(f"--stack {name}: no {path} (give the stack file with --stack-config FILE)")
    return path


def _stack_name(path: Path) -> str:
    name = path.name
    if name.startswith("Pulumi.") and name.endswith(".yaml") and STACK_NAME.match(name[7:-5]):
        return name[7:-5]
    return path.stem


def _config_hosts(path: Path) -> list[str]:
    """beaconHostnames of a stack file (already validated by read_stack_config)."""
    from components.config import stack_file_to_raw
    from components.stack_yaml import read_stack_document

    document = read_stack_document(path) or {}  # the plan's loader: no YAML anchors or aliases
    raw, _, _ = stack_file_to_raw(document)
    text = raw.get("beaconHostnames")
    values = json.loads(text) if text else []
    return _unique([check_host(v, f"{path.name}: beaconHostnames") for v in values])


def _unique(hosts: list[str]) -> list[str]:
    seen: list[str] = []
    for host in hosts:
        if host not in seen:
            seen.append(host)
    return seen


def outputs_hosts(path: Path) -> list[str]:
    """beacons[].hostname (else publicDns) of `pulumi stack output --json`; agentUrls must agree."""
    where = f"--stack-outputs {path}"
    try:
        data = load_json_document(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise PkiError(f"{where}: unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:  # JsonDocumentError too: invalid, duplicate keys, too deep
        raise PkiError(f"{where}: not JSON ({exc}); write it with `pulumi stack output --json > FILE`") from None
    beacons = data.get("beacons") if isinstance(data, dict) else None
    if not isinstance(beacons, list) or not beacons:
        raise PkiError(f"{where}: no beacons list (expected the outputs of a deployed flexnet-beacon stack)")
    hosts: list[str] = []
    for number, item in enumerate(beacons):
        if not isinstance(item, dict):
            raise PkiError(f"{where}: beacons[{number}] is not an object")
        raw = item.get("hostname") or item.get("publicDns")
        if raw == "[secret]":
            raise PkiError(f"{where}: beacons[{number}].hostname is a secret placeholder; write the file with --show-secrets")
        host = check_host(raw, f"{where}: beacons[{number}].hostname")
        urls = item.get("agentUrls")
        if isinstance(urls, dict):
            expected = {"download": download_url(host), "upload": upload_url(host)}
            for kind, url in urls.items():
                if kind in expected and url != expected[kind]:
                    raise PkiError(f"{where}: beacons[{number}].agentUrls.{kind} is {url!r}; expected {expected[kind]!r} for host {host}")
        hosts.append(host)
    return _unique(hosts)


def resolve(args: argparse.Namespace, need_stack: bool = False) -> Target:
    """The beacons (and the stack's trust) from --stack/--stack-config, --stack-outputs and
    --beacon-host. Every bundle must name at least one beacon."""
    if getattr(args, "stack", None) and getattr(args, "stack_config", None):
        raise PkiError("give --stack NAME or --stack-config FILE, not both")
    path = Path(args.stack_config) if getattr(args, "stack_config", None) else (stack_file(args.stack) if getattr(args, "stack", None) else None)
    if need_stack and path is None:
        raise PkiError("which stack? give --stack NAME (stacks/Pulumi.NAME.yaml) or --stack-config FILE")
    target = Target([])
    known: list[str] = []
    if path is not None:
        target.trust = read_stack_config(path)
        target.stack_file, target.stack = path, _stack_name(path)
        known = _config_hosts(path)
        if known:
            target.sources.append(f"{path.name} beaconHostnames")
    if getattr(args, "stack_outputs", None):
        from_outputs = outputs_hosts(Path(args.stack_outputs))
        if known and set(from_outputs) != set(known):
            raise PkiError(f"--stack-outputs {args.stack_outputs} names the beacons {', '.join(from_outputs)}; the stack file names {', '.join(known)} (outputs of another stack, or stale: run `pulumi stack output --json` again)")
        known = from_outputs
        target.sources.append(f"stack outputs {args.stack_outputs}")
    explicit = _unique([check_host(h, "--beacon-host") for h in getattr(args, "beacon_host", None) or []])
    if explicit:
        stray = [h for h in explicit if known and h not in known]
        if stray:
            raise PkiError(f"--beacon-host {stray[0]} is not a beacon of the stack (its beacons: {', '.join(known)})")
        known = explicit
        target.sources.append("--beacon-host")
    if not known:
        if path is not None:
            raise PkiError(f"no beacon host names: {path.name} has no beaconHostnames (its beacons use their EC2 public DNS names); give --stack-outputs FILE of the deployed stack or --beacon-host HOST")
        raise PkiError("which beacons? give --stack NAME (its beaconHostnames), --stack-outputs FILE or --beacon-host HOST")
    target.hosts = known
    return target


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", metavar="NAME", help="the stack: stacks/Pulumi.NAME.yaml of the project (beaconHostnames, clientCaCertificates, mapping rules)")
    parser.add_argument("--stack-config", metavar="FILE", help="the stack file itself (instead of --stack)")
    parser.add_argument("--stack-outputs", metavar="FILE", help="outputs of the deployed stack (`pulumi stack output --json`): beacons[].hostname")
    parser.add_argument("--beacon-host", action="append", default=[], metavar="HOST", help="beacon host name (repeatable; with a stack: one of its beacons)")
