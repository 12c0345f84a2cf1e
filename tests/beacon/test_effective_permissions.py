"""What the beacon role may effectively do with SSM parameters: its rendered inline policy together
with AmazonSSMManagedInstanceCore (a copy of AWS's published document, tests/beacon/fixtures),
evaluated the way IAM evaluates one principal's identity policies: an explicit Deny wins, then any
Allow, otherwise denied (IAM User Guide, "Policy evaluation logic"). Wildcards as IAM matches them:
'*' any run of characters, '?' one, actions without case, resources with case."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from components.beacon.policy import PARAMETER_READ_ACTIONS
from conftest import Planned, plan_stack

FIXTURE = Path(__file__).parent / "fixtures" / "AmazonSSMManagedInstanceCore.json"
ACCOUNT = "123456789012"


def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(statement: dict, action: str, resource: str) -> bool:
    if "Condition" in statement:
        return False  # no statement about parameters carries one; a conditional grant is not effective here
    actions = _listed(statement.get("Action", []))
    if not any(_pattern(a, True).fullmatch(action) for a in actions):
        return False
    if "NotResource" in statement:
        return not any(_pattern(r, False).fullmatch(resource) for r in _listed(statement["NotResource"]))
    return any(_pattern(r, False).fullmatch(resource) for r in _listed(statement["Resource"]))


def effective(policies: list[dict], action: str, resource: str) -> bool:
    statements = [s for p in policies for s in p["Statement"]]
    if any(s["Effect"] == "Deny" and _matches(s, action, resource) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _matches(s, action, resource) for s in statements)


@lru_cache(maxsize=1)
def core_policy() -> dict:
    return json.loads(FIXTURE.read_text())["policy"]


def role_policies(planned: Planned) -> list[dict]:
    inline = [json.loads(p.inputs["policy"]) for p in planned.of_type("iam/rolePolicy:RolePolicy") if p.name.endswith("-stack-read")]
    attached = {a.inputs["policyArn"] for a in planned.of_type("iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert attached == {"arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}, "the evaluation below knows this managed policy only"
    assert len(inline) >= 1
    return [core_policy(), inline[0]]


def parameter(name: str, region: str = "us-east-1", account: str = ACCOUNT) -> str:
    return f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


@pytest.fixture(scope="module")
def prod_policies(prod: Planned) -> list[dict]:
    return role_policies(prod)


@pytest.mark.parametrize("action", PARAMETER_READ_ACTIONS)
@pytest.mark.parametrize(
    "name",
    [
        "/other-app/db-password",                         # another application's SecureString
        "/aws/service/ami-windows-latest/Windows_Server-2022-English-Full-Base",  # a public parameter
        "/flexnet-beacon/dev/cloudwatch-agent",           # another stack of this project
        "/flexnet-beacon/prod-eu/x",                      # a stack whose name starts like this one
        "flexnet-beacon/prodx",
    ],
)
def test_no_parameter_outside_the_stack_is_readable(prod_policies: list[dict], action: str, name: str) -> None:
    assert not effective(prod_policies, action, parameter(name))


@pytest.mark.parametrize("name", ["/flexnet-beacon/prod/cloudwatch-agent", "/flexnet-beacon/prod/a/b"])
def test_the_stacks_own_parameters_stay_readable(prod_policies: list[dict], name: str) -> None:
    for action in ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"):
        assert effective(prod_policies, action, parameter(name)), action


def test_what_the_ssm_agent_needs_is_untouched(prod_policies: list[dict]) -> None:
    for action in ("ssm:UpdateInstanceInformation", "ssm:GetDocument", "ssmmessages:OpenDataChannel", "ec2messages:GetMessages"):
        assert effective(prod_policies, action, "*"), action


def test_the_managed_policy_alone_would_allow_any_parameter(prod_policies: list[dict]) -> None:
    """The problem the Deny solves, shown with the same evaluator (so the tests above can fail)."""
    assert effective([core_policy()], "ssm:GetParameter", parameter("/other-app/db-password"))
    without_deny = {"Statement": [s for s in prod_policies[1]["Statement"] if s["Effect"] == "Allow"]}
    assert effective([core_policy(), without_deny], "ssm:GetParameters", parameter("/other-app/db-password"))


def test_the_cloudwatch_agent_parameter_is_inside_the_allowed_prefix(prod: Planned) -> None:
    names = [p.inputs["name"] for p in prod.of_type("ssm/parameter:Parameter")]
    assert names and all(effective(role_policies(prod), "ssm:GetParameter", parameter(n)) for n in names)


def test_other_partitions_and_regions_are_denied_too() -> None:
    planned = plan_stack("dev", {"aws:region": "eu-west-1"})
    policies = role_policies(planned)
    assert effective(policies, "ssm:GetParameter", parameter("/flexnet-beacon/dev/cloudwatch-agent", "eu-west-1"))
    assert not effective(policies, "ssm:GetParameter", parameter("/flexnet-beacon/dev/cloudwatch-agent", "us-east-1"))
