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
from ..buckets import bucket_controls
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
        # ACLs stay blocked; only the bucket policy below may grant (and it grants *.crl only).
        controls = bucket_controls(name, self.bucket.id, child, public_policy=True)
        self.ownership, self.public_access_block = controls.ownership, controls.public_access_block
        self.encryption, self.versioning = controls.encryption, controls.versioning
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            aws.s3.BucketPolicyArgs(bucket=self.bucket.id, policy=crl_read_policy(partition_for(args.region), args.bucket_name)),
            # The public access block must allow bucket policies before this one is accepted.
            opts=ResourceOptions.merge(child, ResourceOptions(depends_on=[self.public_access_block])),
        )
        self.base_url = args.base_url
        self.register_outputs({"bucket": self.bucket.id, "base_url": args.base_url})
