"""The verdict an IIS beacon (HTTP.sys + SChannel + iisClientCertificateMappingAuthentication)
would give a device certificate: :func:`build_path`, :func:`revocation_problem`,
:func:`iis_verdict` -> :class:`Verdict`. Pure: callers pass the trust stores, CRLs, mappings
and the moment ``at``.

Order of the checks in :func:`iis_verdict` (the first failure decides):
1. trust (403.16): a path from the certificate to a self-signed root among the trusted
   certificates, every signature verifying, every issuer a CA (basicConstraints, keyCertSign,
   pathLenConstraint);
2. time (403.17): every certificate of the path valid at ``at``;
3. usage (reported as 403.16, "untrusted or invalid"): a CA certificate used as a client, an
   EKU without clientAuth (certificate or intermediate; none = any purpose, as in Windows and
   OpenSSL), a keyUsage without digitalSignature/keyAgreement;
4. revocation (403.13): for every certificate but the root, a CRL from its issuer with a valid
   signature, fresh at ``at`` (thisUpdate <= at <= nextUpdate), not listing its serial;
5. mapping (401.2): no Deny mapping matches (all its rules) and some Allow mapping does.

The path is built here rather than with cryptography.x509.verification.ClientVerifier: that
verifier applies the web PKI profile (a SAN is required on the leaf, which device certificates
for IIS many-to-one mapping do not need) and reports one error for every cause, where the IIS
status depends on the cause. tests/pki/test_pki.py checks ClientVerifier agrees on what the CLI issues.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from ..iis.mapping_rules import MappingRule, allow_mappings, first_unmatched, rule_matches
from .facts import (
    cdp_urls,
    crl_number,
    eku_names,
    extension,
    is_ca,
    is_self_signed,
    iso,
    issuing_cas,
    key_usage_names,
    name_values,
    revocation_reason,
    serial_hex,
)

# What IIS logs/answers for each outcome (sub-status codes of the IIS docs).
IIS_STATUS = {
    "403.7": "client certificate required",
    "403.13": "client certificate revoked (or revocation status unknown: CRL missing, invalid or stale)",
    "403.16": "client certificate untrusted or invalid",
    "403.17": "client certificate expired or not yet valid",
    "401.2": "no many-to-one mapping rule matched (anonymous access off)",
}


@dataclass(frozen=True)
class Verdict:
    """What an IIS beacon would do with a client certificate.

    status: None when accepted, else the IIS status ("403.16", "403.17", "403.13", "401.2").
    reason: a stable code: accepted, untrusted, expired, not-yet-valid, ca-as-client,
            wrong-usage, revoked, crl-missing, crl-invalid, crl-stale, no-mapping, denied.
    """

    accepted: bool
    status: str | None
    reason: str
    detail: str
    path: tuple[x509.Certificate, ...] = field(default=(), compare=False)
    mappings: tuple[tuple[MappingRule, ...], ...] = ()

    def line(self) -> str:
        return "accept" if self.accepted else f"{self.status} {self.reason}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "statusMeaning": IIS_STATUS.get(self.status or ""),
            "path": [c.subject.rfc4514_string() for c in self.path],
            "allowMappings": [[str(r) for r in m] for m in self.mappings],
        }


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _dn(name: x509.Name) -> str:
    return name.rfc4514_string() or "(empty name)"


def _can_issue(ca: x509.Certificate) -> bool:
    bc = extension(ca, x509.BasicConstraints)
    ku = extension(ca, x509.KeyUsage)
    if bc is None or not bc.ca:
        return False
    return ku is None or ku.key_cert_sign


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def build_path(
    leaf: x509.Certificate,
    trusted: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    max_depth: int = 8,
) -> tuple[tuple[x509.Certificate, ...] | None, str]:
    """A path leaf -> ... -> self-signed root, the root taken from ``trusted``.

    ``trusted``: certificates the beacon holds (LocalMachine\\Root and \\CA): the self-signed ones
    are anchors, the others can be intermediates. ``intermediates``: certificates the client sent.
    Returns (path, "") or (None, why not).
    """
    anchors = [c for c in trusted if is_self_signed(c)]
    pool = anchors + [c for c in list(trusted) + list(intermediates) if c not in anchors and c != leaf]
    if leaf in anchors:
        return (leaf,), ""
    problems: list[str] = []

    def extend(path: list[x509.Certificate]) -> tuple[x509.Certificate, ...] | None:
        current = path[-1]
        if len(path) > max_depth:
            problems.append(f"path longer than {max_depth} certificates")
            return None
        named = [c for c in pool if c.subject == current.issuer and c not in path]
        if not named:
            problems.append(f"no certificate for issuer '{_dn(current.issuer)}' among the trusted certificates")
            return None
        for candidate in named:
            if not _signed_by(current, candidate):
                problems.append(
                    f"'{_dn(current.subject)}' names issuer '{_dn(current.issuer)}' but its signature does not "
                    "verify with that CA's key (a different CA with the same name?)"
                )
                continue
            if not _can_issue(candidate):
                problems.append(f"issuer '{_dn(candidate.subject)}' is not a CA (basicConstraints/keyUsage)")
                continue
            bc = extension(candidate, x509.BasicConstraints)
            below = sum(1 for c in path[1:] if c.subject != c.issuer)  # intermediates under it
            if bc.path_length is not None and below > bc.path_length:
                problems.append(f"'{_dn(candidate.subject)}' allows {bc.path_length} intermediate(s) below it")
                continue
            if candidate in anchors:
                return tuple(path + [candidate])
            if is_self_signed(candidate):
                problems.append(f"self-signed '{_dn(candidate.subject)}' is not a trusted root")
                continue
            found = extend(path + [candidate])
            if found:
                return found
        return None

    path = extend([leaf])
    if path:
        return path, ""
    # The most specific problem first: a signature mismatch explains more than "not found".
    problems.sort(key=lambda p: 0 if "signature" in p else 1)
    return None, problems[0] if problems else "no path to a trusted root"


def _fresh(crl: x509.CertificateRevocationList, at: dt.datetime) -> bool:
    if crl.last_update_utc > at:
        return False
    return crl.next_update_utc is None or at <= crl.next_update_utc


def revocation_problem(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    at: dt.datetime,
) -> tuple[str, str] | None:
    """None when a fresh, validly signed CRL from ``issuer`` does not list ``cert``; else
    (reason, detail) with reason revoked | crl-missing | crl-invalid | crl-stale."""
    at = _utc(at)
    named = [c for c in crls if c.issuer == issuer.subject]
    who = _dn(issuer.subject)
    if not named:
        urls = cdp_urls(cert)
        where = f" (IIS would fetch {', '.join(urls)})" if urls else " (and the certificate has no CDP to fetch one from)"
        return "crl-missing", f"no CRL from '{who}' for '{_dn(cert.subject)}'{where}"
    issuer_key = cast(CertificateIssuerPublicKeyTypes, issuer.public_key())
    signed = [c for c in named if c.is_signature_valid(issuer_key)]
    if not signed:
        return "crl-invalid", f"the CRL named '{who}' does not verify with that CA's key"
    fresh = [c for c in signed if _fresh(c, at)]
    if not fresh:
        newest = max(signed, key=lambda c: c.last_update_utc)
        if newest.last_update_utc > at:
            return "crl-stale", f"the CRL from '{who}' is not valid until {iso(newest.last_update_utc)}"
        return "crl-stale", f"the CRL from '{who}' expired at {iso(newest.next_update_utc)} (nextUpdate)"
    crl = max(fresh, key=lambda c: (crl_number(c) or 0, c.last_update_utc))
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None:
        why = revocation_reason(entry) or "no reason given"
        return "revoked", (
            f"'{_dn(cert.subject)}' (serial {serial_hex(cert.serial_number)}) revoked {iso(entry.revocation_date_utc)} "
            f"({why}) by CRL {crl_number(crl)} of '{who}'"
        )
    return None


def _describe_miss(cert: x509.Certificate, mappings: Sequence[Sequence[MappingRule]]) -> str:
    if not mappings:
        return "no Allow mapping is configured"
    # The mapping of this certificate's issuer explains best; else the first one.
    ordered = sorted(mappings, key=lambda m: 0 if m and rule_matches(cert, m[0]) else 1)
    rule = first_unmatched(cert, ordered[0])
    if rule is None:  # the chosen mapping matches after all: nothing to explain
        return "a mapping matches"
    name = cert.subject if rule.certificate_field == "Subject" else cert.issuer
    values = name_values(name, rule.certificate_sub_field)
    got = ", ".join(repr(v) for v in values) if values else "no such attribute"
    more = f" (and {len(mappings) - 1} other Allow mapping(s) do not match either)" if len(mappings) > 1 else ""
    return f"rule '{rule}' does not match ({rule.certificate_field}.{rule.certificate_sub_field}: {got}){more}"


def iis_verdict(
    cert: x509.Certificate,
    trusted: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: dt.datetime,
    mappings: Sequence[Sequence[MappingRule]] | None = None,
    intermediates: Sequence[x509.Certificate] = (),
    denials: Sequence[Sequence[MappingRule]] = (),
    check_revocation: bool = True,
) -> Verdict:
    """Would an IIS beacon with these trust stores, CRLs and mappings accept ``cert``?

    trusted: the beacon's LocalMachine\\Root (self-signed roots) and \\CA (intermediates).
    crls: the CRLs the beacon can get (fetched from the CDPs or pre-loaded).
    at: the moment of the request (timezone-aware, or naive UTC).
    mappings: the Allow mappings, each a list of rules that must all match; None ->
        allow_mappings(issuing_cas(non-leaf trusted CAs)): Issuer CN = an issuing CA's CN.
    intermediates: certificates the client sends along with its own.
    denials: Deny mappings, evaluated first (deny_mappings(...)).
    """
    at = _utc(at)
    if mappings is None:
        mappings = allow_mappings(issuing_cas([c for c in trusted if is_ca(c)]))
    frozen = tuple(tuple(m) for m in mappings)

    def reject(status: str, reason: str, detail: str, path: Iterable[x509.Certificate] = ()) -> Verdict:
        return Verdict(False, status, reason, detail, tuple(path), frozen)

    path, why = build_path(cert, trusted, intermediates)
    if path is None:
        return reject("403.16", "untrusted", why)

    for item in path:
        label = "the certificate" if item is cert else f"CA '{_dn(item.subject)}'"
        if at < item.not_valid_before_utc:
            return reject("403.17", "not-yet-valid", f"{label} is not valid before {iso(item.not_valid_before_utc)}", path)
        if at > item.not_valid_after_utc:
            return reject("403.17", "expired", f"{label} expired {iso(item.not_valid_after_utc)}", path)

    if is_ca(cert):
        return reject("403.16", "ca-as-client", "a CA certificate (basicConstraints cA=TRUE) cannot be a client certificate", path)
    for item in path[:-1]:
        names = eku_names(item)
        if names is not None and "clientAuth" not in names and "anyExtendedKeyUsage" not in names:
            label = "the certificate" if item is cert else f"CA '{_dn(item.subject)}'"
            return reject("403.16", "wrong-usage", f"{label} has EKU {', '.join(names) or '(empty)'} without clientAuth", path)
    ku = key_usage_names(cert)
    if ku is not None and "digitalSignature" not in ku and "keyAgreement" not in ku:
        return reject("403.16", "wrong-usage", f"keyUsage {', '.join(ku) or '(empty)'} has no digitalSignature", path)

    if check_revocation:
        for child, issuer in zip(path, path[1:]):
            problem = revocation_problem(child, issuer, crls, at)
            if problem:
                return reject("403.13", problem[0], problem[1], path)

    for denial in denials:
        if first_unmatched(cert, denial) is None:
            return reject("401.2", "denied", f"a Deny mapping matches ({' AND '.join(str(r) for r in denial)})", path)
    if not any(first_unmatched(cert, mapping) is None for mapping in frozen):
        return reject("401.2", "no-mapping", _describe_miss(cert, frozen), path)
    return Verdict(True, None, "accepted", "trusted, valid, clientAuth, not revoked, an Allow mapping matches", path, frozen)
