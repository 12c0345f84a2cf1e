"""BeaconNetwork under mocks: per-AZ symmetric routing through the firewall, flow logs, defaults."""

from __future__ import annotations

import ipaddress

import pytest

from conftest import Planned, plan_stack


@pytest.mark.parametrize("stack,zones", [("dev", 1), ("prod", 2)])
def test_zone_and_beacon_counts(stack: str, zones: int, request: pytest.FixtureRequest) -> None:
    p: Planned = request.getfixturevalue(stack)
    subnets = p.of_type("subnet:Subnet")
    assert len({s.inputs["availabilityZone"] for s in subnets}) == zones
    assert len([s for s in subnets if "-firewall-" in s.name]) == zones
    assert len([s for s in subnets if "-protected-" in s.name]) == zones
    assert len(p.of_type("ec2/instance:Instance")) == zones  # dev 1 beacon, prod 2
    firewall = p.one("networkfirewall/firewall:Firewall")
    assert len(firewall.inputs["subnetMappings"]) == zones


def test_vpc_dns_on(dev: Planned) -> None:
    vpc = dev.one("ec2/vpc:Vpc")
    assert vpc.inputs["enableDnsSupport"] is True
    assert vpc.inputs["enableDnsHostnames"] is True
    assert vpc.inputs["cidrBlock"] == "10.80.0.0/22"


def _routes(p: Planned) -> dict[str, dict]:
    return {r.name: r.inputs for r in p.of_type("ec2/route:Route")}


def test_routes_per_az_use_that_azs_endpoint() -> None:
    p = plan_stack("prod", {"azCount": 3, "beaconCount": 3})
    endpoints = p.outputs["firewallEndpoints"]
    assert len(set(endpoints.values())) == 3, "one endpoint per AZ"
    subnets = {s.name: s.inputs for s in p.of_type("subnet:Subnet")}
    routes = _routes(p)
    for n in (1, 2, 3):
        zone = subnets[f"net-protected-az{n}"]["availabilityZone"]
        assert subnets[f"net-firewall-az{n}"]["availabilityZone"] == zone
        protected_default = routes[f"net-protected-default-az{n}"]
        assert protected_default["destinationCidrBlock"] == "0.0.0.0/0"
        assert protected_default["vpcEndpointId"] == endpoints[zone]
        edge = routes[f"net-edge-az{n}"]
        # Symmetric: traffic back to this AZ's beacons enters through the same endpoint.
        assert edge["destinationCidrBlock"] == subnets[f"net-protected-az{n}"]["cidrBlock"]
        assert edge["vpcEndpointId"] == endpoints[zone]
        firewall_default = routes[f"net-firewall-default-az{n}"]
        assert firewall_default["destinationCidrBlock"] == "0.0.0.0/0"
        assert firewall_default["gatewayId"].startswith("igw-")
        assert "vpcEndpointId" not in firewall_default


def test_route_tables_associated_with_their_subnets(prod: Planned) -> None:
    tables = {}
    for assoc in prod.of_type("routeTableAssociation:RouteTableAssociation"):
        tables[assoc.name] = assoc.inputs
    subnet_ids = {s.name: s for s in prod.of_type("subnet:Subnet")}
    routes = _routes(prod)
    for n in (1, 2):
        protected_assoc = tables[f"net-protected-assoc-az{n}"]
        firewall_assoc = tables[f"net-firewall-assoc-az{n}"]
        assert protected_assoc["routeTableId"] == routes[f"net-protected-default-az{n}"]["routeTableId"]
        assert firewall_assoc["routeTableId"] == routes[f"net-firewall-default-az{n}"]["routeTableId"]
        assert protected_assoc["subnetId"] != firewall_assoc["subnetId"]
    assert len(subnet_ids) == 4


def test_igw_edge_association(prod: Planned) -> None:
    edge = prod.one("routeTableAssociation:RouteTableAssociation", "net-edge-assoc")
    assert edge.inputs["gatewayId"].startswith("igw-")
    assert "subnetId" not in edge.inputs
    edge_routes = [r for n, r in _routes(prod).items() if n.startswith("net-edge-")]
    assert {r["routeTableId"] for r in edge_routes} == {edge.inputs["routeTableId"]}
    assert len(edge_routes) == 2


def test_no_direct_internet_route_for_beacons(prod: Planned) -> None:
    for name, route in _routes(prod).items():
        if "protected" in name:
            assert "gatewayId" not in route, f"{name} bypasses the firewall"


def test_subnets_inside_vpc_and_disjoint(prod: Planned) -> None:
    vpc = ipaddress.ip_network(prod.one("ec2/vpc:Vpc").inputs["cidrBlock"])
    nets = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in prod.of_type("subnet:Subnet")]
    for i, a in enumerate(nets):
        assert a.subnet_of(vpc)
        for b in nets[i + 1:]:
            assert not a.overlaps(b)
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in prod.of_type("subnet:Subnet"))


def test_default_sg_and_nacl_taken_over_empty(dev: Planned) -> None:
    sg = dev.one("defaultSecurityGroup:DefaultSecurityGroup")
    assert sg.inputs.get("ingress", []) == [] and sg.inputs.get("egress", []) == []
    nacl = dev.one("defaultNetworkAcl:DefaultNetworkAcl")
    assert nacl.inputs.get("ingress", []) == [] and nacl.inputs.get("egress", []) == []
    assert nacl.inputs["defaultNetworkAclId"].startswith("acl-")
    # Our subnets use their own NACL, so the empty default does not cut them off.
    own = dev.one("ec2/networkAcl:NetworkAcl")
    assert len(own.inputs["subnetIds"]) == 2


def test_flow_logs_to_cloudwatch(dev: Planned) -> None:
    flow = dev.one("ec2/flowLog:FlowLog")
    assert flow.inputs["trafficType"] == "ALL"
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    group = dev.one("cloudwatch/logGroup:LogGroup", "net-flow-logs")
    assert flow.inputs["logDestination"].endswith(":log-group:" + group.inputs["name"])
    assert group.inputs["retentionInDays"] == 14  # dev stack value
    assert flow.inputs["iamRoleArn"]
    policy = dev.one("iam/rolePolicy:RolePolicy", "net-flow-logs-policy")
    assert group.inputs["name"] in policy.inputs["policy"]


def test_flow_log_retention_from_config() -> None:
    p = plan_stack("dev", {"flowLogRetentionDays": 731})
    assert p.one("cloudwatch/logGroup:LogGroup", "net-flow-logs").inputs["retentionInDays"] == 731


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_edge_route_destination_comes_from_its_subnet(stack: str, request: pytest.FixtureRequest) -> None:
    """The engine orders the IGW edge route after the protected subnet: its destination is the
    subnet's cidr_block output, not the same string computed beside it."""
    p: Planned = request.getfixturevalue(stack)
    protected = {s.inputs["cidrBlock"]: s.urn for s in p.of_type("subnet:Subnet") if "-protected-" in s.name}
    edges = [r for r in p.of_type("ec2/route:Route") if "-edge-" in r.name]
    assert len(edges) == len(protected) > 0
    for route in edges:
        destination = route.inputs["destinationCidrBlock"]
        assert route.property_dependencies["destinationCidrBlock"] == [protected[destination]], route.name


def test_flow_log_role_trust_is_scoped_and_bounded() -> None:
    import json

    arn = "arn:aws:iam::123456789012:policy/beacon-boundary"
    p = plan_stack("dev", {"permissionsBoundaryArn": arn})
    role = p.one("iam/role:Role", "net-flow-logs-role").inputs
    assert role["permissionsBoundary"] == arn
    statement = json.loads(role["assumeRolePolicy"])["Statement"][0]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:ec2:us-east-1:123456789012:vpc-flow-log/*"},
    }


def test_every_role_carries_the_permissions_boundary() -> None:
    """Organisations that require a boundary reject CreateRole without one: every role, not only the beacon's."""
    arn = "arn:aws:iam::123456789012:policy/beacon-boundary"
    p = plan_stack("prod", {"permissionsBoundaryArn": arn, "crlHosting": "s3", "crlBucketName": "example-devices-crl-prod"})
    roles = p.of_type("iam/role:Role")
    assert len(roles) >= 3
    assert all(r.inputs.get("permissionsBoundary") == arn for r in roles), [r.name for r in roles if r.inputs.get("permissionsBoundary") != arn]


@pytest.mark.parametrize("stack,retained", [("dev", False), ("prod", True)])
def test_log_groups_kept_on_delete_when_protected(stack: str, retained: bool, request: pytest.FixtureRequest) -> None:
    p: Planned = request.getfixturevalue(stack)
    groups = p.of_type("cloudwatch/logGroup:LogGroup")
    assert len(groups) == 7
    assert all(g.retain_on_delete is retained for g in groups), [(g.name, g.retain_on_delete) for g in groups]
    names = sorted(g.inputs["name"] for g in groups)
    assert names == sorted([f"/flexnet-beacon/{stack}/vpc-flow", f"/flexnet-beacon/{stack}/converge", f"/flexnet-beacon/{stack}/iis",
                            f"/flexnet-beacon/{stack}/httperr", f"/aws/vendedlogs/flexnet-beacon/{stack}/firewall-alert", f"/aws/vendedlogs/flexnet-beacon/{stack}/firewall-flow",
                            f"/aws/vendedlogs/flexnet-beacon/{stack}/dns-queries"])


def test_zone_ids_are_stack_outputs(prod: Planned, dev: Planned) -> None:
    assert prod.outputs["availabilityZoneIds"] == {"us-east-1a": "use1-az1", "us-east-1b": "use1-az2"}
    assert dev.outputs["availabilityZoneIds"] == {"us-east-1a": "use1-az1"}
    p = plan_stack("dev", {"aws:region": "eu-west-1", "crlUrls": ["http://crl.example.com/devices.crl"]})
    assert p.outputs["availabilityZoneIds"] == {"eu-west-1a": "euw1-az1"}


def test_a_zone_changing_state_does_not_shift_the_chosen_zones(monkeypatch: pytest.MonkeyPatch) -> None:
    """us-east-1a turns impaired: the program must still choose a and b, or every subnet and
    beacon of the stack would move to other zones on the next up."""
    from scripts import offline

    real_init = offline.PlanMocks.__init__

    def with_impaired_zone(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.impaired_zones = {"us-east-1a"}

    monkeypatch.setattr(offline.PlanMocks, "__init__", with_impaired_zone)
    p = plan_stack("prod")
    assert p.outputs["availabilityZoneIds"] == {"us-east-1a": "use1-az1", "us-east-1b": "use1-az2"}
    assert sorted({s.inputs["availabilityZone"] for s in p.of_type("subnet:Subnet")}) == ["us-east-1a", "us-east-1b"]


def test_protected_stack_without_pinned_zones_warns() -> None:
    from components.stack import prepare
    from conftest import stack_raw

    def warnings(stack: str, **overrides: str) -> list[str]:
        raw, region = stack_raw(stack)
        raw.update(overrides)
        return [w for w in prepare(raw, stack, region).warnings if w.startswith("availabilityZones is unset")]

    assert len(warnings("prod")) == 1
    assert warnings("dev") == []  # not protected
    assert warnings("prod", availabilityZones='["us-east-1a", "us-east-1b"]') == []
