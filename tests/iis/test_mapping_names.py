"""Many-to-one mapping names are IIS's unique key: two issuing CAs of one CN (a re-keyed CA during
a rollover) must give one mapping, or mappings of distinct names; never two of one name."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.certs.trust import ClientTrust, LoadedCertificate, classify
from components.config import ConfigInvalid
from components.iis.state import (
    MAPPING_NAME_LIMIT,
    MappingNameClash,
    mapping_name,
    many_to_one_mappings,
    thumbprint_suffix,
)
from components.stack import PROJECT_DIR_ENV, prepare
from conftest import ROOT, plan_stack

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CN = "Example Devices CA"
CRL = "http://crl.example.com/devices.crl"
# What the converge script refuses in a name (Assert-MappingName), and C1 controls besides.
REFUSED = re.compile(r"['\[\]\x00-\x1f\x7f-\x9f]")


def ca(cn: str, organization: str | None = None) -> x509.Certificate:
    """A self-signed CA with a key of its own: two calls with one CN are a re-keyed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    # Past RFC 5280's 64 characters too (some CAs have such CNs; the parser reads them).
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=len(cn) <= 64)]
    if organization is not None:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def trust_of(*cas: x509.Certificate) -> ClientTrust:
    """Classified as the plan does: the certs trust classification must accept them."""
    trust, issues = classify([LoadedCertificate(f"ca-{i}.pem", c) for i, c in enumerate(cas)])
    assert not issues and trust is not None, [str(i) for i in issues]
    return trust


def names(mappings: list[dict]) -> list[str]:
    return [m["name"] for m in mappings]


def assert_valid_names(mappings: list[dict]) -> None:
    found = names(mappings)
    assert len({n.casefold() for n in found}) == len(found), f"names not unique: {found}"
    for name in found:
        assert name and len(name) <= MAPPING_NAME_LIMIT and not REFUSED.search(name), name


def thumbprints(trust: ClientTrust) -> list[str]:
    return [c.thumbprint for c in trust.issuing]


# --- naming, pure -------------------------------------------------------------------------------

def test_thumbprint_suffix_is_the_first_eight_hex_digits_upper_case() -> None:
    assert thumbprint_suffix("3fa2c1d9" + "0" * 32) == " (3FA2C1D9)"


def test_a_name_without_a_suffix_is_what_it_was() -> None:
    def before(text: str) -> str:  # the rule before suffixes existed
        return re.sub(r"['\[\]\x00-\x1f]", "", text)[:128]

    for text in ("Agents - Example Devices CA", "Deny 3 - O'Brien [Devices] CA", "Agents - " + "x" * 300, "Agents - ünï ✓"):
        assert mapping_name(text) == before(text)


def test_two_cas_of_one_cn_with_identical_rules_are_one_allow_mapping() -> None:
    trust = trust_of(ca(CN), ca(CN))
    assert len(trust.issuing) == 2, "both re-keyed CAs are issuing CAs (ClientAuthIssuer)"
    mappings = many_to_one_mappings(trust, ["Subject.O=Contoso"], [])
    assert names(mappings) == [f"Agents - {CN}"]
    assert [r["matchCriteria"] for r in mappings[0]["rules"]] == [CN, "Contoso"]


def test_one_cn_and_one_organization_is_still_one_mapping_when_the_o_is_matched() -> None:
    trust = trust_of(ca(CN, "Example Ltd"), ca(CN, "Example Ltd"))
    assert names(many_to_one_mappings(trust, [], [], include_organization=True)) == [f"Agents - {CN}"]


def test_one_cn_and_two_organizations_are_two_mappings_named_by_thumbprint() -> None:
    trust = trust_of(ca(CN, "Example Ltd"), ca(CN, "Example Inc"))
    mappings = many_to_one_mappings(trust, [], [], include_organization=True)
    assert names(mappings) == [f"Agents - {CN}{thumbprint_suffix(t)}" for t in thumbprints(trust)]
    assert_valid_names(mappings)
    assert sorted(m["rules"][1]["matchCriteria"] for m in mappings) == ["Example Inc", "Example Ltd"]
    # Without the O rule the two CAs are one mapping again.
    assert names(many_to_one_mappings(trust, [], [])) == [f"Agents - {CN}"]


def test_deny_mappings_of_two_cas_of_one_cn() -> None:
    denies = ["Subject.OU=Contractors", "Subject.OU=Lab"]
    same = trust_of(ca(CN), ca(CN))
    mappings = many_to_one_mappings(same, [], denies)
    assert names(mappings) == [f"Deny 1 - {CN}", f"Deny 2 - {CN}", f"Agents - {CN}"]
    assert [m["permissionMode"] for m in mappings] == ["Deny", "Deny", "Allow"]

    split = trust_of(ca(CN, "Example Ltd"), ca(CN, "Example Inc"))
    first, second = thumbprints(split)
    mappings = many_to_one_mappings(split, [], denies, include_organization=True)
    assert names(mappings) == [
        f"Deny 1 - {CN}{thumbprint_suffix(first)}",
        f"Deny 2 - {CN}{thumbprint_suffix(first)}",
        f"Deny 1 - {CN}{thumbprint_suffix(second)}",
        f"Deny 2 - {CN}{thumbprint_suffix(second)}",
        f"Agents - {CN}{thumbprint_suffix(first)}",
        f"Agents - {CN}{thumbprint_suffix(second)}",
    ]
    assert_valid_names(mappings)


def test_a_repeated_deny_rule_is_one_mapping() -> None:
    mappings = many_to_one_mappings(trust_of(ca(CN)), [], ["Subject.OU=Lab", "Subject.OU=Lab"])
    assert names(mappings) == [f"Deny 1 - {CN}", f"Agents - {CN}"]


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_long_cns_equal_after_truncation_stay_unique_within_the_limit() -> None:
    stem = "Example Devices Issuing Certification Authority " * 4  # 192 characters
    trust = trust_of(ca(stem + "2026"), ca(stem + "2027"))
    mappings = many_to_one_mappings(trust, [], ["Subject.OU=Contractors"])
    assert_valid_names(mappings)
    assert all(len(name) == MAPPING_NAME_LIMIT for name in names(mappings))
    by_cn = {m["rules"][0]["matchCriteria"]: m["name"] for m in mappings if m["permissionMode"] == "Allow"}
    for cert, thumbprint in zip(trust.issuing, thumbprints(trust)):
        name = by_cn[cert.certificate.subject.rfc4514_string().removeprefix("CN=")]
        assert name.endswith(thumbprint_suffix(thumbprint)) and name.startswith("Agents - Example Devices")
    # One long CN alone keeps today's name: cut at the limit, no suffix.
    (alone,) = many_to_one_mappings(trust_of(ca(stem + "2026")), [], [])
    assert alone["name"] == f"Agents - {stem}2026"[:MAPPING_NAME_LIMIT]


@pytest.mark.parametrize(
    "first,second",
    [
        ("O'Brien [Devices] CA", "O'Brien [Devices] CA"),  # one hostile CN, two O
        ("O'Brien CA", "OBrien CA"),  # equal once the quote is removed
        ("Devices\x07 CA", "Devices CA"),  # equal once the control character is removed
        ("Example Devices CA", "EXAMPLE DEVICES CA"),  # IIS compares names case-insensitively
    ],
)
def test_hostile_and_look_alike_cns_get_safe_distinct_names(first: str, second: str) -> None:
    trust = trust_of(ca(first, "Example Ltd"), ca(second, "Example Inc"))
    mappings = many_to_one_mappings(trust, [], ["Subject.OU=X"], include_organization=True)
    assert len(mappings) == 4
    assert_valid_names(mappings)
    assert all(re.search(r" \([0-9A-F]{8}\)$", name) for name in names(mappings)), names(mappings)
    # The rules still match each CA's real CN.
    assert {m["rules"][0]["matchCriteria"] for m in mappings} == {first, second}


def test_a_name_that_still_clashes_is_refused_in_one_line_naming_the_cn() -> None:
    upper, lower = ca("Devices CA"), ca("devices ca")
    suffix = thumbprint_suffix(LoadedCertificate("x.pem", upper).thumbprint)
    # A CN built to look like the suffixed name of another CA.
    impostor = ca(f"Devices CA{suffix}")
    with pytest.raises(MappingNameClash) as raised:
        many_to_one_mappings(trust_of(upper, lower, impostor), [], [])
    message = str(raised.value)
    assert isinstance(raised.value, ValueError) and "\n" not in message
    assert f"'Agents - Devices CA{suffix}' would name two mappings" in message
    assert "issuing CA CN 'Devices CA" in message


# --- through the stack: prepare() and the offline plan ------------------------------------------

def write_cas(base: Path, *cas: x509.Certificate) -> list[str]:
    files = []
    for i, cert in enumerate(cas):
        path = base / "certs" / f"devices-ca-{i}.pem"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.append(path.relative_to(base).as_posix())
    return files


def planned_state(base: Path, files: list[str], **overrides: object) -> dict:
    p = plan_stack(
        "dev",
        {"clientCaCertificates": files, "sampleDeviceCertificate": "", "crlUrls": [CRL], **overrides},
        base=base,
    )
    assert not [message for level, message in p.run.log if level == "error"]
    (state_object,) = [r for r in p.of_type("s3/bucketObjectv2:BucketObjectv2") if r.name == "mtls-state"]
    return json.loads(state_object.inputs["content"])


def test_plan_with_a_re_keyed_ca_of_the_same_cn(tmp_path: Path) -> None:
    old, new = ca(CN), ca(CN)
    files = write_cas(tmp_path, old, new)
    state = planned_state(tmp_path, files)
    mappings = state["authentication"]["clientCertificateMapping"]["manyToOneMappings"]
    assert names(mappings) == [f"Agents - {CN}"]
    issuers = {e["thumbprint"] for e in state["trustStores"] if e["store"] == "ClientAuthIssuer"}
    assert issuers == {LoadedCertificate(f, c).thumbprint for f, c in zip(files, (old, new))}, "both CAs are trusted"


def test_plan_with_two_cas_of_one_cn_and_two_organizations(tmp_path: Path) -> None:
    files = write_cas(tmp_path, ca(CN, "Example Ltd"), ca(CN, "Example Inc"))
    state = planned_state(tmp_path, files, issuerRuleMatchOrganization="true", denyMappingRules=["Subject.OU=Contractors"])
    mappings = state["authentication"]["clientCertificateMapping"]["manyToOneMappings"]
    assert [m["permissionMode"] for m in mappings] == ["Deny", "Deny", "Allow", "Allow"]
    assert_valid_names(mappings)


def test_a_clash_is_a_config_problem_and_plan_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import plan

    upper = ca("Devices CA")
    suffix = thumbprint_suffix(LoadedCertificate("x.pem", upper).thumbprint)
    files = write_cas(tmp_path, upper, ca("devices ca"), ca(f"Devices CA{suffix}"))
    raw = {"clientCaCertificates": json.dumps(files), "crlUrls": json.dumps([CRL])}
    with pytest.raises(ConfigInvalid) as raised:
        prepare(raw, "dev", "us-east-1", base=tmp_path)
    (issue,) = raised.value.issues
    assert issue.key == "clientCaCertificates" and issue.value in files and "would name two mappings" in issue.expected

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    source = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
    source = source.replace("    - stacks/certs/dev-devices-ca.pem\n", "".join(f"    - {f}\n" for f in files))
    source = source.replace("stacks/certs/dev-sample-device.pem", '""')
    (stacks / "Pulumi.clash.yaml").write_text(source + f"  flexnet-beacon:crlUrls:\n    - {CRL}\n")
    monkeypatch.setattr(plan, "STACKS", stacks)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    code = plan.main(["--stack", "clash", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "would name two mappings (issuing CA CN 'Devices CA" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
