"""BeaconHost: one hardened Windows Server 2022 beacon with its role, security group and EIP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
from pulumi import Input, ResourceOptions

from . import policy
from ..tagging import component_tags


@dataclass
class BeaconHostArgs:
    index: int
    region: str
    account_id: Input[str]
    vpc_id: Input[str]
    subnet_id: Input[str]
    availability_zone: str
    ami_id: Input[str]
    ami_pinned: bool
    instance_type: str
    root_volume_gb: int
    allowed_ingress_cidrs: Sequence[str]
    allow_http: bool
    egress_ports: Sequence[int]
    resolver_ip: str
    name_prefix: str  # flexnet-beacon/<stack>/
    protection: bool
    hostname: str = ""
    user_data: Optional[str] = None
    log_groups: Sequence[str] = ()  # log groups the beacon writes: converge reports, IIS logs
    installer_s3_uri: str = ""
    converge_bucket: Input[str] = ""  # ConvergeStateBucket: the role reads its converge/* objects
    permissions_boundary_arn: str = ""
    alarm_topic_arn: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def _sg_rule_args(rule: policy.SgRule, cls):
    return cls(
        protocol=rule.protocol,
        from_port=rule.from_port,
        to_port=rule.to_port,
        cidr_blocks=list(rule.cidrs),
        description=rule.description,
    )


class BeaconHost(pulumi.ComponentResource):
    def __init__(self, name: str, args: BeaconHostArgs, opts: Optional[ResourceOptions] = None):
        super().__init__("flexnet-beacon:index:BeaconHost", name, None, opts)
        child = ResourceOptions(parent=self)
        tags = lambda part: component_tags(args.tags, "beacon", f"{name}-{part}")  # noqa: E731
        partition = policy.partition_for(args.region)

        self.role = aws.iam.Role(
            f"{name}-role",
            aws.iam.RoleArgs(
                assume_role_policy=policy.assume_role_policy(partition),
                permissions_boundary=args.permissions_boundary_arn or None,
                description="flexnet-beacon host: SSM management and this stack's secrets",
                tags=tags("role"),
            ),
            opts=child,
        )
        self.ssm_core_attachment = aws.iam.RolePolicyAttachment(
            f"{name}-ssm-core",
            aws.iam.RolePolicyAttachmentArgs(role=self.role.name, policy_arn=policy.ssm_core_policy_arn(partition)),
            opts=child,
        )
        self.stack_read_policy = aws.iam.RolePolicy(
            f"{name}-stack-read",
            aws.iam.RolePolicyArgs(
                role=self.role.id,
                policy=pulumi.Output.all(args.account_id, args.converge_bucket).apply(
                    lambda values: policy.stack_read_policy(
                        partition, args.region, values[0], args.name_prefix, args.log_groups, args.installer_s3_uri, values[1]
                    )
                ),
            ),
            opts=child,
        )
        self.instance_profile = aws.iam.InstanceProfile(
            f"{name}-profile",
            aws.iam.InstanceProfileArgs(role=self.role.name, tags=tags("profile")),
            opts=child,
        )

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            aws.ec2.SecurityGroupArgs(
                vpc_id=args.vpc_id,
                description="flexnet-beacon: agents on 443 in; 80/443 and DNS out",
                ingress=[
                    _sg_rule_args(r, aws.ec2.SecurityGroupIngressArgs)
                    for r in policy.ingress_rules(args.allowed_ingress_cidrs, args.allow_http)
                ],
                egress=[
                    _sg_rule_args(r, aws.ec2.SecurityGroupEgressArgs)
                    for r in policy.egress_rules(args.egress_ports, args.resolver_ip)
                ],
                tags=tags("sg"),
            ),
            opts=child,
        )

        instance_opts = ResourceOptions.merge(child, ResourceOptions(ignore_changes=policy.instance_ignore_changes(args.ami_pinned)))
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            aws.ec2.InstanceArgs(
                ami=args.ami_id,
                instance_type=args.instance_type,
                subnet_id=args.subnet_id,
                vpc_security_group_ids=[self.security_group.id],
                iam_instance_profile=self.instance_profile.name,
                # No associate_public_ip_address: it forces replacement, and once the Elastic IP
                # is attached a refresh reads it back as true, so every later `up` would replace
                # the beacon. The subnet already launches without public IPs.
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                    http_endpoint="enabled",
                    http_tokens="required",
                    http_put_response_hop_limit=1,
                    instance_metadata_tags="disabled",
                ),
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                    volume_type="gp3",
                    volume_size=args.root_volume_gb,
                    encrypted=True,
                    delete_on_termination=True,
                    tags=tags("root"),
                ),
                ebs_optimized=True,
                monitoring=True,
                disable_api_termination=args.protection,
                user_data=args.user_data,
                tags=tags("instance"),
            ),
            opts=instance_opts,
        )

        self.eip = aws.ec2.Eip(
            f"{name}-eip",
            aws.ec2.EipArgs(domain="vpc", instance=self.instance.id, tags=tags("eip")),
            opts=child,
        )

        actions: list[str] = [policy.recover_action_arn(partition, args.region)]
        if args.alarm_topic_arn:
            actions.append(args.alarm_topic_arn)
        self.recover_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-recover",
            aws.cloudwatch.MetricAlarmArgs(
                alarm_description=f"Recover {name} when the EC2 system status check fails",
                namespace="AWS/EC2",
                metric_name="StatusCheckFailed_System",
                statistic="Maximum",
                period=60,
                evaluation_periods=2,
                threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                dimensions={"InstanceId": self.instance.id},
                alarm_actions=actions,
                tags=tags("recover"),
            ),
            opts=child,
        )

        self.public_ip = self.eip.public_ip
        self.public_dns = self.eip.public_dns
        self.hostname = pulumi.Output.from_input(args.hostname) if args.hostname else self.eip.public_dns
        self.register_outputs(
            {
                "instance_id": self.instance.id,
                "public_ip": self.eip.public_ip,
                "public_dns": self.eip.public_dns,
                "hostname": self.hostname,
            }
        )
