"""BeaconFirewall under mocks: strict order, default drop, rule groups, logging, protection."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.network.firewall import endpoint_for_az
from conftest import Planned, plan_stack


def test_policy_strict_order_default_drop(dev: Planned) -> None:
    policy = dev.one("firewallPolicy:FirewallPolicy").inputs["firewallPolicy"]
    assert policy["statefulEngineOptions"]["ruleOrder"] == "STRICT_ORDER"
    # Application drop/alert established (server-directed only): why, tests/network/test_firewall_flows.py
    assert policy["statefulDefaultActions"] == ["aws:drop_established_app_layer_to_server", "aws:alert_established_app_layer_to_server"]
    assert policy["statelessDefaultActions"] == ["aws:forward_to_sfe"]
    assert policy["statelessFragmentDefaultActions"] == ["aws:forward_to_sfe"]
    refs = policy["statefulRuleGroupReferences"]
    priorities = [r["priority"] for r in refs]
    assert priorities == sorted(priorities) and len(set(priorities)) == len(priorities)


# The values the API takes (botocore's network-firewall model, FirewallPolicy.StatefulDefaultActions),
# by family: the Developer Guide (strict evaluation order) allows "none or only one drop action",
# and "if either Drop established or Alert established is selected, you cannot select Application
# Layer drop established or Application Layer alert established, and vice versa".
DEFAULT_ACTION_FAMILIES = {
    "aws:drop_strict": "strict", "aws:alert_strict": "strict",
    "aws:drop_established": "established", "aws:alert_established": "established",
    "aws:drop_established_app_layer": "app_layer", "aws:alert_established_app_layer": "app_layer",
    "aws:drop_established_app_layer_to_server": "app_layer_to_server",
    "aws:alert_established_app_layer_to_server": "app_layer_to_server",
}


def test_stateful_default_actions_are_a_combination_the_api_accepts(dev: Planned) -> None:
    actions = dev.one("firewallPolicy:FirewallPolicy").inputs["firewallPolicy"]["statefulDefaultActions"]
    assert set(actions) <= set(DEFAULT_ACTION_FAMILIES), actions
    assert len([a for a in actions if a.startswith("aws:drop")]) == 1, "exactly one drop default (default deny)"
    families = {DEFAULT_ACTION_FAMILIES[a] for a in actions} - {"strict"}
    assert len(families) == 1, f"established and application-layer defaults mixed: {actions}"
    # every drop has its alert twin: without it the drops are not logged to the ALERT log
    assert {a.replace("aws:drop", "aws:alert") for a in actions if a.startswith("aws:drop")} <= set(actions)


def test_botocore_knows_the_stateful_default_actions() -> None:
    """The service model the AWS SDKs are generated from lists every value used (documentation only:
    the shape is a list of strings, which the API validates, not the SDK or the Pulumi provider)."""
    import botocore.session

    from components.network.firewall import STATEFUL_DEFAULT_ACTIONS

    shape = botocore.session.get_session().get_service_model("network-firewall").shape_for("FirewallPolicy")
    documented = shape.members["StatefulDefaultActions"].documentation
    for action in STATEFUL_DEFAULT_ACTIONS:
        assert f"<p>{action}</p>" in documented, action


def test_rule_groups_strict_order_and_capacity(dev: Planned) -> None:
    groups = dev.of_type("ruleGroup:RuleGroup")
    assert {g.name for g in groups} == {"net-nfw-ingress", "net-nfw-egress-handshake", "net-nfw-egress-domains"}
    arns = {r["resourceArn"] for r in dev.one("firewallPolicy:FirewallPolicy").inputs["firewallPolicy"]["statefulRuleGroupReferences"]}
    assert len(arns) == 3
    for group in groups:
        inputs = group.inputs
        assert inputs["type"] == "STATEFUL"
        body = inputs["ruleGroup"]
        assert body["statefulRuleOptions"]["ruleOrder"] == "STRICT_ORDER"
        rules = [line for line in body["rulesSource"]["rulesString"].splitlines() if line.strip()]
        assert inputs["capacity"] >= 2 * len(rules)


def test_ingress_rule_uses_allowed_cidrs_and_protected_subnets() -> None:
    p = plan_stack("prod", {"allowedIngressCidrs": ["203.0.113.0/24", "198.51.100.0/24"]})
    group = p.one("ruleGroup:RuleGroup", "net-nfw-ingress").inputs["ruleGroup"]
    ip_sets = {s["key"]: s["ipSet"]["definitions"] for s in group["ruleVariables"]["ipSets"]}
    assert ip_sets["AGENT_NET"] == ["203.0.113.0/24", "198.51.100.0/24"]
    protected = sorted(s.inputs["cidrBlock"] for s in p.of_type("subnet:Subnet") if "-protected-" in s.name)
    assert sorted(ip_sets["BEACON_NET"]) == protected
    rules = group["rulesSource"]["rulesString"]
    assert "-> $BEACON_NET 443" in rules and " 80 " not in rules


def test_http_only_when_configured() -> None:
    p = plan_stack("dev", {"allowHttp": "true"})
    rules = p.one("ruleGroup:RuleGroup", "net-nfw-ingress").inputs["ruleGroup"]["rulesSource"]["rulesString"]
    assert "-> $BEACON_NET 80 " in rules


def test_egress_allowlist_in_rules_and_outputs(dev: Planned) -> None:
    rules = dev.one("ruleGroup:RuleGroup", "net-nfw-egress-domains").inputs["ruleGroup"]["rulesSource"]["rulesString"]
    allow = dev.outputs["egressAllowlist"]
    for group, domains in allow.items():
        for domain in domains:
            assert f'content:"{domain}"' in rules, (group, domain)
    assert "crl.example.com" in allow["crl"]
    assert "ssm.us-east-1.amazonaws.com" in allow["aws-endpoints"]


def test_disabled_group_and_extension() -> None:
    p = plan_stack("dev", {"egressDisabledGroups": ["windows-update"], "awsEndpointsExtraDomains": ["kms.us-east-1.amazonaws.com"]})
    allow = p.outputs["egressAllowlist"]
    assert "windows-update" not in allow
    assert "kms.us-east-1.amazonaws.com" in allow["aws-endpoints"]
    rules = p.one("ruleGroup:RuleGroup", "net-nfw-egress-domains").inputs["ruleGroup"]["rulesSource"]["rulesString"]
    assert "windowsupdate" not in rules


def test_logging_alert_and_flow(dev: Planned) -> None:
    logging = dev.one("loggingConfiguration:LoggingConfiguration").inputs["loggingConfiguration"]
    configs = {c["logType"]: c for c in logging["logDestinationConfigs"]}
    assert set(configs) == {"ALERT", "FLOW"}
    for log_type, c in configs.items():
        assert c["logDestinationType"] == "CloudWatchLogs"
        # Under /aws/vendedlogs/: the account's log-delivery resource policy stays one wildcard.
        assert c["logDestination"]["logGroup"] == f"/aws/vendedlogs/flexnet-beacon/dev/firewall-{log_type.lower()}"
    assert dev.outputs["logGroups"]["firewallAlert"] == "/aws/vendedlogs/flexnet-beacon/dev/firewall-alert"


@pytest.mark.parametrize("stack,expected", [("dev", False), ("prod", True)])
def test_delete_protection_in_prod(stack: str, expected: bool, request: pytest.FixtureRequest) -> None:
    firewall = request.getfixturevalue(stack).one("networkfirewall/firewall:Firewall").inputs
    assert firewall["deleteProtection"] is expected
    assert firewall["subnetChangeProtection"] is expected


def test_protection_auto_follows_stack_name() -> None:
    p = plan_stack("dev", {"protection": "auto"}, stack_name="prod-eu")
    assert p.one("networkfirewall/firewall:Firewall").inputs["deleteProtection"] is True
    p = plan_stack("dev", {"protection": "auto"}, stack_name="staging")
    assert p.one("networkfirewall/firewall:Firewall").inputs["deleteProtection"] is False


def test_endpoint_for_az_matches_by_zone() -> None:
    statuses = [
        {
            "syncStates": [
                {"availabilityZone": "eu-west-1b", "attachments": [{"endpointId": "vpce-b"}]},
                {"availabilityZone": "eu-west-1a", "attachments": [{"endpointId": "vpce-a"}]},
            ]
        }
    ]
    assert endpoint_for_az(statuses, "eu-west-1a") == "vpce-a"
    assert endpoint_for_az(statuses, "eu-west-1b") == "vpce-b"
    snake = [{"sync_states": [{"availability_zone": "eu-west-1c", "attachments": [{"endpoint_id": "vpce-c"}]}]}]
    assert endpoint_for_az(snake, "eu-west-1c") == "vpce-c"
    with pytest.raises(pulumi.RunError, match=r"no endpoint in eu-west-1c \(endpoints in: eu-west-1a, eu-west-1b\)") as missing:
        endpoint_for_az(statuses, "eu-west-1c")
    assert "\n" not in str(missing.value), "one line: the engine prints it as the whole error"
    with pytest.raises(pulumi.RunError, match=r"endpoints in: none"):
        endpoint_for_az(None, "eu-west-1a")


def test_missing_endpoint_stops_the_program_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    """A firewall whose second AZ has no endpoint yet: the whole program ends as one clean line
    (the plan's exit 2), not a traceback from inside the apply that reads the endpoint."""
    from scripts import offline, plan

    real = offline.PlanMocks.new_resource

    def second_az_not_attached(self, args):
        rid, state = real(self, args)
        if args.typ == "aws:networkfirewall/firewall:Firewall":
            syncs = state["firewallStatuses"][0]["syncStates"]
            state["firewallStatuses"] = [{"syncStates": [s for s in syncs if not s["availabilityZone"].endswith("b")]}]
        return rid, state

    monkeypatch.setattr(offline.PlanMocks, "new_resource", second_az_not_attached)
    code = plan.main(["--stack", "prod", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no endpoint in us-east-1b (endpoints in: us-east-1a)" in err
    assert "Traceback" not in err


def test_firewall_resources_parented_to_component(dev: Planned) -> None:
    for r in dev.resources:
        if r.type.startswith("aws:networkfirewall/"):
            assert r.parent.endswith("BeaconFirewall::net-nfw"), (r.name, r.parent)
    assert json.dumps(dev.outputs["firewallArn"]).startswith('"arn:aws:networkfirewall:')
