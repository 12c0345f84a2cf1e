"""Mermaid diagram of a planned stack, drawn from the recorded resources and outputs."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping


def _node_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _label(text: str) -> str:
    # Mermaid labels are quoted; keep config-derived text from breaking out of them.
    return re.sub(r'["<>`#;]', "", str(text))


def _policy_buckets(policy: str) -> list[str]:
    """Bucket names an S3 endpoint policy grants (arn:...:s3:::BUCKET/*)."""
    return sorted(set(re.findall(r"arn:[a-z-]+:s3:::([a-z0-9.-]+)/", policy)))


def render(stack: str, resources: Iterable[Mapping[str, Any]], outputs: Mapping[str, Any]) -> str:
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for res in resources:
        by_type.setdefault(res["type"], []).append(res)
    vpc = (by_type.get("aws:ec2/vpc:Vpc") or [{"inputs": {}}])[0]["inputs"]
    subnets = sorted(by_type.get("aws:ec2/subnet:Subnet", []), key=lambda r: r["name"])
    zones = sorted({s["inputs"].get("availabilityZone", "") for s in subnets})
    beacons = outputs.get("beacons") or []
    endpoints = outputs.get("firewallEndpoints") or {}
    beacon_groups = [g for g in by_type.get("aws:ec2/securityGroup:SecurityGroup", []) if g["name"].startswith("beacon-")]
    ingress = (beacon_groups[0]["inputs"].get("ingress") if beacon_groups else None) or []
    dns_allowed = next((len(d["inputs"].get("domains") or []) for d in by_type.get("aws:route53/resolverFirewallDomainList:ResolverFirewallDomainList", []) if d["name"].endswith("-allowed")), None)
    vpc_endpoints = by_type.get("aws:ec2/vpcEndpoint:VpcEndpoint", [])
    s3_gateway = next((e for e in vpc_endpoints if e["inputs"].get("vpcEndpointType") == "Gateway"), None)
    interface = sorted(e["inputs"].get("serviceName", "").rsplit(".", 1)[-1] for e in vpc_endpoints if e["inputs"].get("vpcEndpointType") == "Interface")
    ingress_text = ", ".join(
        f"tcp/{rule.get('fromPort')} from {' '.join(rule.get('cidrBlocks') or [])}" for rule in ingress
    )

    lines = [
        f"# flexnet-beacon plan: {stack}",
        "",
        "```mermaid",
        "flowchart TB",
        '  agents(["Agents with client certificates (internet)"])',
        '  upstream(["Egress allowlist: ' + _label(", ".join(outputs.get("egressAllowlist") or {})) + '"])',
        '  igw["Internet gateway + edge route table"]',
        '  agents -- "' + _label(ingress_text or "https 443") + '" --> igw',
        f'  subgraph vpc["VPC {_label(vpc.get("cidrBlock", ""))}"]',
    ]
    for zone in zones:
        zid = _node_id(zone)
        lines.append(f'    subgraph {zid}["{_label(zone)}"]')
        for subnet in subnets:
            if subnet["inputs"].get("availabilityZone") != zone:
                continue
            kind = "firewall" if "-firewall-" in subnet["name"] else "protected"
            sid = _node_id(subnet["name"])
            if kind == "firewall":
                lines.append(f'      {sid}["firewall subnet {_label(subnet["inputs"].get("cidrBlock", ""))}<br/>endpoint {_label(endpoints.get(zone, "?"))}"]')
            else:
                lines.append(f'      {sid}["protected subnet {_label(subnet["inputs"].get("cidrBlock", ""))}"]')
        for beacon in beacons:
            if beacon.get("availabilityZone") == zone:
                bid = _node_id(beacon["name"])
                lines.append(f'      {bid}[/"{_label(beacon["name"])}: Windows + IIS mTLS<br/>{_label(beacon.get("hostname", ""))}"/]')
        lines.append("    end")
    if dns_allowed is not None:
        lines.append(f'    resolver[("VPC resolver + DNS firewall<br/>{dns_allowed} names allowed, the rest NXDOMAIN")]')
    if s3_gateway is not None:
        buckets = _policy_buckets(s3_gateway["inputs"].get("policy") or "")
        lines.append(f'    s3gw[("S3 gateway endpoint<br/>GetObject on {len(buckets)} named buckets")]')
    if interface:
        lines.append(f'    apis[("interface endpoints: {_label(", ".join(interface))}")]')
    lines.append("  end")
    for zone in zones:
        fw = next((s for s in subnets if s["inputs"].get("availabilityZone") == zone and "-firewall-" in s["name"]), None)
        prot = next((s for s in subnets if s["inputs"].get("availabilityZone") == zone and "-protected-" in s["name"]), None)
        if not fw or not prot:
            continue
        fid, pid = _node_id(fw["name"]), _node_id(prot["name"])
        lines.append(f'  igw -- "to {_label(prot["inputs"].get("cidrBlock", ""))}" --> {fid}')
        lines.append(f"  {fid} --> {pid}")
        for beacon in beacons:
            if beacon.get("availabilityZone") == zone:
                lines.append(f"  {pid} --> {_node_id(beacon['name'])}")
                lines.append(f'  {_node_id(beacon["name"])} -. "egress 0.0.0.0/0 via endpoint" .-> {fid}')
                if dns_allowed is not None:
                    lines.append(f'  {_node_id(beacon["name"])} -. "DNS (never crosses the firewall)" .-> resolver')
                if s3_gateway is not None:
                    lines.append(f'  {_node_id(beacon["name"])} -. "S3 by prefix-list route" .-> s3gw')
                if interface:
                    lines.append(f'  {_node_id(beacon["name"])} -. "AWS APIs, private DNS" .-> apis')
        lines.append(f"  {fid} -. \"allowed domains only\" .-> upstream")
    lines += ["```", ""]
    return "\n".join(lines)
