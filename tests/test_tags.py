"""Every taggable resource carries the stack, component, owner and cost centre tags."""

from __future__ import annotations

import importlib
import inspect

import pytest

from conftest import Planned


def _args_class(type_token: str):
    # aws:ec2/routeTable:RouteTable -> pulumi_aws.ec2.RouteTableArgs
    _, module_path, cls = type_token.split(":")
    module = importlib.import_module(f"pulumi_aws.{module_path.split('/')[0]}")
    return getattr(module, f"{cls}Args")


def taggable(type_token: str) -> bool:
    return "tags" in inspect.signature(_args_class(type_token).__init__).parameters


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_taggable_resource_is_tagged(stack: str, request: pytest.FixtureRequest) -> None:
    p: Planned = request.getfixturevalue(stack)
    checked = 0
    for resource in p.resources:
        if not resource.custom or not taggable(resource.type):
            continue
        tags = resource.inputs.get("tags") or {}
        assert tags.get("flexnet-beacon:stack") == stack, resource.name
        assert tags.get("flexnet-beacon:component") in {"network", "firewall", "dns-firewall", "beacon", "iis-mtls", "iis-logs", "crl-hosting", "require-gate"}, resource.name
        assert tags.get("Owner") == "platform-team", resource.name
        assert tags.get("CostCentre") == f"it-ops-{stack}", resource.name
        assert tags.get("Name") == resource.name, resource.name
        checked += 1
    assert checked >= 20


def test_untaggable_types_are_really_untaggable(dev: Planned) -> None:
    skipped = {r.type for r in dev.resources if r.custom and not taggable(r.type)}
    # Routes, associations, role policies, logging and DNS firewall configuration, DNS firewall
    # rules and the S3 bucket's configuration resources have no tags argument.
    assert skipped == {
        "aws:ec2/route:Route",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:networkfirewall/loggingConfiguration:LoggingConfiguration",
        "aws:route53/resolverFirewallConfig:ResolverFirewallConfig",
        "aws:route53/resolverFirewallRule:ResolverFirewallRule",
        "aws:route53/resolverQueryLogConfigAssociation:ResolverQueryLogConfigAssociation",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
    }


def test_root_volume_tagged(dev: Planned) -> None:
    root = dev.one("ec2/instance:Instance").inputs["rootBlockDevice"]
    assert root["tags"]["flexnet-beacon:stack"] == "dev"
