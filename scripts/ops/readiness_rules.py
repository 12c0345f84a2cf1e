"""What `readiness` judges device certificates against: the configured issuing CAs (a certificate
from another issuer is `other-issuer`) and the certificate mappings IIS will apply under require
(a certificate they refuse is `refused-by-rule`).

Sources, first found wins:
- issuing CAs: --issuer-cn; mtls.issuerRules of --stack-outputs; the stack file's Allow mappings.
- mappings: the stack file with --stack (stacks/Pulumi.<stack>.yaml, validated and turned into the
  desired state by components.stack.prepare, offline, exactly as the deployment builds it:
  clientCaCertificates, issuerRuleMatchOrganization, extraMappingRules, denyMappingRules,
  mappingMode); mtls.manyToOneMappings of --stack-outputs when the outputs carry it (the IIS
  shape of the desired state); else an Allow mapping per issuing CA, its Issuer rule alone.
The stack file also gives the region when nothing else does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from components.require_gate import judged_rules_digest

from . import mapping_judgment as mj
from .common import InputError
from .outputs import StackOutputs

if TYPE_CHECKING:
    from components.stack import Prepared


@dataclass
class RuleSet:
    issuer_cns: list[str]
    issuer_source: str
    rules: mj.Rules
    region: str | None = None  # aws:region of the stack file
    region_source: str = ""
    notes: list[str] = field(default_factory=list)
    # SHA-256 of the stack file's mappings when they were judged (components/require_gate.py):
    # a verdict without it does not count for `pulumi up`.
    rules_digest: str | None = None


def check_issuer_cns(values: Sequence[Any], source: str) -> list[str]:
    found: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 for c in value):
            raise InputError(f"{source}: got {value!r}; expected the CN of an issuing CA, e.g. 'Example Devices CA'")
        if value.strip() not in found:
            found.append(value.strip())
    if not found:
        raise InputError(f"{source} is empty: no issuing CA to compare the device certificates' issuers with")
    return found


def stack_file(stack: str) -> tuple[Path, str]:
    """stacks/Pulumi.<stack>.yaml of the project (FLEXNET_BEACON_PROJECT_DIR, as the program reads it)."""
    from components.stack import project_dir

    base = project_dir()
    return base / "stacks" / f"Pulumi.{stack}.yaml", f"stacks/Pulumi.{stack}.yaml"


def read_stack(stack: str) -> tuple["Prepared", str | None, str] | None:
    """(the prepared stack, its aws:region, the file as named) or None when there is no such file."""
    path, shown = stack_file(stack)
    if not path.is_file():
        return None
    from components.config import ConfigInvalid, stack_file_to_raw
    from components.stack import prepare, project_dir
    from components.stack_yaml import read_stack_document

    try:
        document = read_stack_document(path) or {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{shown}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise InputError(f"{shown}: expected a mapping with a 'config:' mapping")
    raw, region, _ = stack_file_to_raw(document)
    try:
        prepared = prepare(raw, stack, region, base=project_dir())
    except ConfigInvalid as invalid:
        raise InputError(f"{shown}: " + "; ".join(str(issue) for issue in invalid.issues)) from None
    return prepared, region, shown


def _stack_rules(prepared: "Prepared", shown: str) -> mj.Rules:
    mapping = prepared.iis_state["authentication"]["clientCertificateMapping"]
    if prepared.cfg.mapping_mode != "many-to-one":
        from components.certs.facts import common_name, serial_hex

        pairs = [(common_name(c.certificate.issuer) or "", serial_hex(c.certificate.serial_number)) for c in prepared.one_to_one]
        return mj.one_to_one(pairs, f"{shown} (mappingMode {prepared.cfg.mapping_mode})")
    return mj.iis_mappings(mapping["manyToOneMappings"], shown)


def rule_set(issuer_flags: Sequence[str] | None, outputs: StackOutputs, stack: str | None, use_stack_file: bool) -> RuleSet:
    notes: list[str] = []
    found = read_stack(stack) if stack and use_stack_file else None
    if stack and use_stack_file and found is None:
        notes.append(f"no {stack_file(stack)[1]}: the stack's extraMappingRules and denyMappingRules are not judged (pass --stack NAME from the project)")
    # the issuing CAs
    rules_output = outputs.optional("mtls.issuerRules")
    if issuer_flags:
        issuer_cns, issuer_source = check_issuer_cns(issuer_flags, "--issuer-cn"), "--issuer-cn"
    elif rules_output is not None:
        if not isinstance(rules_output, list):
            raise InputError(f"stack outputs {outputs.source}: mtls.issuerRules is {rules_output!r}; expected a list of CNs")
        issuer_cns = check_issuer_cns(rules_output, f"stack outputs {outputs.source}: mtls.issuerRules")
        issuer_source = f"mtls.issuerRules of {outputs.source}"
    elif found is not None:
        prepared, _, shown = found
        mappings = prepared.iis_state["authentication"]["clientCertificateMapping"]["manyToOneMappings"]
        cns = [m["rules"][0]["matchCriteria"] for m in mappings if m["permissionMode"] == "Allow"]
        if not cns:  # mappingMode one-to-one: no Allow mapping, the issuing CAs themselves
            from components.certs.facts import common_name

            cns = [cn for cn in (common_name(c.certificate.subject) for c in prepared.trust.issuing) if cn]
        issuer_cns = check_issuer_cns(sorted(set(cns)), f"{shown}: the Allow mappings' Issuer rules")
        issuer_source = f"clientCaCertificates of {shown}"
    elif outputs.given:
        raise InputError(
            f"stack outputs {outputs.source}: missing mtls.issuerRules (the configured issuing CAs); regenerate the file with "
            "`pulumi stack output --json` after `pulumi up`, or pass --issuer-cn CN"
        )
    else:
        raise InputError(
            "readiness needs the configured issuing CAs: pass --stack NAME (its stacks/Pulumi.NAME.yaml), "
            "--stack-outputs FILE (mtls.issuerRules) or --issuer-cn CN (repeatable)"
        )
    # the mappings
    if found is not None:
        prepared, region, shown = found
        digest = judged_rules_digest(prepared.iis_state["authentication"]["clientCertificateMapping"])
        return RuleSet(issuer_cns, issuer_source, _stack_rules(prepared, shown), region, f"aws:region of {shown}", notes, digest)
    given = outputs.optional("mtls.manyToOneMappings")
    if given is not None:
        try:
            return RuleSet(issuer_cns, issuer_source, mj.iis_mappings(given, f"mtls.manyToOneMappings of {outputs.source}"), notes=notes)
        except ValueError as exc:
            raise InputError(f"stack outputs {outputs.source}: mtls.manyToOneMappings: {exc}") from None
    notes.append(
        f"mappings: only the Issuer rule of each issuing CA ({issuer_source}); pass --stack NAME to judge the stack file's "
        "extraMappingRules and denyMappingRules too"
    )
    return RuleSet(issuer_cns, issuer_source, mj.issuer_mappings(issuer_cns, issuer_source), notes=notes)
