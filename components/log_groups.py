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
    retain_on_delete: bool = False,
) -> aws.cloudwatch.LogGroup:
    """A named log group (operators look for it by name) with retention and optional KMS.

    retain_on_delete (protected stacks): `pulumi destroy` or a rename leaves the group and its
    records in the account, so an incident can still be read after the stack is gone.
    A customer KMS key must allow the logs service principal of the region in its key policy.
    """
    return aws.cloudwatch.LogGroup(
        resource_name,
        aws.cloudwatch.LogGroupArgs(
            name=group_name,
            retention_in_days=retention_days,
            kms_key_id=kms_key_arn or None,
            tags=tags,
        ),
        opts=ResourceOptions.merge(opts, ResourceOptions(retain_on_delete=True)) if retain_on_delete else opts,
    )
