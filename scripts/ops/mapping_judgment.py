"""Judging a logged client certificate as IIS will under `require`: the stack's certificate mappings
against the CERT_SUBJECT / CERT_ISSUER an observe-mode beacon logged (crt-subject, crt-issuer).

The rules, their grammar and their matching are components/iis/mapping_rules.py's, the matcher
`pki check` and the acceptance verdict use (`wildcard_match`: IIS matchCriteria, whole value,
'*' any run, compareCaseSensitive). The mappings are the stack's desired state
(components/iis/state.py many_to_one_mappings: the Deny mappings first, then one Allow mapping per
issuing CA, each its Issuer rule(s) AND the extraMappingRules), or, without the stack file, the
Allow mappings of the configured issuing CAs' Issuer rules alone. IIS takes the first mapping whose
rules all match: a Deny mapping refuses (401.2), an Allow mapping admits; none matching refuses
(401.2, anonymous access being off under require).

Here the rules are matched against the names as IIS logged them (scripts/ops/w3c.py: CertNameToStr
text, '+' for a space) instead of a parsed certificate: a sub-field's values are those of the
same attribute in the logged name (S also reads ST), any one matching is enough, an absent one
never matches. A literal '+' in a name is logged as '+' and read back as a space, so a rule whose
match holds a '+' is also tried with spaces for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping as MappingType, Sequence
from urllib.parse import unquote

from components.iis.mapping_rules import FIELDS, SUBFIELDS, MappingRule, issuer_rule, wildcard_match

from . import w3c

_KEYS = {"CN": ("CN",), "OU": ("OU",), "O": ("O",), "L": ("L",), "S": ("S", "ST"), "C": ("C",)}


@dataclass(frozen=True)
class Mapping:
    """One many-to-one mapping as IIS holds it: its name, Allow or Deny, its rules (all must match)."""

    name: str
    permission_mode: str  # Allow | Deny
    rules: tuple[MappingRule, ...]

    def rules_text(self) -> str:
        return " AND ".join(str(rule) for rule in self.rules)

    def describe(self) -> str:
        return f"{self.permission_mode} mapping '{self.name}' ({self.rules_text()})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "permissionMode": self.permission_mode, "rules": [str(rule) for rule in self.rules]}


@dataclass(frozen=True)
class Rules:
    """What a device's certificate is judged against, and where it came from."""

    mappings: tuple[Mapping, ...]
    source: str
    # mappingMode one-to-one: the (issuer CN, serial hex) of each mapped certificate, else None
    one_to_one: frozenset[tuple[str, str]] | None = None

    def describe(self) -> str:
        if self.one_to_one is not None:
            return f"one-to-one: {len(self.one_to_one)} mapped certificate(s)"
        return "; ".join(m.describe() for m in self.mappings) or "no mapping"


@dataclass(frozen=True)
class MappingVerdict:
    accepted: bool
    mapping: Mapping | None  # the mapping IIS would take (None: none matches, or one-to-one)
    detail: str


def issuer_mappings(issuer_cns: Iterable[str], source: str) -> Rules:
    """The Allow mappings of issuing CAs known by CN only (mtls.issuerRules, --issuer-cn): their
    Issuer rule alone, named as the deployment names them."""
    return Rules(tuple(Mapping(f"Agents - {cn}", "Allow", (issuer_rule(cn),)) for cn in issuer_cns), source)


def _rule_of(item: Any, where: str) -> MappingRule:
    if not isinstance(item, MappingType):
        raise ValueError(f"{where}: expected a rule object")
    field = next((f for f in FIELDS if f.lower() == str(item.get("certificateField", "")).lower()), None)
    sub = str(item.get("certificateSubField", "")).upper()
    match = item.get("matchCriteria")
    if field is None or sub not in SUBFIELDS or not isinstance(match, str) or not match:
        raise ValueError(f"{where}: expected certificateField Issuer|Subject, certificateSubField CN|OU|O|L|S|C and a matchCriteria")
    return MappingRule(field, sub, match, item.get("compareCaseSensitive", True) is not False)


def iis_mappings(items: Any, source: str) -> Rules:
    """Mappings in the IIS shape of the desired state's manyToOneMappings (name, permissionMode,
    rules[] of certificateField/certificateSubField/matchCriteria/compareCaseSensitive), in their
    order; disabled ones are left out. ValueError names what is wrong."""
    if not isinstance(items, list):
        raise ValueError("expected a list of mappings")
    found: list[Mapping] = []
    for number, item in enumerate(items):
        where = f"[{number}]"
        if not isinstance(item, MappingType) or item.get("permissionMode") not in ("Allow", "Deny"):
            raise ValueError(f"{where}: expected a mapping with permissionMode Allow or Deny")
        rules = item.get("rules")
        if not isinstance(rules, list) or not rules:
            raise ValueError(f"{where}: expected rules")
        if item.get("enabled", True) is False:
            continue
        found.append(Mapping(str(item.get("name") or f"mapping {number + 1}"), item["permissionMode"], tuple(_rule_of(r, f"{where}.rules") for r in rules)))
    return Rules(tuple(found), source)


def one_to_one(pairs: Iterable[tuple[str, str]], source: str) -> Rules:
    return Rules((), source, frozenset((cn, serial.lower().lstrip("0")) for cn, serial in pairs))


# ---------------------------------------------------------------------------------------------
# Matching


def _values(parts: Sequence[tuple[str, str]], sub: str) -> list[str]:
    keys = _KEYS[sub]
    return [value for key, value in parts if key.upper() in keys]


def rule_matches(rule: MappingRule, subject: Sequence[tuple[str, str]], issuer: Sequence[tuple[str, str]]) -> bool:
    values = _values(subject if rule.certificate_field == "Subject" else issuer, rule.certificate_sub_field)
    patterns = [rule.match_criteria]
    if "+" in rule.match_criteria:
        patterns.append(rule.match_criteria.replace("+", " "))  # how IIS logs (and we read back) a '+'
    return any(wildcard_match(p, v, rule.compare_case_sensitive) for p in patterns for v in values)


def _first_unmatched(mapping: Mapping, subject: Sequence[tuple[str, str]], issuer: Sequence[tuple[str, str]]) -> MappingRule | None:
    for rule in mapping.rules:
        if not rule_matches(rule, subject, issuer):
            return rule
    return None


def _miss(allows: Sequence[Mapping], subject: Sequence[tuple[str, str]], issuer: Sequence[tuple[str, str]]) -> str:
    if not allows:
        return "no Allow mapping is configured"
    # The mapping of this certificate's issuer explains best (its first rule matches); else the first.
    ordered = sorted(allows, key=lambda m: 0 if rule_matches(m.rules[0], subject, issuer) else 1)
    mapping = ordered[0]
    rule = _first_unmatched(mapping, subject, issuer)
    if rule is None:
        return f"{mapping.describe()} matches"
    values = _values(subject if rule.certificate_field == "Subject" else issuer, rule.certificate_sub_field)
    got = ", ".join(repr(v) for v in values) if values else "no such attribute"
    more = f" (nor do {len(allows) - 1} other Allow mapping(s))" if len(allows) > 1 else ""
    return f"no Allow mapping matches: rule '{rule}' of '{mapping.name}' does not ({rule.certificate_field}.{rule.certificate_sub_field}: {got}){more}"


def judge(subject_text: str, issuer_text: str, serial: str, rules: Rules) -> MappingVerdict:
    """What IIS's mapping step would do with a certificate of this logged subject/issuer (decoded
    text, e.g. 'C=US, O=Example Corp, CN=laptop-0001') and serial (lower-case hex)."""
    subject, issuer = w3c.parse_dn(subject_text), w3c.parse_dn(issuer_text)
    if rules.one_to_one is not None:
        cn = w3c.dn_value(issuer_text, "CN") or ""
        forward = serial.lower().lstrip("0")
        backward = "".join(reversed([serial[i:i + 2] for i in range(0, len(serial), 2)])).lower().lstrip("0")
        if (cn, forward) in rules.one_to_one or (cn, backward) in rules.one_to_one:
            return MappingVerdict(True, None, "a one-to-one mapping holds this certificate")
        return MappingVerdict(False, None, f"no one-to-one mapping holds this certificate (serial {serial or '-'} of {cn or 'an unnamed issuer'})")
    for mapping in rules.mappings:
        if _first_unmatched(mapping, subject, issuer) is None:
            if mapping.permission_mode == "Deny":
                return MappingVerdict(False, mapping, f"{mapping.describe()} matches")
            return MappingVerdict(True, mapping, mapping.describe())
    return MappingVerdict(False, None, _miss([m for m in rules.mappings if m.permission_mode == "Allow"], subject, issuer))


# ---------------------------------------------------------------------------------------------
# Device names in agent URLs


def npl_device(uri: str) -> str | None:
    """The device a policy download names: Flexera documents the inventory beacon's policy files
    as `deviceName-UID.npl` (the UID derived from the device's IP addresses; FlexNet Inventory
    Agent reference, "Policy Files (.npl)"), which the agent downloads from ManageSoftDL. None for
    any other URL."""
    text = unquote(w3c.decode(uri))
    last = text.rsplit("/", 1)[-1]
    if not last.lower().endswith(".npl"):
        return None
    stem = last[:-4]
    name, dash, uid = stem.rpartition("-")
    if not dash or not name.strip() or not uid or len(name) > 255 or any(ord(c) < 32 for c in name):
        return None
    return name.strip()
