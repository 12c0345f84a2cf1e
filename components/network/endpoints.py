"""VPC endpoints as pure data: S3 through a gateway endpoint whose policy names the buckets the
beacons may read, and the optional interface endpoints of privateAwsEndpoints.

A firewall rule for `.s3.<region>.amazonaws.com` would admit every bucket of the region, an
attacker's included. Instead the protected subnets reach S3 through a gateway endpoint (S3 then
never crosses the firewall), and the endpoint policy allows s3:GetObject on exactly:
- the AWS-managed buckets SSM Agent reads (agent updates, AWS-ConfigureAWSPackage, document
  attachments, patch baselines), as listed in the Systems Manager User Guide, "SSM Agent
  communications with AWS managed S3 buckets";
- the buckets this stack uses: the staged beacon installer and the lab CRL bucket.
Requests for any other bucket through the endpoint are refused by S3 with 403.
"""

from __future__ import annotations

import json
from typing import Sequence

from ..beacon.policy import dns_suffix, partition_for, ssm_agent_buckets
from ..config import BeaconConfig

def service_name(region: str, service: str) -> str:
    """A VPC endpoint service name, e.g. com.amazonaws.us-east-1.s3 (China: cn.com.amazonaws...)."""
    return f"{'cn.' if region.startswith('cn-') else ''}com.amazonaws.{region}.{service}"


def stack_buckets(cfg: BeaconConfig) -> list[str]:
    """Buckets this stack's beacons read: the installer's and the lab CRL bucket."""
    buckets = set()
    if cfg.beacon_installer_s3_uri:
        buckets.add(cfg.beacon_installer_s3_uri[len("s3://"):].split("/", 1)[0])
    if cfg.crl_hosting == "s3" and cfg.crl_bucket_name:
        buckets.add(cfg.crl_bucket_name)
    return sorted(buckets)


def endpoint_policy(region: str, stack_bucket_names: Sequence[str]) -> str:
    """The gateway endpoint's policy: GetObject on the named buckets only."""
    partition = partition_for(region)

    def objects(buckets: Sequence[str]) -> list[str]:
        return [f"arn:{partition}:s3:::{bucket}/*" for bucket in buckets]

    statements = [
        {
            "Sid": "SsmAgentBuckets",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": objects(ssm_agent_buckets(region)),
        }
    ]
    if stack_bucket_names:
        statements.append(
            {
                "Sid": "StackBuckets",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": objects(sorted(stack_bucket_names)),
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def dns_names(region: str, buckets: Sequence[str]) -> list[str]:
    """The names a client may resolve to reach these buckets: virtual-hosted regional and the
    legacy global form (`<bucket>.s3.amazonaws.com`, used by some SDKs in us-east-1), plus the
    regional endpoint itself for path-style requests."""
    suffix = dns_suffix(partition_for(region))
    names = {f"s3.{region}.{suffix}"}
    for bucket in buckets:
        names.add(f"{bucket}.s3.{region}.{suffix}")
        if not region.startswith("cn-"):
            names.add(f"{bucket}.s3.{suffix}")
    return sorted(names)
