"""BeaconDnsFirewall: Route 53 Resolver DNS Firewall on the VPC, built from dns_rules.dns_allowlist."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
from pulumi import Input, ResourceOptions

from ..log_groups import log_group
from ..tagging import component_tags
from .dns_rules import BLOCK_ALL

ALLOW_PRIORITY = 100
BLOCK_PRIORITY = 200
# Rule-group order on the VPC; leaves room for an organisation's own groups before and after.
ASSOCIATION_PRIORITY = 1000


@dataclass
class BeaconDnsFirewallArgs:
    vpc_id: Input[str]
    allowed_domains: Input[Sequence[str]]
    name_prefix: str  # e.g. flexnet-beacon-dev: names of the lists, group and log config
    query_log_group_name: str
    log_retention_days: int
    log_kms_key_arn: str = ""
    protection: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class BeaconDnsFirewall(pulumi.ComponentResource):
    def __init__(self, name: str, args: BeaconDnsFirewallArgs, opts: Optional[ResourceOptions] = None):
        super().__init__("flexnet-beacon:index:BeaconDnsFirewall", name, None, opts)
        child = ResourceOptions(parent=self)
        tags = lambda part: component_tags(args.tags, "dns-firewall", f"{name}-{part}")  # noqa: E731

        self.allowed_list = aws.route53.ResolverFirewallDomainList(
            f"{name}-allowed",
            aws.route53.ResolverFirewallDomainListArgs(
                name=f"{args.name_prefix}-allowed", domains=args.allowed_domains, tags=tags("allowed")
            ),
            opts=child,
        )
        self.everything_list = aws.route53.ResolverFirewallDomainList(
            f"{name}-everything",
            aws.route53.ResolverFirewallDomainListArgs(name=f"{args.name_prefix}-everything", domains=[BLOCK_ALL], tags=tags("everything")),
            opts=child,
        )
        self.rule_group = aws.route53.ResolverFirewallRuleGroup(
            f"{name}-rules",
            aws.route53.ResolverFirewallRuleGroupArgs(name=f"{args.name_prefix}-dns", tags=tags("rules")),
            opts=child,
        )
        self.allow_rule = aws.route53.ResolverFirewallRule(
            f"{name}-allow",
            aws.route53.ResolverFirewallRuleArgs(
                name="allow-listed",
                action="ALLOW",
                # An allowed name's CNAME chain (CDNs behind Windows Update, S3's regional
                # aliases) is its owner's choice, not the beacon's: trust it rather than block
                # the answer halfway.
                firewall_domain_redirection_action="TRUST_REDIRECTION_DOMAIN",
                firewall_domain_list_id=self.allowed_list.id,
                firewall_rule_group_id=self.rule_group.id,
                priority=ALLOW_PRIORITY,
            ),
            opts=child,
        )
        self.block_rule = aws.route53.ResolverFirewallRule(
            f"{name}-block",
            aws.route53.ResolverFirewallRuleArgs(
                name="block-everything-else",
                action="BLOCK",
                block_response="NXDOMAIN",
                firewall_domain_list_id=self.everything_list.id,
                firewall_rule_group_id=self.rule_group.id,
                priority=BLOCK_PRIORITY,
            ),
            opts=child,
        )
        self.association = aws.route53.ResolverFirewallRuleGroupAssociation(
            f"{name}-association",
            aws.route53.ResolverFirewallRuleGroupAssociationArgs(
                name=f"{args.name_prefix}-dns",
                firewall_rule_group_id=self.rule_group.id,
                vpc_id=args.vpc_id,
                priority=ASSOCIATION_PRIORITY,
                # Protected stacks: nobody changes the VPC's DNS rules outside this program.
                mutation_protection="ENABLED" if args.protection else "DISABLED",
                tags=tags("association"),
            ),
            # The rules exist before the group starts filtering the VPC.
            opts=ResourceOptions.merge(child, ResourceOptions(depends_on=[self.allow_rule, self.block_rule])),
        )
        # Fail closed: when the DNS firewall cannot answer, queries are refused, not let through.
        self.config = aws.route53.ResolverFirewallConfig(
            f"{name}-config",
            aws.route53.ResolverFirewallConfigArgs(resource_id=args.vpc_id, firewall_fail_open="DISABLED"),
            opts=child,
        )

        self.query_log_group = log_group(
            f"{name}-query-logs",
            args.query_log_group_name,
            args.log_retention_days,
            args.log_kms_key_arn,
            tags("query-logs"),
            child,
            retain_on_delete=args.protection,
        )
        self.query_log_config = aws.route53.ResolverQueryLogConfig(
            f"{name}-query-log",
            aws.route53.ResolverQueryLogConfigArgs(
                name=f"{args.name_prefix}-dns", destination_arn=self.query_log_group.arn, tags=tags("query-log")
            ),
            opts=child,
        )
        self.query_log_association = aws.route53.ResolverQueryLogConfigAssociation(
            f"{name}-query-log-association",
            aws.route53.ResolverQueryLogConfigAssociationArgs(
                resolver_query_log_config_id=self.query_log_config.id, resource_id=args.vpc_id
            ),
            opts=child,
        )
        self.register_outputs(
            {"rule_group_id": self.rule_group.id, "query_log_group": self.query_log_group.name}
        )
