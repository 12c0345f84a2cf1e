"""verify-bundle against altered kits (kit format 2): each is refused with exit 1 and a problem
naming the file, and nothing outside the kit is read. The hostile files (a FIFO, a symbolic link,
a 4 GiB sparse file) go through the command in a subprocess with a timeout: a verifier that
opened the FIFO or read the file would hang or take minutes, not fail an assertion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from kit_lab import HOSTS, SECRET, attacker_root, fresh, listing, make_lab, other_signer, pki_signer_key, rehash, sign_with
from pki_cli import ok, pki
from scripts.pki import bundle as bundle_module
from scripts.pki.kit_integrity import V1_REFUSAL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_module, "sync_filesystem", lambda path: None)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab with one Windows kit (dev-0001) and one kit for both platforms (dev-0002)."""
    base = make_lab(tmp_path_factory.mktemp("tamper"))
    stack = base / "stacks" / "Pulumi.lab.yaml"
    ok(base / "pki", "bundle", "dev-0001", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    ok(base / "pki", "bundle", "dev-0002", "--platform", "all", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    return base


def problems(d: Path, stack: Path, folder: Path, *extra: str) -> list[str]:
    """verify-bundle of one kit, which must fail (exit 1): its problems."""
    code, out, err = pki(d, "verify-bundle", str(folder), "--stack-config", str(stack), "--json", *extra, env={"PKI_PASSWORD": SECRET})
    assert code == 1, (code, out, err)
    [result] = json.loads(out)["kits"]
    assert not result["ok"]
    return result["problems"]


def verify_subprocess(d: Path, stack: Path, folder: Path) -> tuple[int, list[str]]:
    """The command in its own process, killed after 60 s (a hang fails the test instead of it):
    (exit code, the kit's problems)."""
    env = {**os.environ, "PKI_PASSWORD": SECRET, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "scripts.pki", "--dir", str(d), "verify-bundle", str(folder), "--stack-config", str(stack), "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout, result.stderr
    [kit] = json.loads(result.stdout)["kits"]
    return result.returncode, kit["problems"]


def install_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "windows/install.json").read_text(encoding="ascii"))


def thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def test_the_issue_attack_an_attacker_root_with_rehashed_manifest_is_refused(made: Path, tmp_path: Path) -> None:
    d, stack = fresh(made, tmp_path)
    folder = d / "bundles" / "dev-0001"
    ok(d, "verify-bundle", str(folder), "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    root = attacker_root()
    der = root.public_bytes(serialization.Encoding.DER)
    (folder / "windows/root-2.cer").write_bytes(der)
    install = install_of(folder)
    install["caCertificates"].append({"file": "root-2.cer", "store": "Root", "thumbprint": thumbprint(root), "subject": "CN=Attacker Root"})
    install["files"]["root-2.cer"] = listing(der)
    rehash(folder, install)  # every hash in manifest.json and install.json now matches
    found = problems(d, stack, folder)
    signer = json.loads((folder / "manifest.json").read_text())["signer"]
    assert f"manifest.sig: the signature over manifest.json does not verify with the kit signer {signer} (manifest.json was changed after it was signed, or another key signed it)" in found
    assert any(p.startswith("windows/install.json.sig: the signature over windows/install.json does not verify") for p in found)
    assert not any("differs" in p for p in found)  # the hashes agree: only the signatures tell


def test_a_kit_re_signed_by_another_key_is_refused(made: Path, tmp_path: Path) -> None:
    d, stack = fresh(made, tmp_path)
    folder = d / "bundles" / "dev-0001"
    key, cert = other_signer()
    install = install_of(folder)
    install["beaconUrls"] = ["https://rogue.example.test/ManageSoftDL/"]
    rehash(folder, install)
    sign_with(folder, key, cert)  # a consistent kit, signed by the attacker's own signer
    found = problems(d, stack, folder)
    expected = x509.load_pem_x509_certificate((d / "kit-signer.pem").read_bytes())
    assert f"windows/kit-signer.cer is the certificate of {thumbprint(cert)}, not of the kit signer {thumbprint(expected)}" in found
    assert any(p.startswith("manifest.sig: the signature over manifest.json does not verify") for p in found)
    assert any(p.startswith("windows/install.json.sig:") for p in found)
    # Expecting the attacker's thumbprint instead (--signer) makes the real kits fail, not pass.
    genuine = tmp_path / "genuine"
    ok(d, "bundle", "dev-0003", "--stack-config", str(stack), "--out", str(genuine), env={"PKI_PASSWORD": SECRET})
    found = problems(d, stack, genuine / "bundles" / "dev-0003", "--signer", thumbprint(cert))
    assert any(p.startswith("windows/kit-signer.cer is the certificate of") for p in found)
    assert any(p.startswith("manifest.sig: no certificate of the kit signer") for p in found)


def test_changed_added_removed_files_and_an_edited_manifest(made: Path, tmp_path: Path) -> None:
    d, stack = fresh(made, tmp_path)
    bundles = d / "bundles"
    (bundles / "dev-0002" / "unix/cert.pem").write_bytes(attacker_root().public_bytes(serialization.Encoding.PEM))
    found = problems(d, stack, bundles / "dev-0002")
    assert found == ["unix/cert.pem differs from its SHA-256 and size in manifest.json"]
    d, stack = fresh(made, tmp_path / "2")
    (d / "bundles" / "dev-0002" / "unix/extra.sh").write_text("rm -rf /\n")
    (d / "bundles" / "dev-0002" / "windows/mgssetup.ini").unlink()
    found = problems(d, stack, d / "bundles" / "dev-0002")
    assert "unix/extra.sh is not listed in manifest.json" in found
    assert "windows/mgssetup.ini is missing (listed in manifest.json)" in found and "windows/mgssetup.ini is missing (listed in windows/install.json)" in found
    # manifest.json edited (another beacon) with the hashes left alone: the signature tells.
    d, stack = fresh(made, tmp_path / "3")
    manifest_path = d / "bundles" / "dev-0001" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["beacons"] = [HOSTS[1]]
    manifest_path.write_text(json.dumps(manifest, indent=2))
    assert problems(d, stack, manifest_path.parent)[0].startswith("manifest.sig: the signature over manifest.json does not verify")
    # No signature at all.
    (manifest_path.parent / "manifest.sig").unlink()
    assert "manifest.sig is missing: the kit is not signed" in problems(d, stack, manifest_path.parent)


def test_a_fifo_and_a_symlink_named_by_install_json_neither_hang_nor_escape(made: Path, tmp_path: Path) -> None:
    d, stack = fresh(made, tmp_path)
    folder = d / "bundles" / "dev-0001"
    os.mkfifo(folder / "windows/evil.cer")
    os.symlink("/etc/hostname", folder / "windows/link.cer")
    install = install_of(folder)
    install["caCertificates"] += [{"file": "evil.cer", "store": "Root", "thumbprint": "A" * 40, "subject": "CN=x"},
                                  {"file": "link.cer", "store": "Root", "thumbprint": "B" * 40, "subject": "CN=y"}]
    install["files"]["evil.cer"] = install["files"]["link.cer"] = listing(b"")
    (folder / "windows/install.json").write_text(json.dumps(install), encoding="ascii")
    code, found = verify_subprocess(d, stack, folder)
    assert code == 1, found
    assert "windows/evil.cer is a FIFO: a kit holds only regular files (in its windows/ and unix/ folders)" in found
    assert "windows/link.cer is a symbolic link: a kit holds only regular files (in its windows/ and unix/ folders)" in found
    assert "windows/evil.cer is missing (listed in windows/install.json)" in found


def test_a_path_out_of_the_kit_is_never_read(made: Path, tmp_path: Path) -> None:
    d, stack = fresh(made, tmp_path)
    folder = d / "bundles" / "dev-0001"
    escape = "../../../../etc/hostname"
    install = install_of(folder)
    install["caCertificates"].append({"file": escape, "store": "Root", "thumbprint": "C" * 40, "subject": "CN=z"})
    install["files"][escape] = listing(Path("/etc/hostname").read_bytes()) if Path("/etc/hostname").is_file() else listing(b"")
    rehash(folder, install)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["windows/" + escape] = install["files"][escape]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    found = problems(d, stack, folder)
    assert f"windows/install.json names {escape!r}: not a plain file name inside the kit folder" in found
    assert f"windows/install.json: caCertificates names {escape!r}: not a plain .cer file name inside the kit folder" in found
    assert f"manifest.json names {'windows/' + escape!r}: not a plain file name inside the kit folder" in found


def test_an_oversized_file_is_refused_unread(made: Path, tmp_path: Path) -> None:
    d, stack = fresh(made, tmp_path)
    folder = d / "bundles" / "dev-0001"
    with open(folder / "windows/device.pfx", "r+b") as pfx:
        pfx.truncate(4 * 1024**3)  # sparse: reading it whole would take 4 GiB of memory
    code, found = verify_subprocess(d, stack, folder)
    assert code == 1, found
    assert f"windows/device.pfx has {4 * 1024**3} bytes; a kit file has at most 1048576 (not read)" in found


def test_missing_and_extra_ca_files_are_refused_even_when_signed_with_the_pki_key(made: Path, tmp_path: Path) -> None:
    """What a faulty bundle (or a thief of the signing key without the CA) could make: the CA set
    check stands on its own, apart from the signatures."""
    d, stack = fresh(made, tmp_path)
    folder = d / "bundles" / "dev-0001"
    key = pki_signer_key(d)
    server_ca = x509.load_pem_x509_certificate((d / "server-ca.pem").read_bytes())
    # The server root left out.
    (folder / "windows/root-1.cer").unlink()
    install = install_of(folder)
    install["caCertificates"] = [entry for entry in install["caCertificates"] if entry["file"] != "root-1.cer"]
    del install["files"]["root-1.cer"]
    rehash(folder, install)
    sign_with(folder, key)
    found = problems(d, stack, folder)
    assert found == [f"windows/install.json: the CA file of {server_ca.subject.rfc4514_string()!r} ({thumbprint(server_ca)}, LocalMachine\\Root) is missing"]
    # An extra, unconstrained root beside it.
    d, stack = fresh(made, tmp_path / "extra")
    folder = d / "bundles" / "dev-0001"
    root = attacker_root()
    der = root.public_bytes(serialization.Encoding.DER)
    (folder / "windows/root-2.cer").write_bytes(der)
    install = install_of(folder)
    install["caCertificates"].append({"file": "root-2.cer", "store": "Root", "thumbprint": thumbprint(root), "subject": "CN=Attacker Root"})
    install["files"]["root-2.cer"] = listing(der)
    rehash(folder, install)
    sign_with(folder, pki_signer_key(d))
    found = problems(d, stack, folder)
    assert found == [f"windows/root-2.cer: an extra root 'CN=Attacker Root' ({thumbprint(root)}): neither in the device certificate's chain "
                     "the stack trusts nor the beacons' server trust"]
    # A CA file present but named by no caCertificates entry.
    d, stack = fresh(made, tmp_path / "unnamed")
    folder = d / "bundles" / "dev-0001"
    (folder / "windows/root-2.cer").write_bytes(der)
    install = install_of(folder)
    install["files"]["root-2.cer"] = listing(der)
    rehash(folder, install)
    sign_with(folder, pki_signer_key(d))
    assert "windows/root-2.cer is a CA file that install.json's caCertificates does not name" in problems(d, stack, folder)


def test_a_version_1_kit_and_no_known_signer(made: Path, tmp_path: Path) -> None:
    d, stack = fresh(made, tmp_path)
    folder = d / "bundles" / "dev-0001"
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["kitVersion"] = 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert problems(d, stack, folder) == [f"manifest.json: {V1_REFUSAL}"]
    # Without kit-signer.pem and without --signer there is nothing to verify against: exit 2.
    (d / "kit-signer.pem").unlink()
    code, _, err = pki(d, "verify-bundle", str(folder), "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert code == 2 and err.count("\n") == 1 and "no kit signer to verify against: give --signer THUMBPRINT" in err


def test_supersedes_come_from_the_index_and_a_rewritten_list_is_refused(made: Path, tmp_path: Path) -> None:
    d, stack = fresh(made, tmp_path)
    index = json.loads((d / "index.json").read_text())
    entry = index["certificates"]["dev-0003"]
    old = {"serial": "7f" * 10, "thumbprint": "D" * 40, "subject": entry["subject"], "notBefore": entry["notBefore"], "notAfter": entry["notAfter"],
           "file": "x", "supersededAt": entry["notBefore"], "graceUntil": entry["notAfter"], "status": "valid", "revokedAt": None, "reason": None}
    entry["previous"] = [old]
    (d / "index.json").write_text(json.dumps(index))
    ok(d, "bundle", "dev-0003", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    folder = d / "bundles" / "dev-0003"
    assert install_of(folder)["supersedes"] == ["D" * 40]
    ok(d, "verify-bundle", str(folder), "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    install = install_of(folder)
    install["supersedes"] = []  # the old certificate would stay in LocalMachine\My
    rehash(folder, install)
    sign_with(folder, pki_signer_key(d))
    assert problems(d, stack, folder) == [f"windows/install.json: supersedes []; expected {['D' * 40]} (the earlier certificates of this name in the PKI's index)"]
    # An index whose "previous" names the current certificate would have install.ps1 delete it: refused.
    old["thumbprint"] = entry["sha1"]
    (d / "index.json").write_text(json.dumps(index))
    code, _, err = pki(d, "bundle", "dev-0003", "--stack-config", str(stack), "--force", env={"PKI_PASSWORD": SECRET})
    assert code == 2 and "names the current certificate" in err and "Traceback" not in err
