"""BeaconHost under mocks: hardened instance, scoped IAM, exact security group, EIP, recovery."""

from __future__ import annotations

import json

import pytest

from components.beacon.policy import WINDOWS_2022_AMI_PARAMETER
from conftest import Planned, plan_stack
from scripts.offline import MOCK_AMI


def test_instance_hardening(prod: Planned) -> None:
    for instance in prod.of_type("ec2/instance:Instance"):
        inputs = instance.inputs
        meta = inputs["metadataOptions"]
        assert meta["httpTokens"] == "required"
        assert meta["httpPutResponseHopLimit"] == 1
        assert meta["httpEndpoint"] == "enabled"
        root = inputs["rootBlockDevice"]
        assert root["encrypted"] is True
        assert root["volumeType"] == "gp3"
        assert root["volumeSize"] == 80  # prod stack value
        assert "keyName" not in inputs, "beacons have no key pair"
        assert "associatePublicIpAddress" not in inputs, "forces replacement and reads back true once the EIP is attached"
        assert inputs["disableApiTermination"] is True  # prod
        assert inputs["instanceType"] == "m6i.large"


def test_dev_has_no_termination_protection(dev: Planned) -> None:
    assert dev.one("ec2/instance:Instance").inputs["disableApiTermination"] is False


def test_ami_from_public_parameter_is_ignored_after_create(dev: Planned) -> None:
    instance = dev.one("ec2/instance:Instance")
    assert instance.inputs["ami"] == MOCK_AMI
    assert instance.ignore_changes == ["ami", "userData"]
    assert WINDOWS_2022_AMI_PARAMETER.endswith("Windows_Server-2022-English-Full-Base")


def test_pinned_ami_is_not_ignored() -> None:
    p = plan_stack("dev", {"amiId": "ami-0123456789abcdef0"})
    instance = p.one("ec2/instance:Instance")
    assert instance.inputs["ami"] == "ami-0123456789abcdef0"
    assert instance.ignore_changes == ["userData"], "a pinned AMI is deliberate: changing the pin replaces the beacon"


def test_beacons_round_robin_over_zones() -> None:
    p = plan_stack("prod", {"beaconCount": 5})
    zones = [b["availabilityZone"] for b in p.outputs["beacons"]]
    assert zones == ["us-east-1a", "us-east-1b", "us-east-1a", "us-east-1b", "us-east-1a"]
    subnets = {s.name: s.inputs for s in p.of_type("subnet:Subnet")}
    protected_ids = p.outputs["protectedSubnetIds"]
    for i, instance in enumerate(sorted(p.of_type("ec2/instance:Instance"), key=lambda r: r.name)):
        assert instance.inputs["subnetId"] == protected_ids[[0, 1, 0, 1, 0][i]]
    assert len(subnets) == 4


def test_security_group_exactly_as_specified() -> None:
    p = plan_stack("dev", {"allowedIngressCidrs": ["203.0.113.0/24"], "egressPorts": [443, 80]})
    sg = p.one("ec2/securityGroup:SecurityGroup").inputs
    ingress = [(r["protocol"], r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in sg["ingress"]]
    assert ingress == [("tcp", 443, 443, ["203.0.113.0/24"])]
    egress = sorted((r["protocol"], r["fromPort"], r["toPort"], tuple(r["cidrBlocks"])) for r in sg["egress"])
    assert egress == sorted(
        [
            ("tcp", 80, 80, ("0.0.0.0/0",)),
            ("tcp", 443, 443, ("0.0.0.0/0",)),
            ("udp", 53, 53, ("10.80.0.2/32",)),
            ("tcp", 53, 53, ("10.80.0.2/32",)),
        ]
    )


def test_security_group_http_ingress_only_when_configured() -> None:
    sg = plan_stack("dev", {"allowHttp": "true"}).one("ec2/securityGroup:SecurityGroup").inputs
    assert sorted(r["fromPort"] for r in sg["ingress"]) == [80, 443]


def test_iam_scoped_to_this_stack(prod: Planned) -> None:
    for policy in prod.of_type("iam/rolePolicy:RolePolicy"):
        if not policy.name.endswith("-stack-read"):
            continue
        document = json.loads(policy.inputs["policy"])
        statements = {s["Sid"]: s for s in document["Statement"]}
        assert set(statements) == {"ReadStackSecrets", "DecryptStackSecrets", "ReadStackParameters", "NoParametersOutsideTheStack",
                                   "WriteBeaconLogs", "ReadSsmAgentBuckets", "ReadConvergeObjects"}
        # Through the S3 gateway endpoint SSM Agent's own buckets need an explicit grant.
        assert statements["ReadSsmAgentBuckets"]["Action"] == ["s3:GetObject"]
        assert "arn:aws:s3:::us-east-1-birdwatcher-prod/*" in statements["ReadSsmAgentBuckets"]["Resource"]
        assert all(r.startswith("arn:aws:s3:::") and r.endswith("/*") and "us-east-1" in r for r in statements["ReadSsmAgentBuckets"]["Resource"])
        assert statements["ReadStackSecrets"]["Resource"] == "arn:aws:secretsmanager:us-east-1:123456789012:secret:flexnet-beacon/prod/*"
        assert statements["ReadStackParameters"]["Resource"] == "arn:aws:ssm:us-east-1:123456789012:parameter/flexnet-beacon/prod/*"
        for sid in ("ReadStackSecrets", "ReadStackParameters"):
            assert all(a.split(":")[1].startswith(("Get", "Describe")) for a in statements[sid]["Action"])
        group = "arn:aws:logs:us-east-1:123456789012:log-group:/flexnet-beacon/prod/converge"
        iis = "arn:aws:logs:us-east-1:123456789012:log-group:/flexnet-beacon/prod/iis"
        httperr = "arn:aws:logs:us-east-1:123456789012:log-group:/flexnet-beacon/prod/httperr"
        assert statements["WriteBeaconLogs"]["Resource"] == [group, f"{group}:*", iis, f"{iis}:*", httperr, f"{httperr}:*"]
        decrypt = statements["DecryptStackSecrets"]
        assert decrypt["Action"] == "kms:Decrypt" and decrypt["Resource"] == "arn:aws:kms:us-east-1:123456789012:key/*"
        assert decrypt["Condition"] == {
            "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:SecretARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:flexnet-beacon/prod/*"},
        }
        unconditioned = [s for s in document["Statement"] if "Condition" not in s and s["Effect"] == "Allow"]
        assert all("*" not in r.split(":")[-1] or r.endswith("/*") or (r.startswith("arn:aws:logs:us-east-1:123456789012:log-group:/flexnet-beacon/prod/") and r.endswith(":*")) for s in unconditioned for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]))
    attachments = prod.of_type("iam/rolePolicyAttachment:RolePolicyAttachment")
    assert {a.inputs["policyArn"] for a in attachments} == {"arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    assert len(attachments) == 2


def test_installer_object_readable_only_when_configured() -> None:
    p = plan_stack("dev", {"beaconInstallerS3Uri": "s3://beacon-media/flexnet/FlexNet Beacon.msi", "beaconInstallerSha256": "a" * 64})
    document = json.loads(p.one("iam/rolePolicy:RolePolicy", "beacon-1-stack-read").inputs["policy"])
    statement = next(s for s in document["Statement"] if s["Sid"] == "ReadBeaconInstaller")
    assert statement == {"Sid": "ReadBeaconInstaller", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::beacon-media/flexnet/FlexNet Beacon.msi"}


def test_role_trusts_ec2_and_has_boundary_when_configured() -> None:
    arn = "arn:aws:iam::123456789012:policy/beacon-boundary"
    p = plan_stack("dev", {"permissionsBoundaryArn": arn})
    role = p.one("iam/role:Role", "beacon-1-role").inputs
    assert role["permissionsBoundary"] == arn
    trust = json.loads(role["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    profile = p.one("iam/instanceProfile:InstanceProfile").inputs
    assert profile["role"].startswith("beacon-1-role")
    instance = p.one("ec2/instance:Instance").inputs
    assert instance["iamInstanceProfile"]


def test_eip_and_outputs(prod: Planned) -> None:
    eips = prod.of_type("ec2/eip:Eip")
    assert len(eips) == 2 and all(e.inputs["domain"] == "vpc" and e.inputs["instance"].startswith("i-") for e in eips)
    for beacon in prod.outputs["beacons"]:
        assert beacon["instanceId"].startswith("i-")
        assert beacon["publicIp"].startswith("198.51.100.")
        assert beacon["agentUrls"] == {
            "download": f"https://{beacon['hostname']}/ManageSoftDL/",
            "upload": f"https://{beacon['hostname']}/ManageSoftRL/",
        }


def test_configured_hostnames_in_agent_urls() -> None:
    p = plan_stack("prod", {"beaconHostnames": ["b1.example.com", "B2.example.com"]})
    assert [b["agentUrls"]["download"] for b in p.outputs["beacons"]] == [
        "https://b1.example.com/ManageSoftDL/",
        "https://b2.example.com/ManageSoftDL/",
    ]


@pytest.mark.parametrize("topic", ["", "arn:aws:sns:us-east-1:123456789012:beacon-alarms"])
def test_recover_alarm(topic: str) -> None:
    p = plan_stack("dev", {"alarmTopicArn": topic} if topic else {})
    alarm = p.one("metricAlarm:MetricAlarm").inputs
    assert alarm["metricName"] == "StatusCheckFailed_System"
    assert alarm["namespace"] == "AWS/EC2"
    assert alarm["dimensions"] == {"InstanceId": p.outputs["beacons"][0]["instanceId"]}
    expected = ["arn:aws:automate:us-east-1:ec2:recover"] + ([topic] if topic else [])
    assert alarm["alarmActions"] == expected


def test_other_partitions() -> None:
    p = plan_stack("dev", {"aws:region": "cn-north-1", "crlUrls": ["http://crl.example.cn/devices.crl"]})
    role = p.one("iam/role:Role", "beacon-1-role").inputs
    assert json.loads(role["assumeRolePolicy"])["Statement"][0]["Principal"]["Service"] == "ec2.amazonaws.com.cn"
    policy = json.loads(p.one("iam/rolePolicy:RolePolicy", "beacon-1-stack-read").inputs["policy"])
    assert policy["Statement"][0]["Resource"].startswith("arn:aws-cn:secretsmanager:cn-north-1:")
    assert "ssm.cn-north-1.amazonaws.com.cn" in p.outputs["egressAllowlist"]["aws-endpoints"]


# --- No replacement after create or after a refresh -------------------------------------------
# Every aws.ec2.Instance argument the provider marks ForceNew (terraform-provider-aws,
# internal/service/ec2/ec2_instance.go, the schema under pulumi-aws): a diff on any of them
# replaces the beacon. Nested ones are written parent.child.
FORCES_REPLACEMENT = frozenset({
    "ami", "associatePublicIpAddress", "availabilityZone", "cpuCoreCount", "cpuThreadsPerCore",
    "cpuOptions.amdSevSnp", "cpuOptions.coreCount", "cpuOptions.threadsPerCore", "ebsBlockDevices",
    "ebsOptimized", "enclaveOptions.enabled", "ephemeralBlockDevices", "hibernation", "hostId",
    "ipv6AddressCount", "ipv6Addresses", "keyName", "launchTemplate", "networkInterfaces",
    "placementGroup", "placementPartitionNumber", "privateDnsNameOptions", "privateIp",
    "rootBlockDevice.encrypted", "rootBlockDevice.kmsKeyId", "securityGroups", "subnetId", "tenancy",
    # userData replaces only with userDataReplaceOnChange; otherwise it stops and starts the instance.
    "userDataReplaceOnChange",
})

# The ForceNew arguments a beacon sets, each with why it cannot change after create: the value
# read back by a refresh equals the input, and no day-2 config change alters it.
STABLE_AFTER_CREATE = {
    "ami": "ignored after create (ignore_changes), or a deliberate pin",
    "subnetId": "the protected subnet of its AZ; changes only if the subnet itself is replaced",
    "ebsOptimized": "constant true; every x86_64 type the config admits reads back true (EBS-optimized by default)",
    "rootBlockDevice.encrypted": "constant true; EC2 reads back the volume's encryption",
}


def _forced_inputs(inputs: dict) -> dict[str, object]:
    found = {}
    for name in FORCES_REPLACEMENT:
        top, _, nested = name.partition(".")
        if top not in inputs:
            continue
        value = inputs[top]
        if nested:
            if not isinstance(value, dict) or nested not in value:
                continue
            value = value[nested]
        found[name] = value
    return found


# Day-2 changes an operator makes to a running stack: none may touch a ForceNew argument.
DAY2_CHANGES = [
    {},
    {"instanceType": "m6i.xlarge", "rootVolumeGb": 120},
    {"extraMappingRules": ["Subject.O=Example Corp"], "denyMappingRules": ["Subject.OU=Contractors"]},
    {"convergeSchedule": "rate(1 hour)", "convergeReportOnly": "true", "revocationChecking": "false"},
    {"allowedIngressCidrs": ["203.0.113.0/24"], "allowHttp": "true", "egressPorts": [443]},
    {"protection": "true", "alarmTopicArn": "arn:aws:sns:us-east-1:123456789012:beacon-alarms"},
    {"beaconInstallerS3Uri": "s3://beacon-media/flexnet/beacon.msi", "beaconInstallerSha256": "b" * 64},
    {"crlUrls": ["http://crl2.example.net/devices.crl"], "owner": "platform-team"},
]


def test_every_forced_argument_a_beacon_sets_is_stable() -> None:
    forced_by_change = []
    for change in DAY2_CHANGES:
        p = plan_stack("dev", change)
        instance = p.one("ec2/instance:Instance")
        forced = _forced_inputs(instance.inputs)
        assert set(forced) <= set(STABLE_AFTER_CREATE), f"{change}: unexplained ForceNew inputs {set(forced) - set(STABLE_AFTER_CREATE)}"
        assert forced.get("ebsOptimized", True) is True and forced.get("rootBlockDevice.encrypted", True) is True
        assert "ami" in instance.ignore_changes and "userData" in instance.ignore_changes
        assert not instance.inputs.get("userDataReplaceOnChange")
        forced_by_change.append(forced)
    assert all(f == forced_by_change[0] for f in forced_by_change), "a day-2 change altered a ForceNew argument"
    assert set(forced_by_change[0]) == {"ami", "subnetId", "ebsOptimized", "rootBlockDevice.encrypted"}


def test_refresh_read_back_cannot_force_replacement(prod: Planned) -> None:
    """What a refresh reads back for an instance with an Elastic IP, against what the program sends:
    only arguments the program leaves unset may differ (an unset Computed argument is never diffed)."""
    for instance in prod.of_type("ec2/instance:Instance"):
        read_back = {  # the provider's read of a running beacon of this stack
            "associatePublicIpAddress": True,  # the EIP association shows as a public IP
            "availabilityZone": "us-east-1a",
            "ebsOptimized": True,
            "rootBlockDevice.encrypted": True,
            "rootBlockDevice.kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/aws-ebs-default",
            "privateIp": "10.80.0.10",
            "tenancy": "default",
        }
        sent = _forced_inputs(instance.inputs)
        for name, value in read_back.items():
            assert name not in sent or sent[name] == value, f"{name}: sent {sent[name]!r}, a refresh reads {value!r}: replacement"
