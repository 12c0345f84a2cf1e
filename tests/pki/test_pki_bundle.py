"""`pki bundle` and `pki verify-bundle`: device onboarding kits (docs/onboarding.md), kit format 2.

Kits per platform (windows, the default; unix; all) proven by verify-bundle and by real TLS
handshakes on loopback against the tests/tls OpenSSL server (client certificates required from
the stack's CA, CRL checked); install.ps1 parsed and linted against the kit contract; hostile
device names and host names kept out of paths and agent files; interrupted bulk runs resumed
without duplicates or half-written kits. Tampering and signatures: tests/pki/test_kit_*.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

import ps_lint
from kit_lab import CA_CN, HOSTS, ROLLOUT, SECRET, fresh, make_lab, pki_signer_key, rehash, sign_with, stack_text
from pki_cli import ok, pki
from scripts.pki import bundle as bundle_module
from scripts.pki import bundle_files as kit
from tests.tls.conftest import BeaconServer

HOSTILE = "'; Stop-Computer"
UNICODE = "Gerät-ü-東京"
SHORT_SECRET = SECRET[:5]  # under the 12 characters a shared password needs
WRONG_SECRET = SECRET + "x"
WINDOWS_FILES = ["windows/device.pfx", "windows/root-1.cer", "windows/device-root-1.cer", "windows/install.ps1", "windows/install.json", "windows/install.json.sig",
                 "windows/kit-signer.cer", "windows/mgssetup.ini"]
UNIX_FILES = ["unix/device.pem", "unix/device.key", "unix/cert.pem", ROLLOUT, "unix/UNIXConfig.ini", "unix/INSTALL.txt"]


def fails(directory: Path, *args: str, expect: str, **kw: Any) -> str:
    code, out, err = pki(directory, *args, **kw)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    line = [x for x in err.strip().splitlines() if x.startswith("pki: error: ")]
    assert len(line) == 1 and expect in line[0], err
    return line[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The one filesystem sync of a run, counted instead of done: syncfs waits for everything
    other processes wrote, which on a shared machine makes test times erratic."""
    calls: list[Path] = []
    monkeypatch.setattr(bundle_module, "sync_filesystem", calls.append)
    return calls


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a stack 'lab' whose beacons trust the PKI's device CA, and the PKI (with a
    server CA name-constrained to the beacons' domain, which issued their certificate)."""
    return make_lab(tmp_path_factory.mktemp("kit"), clients=(HOSTILE, UNICODE, "gone-1"))


def files_of(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def load_pfx(folder: Path, password: str) -> tuple[Any, x509.Certificate, list[x509.Certificate]]:
    key, cert, extra = pkcs12.load_key_and_certificates((folder / "windows/device.pfx").read_bytes(), password.encode())
    assert key is not None and cert is not None
    return key, cert, extra


# ---------------------------------------------------------------------------------------------
# What a kit holds


def test_kit_layout_modes_and_agent_files(lab: Path, tmp_path: Path, syncs: list[Path]) -> None:
    d, stack = fresh(lab, tmp_path)
    out = ok(d, "bundle", "dev-0001", "dev-0002", "--platform", "all", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert syncs == [d / "bundles"]  # one sync for the run, after the last rename
    assert "2 kit(s) written" in out and "password from PKI_PASSWORD" in out and "verify-bundle" in out
    folder = d / "bundles" / "dev-0001"
    assert mode(d / "bundles") == 0o700 and mode(folder) == 0o700
    assert files_of(folder) == sorted(["manifest.json", "manifest.sig", *WINDOWS_FILES, *UNIX_FILES])
    assert mode(folder / "windows/device.pfx") == 0o600 and mode(folder / "unix/device.key") == 0o600
    assert not (d / "passwords.csv").exists()
    # --platform all: the UNIX key is encrypted with the PFX's password, never in clear next to a PFX.
    pem_key = (folder / "unix/device.key").read_bytes()
    assert pem_key.startswith((b"-----BEGIN ENCRYPTED " + b"PRIVATE KEY-----"))
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem_key, None)
    unix_key = serialization.load_pem_private_key(pem_key, SECRET.encode())
    assert "openssl pkey -in device.key" in (folder / "unix/INSTALL.txt").read_text()

    key, cert, extra = load_pfx(folder, SECRET)
    assert extra == []  # leaf and key only: install.ps1 puts the CAs in Root/CA, not in My
    assert unix_key.private_numbers() == key.private_numbers()
    raw = (folder / "windows/device.pfx").read_bytes()
    aes256_cbc, pbkdf2 = bytes.fromhex("060960864801650304012a"), bytes.fromhex("06092a864886f70d01050c")
    assert aes256_cbc in raw and pbkdf2 in raw  # PBES2 with PBKDF2 and AES-256-CBC
    assert cert == x509.load_pem_x509_certificate((folder / "unix/device.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=dev-0001,O=Example Corp"
    root = x509.load_der_x509_certificate((folder / "windows/root-1.cer").read_bytes())
    assert root == x509.load_pem_x509_certificate((d / "server-ca.pem").read_bytes())  # the constrained server CA, not the device root
    assert x509.load_pem_x509_certificates((folder / "unix/cert.pem").read_bytes()) == [root]

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["stack"] == "lab" and manifest["beacons"] == list(HOSTS) and manifest["device"] == "dev-0001"
    assert manifest["kitVersion"] == 2 and manifest["platform"] == "all" and manifest["encryptKey"] is True
    signer = x509.load_pem_x509_certificate((d / "kit-signer.pem").read_bytes())
    assert manifest["signer"] == signer.fingerprint(hashes.SHA1()).hex().upper() and f"signer thumbprint: {manifest['signer']}" in out
    assert sorted(manifest["files"]) == sorted([*WINDOWS_FILES, *UNIX_FILES])  # itself and its signature excluded
    host = manifest["bootstrapBeacon"]
    assert host in HOSTS and host == kit.bootstrap_host("dev-0001", list(HOSTS))
    rollout = (folder / ROLLOUT).read_bytes()
    assert b"\r" not in rollout
    assert [line for line in rollout.decode().splitlines() if not line.startswith("#")] == [
        f"MGSFT_BOOTSTRAP_DOWNLOAD=https://{host}/ManageSoftDL/", f"MGSFT_BOOTSTRAP_UPLOAD=https://{host}/ManageSoftRL/",
        "MGSFT_HTTPS_ADDCLIENTCERTIFICATEANDKEY=true", "MGSFT_HTTPS_CHECKSERVERCERTIFICATE=true",
        "MGSFT_HTTPS_CHECKCERTIFICATEREVOCATION=true", "MGSFT_HTTPS_PRIORITIZEREVOCATIONCHECKS=CRL"]
    ini = (folder / "windows/mgssetup.ini").read_bytes()
    assert ini.decode("ascii").count("\r\n") == ini.count(b"\n")  # CRLF only
    assert b"[Common]\r\nAddClientCertificateAndKey=True\r\n" in ini and f"DEPLOYSERVERURL=https://{host}/ManageSoftDL/".encode() in ini
    assert (folder / "windows/install.ps1").read_bytes() == kit.TEMPLATE.read_bytes()
    data = json.loads((folder / "windows/install.json").read_text(encoding="ascii"))
    assert data["schemaVersion"] == 2 and data["supersedes"] == []
    assert data["pfx"] == {"file": "device.pfx", "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(), "subject": "CN=dev-0001,O=Example Corp",
                           "issuer": f"CN={CA_CN},O=Example Corp", "notAfter": manifest["notAfter"]}
    device_root = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    assert sorted(data["caCertificates"], key=lambda e: e["file"]) == [
        {"file": "device-root-1.cer", "store": "CA", "thumbprint": device_root.fingerprint(hashes.SHA1()).hex().upper(), "subject": device_root.subject.rfc4514_string()},
        {"file": "root-1.cer", "store": "Root", "thumbprint": root.fingerprint(hashes.SHA1()).hex().upper(), "subject": root.subject.rfc4514_string()}]
    assert data["beaconUrls"] == [f"https://{h}/ManageSoftDL/" for h in HOSTS]
    assert data["files"] == {name: {"sha256": hashlib.sha256((folder / "windows" / name).read_bytes()).hexdigest(), "size": (folder / "windows" / name).stat().st_size}
                             for name in ("device.pfx", "device-root-1.cer", "mgssetup.ini", "root-1.cer")}
    assert (folder / "windows/kit-signer.cer").read_bytes() == signer.public_bytes(serialization.Encoding.DER)
    assert "NOT SET" in (folder / "unix/INSTALL.txt").read_text()


def test_default_platform_is_windows_without_any_key_file(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    code, out, err = pki(d, "bundle", "dev-0001", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert code == 0, err
    folder = d / "bundles" / "dev-0001"
    assert files_of(folder) == sorted(["manifest.json", "manifest.sig", *WINDOWS_FILES])
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in folder.rglob("*") if p.is_file())  # the key is only inside the PFX
    assert "made the kit signer" in err and "note: UNIX" not in err  # nothing to say about UNIX paths for a Windows kit
    assert json.loads((folder / "manifest.json").read_text())["platform"] == "windows"
    # A UNIX kit without --encrypt-key: no password at all, the key 0600; a Windows kit has no key file to encrypt.
    code, out, err = pki(d, "bundle", "dev-0002", "--platform", "unix", "--stack-config", str(stack), "--out", str(tmp_path / "u"), env={"PKI_PASSWORD": None})
    assert code == 0, err
    folder = tmp_path / "u" / "bundles" / "dev-0002"
    assert files_of(folder) == sorted(["manifest.json", "manifest.sig", *UNIX_FILES]) and not (tmp_path / "u" / "passwords.csv").exists()
    assert mode(folder / "unix/device.key") == 0o600 and (folder / "unix/device.key").read_bytes().startswith((b"-----BEGIN " + b"PRIVATE KEY-----"))
    assert "made the kit signer" not in err  # made once, then reused
    ok(d, "verify-bundle", str(folder), "--stack-config", str(stack))
    fails(d, "bundle", "dev-0003", "--encrypt-key", "--stack-config", str(stack), expect="--encrypt-key", env={"PKI_PASSWORD": SECRET})
    help_text = " ".join(pki(d, "bundle", "--help")[1].split())
    assert "most FlexNet fleets are Windows" in help_text and "Windows 10 1607 and 1703, Windows Server 2016 and older" in help_text


def test_random_passwords_csv_and_unix_paths(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    ok(d, "issue-client", "--cn", "=HYPERLINK", "--o", "Example Corp")
    out_dir = tmp_path / "out"
    code, out, err = pki(d, "bundle", "--prefix", "=", "--platform", "all", "--stack-config", str(stack), "--out", str(out_dir),
                         "--unix-client-cert", "/etc/pki/agent/device.pem", "--unix-client-key", "/etc/pki/agent/device.key", env={"PKI_PASSWORD": None})
    assert code == 0, err
    assert "note: UNIX" not in err  # the paths were given
    csv_path = out_dir / "passwords.csv"
    assert mode(csv_path) == 0o600 and not any(p.name == "passwords.csv" for p in (out_dir / "bundles").rglob("*"))
    assert "'=HYPERLINK," in csv_path.read_text()  # a spreadsheet shows it as text, not a formula
    rows = kit.read_passwords(csv_path)
    assert list(rows) == ["=HYPERLINK"] and len(rows["=HYPERLINK"]) == 24
    load_pfx(out_dir / "bundles" / "=HYPERLINK", rows["=HYPERLINK"])
    serialization.load_pem_private_key((out_dir / "bundles" / "=HYPERLINK" / "unix/device.key").read_bytes(), rows["=HYPERLINK"].encode())
    install = (out_dir / "bundles" / "=HYPERLINK" / "unix/INSTALL.txt").read_text()
    assert "/etc/pki/agent/device.pem" in install and "NOT SET" not in install
    assert "openssl pkey -in device.key -out /etc/pki/agent/device.key" in install and "chmod 600 /etc/pki/agent/device.key" in install
    # Without the paths, the command says plainly that the operator must supply them.
    code, out, err = pki(d, "bundle", "dev-0003", "--platform", "unix", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert code == 0 and "does not say where the UNIX agent reads its client certificate and key" in err and "--unix-client-cert PATH" in err


def test_kit_with_an_intermediate_ca(tmp_path: Path) -> None:
    base = tmp_path / "chained"
    d = base / "pki"
    ok(d, "init-ca", "--cn", CA_CN, "--o", "Example Corp", "--intermediate", "--crl-url", "http://crl.example.test/devices.crl", "--server-domain", "example.test")
    ok(d, "issue-server", "--dns", HOSTS[0])
    ok(d, "issue-client", "--cn", "chained-1", "--o", "Example Corp")
    (base / "Pulumi.yaml").write_text("name: flexnet-beacon\n")
    (base / "stacks").mkdir()
    stack = base / "stacks" / "Pulumi.chained.yaml"
    stack.write_text(stack_text(hosts=(HOSTS[0],), ca="pki/chain.pem"))
    ok(d, "bundle", "chained-1", "--platform", "all", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    folder = d / "bundles" / "chained-1"
    assert sorted(p.name for p in (folder / "windows").glob("*.cer")) == ["device-root-1.cer", "intermediate-1.cer", "kit-signer.cer", "root-1.cer"]
    cas = {e["file"]: (e["store"], e["subject"]) for e in json.loads((folder / "windows/install.json").read_text())["caCertificates"]}
    server_ca = x509.load_pem_x509_certificate((d / "server-ca.pem").read_bytes())
    issuing = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    device_root = x509.load_pem_x509_certificate((d / "root.pem").read_bytes())
    # The device chain (LocalMachine\CA, no trust: the intermediate and, for building the chain, its root) and the constrained server root.
    assert cas == {"intermediate-1.cer": ("CA", issuing.subject.rfc4514_string()), "device-root-1.cer": ("CA", device_root.subject.rfc4514_string()),
                   "root-1.cer": ("Root", server_ca.subject.rfc4514_string())}
    sent = x509.load_pem_x509_certificates((folder / "unix/device.pem").read_bytes())
    assert [c.subject for c in sent[1:]] == [x509.load_pem_x509_certificate((d / "ca.pem").read_bytes()).subject]  # the intermediate, not the root
    out = ok(d, "verify-bundle", str(folder), "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert "1 ok, 0 failed" in out


# ---------------------------------------------------------------------------------------------
# verify-bundle


def test_verify_bundle_accepts_and_finds_every_defect(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    ok(d, "bundle", "dev-0001", "dev-0002", "dev-0003", "gone-1", "--platform", "all", "--stack-config", str(stack), env={"PKI_PASSWORD": None})
    bundles = d / "bundles"
    out = ok(d, "verify-bundle", str(bundles), "--stack-config", str(stack))
    assert sum(line.startswith("ok ") for line in out.splitlines()) == 4 and "4 ok, 0 failed" in out

    def verdicts(*extra: str, env: dict[str, str | None] | None = None) -> dict[str, list[str]]:
        code, out, err = pki(d, "verify-bundle", str(bundles), "--stack-config", str(stack), "--json", *extra, env=env)
        assert code in (0, 1), err
        return {k["device"]: k["problems"] for k in json.loads(out)["kits"]}

    ok(d, "revoke", "gone-1", "--reason", "keyCompromise")
    ok(d, "crl")
    (bundles / "dev-0001" / "windows/mgssetup.ini").write_bytes(b"[Common]\r\nAddClientCertificateAndKey=False\r\n")
    os.chmod(bundles / "dev-0002" / "unix/device.key", 0o644)
    (bundles / "dev-0003" / "windows/extra.ps1").write_text("Stop-Computer\n")
    found = verdicts()
    assert found["gone-1"] == [found["gone-1"][0]] and "403.13 revoked" in found["gone-1"][0]
    assert any("windows/mgssetup.ini differs from its SHA-256 and size in manifest.json" in p for p in found["dev-0001"])
    assert any("windows/mgssetup.ini differs from its SHA-256 and size in windows/install.json" in p for p in found["dev-0001"])
    assert any("unix/device.key is readable by others" in p for p in found["dev-0002"])
    assert any("windows/extra.ps1 is not listed in manifest.json" in p for p in found["dev-0003"])
    assert any("windows/extra.ps1 is not listed in windows/install.json" in p for p in found["dev-0003"])

    # A rollout file rewritten with CRLF and another host, manifest updated to match: the signature
    # fails; and were the kit signed again with the PKI's own key (a faulty bundle), the content
    # checks still catch it.
    folder = bundles / "dev-0003"
    (folder / "windows/extra.ps1").unlink()
    rollout = (folder / ROLLOUT).read_bytes().replace(b"\n", b"\r\n").replace(b"beacon1", b"rogue1").replace(b"beacon2", b"rogue1")
    (folder / ROLLOUT).write_bytes(rollout)
    rehash(folder)
    assert verdicts()["dev-0003"] == ["manifest.sig: the signature over manifest.json does not verify with the kit signer "
                                      f"{json.loads((folder / 'manifest.json').read_text())['signer']} (manifest.json was changed after it was signed, or another key signed it)"]
    sign_with(folder, pki_signer_key(d))
    problems = verdicts()["dev-0003"]
    assert any("CR characters" in p for p in problems) and any("not a beacon of the stack" in p for p in problems)

    # Time and trust: --min-days beyond the certificate, and a stack trusting another CA.
    clean = tmp_path / "clean"
    ok(d, "bundle", "dev-0001", "--stack-config", str(stack), "--out", str(clean), env={"PKI_PASSWORD": SECRET})
    code, out, _ = pki(d, "verify-bundle", str(clean / "bundles"), "--stack-config", str(stack), "--min-days", "400", env={"PKI_PASSWORD": SECRET})
    assert code == 1 and "less than --min-days 400 days" in out
    other = tmp_path / "other"
    ok(other, "init-ca", "--cn", "Other CA")
    shutil.copy(other / "ca.pem", stack.parent.parent / "certs" / "other.pem")
    stranger = stack.parent / "Pulumi.stranger.yaml"
    stranger.write_text(stack_text(ca="certs/other.pem"))
    code, out, _ = pki(d, "verify-bundle", str(clean / "bundles"), "--stack-config", str(stranger), env={"PKI_PASSWORD": SECRET})
    assert code == 1 and "403.16 untrusted" in out and "made for stack lab, not stranger" in out
    fails(d, "verify-bundle", str(clean / "bundles"), "--stack-config", str(stack), expect="set it to verify them", env={"PKI_PASSWORD": None})
    fails(d, "verify-bundle", str(clean / "bundles"), "--stack-config", str(stack), "--signer", "12AB", expect="--signer: got '12AB'", env={"PKI_PASSWORD": SECRET})
    fails(d, "verify-bundle", str(clean / "bundles"), "--beacon-host", HOSTS[0], expect="which stack?")
    code, out, _ = pki(d, "verify-bundle", str(clean / "bundles"), "--stack-config", str(stack), env={"PKI_PASSWORD": WRONG_SECRET})
    assert code == 1 and "does not open with its password" in out


# ---------------------------------------------------------------------------------------------
# Real handshakes: the kit's files against an OpenSSL server that requires the stack's CA


def _handshake(port: int, host: str, ca: Path, cert: Path, key: Path) -> bool:
    """What the agent does with the kit: trust cert.pem for the beacon named in the rollout file,
    present device.pem/device.key, GET /ManageSoftDL/."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(cert, key)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET /ManageSoftDL/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    except (ssl.SSLError, OSError):
        return False
    return data.startswith(b"HTTP/1.1 200") and data.endswith(b"beacon ok\n")


def test_kits_pass_a_real_mutual_tls_handshake_and_a_revoked_one_is_refused(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    ok(d, "bundle", "dev-0001", "gone-1", "--platform", "all", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    ok(d, "revoke", "gone-1", "--reason", "keyCompromise")
    ok(d, "crl")
    server_name = HOSTS[0]
    server = BeaconServer(d / "issued" / f"{server_name}.pem", d / "private" / f"{server_name}.key",
                          [stack.parent.parent / "certs" / "ca.pem"], [d / "crl.pem"], chain_crl_check=False)
    try:
        for name, accepted in (("dev-0001", True), ("gone-1", False)):
            folder = d / "bundles" / name
            host = json.loads((folder / "manifest.json").read_text())["bootstrapBeacon"]
            rollout = (folder / ROLLOUT).read_text()
            assert f"MGSFT_BOOTSTRAP_DOWNLOAD=https://{host}/ManageSoftDL/" in rollout
            # UNIX: the PEM pair and the CA bundle as they are in the kit, the key decrypted as
            # unix/INSTALL.txt says (openssl pkey with the kit's password).
            clear_key = tmp_path / f"unix-{name}.key"
            decrypted = subprocess.run(["openssl", "pkey", "-in", str(folder / "unix/device.key"), "-out", str(clear_key), "-passin", "env:KIT_PASSWORD"],
                                       env={**os.environ, "KIT_PASSWORD": SECRET}, capture_output=True, text=True, timeout=30)
            assert decrypted.returncode == 0, decrypted.stderr
            server.drain()
            assert _handshake(server.port, host, folder / "unix/cert.pem", folder / "unix/device.pem", clear_key) is accepted
            event = server.next_event()
            assert event.accepted is accepted and (accepted or "certificate revoked" in event.detail), event.detail
            # Windows: what install.ps1 imports (the PFX, the root .cer), presented the same way.
            key, cert, _ = load_pfx(folder, SECRET)
            pem_dir = tmp_path / f"win-{name}"
            pem_dir.mkdir()
            (pem_dir / "device.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (pem_dir / "device.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            root = x509.load_der_x509_certificate((folder / "windows/root-1.cer").read_bytes())
            (pem_dir / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
            server.drain()
            assert _handshake(server.port, host, pem_dir / "root.pem", pem_dir / "device.pem", pem_dir / "device.key") is accepted
            assert server.next_event().accepted is accepted
    finally:
        server.close()
    code, out, _ = pki(d, "verify-bundle", str(d / "bundles"), "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert code == 1 and "ok    dev-0001" in out and "FAIL  gone-1: the beacons would answer 403.13 revoked" in out


# ---------------------------------------------------------------------------------------------
# Bulk: resume after an interruption, damaged kits, stale kits


def test_interrupted_run_resumes_without_duplicates_or_half_written_kits(lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d, stack = fresh(lab, tmp_path)
    ok(d, "issue-client", "--count", "6", "--prefix", "bulk-", "--o", "Example Corp")
    real_write = bundle_module.Plan.write
    calls = {"n": 0}

    def interrupted(self: Any, name: str) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            # Ctrl-C while the fourth kit is being written: its temporary directory is left over.
            (self.root / ".tmp-interrupted").mkdir()
            (self.root / ".tmp-interrupted" / "manifest.json").write_text("{}")
            raise KeyboardInterrupt
        real_write(self, name)

    args = ("bundle", "--prefix", "bulk-", "--stack-config", str(stack), "--jobs", "1")
    monkeypatch.setattr(bundle_module.Plan, "write", interrupted)
    code, _, err = pki(d, *args, env={"PKI_PASSWORD": None})
    assert code == 130 and "3 of 6 kit(s) complete" in err and "run the same command again" in err
    bundles = d / "bundles"
    assert sorted(p.name for p in bundles.iterdir() if not p.name.startswith(".")) == ["bulk-0001", "bulk-0002", "bulk-0003"]
    rows_before = kit.read_passwords(d / "passwords.csv")
    assert len(rows_before) == 6  # recorded before any kit was written
    monkeypatch.setattr(bundle_module.Plan, "write", real_write)
    # A crash before the final sync can leave a renamed kit with a short file: it is rebuilt.
    (bundles / "bulk-0002" / "windows" / "mgssetup.ini").write_bytes(b"")
    out = ok(d, *args, env={"PKI_PASSWORD": None})
    assert "4 kit(s) written, 2 complete kit(s) skipped" in out
    assert sorted(p.name for p in bundles.iterdir()) == [f"bulk-000{i}" for i in range(1, 7)]  # no .tmp-*, no duplicates
    rows = kit.read_passwords(d / "passwords.csv")
    assert rows["bulk-0001"] == rows_before["bulk-0001"] and rows["bulk-0003"] == rows_before["bulk-0003"]
    for i in range(1, 7):
        load_pfx(bundles / f"bulk-000{i}", rows[f"bulk-000{i}"])  # every kit opens with its recorded password
    ok(d, "verify-bundle", str(bundles), "--stack-config", str(stack), env={"PKI_PASSWORD": None})
    assert "0 kit(s) written, 6 complete kit(s) skipped" in ok(d, *args, "--jobs", "2", env={"PKI_PASSWORD": None})


def test_parallel_run_and_stale_kits(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    ok(d, "issue-client", "--count", "8", "--prefix", "par-", "--o", "Example Corp")
    ok(d, "bundle", "--prefix", "par-", "--stack-config", str(stack), "--jobs", "2", env={"PKI_PASSWORD": SECRET})
    ok(d, "verify-bundle", str(d / "bundles"), "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    line = fails(d, "bundle", "--prefix", "par-", "--stack-config", str(stack), "--beacon-host", HOSTS[1], expect="--force", env={"PKI_PASSWORD": SECRET})
    assert "8 kit(s) exist with other settings" in line and "beacons differ" in line
    out = ok(d, "bundle", "--prefix", "par-", "--stack-config", str(stack), "--beacon-host", HOSTS[1], "--force", env={"PKI_PASSWORD": SECRET})
    assert "8 kit(s) written" in out
    assert all(json.loads((p / "windows/install.json").read_text())["beaconUrls"] == [f"https://{HOSTS[1]}/ManageSoftDL/"] for p in (d / "bundles").iterdir())
    assert not [p for p in (d / "bundles").iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------
# Hostile input


def test_hostile_device_names_stay_data(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    ok(d, "bundle", HOSTILE, UNICODE, "--platform", "all", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    for name in (HOSTILE, UNICODE):
        folder = d / "bundles" / name
        assert folder.is_dir() and folder.resolve().parent == (d / "bundles").resolve()
        assert (folder / "windows/install.ps1").read_bytes() == kit.TEMPLATE.read_bytes()  # no device data in code
        data = json.loads((folder / "windows/install.json").read_text(encoding="ascii"))
        assert data["device"] == name
        for agent_file in (ROLLOUT, "windows/mgssetup.ini", "unix/UNIXConfig.ini"):
            text = (folder / agent_file).read_bytes()
            assert name.encode() not in text and b"Stop-Computer" not in text
            text.decode("ascii")
    ok(d, "verify-bundle", str(d / "bundles"), "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    for bad in ("../x", "a\r\nMGSFT_X=1", "..", ".hidden", "a/b", "a\\b", "x\u2028y"):
        fails(d, "bundle", bad, "--stack-config", str(stack), expect="is not usable", env={"PKI_PASSWORD": SECRET})
    assert sorted(p.name for p in (d / "bundles").iterdir()) == sorted([HOSTILE, UNICODE])
    assert not (d / "x").exists() and not (d.parent / "x").exists()
    # A symbolic link planted where a kit goes is replaced, never written through.
    outside = tmp_path / "outside"
    outside.mkdir()
    (d / "bundles" / "dev-0001").symlink_to(outside, target_is_directory=True)
    ok(d, "bundle", "dev-0001", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert not (d / "bundles" / "dev-0001").is_symlink() and (d / "bundles" / "dev-0001" / "manifest.json").is_file()
    assert list(outside.iterdir()) == [] and not [p for p in (d / "bundles").iterdir() if p.name.startswith(".")]


def test_a_hand_edited_index_cannot_steer_paths(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    index = json.loads((d / "index.json").read_text())
    index["certificates"]["../../escaped"] = dict(index["certificates"]["dev-0001"])
    (d / "index.json").write_text(json.dumps(index))
    code, _, err = pki(d, "bundle", "--all-clients", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert code == 2 and "Traceback" not in err and "escaped" in err
    assert not (d.parent / "escaped").exists() and not (d / "escaped").exists()
    assert not (d / "bundles").exists() or not any((d / "bundles").iterdir())


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--beacon-host", "beacon1.example.test\r\nMGSFT_X=1"], "--beacon-host"),
        (["--beacon-host", "beacon1.example.test/ManageSoftDL/?x"], "not a URL"),
        (["--beacon-host", "10.0.0.5"], "not an IP address"),
        (["--beacon-host", "bücher.example.test"], "letters, digits, hyphens"),
        (["--beacon-host", "other.example.test", "--stack", "lab"], "is not a beacon of the stack"),
        (["--stack", "../lab"], "--stack: got '../lab'"),
        (["--stack", "lab", "--stack-config", "x.yaml"], "not both"),
        (["--stack", "nostack"], "no "),
        ([], "which beacons?"),
        (["--stack", "lab", "--unix-client-cert", "relative/path"], "--unix-client-cert"),
        (["--stack", "lab", "--unix-client-key", "/a b"], "--unix-client-key"),
    ],
)
def test_bad_targets_are_refused(lab: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], expect: str) -> None:
    monkeypatch.chdir(lab)  # --stack lab reads ./stacks/Pulumi.lab.yaml of this project
    fails(lab / "pki", "bundle", "dev-0001", *args, "--out", str(lab / "never"), expect=expect, env={"PKI_PASSWORD": SECRET})
    assert not (lab / "never").exists() or not any((lab / "never" / "bundles").iterdir())


def test_beacons_from_stack_outputs_and_refusals(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    bare = stack.parent / "Pulumi.bare.yaml"
    bare.write_text(stack_text(hosts=()))
    fails(d, "bundle", "dev-0001", "--stack-config", str(bare), expect="has no beaconHostnames", env={"PKI_PASSWORD": SECRET})
    outputs = tmp_path / "outputs.json"
    beacons = [{"name": f"beacon-{i}", "hostname": h, "agentUrls": {"download": f"https://{h}/ManageSoftDL/", "upload": f"https://{h}/ManageSoftRL/"}} for i, h in enumerate(HOSTS, 1)]
    outputs.write_text(json.dumps({"beacons": beacons}))
    out = ok(d, "bundle", "dev-0001", "--stack-config", str(bare), "--stack-outputs", str(outputs), env={"PKI_PASSWORD": SECRET})
    assert "from stack outputs" in out
    beacons[1]["agentUrls"]["upload"] = "https://elsewhere.example.test/ManageSoftRL/"
    outputs.write_text(json.dumps({"beacons": beacons}))
    fails(d, "bundle", "dev-0002", "--stack-config", str(bare), "--stack-outputs", str(outputs), expect="agentUrls.upload", env={"PKI_PASSWORD": SECRET})
    # Devices and CAs the kit must not be made for.
    ok(d, "revoke", "gone-1")
    fails(d, "bundle", "gone-1", "--stack-config", str(stack), expect="is revoked", env={"PKI_PASSWORD": SECRET})
    fails(d, "bundle", HOSTS[0], "--stack-config", str(stack), expect="not a device (client) certificate", env={"PKI_PASSWORD": SECRET})
    fails(d, "bundle", "dev-0001", "--all-clients", "--stack-config", str(stack), expect="one of them", env={"PKI_PASSWORD": SECRET})
    fails(d, "bundle", "dev-0001", "--stack-config", str(stack), expect="empty PFX password", env={"PKI_PASSWORD": ""})
    fails(d, "bundle", "dev-0001", "--stack-config", str(stack), expect="expected at least 12", env={"PKI_PASSWORD": SHORT_SECRET})
    ok(d, "bundle", "dev-0001", "--stack-config", str(stack), "--allow-short-password", "--out", str(tmp_path / "short"), env={"PKI_PASSWORD": SHORT_SECRET})
    other = tmp_path / "other"
    ok(other, "init-ca", "--cn", "Other CA")
    ok(other, "issue-client", "--cn", "stray")
    fails(other, "bundle", "stray", "--stack-config", str(stack), expect="does not trust this PKI's issuing CA", env={"PKI_PASSWORD": SECRET})
    fails(other, "bundle", "stray", "--beacon-host", HOSTS[0], expect="--server-ca FILE", env={"PKI_PASSWORD": SECRET})
    ok(other, "bundle", "stray", "--platform", "all", "--beacon-host", HOSTS[0], "--server-ca", str(d / "server-ca.pem"), env={"PKI_PASSWORD": SECRET})
    kit_dir = other / "bundles" / "stray"
    server_ca = x509.load_pem_x509_certificate((d / "server-ca.pem").read_bytes())
    assert x509.load_pem_x509_certificates((kit_dir / "unix/cert.pem").read_bytes()) == [server_ca]
    # The server root from --server-ca; the other PKI's own (unconstrained) device root goes to CA, never Root.
    assert sorted(p.name for p in (kit_dir / "windows").glob("*.cer")) == ["device-root-1.cer", "kit-signer.cer", "root-1.cer"]
    assert x509.load_der_x509_certificate((kit_dir / "windows/root-1.cer").read_bytes()) == server_ca


# ---------------------------------------------------------------------------------------------
# install.ps1: static, parsed, linted


def test_install_script_parses_lints_and_takes_data_only() -> None:
    """The static template as a kit carries it: parsed, linted, no code built from data, and the
    parameters of kit format 2 (its verification path: tests/pki/test_install_script.py)."""
    text = kit.TEMPLATE.read_text(encoding="ascii")
    tree = ps_lint.parse(text)
    assert ps_lint.defects(tree) == []
    assert ps_lint.lint(text) == []
    assert ps_lint.string_variable_problems(tree) == []
    code = text.lower()
    for banned in ("invoke-expression", "iex ", "add-type", "[scriptblock]::create", "expandstring", "invoke-command"):
        assert banned not in code, banned
    assert set(ps_lint.script_parameters(tree)) == {"SignerThumbprint", "PfxPasswordFile", "PfxPassword", "KeepPfx", "CheckOnly", "ProbeBeacons"}
    for name in (kit.INSTALL_JSON, kit.INSTALL_SIG, kit.SIGNER_CER):
        assert f"'{name}'" in text, name
