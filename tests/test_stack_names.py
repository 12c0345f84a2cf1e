"""Stack names fit every AWS name they become part of (components/stack_names.py), with the limits
read from botocore's own service models, not from our table."""

from __future__ import annotations

import re
from functools import lru_cache

import botocore.loaders
import pytest

from components import config
from components.stack_names import PROJECT_NAME, STACK_NAMES, stack_name_problem
from conftest import stack_raw


@lru_cache(maxsize=None)
def shape(service: str, name: str) -> dict:
    return botocore.loaders.Loader().load_service_model(service, "service-2")["shapes"][name]


def test_the_table_holds_botocores_limits() -> None:
    for entry in STACK_NAMES:
        found = shape(entry.service, entry.shape)
        # Some shapes carry the limit in their pattern only (ssm AssociationName: {3,128}).
        limit = found.get("max") or int(re.search(r"\{\d+,(\d+)\}", found["pattern"]).group(1))
        assert limit == entry.max_length, (entry.service, entry.shape, limit)
        assert found.get("pattern") == entry.pattern, (entry.service, entry.shape, found.get("pattern"))


def test_the_project_name_is_the_programs() -> None:
    assert PROJECT_NAME == config.PROJECT


def _fits(stack: str) -> bool:
    return all(len(e.render(stack)) <= e.max_length and re.fullmatch(e.pattern, e.render(stack)) for e in STACK_NAMES)


@pytest.mark.parametrize("stack", ["dev", "prod", "pilot", "prod-eu_2", "a" * 38])
def test_names_that_fit_pass(stack: str) -> None:
    assert stack_name_problem(stack) is None and _fits(stack)


@pytest.mark.parametrize(
    "stack",
    [
        "a" * 39,                        # flexnet-beacon-<39>-everything: 65 characters
        "prod-" + "x" * 36,              # the 41-character name of the issue: 67 characters
        "prod.eu",                       # Pulumi allows '.', Route 53 Resolver names do not
        "prod eu",
    ],
)
def test_names_that_do_not_fit_are_refused_naming_the_limit(stack: str) -> None:
    problem = stack_name_problem(stack)
    assert problem is not None and not _fits(stack)
    assert problem.startswith("a stack name of 1 to 38 letters, digits, '-' or '_'")


def test_the_program_refuses_it_before_any_resource() -> None:
    raw, region = stack_raw("dev")
    with pytest.raises(config.ConfigInvalid) as refused:
        config.load(raw, "prod-" + "x" * 36, region)
    message = str(refused.value)
    assert "stack: got 'prod-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'; expected a stack name of 1 to 38" in message
    assert "Route 53 Resolver DNS Firewall domain list name 'flexnet-beacon-prod-" in message
