"""S3 buckets the stack owns: one shape for ownership, public access, encryption and versioning."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions


@dataclass
class BucketControls:
    ownership: aws.s3.BucketOwnershipControls
    public_access_block: aws.s3.BucketPublicAccessBlock
    encryption: aws.s3.BucketServerSideEncryptionConfiguration
    versioning: aws.s3.BucketVersioning


def bucket_controls(name: str, bucket_id: pulumi.Input[str], opts: ResourceOptions, public_policy: bool = False) -> BucketControls:
    """ACLs off (bucket owner enforced), public access blocked (a bucket policy may still grant
    public reads when `public_policy`), SSE-S3 by default, versioning on. Children are named
    f"{name}-ownership", f"{name}-public-access", f"{name}-encryption", f"{name}-versioning"."""
    ownership = aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        aws.s3.BucketOwnershipControlsArgs(
            bucket=bucket_id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        ),
        opts=opts,
    )
    public_access_block = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        aws.s3.BucketPublicAccessBlockArgs(
            bucket=bucket_id,
            block_public_acls=True,
            ignore_public_acls=True,
            block_public_policy=not public_policy,
            restrict_public_buckets=not public_policy,
        ),
        opts=opts,
    )
    encryption = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        aws.s3.BucketServerSideEncryptionConfigurationInitArgs(
            bucket=bucket_id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
        ),
        opts=opts,
    )
    versioning = aws.s3.BucketVersioning(
        f"{name}-versioning",
        aws.s3.BucketVersioningInitArgs(
            bucket=bucket_id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
        ),
        opts=opts,
    )
    return BucketControls(ownership, public_access_block, encryption, versioning)
