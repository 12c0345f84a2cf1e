"""The acceptance verdict: the cases mutation testing found untested (docs/testing.md, verdict).

Issuers that are not CAs, the path length limit, CRLs at and around their validity edges and the
choice between fresh CRLs, the moment given without or with another time zone, and the exact
details IIS's refusals are explained with.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.certs.verdict import IIS_STATUS, iis_verdict
from components.iis.mapping_rules import MappingRule

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
ISSUER_RULE = MappingRule("Issuer", "CN", "Devices CA", True)


def _name(cn: str | None, **more: str | list[str]) -> x509.Name:
    oids = {"o": NameOID.ORGANIZATION_NAME, "ou": NameOID.ORGANIZATIONAL_UNIT_NAME}
    attributes = [x509.NameAttribute(oids[k], v) for k, values in more.items() for v in ([values] if isinstance(values, str) else values)]
    return x509.Name(attributes + ([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))


class Node:
    def __init__(self, subject: x509.Name, issuer: "Node | None", *, ca: bool | None = True, key_cert_sign: bool | None = True,
                 not_after: dt.datetime = NOW + 30 * DAY, issuer_name: x509.Name | None = None,
                 usage: x509.KeyUsage | None = None, eku: list[x509.ObjectIdentifier] | None = None,
                 key: Any = None, path_length: int | None = None, self_signed: bool = False, cdp: tuple[str, ...] = ()) -> None:
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        if self_signed:
            issuer = None
        builder = (
            x509.CertificateBuilder().subject_name(subject)
            .issuer_name(issuer_name if issuer_name is not None else issuer.cert.subject if issuer else subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - 10 * DAY).not_valid_after(not_after)
        )
        if ca is not None:  # None: no basicConstraints at all
            builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        if usage is not None:
            builder = builder.add_extension(usage, critical=True)
        elif key_cert_sign is not None:  # None: no keyUsage at all
            builder = builder.add_extension(
                x509.KeyUsage(not ca, False, False, False, False, bool(key_cert_sign), bool(ca), False, False), critical=True)
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if cdp:
            points = [x509.DistributionPoint([x509.UniformResourceIdentifier(u) for u in cdp], None, None, None)]
            builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
        self.cert = builder.sign(issuer.key if issuer else self.key, hashes.SHA256())

    def crl(self, revoked: tuple[x509.Certificate, ...] = (), *, last: dt.datetime = NOW - DAY, next: dt.datetime | None = NOW + DAY,
            number: int | None = 1, reason: bool = False) -> x509.CertificateRevocationList:
        builder = x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject).last_update(last)
        builder = builder.next_update(next if next is not None else last + DAY)
        if number is not None:
            builder = builder.add_extension(x509.CRLNumber(number), critical=False)
        for cert in revoked:
            entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(NOW - 2 * DAY)
            if reason:
                entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self.key, hashes.SHA256())


ROOT = Node(_name("Root CA"), None)
CA = Node(_name("Devices CA"), ROOT)
LEAF = Node(_name("laptop-0001", o="Example Corp", ou=["Sales", "EMEA"]), CA, ca=False)
CRLS = [ROOT.crl(), CA.crl()]


def verdict(leaf: Node = LEAF, trusted: tuple[Node, ...] = (ROOT, CA), crls: list | None = None, at: dt.datetime = NOW,
            mappings: list | None = None, **more: Any):
    return iis_verdict(leaf.cert, [n.cert for n in trusted], CRLS if crls is None else crls, at,
                       [[ISSUER_RULE]] if mappings is None else mappings, **more)


def test_the_control_is_accepted_and_its_dict_has_no_status_meaning() -> None:
    accepted = verdict()
    assert accepted.accepted and accepted.to_dict()["statusMeaning"] is None
    assert accepted.detail == "trusted, valid, clientAuth, not revoked, an Allow mapping matches"
    refused = verdict(mappings=[])
    assert refused.to_dict()["statusMeaning"] == IIS_STATUS["401.2"] == IIS_STATUS[refused.status or ""]


def _usage(digital_signature: bool = False, key_encipherment: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature, False, key_encipherment, False, key_agreement, False, False, False, False)


def test_a_rejection_keeps_its_path_and_mappings() -> None:
    result = verdict(crls=[ROOT.crl()])
    assert result.reason == "crl-missing" and result.path == (LEAF.cert, CA.cert, ROOT.cert)
    assert result.to_dict()["allowMappings"] == [["Issuer.CN=Devices CA"]]
    for refused in (verdict(leaf=CA), verdict(at=NOW + 60 * DAY), verdict(at=NOW - 20 * DAY),
                    verdict(Node(_name("laptop-0010"), CA, ca=False, usage=_usage(key_encipherment=True))),
                    verdict(Node(_name("laptop-0011"), CA, ca=False, eku=[ExtendedKeyUsageOID.SERVER_AUTH]))):
        assert refused.to_dict()["path"][-1] == "CN=Root CA", refused


# --- validity, usage: edges and details ------------------------------------------------------------------

def test_validity_includes_both_ends_and_names_which_certificate() -> None:
    lasting = [ROOT.crl(last=NOW - 20 * DAY, next=NOW + 40 * DAY), CA.crl(last=NOW - 20 * DAY, next=NOW + 40 * DAY)]
    assert verdict(crls=lasting, at=LEAF.cert.not_valid_before_utc).accepted
    assert verdict(crls=lasting, at=LEAF.cert.not_valid_after_utc).accepted
    early = verdict(at=NOW - 11 * DAY)
    assert (early.status, early.reason, early.detail) == ("403.17", "not-yet-valid", "the certificate is not valid before 2026-02-19T12:00:00Z")
    short_ca = Node(_name("Devices CA"), ROOT, not_after=NOW - DAY)
    leaf = Node(_name("laptop-0012"), short_ca, ca=False)
    late = verdict(leaf, (ROOT, short_ca), [ROOT.crl(), short_ca.crl()])
    assert (late.reason, late.detail) == ("expired", "CA 'CN=Devices CA' expired 2026-02-28T12:00:00Z")


def test_a_ca_certificate_is_no_client() -> None:
    result = verdict(leaf=CA)
    assert (result.status, result.reason, result.detail) == (
        "403.16", "ca-as-client", "a CA certificate (basicConstraints cA=TRUE) cannot be a client certificate")


@pytest.mark.parametrize("usage,accepted,detail", [
    (_usage(digital_signature=True), True, None),
    (_usage(key_agreement=True), True, None),
    (_usage(key_encipherment=True), False, "keyUsage keyEncipherment has no digitalSignature"),
    (_usage(), False, "keyUsage (empty) has no digitalSignature"),
    (x509.KeyUsage(False, False, True, True, False, False, False, False, False), False,
     "keyUsage keyEncipherment, dataEncipherment has no digitalSignature"),
])
def test_the_leaf_key_usage_needs_digital_signature_or_key_agreement(usage: x509.KeyUsage, accepted: bool, detail: str | None) -> None:
    result = verdict(Node(_name("laptop-0013"), CA, ca=False, usage=usage))
    assert result.accepted is accepted
    if not accepted:
        assert (result.status, result.reason, result.detail) == ("403.16", "wrong-usage", detail)


@pytest.mark.parametrize("where,eku,detail", [
    ("leaf", [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], None),
    ("ca", [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], None),
    ("leaf", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING],
     "the certificate has EKU serverAuth, codeSigning without clientAuth"),
    ("ca", [ExtendedKeyUsageOID.SERVER_AUTH], "CA 'CN=Devices CA' has EKU serverAuth without clientAuth"),
])
def test_extended_key_usage_of_leaf_and_issuer(where: str, eku: list, detail: str | None) -> None:
    issuer = Node(_name("Devices CA"), ROOT, eku=eku if where == "ca" else None)
    leaf = Node(_name("laptop-0014"), issuer, ca=False, eku=eku if where == "leaf" else None)
    result = verdict(leaf, (ROOT, issuer), [ROOT.crl(), issuer.crl()])
    assert result.accepted is (detail is None)
    if detail is not None:
        assert (result.status, result.reason, result.detail) == ("403.16", "wrong-usage", detail)


# --- issuers that cannot issue -------------------------------------------------------------------------

@pytest.mark.parametrize("ca,key_cert_sign", [(False, False), (None, False), (True, False)])
def test_an_issuer_that_is_not_a_ca_is_untrusted(ca: bool | None, key_cert_sign: bool) -> None:
    """End-entity (cA false), no basicConstraints at all, or a CA whose keyUsage lacks keyCertSign."""
    issuer = Node(_name("Devices CA"), ROOT, ca=ca, key_cert_sign=key_cert_sign)
    leaf = Node(_name("laptop-0002"), issuer, ca=False)
    result = verdict(leaf, (ROOT, issuer), [ROOT.crl(), issuer.crl()])
    assert (result.status, result.reason) == ("403.16", "untrusted")
    assert result.detail == "issuer 'CN=Devices CA' is not a CA (basicConstraints/keyUsage)"


def test_a_ca_without_key_usage_may_issue() -> None:
    issuer = Node(_name("Devices CA"), ROOT, key_cert_sign=None)
    leaf = Node(_name("laptop-0003"), issuer, ca=False)
    assert verdict(leaf, (ROOT, issuer), [ROOT.crl(), issuer.crl()]).accepted


def test_seven_intermediates_are_the_most_a_path_may_hold() -> None:
    chain = [ROOT]
    for number in range(8):
        chain.append(Node(_name(f"CA {number}"), chain[-1]))
    leaf7 = Node(_name("deep-7"), chain[7], ca=False)
    leaf8 = Node(_name("deep-8"), chain[8], ca=False)
    crls = [n.crl() for n in chain]
    rules = [[MappingRule("Issuer", "CN", "CA *", True)]]
    assert verdict(leaf7, tuple(chain[:8]), crls, mappings=rules).accepted
    result = verdict(leaf8, tuple(chain), crls, mappings=rules)
    assert (result.reason, result.detail) == ("untrusted", "path longer than 8 certificates")


def test_an_unknown_issuer_is_named_even_among_other_cas() -> None:
    elsewhere = Node(_name("Elsewhere CA"), None)
    stray = Node(_name("laptop-0004"), elsewhere, ca=False)
    result = verdict(stray)
    assert result.detail == "no certificate for issuer 'CN=Elsewhere CA' among the trusted certificates"
    nameless = Node(_name("laptop-0005"), None, ca=False, issuer_name=x509.Name([]))
    assert verdict(nameless).detail == "no certificate for issuer '(empty name)' among the trusted certificates"


def test_every_ca_of_the_issuers_name_is_tried_in_turn() -> None:
    """Two CAs of one name (a re-keyed CA during a rollover, a copy sent by the client): one that
    fails for any reason does not end the search before the one that issued the certificate."""
    crls = [ROOT.crl(), CA.crl()]
    other_key = Node(_name("Devices CA"), ROOT)  # the signature does not verify
    not_a_ca = Node(_name("Devices CA"), ROOT, key=CA.key, ca=False, key_cert_sign=False)
    assert verdict(trusted=(ROOT, other_key, CA), crls=crls).accepted
    assert verdict(trusted=(ROOT, not_a_ca, CA), crls=crls).accepted
    self_signed = Node(_name("Devices CA"), None, key=CA.key, self_signed=True)  # sent by the client: not a trusted root
    assert verdict(trusted=(ROOT,), crls=crls, intermediates=[self_signed.cert, CA.cert]).accepted
    i1 = Node(_name("I1"), ROOT)
    i1_limited = Node(_name("I1"), ROOT, key=i1.key, path_length=0)  # allows no intermediate below it
    i2 = Node(_name("I2"), i1)
    deep = Node(_name("laptop-0007"), i2, ca=False)
    rules = [[MappingRule("Issuer", "CN", "I2", True)]]
    assert verdict(deep, (ROOT, i1_limited, i1, i2), [ROOT.crl(), i1.crl(), i2.crl()], mappings=rules).accepted


def test_the_signature_problem_explains_before_the_others() -> None:
    i1 = Node(_name("I1"), ROOT)
    i1_other_key = Node(_name("I1"), ROOT)
    i1_limited = Node(_name("I1"), ROOT, key=i1.key, path_length=0)
    i2 = Node(_name("I2"), i1)
    deep = Node(_name("laptop-0008"), i2, ca=False)
    result = verdict(deep, (ROOT, i1_limited, i1_other_key, i2), [ROOT.crl(), i1.crl(), i2.crl()])
    assert result.detail == ("'CN=I2' names issuer 'CN=I1' but its signature does not verify with that CA's key "
                             "(a different CA with the same name?)")


def test_a_missing_crl_names_every_distribution_point() -> None:
    leaf = Node(_name("laptop-0009"), CA, ca=False, cdp=("http://crl.example.com/a.crl", "http://crl2.example.com/a.crl"))
    assert verdict(leaf, crls=[ROOT.crl()]).detail == (
        "no CRL from 'CN=Devices CA' for 'CN=laptop-0009' (IIS would fetch http://crl.example.com/a.crl, http://crl2.example.com/a.crl)")


def test_a_ca_of_the_same_name_with_another_key_is_explained() -> None:
    impostor = Node(_name("Devices CA"), ROOT)
    leaf = Node(_name("laptop-0006"), impostor, ca=False)
    assert verdict(leaf).detail == ("'CN=laptop-0006' names issuer 'CN=Devices CA' but its signature does not verify with that CA's key "
                                    "(a different CA with the same name?)")


# --- the moment: naive is UTC, another zone is converted -------------------------------------------------


def test_a_naive_moment_is_utc_and_an_aware_one_is_converted(tokyo: None) -> None:
    expiry = LEAF.cert.not_valid_after_utc
    assert verdict(at=(expiry + dt.timedelta(hours=1)).replace(tzinfo=None)).reason == "expired"
    plus_nine = dt.timezone(dt.timedelta(hours=9))
    lasting = [ROOT.crl(next=NOW + 40 * DAY), CA.crl(next=NOW + 40 * DAY)]
    assert verdict(crls=lasting, at=(expiry - dt.timedelta(hours=1)).astimezone(plus_nine)).accepted


# --- CRLs at their edges, and which fresh CRL counts -------------------------------------------------------

def test_a_crl_is_fresh_up_to_its_next_update() -> None:
    assert verdict(crls=[ROOT.crl(), CA.crl(next=NOW)]).accepted


def test_a_crl_not_yet_valid_is_stale_and_says_from_when() -> None:
    result = verdict(crls=[ROOT.crl(), CA.crl(last=NOW + dt.timedelta(hours=1), next=NOW + DAY)])
    assert (result.status, result.reason) == ("403.13", "crl-stale")
    assert result.detail == "the CRL from 'CN=Devices CA' is not valid until 2026-03-01T13:00:00Z"


def test_of_two_expired_crls_the_newest_is_named() -> None:
    older = CA.crl(last=NOW - 5 * DAY, next=NOW - 4 * DAY, number=1)
    newer = CA.crl(last=NOW - 3 * DAY, next=NOW - 2 * DAY, number=2)
    result = verdict(crls=[ROOT.crl(), older, newer])
    assert result.detail == "the CRL from 'CN=Devices CA' expired at 2026-02-27T12:00:00Z (nextUpdate)"


def test_the_highest_crl_number_decides_over_the_newest_this_update() -> None:
    higher = CA.crl((LEAF.cert,), last=NOW - 2 * DAY, number=5)
    lower = CA.crl(last=NOW - DAY, number=4)
    assert verdict(crls=[ROOT.crl(), lower, higher]).reason == "revoked"
    unnumbered = CA.crl(last=NOW - DAY, number=None)
    numbered = CA.crl((LEAF.cert,), last=NOW - 2 * DAY, number=1)
    assert verdict(crls=[ROOT.crl(), unnumbered, numbered]).reason == "revoked"  # a numbered CRL over one without a number


@pytest.mark.parametrize("reason,why", [(False, "no reason given"), (True, "keyCompromise")])
def test_revoked_detail(reason: bool, why: str) -> None:
    result = verdict(crls=[ROOT.crl(), CA.crl((LEAF.cert,), reason=reason, number=7)])
    serial = format(LEAF.cert.serial_number, "x")
    serial = serial if len(serial) % 2 == 0 else "0" + serial
    assert result.detail == f"'CN=laptop-0001,OU=EMEA,OU=Sales,O=Example Corp' (serial {serial}) revoked 2026-02-27T12:00:00Z ({why}) by CRL 7 of 'CN=Devices CA'"


def test_a_missing_crl_names_where_iis_would_fetch_it_or_that_it_cannot() -> None:
    result = verdict(crls=[ROOT.crl()])
    assert result.detail == "no CRL from 'CN=Devices CA' for 'CN=laptop-0001,OU=EMEA,OU=Sales,O=Example Corp' (and the certificate has no CDP to fetch one from)"


def test_a_deny_mapping_refuses_before_any_allow_mapping() -> None:
    deny = [ISSUER_RULE, MappingRule("Subject", "OU", "Sales", True)]
    result = verdict(denials=[[ISSUER_RULE, MappingRule("Subject", "OU", "Retired", True)], deny])
    assert (result.status, result.reason) == ("401.2", "denied") and result.path == (LEAF.cert, CA.cert, ROOT.cert)
    assert result.detail == "a Deny mapping matches (Issuer.CN=Devices CA AND Subject.OU=Sales)"


# --- 401.2: which rule of which mapping explains the miss ------------------------------------------------

OTHER = [MappingRule("Issuer", "CN", "Other CA", True), MappingRule("Subject", "O", "Example Corp", True)]


@pytest.mark.parametrize("mappings,detail", [
    ([], "no Allow mapping is configured"),
    ([[ISSUER_RULE, MappingRule("Subject", "O", "Other Org", True)]],
     "rule 'Subject.O=Other Org' does not match (Subject.O: 'Example Corp')"),
    ([[ISSUER_RULE, MappingRule("Subject", "OU", "Support", True)]],
     "rule 'Subject.OU=Support' does not match (Subject.OU: 'Sales', 'EMEA')"),
    ([[ISSUER_RULE, MappingRule("Subject", "L", "Paris", True)]],
     "rule 'Subject.L=Paris' does not match (Subject.L: no such attribute)"),
    # the mapping whose Issuer rule matches explains best, wherever it is in the list
    ([OTHER, [ISSUER_RULE, MappingRule("Subject", "O", "Other Org", True)]],
     "rule 'Subject.O=Other Org' does not match (Subject.O: 'Example Corp') (and 1 other Allow mapping(s) do not match either)"),
    ([OTHER, OTHER], "rule 'Issuer.CN=Other CA' does not match (Issuer.CN: 'Devices CA') (and 1 other Allow mapping(s) do not match either)"),
    ([OTHER, OTHER, OTHER],
     "rule 'Issuer.CN=Other CA' does not match (Issuer.CN: 'Devices CA') (and 2 other Allow mapping(s) do not match either)"),
])
def test_no_mapping_detail(mappings: list, detail: str) -> None:
    result = verdict(mappings=mappings)
    assert (result.status, result.reason, result.detail) == ("401.2", "no-mapping", detail)
