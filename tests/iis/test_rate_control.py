"""State Manager rate controls: values the SSM API accepts (botocore's service model), and a
MaxErrors that lets a few failing beacons pass while a state failing on most of them stops."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.loaders import Loader

from components.iis.rate_control import ASSOCIATION_MAX_CONCURRENCY, association_max_errors
from conftest import plan_stack

ASSOCIATIONS = ("mtls-association", "iis-logs-install", "iis-logs-configure")


@pytest.fixture(scope="module")
def ssm_shapes() -> dict[str, Any]:
    return Loader().load_service_model("ssm", "service-2")["shapes"]


def admitted(shape: dict[str, Any], value: str) -> bool:
    return shape["min"] <= len(value) <= shape["max"] and re.search(shape["pattern"], value) is not None


def attempted(targets: int, failing: set[int], max_errors: int) -> int:
    """How many targets a run reaches, one at a time (MaxConcurrency 1): State Manager stops
    sending the association to further targets when error max_errors + 1 is received."""
    errors = 0
    for target in range(targets):
        errors += target in failing
        if errors > max_errors:
            return target + 1
    return targets


@pytest.mark.parametrize("beacons,expected", [(1, "1"), (2, "1"), (3, "1"), (10, "5"), (100, "50")])
def test_max_errors_is_half_the_beacons_and_at_least_one(beacons: int, expected: str) -> None:
    assert association_max_errors(beacons) == expected


def test_values_match_the_ssm_api_shapes(ssm_shapes: dict[str, Any]) -> None:
    request = ssm_shapes["CreateAssociationRequest"]["members"]
    assert (request["MaxErrors"]["shape"], request["MaxConcurrency"]["shape"]) == ("MaxErrors", "MaxConcurrency")
    for beacons in [*range(1, 21), 100, 2 * 10**7 - 1]:  # beaconCount is 1..20; the last is the longest value
        value = association_max_errors(beacons)
        assert admitted(ssm_shapes["MaxErrors"], value), (beacons, value, ssm_shapes["MaxErrors"])
    assert admitted(ssm_shapes["MaxConcurrency"], ASSOCIATION_MAX_CONCURRENCY), ssm_shapes["MaxConcurrency"]


@pytest.mark.parametrize("beacons,expected", [(0, "at least 1"), (-3, "at least 1"), (2 * 10**7, "at most 7 digits")])
def test_target_counts_without_a_valid_value_are_refused(beacons: int, expected: str) -> None:
    with pytest.raises(ValueError, match=expected) as raised:
        association_max_errors(beacons)
    assert f"got {beacons}" in str(raised.value)


@pytest.mark.parametrize("beacons", range(2, 21))
def test_one_failing_beacon_never_stops_the_rest_a_state_failing_everywhere_stops(beacons: int) -> None:
    max_errors = int(association_max_errors(beacons))
    for failing in range(beacons):
        assert attempted(beacons, {failing}, max_errors) == beacons
    everywhere = attempted(beacons, set(range(beacons)), max_errors)
    assert everywhere == beacons // 2 + 1
    if beacons >= 3:
        assert everywhere < beacons, "a state failing on every beacon must not reach all of them"
    if beacons >= 4:  # what MaxErrors 1 got wrong: two failing beacons kept the rest from their run
        assert attempted(beacons, {0, 1}, max_errors) == beacons


@pytest.mark.parametrize("beacons", [3, 6])
def test_planned_associations_use_the_rate_controls(beacons: int) -> None:
    p = plan_stack("dev", {"beaconCount": beacons})
    assert len(p.outputs["beacons"]) == beacons
    for name in ASSOCIATIONS:
        inputs = p.one("ssm/association:Association", name).inputs
        (target,) = inputs["targets"]
        assert len(target["values"]) == beacons
        assert inputs["maxErrors"] == association_max_errors(beacons), name
        assert inputs["maxConcurrency"] == ASSOCIATION_MAX_CONCURRENCY == "1", name
