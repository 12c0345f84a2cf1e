"""IIS many-to-one mapping rules written compactly in config, e.g. "Subject.O=Example Corp".

Form: `<Field>.<SubField><op><match>` with Field Issuer|Subject, SubField CN|OU|O|L|S|C,
op "=" (compareCaseSensitive true) or "~=" (false), and match the matchCriteria, where IIS
treats '*' as a wildcard (components/certs.wildcard_match). All rules of one mapping must match
(IIS ANDs them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
