"""IIS many-to-one mapping rules: the one home of their grammar, parsing and matching.

Config writes a rule compactly, e.g. "Subject.O=Example Corp": `<Field>.<SubField><op><match>`
with Field Issuer|Subject, SubField CN|OU|O|L|S|C, op "=" (compareCaseSensitive true) or "~="
(false), and match the matchCriteria, where IIS treats '*' as a wildcard (:func:`wildcard_match`).
All rules of one mapping must match (IIS ANDs them). The desired state (components/iis/state.py),
the acceptance verdict (components/certs/verdict.py) and `pki check` build their mappings here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from cryptography import x509

from ..certs.facts import common_name, name_values

FIELDS = ("Issuer", "Subject")
SUBFIELDS = ("CN", "OU", "O", "L", "S", "C")
_RULE = re.compile(r"(?P<field>[A-Za-z]+)\.(?P<sub>[A-Za-z]+)(?P<op>~?=)(?P<match>.*)", re.DOTALL)
# Characters IIS stores in an XML attribute without trouble; control characters are refused.
_MATCH_OK = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


@dataclass(frozen=True)
class MappingRule:
    certificate_field: str  # Issuer | Subject
    certificate_sub_field: str  # CN | OU | O | L | S | C
    match_criteria: str
    compare_case_sensitive: bool = True

    def as_iis(self) -> dict:
        return {
            "certificateField": self.certificate_field,
            "certificateSubField": self.certificate_sub_field,
            "matchCriteria": self.match_criteria,
            "compareCaseSensitive": self.compare_case_sensitive,
        }

    def __str__(self) -> str:
        op = "=" if self.compare_case_sensitive else "~="
        return f"{self.certificate_field}.{self.certificate_sub_field}{op}{self.match_criteria}"


def parse_rule(text: str) -> MappingRule:
    """Parse one rule; ValueError names what is expected."""
    m = _RULE.fullmatch(text or "")
    if not m:
        raise ValueError("a rule like Subject.O=Example Corp or Issuer.CN~=devices* (Field.SubField=match)")
    field = next((f for f in FIELDS if f.lower() == m["field"].lower()), None)
    if field is None:
        raise ValueError(f"a rule whose field is one of {', '.join(FIELDS)}")
    sub = m["sub"].upper()
    if sub not in SUBFIELDS:
        raise ValueError(f"a rule whose sub-field is one of {', '.join(SUBFIELDS)}")
    match = m["match"].strip()
    if not _MATCH_OK.fullmatch(match):
        raise ValueError("a match of 1-256 printable characters (no control characters)")
    return MappingRule(field, sub, match, m["op"] == "=")


# ---------------------------------------------------------------------------------------------
# Matching rules against certificates, and the mappings built from a CA chain


def parse_mapping_rule(text: str) -> MappingRule:
    """'Subject.O=Example Corp' / 'Issuer.CN~=devices*' -> MappingRule ("=" case-sensitive,
    "~=" case-insensitive, '*' wildcard). Raises ValueError naming the rule and what is expected."""
    if not isinstance(text, str):
        raise ValueError(f"mapping rule {text!r}: expected a string like 'Subject.O=Example Corp'")
    try:
        return parse_rule(text)
    except ValueError as exc:
        raise ValueError(f"mapping rule {text!r}: expected {exc}") from None


def issuer_rule(issuer_cn: str) -> MappingRule:
    """The many-to-one rule every Allow mapping starts with: Issuer CN = the issuing CA's CN."""
    return MappingRule("Issuer", "CN", issuer_cn, True)


def wildcard_match(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IIS matchCriteria semantics: whole value, '*' = any run of characters (also none, also
    line breaks); every other character is literal.

    Linear in the value, whatever the rule: the literal pieces between the stars are found left
    to right (for a '*'-only pattern the leftmost place of each piece is always a right choice),
    never by backtracking (a regex with eleven '.*' against a 60-character CN ran for minutes).
    Without case: both sides lower-cased (per character, as a case-insensitive regex compares)."""
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern == value
    head, *middle, tail = pieces
    if len(head) + len(tail) > len(value) or not value.startswith(head) or not value.endswith(tail):
        return False
    position, end = len(head), len(value) - len(tail)
    for piece in middle:
        if not piece:
            continue
        found = value.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def rule_matches(cert: x509.Certificate, rule: MappingRule) -> bool:
    """Does the certificate's field/subfield match? With several values of the attribute (two
    OUs) any one matching is enough; an absent attribute never matches."""
    name = cert.subject if rule.certificate_field == "Subject" else cert.issuer
    values = name_values(name, rule.certificate_sub_field)
    return any(wildcard_match(rule.match_criteria, v, rule.compare_case_sensitive) for v in values)


def first_unmatched(cert: x509.Certificate, rules: Sequence[MappingRule]) -> MappingRule | None:
    """The first rule that does not match (IIS ANDs the rules of a mapping), or None."""
    for rule in rules:
        if not rule_matches(cert, rule):
            return rule
    return None


def issuer_rules(ca: x509.Certificate, include_organization: bool = False) -> list[MappingRule]:
    """The Issuer rules that pick out devices of one issuing CA: its CN, optionally its O."""
    rules = [issuer_rule(common_name(ca.subject) or "")]
    organizations = name_values(ca.subject, "O")
    if include_organization and organizations:
        rules.append(MappingRule("Issuer", "O", organizations[0], True))
    return rules


def allow_mappings(
    issuing: Sequence[x509.Certificate], extra_rules: Sequence[MappingRule] = (), include_organization: bool = False
) -> list[list[MappingRule]]:
    """One Allow mapping per issuing CA: its Issuer rules ANDed with the extra rules."""
    return [
        [*issuer_rules(ca, include_organization), *extra_rules] for ca in issuing if common_name(ca.subject) is not None
    ]


def deny_mappings(
    issuing: Sequence[x509.Certificate], deny_rules: Sequence[MappingRule], include_organization: bool = False
) -> list[list[MappingRule]]:
    """One Deny mapping per issuing CA and deny rule (Issuer rules AND the deny rule)."""
    return [
        [*issuer_rules(ca, include_organization), rule]
        for ca in issuing
        if common_name(ca.subject) is not None
        for rule in deny_rules
    ]
