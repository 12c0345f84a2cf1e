"""BeaconMtls under mocks: SSM document, association, and rule changes that never touch instances."""

from __future__ import annotations

import base64
import json
import re

import pytest

from components.iis.document import DOCUMENT_CONTENT_LIMIT, canonical_state, command_document, run_command
from conftest import Planned, plan_stack

HOSTILE = [
    "'; Remove-Item C:\\ -Recurse; '",
    '"; $(Stop-Computer) "',
    "`$(calc)`",
    "line1\nline2",
    "'@\n$x = 1\n@'",
    '"@\nStop-Computer\n@"',
    "ünïcødé ✓ ‮evil",
    "${env:COMPUTERNAME}",
]


def document_of(p: Planned) -> dict:
    return json.loads(p.one("ssm/document:Document").inputs["content"])


def test_document_shape(dev: Planned) -> None:
    resource = dev.one("ssm/document:Document").inputs
    assert resource["documentType"] == "Command"
    assert resource["documentFormat"] == "JSON"
    assert resource["targetType"] == "/AWS::EC2::Instance"
    assert len(resource["content"].encode()) <= DOCUMENT_CONTENT_LIMIT
    doc = json.loads(resource["content"])
    assert doc["schemaVersion"] == "2.2"
    (step,) = doc["mainSteps"]
    assert step["action"] == "aws:runPowerShellScript"
    assert step["precondition"] == {"StringEquals": ["platformType", "Windows"]}
    assert step["inputs"]["timeoutSeconds"] == "1800"
    assert doc["parameters"]["ReportOnly"]["allowedValues"] == ["true", "false"]


def test_document_carries_state_as_base64_data(prod: Planned) -> None:
    lines = document_of(prod)["mainSteps"][0]["inputs"]["runCommand"]
    state_lines = [line for line in lines if line.startswith("$stateBase64 = ")]
    assert len(state_lines) == 1
    match = re.fullmatch(r"\$stateBase64 = '([A-Za-z0-9+/=]*)'", state_lines[0])
    assert match, "the state literal must be pure base64"
    state = json.loads(base64.b64decode(match.group(1)))
    assert state["stack"] == "prod"
    assert state["authentication"]["clientCertificateMapping"]["manyToOneMappings"][0]["rules"][0]["matchCriteria"] == "Example Device Issuing CA"


def test_association(prod: Planned) -> None:
    assoc = prod.one("ssm/association:Association").inputs
    document = prod.one("ssm/document:Document")
    assert assoc["name"].startswith("mtls-document")
    assert assoc["documentVersion"] == "1"
    assert assoc["scheduleExpression"] == "rate(30 minutes)"
    assert assoc["applyOnlyAtCronInterval"] is False
    assert assoc["complianceSeverity"] == "HIGH"
    assert assoc["associationName"] == "flexnet-beacon-prod-mtls"
    (target,) = assoc["targets"]
    assert target["key"] == "InstanceIds"
    assert sorted(target["values"]) == sorted(b["instanceId"] for b in prod.outputs["beacons"])
    assert assoc["parameters"]["ReportOnly"] == "false"
    assert re.fullmatch(r"[0-9a-f]{64}", assoc["parameters"]["StateDigest"])
    assert prod.outputs["mtls"]["stateDigest"] == assoc["parameters"]["StateDigest"]
    assert document.parent.endswith("BeaconMtls::mtls")


def test_schedule_severity_report_only_from_config() -> None:
    p = plan_stack("dev", {"convergeSchedule": "rate(2 hours)", "complianceSeverity": "CRITICAL", "convergeReportOnly": "true", "convergeTimeoutSeconds": 600})
    assoc = p.one("ssm/association:Association").inputs
    assert assoc["scheduleExpression"] == "rate(2 hours)"
    assert assoc["complianceSeverity"] == "CRITICAL"
    assert assoc["parameters"]["ReportOnly"] == "true"
    assert document_of(p)["mainSteps"][0]["inputs"]["timeoutSeconds"] == "600"


def test_converge_log_group_and_role_may_write_it(dev: Planned) -> None:
    group = dev.one("cloudwatch/logGroup:LogGroup", "mtls-logs").inputs
    assert group["name"] == "/flexnet-beacon/dev/converge"
    policy = json.loads(dev.one("iam/rolePolicy:RolePolicy", "beacon-1-stack-read").inputs["policy"])
    statement = next(s for s in policy["Statement"] if s["Sid"] == "WriteConvergeReports")
    assert statement["Resource"][0].endswith(":log-group:/flexnet-beacon/dev/converge")


def _instances(p: Planned) -> dict[str, dict]:
    return {r.name: r.inputs for r in p.of_type("ec2/instance:Instance")}


@pytest.mark.parametrize(
    "change",
    [
        {"extraMappingRules": ["Subject.O=Other Corp"]},
        {"denyMappingRules": ["Subject.OU=Contractors"]},
        {"clientCaCertificates": ["stacks/certs/dev-devices-ca.pem", "stacks/certs/prod-device-ca-chain.pem"]},
        {"serverCertificateSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:flexnet-beacon/prod/new-pfx-Zz9Zz9",
         "serverCertificatePasswordSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:flexnet-beacon/prod/new-pw-Zz9Zz9"},
        {"revocationChecking": "false", "exclusiveClientTrust": "false", "clientAuthTrustMode": 1},
        {"mappedAccountName": "Agents2"},
    ],
    ids=["extra-rule", "deny-rule", "more-cas", "new-certificate", "httpsys-flags", "account"],
)
def test_rule_ca_or_certificate_change_never_touches_instances(prod: Planned, change: dict) -> None:
    changed = plan_stack("prod", change)
    assert _instances(changed) == _instances(prod), "a beacon would be updated or replaced"
    assert changed.one("ssm/document:Document").inputs["content"] != prod.one("ssm/document:Document").inputs["content"]
    before = prod.one("ssm/association:Association").inputs["parameters"]["StateDigest"]
    after = changed.one("ssm/association:Association").inputs["parameters"]["StateDigest"]
    assert before != after, "the association must change so State Manager re-runs it"


def test_user_data_is_static_and_small(dev: Planned, prod: Planned) -> None:
    dev_ud = dev.one("ec2/instance:Instance").inputs["userData"]
    assert dev_ud.startswith("<powershell>") and dev_ud.rstrip().endswith("</powershell>")
    assert len(dev_ud.encode()) <= 4096
    assert {i["userData"] for i in _instances(prod).values()} == {dev_ud}


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_values_change_only_the_base64_literal(tmp_path, hostile: str) -> None:
    """Only the data line differs between a plain and a hostile state; its alphabet is base64."""
    plain_state = {"site": {"name": "Default Web Site"}, "x": "plain"}
    hostile_state = {"site": {"name": hostile}, "x": hostile}
    script = "[CmdletBinding()] param([string]$EncodedState, [switch]$ReportOnly)\nWrite-Output 'ok'\n"
    plain = run_command(script, plain_state)
    evil = run_command(script, hostile_state)
    assert len(plain) == len(evil)
    differing = [i for i, (a, b) in enumerate(zip(plain, evil)) if a != b]
    assert differing == [1]
    assert re.fullmatch(r"\$stateBase64 = '[A-Za-z0-9+/=]+'", evil[1])
    assert json.loads(base64.b64decode(evil[1].split("'")[1])) == json.loads(canonical_state(hostile_state))
    doc = command_document(script, hostile_state, 60)
    assert hostile not in json.dumps(doc, ensure_ascii=False)


def _shape(text: str) -> list[str]:
    from tests import ps_lint

    tree = ps_lint.parse(text)
    assert not ps_lint.defects(tree)
    return [node.type for node in ps_lint.walk(tree.root_node)]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_state_leaves_the_syntax_tree_of_the_real_document_unchanged(prod: Planned, hostile: str) -> None:
    """Every string of the real prod state replaced by a hostile one: the parsed tree keeps its shape."""
    from components.iis.document import read_converge_script

    state = json.loads(base64.b64decode(next(
        line for line in document_of(prod)["mainSteps"][0]["inputs"]["runCommand"] if line.startswith("$stateBase64")
    ).split("'")[1]))

    def poison(value):
        if isinstance(value, dict):
            return {k: poison(v) for k, v in value.items()}
        if isinstance(value, list):
            return [poison(v) for v in value]
        return hostile if isinstance(value, str) else value

    script = read_converge_script()
    assert _shape("\n".join(run_command(script, state))) == _shape("\n".join(run_command(script, poison(state))))


def test_document_over_the_size_limit_is_a_config_error_before_any_resource(tmp_path) -> None:
    from components.config import ConfigInvalid
    from components.stack import prepare
    from test_iis_state import make_cert, write

    ca, ca_key = make_cert("Devices CA")
    devices = [write(tmp_path / f"d{i}.pem", make_cert(f"laptop-{i}", "Devices CA", ca_key, ca=False)[0]) for i in range(40)]
    raw = {
        "clientCaCertificates": json.dumps([write(tmp_path / "ca.pem", ca)]),
        "crlUrls": '["http://crl.example.com/d.crl"]',
        "mappingMode": "one-to-one",
        "oneToOneCertificates": json.dumps(devices),
    }
    with pytest.raises(ConfigInvalid) as raised:
        prepare(raw, "dev", "us-east-1", base=tmp_path)
    (issue,) = raised.value.issues
    assert issue.key == "oneToOneCertificates" and "65536-byte limit" in issue.expected
    assert prepare({**raw, "oneToOneCertificates": json.dumps(devices[:3])}, "dev", "us-east-1", base=tmp_path).iis_state
