"""VPC endpoints: S3 through a gateway endpoint that names its buckets; optional interface endpoints."""

from __future__ import annotations

import json

import pytest

from components import config
from components.network import endpoints
from conftest import Planned, plan_stack


def _load(**raw) -> config.BeaconConfig:
    return config.load({k: json.dumps(v) if isinstance(v, list) else v for k, v in raw.items()}, "dev", "us-east-1")


def test_stack_buckets_are_the_installer_and_crl_buckets() -> None:
    assert endpoints.stack_buckets(_load()) == []
    cfg = _load(beaconInstallerS3Uri="s3://beacon-media/flexnet/FlexNet Beacon.msi", beaconInstallerSha256="a" * 64,
                crlHosting="s3", crlBucketName="example-devices-crl")
    assert endpoints.stack_buckets(cfg) == ["beacon-media", "example-devices-crl"]


def test_endpoint_policy_names_exactly_the_buckets() -> None:
    policy = json.loads(endpoints.endpoint_policy("eu-west-1", ["beacon-media"]))
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert set(statements) == {"SsmAgentBuckets", "StackBuckets"}
    assert all(s["Effect"] == "Allow" and s["Action"] == "s3:GetObject" and s["Principal"] == "*" for s in statements.values())
    assert statements["StackBuckets"]["Resource"] == ["arn:aws:s3:::beacon-media/*"]
    agent = statements["SsmAgentBuckets"]["Resource"]
    assert "arn:aws:s3:::amazon-ssm-eu-west-1/*" in agent and "arn:aws:s3:::eu-west-1-birdwatcher-prod/*" in agent
    # No wildcard bucket: every resource names one bucket of this region.
    resources = [r for s in statements.values() for r in s["Resource"]]
    assert all(r.count("*") == 1 and r.endswith("/*") and "*" not in r[:-2] for r in resources)
    # Without stack buckets only SSM Agent's own buckets.
    assert [s["Sid"] for s in json.loads(endpoints.endpoint_policy("eu-west-1", []))["Statement"]] == ["SsmAgentBuckets"]


def test_partitions_and_service_names() -> None:
    assert endpoints.service_name("us-east-1", "s3") == "com.amazonaws.us-east-1.s3"
    assert endpoints.service_name("cn-north-1", "ssm") == "cn.com.amazonaws.cn-north-1.ssm"
    china = json.loads(endpoints.endpoint_policy("cn-north-1", ["b"]))
    assert all(r.startswith("arn:aws-cn:s3:::") for s in china["Statement"] for r in s["Resource"])


def test_dns_names_cover_regional_and_legacy_global_forms() -> None:
    assert endpoints.dns_names("us-east-1", ["beacon-media"]) == [
        "beacon-media.s3.amazonaws.com",
        "beacon-media.s3.us-east-1.amazonaws.com",
        "s3.us-east-1.amazonaws.com",
    ]
    assert endpoints.dns_names("cn-north-1", ["b"]) == ["b.s3.cn-north-1.amazonaws.com.cn", "s3.cn-north-1.amazonaws.com.cn"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_s3_gateway_endpoint_on_every_protected_route_table(stack: str, request: pytest.FixtureRequest) -> None:
    p: Planned = request.getfixturevalue(stack)
    gateway = p.one("ec2/vpcEndpoint:VpcEndpoint", "net-s3").inputs
    assert gateway["vpcEndpointType"] == "Gateway"
    assert gateway["serviceName"] == "com.amazonaws.us-east-1.s3"
    # Protected route tables only, every one (firewall subnets originate nothing).
    protected_tables = sorted(r.urn for r in p.of_type("ec2/routeTable:RouteTable") if "-protected-rt-" in r.name)
    assert len(gateway["routeTableIds"]) == len(protected_tables) > 0
    ep = p.one("ec2/vpcEndpoint:VpcEndpoint", "net-s3")
    assert sorted(ep.property_dependencies["routeTableIds"]) == protected_tables
    # SSM Agent's buckets and the stack's converge bucket, nothing else.
    assert json.loads(gateway["policy"]) == json.loads(endpoints.endpoint_policy("us-east-1", [p.outputs["mtls"]["stateBucket"]]))


def test_stack_buckets_reach_the_endpoint_policy() -> None:
    p = plan_stack("dev", {"beaconInstallerS3Uri": "s3://beacon-media/flexnet/beacon.msi", "beaconInstallerSha256": "c" * 64})
    policy = json.loads(p.one("ec2/vpcEndpoint:VpcEndpoint", "net-s3").inputs["policy"])
    assert {"Sid": "StackBuckets", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": ["arn:aws:s3:::beacon-media/*", f"arn:aws:s3:::{p.outputs['mtls']['stateBucket']}/*"]} in policy["Statement"]


def test_no_interface_endpoints_by_default(dev: Planned) -> None:
    assert [e.name for e in dev.of_type("ec2/vpcEndpoint:VpcEndpoint")] == ["net-s3"]
    assert not dev.of_type("ec2/securityGroup:SecurityGroup") or all(g.name != "net-endpoints-sg" for g in dev.of_type("ec2/securityGroup:SecurityGroup"))


def test_private_aws_endpoints_in_every_az_with_their_security_group() -> None:
    p = plan_stack("prod", {"privateAwsEndpoints": "true"})
    interface = {e.name: e.inputs for e in p.of_type("ec2/vpcEndpoint:VpcEndpoint") if e.inputs["vpcEndpointType"] == "Interface"}
    assert sorted(interface) == sorted(f"net-{s}" for s in ("ssm", "ssmmessages", "ec2messages", "secretsmanager", "logs", "monitoring"))
    protected = p.outputs["protectedSubnetIds"]
    for name, inputs in interface.items():
        assert inputs["privateDnsEnabled"] is True
        assert inputs["serviceName"] == f"com.amazonaws.us-east-1.{name[len('net-'):]}"
        assert inputs["subnetIds"] == protected
    sg = p.one("ec2/securityGroup:SecurityGroup", "net-endpoints-sg").inputs
    protected_cidrs = sorted(s.inputs["cidrBlock"] for s in p.of_type("subnet:Subnet") if "-protected-" in s.name)
    assert [(r["protocol"], r["fromPort"], r["toPort"], sorted(r["cidrBlocks"])) for r in sg["ingress"]] == [("tcp", 443, 443, protected_cidrs)]
    assert sg["egress"] == []


def test_interface_endpoints_are_in_the_cost_estimate() -> None:
    from scripts.cost import estimate, load_prices

    def cost(overrides: dict) -> dict:
        p = plan_stack("prod", overrides)
        resources = [{"type": r.type, "inputs": r.inputs} for r in p.resources]
        return estimate(resources, "us-east-1", load_prices())

    off, on = cost({}), cost({"privateAwsEndpoints": "true"})
    line = next(l for l in on["lines"] if l["kind"] == "VPC interface endpoints")
    assert line["quantity"] == 6 * 2 * 730 and line["monthly"] == round(6 * 2 * 730 * 0.01, 2)
    assert not any(l["kind"] == "VPC interface endpoints" for l in off["lines"])
    assert on["monthlyTotal"] == round(off["monthlyTotal"] + line["monthly"], 2)
