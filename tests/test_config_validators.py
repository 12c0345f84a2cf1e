"""The per-concern validators of the stack configuration (components/config_checks.py), through
the public `components.config.validate()`: each concern reports a bad value with its key, the
value and the expectation, passes a good one, and the concerns report in a fixed order.

Every config starts from stacks/Pulumi.dev.yaml (valid as it is) with a few keys overridden.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import PROJECT, ConfigIssue, load, validate
from conftest import stack_raw

ARN = "arn:aws:{service}:{region}:123456789012:{resource}"
DEV_SECRET = ARN.format(service="secretsmanager", region="us-east-1", resource="secret:flexnet-beacon/dev/server-pfx-AbCdEf")
DEV_PASSWORD = ARN.format(service="secretsmanager", region="us-east-1", resource="secret:flexnet-beacon/dev/pfx-password-AbCdEf")
PROD_SECRET = ARN.format(service="secretsmanager", region="us-east-1", resource="secret:flexnet-beacon/prod/server-pfx-AbCdEf")


def j(value: Any) -> str:
    return json.dumps(value)


def dev_issues(overrides: dict[str, str], region: str | None = "us-east-1") -> list[ConfigIssue]:
    raw, _ = stack_raw("dev")
    raw.update(overrides)
    return validate(raw, "dev", region)


def test_the_dev_stack_file_is_valid_as_it_is():
    assert dev_issues({}) == []


# --- bad: each override yields exactly these (key, value, part of the expectation) ----------

def bad(id_: str, overrides: dict[str, str], *expected: tuple[str, Any, str]):
    return pytest.param(overrides, list(expected), id=id_)


BAD = [
    # network
    bad("network-vpc-too-small", {"vpcCidr": "10.80.0.0/25"}, ("vpcCidr", "10.80.0.0/25", "a prefix between /16 (AWS maximum) and /24")),
    bad("network-zone-of-other-region", {"azCount": "2", "availabilityZones": j(["us-east-1a", "eu-west-1b"])},
        ("availabilityZones", "eu-west-1b", "a zone of the stack's region, like us-east-1a")),
    bad("network-vpc-overlaps-avoided", {"avoidCidrs": j(["10.80.2.0/24"])},
        ("vpcCidr", "10.80.0.0/22", "a range that does not overlap avoidCidrs entry 10.80.2.0/24")),
    # beacons
    bad("beacons-graviton", {"instanceType": "m7g.large"}, ("instanceType", "m7g.large", "Windows Server does not run on Graviton")),
    bad("beacons-hostnames-per-beacon", {"beaconCount": "2", "beaconHostnames": j(["a.example.com"])},
        ("beaconHostnames", ["a.example.com"], "one host name per beacon (beaconCount = 2)")),
    bad("beacons-ami", {"amiId": "ami-xyz"}, ("amiId", "ami-xyz", "an AMI id like ami-0123456789abcdef0")),
    # egress
    bad("egress-port-range", {"egressPorts": j([443, 70000])}, ("egressPorts", 70000, "a TCP port from 1 to 65535")),
    bad("egress-ldap-crl", {"crlUrls": j(["ldap://ca.example.com/cn=ca"])}, ("crlUrls", "ldap://ca.example.com/cn=ca", "ldap:// CDPs cannot pass")),
    bad("egress-unknown-group", {"egressDisabledGroups": j(["dns"])}, ("egressDisabledGroups", "dns", "one of crl, flexera-parent, aws-endpoints, windows-update")),
    bad("egress-no-ingress", {"allowedIngressCidrs": "[]"}, ("allowedIngressCidrs", [], "at least one CIDR")),
    # operations
    bad("operations-protection", {"protection": "yes"}, ("protection", "yes", "auto, true or false")),
    bad("operations-retention", {"flowLogRetentionDays": "15"}, ("flowLogRetentionDays", 15, "a CloudWatch Logs retention in days: 1, 3, 5")),
    bad("operations-topic-region", {"alarmTopicArn": ARN.format(service="sns", region="eu-west-1", resource="alarms")},
        ("alarmTopicArn", ARN.format(service="sns", region="eu-west-1", resource="alarms"), "(in the stack's region us-east-1)")),
    bad("operations-tag", {"owner": "bob;drop"}, ("owner", "bob;drop", "a tag value of 1-256 letters")),
    # IIS site and secrets
    bad("iis-site-name", {"iisSiteName": "a/b"}, ("iisSiteName", "a/b", "an IIS site name of 1-64 characters")),
    bad("iis-secret-of-other-stack", {"serverCertificateSecretArn": PROD_SECRET, "serverCertificatePasswordSecretArn": DEV_PASSWORD},
        ("serverCertificateSecretArn", PROD_SECRET, f"a secret named under {PROJECT}/dev/")),
    bad("iis-pfx-without-password", {"serverCertificateSecretArn": DEV_SECRET},
        ("serverCertificatePasswordSecretArn", "", "set together with its partner")),
    # certificates
    bad("certificates-ca-path", {"clientCaCertificates": j(["../ca.pem"])}, ("clientCaCertificates", "../ca.pem", "relative to the project")),
    bad("certificates-bucket", {"crlHosting": "s3", "crlBucketName": "My.Bucket"}, ("crlBucketName", "My.Bucket", "an S3 bucket name of 3-63")),
    bad("certificates-one-to-one-empty", {"mappingMode": "one-to-one"},
        ("oneToOneCertificates", [], "at least one device certificate file when mappingMode is one-to-one")),
    bad("certificates-rule", {"extraMappingRules": j(["Subject.XX=x"])}, ("extraMappingRules", "Subject.XX=x", "sub-field is one of CN, OU")),
    # mapped account
    bad("mapped-account-domain-incomplete", {"mappedAccountType": "domain"},
        ("mappedAccountDomain", "", "the account's domain (NetBIOS name or DNS name)"),
        ("mappedAccountPasswordSecretArn", "", "when mappedAccountType is domain")),
    bad("mapped-account-name", {"mappedAccountName": "x" * 21}, ("mappedAccountName", "x" * 21, "a Windows user name of 1-20 characters")),
    # converge and installer
    bad("converge-schedule", {"convergeSchedule": "rate(29 minutes)"}, ("convergeSchedule", "rate(29 minutes)", "of at least 30 minutes")),
    bad("converge-installer-hash", {"beaconInstallerS3Uri": "s3://bucket/installer.msi", "beaconInstallerSha256": "abc"},
        ("beaconInstallerSha256", "abc", "64 hex digits")),
    bad("converge-timeout", {"convergeTimeoutSeconds": "59"}, ("convergeTimeoutSeconds", 59, "an integer from 60 to 172800")),
]


@pytest.mark.parametrize("overrides, expected", BAD)
def test_bad_value_is_reported_with_key_value_and_expectation(overrides, expected):
    issues = dev_issues(overrides)
    assert [(i.key, i.value) for i in issues] == [(key, value) for key, value, _ in expected], [str(i) for i in issues]
    for issue, (key, _, expectation) in zip(issues, expected):
        assert expectation in issue.expected, str(issue)
        assert str(issue).startswith(f"{key}: got ")


# --- good: each concern's keys set to valid, non-default values -----------------------------

GOOD = {
    "network": {"vpcCidr": "172.16.0.0/20", "azCount": "3", "availabilityZones": j(["us-east-1a", "us-east-1b", "us-east-1d"]),
                "avoidCidrs": j(["10.0.0.0/8"])},
    "beacons": {"beaconCount": "2", "beaconHostnames": j(["Beacon1.example.com", "beacon2.example.com"]), "instanceType": "c6i.xlarge",
                "rootVolumeGb": "100", "amiId": "ami-0123456789abcdef0"},
    "egress": {"allowedIngressCidrs": j(["203.0.113.0/24"]), "allowHttp": "true", "egressPorts": "[80, 443]",
               "crlUrls": j(["http://crl.example.com/ca.crl"]), "crlDomains": j([".pki.example.com"]),
               "egressDisabledGroups": j(["windows-update"])},
    "operations": {"protection": "auto", "flowLogRetentionDays": "30", "firewallLogRetentionDays": "3653",
                   "logKmsKeyArn": ARN.format(service="kms", region="us-east-1", resource="key/1234abcd"),
                   "permissionsBoundaryArn": ARN.format(service="iam", region="", resource="policy/boundary"),
                   "alarmTopicArn": ARN.format(service="sns", region="us-east-1", resource="alarms"), "owner": "Zoë @ platform", "costCentre": "CC-1/ops"},
    "iis": {"iisSiteName": "Beacon Site", "serverCertificateSecretArn": DEV_SECRET, "serverCertificatePasswordSecretArn": DEV_PASSWORD},
    "certificates": {"crlHosting": "s3", "crlBucketName": "my-crl-bucket", "mappingMode": "one-to-one",
                     "oneToOneCertificates": j(["stacks/certs/device 1.pem"]), "clientAuthTrustMode": "1",
                     "extraMappingRules": j(["Subject.O=Example Corp"]), "denyMappingRules": j(["Subject.OU~=contractors*"])},
    "mapped-account": {"mappedAccountType": "domain", "mappedAccountName": "beacon-svc", "mappedAccountDomain": "corp.example.com",
                       "mappedAccountPasswordSecretArn": DEV_PASSWORD},
    "converge": {"convergeSchedule": "cron(0 */2 * * ? *)", "convergeTimeoutSeconds": "3600", "convergeReportOnly": "true",
                 "complianceSeverity": "LOW", "beaconInstallerS3Uri": "s3://bucket/beacon/installer.msi",
                 "beaconInstallerSha256": "AB" * 32, "beaconInstallerArguments": j(["/qn", "PROPERTY=value"])},
}


@pytest.mark.parametrize("concern", list(GOOD))
def test_good_values_of_a_concern_yield_no_issue(concern):
    assert dev_issues(GOOD[concern]) == []


def test_good_values_assemble_into_beacon_config():
    raw, region = stack_raw("dev")
    for overrides in GOOD.values():
        raw.update(overrides)
    cfg = load(raw, "dev", region)
    assert cfg.az_count == 3 and cfg.availability_zones == ("us-east-1a", "us-east-1b", "us-east-1d")
    assert cfg.beacon_hostnames == ("beacon1.example.com", "beacon2.example.com")
    assert cfg.egress_groups["crl"].extra_domains == ("crl.example.com", ".pki.example.com")
    assert cfg.egress_groups["windows-update"].enabled is False
    assert cfg.protection is False and cfg.flow_log_retention_days == 30
    assert cfg.server_certificate_secret_arn == DEV_SECRET and cfg.client_auth_trust_mode == 1
    assert cfg.mapped_account_domain == "corp.example.com"
    assert cfg.beacon_installer_sha256 == "ab" * 32 and cfg.converge_report_only is True


# --- order: unknown keys, parse errors, region, then the concerns in a fixed order -------------

def test_issues_are_reported_in_concern_order_whatever_the_key_order():
    overrides = {  # last concern first
        "convergeSchedule": "rate(5 minutes)",
        "mappedAccountName": "bad\\name",
        "sampleDeviceCertificate": "../x.pem",
        "iisSiteName": "a/b",
        "protection": "yes",
        "egressPorts": "[0]",
        "rootVolumeGb": "10",
        "azCount": "4",
        "beaconCount": "many",
        "beaconcount": "2",
    }
    keys = [i.key for i in dev_issues(overrides, region="moon-base")]
    assert keys == [
        f"{PROJECT}:beaconcount",  # unknown keys
        "beaconCount",  # parse errors
        "aws:region",
        "azCount",  # network
        "rootVolumeGb",  # beacons
        "egressPorts",  # egress
        "protection",  # operations: after egress, not with the beacons
        "iisSiteName",  # IIS site and secrets
        "sampleDeviceCertificate",  # certificates
        "mappedAccountName",  # mapped account
        "convergeSchedule",  # converge and installer
    ]


def test_a_key_that_fails_to_parse_is_not_checked_again_by_its_concern():
    issues = dev_issues({"azCount": "three", "availabilityZones": j(["us-east-1a"])})
    assert [(i.key, i.value, i.expected) for i in issues] == [("azCount", "three", "an integer")]


def test_a_bad_mapped_account_password_arn_skips_the_pfx_pairing_check():
    """The secret ARNs are checked together: any bad one (the mapped account's too) means the
    PFX/password pairing is not checked, so only the bad ARN is reported."""
    issues = dev_issues({"serverCertificateSecretArn": DEV_SECRET, "mappedAccountPasswordSecretArn": PROD_SECRET})
    assert [i.key for i in issues] == ["mappedAccountPasswordSecretArn"]
    assert [i.key for i in dev_issues({"serverCertificateSecretArn": DEV_SECRET})] == ["serverCertificatePasswordSecretArn"]


def test_an_exe_installer_needs_its_unattended_arguments() -> None:
    from components import config

    base = {"beaconInstallerS3Uri": "s3://beacon-media/flexnet/setup.exe", "beaconInstallerSha256": "a" * 64}
    issues = config.validate(base, "dev", "us-east-1")
    assert [(i.key, i.value) for i in issues] == [("beaconInstallerArguments", [])]
    assert "unattended" in issues[0].expected
    assert config.validate({**base, "beaconInstallerArguments": '["/S", "/v/qn"]'}, "dev", "us-east-1") == []
    msi = {**base, "beaconInstallerS3Uri": "s3://beacon-media/flexnet/beacon.msi"}
    assert config.validate(msi, "dev", "us-east-1") == []
