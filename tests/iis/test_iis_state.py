"""IIS desired state: trust classification, mappings, HTTP.sys flags; golden for dev and prod."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from honest_runs import rewrite_golden
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.config import ConfigInvalid, load
from components.iis.appcmd import render as render_appcmd
from components.iis.state import IIS_FEATURES
from components.stack import prepare
from components.certs.trust import LoadedCertificate, classify
from conftest import ROOT, stack_raw

GOLDEN = ROOT / "tests" / "golden"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(cn: str, issuer_cn: str | None = None, issuer_key=None, ca: bool = True):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn or cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key or key, hashes.SHA256()), key


def write(path: Path, *certs: x509.Certificate, der: bool = False) -> str:
    if der:
        path.write_bytes(certs[0].public_bytes(serialization.Encoding.DER))
    else:
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path.name


def state_for(tmp_path: Path, files: list[str], **overrides: str):
    raw = {"clientCaCertificates": json.dumps(files), "crlUrls": '["http://crl.example.com/devices.crl"]', **overrides}
    return prepare(raw, "dev", "us-east-1", base=tmp_path)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_golden_desired_state(stack: str) -> None:
    raw, region = stack_raw(stack)
    state = prepare(raw, stack, region).iis_state
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / f"iis-state-{stack}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        rewrite_golden(golden, text)
    assert text == golden.read_text(), f"desired state changed: review, then UPDATE_GOLDEN=1 pytest {__file__}"


def test_defaults_many_to_one_issuer_cn(tmp_path: Path) -> None:
    root, _ = make_cert("Contoso Devices CA")
    state = state_for(tmp_path, [write(tmp_path / "ca.pem", root)]).iis_state
    mapping = state["authentication"]["clientCertificateMapping"]
    assert mapping["enabled"] and mapping["manyToOneCertificateMappingsEnabled"]
    assert not mapping["oneToOneCertificateMappingsEnabled"]
    (allow,) = mapping["manyToOneMappings"]
    assert allow["permissionMode"] == "Allow"
    assert allow["rules"] == [
        {"certificateField": "Issuer", "certificateSubField": "CN", "matchCriteria": "Contoso Devices CA", "compareCaseSensitive": True}
    ]
    assert state["access"]["sslFlags"] == "Ssl,SslNegotiateCert,SslRequireCert"
    assert state["authentication"]["anonymousEnabled"] is False
    assert state["site"]["locations"] == ["Default Web Site", "Default Web Site/ManageSoftDL", "Default Web Site/ManageSoftRL"]
    assert state["httpSys"]["clientCertNegotiation"] is True
    assert state["httpSys"]["verifyClientCertRevocation"] is True
    assert state["httpSys"]["sslCtlStoreName"] == "ClientAuthIssuer"
    assert state["schannel"]["clientAuthTrustMode"] == 2
    assert state["requestFiltering"]["allowExtensions"] == [".osd", ".npl", ".nds", ".ini"]
    assert "Web-Cert-Auth" in IIS_FEATURES and "Web-Client-Auth" not in IIS_FEATURES
    assert state["features"]["remove"] == ["Web-DAV-Publishing"]
    assert state["mappedAccount"] == {"type": "local", "name": "FlexNetAgent", "domain": None, "passwordSecretArn": None}
    # A self-signed issuing CA is both a root and the client-auth issuer.
    assert [(e["store"], e["subject"]) for e in state["trustStores"]] == [("Root", "CN=Contoso Devices CA"), ("ClientAuthIssuer", "CN=Contoso Devices CA")]


def test_chain_classification_and_extra_and_deny_rules(tmp_path: Path) -> None:
    root, root_key = make_cert("Root CA")
    issuing, _ = make_cert("Issuing CA", "Root CA", root_key)
    files = [write(tmp_path / "chain.pem", issuing), write(tmp_path / "root.der", root, der=True)]
    state = state_for(
        tmp_path,
        files,
        extraMappingRules='["Subject.O=Contoso", "Subject.OU~=laptop*"]',
        denyMappingRules='["Subject.OU=Contractors"]',
    ).iis_state
    stores = {(e["store"], e["subject"]) for e in state["trustStores"]}
    assert stores == {("Root", "CN=Root CA"), ("CA", "CN=Issuing CA"), ("ClientAuthIssuer", "CN=Issuing CA")}
    deny, allow = state["authentication"]["clientCertificateMapping"]["manyToOneMappings"]
    assert deny["permissionMode"] == "Deny"  # first: IIS uses the first mapping that matches
    assert [r["matchCriteria"] for r in deny["rules"]] == ["Issuing CA", "Contractors"]
    assert allow["permissionMode"] == "Allow"
    assert allow["rules"][0]["matchCriteria"] == "Issuing CA"
    assert allow["rules"][1] == {"certificateField": "Subject", "certificateSubField": "O", "matchCriteria": "Contoso", "compareCaseSensitive": True}
    assert allow["rules"][2]["compareCaseSensitive"] is False


def test_two_issuing_cas_get_one_allow_mapping_each(tmp_path: Path) -> None:
    a, _ = make_cert("Laptops CA")
    b, _ = make_cert("Servers CA")
    state = state_for(tmp_path, [write(tmp_path / "a.pem", a, b)]).iis_state
    allows = [m for m in state["authentication"]["clientCertificateMapping"]["manyToOneMappings"] if m["permissionMode"] == "Allow"]
    assert sorted(m["rules"][0]["matchCriteria"] for m in allows) == ["Laptops CA", "Servers CA"]
    assert len({m["name"] for m in allows}) == 2


def test_exclusive_trust_off_and_revocation_off(tmp_path: Path) -> None:
    root, _ = make_cert("CA")
    state = state_for(
        tmp_path, [write(tmp_path / "ca.pem", root)], exclusiveClientTrust="false", revocationChecking="false", clientAuthTrustMode="0"
    ).iis_state
    assert state["httpSys"]["sslCtlStoreName"] is None
    assert state["httpSys"]["verifyClientCertRevocation"] is False
    assert state["schannel"]["clientAuthTrustMode"] == 0
    assert {e["store"] for e in state["trustStores"]} == {"Root"}


def test_one_to_one(tmp_path: Path) -> None:
    root, root_key = make_cert("CA")
    device, _ = make_cert("laptop-1", "CA", root_key, ca=False)
    state = state_for(
        tmp_path,
        [write(tmp_path / "ca.pem", root)],
        mappingMode="one-to-one",
        oneToOneCertificates=json.dumps([write(tmp_path / "laptop-1.pem", device)]),
    ).iis_state
    mapping = state["authentication"]["clientCertificateMapping"]
    assert mapping["oneToOneCertificateMappingsEnabled"] and not mapping["manyToOneCertificateMappingsEnabled"]
    assert mapping["manyToOneMappings"] == []
    (entry,) = mapping["oneToOneMappings"]
    assert entry["subject"] == "CN=laptop-1"
    assert "BEGIN" not in entry["certificate"] and "\n" not in entry["certificate"]


@pytest.mark.parametrize(
    "setup,expected",
    [
        ("missing", "a readable certificate file"),
        ("garbage", "a PEM (one or more certificates) or DER certificate file"),
        ("device", "has no basicConstraints CA=true"),
        ("broken-chain", "is missing"),
        ("private-key", "contains a private key"),
        ("none", "at least one CA certificate file"),
    ],
)
def test_bad_trust_material(tmp_path: Path, setup: str, expected: str) -> None:
    files: list[str] = []
    if setup == "garbage":
        (tmp_path / "x.pem").write_text("not a certificate")
        files = ["x.pem"]
    elif setup == "missing":
        files = ["nope.pem"]
    elif setup == "device":
        device, _ = make_cert("laptop", ca=False)
        files = [write(tmp_path / "d.pem", device)]
    elif setup == "broken-chain":
        _, root_key = make_cert("Root")
        issuing, _ = make_cert("Issuing", "Root", root_key)
        files = [write(tmp_path / "i.pem", issuing)]
    elif setup == "private-key":
        ca, key = make_cert("CA")
        pem = ca.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (tmp_path / "k.pem").write_bytes(pem)
        files = ["k.pem"]
    with pytest.raises(ConfigInvalid) as raised:
        state_for(tmp_path, files)
    assert any(expected in str(issue) and issue.key == "clientCaCertificates" for issue in raised.value.issues), raised.value.render()


def test_classify_deduplicates_by_thumbprint() -> None:
    root, _ = make_cert("CA")
    twice = [LoadedCertificate("a.pem", root), LoadedCertificate("b.pem", root)]
    trust, issues = classify(twice)
    assert not issues and trust is not None and len(trust.roots) == 1


def test_appcmd_mirrors_the_state_and_quarantines_hostile_values(tmp_path: Path) -> None:
    root, _ = make_cert('Evil" & calc.exe & "CA')
    state = state_for(tmp_path, [write(tmp_path / "ca.pem", root)], extraMappingRules='["Subject.O=A\'B%PATH%"]').iis_state
    text = render_appcmd(state)
    assert "calc.exe" not in text and "%PATH%" not in text
    assert "<match criteria>" in text and "REM NOTE" in text
    assert "/commit:apphost" in text and "clientcertnegotiation=enable" in text
    assert text.count('/+"manyToOneMappings.[name=') == 1 + 2  # one mapping, two rules
    assert text.count('/-"manyToOneMappings.[name=') == 1  # removed by its key before it is added
    assert "password='<ACCOUNT PASSWORD>'" in text


def test_desired_state_has_no_secrets(tmp_path: Path) -> None:
    raw, region = stack_raw("prod")
    state = prepare(raw, "prod", region).iis_state
    text = json.dumps(state)
    assert "PRIVATE KEY" not in text
    assert "password\"" not in text.lower().replace("passwordsecretarn", "")
    assert state["serverCertificate"]["pfxSecretArn"].startswith("arn:aws:secretsmanager:us-east-1:")
    assert load(raw, "prod", region).server_certificate_secret_arn == state["serverCertificate"]["pfxSecretArn"]


def test_mapping_names_are_safe_keys(tmp_path: Path) -> None:
    root, _ = make_cert("O'Brien [Devices] CA")
    state = state_for(tmp_path, [write(tmp_path / "ca.pem", root)], denyMappingRules='["Subject.OU=X"]').iis_state
    names = [m["name"] for m in state["authentication"]["clientCertificateMapping"]["manyToOneMappings"]]
    assert names == ["Deny 1 - OBrien Devices CA", "Agents - OBrien Devices CA"]
    # The rule still matches the CA's real CN.
    assert state["authentication"]["clientCertificateMapping"]["manyToOneMappings"][1]["rules"][0]["matchCriteria"] == "O'Brien [Devices] CA"


def test_issuer_rule_can_also_match_the_organization(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso Ltd"), x509.NameAttribute(NameOID.COMMON_NAME, "Contoso CA")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(7)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256())
    )
    files = [write(tmp_path / "ca.pem", ca)]
    plain = state_for(tmp_path, files).iis_state["authentication"]["clientCertificateMapping"]["manyToOneMappings"][0]["rules"]
    with_o = state_for(tmp_path, files, issuerRuleMatchOrganization="true").iis_state["authentication"]["clientCertificateMapping"]["manyToOneMappings"][0]["rules"]
    assert [(r["certificateField"], r["certificateSubField"]) for r in plain] == [("Issuer", "CN")]
    assert [(r["certificateField"], r["certificateSubField"], r["matchCriteria"]) for r in with_o] == [
        ("Issuer", "CN", "Contoso CA"),
        ("Issuer", "O", "Contoso Ltd"),
    ]
