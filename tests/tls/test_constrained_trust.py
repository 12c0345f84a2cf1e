"""Constrained trust, proven with real handshakes (OpenSSL through Python ssl) on loopback.

The devices trust only the server CA (`init-ca --server-domain beacons.test`): a root with name
constraints (permitted dNSName beacons.test, every IP address excluded). The beacon trusts the
device CA, a separate root that no device installs.

- an agent-like client trusting only the server root accepts the beacon's certificate for a name
  inside the domain, and checks its revocation on the server CA's CRL;
- certificates forged with the server CA's own key for a name outside the domain, or with an IP
  address, are refused by OpenSSL's chain verification (the name constraints hold even against
  whoever holds the server CA's key);
- the beacon accepts device certificates whose CN is a bare name or an FQDN outside the server
  domains: the device CA carries no constraints. With one constrained root for both roles, OpenSSL
  checks a CN that looks like a host name against the DNS constraints and refuses that device:
  the reason the device CA is kept apart.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .conftest import HOST, BeaconServer, Outcome, craft_leaf, pki_ok, write_identity

DOMAIN = "beacons.test"
BEACON = f"beacon1.{DOMAIN}"
REVOKED_BEACON = f"beacon3.{DOMAIN}"
BARE_CN = "LAPTOP-0042"
OUTSIDE_FQDN_CN = "laptop42.corp.example.com"  # looks like a host name, outside the server domains


def agent_client(port: int, trust: Path, server_name: str, cert: Path, key: Path, crls: tuple[Path, ...] = ()) -> Outcome:
    """A FlexNet agent stand-in: trusts only `trust` for the beacon, checks the host name (and,
    with `crls`, the beacon certificate's revocation), presents its device certificate."""
    ctx = ssl.create_default_context(cafile=str(trust))
    for crl in crls:
        ctx.load_verify_locations(cafile=str(crl))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection((HOST, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(f"GET /ManageSoftDL/ HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    except ssl.SSLCertVerificationError as exc:
        return Outcome(False, exc.verify_message or str(exc))
    except (ssl.SSLError, OSError) as exc:
        return Outcome(False, f"{type(exc).__name__}: {exc}")
    status = data.split(b"\r\n", 1)[0].decode("latin-1")
    return Outcome(status.startswith("HTTP/1.1 200") and data.endswith(b"beacon ok\n"), status)


def forge_server(issuer: x509.Certificate, issuer_key: Any, dns: Sequence[str], ips: Sequence[str] = ()) -> tuple[x509.Certificate, Any]:
    """A beacon certificate signed directly with the server CA's key, bypassing issue-server's refusal."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


def one_constrained_root() -> tuple[x509.Certificate, Any]:
    """The design not taken: a single root, constrained like the server CA, that would also
    issue the device certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "One Constrained Root")])
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(DOMAIN)],
        excluded_subtrees=[x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")), x509.IPAddress(ipaddress.ip_network("::/0"))],
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(constraints, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def empty_crl(issuer: x509.Certificate, issuer_key: Any) -> bytes:
    now = dt.datetime.now(dt.timezone.utc)
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(issuer_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


class Lab:
    def __init__(self, base: Path):
        d = self.pki = base / "pki"
        pki_ok(d, "init-ca", "--cn", "NC Devices CA", "--o", "Example Corp", "--crl-url", "http://crl.test.invalid/devices.crl", "--server-domain", DOMAIN)
        pki_ok(d, "issue-server", "--dns", BEACON)
        pki_ok(d, "issue-server", "--dns", REVOKED_BEACON)
        pki_ok(d, "revoke", REVOKED_BEACON, "--reason", "keyCompromise")
        for cn in (BARE_CN, OUTSIDE_FQDN_CN):
            pki_ok(d, "issue-client", "--cn", cn, "--o", "Example Corp")
        pki_ok(d, "crl")
        self.server_root = d / "server-ca.pem"
        server_ca = x509.load_pem_x509_certificate(self.server_root.read_bytes())
        server_key = serialization.load_pem_private_key((d / "private" / "server-ca.key").read_bytes(), None)
        crafted = base / "crafted"
        self.forged_outside = write_identity(crafted, "forged-outside", *forge_server(server_ca, server_key, ["evil.example.com"]))
        self.forged_ip = write_identity(crafted, "forged-ip", *forge_server(server_ca, server_key, [f"beacon2.{DOMAIN}"], ["127.0.0.1"]))
        self.forged_inside = write_identity(crafted, "forged-inside", *forge_server(server_ca, server_key, [f"beacon4.{DOMAIN}"]))
        # The design not taken: devices issued by one constrained root.
        root, root_key = one_constrained_root()
        (crafted / "one-root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
        (crafted / "one-root-crl.pem").write_bytes(empty_crl(root, root_key))
        now = dt.datetime.now(dt.timezone.utc)
        self.one_root_devices = {
            cn: write_identity(crafted, f"one-root-{i}", *craft_leaf(root, root_key, cn, now - dt.timedelta(days=1), now + dt.timedelta(days=30)))
            for i, cn in enumerate((BARE_CN, OUTSIDE_FQDN_CN, f"laptop43.{DOMAIN}"))
        }

        def issued(name: str) -> tuple[Path, Path]:
            return d / "issued" / f"{name}.pem", d / "private" / f"{name}.key"

        self.devices = {cn: issued(cn) for cn in (BARE_CN, OUTSIDE_FQDN_CN)}
        device_trust, device_crls = [d / "chain.pem"], [d / "crl.pem"]  # the beacon: the device CA only
        self.servers = {
            "beacon": BeaconServer(*issued(BEACON), device_trust, device_crls, chain_crl_check=False),
            "revoked-beacon": BeaconServer(*issued(REVOKED_BEACON), device_trust, device_crls, chain_crl_check=False),
            "forged-outside": BeaconServer(*self.forged_outside, device_trust, device_crls, chain_crl_check=False),
            "forged-ip": BeaconServer(*self.forged_ip, device_trust, device_crls, chain_crl_check=False),
            "forged-inside": BeaconServer(*self.forged_inside, device_trust, device_crls, chain_crl_check=False),
            "one-root": BeaconServer(*issued(BEACON), [crafted / "one-root.pem"], [crafted / "one-root-crl.pem"], chain_crl_check=False),
        }

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    built = Lab(tmp_path_factory.mktemp("tls-constrained"))
    yield built
    built.close()


def _handshake(lab: Lab, server: str, name: str, device: tuple[Path, Path], crls: tuple[Path, ...] = ()) -> tuple[Outcome, Any]:
    beacon = lab.servers[server]
    beacon.drain()
    outcome = agent_client(beacon.port, lab.server_root, name, *device, crls=crls)
    return outcome, beacon.next_event()


def test_the_server_root_is_name_constrained(lab: Lab) -> None:
    root = x509.load_pem_x509_certificate(lab.server_root.read_bytes())
    constraints = root.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [x509.DNSName(DOMAIN)]
    assert {str(n.value) for n in constraints.value.excluded_subtrees} == {"0.0.0.0/0", "::/0"}
    assert root.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=0)


def test_agent_trusting_only_the_server_root_accepts_the_beacon(lab: Lab) -> None:
    outcome, event = _handshake(lab, "beacon", BEACON, lab.devices[BARE_CN], crls=(lab.pki / "server-crl.pem",))
    assert outcome.ok, outcome.detail
    assert event.accepted and event.detail == BARE_CN
    # The same name from a forged certificate also inside the domain: the constraint permits it
    # (the server CA's key still vouches for its domain: keep it encrypted and offline).
    outcome, _ = _handshake(lab, "forged-inside", f"beacon4.{DOMAIN}", lab.devices[BARE_CN])
    assert outcome.ok, outcome.detail


def test_agent_checks_the_beacon_on_the_server_cas_crl(lab: Lab) -> None:
    outcome, _ = _handshake(lab, "revoked-beacon", REVOKED_BEACON, lab.devices[BARE_CN], crls=(lab.pki / "server-crl.pem",))
    assert not outcome.ok and "certificate revoked" in outcome.detail
    # The device CA's CRL does not list it (each CA lists what it signed): without the server
    # CA's CRL the agent cannot check it at all.
    outcome, _ = _handshake(lab, "revoked-beacon", REVOKED_BEACON, lab.devices[BARE_CN], crls=(lab.pki / "crl.pem",))
    assert not outcome.ok and "unable to get certificate CRL" in outcome.detail


@pytest.mark.parametrize(("server", "name", "violation"), [
    ("forged-outside", "evil.example.com", "permitted subtree violation"),
    ("forged-ip", f"beacon2.{DOMAIN}", "excluded subtree violation"),
])
def test_certificates_forged_with_the_server_cas_key_are_refused(lab: Lab, server: str, name: str, violation: str) -> None:
    outcome, event = _handshake(lab, server, name, lab.devices[BARE_CN])
    assert not outcome.ok
    assert violation in outcome.detail, outcome.detail
    assert not event.accepted  # the client aborted before the beacon saw a request


@pytest.mark.parametrize("cn", [BARE_CN, OUTSIDE_FQDN_CN])
def test_beacon_accepts_device_certificates_of_any_cn(lab: Lab, cn: str) -> None:
    outcome, event = _handshake(lab, "beacon", BEACON, lab.devices[cn])
    assert outcome.ok, outcome.detail
    assert event.accepted and event.detail == cn


@pytest.mark.parametrize(("cn", "accepted"), [(BARE_CN, True), (f"laptop43.{DOMAIN}", True), (OUTSIDE_FQDN_CN, False)])
def test_one_constrained_root_for_devices_would_refuse_fqdn_cns(lab: Lab, cn: str, accepted: bool) -> None:
    """Why the device CA is a separate, unconstrained root: OpenSSL applies the DNS constraints to
    a device certificate's CN when the certificate has no DNS SAN and the CN looks like a host
    name (NAME_CONSTRAINTS_check_CN); a bare name is not checked."""
    outcome, event = _handshake(lab, "one-root", BEACON, lab.one_root_devices[cn])
    assert event.accepted is accepted, event.detail
    if not accepted:
        assert "permitted subtree violation" in event.detail
        assert not outcome.ok
