"""Mapping rules: the cases mutation testing found untested (docs/testing.md, mapping_rules)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.iis.mapping_rules import (
    MappingRule,
    allow_mappings,
    deny_mappings,
    issuer_rules,
    parse_mapping_rule,
    wildcard_match,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _ca(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


CA = _ca((NameOID.ORGANIZATION_NAME, "Example Corp"), (NameOID.ORGANIZATION_NAME, "Second Org"),
         (NameOID.COMMON_NAME, "Example Devices CA"))
CN_RULE = MappingRule("Issuer", "CN", "Example Devices CA", True)
O_RULE = MappingRule("Issuer", "O", "Example Corp", True)  # the first O, case-sensitive


@pytest.mark.parametrize("pattern,value", [
    ("**a*", "b"),  # an empty piece between two stars is skipped, not the end of the pieces
    ("a**x*c", "abc"),
    ("ab*b*c", "abc"),  # a middle piece is searched after the head, not inside it
    ("*a*a*", "a"),  # and after the piece before it: two 'a's needed
])
def test_wildcard_pieces_are_found_in_order_without_overlap(pattern: str, value: str) -> None:
    assert wildcard_match(pattern, value) is False
    assert wildcard_match(pattern.replace("*", ""), value) is False  # the control: no stars, no match either


def test_issuer_rules_add_the_first_organization_only_when_asked() -> None:
    assert issuer_rules(CA) == [CN_RULE]
    assert issuer_rules(CA, include_organization=True) == [CN_RULE, O_RULE]
    assert allow_mappings([CA]) == [[CN_RULE]]
    assert allow_mappings([CA], include_organization=True) == [[CN_RULE, O_RULE]]
    deny = MappingRule("Subject", "OU", "Retired", True)
    assert deny_mappings([CA], [deny]) == [[CN_RULE, deny]]
    assert deny_mappings([CA], [deny], include_organization=True) == [[CN_RULE, O_RULE, deny]]


def test_rule_text_shows_the_case_insensitive_operator() -> None:
    assert str(MappingRule("Subject", "O", "example*", False)) == "Subject.O~=example*"
    assert str(MappingRule("Subject", "O", "Example", True)) == "Subject.O=Example"


@pytest.mark.parametrize("text,message", [
    (7, "mapping rule 7: expected a string like 'Subject.O=Example Corp'"),
    ("Subject.O", "mapping rule 'Subject.O': expected a rule like Subject.O=Example Corp or Issuer.CN~=devices* "
                  "(Field.SubField=match)"),
    ("Owner.CN=x", "mapping rule 'Owner.CN=x': expected a rule whose field is one of Issuer, Subject"),
    ("Subject.DC=x", "mapping rule 'Subject.DC=x': expected a rule whose sub-field is one of CN, OU, O, L, S, C"),
    ("Subject.O= ", "mapping rule 'Subject.O= ': expected a match of 1-256 printable characters (no control characters)"),
])
def test_refused_rule_messages(text: object, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_mapping_rule(text)  # type: ignore[arg-type]
    assert str(refused.value) == message
