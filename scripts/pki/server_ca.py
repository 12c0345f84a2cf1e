"""The server CA: `init-server-ca` (and the part of `init-ca --server-domain` that makes it).

A self-signed root, server-ca.pem + private/server-ca.key, that signs only the beacons' server
certificates (issue-server) and is the only root a kit installs on the devices
(LocalMachine\\Root; UNIX: cert.pem). Its name constraints (critical: permitted dNSName = the
--server-domain subtrees, every IPv4 and IPv6 address excluded) and its EKU (serverAuth) keep it
from vouching for anything else, also for whoever holds its key. The device CA stays a separate,
unconstrained root that only the beacons trust: OpenSSL checks a CN that looks like a host name
against DNS constraints, so one constrained root for both would refuse devices named like
laptop.corp.example.com (tests/tls/test_constrained_trust.py shows both).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from components.certs import facts as cert_facts

from . import build
from .entries import entry_for
from .inputs import DEFAULT_DAYS, check_domain, check_url, now_utc, required_attr
from .keycrypt import CA_PASSWORD_ENV, PasswordProblem, ca_password, file_is_encrypted
from .progress import note, out
from .revocation import derived_crl_url, publish_server_crl
from .store import Pki, PkiError


def new_key_password(args: argparse.Namespace, keys: str) -> bytes | None:
    """PKI_CA_PASSWORD with --encrypt-key (checked before anything is made), else None."""
    if not args.encrypt_key:
        return None
    try:
        return ca_password(keys, new=True)
    except PasswordProblem as exc:
        raise PkiError(str(exc)) from None


@dataclass
class ServerCaRequest:
    """What init-ca/init-server-ca were asked for the server CA, checked."""

    cn: str
    domains: list[str]
    crl_urls: list[str]


def server_ca_request(args: argparse.Namespace, device_cn: str, taken: list[str], device_crl_urls: list[str]) -> ServerCaRequest:
    """--server-domain (each checked, duplicates dropped), the CN (not another CA's: chain
    building tells CAs apart by name) and the CDP of the server certificates."""
    domains: list[str] = []
    for text in args.server_domain:
        domain = check_domain(text)
        if domain not in domains:
            domains.append(domain)
    if not domains:
        raise PkiError("--server-domain: at least one DNS domain of the beacons, e.g. --server-domain beacons.example.org")
    cn = required_attr(args.server_cn or f"{device_cn} Beacon Servers", "--server-cn")
    if any(cn.casefold() == other.casefold() for other in taken):
        raise PkiError(f"--server-cn: {cn!r} is the name of another CA of this PKI; the server CA needs its own name")
    crl_urls = [check_url(u, "--server-crl-url") for u in args.server_crl_url]
    if not crl_urls and device_crl_urls:
        crl_urls = [derived_crl_url(u, "server-") for u in device_crl_urls]
        note(f"note: the beacons' server certificates will name {', '.join(crl_urls)} as their CRL (the server CA's): publish server-crl.der there, "
             "where the devices can fetch it (or pass --server-crl-url)")
    elif not crl_urls:
        note("note: no --server-crl-url: server certificates carry no CDP; agents that check the beacon's revocation "
             "(MGSFT_HTTPS_CHECKCERTIFICATEREVOCATION) cannot find a CRL for it")
    return ServerCaRequest(cn, domains, crl_urls)


def make_server_ca(pki: Pki, request: ServerCaRequest, key_type: str, days: int, password: bytes | None, now: Any,
                   subject_rest: tuple[str | None, str | None, str | None]) -> x509.Certificate:
    """server-ca.pem + private/server-ca.key, recorded in the index (saved by the caller). A
    self-signed root, pathLen 0, keyCertSign + cRLSign, EKU serverAuth, name-constrained."""
    o, ou, country = subject_rest
    key = build.new_key(key_type)
    profile = build.Profile(days=days, ca=True, path_length=0, eku=build.SERVER_CA_EKU,
                            name_constraints=build.server_name_constraints(request.domains))
    cert, _ = build.build_certificate(build.make_name(request.cn, o, ou, country), key.public_key(), profile, None, key, now)
    pki.write_key(pki.server_ca_key, key, password=password)
    pki.write_cert(pki.server_ca_pem, cert)
    pki.index["authorities"]["server"] = {"file": pki.server_ca_pem.name, **entry_for(cert, "server-ca", "key")}
    pki.index["ca"]["serverDomains"] = request.domains
    pki.index["ca"]["serverCrlUrls"] = request.crl_urls
    return cert


def report_server_ca(pki: Pki) -> None:
    cert = pki.load_cert(pki.server_ca_pem)
    domains = ", ".join(pki.server_domains())
    out(f"created server CA {cert_facts.common_name(cert.subject)!r}: {pki.server_ca_pem} (serial {cert_facts.serial_hex(cert.serial_number)}, "
        f"thumbprint {cert_facts.thumbprint(cert)}, until {cert_facts.iso(cert.not_valid_after_utc)}), constrained to {domains} (no IP address)")
    out("  devices install only this root (bundle); the device CA stays with the beacons (clientCaCertificates)")


def cmd_init_server_ca(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    with pki.locked():
        if pki.has_server_ca() or pki.server_ca_pem.exists() or pki.server_ca_key.exists():
            raise PkiError(f"a server CA already exists in {pki.root}/ ({pki.server_ca_pem.name}); refusing to overwrite it")
        device = pki.load_cert(pki.ca_pem)
        cn = cert_facts.common_name(device.subject) or "Devices CA"
        taken = [cert_facts.common_name(pki.load_cert(p).subject) or "" for p in (pki.ca_pem, pki.root_pem) if p.is_file()]
        request = server_ca_request(args, cn, taken, pki.index["ca"].get("crlUrls", []))
        encrypted = file_is_encrypted(pki.ca_key)
        if encrypted and not args.encrypt_key:
            note(f"note: ca.key is encrypted, so server-ca.key will be too (with {CA_PASSWORD_ENV})")
            args.encrypt_key = True
        password = new_key_password(args, "private/server-ca.key")
        key_type = args.key or pki.index["ca"].get("keyType", "ec")
        last = lambda oid: (device.subject.get_attributes_for_oid(oid) or [None])[-1]  # noqa: E731
        rest = tuple(a.value if a is not None else None for a in (last(NameOID.ORGANIZATION_NAME), last(NameOID.ORGANIZATIONAL_UNIT_NAME), last(NameOID.COUNTRY_NAME)))
        pki.ensure_dirs()
        try:
            make_server_ca(pki, request, key_type, args.days, password, now_utc(), rest)  # type: ignore[arg-type]
            written = publish_server_crl(pki, DEFAULT_DAYS["crl"])
            pki.save_index()  # the commit point: before it, nothing names the new files
        except BaseException:
            for path in (pki.server_ca_pem, pki.server_ca_key, pki.server_crl_pem, pki.server_crl_der):
                path.unlink(missing_ok=True)  # nothing half-created
            raise
    report_server_ca(pki)
    out(f"  {written}")
    out("  next: issue-server --dns NAME (inside the domains), export-pfx it and scripts.ops rotate-server-cert it to the beacons, then bundle the devices again")
    return 0
