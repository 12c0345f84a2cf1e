"""CRL egress derived from the certificates, and the optional lab CRL hosting."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from components.config import ConfigInvalid
from components.certs.hosting import crl_read_policy
from components.stack import prepare
from components.certs.trust import LoadedCertificate, classify, crl_egress, crl_hosting_base_url, device_crl_known
from conftest import Planned, plan_stack

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def cert(cn: str, issuer: tuple[str, object] | None = None, ca: bool = True, cdp: list[str] = (), aia: list[str] = ()):
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_cn, issuer_key = issuer or (cn, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if cdp:
        builder = builder.add_extension(
            x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier(u) for u in cdp], None, None, None)]), critical=False
        )
    if aia:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess([x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u)) for u in aia]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def loaded(c: x509.Certificate, source: str = "x.pem") -> LoadedCertificate:
    return LoadedCertificate(source, c)


def test_urls_from_chain_sample_explicit_and_hosting() -> None:
    root, root_key = cert("Root")
    issuing, issuing_key = cert("Issuing", ("Root", root_key), cdp=["http://pki.example.com/root.crl", "ldap:///CN=Root?certificateRevocationList"])
    device, _ = cert(
        "laptop", ("Issuing", issuing_key), ca=False,
        cdp=["http://crl.example.com:8080/issuing.crl", "http://10.0.0.5/issuing.crl", "http://crl_srv.example.com/x.crl", "http://a\"b.example.com/x.crl"],
        aia=["https://pki.example.com/issuing.cer"],
    )
    trust, issues = classify([loaded(root), loaded(issuing)])
    assert not issues and trust
    egress = crl_egress(trust, loaded(device), ["http://extra.example.org/x.crl"], "http://bucket.s3.us-east-1.amazonaws.com/")
    assert egress.urls == (
        "http://bucket.s3.us-east-1.amazonaws.com/",
        "http://crl.example.com:8080/issuing.crl",
        "http://extra.example.org/x.crl",
        "http://pki.example.com/root.crl",
        "https://pki.example.com/issuing.cer",
    )
    assert egress.hosts == ("bucket.s3.us-east-1.amazonaws.com", "crl.example.com", "extra.example.org", "pki.example.com")
    assert egress.ports == (80, 443, 8080)
    assert egress.sources["http://pki.example.com/root.crl"] == ["CDP of CN=Issuing"]
    assert egress.sources["http://extra.example.org/x.crl"] == ["crlUrls"]
    assert any(i.startswith("ldap:///") for i in egress.ignored)
    assert any("10.0.0.5" in i and "DNS name" in i for i in egress.ignored)
    assert any("crl_srv.example.com" in i and "cannot be allowlisted" in i for i in egress.ignored)
    assert len(egress.ignored) == 4
    assert device_crl_known(egress)
    assert json.loads(json.dumps(egress.as_output()))["ports"] == [80, 443, 8080]


def test_root_crl_alone_does_not_cover_devices() -> None:
    root, root_key = cert("Root")
    issuing, _ = cert("Issuing", ("Root", root_key), cdp=["http://pki.example.com/root.crl"])
    trust, _ = classify([loaded(root), loaded(issuing)])
    egress = crl_egress(trust, None, [])
    assert egress.urls == ("http://pki.example.com/root.crl",)
    assert not device_crl_known(egress)


def _write(tmp_path: Path, name: str, c: x509.Certificate) -> str:
    (tmp_path / name).write_bytes(c.public_bytes(serialization.Encoding.PEM))
    return name


def test_revocation_on_without_any_device_crl_stops_with_403_13(tmp_path: Path) -> None:
    ca, _ = cert("Devices CA")
    raw = {"clientCaCertificates": json.dumps([_write(tmp_path, "ca.pem", ca)])}
    with pytest.raises(ConfigInvalid) as raised:
        prepare(raw, "dev", "us-east-1", base=tmp_path)
    (issue,) = raised.value.issues
    assert issue.key == "crlUrls" and "403.13" in issue.expected
    # Revocation checking off: no CRL needed.
    assert prepare({**raw, "revocationChecking": "false"}, "dev", "us-east-1", base=tmp_path).crl.urls == ()
    # A sample device certificate's CDP is enough, and lands in the state and the firewall group.
    ca2, ca_key = cert("Devices CA 2")
    device, _ = cert("laptop", ("Devices CA 2", ca_key), ca=False, cdp=["http://crl.contoso.example/devices.crl"])
    prepared = prepare(
        {"clientCaCertificates": json.dumps([_write(tmp_path, "ca2.pem", ca2)]), "sampleDeviceCertificate": _write(tmp_path, "d.pem", device)},
        "dev", "us-east-1", base=tmp_path,
    )
    assert prepared.crl.hosts == ("crl.contoso.example",)
    assert prepared.iis_state["crlUrls"] == ["http://crl.contoso.example/devices.crl"]
    # crlHosting s3 is enough as well.
    hosted = prepare({**raw, "crlHosting": "s3", "crlBucketName": "contoso-crl"}, "dev", "eu-west-1", base=tmp_path)
    assert hosted.crl.urls == ("http://contoso-crl.s3.eu-west-1.amazonaws.com/",)


def test_missing_sample_certificate_names_its_key(tmp_path: Path) -> None:
    ca, _ = cert("CA")
    raw = {"clientCaCertificates": json.dumps([_write(tmp_path, "ca.pem", ca)]), "sampleDeviceCertificate": "nope.pem", "crlUrls": '["http://c.example.com/a.crl"]'}
    with pytest.raises(ConfigInvalid) as raised:
        prepare(raw, "dev", "us-east-1", base=tmp_path)
    assert [i.key for i in raised.value.issues] == ["sampleDeviceCertificate"]


@pytest.mark.parametrize("case", ["another CA", "same name, another key"])
def test_a_sample_of_another_ca_is_a_config_error_naming_both(tmp_path: Path, case: str) -> None:
    """operations.md's lab swap: a new CA file with the old sample would open the old CA's CRL host."""
    ca, ca_key = cert("Devices CA")
    other, other_key = cert("Old Lab CA" if case == "another CA" else "Devices CA")
    sample, _ = cert("laptop", ("Old Lab CA" if case == "another CA" else "Devices CA", other_key), ca=False, cdp=["http://crl.old-lab.example/x.crl"])
    raw = {"clientCaCertificates": json.dumps([_write(tmp_path, "ca.pem", ca)]), "sampleDeviceCertificate": _write(tmp_path, "sample.pem", sample),
           "crlUrls": '["http://c.example.com/a.crl"]'}
    with pytest.raises(ConfigInvalid) as raised:
        prepare(raw, "dev", "us-east-1", base=tmp_path)
    (issue,) = raised.value.issues
    assert issue.key == "sampleDeviceCertificate" and "'CN=Devices CA'" in issue.expected
    assert ("Old Lab CA" if case == "another CA" else "CN=Devices CA") in issue.expected
    # The sample of the configured CA is accepted.
    good, _ = cert("laptop", ("Devices CA", ca_key), ca=False, cdp=["http://crl.example.com/x.crl"])
    assert prepare({**raw, "sampleDeviceCertificate": _write(tmp_path, "good.pem", good)}, "dev", "us-east-1", base=tmp_path).crl.hosts


def test_dev_stack_derives_crl_egress_from_its_sample(dev: Planned) -> None:
    crl = dev.outputs["crlEgress"]
    assert crl["hosts"] == ["crl.example.com", "pki.example.com"]
    assert crl["ports"] == [80]
    assert set(dev.outputs["egressAllowlist"]["crl"]) == {"crl.example.com", "pki.example.com"}
    assert any(i.startswith("ldap:") for i in crl["ignored"])


def test_crl_port_opens_security_group_and_firewall_handshake() -> None:
    p = plan_stack("dev", {"crlUrls": ["http://crl.example.net:8080/devices.crl"]})
    sg = p.one("ec2/securityGroup:SecurityGroup").inputs
    assert 8080 in {r["fromPort"] for r in sg["egress"] if r["protocol"] == "tcp"}
    rules = p.one("ruleGroup:RuleGroup", "net-nfw-egress-handshake").inputs["ruleGroup"]["rulesSource"]["rulesString"]
    assert "[80,443,8080]" in rules
    assert "crl.example.net" in p.outputs["egressAllowlist"]["crl"]


def test_lab_crl_hosting_resources() -> None:
    p = plan_stack("dev", {"crlHosting": "s3", "crlBucketName": "example-corp-beacon-crl"})
    assert p.outputs["crlHosting"] == {"bucket": "example-corp-beacon-crl", "baseUrl": "http://example-corp-beacon-crl.s3.us-east-1.amazonaws.com/"}
    block = p.one("bucketPublicAccessBlock:BucketPublicAccessBlock", "crl-public-access").inputs
    assert block["blockPublicAcls"] is True and block["ignorePublicAcls"] is True
    policy = json.loads(p.one("bucketPolicy:BucketPolicy", "crl-policy").inputs["policy"])
    (statement,) = policy["Statement"]
    assert statement["Resource"] == "arn:aws:s3:::example-corp-beacon-crl/*.crl"
    assert statement["Action"] == "s3:GetObject"
    assert p.one("bucketOwnershipControls:BucketOwnershipControls", "crl-ownership").inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    assert "example-corp-beacon-crl.s3.us-east-1.amazonaws.com" in p.outputs["egressAllowlist"]["crl"]
    assert plan_stack("dev").outputs.get("crlHosting") is None


def test_hosting_url_and_policy_partitions() -> None:
    assert crl_hosting_base_url("b", "cn-north-1") == "http://b.s3.cn-north-1.amazonaws.com.cn/"
    assert json.loads(crl_read_policy("aws-us-gov", "b"))["Statement"][0]["Resource"] == "arn:aws-us-gov:s3:::b/*.crl"
