"""IisLogShipping: the Amazon CloudWatch agent on the beacons, installed and configured by SSM.

No shipping code of our own: State Manager runs AWS-ConfigureAWSPackage (AmazonCloudWatchAgent)
and AmazonCloudWatch-ManageAgent with the configuration kept in a stack-scoped SSM parameter
(under flexnet-beacon/<stack>/, which the beacon role may read). ManageAgent takes no extra
parameter, so the configuration's SHA-256 (12 hex digits) ends the configure association's
name: a changed configuration updates the association, and State Manager runs an updated
association at once.

The agent ships the IIS W3C logs to /flexnet-beacon/<stack>/iis and the HTTP.sys error log to
/flexnet-beacon/<stack>/httperr (components/iis/agent_config.py says why two groups); the
component creates both, with the same retention, KMS key and protection.

Both associations run at creation and then every 30 minutes (AGENT_SCHEDULE below): State
Manager has no retry-on-failure setting, so a short schedule is what retries an install or a
configure that failed or was cut short (a first-boot restart of the converge run, a configure
that ran before the install had finished). Both are idempotent, so a run with nothing to do
changes nothing.
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
from .agent_config import agent_config_json, httperr_log_group_name
from .rate_control import ASSOCIATION_MAX_CONCURRENCY, association_max_errors

AGENT_PACKAGE = "AmazonCloudWatchAgent"
INSTALL_DOCUMENT = "AWS-ConfigureAWSPackage"
CONFIGURE_DOCUMENT = "AmazonCloudWatch-ManageAgent"

# The schedule of both associations, the shortest State Manager accepts: "Associations support
# the following rate expressions: intervals of 30 minutes or greater and less than 31 days"
# (AWS Systems Manager User Guide, "Reference: Cron and rate expressions for Systems Manager",
# section "Cron and rate expressions for associations"). botocore's ssm model gives
# ScheduleExpression only a length (1..256) and says of ApplyOnlyAtCronInterval "This parameter
# isn't supported for rate expressions": with a rate the association always runs "immediately
# after it is created and then according to the schedule" (CreateAssociation), which is what a
# new beacon needs. tests/iis/test_log_shipping.py checks the value against both.
#
# Why a run every 30 minutes is harmless:
# - install: AWS-ConfigureAWSPackage with action Install reports success without reinstalling when
#   the version it resolves is already installed (amazon-ssm-agent
#   agent/plugins/configurepackage/configurepackage.go: checkAlreadyInstalled, "is already
#   installed"). It installs only what is missing or a newer published version; AWS recommends a
#   State Manager association for exactly that ("helps ensure that your instances are always
#   running the most up-to-date version", User Guide, Distributor, "Install or update packages").
#   installationType stays at its default, "Uninstall and reinstall": "In-place update" "is not
#   supported for AWS-published packages" (same page).
# - configure: ManageAgent's configure runs amazon-cloudwatch-agent-ctl.ps1 -a fetch-config, which
#   replaces the agent's configuration with the parameter's, validates it (config-translator,
#   the schema) and, with optionalRestart yes, stops and starts the agent
#   (aws/amazon-cloudwatch-agent packaging/windows/amazon-cloudwatch-agent-ctl.ps1, CWAConfig).
#   The same configuration again gives the same state; the restart resumes every file at the
#   offset it recorded (plugins/inputs/logfile, file_state_folder), so nothing is lost or sent
#   twice. The run also restores a configuration changed by hand.
AGENT_SCHEDULE = "rate(30 minutes)"


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
    # /flexnet-beacon/<stack>/httperr by default (agent_config.httperr_log_group_name). The beacon
    # role must be allowed to write it: components/stack.py passes it to the beacons' log_groups.
    httperr_log_group_name: str = ""


class IisLogShipping(pulumi.ComponentResource):
    def __init__(self, name: str, args: IisLogShippingArgs, opts: Optional[ResourceOptions] = None):
        super().__init__("flexnet-beacon:index:IisLogShipping", name, None, opts)
        child = ResourceOptions(parent=self)
        tags = lambda part: component_tags(args.tags, "iis-logs", f"{name}-{part}")  # noqa: E731
        targets = [aws.ssm.AssociationTargetArgs(key="InstanceIds", values=list(args.instance_ids))]
        # As the converge association: one beacon at a time, and a beacon whose agent install
        # fails does not keep the rest from theirs (components/iis/rate_control.py).
        max_errors = association_max_errors(len(args.instance_ids))
        httperr_group_name = args.httperr_log_group_name or httperr_log_group_name(args.log_group_name)
        config = agent_config_json(args.log_group_name, httperr_log_group=httperr_group_name)
        self.config_digest = hashlib.sha256(config.encode("utf-8")).hexdigest()

        self.log_group = log_group(
            f"{name}-group", args.log_group_name, args.log_retention_days, args.log_kms_key_arn, tags("group"), child,
            retain_on_delete=args.retain_logs,
        )
        # The HTTP.sys error log: retention, KMS and protection as the IIS group's.
        self.httperr_log_group = log_group(
            f"{name}-httperr-group", httperr_group_name, args.log_retention_days, args.log_kms_key_arn, tags("httperr-group"), child,
            retain_on_delete=args.retain_logs,
        )
        self.parameter = aws.ssm.Parameter(
            f"{name}-agent-config",
            aws.ssm.ParameterArgs(
                name=args.parameter_name,
                type="String",
                # Not a secret: insecure_value keeps it readable in the plan and `pulumi preview`.
                insecure_value=config,
                description="Amazon CloudWatch agent configuration: the beacon's IIS W3C logs and HTTP.sys error log",
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
                # At creation, then every 30 minutes: retries a failed or interrupted install soon,
                # and otherwise only keeps the agent current (AGENT_SCHEDULE).
                schedule_expression=AGENT_SCHEDULE,
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
                # At creation, at once when ours changes (the name), then every 30 minutes: a run
                # before the install finished is retried soon (AGENT_SCHEDULE).
                schedule_expression=AGENT_SCHEDULE,
                apply_only_at_cron_interval=False,
                max_concurrency=ASSOCIATION_MAX_CONCURRENCY,
                max_errors=max_errors,
                tags=tags("configure"),
            ),
            # The configuration exists before an association reads it, and the groups before the
            # agent writes to them (the beacon role may not create log groups); the install was
            # asked first.
            opts=ResourceOptions.merge(
                child, ResourceOptions(depends_on=[self.parameter, self.install, self.log_group, self.httperr_log_group])
            ),
        )
        self.register_outputs({"log_group": self.log_group.name, "httperr_log_group": self.httperr_log_group.name, "parameter": self.parameter.name})
