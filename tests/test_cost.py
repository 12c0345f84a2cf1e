"""Monthly cost estimate: counts from the plan, prices from the table, missing prices named."""

from __future__ import annotations

import json

import pytest

from scripts.cost import estimate, load_prices, render


def _resources(p) -> list[dict]:
    return [{"type": r.type, "name": r.name, "inputs": r.inputs} for r in p.resources]


def _line(cost: dict, prefix: str) -> dict:
    return next(line for line in cost["lines"] if line["kind"].startswith(prefix))


def test_dev_and_prod_scale_with_azs_and_beacons(dev, prod) -> None:
    prices = load_prices()
    dev_cost = estimate(_resources(dev), "us-east-1", prices)
    prod_cost = estimate(_resources(prod), "us-east-1", prices)
    assert _line(dev_cost, "Network Firewall endpoints")["quantity"] == 730
    assert _line(prod_cost, "Network Firewall endpoints")["quantity"] == 1460
    assert _line(dev_cost, "Network Firewall endpoints")["monthly"] == pytest.approx(730 * 0.395, abs=0.01)
    assert _line(dev_cost, "Windows instances t3.large")["quantity"] == 730
    assert _line(prod_cost, "Windows instances m6i.large")["quantity"] == 1460
    assert _line(prod_cost, "EBS gp3")["quantity"] == 160
    assert _line(prod_cost, "Public IPv4")["monthly"] == pytest.approx(1460 * 0.005, abs=0.01)
    assert dev_cost["complete"] and prod_cost["complete"]
    assert prod_cost["monthlyTotal"] > dev_cost["monthlyTotal"]
    assert prod_cost["monthlyTotal"] == pytest.approx(sum(line["monthly"] for line in prod_cost["lines"]), abs=0.01)
    assert all(line["source"].startswith("https://") for line in prod_cost["lines"])


def test_missing_region_and_type_are_named_not_guessed(dev) -> None:
    prices = load_prices()
    cost = estimate(_resources(dev), "ap-southeast-7", prices)
    assert not cost["complete"] and cost["monthlyTotal"] == 0
    assert all(line["monthly"] is None and "missing" in line["note"] for line in cost["lines"])
    resources = _resources(dev)
    for r in resources:
        if r["type"] == "aws:ec2/instance:Instance":
            r["inputs"] = {**r["inputs"], "instanceType": "x2iedn.32xlarge"}
    cost = estimate(resources, "us-east-1", prices)
    assert cost["missing"] == ["Windows instances x2iedn.32xlarge"]
    assert "incomplete" in render(cost)[-1]


def test_price_table_documents_its_sources() -> None:
    prices = load_prices()
    assert prices["recorded"] and prices["currency"] == "USD"
    assert set(prices["sources"]) >= {"networkFirewall", "ec2Windows", "ebs", "publicIpv4", "cloudwatchLogs"}
    assert json.dumps(prices["regions"]["us-east-1"]["networkFirewallEndpointHour"]) == "0.395"
