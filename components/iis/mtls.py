"""BeaconMtls: the converge objects, SSM document and State Manager association that keep IIS mTLS true.

Changing mapping rules, CAs or the certificate changes only this component's resources (new
content-addressed objects, the document's parameter defaults, the association's parameters):
the beacon instances' inputs (ami, user data, subnet) never depend on the desired state, so
`pulumi preview` shows an association update, never a beacon replacement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws
from pulumi import Input, ResourceOptions

from ..log_groups import log_group
from ..tagging import component_tags
from .document import canonical_state, command_document, document_content, script_digest, script_key, state_digest, state_key
from .rate_control import ASSOCIATION_MAX_CONCURRENCY, association_max_errors


@dataclass
class BeaconMtlsArgs:
    state: dict[str, Any]
    script: str  # the converge script's text (components/iis/windows/Set-BeaconMtls.ps1)
    state_bucket: Input[str]  # ConvergeStateBucket's name
    region: str
    timeout_seconds: int
    instance_ids: Sequence[Input[str]]
    schedule_expression: str
    compliance_severity: str
    association_name: str
    log_group_name: str
    log_retention_days: int
    log_kms_key_arn: str = ""
    retain_logs: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class BeaconMtls(pulumi.ComponentResource):
    def __init__(self, name: str, args: BeaconMtlsArgs, opts: Optional[ResourceOptions] = None):
        super().__init__("flexnet-beacon:index:BeaconMtls", name, None, opts)
        child = ResourceOptions(parent=self)
        tags = lambda part: component_tags(args.tags, "iis-mtls", f"{name}-{part}")  # noqa: E731

        self.state_digest = state_digest(args.state)
        self.script_digest = script_digest(args.script)
        report_only = bool(args.state.get("reportOnly"))

        self.log_group = log_group(
            f"{name}-logs",
            args.log_group_name,
            args.log_retention_days,
            args.log_kms_key_arn,
            tags("logs"),
            child,
            retain_on_delete=args.retain_logs,
        )
        # Content-addressed: a new state is a new key, so the old pair stays whole until the
        # association has moved to the new one (the engine creates before it deletes).
        self.state_object = aws.s3.BucketObjectv2(
            f"{name}-state",
            aws.s3.BucketObjectv2Args(
                bucket=args.state_bucket,
                key=state_key(self.state_digest),
                content=canonical_state(args.state),
                content_type="application/json",
                server_side_encryption="AES256",
                tags=tags("state"),
            ),
            opts=child,
        )
        self.script_object = aws.s3.BucketObjectv2(
            f"{name}-script",
            aws.s3.BucketObjectv2Args(
                bucket=args.state_bucket,
                key=script_key(self.script_digest),
                content=args.script,
                content_type="text/plain; charset=utf-8",
                server_side_encryption="AES256",
                tags=tags("script"),
            ),
            opts=child,
        )
        self.document = aws.ssm.Document(
            f"{name}-document",
            aws.ssm.DocumentArgs(
                document_type="Command",
                document_format="JSON",
                target_type="/AWS::EC2::Instance",
                content=pulumi.Output.from_input(args.state_bucket).apply(
                    lambda bucket: document_content(
                        command_document(args.timeout_seconds, report_only, bucket, args.region, self.state_digest, self.script_digest)
                    )
                ),
                tags=tags("document"),
            ),
            # The objects exist before a document names them.
            opts=ResourceOptions.merge(child, ResourceOptions(depends_on=[self.state_object, self.script_object])),
        )
        self.association = aws.ssm.Association(
            f"{name}-association",
            aws.ssm.AssociationArgs(
                name=self.document.name,
                document_version=self.document.latest_version,
                association_name=args.association_name,
                targets=[aws.ssm.AssociationTargetArgs(key="InstanceIds", values=list(args.instance_ids))],
                schedule_expression=args.schedule_expression,
                # Run at creation and on every change, not only at the next schedule tick.
                apply_only_at_cron_interval=False,
                compliance_severity=args.compliance_severity,
                # One beacon at a time: agents fail over to the others while one converges
                # (or reboots after a change that needs it). A few failing beacons do not hold
                # back the rest; a state failing on most of them stops (rate_control.py).
                max_concurrency=ASSOCIATION_MAX_CONCURRENCY,
                max_errors=association_max_errors(len(args.instance_ids)),
                # A state or script change changes these, so State Manager runs the association again.
                parameters={
                    "ReportOnly": "true" if report_only else "false",
                    "StateBucket": args.state_bucket,
                    "StateRegion": args.region,
                    "StateDigest": self.state_digest,
                    "ScriptDigest": self.script_digest,
                },
                tags=tags("association"),
            ),
            opts=child,
        )
        self.register_outputs(
            {
                "document_name": self.document.name,
                "association_id": self.association.association_id,
                "log_group": self.log_group.name,
                "state_digest": self.state_digest,
                "script_digest": self.script_digest,
            }
        )
