"""BeaconFirewall: AWS Network Firewall in STRICT_ORDER with the rule groups from firewall_rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws
from pulumi import Input, Output, ResourceOptions

from .firewall_rules import RuleGroupSpec
from ..log_groups import log_group
from ..tagging import component_tags

# Application drop / alert established, server-directed only: default deny (the client's packets
# of a flow no rule passed are dropped and logged), but only once a ClientHello or HTTP request is
# whole, so a ClientHello split over two segments (a Go 1.24+ client's post-quantum key share) is
# read without a retransmission; the server's packets are never dropped by it. Not the
# bidirectional aws:drop_established_app_layer (it drops the server's ACKs, window updates and
# resets seen before a pass rule applies), and the alert must be of the same family as the drop
# (AWS refuses aws:alert_established next to it). docs/traffic.md, "Split ClientHellos";
# tests/network/test_firewall_flows.py replays it. Changing these updates the policy in place.
STATEFUL_DEFAULT_ACTIONS = ["aws:drop_established_app_layer_to_server", "aws:alert_established_app_layer_to_server"]
STATELESS_DEFAULT_ACTIONS = ["aws:forward_to_sfe"]


def endpoint_for_az(firewall_statuses: Any, availability_zone: str) -> str:
    """The firewall endpoint id in `availability_zone`, from Firewall.firewall_statuses.

    firewall_statuses[0].sync_states[*] carries (availability_zone, attachments[0].endpoint_id).
    Works on the provider's output objects and on plain dicts (camelCase or snake_case).
    """

    def get(obj: Any, *names: str) -> Any:
        for name in names:
            value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
            if value is not None:
                return value
        return None

    zones_with_endpoint = []
    for status in firewall_statuses or []:
        for sync in get(status, "sync_states", "syncStates") or []:
            zone = get(sync, "availability_zone", "availabilityZone")
            for attachment in get(sync, "attachments") or []:
                endpoint = get(attachment, "endpoint_id", "endpointId")
                if endpoint and zone == availability_zone:
                    return endpoint
                if endpoint:
                    zones_with_endpoint.append(str(zone))
    # RunError: the engine prints the one line, not a traceback from inside an apply.
    raise pulumi.RunError(
        f"the Network Firewall has no endpoint in {availability_zone} "
        f"(endpoints in: {', '.join(sorted(set(zones_with_endpoint))) or 'none'}): its subnet there is still "
        "attaching or failed to attach; check `aws network-firewall describe-firewall`, then run `pulumi up` again"
    )


@dataclass
class BeaconFirewallArgs:
    vpc_id: Input[str]
    firewall_subnet_ids: Sequence[Input[str]]
    rule_groups: Sequence[RuleGroupSpec]
    delete_protection: bool
    alert_log_group_name: str
    flow_log_group_name: str
    log_retention_days: int
    log_kms_key_arn: str = ""
    tags: dict[str, str] = field(default_factory=dict)


class BeaconFirewall(pulumi.ComponentResource):
    def __init__(self, name: str, args: BeaconFirewallArgs, opts: Optional[ResourceOptions] = None):
        super().__init__("flexnet-beacon:index:BeaconFirewall", name, None, opts)
        child = ResourceOptions(parent=self)
        tags = lambda part: component_tags(args.tags, "firewall", f"{name}-{part}")  # noqa: E731

        self.rule_groups: dict[str, aws.networkfirewall.RuleGroup] = {}
        for spec in args.rule_groups:
            self.rule_groups[spec.key] = aws.networkfirewall.RuleGroup(
                f"{name}-{spec.key}",
                aws.networkfirewall.RuleGroupArgs(
                    type="STATEFUL",
                    capacity=spec.capacity,
                    description=spec.description[:512],
                    rule_group=aws.networkfirewall.RuleGroupRuleGroupArgs(
                        rule_variables=aws.networkfirewall.RuleGroupRuleGroupRuleVariablesArgs(
                            ip_sets=[
                                aws.networkfirewall.RuleGroupRuleGroupRuleVariablesIpSetArgs(
                                    key=key,
                                    ip_set=aws.networkfirewall.RuleGroupRuleGroupRuleVariablesIpSetIpSetArgs(
                                        definitions=list(cidrs)
                                    ),
                                )
                                for key, cidrs in sorted(spec.ip_sets.items())
                            ]
                        ),
                        rules_source=aws.networkfirewall.RuleGroupRuleGroupRulesSourceArgs(
                            rules_string=spec.rules_string
                        ),
                        stateful_rule_options=aws.networkfirewall.RuleGroupRuleGroupStatefulRuleOptionsArgs(
                            rule_order="STRICT_ORDER"
                        ),
                    ),
                    tags=tags(spec.key),
                ),
                opts=child,
            )

        self.policy = aws.networkfirewall.FirewallPolicy(
            f"{name}-policy",
            aws.networkfirewall.FirewallPolicyArgs(
                description="flexnet-beacon: strict order, default drop",
                firewall_policy=aws.networkfirewall.FirewallPolicyFirewallPolicyArgs(
                    stateless_default_actions=STATELESS_DEFAULT_ACTIONS,
                    stateless_fragment_default_actions=STATELESS_DEFAULT_ACTIONS,
                    stateful_default_actions=STATEFUL_DEFAULT_ACTIONS,
                    stateful_engine_options=aws.networkfirewall.FirewallPolicyFirewallPolicyStatefulEngineOptionsArgs(
                        rule_order="STRICT_ORDER"
                    ),
                    stateful_rule_group_references=[
                        aws.networkfirewall.FirewallPolicyFirewallPolicyStatefulRuleGroupReferenceArgs(
                            resource_arn=group.arn, priority=(index + 1) * 100
                        )
                        for index, group in enumerate(self.rule_groups.values())
                    ],
                ),
                tags=tags("policy"),
            ),
            opts=child,
        )

        self.firewall = aws.networkfirewall.Firewall(
            f"{name}-firewall",
            aws.networkfirewall.FirewallArgs(
                firewall_policy_arn=self.policy.arn,
                vpc_id=args.vpc_id,
                subnet_mappings=[
                    aws.networkfirewall.FirewallSubnetMappingArgs(subnet_id=subnet_id)
                    for subnet_id in args.firewall_subnet_ids
                ],
                delete_protection=args.delete_protection,
                subnet_change_protection=args.delete_protection,
                description="flexnet-beacon ingress and egress inspection",
                tags=tags("firewall"),
            ),
            opts=child,
        )

        self.log_groups: dict[str, aws.cloudwatch.LogGroup] = {}
        for log_type, group_name in (("ALERT", args.alert_log_group_name), ("FLOW", args.flow_log_group_name)):
            self.log_groups[log_type] = log_group(
                f"{name}-{log_type.lower()}-logs",
                group_name,
                args.log_retention_days,
                args.log_kms_key_arn,
                tags(f"{log_type.lower()}-logs"),
                child,
                retain_on_delete=args.delete_protection,
            )

        self.logging = aws.networkfirewall.LoggingConfiguration(
            f"{name}-logging",
            aws.networkfirewall.LoggingConfigurationArgs(
                firewall_arn=self.firewall.arn,
                logging_configuration=aws.networkfirewall.LoggingConfigurationLoggingConfigurationArgs(
                    log_destination_configs=[
                        aws.networkfirewall.LoggingConfigurationLoggingConfigurationLogDestinationConfigArgs(
                            log_destination={"logGroup": group.name},
                            log_destination_type="CloudWatchLogs",
                            log_type=log_type,
                        )
                        for log_type, group in self.log_groups.items()
                    ]
                ),
            ),
            opts=child,
        )

        self.firewall_arn = self.firewall.arn
        self.register_outputs(
            {
                "firewall_arn": self.firewall.arn,
                "policy_arn": self.policy.arn,
                "alert_log_group": self.log_groups["ALERT"].name,
                "flow_log_group": self.log_groups["FLOW"].name,
            }
        )

    def endpoint_id(self, availability_zone: str) -> Output[str]:
        """Endpoint id in one AZ, read from the firewall's status (an input for routes; no resource in apply)."""
        return self.firewall.firewall_statuses.apply(lambda statuses: endpoint_for_az(statuses, availability_zone))
