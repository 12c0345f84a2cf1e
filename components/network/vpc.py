"""BeaconNetwork: the dedicated VPC, routed per AZ through the Network Firewall.

Per AZ: a /28 firewall subnet (default route to the internet gateway) and a protected subnet
for the beacons (default route to the firewall endpoint of the same AZ). The IGW edge route
table sends each protected subnet's CIDR to that same endpoint, so traffic is inspected in
both directions by one endpoint: routing is symmetric per AZ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from .firewall import BeaconFirewall, BeaconFirewallArgs
from .firewall_rules import RuleGroupSpec
from .layout import AzLayout
from ..beacon.policy import partition_for
from . import endpoints
from .dns_firewall import BeaconDnsFirewall, BeaconDnsFirewallArgs
from ..log_groups import log_group
from ..tagging import component_tags


@dataclass
class BeaconNetworkArgs:
    vpc_cidr: str
    zones: Sequence[AzLayout]
    rule_groups: Sequence[RuleGroupSpec]
    protection: bool
    log_group_prefix: str  # e.g. /flexnet-beacon/dev
    # Firewall logs: under /aws/vendedlogs/ the account-wide CloudWatch Logs resource policy that
    # Network Firewall log delivery needs stays one wildcard entry (it has a 5,120-character limit).
    firewall_log_group_prefix: str  # e.g. /aws/vendedlogs/flexnet-beacon/dev
    region: str
    account_id: pulumi.Input[str]
    flow_log_retention_days: int
    firewall_log_retention_days: int
    log_kms_key_arn: str = ""
    permissions_boundary_arn: str = ""
    s3_endpoint_policy: pulumi.Input[str] = ""  # endpoints.endpoint_policy: the buckets the beacons may read
    interface_endpoint_services: Sequence[str] = ()  # privateAwsEndpoints: e.g. ssm, logs
    dns_allowed_domains: pulumi.Input[Sequence[str]] = ()  # dns_rules.dns_allowlist: what the VPC may resolve
    resource_name_prefix: str = "flexnet-beacon"  # e.g. flexnet-beacon-dev: names of account-wide objects
    tags: dict[str, str] = field(default_factory=dict)


def flow_log_assume_role_policy(partition: str, region: str, account_id: str) -> str:
    """VPC Flow Logs may assume the role only for flow logs of this account (confused deputy)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account_id},
                        "ArnLike": {"aws:SourceArn": f"arn:{partition}:ec2:{region}:{account_id}:vpc-flow-log/*"},
                    },
                }
            ],
        },
        sort_keys=True,
    )


def flow_log_write_policy(log_group_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    "Resource": [log_group_arn, f"{log_group_arn}:*"],
                }
            ],
        },
        sort_keys=True,
    )


class BeaconNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, args: BeaconNetworkArgs, opts: Optional[ResourceOptions] = None):
        super().__init__("flexnet-beacon:index:BeaconNetwork", name, None, opts)
        child = ResourceOptions(parent=self)
        tags = lambda part: component_tags(args.tags, "network", f"{name}-{part}")  # noqa: E731

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            aws.ec2.VpcArgs(
                cidr_block=args.vpc_cidr,
                enable_dns_support=True,
                enable_dns_hostnames=True,
                tags=tags("vpc"),
            ),
            opts=child,
        )

        # Take over the defaults with no rules: nothing may lean on them by accident.
        self.default_security_group = aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            aws.ec2.DefaultSecurityGroupArgs(vpc_id=self.vpc.id, ingress=[], egress=[], tags=tags("default-sg")),
            opts=child,
        )
        self.default_network_acl = aws.ec2.DefaultNetworkAcl(
            f"{name}-default-nacl",
            aws.ec2.DefaultNetworkAclArgs(
                default_network_acl_id=self.vpc.default_network_acl_id,
                ingress=[],
                egress=[],
                tags=tags("default-nacl"),
            ),
            # Our subnets move to their own NACL; the provider would otherwise fight over them.
            opts=ResourceOptions.merge(child, ResourceOptions(ignore_changes=["subnetIds"])),
        )

        self.internet_gateway = aws.ec2.InternetGateway(
            f"{name}-igw", aws.ec2.InternetGatewayArgs(vpc_id=self.vpc.id, tags=tags("igw")), opts=child
        )

        def subnet(kind: str, zone: AzLayout, cidr: str) -> aws.ec2.Subnet:
            part = f"{kind}-az{zone.index + 1}"
            return aws.ec2.Subnet(
                f"{name}-{part}",
                aws.ec2.SubnetArgs(
                    vpc_id=self.vpc.id,
                    cidr_block=cidr,
                    availability_zone=zone.availability_zone,
                    # Beacons get an Elastic IP; nothing gets a public address by default.
                    map_public_ip_on_launch=False,
                    tags=tags(part),
                ),
                opts=child,
            )

        self.firewall_subnets = [subnet("firewall", z, z.firewall_cidr) for z in args.zones]
        self.protected_subnets = [subnet("protected", z, z.protected_cidr) for z in args.zones]

        # Stateless filtering is the firewall's and the security groups' job: the subnets'
        # own NACL allows all, while the default NACL stays empty.
        self.network_acl = aws.ec2.NetworkAcl(
            f"{name}-nacl",
            aws.ec2.NetworkAclArgs(
                vpc_id=self.vpc.id,
                subnet_ids=[s.id for s in self.firewall_subnets + self.protected_subnets],
                ingress=[aws.ec2.NetworkAclIngressArgs(rule_no=100, action="allow", protocol="-1", cidr_block="0.0.0.0/0", from_port=0, to_port=0)],
                egress=[aws.ec2.NetworkAclEgressArgs(rule_no=100, action="allow", protocol="-1", cidr_block="0.0.0.0/0", from_port=0, to_port=0)],
                tags=tags("nacl"),
            ),
            opts=child,
        )

        self.firewall = BeaconFirewall(
            f"{name}-nfw",
            BeaconFirewallArgs(
                vpc_id=self.vpc.id,
                firewall_subnet_ids=[s.id for s in self.firewall_subnets],
                rule_groups=args.rule_groups,
                delete_protection=args.protection,
                alert_log_group_name=f"{args.firewall_log_group_prefix}/firewall-alert",
                flow_log_group_name=f"{args.firewall_log_group_prefix}/firewall-flow",
                log_retention_days=args.firewall_log_retention_days,
                log_kms_key_arn=args.log_kms_key_arn,
                tags=args.tags,
            ),
            opts=child,
        )

        self.firewall_route_tables: list[aws.ec2.RouteTable] = []
        self.protected_route_tables: list[aws.ec2.RouteTable] = []
        self.edge_routes: list[aws.ec2.Route] = []
        self.endpoint_ids: dict[str, pulumi.Output[str]] = {}
        self.edge_route_table = aws.ec2.RouteTable(
            f"{name}-edge-rt", aws.ec2.RouteTableArgs(vpc_id=self.vpc.id, tags=tags("edge-rt")), opts=child
        )
        self.edge_association = aws.ec2.RouteTableAssociation(
            f"{name}-edge-assoc",
            aws.ec2.RouteTableAssociationArgs(
                route_table_id=self.edge_route_table.id, gateway_id=self.internet_gateway.id
            ),
            opts=child,
        )
        def default_route_table(kind: str, suffix: str, subnet: aws.ec2.Subnet, **target: pulumi.Input[str]) -> aws.ec2.RouteTable:
            """A subnet's own route table whose default route goes to `target` (gateway_id or vpc_endpoint_id)."""
            table = aws.ec2.RouteTable(
                f"{name}-{kind}-rt-{suffix}",
                aws.ec2.RouteTableArgs(vpc_id=self.vpc.id, tags=tags(f"{kind}-rt-{suffix}")),
                opts=child,
            )
            aws.ec2.Route(
                f"{name}-{kind}-default-{suffix}",
                aws.ec2.RouteArgs(route_table_id=table.id, destination_cidr_block="0.0.0.0/0", **target),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-{kind}-assoc-{suffix}",
                aws.ec2.RouteTableAssociationArgs(route_table_id=table.id, subnet_id=subnet.id),
                opts=child,
            )
            return table

        for zone, firewall_subnet, protected_subnet in zip(args.zones, self.firewall_subnets, self.protected_subnets):
            suffix = f"az{zone.index + 1}"
            endpoint_id = self.firewall.endpoint_id(zone.availability_zone)
            self.endpoint_ids[zone.availability_zone] = endpoint_id
            # Firewall subnets go out to the internet gateway; protected subnets through the
            # firewall endpoint of their own AZ.
            self.firewall_route_tables.append(
                default_route_table("firewall", suffix, firewall_subnet, gateway_id=self.internet_gateway.id)
            )
            self.protected_route_tables.append(
                default_route_table("protected", suffix, protected_subnet, vpc_endpoint_id=endpoint_id)
            )

            # Return path: traffic arriving at the IGW for this AZ's beacons goes through the
            # same AZ's endpoint it left by. The destination is the subnet's own output, so the
            # engine creates the route after the subnet (AWS refuses a route to a CIDR no
            # subnet of the VPC has yet).
            self.edge_routes.append(
                aws.ec2.Route(
                    f"{name}-edge-{suffix}",
                    aws.ec2.RouteArgs(
                        route_table_id=self.edge_route_table.id,
                        destination_cidr_block=protected_subnet.cidr_block,
                        vpc_endpoint_id=endpoint_id,
                    ),
                    opts=child,
                )
            )

        # S3 never crosses the firewall: the protected subnets reach it through a gateway
        # endpoint (a prefix-list route, more specific than the default route to the firewall),
        # and the endpoint policy names the buckets; any other bucket gets 403.
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            aws.ec2.VpcEndpointArgs(
                vpc_id=self.vpc.id,
                service_name=endpoints.service_name(args.region, "s3"),
                vpc_endpoint_type="Gateway",
                route_table_ids=[table.id for table in self.protected_route_tables],
                policy=args.s3_endpoint_policy,
                tags=tags("s3"),
            ),
            opts=child,
        )

        # privateAwsEndpoints: the AWS APIs answer inside the VPC (private DNS), so that traffic
        # crosses neither the firewall nor the internet.
        self.interface_endpoints: dict[str, aws.ec2.VpcEndpoint] = {}
        self.endpoint_security_group = None
        if args.interface_endpoint_services:
            self.endpoint_security_group = aws.ec2.SecurityGroup(
                f"{name}-endpoints-sg",
                aws.ec2.SecurityGroupArgs(
                    vpc_id=self.vpc.id,
                    description="AWS API interface endpoints: https from the beacons' subnets",
                    ingress=[
                        aws.ec2.SecurityGroupIngressArgs(
                            protocol="tcp",
                            from_port=443,
                            to_port=443,
                            cidr_blocks=[z.protected_cidr for z in args.zones],
                            description="beacons to AWS APIs",
                        )
                    ],
                    egress=[],
                    tags=tags("endpoints-sg"),
                ),
                opts=child,
            )
            for service in args.interface_endpoint_services:
                self.interface_endpoints[service] = aws.ec2.VpcEndpoint(
                    f"{name}-{service}",
                    aws.ec2.VpcEndpointArgs(
                        vpc_id=self.vpc.id,
                        service_name=endpoints.service_name(args.region, service),
                        vpc_endpoint_type="Interface",
                        private_dns_enabled=True,
                        subnet_ids=[s.id for s in self.protected_subnets],
                        security_group_ids=[self.endpoint_security_group.id],
                        tags=tags(service),
                    ),
                    opts=child,
                )

        # DNS to the VPC resolver never crosses the firewall: the DNS firewall filters it.
        self.dns_firewall = BeaconDnsFirewall(
            f"{name}-dns",
            BeaconDnsFirewallArgs(
                vpc_id=self.vpc.id,
                allowed_domains=args.dns_allowed_domains,
                name_prefix=args.resource_name_prefix,
                query_log_group_name=f"{args.firewall_log_group_prefix}/dns-queries",
                log_retention_days=args.firewall_log_retention_days,
                log_kms_key_arn=args.log_kms_key_arn,
                protection=args.protection,
                tags=args.tags,
            ),
            opts=child,
        )

        self.flow_log_group = log_group(
            f"{name}-flow-logs",
            f"{args.log_group_prefix}/vpc-flow",
            args.flow_log_retention_days,
            args.log_kms_key_arn,
            tags("flow-logs"),
            child,
            retain_on_delete=args.protection,
        )
        partition = partition_for(args.region)
        self.flow_log_role = aws.iam.Role(
            f"{name}-flow-logs-role",
            aws.iam.RoleArgs(
                assume_role_policy=pulumi.Output.from_input(args.account_id).apply(
                    lambda account: flow_log_assume_role_policy(partition, args.region, account)
                ),
                permissions_boundary=args.permissions_boundary_arn or None,
                tags=tags("flow-logs-role"),
            ),
            opts=child,
        )
        self.flow_log_role_policy = aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            aws.iam.RolePolicyArgs(
                role=self.flow_log_role.id,
                policy=self.flow_log_group.arn.apply(flow_log_write_policy),
            ),
            opts=child,
        )
        self.flow_log = aws.ec2.FlowLog(
            f"{name}-flow-log",
            aws.ec2.FlowLogArgs(
                vpc_id=self.vpc.id,
                traffic_type="ALL",
                log_destination_type="cloud-watch-logs",
                log_destination=self.flow_log_group.arn,
                iam_role_arn=self.flow_log_role.arn,
                max_aggregation_interval=60,
                tags=tags("flow-log"),
            ),
            opts=child,
        )

        self.register_outputs(
            {
                "vpc_id": self.vpc.id,
                "firewall_subnet_ids": [s.id for s in self.firewall_subnets],
                "protected_subnet_ids": [s.id for s in self.protected_subnets],
                "flow_log_group": self.flow_log_group.name,
            }
        )
