"""CrlHosting (optional, crlHosting: s3): a lab CRL distribution point on S3.

The bucket is private except for objects whose key ends in .crl, which anyone may GET, over
plain http at http://<bucket>.s3.<region>.amazonaws.com/<key> (CRLs are signed, and CryptoAPI
fetches CDPs over http). The URL is fixed by the bucket name, so it is known before the CA
that puts it into its certificates' CDP is created. `python -m scripts.pki crl --publish BUCKET`
uploads the CRLs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from ..beacon.policy import partition_for
from ..tagging import component_tags


def crl_read_policy(partition: str, bucket: str) -> str:
    """Public read of *.crl objects only; every other object stays private."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicReadCrlObjectsOnly",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:{partition}:s3:::{bucket}/*.crl",
                }
            ],
        },
        sort_keys=True,
    )


@dataclass
class CrlHostingArgs:
    bucket_name: str
    region: str
    base_url: str
    tags: dict[str, str] = field(default_factory=dict)


class CrlHosting(pulumi.ComponentResource):
    def __init__(self, name: str, args: CrlHostingArgs, opts: Optional[ResourceOptions] = None):
        super().__init__("flexnet-beacon:index:CrlHosting", name, None, opts)
        child = ResourceOptions(parent=self)
        tags = component_tags(args.tags, "crl-hosting", f"{name}-bucket")

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket", aws.s3.BucketArgs(bucket=args.bucket_name, tags=tags), opts=child
        )
        self.ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            aws.s3.BucketOwnershipControlsArgs(
                bucket=self.bucket.id,
                rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            ),
            opts=child,
        )
        # ACLs stay blocked; only the bucket policy below may grant (and it grants *.crl only).
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            aws.s3.BucketPublicAccessBlockArgs(
                bucket=self.bucket.id,
                block_public_acls=True,
                ignore_public_acls=True,
                block_public_policy=False,
                restrict_public_buckets=False,
            ),
            opts=child,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            aws.s3.BucketServerSideEncryptionConfigurationInitArgs(
                bucket=self.bucket.id,
                rules=[
                    aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                        apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                            sse_algorithm="AES256"
                        )
                    )
                ],
            ),
            opts=child,
        )
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            aws.s3.BucketVersioningInitArgs(
                bucket=self.bucket.id,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            ),
            opts=child,
        )
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            aws.s3.BucketPolicyArgs(bucket=self.bucket.id, policy=crl_read_policy(partition_for(args.region), args.bucket_name)),
            # The public access block must allow bucket policies before this one is accepted.
            opts=ResourceOptions.merge(child, ResourceOptions(depends_on=[self.public_access_block])),
        )
        self.base_url = args.base_url
        self.register_outputs({"bucket": self.bucket.id, "base_url": args.base_url})
