"""The server CA (`init-ca --server-domain`, `init-server-ca`), `issue-server` under it, its CRL,
encrypted CA keys (`--encrypt-key`, PKI_CA_PASSWORD) and the trust a kit installs.

Handshakes under the constrained root are in tests/tls/test_constrained_trust.py.
"""

from __future__ import annotations

import base64
import json
import stat
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki_cli import fails, ok, pki
from scripts.pki.keycrypt import KDF_ROUNDS

DOMAIN = "beacons.example.test"
CA_PASSWORD = secrets.token_urlsafe(18)  # made per run: no literal password in the repository
KIT_PASSWORD = secrets.token_urlsafe(18)
WRONG_SECRET = "w" * 15 + "!"
SHORT_SECRET = "s" * 11  # one under the 12-character minimum


def refused(directory: Path, *args: str, expect: str, **kw: Any) -> str:
    """Exit 2, no traceback, one error line containing `expect` (notes before it allowed)."""
    code, out, err = pki(directory, *args, **kw)
    assert code == 2 and "Traceback" not in err, (code, out, err)
    errors = [line for line in err.splitlines() if line.startswith("pki: error: ")]
    assert len(errors) == 1 and expect in errors[0], err
    return errors[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def crl_serials(path: Path) -> set[int]:
    return {r.serial_number for r in x509.load_pem_x509_crl(path.read_bytes())}


def init(d: Path, *extra: str, env: dict[str, str | None] | None = None) -> str:
    return ok(d, "init-ca", "--cn", "Srv Devices CA", "--o", "Example Corp", "--crl-url", "http://crl.example.test/devices.crl", *extra, env=env)


def test_init_ca_with_server_domain_makes_a_separate_constrained_root(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    out = init(d, "--server-domain", "Beacons.Example.Test", "--server-domain", "second.example.test")
    assert "constrained to beacons.example.test, second.example.test" in out
    device, server = cert(d / "ca.pem"), cert(d / "server-ca.pem")
    assert device.subject != server.subject and device.public_key() != server.public_key()
    assert server.issuer == server.subject  # a root of its own
    # The device CA stays unconstrained (the beacons trust it; OpenSSL would check FQDN-like CNs).
    with pytest.raises(x509.ExtensionNotFound):
        device.extensions.get_extension_for_class(x509.NameConstraints)
    nc = server.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical and nc.value.permitted_subtrees == [x509.DNSName(DOMAIN), x509.DNSName("second.example.test")]
    assert {str(n.value) for n in nc.value.excluded_subtrees} == {"0.0.0.0/0", "::/0"}
    usage = server.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign and not usage.value.digital_signature
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert mode(d / "private" / "server-ca.key") == 0o600
    index = json.loads((d / "index.json").read_text())
    assert index["ca"]["serverDomains"] == [DOMAIN, "second.example.test"]
    assert index["ca"]["serverCrlUrls"] == ["http://crl.example.test/server-devices.crl"]  # derived beside the device CRL
    assert index["authorities"]["server"]["kind"] == "server-ca"
    assert (d / "server-crl.pem").is_file() and cert(d / "server-ca.pem").subject == x509.load_pem_x509_crl((d / "server-crl.pem").read_bytes()).issuer


@pytest.mark.parametrize(("domain", "expect"), [
    ("*.example.test", "a wildcard is not a domain"),
    ("localhost", "at least two labels"),
    ("10.0.0.1", "an IP address is not a domain"),
    (".example.test", "at least two labels"),
    ("bad_label.example.test", "at least two labels"),
])
def test_server_domains_are_checked_before_anything_is_made(tmp_path: Path, domain: str, expect: str) -> None:
    d = tmp_path / "pki"
    line = fails(d, "init-ca", "--cn", "X CA", "--crl-url", "http://crl.example.test/x.crl", "--server-domain", domain, expect=expect)
    assert repr(domain) in line and "--server-domain" in line
    assert not (d / "ca.pem").exists() and not (d / "server-ca.pem").exists()


def test_issue_server_under_the_server_ca(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    init(d, "--server-domain", DOMAIN)
    ok(d, "issue-server", "--dns", f"b1.{DOMAIN}", "--dns", f"*.{DOMAIN}", "--dns", DOMAIN)
    leaf = cert(d / "issued" / f"b1.{DOMAIN}.pem")
    assert leaf.issuer == cert(d / "server-ca.pem").subject
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [p.full_name[0].value for p in cdp] == ["http://crl.example.test/server-devices.crl"]
    assert json.loads((d / "index.json").read_text())["certificates"][f"b1.{DOMAIN}"]["ca"] == "server"
    # Refused, naming the value and the domains; nothing issued.
    line = fails(d, "issue-server", "--dns", f"b2.{DOMAIN}", "--dns", "b2.other.test", expect="--dns b2.other.test")
    assert DOMAIN in line
    fails(d, "issue-server", "--dns", "*.example.test", expect="--dns *.example.test: outside the server CA's domains")
    fails(d, "issue-server", "--dns", f"evil{DOMAIN}", expect="outside")  # a suffix is not a subdomain
    line = fails(d, "issue-server", "--dns", f"b3.{DOMAIN}", "--ip", "10.0.0.1", expect="--ip 10.0.0.1")
    assert DOMAIN in line
    assert sorted(p.name for p in (d / "issued").iterdir()) == [f"b1.{DOMAIN}.pem"]
    # The beacon's PFX carries the server CA, not the device chain.
    ok(d, "export-pfx", f"b1.{DOMAIN}", env={"PKI_PASSWORD": KIT_PASSWORD})
    _, _, extra = pkcs12.load_key_and_certificates((d / "pfx" / f"b1.{DOMAIN}.pfx").read_bytes(), KIT_PASSWORD.encode())
    assert extra == [cert(d / "server-ca.pem")]


def test_without_a_server_ca_issue_server_is_unchanged(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    init(d)
    ok(d, "issue-server", "--dns", "localhost", "--ip", "127.0.0.1")
    assert cert(d / "issued" / "localhost.pem").issuer == cert(d / "ca.pem").subject
    assert not (d / "server-ca.pem").exists() and not (d / "server-crl.pem").exists()


def test_init_server_ca_on_an_existing_pki_and_the_crls_split(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    init(d, "--intermediate")
    ok(d, "issue-server", "--dns", f"old.{DOMAIN}")  # signed by the device CA, before the server CA existed
    ok(d, "issue-client", "--cn", "dev-1", "--o", "Example Corp")
    fails(d, "init-server-ca", "--server-domain", DOMAIN, "--cn", "Srv Devices CA", expect="--server-cn: 'Srv Devices CA' is the name of another CA")
    assert not (d / "server-ca.pem").exists()
    out = ok(d, "init-server-ca", "--server-domain", DOMAIN, "--crl-url", "http://crl.example.test/beacons.crl")
    assert "created server CA 'Srv Devices CA Beacon Servers'" in out
    assert cert(d / "server-ca.pem").subject.rfc4514_string() == "CN=Srv Devices CA Beacon Servers,O=Example Corp"
    fails(d, "init-server-ca", "--server-domain", DOMAIN, expect="a server CA already exists")
    fails(d, "issue-client", "--cn", "Server-CA", expect="is reserved")  # private/server-ca.key is the CA's
    ok(d, "issue-server", "--dns", f"new.{DOMAIN}")
    for name in (f"old.{DOMAIN}", f"new.{DOMAIN}", "dev-1"):
        ok(d, "revoke", name)
    ok(d, "crl")
    serial = lambda name: cert(d / "issued" / f"{name}.pem").serial_number  # noqa: E731
    assert crl_serials(d / "crl.pem") == {serial(f"old.{DOMAIN}"), serial("dev-1")}  # what the issuing CA signed
    assert crl_serials(d / "server-crl.pem") == {serial(f"new.{DOMAIN}")}  # what the server CA signed
    server_crl = x509.load_pem_x509_crl((d / "server-crl.pem").read_bytes())
    assert server_crl.is_signature_valid(cert(d / "server-ca.pem").public_key())  # type: ignore[arg-type]
    server_serial = json.loads((d / "index.json").read_text())["authorities"]["server"]["serial"]
    fails(d, "revoke", "--serial", server_serial, expect="is the server CA (a root): it cannot be revoked")


def test_encrypted_ca_keys_round_trip_and_refusals(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    fails(d, "init-ca", "--cn", "Enc CA", "--crl-url", "http://crl.example.test/e.crl", "--encrypt-key", env={"PKI_CA_PASSWORD": None},
          expect="--encrypt-key: set PKI_CA_PASSWORD")
    fails(d, "init-ca", "--cn", "Enc CA", "--crl-url", "http://crl.example.test/e.crl", "--encrypt-key", env={"PKI_CA_PASSWORD": SHORT_SECRET},
          expect="PKI_CA_PASSWORD: 11 characters; expected at least 12")
    assert not (d / "ca.pem").exists()
    env = {"PKI_CA_PASSWORD": CA_PASSWORD}
    # (root.key, with --intermediate, goes through the same write; PBKDF2 makes every key cost time here)
    out = ok(d, "init-ca", "--cn", "Enc CA", "--crl-url", "http://crl.example.test/e.crl", "--server-domain", DOMAIN, "--encrypt-key", env=env)
    assert "ca.key and private/server-ca.key encrypted" in out and "NOT encrypted" not in out
    for key in (d / "ca.key", d / "private" / "server-ca.key"):
        text = key.read_bytes()
        assert text.startswith((b"-----BEGIN ENCRYPTED " + b"PRIVATE KEY-----")) and mode(key) == 0o600
        assert CA_PASSWORD.encode() not in text
    # The real tool reads it with the password (PBES2, PBKDF2 with KDF_ROUNDS iterations), and not without.
    parsed = subprocess.run(["openssl", "asn1parse", "-in", str(d / "ca.key")], capture_output=True, text=True, check=True).stdout
    assert "PBES2" in parsed and "PBKDF2" in parsed and "hmacWithSHA256" in parsed and "aes-256-cbc" in parsed
    rounds = f"{KDF_ROUNDS:X}"
    assert ":" + "0" * (len(rounds) % 2) + rounds in parsed.replace(" ", "")  # asn1parse prints whole bytes
    good = subprocess.run(["openssl", "pkey", "-in", str(d / "ca.key"), "-passin", f"pass:{CA_PASSWORD}", "-pubout"], capture_output=True, text=True)
    assert good.returncode == 0 and "PUBLIC KEY" in good.stdout
    bad = subprocess.run(["openssl", "pkey", "-in", str(d / "ca.key"), "-passin", f"pass:{WRONG_SECRET}", "-pubout"], capture_output=True, text=True)
    assert bad.returncode != 0
    # Every signing verb needs the password: missing or wrong is one line, exit 2, nothing issued.
    for verb in (("issue-client", "--cn", "dev-1"), ("issue-server", "--dns", f"b1.{DOMAIN}"), ("crl",)):
        fails(d, *verb, env={"PKI_CA_PASSWORD": None}, expect="is encrypted: set PKI_CA_PASSWORD to its password")
    fails(d, "issue-client", "--cn", "dev-1", env={"PKI_CA_PASSWORD": WRONG_SECRET}, expect="ca.key: PKI_CA_PASSWORD does not decrypt it")
    fails(d, "issue-server", "--dns", f"b1.{DOMAIN}", env={"PKI_CA_PASSWORD": WRONG_SECRET}, expect="server-ca.key: PKI_CA_PASSWORD does not decrypt it")
    assert not (d / "issued").exists() or not any((d / "issued").iterdir())
    ok(d, "issue-client", "--cn", "dev-1", env=env)
    ok(d, "issue-server", "--dns", f"b1.{DOMAIN}", env=env)
    ok(d, "revoke", "dev-1")  # marks the index only: no key needed
    ok(d, "crl", env=env)
    assert cert(d / "issued" / "dev-1.pem").serial_number in crl_serials(d / "crl.pem")
    ok(d, "list")  # reading needs no password
    # Issued keys stay plain PKCS#8 (they go into PFX files and kits).
    assert (d / "private" / "dev-1.key").read_bytes().startswith((b"-----BEGIN " + b"PRIVATE KEY-----"))


def test_init_server_ca_follows_an_encrypted_device_ca(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    env = {"PKI_CA_PASSWORD": CA_PASSWORD}
    init(d, "--encrypt-key", env=env)
    refused(d, "init-server-ca", "--server-domain", DOMAIN, env={"PKI_CA_PASSWORD": None}, expect="set PKI_CA_PASSWORD")
    assert not (d / "server-ca.pem").exists() and not (d / "private" / "server-ca.key").exists()
    code, _, err = pki(d, "init-server-ca", "--server-domain", DOMAIN, env=env)
    assert code == 0 and "server-ca.key will be too" in err
    assert (d / "private" / "server-ca.key").read_bytes().startswith((b"-----BEGIN ENCRYPTED " + b"PRIVATE KEY-----"))


def _kit_cas(d: Path, device: str) -> list[dict[str, str]]:
    return json.loads((d / "bundles" / device / "windows" / "install.json").read_text())["caCertificates"]


def test_kits_install_only_the_constrained_server_root(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    init(d, "--intermediate", "--server-domain", DOMAIN)
    ok(d, "issue-server", "--dns", f"b1.{DOMAIN}")
    ok(d, "issue-client", "--cn", "dev-1", "--o", "Example Corp")
    env = {"PKI_PASSWORD": KIT_PASSWORD}
    ok(d, "bundle", "dev-1", "--beacon-host", f"b1.{DOMAIN}", env=env)
    server, issuing, root = cert(d / "server-ca.pem"), cert(d / "ca.pem"), cert(d / "root.pem")
    windows = d / "bundles" / "dev-1" / "windows"
    stored = [(e["store"], x509.load_der_x509_certificate((windows / e["file"]).read_bytes())) for e in _kit_cas(d, "dev-1")]
    # Root: the server CA only (the device root is never trusted); CA: the device intermediate, so
    # that the device can send its chain, and the device root for building it (CA confers no trust).
    assert sorted(stored, key=lambda item: (item[0], item[1].subject.rfc4514_string())) == sorted(
        [("CA", issuing), ("CA", root), ("Root", server)], key=lambda item: (item[0], item[1].subject.rfc4514_string()))
    assert ("Root", root) not in stored
    assert sorted(p.name for p in windows.glob("*.cer") if p.name != "kit-signer.cer") == ["device-root-1.cer", "intermediate-1.cer", "root-1.cer"]
    # A root without name constraints is refused, as is a server certificate of the device CA.
    refused(d, "bundle", "dev-1", "--force", "--beacon-host", f"b1.{DOMAIN}", "--server-ca", str(d / "root.pem"), env=env,
          expect="has no permitted dNSName name constraints")
    refused(d, "bundle", "dev-1", "--force", "--beacon-host", "b1.other.test", "--server-ca", str(d / "server-ca.pem"), env=env,
          expect="which does not cover the beacon(s) b1.other.test")
    refused(d, "bundle", "dev-1", "--force", "--beacon-host", f"b1.{DOMAIN}", "--server-ca", str(d / "server-ca.pem"),
          "--server-trust", "preinstalled", env=env, expect="exclude each other")
    # preinstalled: the devices already trust the beacons' CA; the kit installs no root at all.
    ok(d, "bundle", "dev-1", "--force", "--beacon-host", "b1.other.test", "--server-trust", "preinstalled", env=env)
    assert sorted(e["store"] for e in _kit_cas(d, "dev-1")) == ["CA", "CA"]  # the device intermediate and root, for the chain only


def test_an_old_pki_must_make_a_server_ca_before_bundling(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    init(d)
    ok(d, "issue-server", "--dns", "b1.example.test")  # the device CA signs it: no constraints
    ok(d, "issue-client", "--cn", "dev-1")
    env = {"PKI_PASSWORD": KIT_PASSWORD}
    line = refused(d, "bundle", "dev-1", "--beacon-host", "b1.example.test", env=env, expect="was signed by the device CA, which has no name constraints")
    assert "init-server-ca" in line and "--server-trust preinstalled" in line
    ok(d, "init-server-ca", "--server-domain", "example.test")
    ok(d, "issue-server", "--dns", "b1.example.test", "--name", "b1-2")
    ok(d, "bundle", "dev-1", "--beacon-host", "b1.example.test", env=env)
    assert [(e["store"], e["thumbprint"]) for e in _kit_cas(d, "dev-1") if e["store"] == "Root"] == [
        ("Root", json.loads((d / "index.json").read_text())["authorities"]["server"]["sha1"])]


def test_journal_recovery_keeps_a_server_certificate_on_the_server_crl(tmp_path: Path) -> None:
    """A beacon certificate journaled by a command killed before index.json was written: the next
    command records it as the server CA's, so that revoking it lists it on server-crl.pem."""
    d = tmp_path / "pki"
    init(d, "--server-domain", DOMAIN)
    ok(d, "issue-server", "--dns", f"b1.{DOMAIN}")
    index = json.loads((d / "index.json").read_text())
    entry = index["certificates"].pop(f"b1.{DOMAIN}")
    assert entry["ca"] == "server"
    (d / "index.json").write_text(json.dumps(index))  # as if the command died before its index write
    der = cert(d / "issued" / f"b1.{DOMAIN}.pem").public_bytes(Encoding.DER)
    record = {"name": f"b1.{DOMAIN}", "kind": "server", "source": "key", "der": base64.b64encode(der).decode()}
    (d / "issuing.journal").write_text(json.dumps(record) + "\n")
    code, _, err = pki(d, "revoke", f"b1.{DOMAIN}")
    assert code == 0 and "recovered the issuing journal" in err
    assert json.loads((d / "index.json").read_text())["certificates"][f"b1.{DOMAIN}"]["ca"] == "server"
    ok(d, "crl")
    assert crl_serials(d / "server-crl.pem") == {cert(d / "issued" / f"b1.{DOMAIN}.pem").serial_number}
    assert crl_serials(d / "crl.pem") == set()


def test_a_unix_kit_with_preinstalled_server_trust_has_no_cert_pem(tmp_path: Path) -> None:
    """An empty cert.pem would replace the agent's SSLCACertificateFile with nothing: the kit leaves it out and says so."""
    d = tmp_path / "pki"
    init(d, "--server-domain", DOMAIN)
    ok(d, "issue-client", "--cn", "dev-1", "--o", "Example Corp")
    env = {"PKI_PASSWORD": KIT_PASSWORD}
    ok(d, "bundle", "dev-1", "--platform", "unix", "--beacon-host", f"b1.{DOMAIN}", "--server-trust", "preinstalled", env=env)
    unix = d / "bundles" / "dev-1" / "unix"
    assert not (unix / "cert.pem").exists()
    assert "keep /var/opt/managesoft/etc/ssl/cert.pem as it is" in (unix / "INSTALL.txt").read_text()
