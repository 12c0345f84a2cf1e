"""Egress allowlist groups (components/network/egress.py), built from real configs via config.load."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import config
from components.network import egress
from components.network.flexera import flexera_hosts

AWS_SERVICES = ("ssm", "ssmmessages", "ec2messages", "secretsmanager", "logs")


def load(region: str = "us-east-1", **raw) -> config.BeaconConfig:
    """config.load with Python lists turned into the JSON strings Pulumi hands a program."""
    strings = {k: json.dumps(v) if isinstance(v, list) else v for k, v in raw.items()}
    return config.load(strings, "dev", region)


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-southeast-2", "us-gov-west-1"])
def test_aws_endpoints_cover_the_region(region: str) -> None:
    group = egress.egress_allowlist(load(region))["aws-endpoints"]
    for service in AWS_SERVICES:
        assert f"{service}.{region}.amazonaws.com" in group
    # No S3 wildcard: it would admit every bucket of the region; S3 uses the gateway endpoint.
    assert not any("s3" in d.split(".") for d in group)
    # Only this region's endpoints, exact hosts: nothing for another region, nothing global.
    assert all(d.endswith(f".{region}.amazonaws.com") and not d.startswith(".") for d in group)


@pytest.mark.parametrize("region", ["cn-north-1", "cn-northwest-1"])
def test_china_regions_use_the_cn_suffix(region: str) -> None:
    group = egress.egress_allowlist(load(region))["aws-endpoints"]
    for service in AWS_SERVICES:
        assert f"{service}.{region}.amazonaws.com.cn" in group
    assert not any("s3" in d.split(".") for d in group)
    assert all(d.endswith(".amazonaws.com.cn") for d in group)


def test_builtin_groups() -> None:
    assert egress.builtin_domains("crl", "us-east-1") == ()
    assert egress.builtin_domains("flexera-parent", "us-east-1", "on-premises") == ()
    assert "app.flexera.com" in egress.builtin_domains("flexera-parent", "us-east-1")  # region na by default
    assert egress.builtin_domains("windows-update", "us-east-1") == egress.WINDOWS_UPDATE_DOMAINS
    wu = egress.egress_allowlist(load())["windows-update"]
    assert ".windowsupdate.com" in wu and ".update.microsoft.com" in wu
    # Every built-in domain is a valid Network Firewall domain list entry.
    for group in config.EGRESS_GROUPS:
        for region in ("us-east-1", "cn-north-1"):
            for domain in egress.builtin_domains(group, region):
                assert config.domain_problem(domain) is None, domain


def test_default_config_enables_every_group_in_order() -> None:
    allowlist = egress.egress_allowlist(load())
    assert list(allowlist) == [g for g in config.EGRESS_GROUPS if g != "windows-extras"], "windows-extras is opt-in"
    extras = egress.egress_allowlist(load(windowsExtrasEgress="true"))
    assert list(extras) == list(config.EGRESS_GROUPS) and "definitionupdates.microsoft.com" in extras["windows-extras"]
    assert allowlist["crl"] == []
    assert allowlist["flexera-parent"] == sorted(flexera_hosts("na")), "the default Flexera region is na"


@pytest.mark.parametrize("disabled", [["crl"], ["aws-endpoints", "windows-update"], list(config.EGRESS_GROUPS)])
def test_disabled_groups_are_absent(disabled: list[str]) -> None:
    cfg = load(
        egressDisabledGroups=disabled,
        crlUrls=["http://crl.example.com/ca.crl"],
        flexeraParentDomains=["beacon.flexnetmanager.example"],
    )
    allowlist = egress.egress_allowlist(cfg, crl_hosts=("crl2.example.com",))
    assert set(allowlist) == set(config.EGRESS_GROUPS) - set(disabled) - {"windows-extras"}
    flat = egress.flatten(allowlist)
    if "crl" in disabled:
        # Not even the certificate-derived hosts leak in when the group is off.
        assert "crl.example.com" not in flat and "crl2.example.com" not in flat
    if "aws-endpoints" in disabled:
        assert not any("amazonaws" in d for d in flat)


def test_crl_hosts_from_urls_domains_and_certificates() -> None:
    cfg = load(
        crlUrls=["http://crl.example.com/ca.crl", "https://PKI.Example.net:8443/x/y.crl?z=1"],
        crlDomains=["ocsp.example.org"],
    )
    crl = egress.egress_allowlist(cfg, crl_hosts=("CRL3.example.com.", "aia.example.io"))["crl"]
    assert crl == sorted(
        ["crl.example.com", "pki.example.net", "ocsp.example.org", "crl3.example.com", "aia.example.io"]
    )


def test_crl_hosts_argument_alone_fills_the_crl_group() -> None:
    crl = egress.egress_allowlist(load(), crl_hosts=("crl.contoso.com",))["crl"]
    assert crl == ["crl.contoso.com"]


def test_duplicates_are_removed_case_and_trailing_dot_insensitive() -> None:
    cfg = load(
        crlUrls=["http://crl.example.com/a.crl", "http://crl.example.com/b.crl"],
        crlDomains=["CRL.example.com"],
    )
    crl = egress.egress_allowlist(cfg, crl_hosts=("crl.example.com", "Crl.Example.Com."))["crl"]
    assert crl == ["crl.example.com"]


def test_dot_domain_covers_the_domain_and_its_hosts_but_not_lookalikes() -> None:
    cfg = load(
        crlUrls=["http://crl.example.com/a.crl"],
        crlDomains=[".example.com", "example.com", "a.b.example.com", "badexample.com", "example.com.evil.org"],
    )
    crl = egress.egress_allowlist(cfg)["crl"]
    assert crl == [".example.com", "badexample.com", "example.com.evil.org"]


def test_covering_applies_within_a_group_only() -> None:
    # windows-update has '.download.microsoft.com' built in; the same host in another group stays.
    cfg = load(flexeraParentDomains=["x.download.microsoft.com"], windowsUpdateExtraDomains=["x.download.microsoft.com"])
    allowlist = egress.egress_allowlist(cfg)
    assert "x.download.microsoft.com" in allowlist["flexera-parent"]
    assert "x.download.microsoft.com" not in allowlist["windows-update"]


def test_extra_domains_join_their_group() -> None:
    cfg = load(
        flexeraParentDomains=["beacon.flexnetmanager.example", ".flexera.example"],
        awsEndpointsExtraDomains=["sts.us-east-1.amazonaws.com"],
        windowsUpdateExtraDomains=["ctldl.windowsupdate.example"],
    )
    allowlist = egress.egress_allowlist(cfg)
    assert allowlist["flexera-parent"] == sorted([".flexera.example", "beacon.flexnetmanager.example", *flexera_hosts("na")])
    on_premises = egress.egress_allowlist(load(flexeraRegion="on-premises", flexeraParentDomains=["fnms.corp.example"]))
    assert on_premises["flexera-parent"] == ["fnms.corp.example"]
    assert "sts.us-east-1.amazonaws.com" in allowlist["aws-endpoints"]
    assert "ctldl.windowsupdate.example" in allowlist["windows-update"]


def test_groups_are_sorted_and_deterministic() -> None:
    raw = dict(
        crlUrls=["http://z.example.com/a.crl", "http://a.example.com/a.crl"],
        crlDomains=["m.example.org"],
        flexeraParentDomains=["b.parent.example", "a.parent.example"],
    )
    first = egress.egress_allowlist(load(**raw), crl_hosts=("y.example.net", "b.example.net"))
    again = egress.egress_allowlist(load(**raw), crl_hosts=("b.example.net", "y.example.net"))
    assert first == again
    assert json.dumps(first) == json.dumps(again)  # same key order too
    for domains in first.values():
        assert domains == sorted(domains)
        assert len(domains) == len(set(domains))


def test_flatten_is_sorted_and_unique_across_groups() -> None:
    cfg = load(crlDomains=["crl.microsoft.com"], flexeraParentDomains=["crl.microsoft.com"])
    allowlist = egress.egress_allowlist(cfg)
    flat = egress.flatten(allowlist)
    assert flat == sorted(set(flat))
    assert flat.count("crl.microsoft.com") == 1
    assert set(flat) == {d for ds in allowlist.values() for d in ds}


@pytest.mark.parametrize(
    "hostile",
    [
        'a.com"; sid:1',
        'a.com"; sid:1; rev:1;) pass ip any any -> any any (sid:2;',
        "a.com;",
        "a.com\n",
        "a.com\npass ip any any -> any any (sid:9;)",
        "*.example.com",
        "http://crl.example.com/x.crl",
        "10.0.0.1",
        "a..com",
        "single-label",
        "",
    ],
)
def test_hostile_or_malformed_crl_host_is_refused(hostile: str) -> None:
    with pytest.raises(ValueError, match="egress group crl"):
        egress.egress_allowlist(load(), crl_hosts=(hostile,))


def test_hostile_crl_host_never_reaches_the_allowlist_when_covered() -> None:
    """A malformed host under a '.domain' entry is either refused or dropped as covered, never kept.

    (Today it is dropped: _normalise removes covered hosts before the domain check runs.)
    """
    cfg = load(crlDomains=[".example.com"])
    for hostile in ('x.example.com"; sid:1', 'a"b.example.com', "a;b.example.com"):
        try:
            crl = egress.egress_allowlist(cfg, crl_hosts=(hostile,))["crl"]
        except ValueError:
            continue
        assert crl == [".example.com"], hostile


def test_hostile_host_in_a_disabled_group_is_not_used() -> None:
    cfg = load(egressDisabledGroups=["crl"])
    assert "crl" not in egress.egress_allowlist(cfg, crl_hosts=('a.com"; sid:1',))


def test_config_refuses_hostile_domains_before_egress_sees_them() -> None:
    with pytest.raises(config.ConfigInvalid, match="crlDomains"):
        load(crlDomains=['a.com"; sid:1'])
    with pytest.raises(config.ConfigInvalid, match="crlUrls"):
        load(crlUrls=["ldap://crl.example.com/cn=ca"])


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_hosts = st.lists(_label, min_size=2, max_size=4).map(".".join).filter(lambda h: not h.split(".")[-1].isdigit())
_domains = st.one_of(_hosts, _hosts.map(lambda h: "." + h))


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(_domains, max_size=12), st.lists(_hosts, max_size=6))
def test_normalised_group_properties(extra: list[str], cert_hosts: list[str]) -> None:
    cfg = load(crlDomains=extra)
    crl = egress.egress_allowlist(cfg, crl_hosts=tuple(cert_hosts))["crl"]
    wildcards = [d for d in crl if d.startswith(".")]
    assert crl == sorted(set(crl))
    # Every input is either kept or covered by a kept '.domain' entry.
    for item in extra + cert_hosts:
        assert item in crl or any(item == w[1:] or item.endswith(w) for w in wildcards), item
    # No kept host is redundant.
    for host in crl:
        if not host.startswith("."):
            assert not any(host == w[1:] or host.endswith(w) for w in wildcards), host
    # Order of the inputs does not matter.
    reordered = egress.egress_allowlist(load(crlDomains=extra[::-1]), crl_hosts=tuple(cert_hosts[::-1]))["crl"]
    assert reordered == crl
