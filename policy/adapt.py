"""From what pulumi_policy hands a policy to the plain data policy/rules.py checks.

pulumi_policy wraps props in proxies that raise on unknown (preview) values as soon as they are
read; the rules would rather see every value and decide. ``plain`` unwraps the proxies and turns
the engine's unknown sentinels into ``rules.UNKNOWN``.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from pulumi_policy import proxy as _proxy
from pulumi_policy.secret import Secret

from policy.rules import UNKNOWN, StackResource

_SENTINELS = frozenset({
    _proxy.UNKNOWN_BOOLEAN_VALUE,
    _proxy.UNKNOWN_NUMBER_VALUE,
    _proxy.UNKNOWN_STRING_VALUE,
    _proxy.UNKNOWN_ARRAY_VALUE,
    _proxy.UNKNOWN_ASSET_VALUE,
    _proxy.UNKNOWN_ARCHIVE_VALUE,
    _proxy.UNKNOWN_OBJECT_VALUE,
})


def plain(value: Any) -> Any:
    """Dicts, lists and scalars without proxies; unknown values as rules.UNKNOWN."""
    if isinstance(value, (_proxy._DictProxy, _proxy._ListProxy)):
        value = value["__target"]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, str) and value in _SENTINELS:
        return UNKNOWN
    if isinstance(value, Secret):
        return plain(value.value)
    return value


def stack_resources(resources: Iterable[Any]) -> list[StackResource]:
    """pulumi_policy PolicyResource objects (StackValidationArgs.resources) as rules.StackResource."""
    return [
        StackResource(
            type=r.resource_type,
            name=r.name,
            urn=r.urn,
            props=plain(r.props),
            property_dependencies={
                key: [dep.urn for dep in deps] for key, deps in (r.property_dependencies or {}).items()
            },
        )
        for r in resources
    ]


def current_stack() -> str:
    """The stack being previewed or updated. pulumi_policy configures the runtime from the
    engine's PULUMI_STACK before each analysis, so pulumi.get_stack() answers; the environment
    variable is the fallback when the runtime is not configured (get_stack() then says 'stack')."""
    import pulumi

    try:
        name = pulumi.get_stack()
    except Exception:  # noqa: BLE001 - an unconfigured runtime must not break the policy
        name = ""
    env = os.environ.get("PULUMI_STACK", "")
    if env and name in ("", "stack"):
        return env
    return name or env
