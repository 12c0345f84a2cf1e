"""BeaconMtls: the SSM document and State Manager association that keep IIS mTLS true.

Changing mapping rules, CAs or the certificate changes only this component's resources: the
beacon instances' inputs (ami, user data, subnet) never depend on the desired state, so
`pulumi preview` shows an association update, never a beacon replacement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws
from pulumi import Input, ResourceOptions

from ..log_groups import log_group
from .document import state_digest
from ..tagging import component_tags


@dataclass
class BeaconMtlsArgs:
    state: dict[str, Any]
    document_content: str  # components/iis/document.py: the static script with `state` as data
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

        self.log_group = log_group(
            f"{name}-logs",
            args.log_group_name,
            args.log_retention_days,
            args.log_kms_key_arn,
            tags("logs"),
            child,
            retain_on_delete=args.retain_logs,
        )
        self.document = aws.ssm.Document(
            f"{name}-document",
            aws.ssm.DocumentArgs(
                document_type="Command",
                document_format="JSON",
                target_type="/AWS::EC2::Instance",
                content=args.document_content,
                tags=tags("document"),
            ),
            opts=child,
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
                # One beacon at a time: agents fail over to the others while one converges.
                max_concurrency="1",
                max_errors="1",
                parameters={
                    "ReportOnly": "true" if args.state.get("reportOnly") else "false",
                    "StateDigest": self.state_digest,
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
            }
        )
