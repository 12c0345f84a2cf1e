"""flexnet-beacon guardrails, a CrossGuard policy pack: `pulumi preview --policy-pack policy`.

Wiring only: every check is a pure function in policy/rules.py (tested in tests/test_policy.py).
Each rule becomes one mandatory policy: a violation fails `pulumi preview` and stops `pulumi up`.
The Pulumi CLI runs this file with the pack directory on sys.path; the repository root is added
so that `policy` is importable as a package, the same way the tests import it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    Policy,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy import rules  # noqa: E402
from policy.adapt import current_stack, plain, stack_resources  # noqa: E402

PACK_NAME = "flexnet-beacon-guardrails"
ENFORCEMENT = EnforcementLevel.MANDATORY


def resource_policy(rule: rules.ResourceRule, stack_name: Callable[[], str]) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.types:
            return
        for message in rule.check(args.resource_type, plain(args.props), stack_name()):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.name, description=rule.description, validate=validate, enforcement_level=ENFORCEMENT
    )


def stack_policy(rule: rules.StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for violation in rule.check(stack_resources(args.resources)):
            report_violation(violation.message, violation.urn)

    return StackValidationPolicy(
        name=rule.name, description=rule.description, validate=validate, enforcement_level=ENFORCEMENT
    )


def build_policies(stack_name: Callable[[], str] = current_stack) -> list[Policy]:
    """One policy per rule; stack_name is called at validation time (injectable for tests)."""
    policies: list[Policy] = [resource_policy(rule, stack_name) for rule in rules.RESOURCE_RULES]
    policies += [stack_policy(rule) for rule in rules.STACK_RULES]
    return policies


if __name__ == "__main__":
    # Starts the analyzer's gRPC server and serves the engine until it is stopped.
    PolicyPack(name=PACK_NAME, enforcement_level=ENFORCEMENT, policies=build_policies())
