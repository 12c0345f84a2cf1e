"""CloudWatch log groups: one shape for every log the deployment writes."""

from __future__ import annotations

import pulumi_aws as aws
from pulumi import ResourceOptions


def log_group(
    resource_name: str,
    group_name: str,
    retention_days: int,
    kms_key_arn: str,
    tags: dict[str, str],
    opts: ResourceOptions,
) -> aws.cloudwatch.LogGroup:
    """A named log group (operators look for it by name) with retention and optional KMS."""
    return aws.cloudwatch.LogGroup(
        resource_name,
        aws.cloudwatch.LogGroupArgs(
            name=group_name,
            retention_in_days=retention_days,
            kms_key_id=kms_key_arn or None,
            tags=tags,
        ),
        opts=opts,
    )
