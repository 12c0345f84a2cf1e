"""Network Firewall rule groups: the cases mutation testing found untested (docs/testing.md,
firewall_rules): the egress sids, and each group's description (what the console and
`pulumi preview` show; a change of it is an update of the deployed rule group)."""

from __future__ import annotations

import re

from components.network import firewall_rules as fr


def _sids(rules: tuple[str, ...]) -> list[int]:
    return [int(re.search(r"\bsid:(\d+);", rule)[1]) for rule in rules]  # type: ignore[index]


def test_egress_domain_sids_count_up_from_300001_tls_then_http() -> None:
    group = fr.egress_domain_rules("10.0.0.0/16", {"crl": ["crl.example.com"], "windows-update": [".windowsupdate.com"]})
    assert _sids(group.rules) == [300001, 300002, 300003, 300004]
    assert [rule.split()[1] for rule in group.rules] == ["tls", "http", "tls", "http"]
    assert _sids(fr.egress_domain_rules("10.0.0.0/16", {}).rules) == [300001]


def test_descriptions() -> None:
    assert fr.ingress_rules(["10.1.0.0/16"], ["10.0.0.0/24"], False).description == "Agents to beacons: tls on tcp/443"
    assert fr.ingress_rules(["10.1.0.0/16"], ["10.0.0.0/24"], True).description == "Agents to beacons: tls on tcp/443, http on tcp/80"
    assert fr.egress_handshake_rules("10.0.0.0/16", [443]).description == (
        "TCP handshakes to the egress ports, so SNI and Host can be inspected")
    allowlist = {"crl": ["crl.example.com"], "flexera-parent": [], "windows-update": [".windowsupdate.com"]}
    assert fr.egress_domain_rules("10.0.0.0/16", allowlist).description == (
        "Egress allowlist by TLS SNI and HTTP Host: crl, windows-update")  # a group without domains is not named
    assert fr.egress_domain_rules("10.0.0.0/16", {"crl": []}).description == "Egress allowlist (empty)"
