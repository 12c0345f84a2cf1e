"""Run the Pulumi program under mocks: no Pulumi CLI, no provider plugin, no cloud.

The mocks give every resource plausible, deterministic outputs (id, arn, name, and the few
attributes the program reads back, such as the firewall's per-AZ endpoints), because an input
that depends on an output the mocks leave unknown silently disappears from what is recorded.
Data sources (AZs, the Windows AMI parameter, the caller identity) get fixed answers.
"""

from __future__ import annotations

import hashlib
import os
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func, wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from components.config import PROJECT

PROJECT_DIR_ENV = "FLEXNET_BEACON_PROJECT_DIR"  # = components.stack.PROJECT_DIR_ENV (not imported: pulumi_aws is slow)

ROOT = Path(__file__).resolve().parent.parent
MOCK_ACCOUNT = "123456789012"
MOCK_AMI = "ami-0a1b2c3d4e5f60718"
SECRET_PLACEHOLDER = "[secret]"


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def _region_code(region: str) -> str:
    """us-east-1 -> use1: the prefix of the region's zone ids."""
    parts = region.split("-")
    return parts[0] + "".join(p[0] for p in parts[1:-1]) + parts[-1]


# Resource id prefixes and ARN shapes for the types the program uses.
_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg-",
    "aws:ec2/networkAcl:NetworkAcl": "acl-",
    "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl": "acl-",
    "aws:ec2/instance:Instance": "i-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/flowLog:FlowLog": "fl-",
}


@dataclass
class RecordedResource:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    ignore_changes: list[str] = field(default_factory=list)
    retain_on_delete: bool = False
    arn: str = ""  # the mock's output, to follow references between resources
    # Input property -> URNs of the resources its value came from: what orders the engine's steps.
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)  # every URN it waits for (depends_on included)


class PlanMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str, account: str = MOCK_ACCOUNT, parameters: Mapping[str, str] | None = None):
        self.region = region
        self.account = account
        # The stack's own SSM parameters as deployed (name -> value), answered by
        # GetParametersByPath; a name not listed is simply absent from the answer, as in SSM.
        self.parameters = dict(parameters or {})
        self.subnet_zones: dict[str, str] = {}
        self.unknown_calls: list[str] = []
        self.impaired_zones: set[str] = set()  # zones whose state is not "available" (tests set it)
        self._eip_count = 0

    # -- resources ---------------------------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        if not args.custom:
            return f"{name}_id", inputs
        state: dict[str, Any] = dict(inputs)
        state.setdefault("name", inputs.get("name") or f"{name}-{_digest(name, length=7)}")
        # IAM roles and profiles are identified by name; everything else by a typed id.
        rid = state["name"] if typ.startswith("aws:iam/") else _ID_PREFIX.get(typ, "") + _digest(typ, name)
        if typ == "aws:s3/bucket:Bucket" and inputs.get("bucket"):
            rid = state["bucket"] = inputs["bucket"]  # a bucket's id is its name
        elif typ == "aws:s3/bucket:Bucket":  # named by the provider from bucketPrefix (or the resource name)
            rid = state["bucket"] = (inputs.get("bucketPrefix") or f"{name}-") + _digest(name, "bucket", length=12)
        service = typ.split(":")[1].split("/")[0]
        state["arn"] = f"arn:aws:{service}:{self.region}:{self.account}:{typ.split(':')[-1].lower()}/{state['name']}"

        if typ == "aws:ec2/vpc:Vpc":
            state.update(
                defaultNetworkAclId="acl-" + _digest(name, "acl"),
                defaultSecurityGroupId="sg-" + _digest(name, "sg"),
                mainRouteTableId="rtb-" + _digest(name, "main"),
            )
        elif typ == "aws:ec2/subnet:Subnet":
            self.subnet_zones[rid] = inputs.get("availabilityZone", "")
        elif typ == "aws:networkfirewall/firewall:Firewall":
            sync_states = []
            for mapping in inputs.get("subnetMappings") or []:
                subnet_id = mapping.get("subnetId", "")
                zone = self.subnet_zones.get(subnet_id, "")
                sync_states.append(
                    {
                        "availabilityZone": zone,
                        "attachments": [{"endpointId": "vpce-" + _digest(name, zone), "subnetId": subnet_id}],
                    }
                )
            state["firewallStatuses"] = [{"syncStates": sync_states}]
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            state["arn"] = f"arn:aws:logs:{self.region}:{self.account}:log-group:{state['name']}"
        elif typ == "aws:ec2/eip:Eip":
            self._eip_count += 1
            # Deterministic TEST-NET-2 addresses derived from the name, never real ones.
            octet = int(_digest(name, length=4), 16) % 250 + 1
            state["publicIp"] = f"198.51.100.{octet}"
            state["publicDns"] = f"ec2-198-51-100-{octet}.{self.region}.compute.amazonaws.com"
        elif typ == "aws:ssm/document:Document":
            state.update(latestVersion="1", defaultVersion="1", documentVersion="1")
        elif typ == "aws:ssm/association:Association":
            state["associationId"] = _digest(name, length=8) + "-" + _digest(name, "assoc", length=4)
        elif typ == "aws:ec2/instance:Instance":
            state.setdefault("privateIp", "")
        return rid, state

    # -- data sources -------------------------------------------------------------------------
    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return self._answer(args), []

    def _answer(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        token = args.token
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = [(f"{self.region}{suffix}", f"{_region_code(self.region)}-az{i + 1}") for i, suffix in enumerate("abc")]
            if args.args.get("state"):  # as EC2 does: a state filter drops zones in another state
                zones = [z for z in zones if (z[0] in self.impaired_zones) == (args.args["state"] == "impaired")]
            return {"names": [z[0] for z in zones], "zoneIds": [z[1] for z in zones], "id": self.region}
        if token == "aws:ssm/getParametersByPath:getParametersByPath":
            path = str(args.args.get("path", ""))
            # Not recursive: only the parameters directly under the path, as SSM answers.
            names = sorted(n for n in self.parameters if n.startswith(path) and "/" not in n[len(path):])
            return {"path": path, "names": names, "values": [self.parameters[n] for n in names], "types": ["String"] * len(names),
                    "arns": [f"arn:aws:ssm:{self.region}:{self.account}:parameter{n}" for n in names], "id": path,
                    "recursive": bool(args.args.get("recursive")), "withDecryption": bool(args.args.get("withDecryption"))}
        if token == "aws:ssm/getParameter:getParameter":
            return {
                "name": args.args.get("name"),
                "value": MOCK_AMI,
                "insecureValue": MOCK_AMI,
                "type": "String",
                "arn": f"arn:aws:ssm:{self.region}::parameter{args.args.get('name')}",
                "id": args.args.get("name"),
                "version": 1,
                "withDecryption": True,
            }
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": self.account,
                "arn": f"arn:aws:iam::{self.account}:user/plan",
                "userId": "AIDAPLAN",
                "id": self.account,
            }
        self.unknown_calls.append(token)
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps what the engine would receive: type, name, parent and inputs of every resource."""

    def __init__(self, mocks: PlanMocks):
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object, keep_unknowns=True)
            self.recorded.append(
                RecordedResource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs=_scrub(inputs),
                    ignore_changes=sorted(request.ignoreChanges),
                    retain_on_delete=bool(request.retainOnDelete),
                    arn=str(self.resources[response.urn].state.get("arn", "")) if response.urn in self.resources else "",
                    property_dependencies={k: sorted(v.urns) for k, v in request.propertyDependencies.items()},
                    dependencies=sorted(request.dependencies),
                )
            )
        return response


def _scrub(value: Any) -> Any:
    """Plain JSON data; secrets never leave as plain text."""
    if isinstance(value, dict):
        if value.get(pulumi.runtime.rpc._special_sig_key) == pulumi.runtime.rpc._special_secret_sig:
            return SECRET_PLACEHOLDER
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    if value is pulumi.runtime.rpc.UNKNOWN or isinstance(value, pulumi.output.Unknown):
        return "[unknown]"
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire carries every number as a double
    return value


@dataclass
class ProgramRun:
    resources: list[RecordedResource]
    outputs: dict[str, Any]
    unknown_calls: list[str] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)


class _LogCapture:
    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def debug(self, msg: str, *a: Any) -> None:
        pass

    def info(self, msg: str, *a: Any) -> None:
        self.records.append(("info", msg))

    def warning(self, msg: str, *a: Any) -> None:
        self.records.append(("warning", msg))

    def error(self, msg: str, *a: Any) -> None:
        self.records.append(("error", msg))


def run_program(
    stack: str,
    config: Mapping[str, str],
    region: str,
    secret_keys: list[str] | None = None,
    base: Path | None = None,
    preview: bool = True,
    account: str = MOCK_ACCOUNT,
    parameters: Mapping[str, str] | None = None,
) -> ProgramRun:
    """Execute __main__.py under mocks with `config` (project keys, Pulumi string values).

    base: the project directory the config's certificate files are read from (default the
    repository), passed to the program as FLEXNET_BEACON_PROJECT_DIR (components.stack).
    preview: run as `pulumi preview` (the offline plan) or, False, as `pulumi up`.
    account: the account aws.get_caller_identity answers with.
    parameters: the stack's SSM parameters as deployed (others are not found)."""
    mocks = PlanMocks(region, account, parameters)
    monitor = RecordingMonitor(mocks)
    logger = _LogCapture()
    all_config = {f"{PROJECT}:{k}": v for k, v in config.items()}
    all_config["aws:region"] = region
    pulumi_settings.reset_options()
    set_all_config(all_config, secret_keys or [])
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, logger=logger, monitor=monitor)  # type: ignore[arg-type]
    root = pulumi_settings.get_root_resource()
    # Don't let the developer's environment leak into the run.
    saved_env = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PULUMI_CONFIG")}
    saved_base = os.environ.get(PROJECT_DIR_ENV)
    if base is not None:
        os.environ[PROJECT_DIR_ENV] = str(base)

    outputs_holder: dict[str, Any] = {}

    async def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        await wait_for_rpcs()
        stack_outputs = dict(getattr(root, "outputs", {}) or {})
        resolved = await pulumi.Output.from_input(stack_outputs).future(with_unknowns=True)
        outputs_holder.update(_scrub(resolved or {}))

    sys.path.insert(0, str(ROOT))
    try:
        _sync_await(run_pulumi_func(program))
    finally:
        sys.path.remove(str(ROOT))
        if saved_base is None:
            os.environ.pop(PROJECT_DIR_ENV, None)
        else:
            os.environ[PROJECT_DIR_ENV] = saved_base
        os.environ.update(saved_env)
    return ProgramRun(
        resources=sorted(monitor.recorded, key=lambda r: r.urn),
        outputs=outputs_holder,
        unknown_calls=sorted(set(mocks.unknown_calls)),
        log=logger.records,
    )
