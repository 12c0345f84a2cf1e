"""The lab of the Windows converge job (.github/workflows/windows-converge.yml), made where
scripts.pki runs (Linux; it locks its directory with fcntl):

    python -m scripts.windows_lab --out lab

A PKI made with scripts.pki (a device CA, a server CA for the lab's beacon name, two devices of
which one is revoked, one device of another organisation that no mapping admits, and the CRLs),
an expired device and a device of a foreign CA with the issuing CA's name, the desired states the
offline plan would render for it (require, observe, and observe with one more mapping, for the
lock-down that cannot commit), and the files the job reads, named in lab.json. The CA keys stay
in --pki (default: next to --out); only what the beacon and the devices hold goes into --out,
which the job uploads as an artifact for one day: a throwaway lab, never a stack's PKI.

Exit 0 done, 2 bad input (one line: --out exists, or scripts.pki refused something).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

SERVER_DOMAIN = "flexnet-beacon.test"  # RFC 2606: .test is never a real domain
SERVER_NAME = f"beacon.{SERVER_DOMAIN}"
CRL_HOST = f"crl.{SERVER_DOMAIN}"
CRL_PORT = 8080
CA_NAME = "FlexNet Lab Devices CA"
ORGANIZATION = "FlexNet Lab"
DEVICE, REVOKED, UNMAPPED, EXPIRED = "LAB-DEVICE-1", "LAB-DEVICE-2", "LAB-OTHER-ORG", "LAB-EXPIRED"
MAPPED_ACCOUNT = "FlexNetAgent"
# Each client the job sends, with the answer IIS must give it under require (status, sub-status):
# docs/iis-mtls.md "Status codes". Under observe only "none" changes (anonymous: 200).
CLIENTS = {
    "device": (200, 0),
    "none": (403, 7),
    "revoked": (403, 13),
    "foreign": (403, 16),
    "expired": (403, 17),
    "unmapped": (401, 2),
}


class LabError(Exception):
    """Bad input or a refusal of scripts.pki: one line, exit 2."""


def pki(directory: Path, *arguments: str) -> None:
    from scripts.pki.cli import main

    code = main(["--dir", str(directory), *arguments])
    if code != 0:
        raise LabError(f"scripts.pki {arguments[0]} exited {code} (its message is above)")


def make_pki(directory: Path, password: str) -> None:
    """The lab PKI, each step a scripts.pki command as an operator would type it (docs/pki.md)."""
    pki(directory, "init-ca", "--cn", CA_NAME, "--o", ORGANIZATION, "--crl-url", f"http://{CRL_HOST}:{CRL_PORT}/devices-ca.crl",
        "--server-domain", SERVER_DOMAIN)
    pki(directory, "issue-server", "--dns", SERVER_NAME)
    pki(directory, "issue-client", "--cn", DEVICE, "--o", ORGANIZATION)
    pki(directory, "issue-client", "--cn", REVOKED, "--o", ORGANIZATION)
    pki(directory, "issue-client", "--cn", UNMAPPED, "--o", "Other Org")
    pki(directory, "revoke", REVOKED, "--reason", "keyCompromise")
    pki(directory, "crl")
    previous = os.environ.get("PKI_PASSWORD")
    os.environ["PKI_PASSWORD"] = password
    try:
        pki(directory, "export-pfx", SERVER_NAME)
    finally:
        if previous is None:
            del os.environ["PKI_PASSWORD"]
        else:
            os.environ["PKI_PASSWORD"] = previous


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def expired_device(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A device the lab CA signed that expired yesterday (scripts.pki refuses to issue one): the
    device's names, extensions and CRL point, so that only its dates differ (403.17)."""
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    model = x509.load_pem_x509_certificate((directory / "issued" / f"{DEVICE}.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(a.oid, EXPIRED if a.oid == NameOID.COMMON_NAME else a.value) for a in model.subject])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(_now() - dt.timedelta(days=30)).not_valid_after(_now() - dt.timedelta(days=1)))
    for extension in model.extensions:
        if extension.oid not in (ExtensionOID.SUBJECT_KEY_IDENTIFIER,):
            builder = builder.add_extension(extension.value, extension.critical)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def same_name_root() -> x509.Certificate:
    """A certificate whose subject equals its issuer but that another key signed: it is not
    self-signed, and the converge run must list it in checks.trustStores.nonSelfSignedInRoot."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FlexNet Lab Renamed Root")])
    own, signer = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(own.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))


def _private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def write_client(out: Path, name: str, certificate: x509.Certificate, key: Any, password: str) -> dict[str, str]:
    """PEM pair (for ops probe) and a PFX holding only the leaf and its key (curl.exe with
    Schannel takes the first certificate of a PKCS#12 file: no CA certificate may come first)."""
    cert_file, key_file, pfx_file = out / f"{name}.pem", out / f"{name}.key", out / f"{name}.pfx"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _private(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(50000)
                  .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256()).build(password.encode()))
    _private(pfx_file, pkcs12.serialize_key_and_certificates(name.encode(), key, certificate, None, encryption))
    return {"pem": cert_file.name, "key": key_file.name, "pfx": pfx_file.name}


def _load_pair(directory: Path, name: str) -> tuple[x509.Certificate, Any]:
    certificate = x509.load_pem_x509_certificate((directory / "issued" / f"{name}.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "private" / f"{name}.key").read_bytes(), None)
    return certificate, key


# The lab stack's configuration (a stack file's `config:`, paths relative to --out), and the
# variants the job converges to: require, observe, and observe with one more (deny) mapping.
LAB_CONFIG: dict[str, Any] = {
    "aws:region": "us-east-1",
    "flexnet-beacon:clientCaCertificates": ["devices-ca.pem"],
    "flexnet-beacon:sampleDeviceCertificate": "sample-device.pem",
    "flexnet-beacon:extraMappingRules": [f"Subject.O={ORGANIZATION}"],
    "flexnet-beacon:mappedAccountName": MAPPED_ACCOUNT,
    "flexnet-beacon:convergeReportOnly": False,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "require": {"flexnet-beacon:enforcement": "require"},
    "observe": {"flexnet-beacon:enforcement": "observe"},
    "lockedObserve": {"flexnet-beacon:enforcement": "observe", "flexnet-beacon:denyMappingRules": ["Subject.OU=Contractors"]},
}


def desired_states(out: Path, pki_dir: Path) -> dict[str, str]:
    """The desired states the offline plan renders (components.stack.prepare) for the lab stack
    whose CA files are this PKI's, one per variant."""
    from components.config import stack_file_to_raw
    from components.stack import prepare

    shutil.copyfile(pki_dir / "ca.pem", out / "devices-ca.pem")
    shutil.copyfile(pki_dir / "issued" / f"{DEVICE}.pem", out / "sample-device.pem")
    files = {}
    for variant, extra in VARIANTS.items():
        raw, region, _ = stack_file_to_raw({"config": {**LAB_CONFIG, **extra}})
        state = prepare(raw, "lab", region, base=out).iis_state
        files[variant] = f"state-{variant}.json"
        (out / files[variant]).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return files


def make_lab(out: Path, pki_dir: Path) -> dict[str, Any]:
    from scripts.ops.probe import foreign_identity

    password = secrets.token_urlsafe(18)  # 24 characters; a throwaway lab's, in the lab's files
    make_pki(pki_dir, password)
    out.mkdir(mode=0o700)
    clients_dir = out / "clients"
    clients_dir.mkdir()
    clients: dict[str, dict[str, str] | None] = {"none": None}
    for label, name in (("device", DEVICE), ("revoked", REVOKED), ("unmapped", UNMAPPED)):
        clients[label] = write_client(clients_dir, label, *_load_pair(pki_dir, name), password)
    clients["expired"] = write_client(clients_dir, "expired", *expired_device(pki_dir), password)
    foreign = foreign_identity(str(pki_dir / "issued" / f"{DEVICE}.pem"), pki_dir)
    assert foreign.cert is not None and foreign.key is not None
    foreign_leaf = x509.load_pem_x509_certificates(Path(foreign.cert).read_bytes())[0]
    clients["foreign"] = write_client(clients_dir, "foreign", foreign_leaf, serialization.load_pem_private_key(Path(foreign.key).read_bytes(), None), password)
    # One line each, ended by a line break (the converge run's -PfxPasswordPath reads it without).
    _private(out / "clients.password", (password + "\n").encode("ascii"))
    shutil.copyfile(pki_dir / "pfx" / f"{SERVER_NAME}.pfx", out / "server.pfx")
    _private(out / "server.pfx.password", (password + "\n").encode("ascii"))
    shutil.copyfile(pki_dir / "server-ca.pem", out / "server-ca.pem")
    crl_dir = out / "crl"  # served at http://CRL_HOST:CRL_PORT/ under the names of the CDP URLs
    crl_dir.mkdir()
    shutil.copyfile(pki_dir / "crl.der", crl_dir / "devices-ca.crl")
    shutil.copyfile(pki_dir / "server-crl.der", crl_dir / "server-devices-ca.crl")
    renamed = same_name_root()
    (out / "same-name-root.cer").write_bytes(renamed.public_bytes(serialization.Encoding.DER))
    states = desired_states(out, pki_dir)
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((pki_dir / "issued" / f"{SERVER_NAME}.pem").read_bytes())
    manifest = {
        "serverName": SERVER_NAME,
        "crlHost": CRL_HOST,
        "crlPort": CRL_PORT,
        "serverCa": "server-ca.pem",
        "serverPfx": "server.pfx",
        "serverPfxSecretFile": "server.pfx.password",
        "serverThumbprint": server.fingerprint(hashes.SHA1()).hex().upper(),
        "caName": CA_NAME,
        "caThumbprint": ca.fingerprint(hashes.SHA1()).hex().upper(),
        "mappedAccount": MAPPED_ACCOUNT,
        "sameNameRoot": {"file": "same-name-root.cer", "thumbprint": renamed.fingerprint(hashes.SHA1()).hex().upper()},
        "crl": "crl",
        "states": states,
        "clientsSecretFile": "clients.password",
        "clients": {label: {"expect": list(CLIENTS[label]), "files": clients[label]} for label in CLIENTS},
        "deviceCommonName": DEVICE,
    }
    (out / "lab.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.windows_lab", description="The lab of the Windows converge job (PKI, clients, desired states).")
    parser.add_argument("--out", required=True, type=Path, help="new directory for what the Windows job reads (uploaded as an artifact)")
    parser.add_argument("--pki", type=Path, help="new directory for the lab PKI with its CA keys (default: OUT.pki next to --out)")
    args = parser.parse_args(argv)
    out: Path = args.out
    pki_dir: Path = args.pki or out.with_name(out.name + ".pki")
    for option, path in (("--out", out), ("--pki", pki_dir)):
        if path.exists():
            print(f"windows_lab: error: {option}: got {str(path)!r}, which exists; expected a new directory", file=sys.stderr)
            return 2
    try:
        manifest = make_lab(out, pki_dir)
    except LabError as exc:
        print(f"windows_lab: error: {exc}", file=sys.stderr)
        return 2
    print(f"lab for {manifest['serverName']} in {out}/ (CA keys in {pki_dir}/): clients {', '.join(manifest['clients'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
