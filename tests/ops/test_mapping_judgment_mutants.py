"""Judging a logged certificate by the stack's mappings: the cases mutation testing found untested
(docs/testing.md, mapping_judgment): the mappings read from the desired state (disabled ones, rule
defaults, refusals), the Issuer-only mappings, one-to-one serials, the explanation of a miss and
the device a policy download names."""

from __future__ import annotations

import pytest

from components.iis.mapping_rules import MappingRule
from scripts.ops.mapping_judgment import Mapping, Rules, iis_mappings, issuer_mappings, judge, npl_device, one_to_one

SUBJECT = "C=US, O=Example Corp, OU=Sales, OU=EMEA, CN=laptop-0001"
ISSUER = "C=US, O=Example Corp, CN=Example Devices CA"
CN_RULE = MappingRule("Issuer", "CN", "Example Devices CA", True)


def rule(field: str = "Issuer", sub: str = "CN", match: str = "Example Devices CA", **more: object) -> dict:
    return {"certificateField": field, "certificateSubField": sub, "matchCriteria": match, **more}


def test_issuer_mappings_are_allow_mappings_named_as_deployed() -> None:
    rules = issuer_mappings(["Example Devices CA"], "--issuer-cn")
    assert rules == Rules((Mapping("Agents - Example Devices CA", "Allow", (CN_RULE,)),), "--issuer-cn")
    verdict = judge(SUBJECT, ISSUER, "0a", rules)
    assert verdict.accepted and verdict.detail == "Allow mapping 'Agents - Example Devices CA' (Issuer.CN=Example Devices CA)"


def test_iis_mappings_skip_disabled_ones_and_default_what_is_left_out() -> None:
    rules = iis_mappings([
        {"name": "Deny contractors", "permissionMode": "Deny", "enabled": False, "rules": [rule(), rule("Subject", "OU", "Sales")]},
        {"permissionMode": "Allow", "enabled": True, "rules": [rule(field="issuer", sub="cn", compareCaseSensitive=False)]},
        {"permissionMode": "Allow", "rules": [rule(compareCaseSensitive="no")]},
        {"permissionMode": "Allow", "rules": [rule()]},
    ], "state.json")
    assert rules.source == "state.json"
    assert rules.mappings == (
        Mapping("mapping 2", "Allow", (MappingRule("Issuer", "CN", "Example Devices CA", False),)),
        Mapping("mapping 3", "Allow", (CN_RULE,)),  # only False turns case sensitivity off
        Mapping("mapping 4", "Allow", (CN_RULE,)),  # and without the key it is on
    )
    assert judge(SUBJECT, ISSUER, "0a", rules).accepted  # the disabled Deny mapping would have refused it


@pytest.mark.parametrize("items,message", [
    ({}, "expected a list of mappings"),
    ([{"permissionMode": "Maybe", "rules": [rule()]}], "[0]: expected a mapping with permissionMode Allow or Deny"),
    ([{"permissionMode": "Allow", "rules": []}], "[0]: expected rules"),
    ([{"permissionMode": "Allow", "rules": {"a": 1}}], "[0]: expected rules"),
    ([{"permissionMode": "Allow", "rules": [rule()]}, {"permissionMode": "Allow", "rules": ["x"]}], "[1].rules: expected a rule object"),
    ([{"permissionMode": "Allow", "rules": [{"certificateSubField": "CN", "matchCriteria": "x"}]}],
     "[0].rules: expected certificateField Issuer|Subject, certificateSubField CN|OU|O|L|S|C and a matchCriteria"),
    ([{"permissionMode": "Allow", "rules": [{"certificateField": "Issuer", "matchCriteria": "x"}]}],
     "[0].rules: expected certificateField Issuer|Subject, certificateSubField CN|OU|O|L|S|C and a matchCriteria"),
    ([{"permissionMode": "Allow", "rules": [rule(match="")]}],
     "[0].rules: expected certificateField Issuer|Subject, certificateSubField CN|OU|O|L|S|C and a matchCriteria"),
    ([{"permissionMode": "Allow", "rules": [rule(match=7)]}],
     "[0].rules: expected certificateField Issuer|Subject, certificateSubField CN|OU|O|L|S|C and a matchCriteria"),
    ([{"permissionMode": "Allow", "rules": [rule(sub="DC")]}],
     "[0].rules: expected certificateField Issuer|Subject, certificateSubField CN|OU|O|L|S|C and a matchCriteria"),
])
def test_iis_mappings_refusals(items: object, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        iis_mappings(items, "state.json")
    assert str(refused.value) == message


def test_one_to_one_matches_the_serial_either_way_round_without_leading_zeros() -> None:
    rules = one_to_one([("Example Devices CA", "00AB12")], "pki")
    assert rules == Rules((), "pki", frozenset({("Example Devices CA", "ab12")}))
    assert judge(SUBJECT, ISSUER, "ab12", rules).accepted
    assert judge(SUBJECT, ISSUER, "12ab", rules).accepted  # the bytes reversed, as Windows may show them
    refused = judge(SUBJECT, ISSUER, "ab13", rules)
    assert not refused.accepted and refused.detail == "no one-to-one mapping holds this certificate (serial ab13 of Example Devices CA)"
    assert one_to_one([("CA", "100")], "pki").one_to_one == frozenset({("CA", "100")})  # trailing zeros are digits


OTHER = Mapping("Agents - Other CA", "Allow", (MappingRule("Issuer", "CN", "Other CA", True), MappingRule("Subject", "O", "Example Corp", True)))


def own(*more: MappingRule) -> Mapping:
    return Mapping("Agents - Example Devices CA", "Allow", (CN_RULE, *more))


@pytest.mark.parametrize("mappings,detail", [
    ((), "no Allow mapping is configured"),
    ((Mapping("Deny all", "Deny", (MappingRule("Subject", "CN", "nobody", True),)),), "no Allow mapping is configured"),
    ((own(MappingRule("Subject", "O", "Other Org", True)),),
     "no Allow mapping matches: rule 'Subject.O=Other Org' of 'Agents - Example Devices CA' does not (Subject.O: 'Example Corp')"),
    ((own(MappingRule("Subject", "OU", "Support", True)),),
     "no Allow mapping matches: rule 'Subject.OU=Support' of 'Agents - Example Devices CA' does not (Subject.OU: 'Sales', 'EMEA')"),
    ((own(MappingRule("Subject", "L", "Paris", True)),),
     "no Allow mapping matches: rule 'Subject.L=Paris' of 'Agents - Example Devices CA' does not (Subject.L: no such attribute)"),
    ((OTHER, own(MappingRule("Subject", "O", "Other Org", True))),  # the mapping of this issuer explains, wherever it is
     "no Allow mapping matches: rule 'Subject.O=Other Org' of 'Agents - Example Devices CA' does not (Subject.O: 'Example Corp') "
     "(nor do 1 other Allow mapping(s))"),
    ((OTHER, OTHER, OTHER),
     "no Allow mapping matches: rule 'Issuer.CN=Other CA' of 'Agents - Other CA' does not (Issuer.CN: 'Example Devices CA') "
     "(nor do 2 other Allow mapping(s))"),
])
def test_a_miss_is_explained_by_the_issuers_own_mapping(mappings: tuple, detail: str) -> None:
    verdict = judge(SUBJECT, ISSUER, "0a", Rules(mappings, "state.json"))
    assert (verdict.accepted, verdict.mapping, verdict.detail) == (False, None, detail)


def test_a_subject_rule_is_explained_by_the_subjects_values() -> None:
    """The mapping is chosen by its first rule matching: here a Subject rule, so the subject is read."""
    first = Mapping("By O", "Allow", (MappingRule("Subject", "O", "Example Corp", True), MappingRule("Subject", "CN", "desk-*", True)))
    verdict = judge(SUBJECT, ISSUER, "0a", Rules((OTHER, first), "state.json"))
    assert verdict.detail == ("no Allow mapping matches: rule 'Subject.CN=desk-*' of 'By O' does not (Subject.CN: 'laptop-0001') "
                              "(nor do 1 other Allow mapping(s))")


@pytest.mark.parametrize("uri,device", [
    ("/ManageSoftDL/Policies/Merged/laptop-0001-8F2A.npl", "laptop-0001"),
    ("/ManageSoftDL/a/b/desk-7-ABC.NPL", "desk-7"),
    ("laptop-0002-8F2A.npl", "laptop-0002"),
    ("/ManageSoftDL/laptop-0004-8.npl", "laptop-0004"),  # a one-character UID
    ("/ManageSoftDL/laptop-0003-8F2A.npl.bak", None),
    ("/ManageSoftDL/laptop-8F2A.np", None),
    ("/ManageSoftDL/nodash.npl", None),
    ("/ManageSoftDL/-8F2A.npl", None),
    ("/ManageSoftDL/laptop-.npl", None),
    ("/ManageSoftDL/" + "n" * 256 + "-8F2A.npl", None),
    ("/ManageSoftDL/" + "n" * 255 + "-8F2A.npl", "n" * 255),
    ("/ManageSoftDL/bad%01name-8F2A.npl", None),
])
def test_npl_device(uri: str, device: str | None) -> None:
    assert npl_device(uri) == device


def test_rules_describe_themselves() -> None:
    rules = Rules((own(), OTHER), "state.json")
    assert rules.describe() == ("Allow mapping 'Agents - Example Devices CA' (Issuer.CN=Example Devices CA); "
                                "Allow mapping 'Agents - Other CA' (Issuer.CN=Other CA AND Subject.O=Example Corp)")
    assert Rules((), "state.json").describe() == "no mapping"


def test_a_plus_in_a_rule_also_matches_the_space_iis_logs_it_as() -> None:
    plus = Rules((own(MappingRule("Subject", "O", "A+B Corp", True)),), "state.json")
    assert judge("O=A B Corp, CN=laptop-0001", ISSUER, "0a", plus).accepted
    assert not judge("O=A-B Corp, CN=laptop-0001", ISSUER, "0a", plus).accepted


@pytest.mark.parametrize("serial", ["0a10", "00a10", "100a"])  # as stored; with a leading zero more; the bytes reversed
def test_one_to_one_serial_forms(serial: str) -> None:
    rules = one_to_one([("Example Devices CA", "0A10")], "pki")
    verdict = judge(SUBJECT, ISSUER, serial, rules)
    assert (verdict.accepted, verdict.mapping, verdict.detail) == (True, None, "a one-to-one mapping holds this certificate")


def test_one_to_one_refusal_names_what_is_missing() -> None:
    rules = one_to_one([("Example Devices CA", "0a10")], "pki")
    refused = judge(SUBJECT, "O=Example Corp", "", rules)
    assert refused.accepted is False
    assert refused.detail == "no one-to-one mapping holds this certificate (serial - of an unnamed issuer)"


def test_a_device_name_may_hold_a_space() -> None:
    assert npl_device("/ManageSoftDL/my%20laptop-8F2A.npl") == "my laptop"
