"""Guardrails for flexnet-beacon stacks, as pure functions over plain data.

Every check here takes either one resource as ``(resource_type, props)`` (props: the inputs the
engine sends to a resource policy, as plain dicts/lists/scalars) or the whole stack as a list of
``StackResource`` and returns what is wrong, as messages. Nothing here imports Pulumi:
``policy/__main__.py`` wires these functions into a CrossGuard ``PolicyPack`` and
``tests/test_policy.py`` calls them with the program's own mocked resources.

Unknown values: during ``pulumi preview`` a property computed from another resource's output is
not known yet. The wiring turns such values into ``UNKNOWN``; a check that needs a value it
cannot see passes it (it cannot decide), and the same check runs again at ``pulumi up``, where
every input of a resource is known before the resource is created or updated. A value whose mere
presence is the problem (a key pair name) is reported even when unknown.

Messages never quote secret material: a finding names the property, the kind and the line.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from policy import secret_patterns


class _Unknown:
    """A value that is not known during preview (see the module docstring)."""

    _instance: "_Unknown | None" = None

    def __new__(cls) -> "_Unknown":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN: Any = _Unknown()


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


Props = Mapping[str, Any]

# Resource types (Pulumi type tokens of pulumi-aws 7).
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EBS_VOLUME = "aws:ebs/volume:Volume"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
FIREWALL_POLICY = "aws:networkfirewall/firewallPolicy:FirewallPolicy"
FIREWALL = "aws:networkfirewall/firewall:Firewall"
FIREWALL_LOGGING = "aws:networkfirewall/loggingConfiguration:LoggingConfiguration"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
SSM_DOCUMENT = "aws:ssm/document:Document"
BUCKET_OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"  # the converge script and desired state

PROD_PREFIX = "prod"
DROP_DEFAULTS = ("aws:drop_established", "aws:drop_strict", "aws:drop_established_app_layer", "aws:drop_established_app_layer_to_server")
REQUIRED_FIREWALL_LOG_TYPES = ("ALERT", "FLOW")


def _get(mapping: Any, *path: str | int) -> Any:
    """mapping[path0][path1]... or None where a level is missing (UNKNOWN stays UNKNOWN)."""
    value = mapping
    for key in path:
        if is_unknown(value):
            return UNKNOWN
        if isinstance(key, int):
            if not isinstance(value, (list, tuple)) or key >= len(value):
                return None
            value = value[key]
        else:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
    return value


def _items(value: Any) -> list[Any]:
    """A list property as a list: missing, None or UNKNOWN give []."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return []


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# --- 1. IMDSv2 ---------------------------------------------------------------------------------

def check_imdsv2(resource_type: str, props: Props) -> list[str]:
    """Instances (and launch templates) must require IMDSv2 session tokens."""
    if resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return []
    tokens = _get(props, "metadataOptions", "httpTokens")
    if is_unknown(tokens):
        return []
    if tokens != "required":
        return [f"metadataOptions.httpTokens is {tokens!r}; expected 'required' (IMDSv2 only, so a request "
                "forwarded by a compromised web app cannot read the instance role's credentials)"]
    return []


# --- 2. EBS encryption -------------------------------------------------------------------------

def check_ebs_encrypted(resource_type: str, props: Props) -> list[str]:
    """Every EBS volume is encrypted: root and extra volumes of instances, standalone volumes,
    launch template block device mappings."""
    problems: list[str] = []
    if resource_type == EBS_VOLUME:
        encrypted = props.get("encrypted")
        if not is_unknown(encrypted) and not _is_true(encrypted):
            problems.append(f"encrypted is {encrypted!r}; expected true")
    elif resource_type == INSTANCE:
        root = props.get("rootBlockDevice")
        if root is None:
            problems.append("rootBlockDevice is not set, so root volume encryption depends on the account "
                            "default; set rootBlockDevice.encrypted: true")
        elif not is_unknown(root):
            encrypted = _get(root, "encrypted")
            if not is_unknown(encrypted) and not _is_true(encrypted):
                problems.append(f"rootBlockDevice.encrypted is {encrypted!r}; expected true")
        for index, device in enumerate(_items(props.get("ebsBlockDevices"))):
            encrypted = _get(device, "encrypted")
            if not is_unknown(encrypted) and not _is_true(encrypted):
                name = _get(device, "deviceName")
                label = f" ({name})" if isinstance(name, str) else ""
                problems.append(f"ebsBlockDevices[{index}]{label}.encrypted is {encrypted!r}; expected true")
    elif resource_type == LAUNCH_TEMPLATE:
        for index, mapping in enumerate(_items(props.get("blockDeviceMappings"))):
            ebs = _get(mapping, "ebs")
            if ebs is None or is_unknown(ebs):
                continue
            encrypted = _get(ebs, "encrypted")
            if not is_unknown(encrypted) and not _is_true(encrypted):
                problems.append(f"blockDeviceMappings[{index}].ebs.encrypted is {encrypted!r}; expected true")
    return problems


# --- 3. No key pair ----------------------------------------------------------------------------

def check_no_key_pair(resource_type: str, props: Props) -> list[str]:
    """Beacons are reached through SSM Session Manager: no EC2 key pair (keyName) at all."""
    if resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return []
    key_name = props.get("keyName")
    if key_name is None or key_name == "":
        return []
    shown = "(computed during preview)" if is_unknown(key_name) else repr(key_name)
    return [f"keyName is {shown}; expected no key pair (use SSM Session Manager)"]


# --- 4. Security group ingress from anywhere ---------------------------------------------------

def _is_anywhere(cidr: Any) -> bool:
    if not isinstance(cidr, str):
        return False
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def _is_https_only(protocol: Any, from_port: Any, to_port: Any) -> bool:
    proto = str(protocol).lower() if protocol is not None else ""
    return proto in ("tcp", "6") and from_port == 443 and to_port == 443


def _describe_rule(protocol: Any, from_port: Any, to_port: Any) -> str:
    proto = str(protocol).lower() if protocol is not None else "?"
    if proto in ("-1", "all"):
        return "all protocols and ports"
    ports = f"{from_port}" if from_port == to_port else f"{from_port}-{to_port}"
    return f"{proto}/{ports}"


def check_ingress_from_anywhere(resource_type: str, props: Props) -> list[str]:
    """No ingress from 0.0.0.0/0 or ::/0 except TCP 443 (the agents' HTTPS)."""
    rules: list[tuple[str, list[Any], Any, Any, Any]] = []  # (where, cidrs, protocol, from, to)
    if resource_type in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
        for index, rule in enumerate(_items(props.get("ingress"))):
            if not isinstance(rule, Mapping):
                continue
            cidrs = _items(rule.get("cidrBlocks")) + _items(rule.get("ipv6CidrBlocks"))
            rules.append((f"ingress[{index}]", cidrs, rule.get("protocol"), rule.get("fromPort"), rule.get("toPort")))
    elif resource_type == SG_INGRESS_RULE:
        cidrs = [props.get("cidrIpv4"), props.get("cidrIpv6")]
        rules.append(("rule", cidrs, props.get("ipProtocol"), props.get("fromPort"), props.get("toPort")))
    elif resource_type == SG_RULE:
        if props.get("type") != "ingress":
            return []
        cidrs = _items(props.get("cidrBlocks")) + _items(props.get("ipv6CidrBlocks"))
        rules.append(("rule", cidrs, props.get("protocol"), props.get("fromPort"), props.get("toPort")))
    problems = []
    for where, cidrs, protocol, from_port, to_port in rules:
        anywhere = [c for c in cidrs if _is_anywhere(c)]
        if not anywhere or any(is_unknown(v) for v in (protocol, from_port, to_port)):
            continue
        if not _is_https_only(protocol, from_port, to_port):
            problems.append(
                f"{where} admits {_describe_rule(protocol, from_port, to_port)} from {', '.join(anywhere)}; "
                "only tcp/443 may be open to anywhere"
            )
    return problems


# --- 5. Network Firewall policy ----------------------------------------------------------------

def check_firewall_policy(resource_type: str, props: Props) -> list[str]:
    """Stateful engine in STRICT_ORDER with a drop default action."""
    if resource_type != FIREWALL_POLICY:
        return []
    policy = props.get("firewallPolicy")
    if is_unknown(policy):
        return []
    problems = []
    order = _get(policy, "statefulEngineOptions", "ruleOrder")
    if not is_unknown(order) and order != "STRICT_ORDER":
        problems.append(f"firewallPolicy.statefulEngineOptions.ruleOrder is {order!r}; expected 'STRICT_ORDER' "
                        "(rules evaluated in the order written, then the default action)")
    actions = _get(policy, "statefulDefaultActions")
    if not is_unknown(actions) and not any(a in DROP_DEFAULTS for a in _items(actions)):
        problems.append(f"firewallPolicy.statefulDefaultActions is {actions!r}; expected it to contain "
                        f"{' or '.join(DROP_DEFAULTS)} (default drop)")
    return problems


# --- 6. Secret material in user data and SSM documents -----------------------------------------

def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _describe(match: secret_patterns.SecretMatch) -> str:
    if match.kind == secret_patterns.PRIVATE_KEY:
        return f"a PEM {match.label + ' ' if match.label else ''}private key"
    if match.kind == secret_patterns.PKCS12_BLOB:
        return "a base64 PKCS#12/PFX blob"
    if match.kind == secret_patterns.URL_CREDENTIALS:
        return "a URL with a user and password in it"
    return "a password set to a literal"


def find_secret_material(text: str) -> list[str]:
    """Kinds and lines of secret material in text: PEM private keys, base64 PKCS#12/PFX blobs,
    password assignments to literals (what counts is defined in policy/secret_patterns.py, shared
    with the test suite's repository scan). Never returns the material itself."""
    if not isinstance(text, str) or not text:
        return []
    return [f"{_describe(m)} (line {_line_of(text, m.start)})" for m in secret_patterns.find(text)]


def _decoded_base64(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=False).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None


def check_no_secret_material(resource_type: str, props: Props) -> list[str]:
    """No private keys, PFX blobs or literal passwords in instance user data, SSM document content
    or the converge objects: each is readable by anyone who can describe the instance or the
    document, or read the object."""
    texts: list[tuple[str, Any]] = []
    if resource_type == INSTANCE:
        texts.append(("userData", props.get("userData")))
        encoded = props.get("userDataBase64")
        if isinstance(encoded, str):
            texts.append(("userDataBase64 (decoded)", _decoded_base64(encoded)))
    elif resource_type == LAUNCH_TEMPLATE:
        encoded = props.get("userData")
        if isinstance(encoded, str):
            texts.append(("userData (decoded)", _decoded_base64(encoded)))
    elif resource_type in (SSM_DOCUMENT, BUCKET_OBJECT):
        texts.append(("content", props.get("content")))
    problems = []
    for where, text in texts:
        if isinstance(text, str):
            problems.extend(f"{where} contains {finding}; keep it in Secrets Manager and read it on the instance"
                            for finding in find_secret_material(text))
    return problems


# --- 7. Protection in prod stacks --------------------------------------------------------------

def is_prod_stack(stack: str) -> bool:
    return isinstance(stack, str) and stack.startswith(PROD_PREFIX)


def check_prod_protection(resource_type: str, props: Props, stack: str) -> list[str]:
    """In stacks whose name starts with prod: instance termination protection and firewall delete
    protection are on."""
    if not is_prod_stack(stack):
        return []
    checks = {INSTANCE: "disableApiTermination", FIREWALL: "deleteProtection"}
    key = checks.get(resource_type)
    if key is None:
        return []
    value = props.get(key)
    if is_unknown(value) or value is True:
        return []
    return [f"{key} is {value!r} in stack {stack!r}; expected true in stacks whose name starts with "
            f"{PROD_PREFIX!r} (set flexnet-beacon:protection)"]


# --- Stack-wide checks --------------------------------------------------------------------------

@dataclass(frozen=True)
class StackResource:
    """One resource of the stack as a stack policy sees it: outputs as props (with ``id`` where the
    engine knows it) and, per property, the URNs of the resources it was computed from."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    message: str
    urn: str | None = None


def refers_to(resource: StackResource, prop: str, target: StackResource, target_key: str) -> bool:
    """resource.props[prop] points at target: by dependency (works in preview, where ids are
    unknown) or by value (target.props[target_key], e.g. id or arn, when known)."""
    if target.urn and target.urn in (resource.property_dependencies.get(prop) or ()):
        return True
    value, wanted = resource.props.get(prop), target.props.get(target_key)
    return isinstance(value, str) and isinstance(wanted, str) and bool(value) and value == wanted


def check_vpc_flow_logs(resources: Iterable[StackResource]) -> list[Violation]:
    """Every VPC has a flow log attached to it (aws:ec2/flowLog:FlowLog with vpcId = the VPC)."""
    resources = list(resources)
    flow_logs = [r for r in resources if r.type == FLOW_LOG]
    return [
        Violation(f"VPC {vpc.name} has no flow log: add an {FLOW_LOG} whose vpcId is this VPC", vpc.urn)
        for vpc in resources
        if vpc.type == VPC and not any(refers_to(log, "vpcId", vpc, "id") for log in flow_logs)
    ]


def _log_types(config: StackResource) -> set[str]:
    destinations = _get(config.props, "loggingConfiguration", "logDestinationConfigs")
    return {str(_get(d, "logType")) for d in _items(destinations) if isinstance(_get(d, "logType"), str)}


def check_firewall_logging(resources: Iterable[StackResource]) -> list[Violation]:
    """Every Network Firewall has a logging configuration with ALERT and FLOW logs."""
    resources = list(resources)
    configs = [r for r in resources if r.type == FIREWALL_LOGGING]
    violations = []
    for firewall in (r for r in resources if r.type == FIREWALL):
        mine = [c for c in configs if refers_to(c, "firewallArn", firewall, "arn")]
        if not mine:
            violations.append(Violation(
                f"firewall {firewall.name} has no logging configuration: add an {FIREWALL_LOGGING} "
                f"with {' and '.join(REQUIRED_FIREWALL_LOG_TYPES)} logs", firewall.urn))
            continue
        if any(is_unknown(_get(c.props, "loggingConfiguration")) for c in mine):
            continue
        present = set().union(*(_log_types(c) for c in mine))
        missing = [t for t in REQUIRED_FIREWALL_LOG_TYPES if t not in present]
        if missing:
            violations.append(Violation(
                f"firewall {firewall.name} logs {', '.join(sorted(present)) or 'nothing'} but not "
                f"{', '.join(missing)}", mine[0].urn))
    return violations


# --- The table the policy pack is built from ----------------------------------------------------

ResourceCheck = Callable[[str, Props, str], list[str]]
StackCheck = Callable[[Sequence[StackResource]], list[Violation]]


def _stackless(check: Callable[[str, Props], list[str]]) -> ResourceCheck:
    def run(resource_type: str, props: Props, stack: str) -> list[str]:
        return check(resource_type, props)

    run.__name__ = check.__name__
    run.__doc__ = check.__doc__
    return run


@dataclass(frozen=True)
class ResourceRule:
    name: str
    description: str
    types: frozenset[str]
    check: ResourceCheck


@dataclass(frozen=True)
class StackRule:
    name: str
    description: str
    check: StackCheck


RESOURCE_RULES: tuple[ResourceRule, ...] = (
    ResourceRule("imdsv2-required", "EC2 instances require IMDSv2 (metadataOptions.httpTokens = required).",
                 frozenset({INSTANCE, LAUNCH_TEMPLATE}), _stackless(check_imdsv2)),
    ResourceRule("ebs-encrypted", "Every EBS volume (instance root and extra volumes, standalone volumes) is encrypted.",
                 frozenset({INSTANCE, LAUNCH_TEMPLATE, EBS_VOLUME}), _stackless(check_ebs_encrypted)),
    ResourceRule("no-key-pair", "Instances carry no EC2 key pair (access is through SSM Session Manager).",
                 frozenset({INSTANCE, LAUNCH_TEMPLATE}), _stackless(check_no_key_pair)),
    ResourceRule("ingress-anywhere-only-https", "Security groups admit 0.0.0.0/0 or ::/0 only on TCP 443.",
                 frozenset({SECURITY_GROUP, DEFAULT_SECURITY_GROUP, SG_INGRESS_RULE, SG_RULE}),
                 _stackless(check_ingress_from_anywhere)),
    ResourceRule("firewall-strict-order-default-drop",
                 "Network Firewall policies evaluate stateful rules in STRICT_ORDER with a drop default action.",
                 frozenset({FIREWALL_POLICY}), _stackless(check_firewall_policy)),
    ResourceRule("no-secret-material", "No private keys, PFX blobs or literal passwords in user data, SSM documents or the converge objects.",
                 frozenset({INSTANCE, LAUNCH_TEMPLATE, SSM_DOCUMENT, BUCKET_OBJECT}), _stackless(check_no_secret_material)),
    ResourceRule("prod-protection",
                 "In stacks named prod*: instance termination protection and firewall delete protection are on.",
                 frozenset({INSTANCE, FIREWALL}), check_prod_protection),
)

STACK_RULES: tuple[StackRule, ...] = (
    StackRule("vpc-flow-logs", "Every VPC has a flow log.", check_vpc_flow_logs),
    StackRule("firewall-logging", "Every Network Firewall logs ALERT and FLOW.", check_firewall_logging),
)


def check_resource(resource_type: str, props: Props, stack: str) -> dict[str, list[str]]:
    """Every resource rule on one resource: {rule name: problems} for the rules that found any."""
    found = {}
    for rule in RESOURCE_RULES:
        if resource_type in rule.types:
            problems = rule.check(resource_type, props, stack)
            if problems:
                found[rule.name] = problems
    return found


def check_stack(resources: Sequence[StackResource]) -> dict[str, list[Violation]]:
    """Every stack rule: {rule name: violations} for the rules that found any."""
    found = {}
    for rule in STACK_RULES:
        violations = rule.check(resources)
        if violations:
            found[rule.name] = violations
    return found
