"""ConvergeStateBucket: the stack's private bucket for the converge script and desired state.

Objects are named by their SHA-256 (components/iis/document.py), so a beacon never reads a half
updated pair. Private (no ACLs, public access blocked), SSE-S3, versioned, TLS only; old
versions expire. The beacon role may read converge/* of this bucket and nothing else of it; the
S3 gateway endpoint's policy names it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from ..beacon.policy import partition_for
from ..buckets import bucket_controls
from ..config import PROJECT
from ..tagging import component_tags

NONCURRENT_DAYS = 30  # old scripts and states stay readable this long (rollback, forensics)
_PREFIX_LIMIT = 37  # S3 bucket_prefix maximum


def bucket_prefix(stack: str) -> str:
    """flexnet-beacon-<stack>-converge- in the characters a bucket name allows, at most 37."""
    stack_part = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-") or "stack"
    prefix = f"{PROJECT}-{stack_part}"[: _PREFIX_LIMIT - len("-converge-")].rstrip("-")
    return f"{prefix}-converge-"


def tls_only_policy(partition: str, bucket: str) -> str:
    arns = [f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": arns,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        },
        sort_keys=True,
    )


@dataclass
class ConvergeStateBucketArgs:
    stack: str
    region: str
    protection: bool
    tags: dict[str, str] = field(default_factory=dict)


class ConvergeStateBucket(pulumi.ComponentResource):
    def __init__(self, name: str, args: ConvergeStateBucketArgs, opts: Optional[ResourceOptions] = None):
        super().__init__("flexnet-beacon:index:ConvergeStateBucket", name, None, opts)
        child = ResourceOptions(parent=self)
        tags = lambda part: component_tags(args.tags, "iis-mtls", f"{name}-{part}")  # noqa: E731

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            aws.s3.BucketArgs(
                bucket_prefix=bucket_prefix(args.stack),
                # An unprotected stack can be destroyed with its objects; a protected one keeps them.
                force_destroy=not args.protection,
                tags=tags("bucket"),
            ),
            opts=ResourceOptions.merge(child, ResourceOptions(retain_on_delete=args.protection)),
        )
        controls = bucket_controls(name, self.bucket.id, child)
        self.ownership, self.public_access_block = controls.ownership, controls.public_access_block
        self.encryption, self.versioning = controls.encryption, controls.versioning
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            aws.s3.BucketLifecycleConfigurationArgs(
                bucket=self.bucket.id,
                rules=[
                    aws.s3.BucketLifecycleConfigurationRuleArgs(
                        id="expire-old-versions",
                        status="Enabled",
                        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix="converge/"),
                        noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                            noncurrent_days=NONCURRENT_DAYS
                        ),
                    )
                ],
            ),
            opts=ResourceOptions.merge(child, ResourceOptions(depends_on=[self.versioning])),
        )
        partition = partition_for(args.region)
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            aws.s3.BucketPolicyArgs(bucket=self.bucket.id, policy=self.bucket.bucket.apply(lambda b: tls_only_policy(partition, b))),
            opts=ResourceOptions.merge(child, ResourceOptions(depends_on=[self.public_access_block])),
        )
        self.name = self.bucket.bucket
        self.register_outputs({"bucket": self.bucket.bucket})
