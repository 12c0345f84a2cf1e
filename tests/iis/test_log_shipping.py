"""IIS logs to CloudWatch Logs through the Amazon CloudWatch agent, installed and configured by SSM."""

from __future__ import annotations

import json

import pytest

from components.iis.agent_config import agent_config, agent_config_json
from components.iis.rate_control import association_max_errors
from conftest import Planned, plan_stack

# The agent configuration file's documented keys (Amazon CloudWatch User Guide, "Manually create
# or edit the CloudWatch agent configuration file": logs section and collect_list entries).
DOCUMENTED = {
    (): {"agent", "metrics", "logs", "traces"},
    ("logs",): {"logs_collected", "metrics_collected", "log_stream_name", "force_flush_interval", "credentials", "endpoint_override", "concurrency"},
    ("logs", "logs_collected"): {"files", "windows_events"},
    ("logs", "logs_collected", "files"): {"collect_list"},
    ("logs", "logs_collected", "files", "collect_list", "[]"): {
        "file_path", "auto_removal", "log_group_name", "log_group_class", "log_stream_name", "retention_in_days", "filters",
        "timezone", "timestamp_format", "multi_line_start_pattern", "encoding", "backpressure_mode", "trim_timestamp",
    },
}


def _check(node, path=()) -> list[str]:
    problems = []
    if isinstance(node, dict):
        allowed = DOCUMENTED.get(path)
        if allowed is None:
            return [f"{'/'.join(path)}: no documented keys known here"]
        problems += [f"{'/'.join(path) or '(top)'}: undocumented key {k!r}" for k in node if k not in allowed]
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                problems += _check(value, path + (key,))
    elif isinstance(node, list):
        for item in node:
            problems += _check(item, path + ("[]",))
    return problems


def test_agent_config_uses_only_documented_keys() -> None:
    config = agent_config("/flexnet-beacon/dev/iis")
    assert _check(config) == []
    assert _check({"logs": {"logs_collected": {"files": {"collect_list": [{"file_path": "x", "log_group": "y"}]}}}}) == [
        "logs/logs_collected/files/collect_list/[]: undocumented key 'log_group'"
    ], "the check itself catches a misspelt key"
    (entry,) = config["logs"]["logs_collected"]["files"]["collect_list"]
    assert entry["file_path"] == "C:\\inetpub\\logs\\LogFiles\\W3SVC*\\u_ex*.log"
    assert entry["log_stream_name"] == "{instance_id}" and entry["encoding"] == "utf-8"


def test_agent_config_json_is_deterministic() -> None:
    assert agent_config_json("/g") == agent_config_json("/g")
    assert json.loads(agent_config_json("/g")) == agent_config("/g")


@pytest.mark.parametrize("stack,protected", [("dev", False), ("prod", True)])
def test_resources(stack: str, protected: bool, request: pytest.FixtureRequest) -> None:
    p: Planned = request.getfixturevalue(stack)
    group = p.one("cloudwatch/logGroup:LogGroup", "iis-logs-group")
    assert group.inputs["name"] == f"/flexnet-beacon/{stack}/iis" == p.outputs["logGroups"]["iis"]
    assert group.inputs["retentionInDays"] == 90 and group.retain_on_delete is protected
    parameter = p.one("ssm/parameter:Parameter", "iis-logs-agent-config")
    assert parameter.inputs["name"] == f"/flexnet-beacon/{stack}/cloudwatch-agent" and parameter.inputs["type"] == "String"
    assert json.loads(parameter.inputs["insecureValue"]) == agent_config(f"/flexnet-beacon/{stack}/iis")
    beacons = sorted(b["instanceId"] for b in p.outputs["beacons"])
    install = p.one("ssm/association:Association", "iis-logs-install").inputs
    assert install["name"] == "AWS-ConfigureAWSPackage"
    assert install["parameters"] == {"action": "Install", "name": "AmazonCloudWatchAgent"}
    configure_resource = p.one("ssm/association:Association", "iis-logs-configure")
    configure = configure_resource.inputs
    assert configure["name"] == "AmazonCloudWatch-ManageAgent"
    assert configure["parameters"] == {"action": "configure", "mode": "ec2", "optionalConfigurationSource": "ssm",
                                       "optionalConfigurationLocation": parameter.inputs["name"], "optionalRestart": "yes"}
    for assoc in (install, configure):
        (target,) = assoc["targets"]
        assert target["key"] == "InstanceIds" and sorted(target["values"]) == beacons
        assert assoc["maxConcurrency"] == "1" and assoc["applyOnlyAtCronInterval"] is False
        assert assoc["maxErrors"] == association_max_errors(len(beacons))
    assert {parameter.urn, p.one("ssm/association:Association", "iis-logs-install").urn} <= set(configure_resource.dependencies)
    # The beacon role may read the parameter (stack prefix) and write the group.
    policy = json.loads(p.one("iam/rolePolicy:RolePolicy", "beacon-1-stack-read").inputs["policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["ReadStackParameters"]["Resource"] == f"arn:aws:ssm:us-east-1:123456789012:parameter/flexnet-beacon/{stack}/*"
    assert f"arn:aws:logs:us-east-1:123456789012:log-group:/flexnet-beacon/{stack}/iis:*" in statements["WriteBeaconLogs"]["Resource"]
    # The logs endpoint of the region is allowlisted for the agent.
    assert "logs.us-east-1.amazonaws.com" in p.outputs["egressAllowlist"]["aws-endpoints"]


def test_a_changed_configuration_updates_the_configure_association(dev: Planned, prod: Planned) -> None:
    names = {p.one("ssm/association:Association", "iis-logs-configure").inputs["associationName"] for p in (dev, prod)}
    assert len(names) == 2, "the configuration (its log group) differs, so the name (and a run) differs"
    assert all(name.startswith("flexnet-beacon-") and len(name) <= 128 for name in names)


def test_retention_from_config() -> None:
    p = plan_stack("dev", {"iisLogRetentionDays": 30})
    assert p.one("cloudwatch/logGroup:LogGroup", "iis-logs-group").inputs["retentionInDays"] == 30
