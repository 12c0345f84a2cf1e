"""IAM and security-group decisions for a beacon host, as pure data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

WINDOWS_2022_AMI_PARAMETER = "/aws/service/ami-windows-latest/Windows_Server-2022-English-Full-Base"


def instance_ignore_changes(ami_pinned: bool) -> list[str]:
    """Instance inputs the engine must not diff after create, so nothing replaces or restarts a beacon.

    - ami: the public parameter names a newer image every month; a new image must never replace
      a running beacon (a pinned AMI is deliberate, so a changed pin does replace it).
    - userData: EC2Launch v2 runs the `<powershell>` block on first boot only, so a changed
      user data would stop and start a beacon for nothing; the desired state travels in the
      SSM document instead.
    """
    return ["userData"] if ami_pinned else ["ami", "userData"]


def partition_for(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# The AWS-managed buckets SSM Agent reads (agent updates, AWS-ConfigureAWSPackage, document
# attachments, patch baselines): Systems Manager User Guide, "SSM Agent communications with AWS
# managed S3 buckets". Through a VPC endpoint the instance profile must allow them explicitly.
SSM_AGENT_BUCKETS = (
    "aws-windows-downloads-{region}",
    "amazon-ssm-{region}",
    "amazon-ssm-packages-{region}",
    "{region}-birdwatcher-prod",
    "aws-ssm-distributor-file-{region}",
    "aws-ssm-document-attachments-{region}",
    "patch-baseline-snapshot-{region}",
    "aws-ssm-{region}",
)


def ssm_agent_buckets(region: str) -> list[str]:
    return [bucket.format(region=region) for bucket in SSM_AGENT_BUCKETS]


def dns_suffix(partition: str) -> str:
    return "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"


def assume_role_policy(partition: str) -> str:
    """EC2 may assume the beacon role. No aws:SourceAccount/SourceArn condition here, unlike the
    flow-log role: EC2 does not document those keys for instance-profile credentials, and a
    condition it never sends would leave the beacon without credentials (no SSM, no secrets).
    iam:PassRole already confines the role to instances of this account."""
    service = f"ec2.{dns_suffix(partition)}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        },
        sort_keys=True,
    )


def s3_object_arn(partition: str, s3_uri: str) -> str:
    bucket_and_key = s3_uri[len("s3://"):]
    return f"arn:{partition}:s3:::{bucket_and_key}"


# Every action that reads a parameter's value or history (Service Authorization Reference,
# AWS Systems Manager: actions on the "parameter" resource type).
PARAMETER_READ_ACTIONS = ["ssm:GetParameter", "ssm:GetParameterHistory", "ssm:GetParameters", "ssm:GetParametersByPath"]


def stack_read_policy(
    partition: str,
    region: str,
    account_id: str,
    name_prefix: str,
    log_group_names: Sequence[str] = (),
    installer_s3_uri: str = "",
    converge_bucket: str = "",
) -> str:
    """This stack's secrets and parameters (names under `name_prefix`), its converge log group
    and the staged installer object: nothing else."""
    prefix = name_prefix.rstrip("/")
    extra = []
    if log_group_names:
        group_arns = [f"arn:{partition}:logs:{region}:{account_id}:log-group:{name}" for name in log_group_names]
        extra.append(
            {
                # The converge reports and the CloudWatch agent's IIS logs.
                "Sid": "WriteBeaconLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                # log-group:NAME:* is the form IAM evaluates for the group's own actions and,
                # through the wildcard, for its streams (log-group:NAME:log-stream:S).
                "Resource": [arn for group_arn in group_arns for arn in (group_arn, f"{group_arn}:*")],
            }
        )
    extra.append(
        {
            "Sid": "ReadSsmAgentBuckets",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:{partition}:s3:::{bucket}/*" for bucket in ssm_agent_buckets(region)],
        }
    )
    if converge_bucket:
        extra.append(
            {
                "Sid": "ReadConvergeObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": f"arn:{partition}:s3:::{converge_bucket}/converge/*",
            }
        )
    if installer_s3_uri:
        extra.append(
            {
                "Sid": "ReadBeaconInstaller",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": s3_object_arn(partition, installer_s3_uri),
            }
        )
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadStackSecrets",
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    "Resource": f"arn:{partition}:secretsmanager:{region}:{account_id}:secret:{prefix}/*",
                },
                {
                    # A secret encrypted with a customer managed key needs kms:Decrypt too; only
                    # through Secrets Manager of this region and only for this stack's secrets
                    # (the key's own policy must also allow the role).
                    "Sid": "DecryptStackSecrets",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": f"arn:{partition}:kms:{region}:{account_id}:key/*",
                    "Condition": {
                        "StringEquals": {"kms:ViaService": f"secretsmanager.{region}.{dns_suffix(partition)}"},
                        "StringLike": {
                            "kms:EncryptionContext:SecretARN": f"arn:{partition}:secretsmanager:{region}:{account_id}:secret:{prefix}/*"
                        },
                    },
                },
                {
                    "Sid": "ReadStackParameters",
                    "Effect": "Allow",
                    "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
                    "Resource": f"arn:{partition}:ssm:{region}:{account_id}:parameter/{prefix}/*",
                },
                {
                    # AmazonSSMManagedInstanceCore (attached next to this policy) allows
                    # ssm:GetParameter/GetParameters on "*": every parameter of the account,
                    # SecureStrings under the aws/ssm key included. An explicit Deny wins over any
                    # Allow, also over a later version of the managed policy.
                    "Sid": "NoParametersOutsideTheStack",
                    "Effect": "Deny",
                    "Action": PARAMETER_READ_ACTIONS,
                    "NotResource": [
                        f"arn:{partition}:ssm:{region}:{account_id}:parameter/{prefix}",
                        f"arn:{partition}:ssm:{region}:{account_id}:parameter/{prefix}/*",
                    ],
                },
                *extra,
            ],
        },
        sort_keys=True,
    )


def ssm_core_policy_arn(partition: str) -> str:
    return f"arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"


def recover_action_arn(partition: str, region: str) -> str:
    return f"arn:{partition}:automate:{region}:ec2:recover"


@dataclass(frozen=True)
class SgRule:
    protocol: str
    from_port: int
    to_port: int
    cidrs: tuple[str, ...]
    description: str


def ingress_rules(allowed_cidrs: Sequence[str], allow_http: bool) -> list[SgRule]:
    ports = [443] + ([80] if allow_http else [])
    return [SgRule("tcp", p, p, tuple(allowed_cidrs), f"agents tcp/{p}") for p in ports]


def egress_rules(egress_ports: Sequence[int], resolver_ip: str) -> list[SgRule]:
    rules = [SgRule("tcp", p, p, ("0.0.0.0/0",), f"egress tcp/{p} (domains filtered by the firewall)") for p in sorted(set(egress_ports))]
    rules += [
        SgRule("udp", 53, 53, (f"{resolver_ip}/32",), "DNS to the VPC resolver"),
        SgRule("tcp", 53, 53, (f"{resolver_ip}/32",), "DNS to the VPC resolver"),
    ]
    return rules
