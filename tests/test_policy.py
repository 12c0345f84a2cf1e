"""The CrossGuard policy pack (policy/): every rule passes the shipped stacks and reports a mutated copy.

The resources are the program's own, rendered by the offline plan (`python -m scripts.plan`) into
resources.json: for resource policies their inputs are exactly what the engine would send. Stack
policies see outputs; here those come from the plan's own mocks (scripts.offline.PlanMocks), so
ids and ARNs are known and relations are matched by value, the way `pulumi up` sees them. The
preview case (ids unknown, relations by property dependency) goes through pulumi_policy's real
analyzer servicer with the engine's unknown sentinels.

No secret material is written in this file: keys, PFX blobs and passwords are made at run time.
"""

from __future__ import annotations

import ast
import base64
import copy
import datetime
import importlib.metadata
import json
import runpy
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from google.protobuf import struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.mocks import MockResourceArgs

import pulumi_policy
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE
from policy import adapt, rules
from policy.rules import UNKNOWN, StackResource
from components.stack_yaml import read_stack_document
from scripts.offline import PlanMocks

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")
PASSWORD = "".join(("pass", "word"))  # kept apart so that a repository scan finds no assignment here


# --- fixtures: the program's own resources -----------------------------------------------------

@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("plan")
    result = {}
    for stack in STACKS:
        run = subprocess.run(
            [sys.executable, "-m", "scripts.plan", "--stack", stack, "--out", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, run.stderr
        result[stack] = json.loads((out / stack / "resources.json").read_text(encoding="utf-8"))
    return result


def region_of(stack: str) -> str:
    document = read_stack_document(ROOT / "stacks" / f"Pulumi.{stack}.yaml")  # the plan's loader: no YAML aliases
    return document["config"]["aws:region"]


def urn_of(stack: str, resource: dict[str, Any]) -> str:
    return f"urn:pulumi:{stack}::flexnet-beacon::{resource['type']}::{resource['name']}"


def stack_view(stack: str, resources: list[dict[str, Any]]) -> list[StackResource]:
    """The stack as a stack policy sees it at `up`: outputs (the plan mocks' answers) plus id."""
    mocks = PlanMocks(region_of(stack))
    view = []
    for resource in resources:
        if not resource["custom"]:
            continue
        rid, state = mocks.new_resource(
            MockResourceArgs(resource["type"], resource["name"], copy.deepcopy(resource["inputs"]), custom=True)
        )
        view.append(StackResource(resource["type"], resource["name"], urn_of(stack, resource), {**state, "id": rid}))
    return view


def custom(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r["custom"]]


def one(resources: list[dict[str, Any]], typ: str) -> dict[str, Any]:
    found = [r for r in resources if r["type"] == typ]
    assert found, typ
    return found[0]


def mutated(resources: list[dict[str, Any]], typ: str, change: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """A deep copy with change() applied to the inputs of the first resource of type typ."""
    copied = copy.deepcopy(resources)
    change(one(copied, typ)["inputs"])
    return copied


def findings(resources: list[dict[str, Any]], stack: str) -> dict[str, dict[str, list[str]]]:
    """{resource name: {rule: problems}} over every resource rule."""
    result = {}
    for resource in custom(resources):
        found = rules.check_resource(resource["type"], resource["inputs"], stack)
        if found:
            result[resource["name"]] = found
    return result


def rule_hits(resources: list[dict[str, Any]], stack: str, rule: str) -> list[str]:
    return [p for found in findings(resources, stack).values() for p in found.get(rule, [])]


# --- the shipped stacks pass ---------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stack_passes_every_resource_policy(plans, stack):
    assert findings(plans[stack], stack) == {}
    types = {r["type"] for r in plans[stack]}
    covered = set().union(*(rule.types for rule in rules.RESOURCE_RULES))
    # The rules actually looked at the program's instances, groups, firewall and SSM document.
    for typ in (rules.INSTANCE, rules.SECURITY_GROUP, rules.FIREWALL_POLICY, rules.FIREWALL, rules.SSM_DOCUMENT):
        assert typ in types and typ in covered


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stack_passes_every_stack_policy(plans, stack):
    view = stack_view(stack, plans[stack])
    assert rules.check_stack(view) == {}
    # ...and not vacuously: each VPC and firewall is matched to its flow log and logging config by value.
    vpcs = [r for r in view if r.type == rules.VPC]
    logs = [r for r in view if r.type == rules.FLOW_LOG]
    assert vpcs and all(any(rules.refers_to(log, "vpcId", vpc, "id") for log in logs) for vpc in vpcs)
    firewalls = [r for r in view if r.type == rules.FIREWALL]
    configs = [r for r in view if r.type == rules.FIREWALL_LOGGING]
    assert firewalls and all(any(rules.refers_to(c, "firewallArn", fw, "arn") for c in configs) for fw in firewalls)


def test_prod_plan_runs_with_protection_and_dev_without(plans):
    assert one(plans["prod"], rules.INSTANCE)["inputs"]["disableApiTermination"] is True
    assert one(plans["prod"], rules.FIREWALL)["inputs"]["deleteProtection"] is True
    assert one(plans["dev"], rules.INSTANCE)["inputs"]["disableApiTermination"] is False
    # dev is not a prod stack: no protection required.
    assert rule_hits(plans["dev"], "dev", "prod-protection") == []


# --- each resource policy reports a mutated resource ------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_imdsv2_optional_is_reported(plans, stack):
    bad = mutated(plans[stack], rules.INSTANCE, lambda i: i["metadataOptions"].update(httpTokens="optional"))
    hits = rule_hits(bad, stack, "imdsv2-required")
    assert len(hits) == 1 and "'optional'" in hits[0]


def test_imdsv2_missing_options_is_reported(plans):
    bad = mutated(plans["dev"], rules.INSTANCE, lambda i: i.pop("metadataOptions"))
    assert rule_hits(bad, "dev", "imdsv2-required")
    assert rules.check_imdsv2(rules.LAUNCH_TEMPLATE, {"metadataOptions": {"httpTokens": "optional"}})


def test_unencrypted_root_volume_is_reported(plans):
    bad = mutated(plans["prod"], rules.INSTANCE, lambda i: i["rootBlockDevice"].update(encrypted=False))
    hits = rule_hits(bad, "prod", "ebs-encrypted")
    assert len(hits) == 1 and "rootBlockDevice.encrypted is False" in hits[0]


def test_missing_root_block_device_and_extra_volumes_are_reported(plans):
    bad = mutated(plans["dev"], rules.INSTANCE, lambda i: i.pop("rootBlockDevice"))
    assert any("rootBlockDevice is not set" in h for h in rule_hits(bad, "dev", "ebs-encrypted"))
    extra = mutated(plans["dev"], rules.INSTANCE, lambda i: i.update(ebsBlockDevices=[
        {"deviceName": "xvdf", "encrypted": True, "volumeSize": 10},
        {"deviceName": "xvdg", "volumeSize": 10},
    ]))
    hits = rule_hits(extra, "dev", "ebs-encrypted")
    assert len(hits) == 1 and "ebsBlockDevices[1] (xvdg)" in hits[0]


def test_unencrypted_standalone_volume_is_reported():
    assert rules.check_ebs_encrypted(rules.EBS_VOLUME, {"size": 10, "encrypted": False})
    assert rules.check_ebs_encrypted(rules.EBS_VOLUME, {"size": 10})
    assert rules.check_ebs_encrypted(rules.EBS_VOLUME, {"size": 10, "encrypted": True}) == []
    template = {"blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "false"}}]}
    assert rules.check_ebs_encrypted(rules.LAUNCH_TEMPLATE, template)


@pytest.mark.parametrize("stack", STACKS)
def test_key_pair_is_reported(plans, stack):
    bad = mutated(plans[stack], rules.INSTANCE, lambda i: i.update(keyName="ops-laptop"))
    hits = rule_hits(bad, stack, "no-key-pair")
    assert len(hits) == 1 and "ops-laptop" in hits[0]
    # A key name computed from another resource (unknown in preview) is a key pair all the same.
    assert rules.check_no_key_pair(rules.INSTANCE, {"keyName": UNKNOWN})


@pytest.mark.parametrize("stack", STACKS)
def test_ssh_from_anywhere_is_reported(plans, stack):
    def open_ssh(inputs: dict[str, Any]) -> None:
        inputs["ingress"].append({"cidrBlocks": ["0.0.0.0/0"], "fromPort": 22, "toPort": 22, "protocol": "tcp"})

    bad = mutated(plans[stack], rules.SECURITY_GROUP, open_ssh)
    hits = rule_hits(bad, stack, "ingress-anywhere-only-https")
    assert len(hits) == 1 and "tcp/22 from 0.0.0.0/0" in hits[0]


@pytest.mark.parametrize(
    "rule, reported",
    [
        ({"ipv6CidrBlocks": ["::/0"], "fromPort": 3389, "toPort": 3389, "protocol": "tcp"}, True),
        ({"cidrBlocks": ["0.0.0.0/0"], "fromPort": 0, "toPort": 0, "protocol": "-1"}, True),
        ({"cidrBlocks": ["0.0.0.0/0"], "fromPort": 443, "toPort": 443, "protocol": "udp"}, True),
        ({"cidrBlocks": ["0.0.0.0/0"], "fromPort": 80, "toPort": 443, "protocol": "tcp"}, True),
        ({"cidrBlocks": ["0.0.0.0/0"], "fromPort": 443, "toPort": 443, "protocol": "6"}, False),
        ({"cidrBlocks": ["10.0.0.0/8"], "fromPort": 22, "toPort": 22, "protocol": "tcp"}, False),
        ({"cidrBlocks": ["0.0.0.0/0"], "fromPort": UNKNOWN, "toPort": 22, "protocol": "tcp"}, False),
    ],
)
def test_security_group_ingress_rules(rule, reported):
    assert bool(rules.check_ingress_from_anywhere(rules.SECURITY_GROUP, {"ingress": [rule]})) is reported


def test_standalone_ingress_rules_are_checked():
    world_ssh = {"cidrIpv4": "0.0.0.0/0", "ipProtocol": "tcp", "fromPort": 22, "toPort": 22}
    assert rules.check_ingress_from_anywhere(rules.SG_INGRESS_RULE, world_ssh)
    assert rules.check_ingress_from_anywhere(rules.SG_INGRESS_RULE, {"cidrIpv6": "::/0", "ipProtocol": "-1"})
    assert not rules.check_ingress_from_anywhere(
        rules.SG_INGRESS_RULE, {"cidrIpv4": "0.0.0.0/0", "ipProtocol": "tcp", "fromPort": 443, "toPort": 443})
    legacy = {"type": "ingress", "cidrBlocks": ["0.0.0.0/0"], "protocol": "tcp", "fromPort": 3389, "toPort": 3389}
    assert rules.check_ingress_from_anywhere(rules.SG_RULE, legacy)
    assert not rules.check_ingress_from_anywhere(rules.SG_RULE, {**legacy, "type": "egress"})
    assert rules.check_ingress_from_anywhere(
        rules.DEFAULT_SECURITY_GROUP, {"ingress": [{"cidrBlocks": ["0.0.0.0/0"], "protocol": "-1", "fromPort": 0, "toPort": 0}]})


@pytest.mark.parametrize("stack", STACKS)
def test_default_action_order_is_reported(plans, stack):
    bad = mutated(plans[stack], rules.FIREWALL_POLICY,
                  lambda i: i["firewallPolicy"]["statefulEngineOptions"].update(ruleOrder="DEFAULT_ACTION_ORDER"))
    hits = rule_hits(bad, stack, "firewall-strict-order-default-drop")
    assert len(hits) == 1 and "DEFAULT_ACTION_ORDER" in hits[0]


@pytest.mark.parametrize("stack", STACKS)
def test_missing_drop_default_is_reported(plans, stack):
    bad = mutated(plans[stack], rules.FIREWALL_POLICY,
                  lambda i: i["firewallPolicy"].update(statefulDefaultActions=["aws:alert_established"]))
    hits = rule_hits(bad, stack, "firewall-strict-order-default-drop")
    assert len(hits) == 1 and "default drop" in hits[0]
    strict = mutated(plans[stack], rules.FIREWALL_POLICY,
                     lambda i: i["firewallPolicy"].update(statefulDefaultActions=["aws:drop_strict"]))
    assert rule_hits(strict, stack, "firewall-strict-order-default-drop") == []


# --- secret material ------------------------------------------------------------------------------

def _key_and_certificate() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "policy-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="module")
def material() -> dict[str, str]:
    key, cert = _key_and_certificate()
    pfx = pkcs12.serialize_key_and_certificates(
        b"beacon", key, cert, None, serialization.BestAvailableEncryption(secrets.token_bytes(12).hex().encode()))
    return {
        "pkcs8": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode(),
        "traditional": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption()).decode(),
        "pfx": base64.b64encode(pfx).decode(),
        "cert_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "cert_b64": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
        "token": "t0" + secrets.token_hex(8) + "!",
    }


def _append_user_data(text: str) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        inputs["userData"] = inputs["userData"].replace("</powershell>", text + "\n</powershell>")
    return change


@pytest.mark.parametrize("stack", STACKS)
def test_private_key_in_user_data_is_reported(plans, material, stack):
    bad = mutated(plans[stack], rules.INSTANCE, _append_user_data(f"$key = @'\n{material['pkcs8']}'@"))
    hits = rule_hits(bad, stack, "no-secret-material")
    assert len(hits) == 1 and "userData contains a PEM private key" in hits[0]
    assert material["pkcs8"].splitlines()[1] not in hits[0]  # the finding never quotes the key


def test_secret_material_in_ssm_document_is_reported(plans, material):
    def add_pfx(inputs: dict[str, Any]) -> None:
        document = json.loads(inputs["content"])
        document["mainSteps"][0]["inputs"]["runCommand"].append(
            f"$pfx = [Convert]::FromBase64String('{material['pfx']}')")
        inputs["content"] = json.dumps(document, indent=1)

    bad = mutated(plans["prod"], rules.SSM_DOCUMENT, add_pfx)
    hits = rule_hits(bad, "prod", "no-secret-material")
    assert len(hits) == 1 and "content contains a base64 PKCS#12/PFX blob" in hits[0]
    assert material["pfx"][:40] not in hits[0]

    def add_password(inputs: dict[str, Any]) -> None:
        document = json.loads(inputs["content"])
        document["mainSteps"][0]["inputs"]["runCommand"].append(f"${PASSWORD} = \"{material['token']}\"")
        inputs["content"] = json.dumps(document, indent=1)

    bad = mutated(plans["prod"], rules.SSM_DOCUMENT, add_password)
    hits = rule_hits(bad, "prod", "no-secret-material")
    assert len(hits) == 1 and "password set to a literal" in hits[0] and material["token"] not in hits[0]


def test_shipped_converge_script_mentions_passwords_only_by_reference(plans):
    """The converge script (an S3 object the document names) handles passwords (read from Secrets
    Manager, made on the instance): the rule must tell those references from literals, or it
    would block every stack. The rule reads the objects, the document and the user data alike."""
    objects = [r for r in plans["prod"] if r["type"] == rules.BUCKET_OBJECT]
    script = next(o for o in objects if o["inputs"]["key"].endswith(".ps1"))["inputs"]["content"]
    assert PASSWORD in script.lower()
    for resource in objects + [one(plans["prod"], rules.SSM_DOCUMENT)]:
        assert rules.find_secret_material(resource["inputs"]["content"]) == []
        assert rule_hits([resource], "prod", "no-secret-material") == []


@pytest.mark.parametrize(
    "template, reported",
    [
        ("{name} = '{token}'", True),
        ("{name}={token}", True),
        ("Server=db;User Id=app;{name}={token};", True),
        ('"{name}": "{token}"', True),
        ("DbPassword: {token}", True),
        ("ConvertTo-SecureString -String '{token}' -AsPlainText -Force", True),
        ("New-LocalUser -Name x -Password '{token}'", True),
        ("${name} = $secret.SecretString", False),
        ("${name} = New-RandomPassword", False),
        ("{name} = $null", False),
        ("{name} = ''", False),
        ("{name} = \"$($account.secret)\"", False),
        ("-Password $secure", False),
        ("{name}: {{{{resolve:secretsmanager:x}}}}", False),
        ("Set-LocalUser -Name x -PasswordNeverExpires $true", False),
    ],
)
def test_password_assignments(template, reported, material):
    text = template.replace("DbPassword", "Db" + PASSWORD.capitalize()).format(name=PASSWORD, token=material["token"])
    assert bool(rules.find_secret_material(text)) is reported, text


def test_private_key_kinds_and_public_material(material):
    assert rules.find_secret_material(material["traditional"]) == ["a PEM EC private key (line 1)"]
    assert rules.find_secret_material("x\n" + material["pkcs8"]) == ["a PEM private key (line 2)"]
    assert rules.find_secret_material(material["pfx"]) == ["a base64 PKCS#12/PFX blob (line 1)"]
    # Certificates are public: neither the PEM nor the bare base64 DER is a finding.
    assert rules.find_secret_material(material["cert_pem"]) == []
    assert rules.find_secret_material(material["cert_b64"]) == []


def test_user_data_base64_and_launch_templates_are_decoded(material):
    encoded = base64.b64encode(material["pkcs8"].encode()).decode()
    assert rules.check_no_secret_material(rules.INSTANCE, {"userDataBase64": encoded})
    assert rules.check_no_secret_material(rules.LAUNCH_TEMPLATE, {"userData": encoded})
    assert rules.check_no_secret_material(rules.INSTANCE, {"userData": UNKNOWN}) == []


# --- prod protection ------------------------------------------------------------------------------

def test_termination_protection_off_in_prod_is_reported(plans):
    bad = mutated(plans["prod"], rules.INSTANCE, lambda i: i.update(disableApiTermination=False))
    hits = rule_hits(bad, "prod", "prod-protection")
    assert len(hits) == 1 and "disableApiTermination is False in stack 'prod'" in hits[0]
    # The same resources under a non-prod stack name are fine; any prod* name is checked.
    assert rule_hits(bad, "staging", "prod-protection") == []
    assert len(rule_hits(bad, "prod-eu", "prod-protection")) == 1


def test_delete_protection_off_in_prod_is_reported(plans):
    bad = mutated(plans["prod"], rules.FIREWALL, lambda i: i.update(deleteProtection=False))
    hits = rule_hits(bad, "prod", "prod-protection")
    assert len(hits) == 1 and "deleteProtection" in hits[0]
    # The dev stack's own resources (protection off) fail when deployed as a prod stack.
    assert len(rule_hits(plans["dev"], "prod", "prod-protection")) == 2


# --- stack policies ---------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_removed_flow_log_is_reported(plans, stack):
    without = [r for r in plans[stack] if r["type"] != rules.FLOW_LOG]
    violations = rules.check_vpc_flow_logs(stack_view(stack, without))
    vpc = one(plans[stack], rules.VPC)
    assert [v.urn for v in violations] == [urn_of(stack, vpc)]
    assert "has no flow log" in violations[0].message


def test_flow_log_of_another_vpc_is_reported(plans):
    bad = mutated(plans["dev"], rules.FLOW_LOG, lambda i: i.update(vpcId="vpc-0123456789abcdef0"))
    assert rules.check_vpc_flow_logs(stack_view("dev", bad))


@pytest.mark.parametrize("stack", STACKS)
def test_logging_without_flow_is_reported(plans, stack):
    def alert_only(inputs: dict[str, Any]) -> None:
        configs = inputs["loggingConfiguration"]["logDestinationConfigs"]
        inputs["loggingConfiguration"]["logDestinationConfigs"] = [c for c in configs if c["logType"] != "FLOW"]

    violations = rules.check_firewall_logging(stack_view(stack, mutated(plans[stack], rules.FIREWALL_LOGGING, alert_only)))
    assert len(violations) == 1 and "logs ALERT but not FLOW" in violations[0].message


def test_firewall_without_logging_configuration_is_reported(plans):
    without = [r for r in plans["prod"] if r["type"] != rules.FIREWALL_LOGGING]
    violations = rules.check_firewall_logging(stack_view("prod", without))
    assert len(violations) == 1 and violations[0].urn == urn_of("prod", one(plans["prod"], rules.FIREWALL))


def test_preview_relations_by_property_dependency():
    """In preview a new VPC's id is unknown: the flow log refers to it by property dependency."""
    vpc = StackResource(rules.VPC, "net-vpc", "urn:vpc", {"cidrBlock": "10.0.0.0/22", "id": UNKNOWN})
    linked = StackResource(rules.FLOW_LOG, "log", "urn:log", {"vpcId": UNKNOWN}, {"vpcId": ["urn:vpc"]})
    unlinked = StackResource(rules.FLOW_LOG, "log", "urn:log", {"vpcId": UNKNOWN}, {})
    assert rules.check_vpc_flow_logs([vpc, linked]) == []
    assert [v.urn for v in rules.check_vpc_flow_logs([vpc, unlinked])] == ["urn:vpc"]


# --- the pack itself: pulumi_policy wiring ------------------------------------------------------

def _imported_modules(name: str) -> set[str]:
    tree = ast.parse((ROOT / "policy" / name).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {f"{node.module}.{alias.name}" if node.module == "policy" else node.module
                 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
    return imported


def test_rules_module_is_pure():
    """rules.py imports the standard library and, from the pack, only the secret patterns it shares
    with the repository scan, which import the standard library alone."""
    stdlib = {"__future__", "base64", "binascii", "ipaddress", "re", "dataclasses", "typing"}
    assert _imported_modules("rules.py") <= stdlib | {"policy.secret_patterns"}
    assert _imported_modules("secret_patterns.py") <= stdlib


def test_main_is_wiring_only():
    source = (ROOT / "policy" / "__main__.py").read_text(encoding="utf-8")
    assert "aws:" not in source  # no resource types, so no checks, in the wiring
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1
    keywords = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert keywords["enforcement_level"] == "ENFORCEMENT" and "EnforcementLevel.MANDATORY" in source


def test_review_doc_lists_every_policy():
    text = (ROOT / "docs" / "review.md").read_text(encoding="utf-8")
    for rule in (*rules.RESOURCE_RULES, *rules.STACK_RULES):
        assert f"`{rule.name}`" in text, rule.name


def test_policy_pack_yaml_and_requirements():
    document = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text(encoding="utf-8"))
    assert document["runtime"]["name"] == "python" and document["runtime"]["options"]["virtualenv"] == "venv"
    pins = dict(line.split("==") for line in (ROOT / "policy" / "requirements.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins["pulumi-policy"] == importlib.metadata.version("pulumi-policy")  # the pack and .venv agree
    project_pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                        if "==" in line and not line.startswith("#"))
    assert pins["pulumi"] == project_pins["pulumi"]


@pytest.fixture
def pack(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run policy/__main__.py as the CLI does, with PolicyPack stubbed (the real one serves gRPC forever)."""
    captured: dict[str, Any] = {}

    class RecordingPack:
        def __init__(self, **kwargs: Any) -> None:
            captured.update(kwargs)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", RecordingPack)
    for name in ("PULUMI_PROJECT", "PULUMI_STACK", "PULUMI_DRY_RUN"):
        monkeypatch.delenv(name, raising=False)
    namespace = runpy.run_path(str(ROOT / "policy" / "__main__.py"), run_name="__main__")
    return {"kwargs": captured, "namespace": namespace}


def test_pack_is_built_from_the_rule_table(pack):
    kwargs = pack["kwargs"]
    assert kwargs["name"] == "flexnet-beacon-guardrails"
    assert kwargs["enforcement_level"] is EnforcementLevel.MANDATORY
    policies = kwargs["policies"]
    assert [p.name for p in policies] == [r.name for r in rules.RESOURCE_RULES] + [r.name for r in rules.STACK_RULES]
    assert all(p.enforcement_level is EnforcementLevel.MANDATORY for p in policies)
    assert sum(isinstance(p, ResourceValidationPolicy) for p in policies) == len(rules.RESOURCE_RULES)
    assert sum(isinstance(p, StackValidationPolicy) for p in policies) == len(rules.STACK_RULES)


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(data)
    return value


def _servicer(pack: dict[str, Any], stack: str) -> _PolicyAnalyzerServicer:
    policies = pack["namespace"]["build_policies"](lambda: stack)
    return _PolicyAnalyzerServicer("flexnet-beacon-guardrails", "0.1.0", policies, EnforcementLevel.MANDATORY)


def _analyze(servicer: _PolicyAnalyzerServicer, stack: str, resource: dict[str, Any]) -> list[Any]:
    request = proto.AnalyzeRequest(type=resource["type"], properties=_struct(resource["inputs"]),
                                   urn=urn_of(stack, resource), name=resource["name"])
    return list(servicer.Analyze(request, None).diagnostics)


@pytest.mark.parametrize("stack", STACKS)
def test_analyzer_passes_the_shipped_stack(pack, plans, stack):
    servicer = _servicer(pack, stack)
    for resource in custom(plans[stack]):
        assert _analyze(servicer, stack, resource) == [], resource["name"]


def test_analyzer_reports_mandatory_violations_with_the_injected_stack(pack, plans):
    instance = copy.deepcopy(one(plans["prod"], rules.INSTANCE))
    instance["inputs"]["metadataOptions"]["httpTokens"] = "optional"
    instance["inputs"]["disableApiTermination"] = False
    diagnostics = _analyze(_servicer(pack, "prod"), "prod", instance)
    assert sorted(d.policyName for d in diagnostics) == ["imdsv2-required", "prod-protection"]
    assert all(d.enforcementLevel == proto.MANDATORY for d in diagnostics)
    assert [d.policyName for d in _analyze(_servicer(pack, "dev"), "dev", instance)] == ["imdsv2-required"]


def test_analyzer_in_preview_passes_unknown_values(pack, plans):
    """Unknown user data (preview) is not decidable: no violation and no 'can't run' advisory."""
    instance = copy.deepcopy(one(plans["dev"], rules.INSTANCE))
    instance["inputs"]["userData"] = UNKNOWN_STRING_VALUE
    instance["inputs"]["keyName"] = UNKNOWN_STRING_VALUE
    diagnostics = _analyze(_servicer(pack, "dev"), "dev", instance)
    assert [d.policyName for d in diagnostics] == ["no-key-pair"]


def test_analyzer_stack_policies_in_preview(pack, plans):
    """Stack policy through the servicer: ids unknown, the flow log linked by property dependency."""
    resources = [r for r in custom(plans["dev"]) if r["type"] in (rules.VPC, rules.FLOW_LOG, rules.FIREWALL,
                                                                   rules.FIREWALL_LOGGING)]
    vpc_urn = urn_of("dev", one(resources, rules.VPC))
    firewall_urn = urn_of("dev", one(resources, rules.FIREWALL))

    def request(with_dependencies: bool) -> Any:
        analyzed = []
        for r in resources:
            props = dict(r["inputs"], id=UNKNOWN_STRING_VALUE, arn=UNKNOWN_STRING_VALUE)
            deps = {}
            if r["type"] == rules.FLOW_LOG:
                props["vpcId"] = UNKNOWN_STRING_VALUE
                if with_dependencies:
                    deps["vpcId"] = proto.AnalyzerPropertyDependencies(urns=[vpc_urn])
            if r["type"] == rules.FIREWALL_LOGGING:
                props["firewallArn"] = UNKNOWN_STRING_VALUE
                deps["firewallArn"] = proto.AnalyzerPropertyDependencies(urns=[firewall_urn])
            analyzed.append(proto.AnalyzerResource(type=r["type"], properties=_struct(props), urn=urn_of("dev", r),
                                                   name=r["name"], propertyDependencies=deps))
        return proto.AnalyzeStackRequest(resources=analyzed)

    servicer = _servicer(pack, "dev")
    assert list(servicer.AnalyzeStack(request(True), None).diagnostics) == []
    diagnostics = list(servicer.AnalyzeStack(request(False), None).diagnostics)
    assert [(d.policyName, d.urn) for d in diagnostics] == [("vpc-flow-logs", vpc_urn)]


def test_current_stack_comes_from_pulumi_then_the_environment(monkeypatch):
    import pulumi

    monkeypatch.setattr(pulumi, "get_stack", lambda: "prod")
    assert adapt.current_stack() == "prod"
    monkeypatch.setattr(pulumi, "get_stack", lambda: "stack")  # an unconfigured runtime's answer
    monkeypatch.setenv("PULUMI_STACK", "prod-eu")
    assert adapt.current_stack() == "prod-eu"


def test_plain_unwraps_proxies_and_unknowns():
    from pulumi_policy.proxy import unknown_checking_proxy

    proxied = unknown_checking_proxy({"a": [1, {"b": UNKNOWN_STRING_VALUE}], "c": "x"})
    assert adapt.plain(proxied) == {"a": [1, {"b": UNKNOWN}], "c": "x"}
