"""Monthly cost estimate of a planned stack, from its resources and pricing/aws-prices.json.

Pure: `estimate(resources, region, prices)` counts what the plan declares (firewall endpoints
per AZ, Windows instances by type, gp3 GB, Elastic IPs, log groups, interface endpoints per AZ)
and prices it. A price the
table does not have is reported as missing, never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

PRICES = Path(__file__).resolve().parent.parent / "pricing" / "aws-prices.json"


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _line(kind: str, quantity: float, unit: str, unit_price: float | None, source: str, note: str = "") -> dict[str, Any]:
    monthly = None if unit_price is None else round(quantity * unit_price, 2)
    line = {"kind": kind, "quantity": round(quantity, 2), "unit": unit, "unitPrice": unit_price, "monthly": monthly, "source": source}
    notes = [note] if note else []
    if unit_price is None:
        notes.insert(0, "price missing from pricing/aws-prices.json for this region: add it to get a total")
    if notes:
        line["note"] = "; ".join(notes)
    return line


def estimate(resources: Iterable[Mapping[str, Any]], region: str, prices: Mapping[str, Any]) -> dict[str, Any]:
    resources = list(resources)
    table = prices["regions"].get(region, {})
    hours = prices["hoursPerMonth"]
    sources = prices["sources"]
    assumptions = prices["assumptions"]

    def of_type(token: str) -> list[Mapping[str, Any]]:
        return [r for r in resources if r["type"] == token]

    firewalls = of_type("aws:networkfirewall/firewall:Firewall")
    endpoints = sum(len(f["inputs"].get("subnetMappings") or []) for f in firewalls)
    instances = of_type("aws:ec2/instance:Instance")
    eips = of_type("aws:ec2/eip:Eip")
    log_groups = of_type("aws:cloudwatch/logGroup:LogGroup")

    lines = [
        _line("Network Firewall endpoints", endpoints * hours, "endpoint-hours", table.get("networkFirewallEndpointHour"), sources["networkFirewall"]),
        _line(
            "Network Firewall traffic",
            len(instances) * assumptions["firewallGbPerMonthPerBeacon"],
            "GB processed (assumed per beacon)",
            table.get("networkFirewallGb"),
            sources["networkFirewall"],
            f"assumes {assumptions['firewallGbPerMonthPerBeacon']} GB per beacon per month",
        ),
    ]
    by_type: dict[str, int] = {}
    for instance in instances:
        by_type[instance["inputs"]["instanceType"]] = by_type.get(instance["inputs"]["instanceType"], 0) + 1
    for instance_type, count in sorted(by_type.items()):
        lines.append(
            _line(
                f"Windows instances {instance_type}",
                count * hours,
                "instance-hours",
                table.get("ec2WindowsHour", {}).get(instance_type),
                sources["ec2Windows"],
            )
        )
    gp3_gb = sum((i["inputs"].get("rootBlockDevice") or {}).get("volumeSize", 0) for i in instances)
    lines.append(_line("EBS gp3", gp3_gb, "GB-months", table.get("ebsGp3GbMonth"), sources["ebs"]))
    lines.append(_line("Public IPv4 (Elastic IP)", len(eips) * hours, "address-hours", table.get("publicIpv4Hour"), sources["publicIpv4"]))
    lines.append(
        _line(
            "CloudWatch Logs ingestion",
            len(instances) * assumptions["logsGbPerMonthPerBeacon"],
            "GB (assumed per beacon)",
            table.get("cloudwatchLogsIngestGb"),
            sources["cloudwatchLogs"],
            f"{len(log_groups)} log groups; assumes {assumptions['logsGbPerMonthPerBeacon']} GB per beacon per month",
        )
    )
    # Interface endpoints (privateAwsEndpoints) bill per endpoint per AZ; S3's gateway endpoint is free.
    interface_azs = sum(
        len(e["inputs"].get("subnetIds") or [])
        for e in of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        if e["inputs"].get("vpcEndpointType") == "Interface"
    )
    if interface_azs:
        lines.append(
            _line("VPC interface endpoints", interface_azs * hours, "endpoint-AZ-hours", table.get("vpcInterfaceEndpointHour"), sources["privateLink"])
        )
    priced = [line["monthly"] for line in lines if line["monthly"] is not None]
    missing = [line["kind"] for line in lines if line["monthly"] is None]
    return {
        "region": region,
        "currency": prices["currency"],
        "pricesRecorded": prices["recorded"],
        "lines": lines,
        "monthlyTotal": round(sum(priced), 2),
        "complete": not missing,
        "missing": missing,
    }


def render(cost: Mapping[str, Any]) -> list[str]:
    out = [f"monthly estimate ({cost['region']}, {cost['currency']}, list prices recorded {cost['pricesRecorded']}):"]
    for line in cost["lines"]:
        amount = "   missing" if line["monthly"] is None else f"{line['monthly']:10.2f}"
        out.append(f"  {amount}  {line['kind']} ({line['quantity']:g} {line['unit']})")
    total = f"{cost['monthlyTotal']:.2f}"
    out.append(f"  {total:>10}  total" + ("" if cost["complete"] else f" (incomplete: {', '.join(cost['missing'])} missing)"))
    return out
