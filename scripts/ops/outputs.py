"""Stack outputs: the JSON of `pulumi stack output --json` (build/plan/<stack>/outputs.json of
`make plan` has the same shape), or the same facts from flags.

Only the keys a verb needs are required, and a missing one is named with its path
(`stack outputs FILE: missing mtls.documentName`); unknown keys are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from components.json_documents import JsonDocumentError, load_json_document
from components.safe_files import TABLE_FILE_LIMIT, FileRefused, read_text

from .common import PROJECT, InputError

_STACK = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_INSTANCE = re.compile(r"^(i|mi)-[0-9a-f]{8,17}$")
_LOG_GROUP = re.compile(rf"^/{PROJECT}/(?P<stack>[A-Za-z0-9_.-]+)/")
_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:(?P<region>[a-z0-9-]+):")
SECRET_PLACEHOLDER = "[secret]"


def check_stack(name: str, source: str = "--stack") -> str:
    if not _STACK.match(name or ""):
        raise InputError(f"{source}: got {name!r}; expected a Pulumi stack name (letters, digits, _ . -)")
    return name


@dataclass(frozen=True)
class Beacon:
    name: str
    instance_id: str
    hostname: str = ""
    public_ip: str = ""


# Top-level outputs the verbs read, and their JSON types (components/stack.py exports them).
OUTPUT_SHAPES: dict[str, type | tuple[type, ...]] = {
    "beacons": list, "logGroups": dict, "mtls": dict, "crlEgress": dict, "egressAllowlist": (list, dict),
    "enforcement": str, "enforcementRecord": (str, dict), "firewallEndpoints": (list, dict), "requireMinReadyPercent": (int, float),
}


def _names(kind: type | tuple[type, ...]) -> str:
    words = {list: "a list", dict: "an object", str: "a string", int: "a number", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(words.get(k, k.__name__) for k in kinds))


def _short(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return _names(type(value))
    return json.dumps(value)[:60]


@dataclass
class StackOutputs:
    """What the verbs read from the outputs; `source` names the file (or 'flags')."""

    source: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> "StackOutputs":
        file = Path(path)
        try:
            text = read_text(file, TABLE_FILE_LIMIT, "utf-8-sig")  # a regular UTF-8 file of at most 64 MiB
        except OSError as exc:
            raise InputError(f"--stack-outputs {file}: unreadable ({exc.strerror or exc})") from None
        except FileRefused as exc:
            raise InputError(f"--stack-outputs {file}: {exc} (the output of `pulumi stack output --json`)") from None
        try:
            data = load_json_document(text)
        except JsonDocumentError as exc:
            raise InputError(f"--stack-outputs {file}: not JSON ({exc}); write it with `pulumi stack output --json > {file}`") from None
        if not isinstance(data, dict):
            raise InputError(f"--stack-outputs {file}: expected a JSON object (the output of `pulumi stack output --json`)")
        for key, kind in OUTPUT_SHAPES.items():  # what the verbs read is of its type, or the file is refused here
            value = data.get(key)
            if value is not None and not isinstance(value, kind):
                raise InputError(f"--stack-outputs {file}: {key} is {_short(value)}; expected {_names(kind)} (the output of `pulumi stack output --json`)")
        for number, item in enumerate(data.get("beacons") or []):
            if not isinstance(item, dict):
                raise InputError(f"--stack-outputs {file}: beacons[{number}] is {_short(item)}; expected an object")
        return cls(str(file), data)

    @classmethod
    def empty(cls) -> "StackOutputs":
        return cls("flags", {})

    @property
    def given(self) -> bool:
        return bool(self.data)

    def _missing(self, path: str, why: str) -> InputError:
        if not self.given:
            return InputError(f"{why}: give --stack-outputs FILE (from `pulumi stack output --json`) or the flag for it")
        return InputError(f"stack outputs {self.source}: missing {path} ({why}); regenerate the file with `pulumi stack output --json` after `pulumi up`")

    def get(self, path: str, why: str, kind: type | tuple[type, ...] = str) -> Any:
        """The value at a dotted path, checked for type; InputError naming the path otherwise."""
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node or node[part] is None:
                raise self._missing(path, why)
            node = node[part]
        if not isinstance(node, kind) or (isinstance(node, str) and not node.strip()):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise InputError(f"stack outputs {self.source}: {path} is {node!r}; expected a non-empty {expected}")
        if node == SECRET_PLACEHOLDER:
            raise InputError(f"stack outputs {self.source}: {path} is a secret placeholder; write the file with `pulumi stack output --json --show-secrets`")
        return node

    def optional(self, path: str) -> Any:
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def beacons(self, why: str) -> list[Beacon]:
        items = self.get("beacons", why, list)
        if not items:
            raise InputError(f"stack outputs {self.source}: beacons is empty ({why})")
        beacons = []
        for number, item in enumerate(items):
            if not isinstance(item, dict):
                raise InputError(f"stack outputs {self.source}: beacons[{number}] is not an object")
            instance_id = item.get("instanceId")
            if not isinstance(instance_id, str) or not instance_id:
                raise InputError(f"stack outputs {self.source}: missing beacons[{number}].instanceId ({why})")
            if not _INSTANCE.match(instance_id):
                raise InputError(f"stack outputs {self.source}: beacons[{number}].instanceId is {instance_id!r}; expected an EC2 instance id like i-0123456789abcdef0")
            given = item.get("name")
            name = given if isinstance(given, str) and given else f"beacon-{number + 1}"
            hostname = item.get("hostname") or item.get("publicDns") or ""
            beacons.append(Beacon(name, instance_id, str(hostname).lower(), str(item.get("publicIp") or "")))
        return beacons

    def hostnames(self) -> list[str]:
        """The beacons' agent-facing host names (hostname, else publicDns), when present."""
        found: list[str] = []
        for item in self.optional("beacons") or []:
            if isinstance(item, dict):
                host = item.get("hostname") or item.get("publicDns")
                if isinstance(host, str) and host and host != SECRET_PLACEHOLDER and host.lower() not in found:
                    found.append(host.lower())
        return found

    def region(self) -> tuple[str | None, str]:
        """The stack's region from an ARN in the outputs (or an availability zone), and where from."""
        for path in ("firewallArn",):
            value = self.optional(path)
            if isinstance(value, str):
                m = _ARN_REGION.match(value)
                if m and m["region"]:
                    return m["region"], f"{path} in {self.source}"
        for item in self.optional("beacons") or []:
            zone = item.get("availabilityZone") if isinstance(item, dict) else None
            if isinstance(zone, str) and re.match(r"^[a-z]{2}(-[a-z]+)+-[0-9]+[a-z]$", zone):
                return zone[:-1], f"beacons[].availabilityZone in {self.source}"
        return None, ""

    def stack_name(self) -> str | None:
        """The stack name from the log group names (/flexnet-beacon/<stack>/...)."""
        groups = self.optional("logGroups")
        if isinstance(groups, dict):
            for value in groups.values():
                m = _LOG_GROUP.match(value) if isinstance(value, str) else None
                if m:
                    return m["stack"]
        return None


def resolve_stack(given: str | None, outputs: StackOutputs, why: str) -> str:
    """--stack, else the outputs' stack; both given must agree."""
    found = outputs.stack_name()
    if given:
        check_stack(given)
        if found and found != given:
            raise InputError(f"--stack {given} but the stack outputs {outputs.source} are of stack {found!r}")
        return given
    if found:
        return found
    raise InputError(f"{why}: pass --stack NAME (or --stack-outputs FILE with logGroups)")


def beacons_from(outputs: StackOutputs, instance_ids: Sequence[str], why: str) -> list[Beacon]:
    """--instance-id flags win over the outputs' beacons."""
    if instance_ids:
        beacons = []
        for number, instance_id in enumerate(instance_ids, start=1):
            if not _INSTANCE.match(instance_id):
                raise InputError(f"--instance-id: got {instance_id!r}; expected an EC2 instance id like i-0123456789abcdef0")
            known = {b.instance_id: b for b in (outputs.beacons(why) if outputs.optional("beacons") else [])}
            beacons.append(known.get(instance_id, Beacon(f"instance-{number}", instance_id)))
        return beacons
    return outputs.beacons(why)
