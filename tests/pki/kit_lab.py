"""A project with a stack and a PKI to make device kits from, and the tools of an attacker (or a
faulty bundle) to change kits: recompute hashes, re-sign with a key. For tests/pki/test_pki_bundle.py
and tests/pki/test_kit_*.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pki_cli import ok
from scripts.pki import kit_signing

CA_CN = "Kit Devices CA"
DOMAIN = "example.test"
HOSTS = ("beacon1.example.test", "beacon2.example.test")
SECRET = "kit-password-1"
ROLLOUT = "unix/mgsft_rollout_response"


def stack_text(hosts: tuple[str, ...] = HOSTS, ca: str = "certs/ca.pem", extra: str = "") -> str:
    listed = "".join(f"    - {h}\n" for h in hosts)
    return (f"config:\n  aws:region: us-east-1\n  flexnet-beacon:beaconCount: {max(1, len(hosts))}\n"
            + (f"  flexnet-beacon:beaconHostnames:\n{listed}" if hosts else "")
            + f"  flexnet-beacon:clientCaCertificates:\n    - {ca}\n  flexnet-beacon:extraMappingRules:\n    - Subject.O=Example Corp\n" + extra)


def make_lab(base: Path, clients: tuple[str, ...] = ()) -> Path:
    """base/: Pulumi.yaml, stacks/Pulumi.lab.yaml (its beacons trust the PKI's device CA), and
    base/pki: the device CA, a server CA name-constrained to DOMAIN that issued the beacons'
    certificate, devices dev-0001..dev-0003 and ``clients``."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "Pulumi.yaml").write_text("name: flexnet-beacon\n")
    d = base / "pki"
    ok(d, "init-ca", "--cn", CA_CN, "--o", "Example Corp", "--crl-url", "http://crl.example.test/devices.crl", "--server-domain", DOMAIN)
    ok(d, "issue-server", "--dns", HOSTS[0], "--dns", HOSTS[1])
    ok(d, "issue-client", "--count", "3", "--prefix", "dev-", "--o", "Example Corp")
    for name in clients:
        ok(d, "issue-client", "--cn", name, "--o", "Example Corp")
    (base / "certs").mkdir()
    shutil.copy(d / "ca.pem", base / "certs" / "ca.pem")
    (base / "stacks").mkdir()
    (base / "stacks" / "Pulumi.lab.yaml").write_text(stack_text())
    return base


def fresh(lab: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the lab (PKI + stack) to change: (pki dir, stack file)."""
    target = tmp_path / "lab"
    shutil.copytree(lab, target, symlinks=True)
    return target / "pki", target / "stacks" / "Pulumi.lab.yaml"


def listing(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def rehash(folder: Path, install: dict[str, Any] | None = None) -> None:
    """What an attacker without the signing key can do: write install.json (when given) and
    recompute every hash of manifest.json; the signatures stay as they were."""
    if install is not None:
        (folder / "windows/install.json").write_text(json.dumps(install, indent=2) + "\n", encoding="ascii")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {p.relative_to(folder).as_posix(): listing(p.read_bytes()) for p in sorted(folder.rglob("*"))
                         if p.is_file() and not p.is_symlink() and p.name not in ("manifest.json", "manifest.sig")}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def sign_with(folder: Path, key: Any, cert: x509.Certificate | None = None) -> None:
    """Sign install.json and manifest.json (after :func:`rehash`) with ``key``; with ``cert`` also
    replace windows/kit-signer.cer (an attacker's own signer). Order as bundle: install.json's
    signature is a file the manifest lists."""
    signer = kit_signing.Signer(cert or x509.load_der_x509_certificate((folder / "windows/kit-signer.cer").read_bytes()), key)
    if (folder / "windows").is_dir():
        if cert is not None:
            (folder / "windows/kit-signer.cer").write_bytes(cert.public_bytes(serialization.Encoding.DER))
        (folder / "windows/install.json.sig").write_bytes(signer.sign((folder / "windows/install.json").read_bytes()))
    rehash(folder)
    (folder / "manifest.sig").write_bytes(signer.sign((folder / "manifest.json").read_bytes()))


def pki_signer_key(pki_dir: Path) -> Any:
    return serialization.load_pem_private_key((pki_dir / "private" / "kit-signer.key").read_bytes(), None)


def other_signer(cn: str = "Attacker kit signer") -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert


def attacker_root(cn: str = "Attacker Root") -> x509.Certificate:
    """A self-signed CA without name constraints: what must never reach LocalMachine\\Root."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
