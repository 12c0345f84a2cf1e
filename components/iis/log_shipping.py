"""IisLogShipping: the Amazon CloudWatch agent on the beacons, installed and configured by SSM.

No shipping code of our own: State Manager runs AWS-ConfigureAWSPackage (AmazonCloudWatchAgent)
and AmazonCloudWatch-ManageAgent with the configuration kept in a stack-scoped SSM parameter
(under flexnet-beacon/<stack>/, which the beacon role may read). ManageAgent takes no extra
parameter, so the configuration's SHA-256 (12 hex digits) ends the configure association's
name: a changed configuration updates the association, and State Manager runs an updated
association at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
from pulumi import Input, ResourceOptions

from ..log_groups import log_group
from ..tagging import component_tags
from .agent_config import agent_config_json
from .rate_control import ASSOCIATION_MAX_CONCURRENCY, association_max_errors

AGENT_PACKAGE = "AmazonCloudWatchAgent"
INSTALL_DOCUMENT = "AWS-ConfigureAWSPackage"
CONFIGURE_DOCUMENT = "AmazonCloudWatch-ManageAgent"


@dataclass
class IisLogShippingArgs:
    instance_ids: Sequence[Input[str]]
    log_group_name: str  # /flexnet-beacon/<stack>/iis
    parameter_name: str  # /flexnet-beacon/<stack>/cloudwatch-agent
    association_prefix: str  # flexnet-beacon-<stack>
    log_retention_days: int
    log_kms_key_arn: str = ""
    retain_logs: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class IisLogShipping(pulumi.ComponentResource):
    def __init__(self, name: str, args: IisLogShippingArgs, opts: Optional[ResourceOptions] = None):
        super().__init__("flexnet-beacon:index:IisLogShipping", name, None, opts)
        child = ResourceOptions(parent=self)
        tags = lambda part: component_tags(args.tags, "iis-logs", f"{name}-{part}")  # noqa: E731
        targets = [aws.ssm.AssociationTargetArgs(key="InstanceIds", values=list(args.instance_ids))]
        # As the converge association: one beacon at a time, and a beacon whose agent install
        # fails does not keep the rest from theirs (components/iis/rate_control.py).
        max_errors = association_max_errors(len(args.instance_ids))
        config = agent_config_json(args.log_group_name)
        self.config_digest = hashlib.sha256(config.encode("utf-8")).hexdigest()

        self.log_group = log_group(
            f"{name}-group", args.log_group_name, args.log_retention_days, args.log_kms_key_arn, tags("group"), child,
            retain_on_delete=args.retain_logs,
        )
        self.parameter = aws.ssm.Parameter(
            f"{name}-agent-config",
            aws.ssm.ParameterArgs(
                name=args.parameter_name,
                type="String",
                # Not a secret: insecure_value keeps it readable in the plan and `pulumi preview`.
                insecure_value=config,
                description="Amazon CloudWatch agent configuration: the beacon's IIS W3C logs",
                tags=tags("agent-config"),
            ),
            opts=child,
        )
        self.install = aws.ssm.Association(
            f"{name}-install",
            aws.ssm.AssociationArgs(
                name=INSTALL_DOCUMENT,
                association_name=f"{args.association_prefix}-cloudwatch-agent-install",
                targets=targets,
                parameters={"action": "Install", "name": AGENT_PACKAGE},
                # Weekly: installs at creation, then keeps the agent current.
                schedule_expression="rate(7 days)",
                apply_only_at_cron_interval=False,
                max_concurrency=ASSOCIATION_MAX_CONCURRENCY,
                max_errors=max_errors,
                tags=tags("install"),
            ),
            opts=child,
        )
        self.configure = aws.ssm.Association(
            f"{name}-configure",
            aws.ssm.AssociationArgs(
                name=CONFIGURE_DOCUMENT,
                association_name=f"{args.association_prefix}-cloudwatch-agent-configure-{self.config_digest[:12]}",
                targets=targets,
                parameters={
                    "action": "configure",
                    "mode": "ec2",
                    "optionalConfigurationSource": "ssm",
                    "optionalConfigurationLocation": args.parameter_name,
                    "optionalRestart": "yes",
                },
                # Daily (restores a configuration changed by hand), and at once when ours changes.
                schedule_expression="rate(1 day)",
                apply_only_at_cron_interval=False,
                max_concurrency=ASSOCIATION_MAX_CONCURRENCY,
                max_errors=max_errors,
                tags=tags("configure"),
            ),
            # The configuration exists before an association reads it; the install was asked first.
            opts=ResourceOptions.merge(child, ResourceOptions(depends_on=[self.parameter, self.install])),
        )
        self.register_outputs({"log_group": self.log_group.name, "parameter": self.parameter.name})
