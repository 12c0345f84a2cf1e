"""IIS logs to CloudWatch Logs through the Amazon CloudWatch agent, installed and configured by SSM.

The configuration against the agent's own JSON schema: tests/iis/test_agent_config_schema.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from botocore.loaders import Loader

from components.iis.agent_config import (
    HTTPERR_TIMESTAMP_FORMAT,
    agent_config,
    agent_config_json,
    httperr_log_group_name,
)
from components.iis.log_shipping import AGENT_SCHEDULE
from components.iis.rate_control import association_max_errors
from conftest import Planned, plan_stack


def _entries(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config["logs"]["logs_collected"]["files"]["collect_list"]


def test_agent_config_ships_the_w3c_logs_and_the_http_sys_error_log() -> None:
    iis, httperr = _entries(agent_config("/flexnet-beacon/dev/iis"))
    assert iis == {
        "file_path": "C:\\inetpub\\logs\\LogFiles\\W3SVC*\\u_ex*.log",
        "log_group_name": "/flexnet-beacon/dev/iis",
        "log_stream_name": "{instance_id}",
        "encoding": "utf-8",
    }, "the W3C entry is unchanged: ops readiness reads its streams as they are"
    assert httperr == {
        "file_path": "C:\\Windows\\System32\\LogFiles\\HTTPERR\\httperr*.log",
        "log_group_name": "/flexnet-beacon/dev/httperr",
        "log_stream_name": "{instance_id}",
        "encoding": "utf-8",
        "timestamp_format": "%Y-%m-%d %H:%M:%S",
        "timezone": "UTC",
    }


def test_the_http_sys_error_log_never_goes_to_the_readiness_group() -> None:
    """HTTPERR lines have a #Fields: line of their own without crt-* fields or cs-uri-stem: in the
    IIS group (any stream) the readiness model would count every one as a request without a
    certificate, a phantom device per client address."""
    assert httperr_log_group_name("/flexnet-beacon/prod/iis") == "/flexnet-beacon/prod/httperr"
    assert httperr_log_group_name("/flexnet-beacon/prod/iis/") == "/flexnet-beacon/prod/httperr"
    assert _entries(agent_config("/a/iis", httperr_log_group="/a/errors"))[1]["log_group_name"] == "/a/errors"
    with pytest.raises(ValueError, match="its own log group"):
        agent_config("/flexnet-beacon/dev/iis", httperr_log_group="/flexnet-beacon/dev/iis")


# The agent turns timestamp_format into a regex by replacing each strftime directive
# (aws/amazon-cloudwatch-agent internal/util/timestamp/timestamp.go: FormatRegexMap, BuildRegex,
# which also escapes regex characters and strips a leading \s{0,1}); these are the directives used.
AGENT_REGEX_ESCAPED = set("^.*?+|[](){}$")
AGENT_DIRECTIVE_REGEX = {"%Y": r"\d{4}", "%m": r"\s{0,1}\d{1,2}", "%d": r"\s{0,1}\d{1,2}", "%H": r"\d{2}", "%M": r"\d{2}", "%S": r"\d{2}"}

# HTTP.sys error log lines: Microsoft's examples ("Format of the HTTP Server API Error Logs") and the
# shape current Windows Server writes, with its directives and the streamid field.
HTTPERR_LINES = [
    ("2002-07-05 18:45:09 172.31.77.6 2094 172.31.77.6 80 HTTP/1.1 GET /qos/1kbfile.txt 503 - ConnLimit", dt.datetime(2002, 7, 5, 18, 45, 9)),
    ("2026-06-01 10:00:03 203.0.113.7 51234 10.0.1.10 443 - - - - - - Timer_ConnectionIdle -", dt.datetime(2026, 6, 1, 10, 0, 3)),
    ("2026-06-01 23:59:59 198.51.100.9 51000 10.0.1.10 443 HTTP/1.1 GET /ManageSoftDL/x - 400 - BadRequest -", dt.datetime(2026, 6, 1, 23, 59, 59)),
]
HTTPERR_DIRECTIVES = [
    "#Software: Microsoft HTTP API 2.0",
    "#Version: 1.0",
    "#Fields: date time c-ip c-port s-ip s-port cs-version cs-method cs-uri streamid sc-status s-siteid s-reason s-queuename",
]


def _agent_regex(fmt: str) -> re.Pattern[str]:
    used = re.findall(r"%-?[A-Za-z]", fmt)
    assert set(used) <= set(AGENT_DIRECTIVE_REGEX), f"extend AGENT_DIRECTIVE_REGEX from the agent's FormatRegexMap for {used}"
    pattern = "".join("\\" + c if c in AGENT_REGEX_ESCAPED else c for c in fmt)  # RegexEscapeMap
    for directive, regex in AGENT_DIRECTIVE_REGEX.items():
        pattern = pattern.replace(directive, regex)
    return re.compile("(" + pattern.removeprefix(r"\s{0,1}") + ")")


@pytest.mark.parametrize("line,expected", HTTPERR_LINES)
def test_the_httperr_timestamp_format_reads_the_utc_date_and_time_of_each_line(line: str, expected: dt.datetime) -> None:
    found = _agent_regex(HTTPERR_TIMESTAMP_FORMAT).search(line)
    assert found is not None and found.start() == 0, "the first two fields, date and time"
    # The agent parses the match with the Go layout of the same directives, in timezone UTC.
    assert dt.datetime.strptime(found.group(1), HTTPERR_TIMESTAMP_FORMAT) == expected
    assert _entries(agent_config("/g/iis"))[1]["timezone"] == "UTC", "HTTP.sys writes date and time in UTC"


@pytest.mark.parametrize("line", HTTPERR_DIRECTIVES)
def test_directive_lines_have_no_timestamp_and_take_the_previous_one(line: str) -> None:
    assert _agent_regex(HTTPERR_TIMESTAMP_FORMAT).search(line) is None


def test_agent_config_json_is_deterministic() -> None:
    assert agent_config_json("/g/iis") == agent_config_json("/g/iis")
    assert json.loads(agent_config_json("/g/iis")) == agent_config("/g/iis")


# --- the schedule ---------------------------------------------------------------------------------

_RATE = re.compile(r"rate\((?P<n>[1-9][0-9]*) (?P<unit>minute|minutes|hour|hours|day|days)\)")
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}


def association_rate_minutes(expression: str) -> int:
    """The interval of an association rate expression, or ValueError. AWS Systems Manager User
    Guide, "Reference: Cron and rate expressions for Systems Manager": a singular unit for 1 and a
    plural one above; "Associations support the following rate expressions: intervals of 30
    minutes or greater and less than 31 days"."""
    m = _RATE.fullmatch(expression)
    if not m:
        raise ValueError(f"{expression!r} is not rate(N unit)")
    n, unit = int(m["n"]), m["unit"]
    if (n == 1) != (not unit.endswith("s")):
        raise ValueError(f"{expression!r}: the unit is singular for 1 and plural otherwise")
    minutes = n * _UNIT_MINUTES[unit.rstrip("s")]
    if not 30 <= minutes < 31 * 1440:
        raise ValueError(f"{expression!r}: associations take 30 minutes or more and less than 31 days")
    return minutes


@pytest.mark.parametrize("expression", ["rate(15 minutes)", "rate(29 minutes)", "rate(31 days)", "rate(1 hours)", "rate(5 hour)", "rate(0 days)", "cron(0/30 * * * ? *)"])
def test_the_rate_check_refuses_what_state_manager_refuses(expression: str) -> None:
    with pytest.raises(ValueError):
        association_rate_minutes(expression)


def test_the_schedule_is_the_shortest_an_association_accepts() -> None:
    assert association_rate_minutes(AGENT_SCHEDULE) == 30
    assert association_rate_minutes("rate(1 hour)") == 60 and association_rate_minutes("rate(30 days)") == 43200


def test_the_schedule_matches_the_ssm_api_model() -> None:
    """botocore's ssm model: ScheduleExpression is a string of 1..256 characters (no pattern: the
    30-minute floor is the User Guide's, checked above), and ApplyOnlyAtCronInterval is not for
    rate expressions, so a rate association runs at creation."""
    shapes = Loader().load_service_model("ssm", "service-2")["shapes"]
    request = shapes["CreateAssociationRequest"]["members"]
    schedule = shapes[request["ScheduleExpression"]["shape"]]
    assert schedule["type"] == "string" and schedule["min"] <= len(AGENT_SCHEDULE) <= schedule["max"]
    assert "isn't supported for rate expressions" in request["ApplyOnlyAtCronInterval"]["documentation"]
    assert "runs it immediately after it is created" in request["ApplyOnlyAtCronInterval"]["documentation"]


# --- the resources --------------------------------------------------------------------------------


@pytest.mark.parametrize("stack,protected", [("dev", False), ("prod", True)])
def test_resources(stack: str, protected: bool, request: pytest.FixtureRequest) -> None:
    p: Planned = request.getfixturevalue(stack)
    group = p.one("cloudwatch/logGroup:LogGroup", "iis-logs-group")
    assert group.inputs["name"] == f"/flexnet-beacon/{stack}/iis" == p.outputs["logGroups"]["iis"]
    assert group.inputs["retentionInDays"] == 90 and group.retain_on_delete is protected
    httperr = p.one("cloudwatch/logGroup:LogGroup", "iis-logs-httperr-group")
    assert httperr.inputs["name"] == f"/flexnet-beacon/{stack}/httperr"
    assert httperr.retain_on_delete is protected
    for key in ("retentionInDays", "kmsKeyId"):
        assert httperr.inputs.get(key) == group.inputs.get(key), key
    parameter = p.one("ssm/parameter:Parameter", "iis-logs-agent-config")
    assert parameter.inputs["name"] == f"/flexnet-beacon/{stack}/cloudwatch-agent" and parameter.inputs["type"] == "String"
    assert json.loads(parameter.inputs["insecureValue"]) == agent_config(f"/flexnet-beacon/{stack}/iis")
    beacons = sorted(b["instanceId"] for b in p.outputs["beacons"])
    install_resource = p.one("ssm/association:Association", "iis-logs-install")
    install = install_resource.inputs
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
        assert assoc["maxConcurrency"] == "1" and assoc["maxErrors"] == association_max_errors(len(beacons))
        # At creation (as the converge association), then every 30 minutes: a failed or
        # interrupted first run is retried within half an hour, not a day or a week later.
        assert assoc["applyOnlyAtCronInterval"] is False and assoc["scheduleExpression"] == "rate(30 minutes)"
    mtls = p.one("ssm/association:Association", "mtls-association").inputs
    assert mtls["applyOnlyAtCronInterval"] is False
    assert {parameter.urn, install_resource.urn, group.urn, httperr.urn} <= set(configure_resource.dependencies)
    # The beacon role may read the parameter (stack prefix) and write the IIS group.
    policy = json.loads(p.one("iam/rolePolicy:RolePolicy", "beacon-1-stack-read").inputs["policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["ReadStackParameters"]["Resource"] == f"arn:aws:ssm:us-east-1:123456789012:parameter/flexnet-beacon/{stack}/*"
    assert f"arn:aws:logs:us-east-1:123456789012:log-group:/flexnet-beacon/{stack}/iis:*" in statements["WriteBeaconLogs"]["Resource"]
    # The logs endpoint of the region is allowlisted for the agent.
    assert "logs.us-east-1.amazonaws.com" in p.outputs["egressAllowlist"]["aws-endpoints"]


def test_the_beacon_role_may_write_the_httperr_group(dev: Planned) -> None:
    policy = json.loads(dev.one("iam/rolePolicy:RolePolicy", "beacon-1-stack-read").inputs["policy"])
    resources = {s["Sid"]: s for s in policy["Statement"]}["WriteBeaconLogs"]["Resource"]
    group = "arn:aws:logs:us-east-1:123456789012:log-group:/flexnet-beacon/dev/httperr"
    assert group in resources and f"{group}:*" in resources


def test_the_httperr_group_is_a_stack_output(dev: Planned) -> None:
    assert dev.outputs["logGroups"]["httperr"] == "/flexnet-beacon/dev/httperr"


def test_a_changed_configuration_updates_the_configure_association(dev: Planned, prod: Planned) -> None:
    names = {p.one("ssm/association:Association", "iis-logs-configure").inputs["associationName"] for p in (dev, prod)}
    assert len(names) == 2, "the configuration (its log groups) differs, so the name (and a run) differs"
    assert all(name.startswith("flexnet-beacon-") and len(name) <= 128 for name in names)


def test_retention_from_config() -> None:
    p = plan_stack("dev", {"iisLogRetentionDays": 30})
    assert p.one("cloudwatch/logGroup:LogGroup", "iis-logs-group").inputs["retentionInDays"] == 30
    assert p.one("cloudwatch/logGroup:LogGroup", "iis-logs-httperr-group").inputs["retentionInDays"] == 30
