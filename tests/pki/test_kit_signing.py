"""The kit signer (scripts/pki/kit_signing.py): what `bundle` makes once and reuses, the
signature format of kit format 2 (base64 of IEEE P1363 r||s), and that an independent
implementation agrees: the `openssl` CLI verifies a kit's signatures after the P1363 -> DER
conversion, and refuses them over changed bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kit_lab import CA_CN, SECRET, make_lab
from pki_cli import fails, ok, pki
from scripts.pki import bundle as bundle_module
from scripts.pki import kit_signing

OPENSSL = shutil.which("openssl")


@pytest.fixture(autouse=True)
def no_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_module, "sync_filesystem", lambda path: None)


def test_p1363_and_der_round_trip_and_strict_decoding() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(b"data", ec.ECDSA(hashes.SHA256()))
    raw = kit_signing.p1363_from_der(der)
    r, s = decode_dss_signature(der)
    assert raw == r.to_bytes(32, "big") + s.to_bytes(32, "big")  # fixed width even when r or s is short
    assert kit_signing.der_from_p1363(raw) == der
    text = kit_signing.encode_signature(der)
    assert len(text) == 88 and b"\n" not in text and kit_signing.decode_signature(text) == raw
    assert kit_signing.decode_signature(text + b"\r\n") == raw  # an editor's line end is tolerated
    for bad in (text[:-4], text + b"AAAA", b"!" + text[1:], b""):
        with pytest.raises(ValueError):
            kit_signing.decode_signature(bad)
    with pytest.raises(ValueError):
        kit_signing.der_from_p1363(raw[:63])


def test_the_signer_is_made_once_with_the_contract_s_attributes(tmp_path: Path) -> None:
    base = make_lab(tmp_path / "lab")
    d, stack = base / "pki", base / "stacks" / "Pulumi.lab.yaml"
    code, out, err = pki(d, "bundle", "dev-0001", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert code == 0, err
    cert = x509.load_pem_x509_certificate((d / "kit-signer.pem").read_bytes())
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
    assert err.count("made the kit signer") == 1 and thumbprint in err
    assert f"signer thumbprint: {thumbprint} (deploy install.ps1 with -SignerThumbprint {thumbprint})" in out
    key_path = d / "private" / "kit-signer.key"
    assert key_path.stat().st_mode & 0o777 == 0o600 and key_path.read_bytes().startswith((b"-----BEGIN " + b"PRIVATE KEY-----"))
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key() == cert.public_key() and cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"{CA_CN} kit signer"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CODE_SIGNING]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= dt.timedelta(days=3650)
    # Reused afterwards: same certificate, no note.
    code, out, err = pki(d, "bundle", "dev-0002", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert code == 0 and "made the kit signer" not in err and f"signer thumbprint: {thumbprint}" in out
    assert x509.load_pem_x509_certificate((d / "kit-signer.pem").read_bytes()) == cert
    # Its key gone: stop, rather than sign with a new key the devices do not expect.
    key_path.unlink()
    fails(d, "bundle", "dev-0003", "--stack-config", str(stack), "--out", str(tmp_path / "never"), expect="private/kit-signer.key is missing", env={"PKI_PASSWORD": SECRET})
    assert not (tmp_path / "never").exists()


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
def test_openssl_verifies_the_kit_signatures(tmp_path: Path) -> None:
    base = make_lab(tmp_path / "lab")
    d, stack = base / "pki", base / "stacks" / "Pulumi.lab.yaml"
    ok(d, "bundle", "dev-0001", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    folder = d / "bundles" / "dev-0001"
    public = tmp_path / "pub.pem"
    # The public key from the kit's own DER certificate, read by openssl.
    extracted = subprocess.run([str(OPENSSL), "x509", "-inform", "DER", "-in", str(folder / "windows/kit-signer.cer"), "-pubkey", "-noout", "-out", str(public)],
                               capture_output=True, text=True, timeout=30)
    assert extracted.returncode == 0, extracted.stderr
    for signed, signature in (("manifest.json", "manifest.sig"), ("windows/install.json", "windows/install.json.sig")):
        raw = base64.b64decode((folder / signature).read_bytes(), validate=True)
        assert len(raw) == 64
        der = tmp_path / f"{Path(signature).name}.der"
        der.write_bytes(kit_signing.der_from_p1363(raw))

        def openssl_verify(data: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(OPENSSL), "dgst", "-sha256", "-verify", str(public), "-signature", str(der), str(data)],
                                  capture_output=True, text=True, timeout=30)

        good = openssl_verify(folder / signed)
        assert good.returncode == 0 and "Verified OK" in good.stdout, good.stdout + good.stderr
        changed = tmp_path / "changed"
        changed.write_bytes((folder / signed).read_bytes().replace(b"beacon1", b"beacon9"))
        bad = openssl_verify(changed)
        assert bad.returncode != 0 and "Verification failure" in bad.stdout + bad.stderr
