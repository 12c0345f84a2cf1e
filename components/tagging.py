"""Tags every taggable resource carries, set explicitly on each resource.

Explicit tags (rather than provider default_tags) show up in `pulumi preview`, in the offline
plan and under mocks, so the tests can prove every taggable resource has them.
"""

from __future__ import annotations

from .config import PROJECT, BeaconConfig

STACK_TAG = f"{PROJECT}:stack"


def base_tags(cfg: BeaconConfig) -> dict[str, str]:
    return {
        "Project": PROJECT,
        STACK_TAG: cfg.stack,
        "Owner": cfg.owner,
        "CostCentre": cfg.cost_centre,
        "ManagedBy": "pulumi",
    }


def component_tags(tags: dict[str, str], component: str, name: str | None = None) -> dict[str, str]:
    out = {**tags, f"{PROJECT}:component": component}
    if name:
        out["Name"] = name
    return out
