"""`pki bundle` and `pki verify-bundle`: device onboarding kits (docs/onboarding.md).

Kits for Windows and UNIX proven by verify-bundle and by real TLS handshakes on loopback against
the tests/tls OpenSSL server (client certificates required from the stack's CA, CRL checked);
install.ps1 parsed and linted; hostile device names and host names kept out of paths and agent
files; interrupted bulk runs resumed without duplicates or half-written kits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

import ps_lint
from scripts.pki import bundle as bundle_module
from scripts.pki import bundle_files as kit
from pki_cli import ok, pki
from tests.tls.conftest import BeaconServer

CA_CN = "Kit Devices CA"
HOSTS = ("beacon1.example.test", "beacon2.example.test")
HOSTILE = "'; Stop-Computer"
UNICODE = "Gerät-ü-東京"
SECRET = "kit-password-1"
SHORT_SECRET = SECRET[:5]  # under the 12 characters a shared password needs
WRONG_SECRET = SECRET + "x"
ROLLOUT = "unix/mgsft_rollout_response"


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


def stack_text(hosts: tuple[str, ...] = HOSTS, ca: str = "certs/ca.pem", extra: str = "") -> str:
    listed = "".join(f"    - {h}\n" for h in hosts)
    return (f"config:\n  aws:region: us-east-1\n  flexnet-beacon:beaconCount: {max(1, len(hosts))}\n"
            + (f"  flexnet-beacon:beaconHostnames:\n{listed}" if hosts else "")
            + f"  flexnet-beacon:clientCaCertificates:\n    - {ca}\n  flexnet-beacon:extraMappingRules:\n    - Subject.O=Example Corp\n" + extra)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a stack 'lab' whose beacons trust the PKI's CA, and the PKI."""
    base = tmp_path_factory.mktemp("kit")
    (base / "Pulumi.yaml").write_text("name: flexnet-beacon\n")
    d = base / "pki"
    ok(d, "init-ca", "--cn", CA_CN, "--o", "Example Corp", "--crl-url", "http://crl.example.test/devices.crl")
    ok(d, "issue-server", "--dns", HOSTS[0], "--dns", HOSTS[1])
    ok(d, "issue-client", "--count", "3", "--prefix", "dev-", "--o", "Example Corp")
    for name in (HOSTILE, UNICODE, "gone-1"):
        ok(d, "issue-client", "--cn", name, "--o", "Example Corp")
    (base / "certs").mkdir()
    shutil.copy(d / "ca.pem", base / "certs" / "ca.pem")
    (base / "stacks").mkdir()
    (base / "stacks" / "Pulumi.lab.yaml").write_text(stack_text())
    return base


def fresh(lab: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the lab (PKI + stack) to change: (pki dir, stack file)."""
    target = tmp_path / "lab"
    shutil.copytree(lab, target)
    return target / "pki", target / "stacks" / "Pulumi.lab.yaml"


def load_pfx(folder: Path, password: str) -> tuple[Any, x509.Certificate, list[x509.Certificate]]:
    key, cert, extra = pkcs12.load_key_and_certificates((folder / "windows/device.pfx").read_bytes(), password.encode())
    assert key is not None and cert is not None
    return key, cert, extra


# ---------------------------------------------------------------------------------------------
# What a kit holds


def test_kit_layout_modes_and_agent_files(lab: Path, tmp_path: Path, syncs: list[Path]) -> None:
    d, stack = fresh(lab, tmp_path)
    out = ok(d, "bundle", "dev-0001", "dev-0002", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert syncs == [d / "bundles"]  # one sync for the run, after the last rename
    assert "2 kit(s) written" in out and "PFX password from PKI_PASSWORD" in out and "verify-bundle" in out
    folder = d / "bundles" / "dev-0001"
    assert mode(d / "bundles") == 0o700 and mode(folder) == 0o700
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted([
        "manifest.json", "windows/device.pfx", "windows/root-1.cer", "windows/install.ps1", "windows/install.json",
        "windows/mgssetup.ini", "unix/device.pem", "unix/device.key", "unix/cert.pem", ROLLOUT, "unix/UNIXConfig.ini", "unix/INSTALL.txt"])
    assert mode(folder / "windows/device.pfx") == 0o600 and mode(folder / "unix/device.key") == 0o600
    assert not (d / "passwords.csv").exists()

    key, cert, extra = load_pfx(folder, SECRET)
    assert extra == []  # leaf and key only: install.ps1 puts the CAs in Root/CA, not in My
    raw = (folder / "windows/device.pfx").read_bytes()
    aes256_cbc, pbkdf2 = bytes.fromhex("060960864801650304012a"), bytes.fromhex("06092a864886f70d01050c")
    assert aes256_cbc in raw and pbkdf2 in raw  # PBES2 with PBKDF2 and AES-256-CBC
    assert cert == x509.load_pem_x509_certificate((folder / "unix/device.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=dev-0001,O=Example Corp"
    root = x509.load_der_x509_certificate((folder / "windows/root-1.cer").read_bytes())
    assert root == x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    assert x509.load_pem_x509_certificates((folder / "unix/cert.pem").read_bytes()) == [root]

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["stack"] == "lab" and manifest["beacons"] == list(HOSTS) and manifest["device"] == "dev-0001"
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
    assert data["pfx"]["thumbprint"] == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert data["caCertificates"] == [{"file": "root-1.cer", "store": "Root", "thumbprint": root.fingerprint(hashes.SHA1()).hex().upper(), "subject": f"CN={CA_CN},O=Example Corp"}]
    assert data["beaconUrls"] == [f"https://{h}/ManageSoftDL/" for h in HOSTS]
    assert "NOT SET" in (folder / "unix/INSTALL.txt").read_text()


def test_random_passwords_csv_and_unix_paths(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    ok(d, "issue-client", "--cn", "=HYPERLINK", "--o", "Example Corp")
    out_dir = tmp_path / "out"
    code, out, err = pki(d, "bundle", "--prefix", "=", "--stack-config", str(stack), "--out", str(out_dir),
                         "--unix-client-cert", "/etc/pki/agent/device.pem", "--unix-client-key", "/etc/pki/agent/device.key", env={"PKI_PASSWORD": None})
    assert code == 0, err
    assert "note: UNIX" not in err  # the paths were given
    csv_path = out_dir / "passwords.csv"
    assert mode(csv_path) == 0o600 and not any(p.name == "passwords.csv" for p in (out_dir / "bundles").rglob("*"))
    assert "'=HYPERLINK," in csv_path.read_text()  # a spreadsheet shows it as text, not a formula
    rows = kit.read_passwords(csv_path)
    assert list(rows) == ["=HYPERLINK"] and len(rows["=HYPERLINK"]) == 24
    load_pfx(out_dir / "bundles" / "=HYPERLINK", rows["=HYPERLINK"])
    install = (out_dir / "bundles" / "=HYPERLINK" / "unix/INSTALL.txt").read_text()
    assert "/etc/pki/agent/device.pem" in install and "NOT SET" not in install
    # Without the paths, the command says plainly that the operator must supply them.
    code, out, err = pki(d, "bundle", "dev-0003", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert code == 0 and "does not say where the UNIX agent reads its client certificate and key" in err and "--unix-client-cert PATH" in err


def test_kit_with_an_intermediate_ca(tmp_path: Path) -> None:
    base = tmp_path / "chained"
    d = base / "pki"
    ok(d, "init-ca", "--cn", CA_CN, "--o", "Example Corp", "--intermediate", "--crl-url", "http://crl.example.test/devices.crl")
    ok(d, "issue-server", "--dns", HOSTS[0])
    ok(d, "issue-client", "--cn", "chained-1", "--o", "Example Corp")
    (base / "Pulumi.yaml").write_text("name: flexnet-beacon\n")
    (base / "stacks").mkdir()
    stack = base / "stacks" / "Pulumi.chained.yaml"
    stack.write_text(stack_text(hosts=(HOSTS[0],), ca="pki/chain.pem"))
    ok(d, "bundle", "chained-1", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    folder = d / "bundles" / "chained-1"
    assert sorted(p.name for p in (folder / "windows").glob("*.cer")) == ["intermediate-1.cer", "root-1.cer"]
    stores = {e["file"]: e["store"] for e in json.loads((folder / "windows/install.json").read_text())["caCertificates"]}
    assert stores == {"intermediate-1.cer": "CA", "root-1.cer": "Root"}
    sent = x509.load_pem_x509_certificates((folder / "unix/device.pem").read_bytes())
    assert [c.subject for c in sent[1:]] == [x509.load_pem_x509_certificate((d / "ca.pem").read_bytes()).subject]  # the intermediate, not the root
    out = ok(d, "verify-bundle", str(folder), "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    assert "1 ok, 0 failed" in out


# ---------------------------------------------------------------------------------------------
# verify-bundle


def test_verify_bundle_accepts_and_finds_every_defect(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    ok(d, "bundle", "dev-0001", "dev-0002", "dev-0003", "gone-1", "--stack-config", str(stack), env={"PKI_PASSWORD": None})
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
    assert any("mgssetup.ini differs from its SHA-256" in p for p in found["dev-0001"])
    assert any("unix/device.key is readable by others" in p for p in found["dev-0002"])
    assert any("windows/extra.ps1 is not listed" in p for p in found["dev-0003"])

    # A rollout file rewritten with CRLF and another host (manifest updated to match): still caught.
    folder = bundles / "dev-0003"
    (folder / "windows/extra.ps1").unlink()
    rollout = (folder / ROLLOUT).read_bytes().replace(b"\n", b"\r\n").replace(b"beacon1", b"rogue1").replace(b"beacon2", b"rogue1")
    (folder / ROLLOUT).write_bytes(rollout)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][ROLLOUT] = {"sha256": hashlib.sha256(rollout).hexdigest(), "size": len(rollout)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
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
    ok(d, "bundle", "dev-0001", "gone-1", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
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
            # UNIX: the PEM pair and the CA bundle as they are in the kit.
            server.drain()
            assert _handshake(server.port, host, folder / "unix/cert.pem", folder / "unix/device.pem", folder / "unix/device.key") is accepted
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
    (bundles / "bulk-0002" / "unix" / "device.pem").write_bytes(b"")
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
    assert all(f"https://{HOSTS[1]}/" in (p / ROLLOUT).read_text() for p in (d / "bundles").iterdir())
    assert not [p for p in (d / "bundles").iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------
# Hostile input


def test_hostile_device_names_stay_data(lab: Path, tmp_path: Path) -> None:
    d, stack = fresh(lab, tmp_path)
    ok(d, "bundle", HOSTILE, UNICODE, "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
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
    ok(other, "bundle", "stray", "--beacon-host", HOSTS[0], "--server-ca", str(d / "ca.pem"), env={"PKI_PASSWORD": SECRET})
    kit_dir = other / "bundles" / "stray"
    assert x509.load_pem_x509_certificates((kit_dir / "unix/cert.pem").read_bytes())[0].subject.rfc4514_string() == f"CN={CA_CN},O=Example Corp"
    assert sorted(p.name for p in (kit_dir / "windows").glob("*.cer")) == ["root-1.cer", "root-2.cer"]


# ---------------------------------------------------------------------------------------------
# install.ps1: static, parsed, linted


def test_install_script_parses_lints_and_takes_data_only() -> None:
    text = kit.TEMPLATE.read_text(encoding="ascii")
    tree = ps_lint.parse(text)
    assert ps_lint.defects(tree) == []
    assert ps_lint.lint(text) == []
    assert ps_lint.string_variable_problems(tree) == []
    code = text.lower()
    for banned in ("invoke-expression", "iex ", "add-type", "[scriptblock]::create", "expandstring", "invoke-command"):
        assert banned not in code, banned
    imports = [c for c in ps_lint.commands(tree) if c.name == "Import-PfxCertificate"]
    assert len(imports) == 1 and "Exportable" not in imports[0].parameters  # the key stays on the machine
    assert {"FilePath", "CertStoreLocation", "Password"} <= set(imports[0].parameters)
    assert "'Cert:\\LocalMachine\\My'" in text and "'Cert:\\LocalMachine\\' + $store" in text
    assert "HKLM:\\SOFTWARE\\Wow6432Node\\ManageSoft Corp\\ManageSoft\\Common" in text and "HKLM:\\SOFTWARE\\ManageSoft Corp\\ManageSoft\\Common" in text
    assert "-PropertyType String" in text and "$PreferenceName = 'AddClientCertificateAndKey'" in text
    assert ps_lint.script_parameters(tree) == ["PfxPassword", "CheckOnly", "ProbeBeacons"]
    assert "install.json" in text and "ConvertFrom-Json" in text
