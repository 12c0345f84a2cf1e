"""`python -m scripts.pki` against hostile input, hostile files and hostile timing (issue 15).

- No certificate outlives its record: bulk runs killed with SIGTERM and SIGKILL at seeded
  random points (subprocesses: only a process can be killed); afterwards, once the next command
  has recovered the issuing journal, every certificate file on disk is in index.json under its
  own serial, none is half there, every one can be revoked (also one only in the journal), and
  the series continues with --start.
- The CA refuses what a relying party would reject: a revoked intermediate (in index.json, or
  only in the root's CRL), a ca.key that is not ca.pem's, a leaf with a CA's subject, a PFX
  password shorter than 12 characters (unless --allow-short-password).
- Bounded inputs: --count capped (in --help too), /dev/zero, FIFOs and directories where files
  are read, YAML aliases in --stack-config, non-UTF-8 files, arguments and PKI_PASSWORD.
- Permissions and integrity: init-ca makes its directory 0700 and says the key is unencrypted;
  a hand-edited index.json (serial or structure) is refused naming the entry; export-pfx with no
  terminal is one line; `check --chain F CERT` takes CERT.

Every refusal is one line on stderr, exit 2, no traceback.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import ROOT
from pki_cli import fails, init_ca, ok, pki, read_index
from scripts.pki.inputs import MIN_PFX_PASSWORD, PASSWORD_ENV

CRL_URL = "http://crl.example.com/devices-ca.crl"


def init(directory: Path, *extra: str) -> Path:
    return init_ca(directory, "Hostile Devices CA", CRL_URL, *extra)


index = read_index


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def password(length: int) -> dict[str, str]:
    """PKI_PASSWORD of that many characters (made here: no literal password in the source)."""
    return {PASSWORD_ENV: "".join(chr(ord("a") + i % 26) for i in range(length))}


def pki_process(*args: str | bytes, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.pki", *args], cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = init(tmp_path_factory.mktemp("hostile") / "pki")
    ok(d, "issue-client", "--cn", "laptop-01")
    return d


# ---------------------------------------------------------------------------------------------
# 2. No certificate outlives its record


def _assert_every_file_recorded(d: Path) -> dict[str, Any]:
    certificates = index(d)["certificates"]
    on_disk = {p.stem: p for p in (d / "issued").glob("*.pem")}
    assert set(on_disk) == set(certificates), "certificate files and index.json disagree"
    for name, path in on_disk.items():
        assert serial_of(path) == int(certificates[name]["serial"], 16), name
        if certificates[name]["source"] == "key":
            assert (d / "private" / f"{name}.key").is_file(), name
    assert {p.stem for p in (d / "private").glob("*.key")} <= set(certificates)
    assert not list(d.rglob("*.tmp")) and not (d / "issuing.journal").exists()
    return certificates


def test_killed_bulk_runs_leave_no_unrecorded_certificate(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    rng = random.Random(15)  # deterministic "random" kill points
    runs = [("T1-", signal.SIGTERM), ("K1-", signal.SIGKILL), ("T2-", signal.SIGTERM), ("K2-", signal.SIGKILL)]
    for prefix, sig in runs:
        process = pki_process("--dir", str(d), "issue-client", "--count", "5000", "--prefix", prefix)
        assert process.stderr is not None
        first = process.stderr.readline()  # "issued 100/5000": signing is under way
        assert first.startswith(b"issued "), first
        time.sleep(rng.uniform(0.0, 0.25))
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
        text = err.decode()
        if sig == signal.SIGTERM:
            assert process.returncode == 143 and "pki: terminated (SIGTERM)" in text and "Traceback" not in text, text
            assert "certificate(s) issued and recorded in index.json" in text and "not issued" in text, text
        else:
            assert process.returncode == -signal.SIGKILL
            # Before any recovery: a certificate of the killed run is only in the journal, yet
            # revoke --serial finds it (the lock recovers the journal first).
            recorded = index(d)["certificates"]
            journal_only = sorted(p for p in (d / "issued").glob(f"{prefix}*.pem") if p.stem not in recorded)
            assert journal_only, "the killed run wrote no file: kill later"
            out = ok(d, "revoke", "--serial", f"{serial_of(journal_only[0]):x}")
            assert f"revoked {journal_only[0].stem} " in out
    code, out, err = pki(d, "list", "--json")  # the next command: recovers whatever is left
    assert code == 0 and "Traceback" not in err
    certificates = _assert_every_file_recorded(d)
    assert all(any(name.startswith(p) for p, _ in runs) for name in certificates)
    # Every one can be revoked: a sample of each run, by serial, including the last one of each.
    for prefix, _ in runs:
        names = sorted(n for n in certificates if n.startswith(prefix))
        assert names, prefix
        for name in {names[-1], rng.choice(names)}:
            if certificates[name]["status"] == "valid":
                ok(d, "revoke", "--serial", certificates[name]["serial"])
        # The series continues where it stopped; the names already issued are refused, clearly.
        last = int(names[-1][len(prefix):])
        ok(d, "issue-client", "--count", "2", "--prefix", prefix, "--start", str(last + 1))
        fails(d, "issue-client", "--count", "2", "--prefix", prefix, expect=f"name '{prefix}0001' is already issued")
    ok(d, "crl")
    _assert_every_file_recorded(d)


def test_a_certificate_file_no_record_names_can_still_be_revoked(tmp_path: Path) -> None:
    """E.g. left by an older version killed mid-run: revoke --serial finds it in issued/."""
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--cn", "orphan")
    data = index(d)
    serial = data["certificates"].pop("orphan")["serial"]
    (d / "index.json").write_text(json.dumps(data))
    out = ok(d, "revoke", "--serial", serial)
    assert "revoked orphan" in out and index(d)["certificates"]["orphan"]["status"] == "revoked"
    fails(d, "revoke", "--serial", "7" * 30, expect=f"no certificate with serial {'7' * 30} in")


# ---------------------------------------------------------------------------------------------
# 3. The CA refuses to issue what a relying party would reject


def test_a_revoked_intermediate_issues_nothing(tmp_path: Path) -> None:
    d = init(tmp_path / "pki", "--intermediate")
    serial = index(d)["authorities"]["issuing"]["serial"]
    ok(d, "revoke", "--serial", serial, "--reason", "keyCompromise")
    ok(d, "crl")
    fails(d, "issue-client", "--cn", "late", expect="is revoked")
    fails(d, "issue-server", "--dns", "beacon.example.com", expect="is revoked")
    # index.json restored from before the revocation: the root's CRL still says so.
    data = index(d)
    data["authorities"]["issuing"].update(status="valid", revokedAt=None, reason=None)
    (d / "index.json").write_text(json.dumps(data))
    fails(d, "issue-client", "--cn", "late", expect="is listed in the root's CRL")
    assert not (d / "issued" / "late.pem").exists()


def test_a_key_that_is_not_the_ca_s_signs_nothing(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    other = ec.generate_private_key(ec.SECP256R1())
    (d / "ca.key").write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    fails(d, "issue-client", "--cn", "device", expect="ca.key does not belong to")
    fails(d, "crl", expect="ca.key does not belong to")  # was: InvalidSignature traceback
    assert not list((d / "issued").glob("*.pem"))


def test_a_leaf_with_a_ca_subject_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    ok(d, "init-ca", "--cn", "Plain CA", "--crl-url", CRL_URL)
    fails(d, "issue-client", "--cn", "Plain CA", expect="is the subject of the CA (ca.pem)")
    fails(d, "issue-client", "--cn", "plain ca", expect="is the subject of the CA")
    ok(d, "issue-client", "--cn", "Plain CA", "--o", "Devices")  # another subject: fine


def test_short_pfx_passwords_are_refused_unless_allowed(shared: Path) -> None:
    line = fails(shared, "export-pfx", "laptop-01", expect=f"{PASSWORD_ENV}: 8 characters; expected at least {MIN_PFX_PASSWORD}", env=password(8))
    assert "--allow-short-password" in line and "offline" in line
    ok(shared, "export-pfx", "laptop-01", env=password(MIN_PFX_PASSWORD))
    ok(shared, "export-pfx", "laptop-01", "--allow-short-password", env=password(8))


# ---------------------------------------------------------------------------------------------
# 4. Bounded inputs


def test_count_is_capped_and_the_cap_is_in_help(shared: Path) -> None:
    fails(shared, "issue-client", "--count", str(10**12), "--prefix", "x-", expect="expected 1 or more and at most 100000")
    help_text = subprocess.run([sys.executable, "-m", "scripts.pki", "issue-client", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "(1 to 100000)" in " ".join(help_text.stdout.split())


def test_devices_fifos_and_directories_are_refused_where_files_are_read(shared: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in (("/dev/zero", "a character device"), (str(fifo), "a FIFO (named pipe)"), (str(tmp_path), "a directory")):
        fails(shared, "inspect", path, expect=f"{path}: {kind}; expected a regular file")
        fails(shared, "check", "laptop-01", "--chain", path, expect=f"--chain {path}: {kind}")
        fails(shared, "check", "laptop-01", "--crl", path, expect=f"--crl {path}: {kind}")
        fails(shared, "issue-client", "--from-csv", path, expect=kind)
        if path != str(tmp_path):  # a directory is a folder of CSRs to sign-csr
            fails(shared, "sign-csr", path, expect=kind)
        fails(shared, "check", "laptop-01", "--stack-config", path, expect=kind)
    # A PKI whose CA certificate is /dev/zero (or a FIFO): one line, not MemoryError or a hang.
    d = init(tmp_path / "pki")
    (d / "ca.pem").unlink()
    (d / "ca.pem").symlink_to("/dev/zero")
    fails(d, "issue-client", "--cn", "x", expect="ca.pem: unreadable (a character device")
    (d / "ca.pem").unlink()
    os.mkfifo(d / "ca.pem")
    fails(d, "crl", expect="ca.pem: unreadable (a FIFO")


def test_stack_config_aliases_and_bad_encoding(shared: Path, tmp_path: Path) -> None:
    bomb = tmp_path / "Pulumi.bomb.yaml"
    levels = ['  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb.write_text("config:\n" + "\n".join(levels) + "\n")
    started = time.monotonic()
    fails(shared, "check", "laptop-01", "--stack-config", str(bomb), expect="anchors and aliases")
    assert time.monotonic() - started < 2
    latin = tmp_path / "Pulumi.latin.yaml"
    latin.write_bytes(b"config:\n  flexnet-beacon:owner: Jos\xe9\n")
    fails(shared, "check", "laptop-01", "--stack-config", str(latin), expect="not UTF-8 text")


def test_non_utf8_values_are_one_line(shared: Path) -> None:
    """What Python makes of non-UTF-8 argv (surrogateescape), in process; the bytes themselves
    through a real process below."""
    bad = os.fsdecode(b"LAPTOP-\xff")
    fails(shared, "issue-client", "--cn", bad, expect="--cn: got b'LAPTOP-\\xff', which is not valid UTF-8")
    fails(shared, "issue-client", "--count", "2", "--prefix", bad, expect="--prefix: got b'LAPTOP-\\xff'")
    fails(shared, "issue-client", f"--prefix={bad}", "--count", "2", expect="--prefix: got b'LAPTOP-\\xff'")
    fails(shared, "export-pfx", "laptop-01", expect=f"{PASSWORD_ENV}: not valid UTF-8 text (not shown)", env={PASSWORD_ENV: os.fsdecode(b"\xff" * 16)})


def test_non_utf8_argv_bytes_in_a_real_process(tmp_path: Path) -> None:
    process = pki_process("--dir", str(tmp_path), "issue-client", "--count", "2", "--prefix", b"P\xff-")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == b""
    assert err.decode() == "pki: error: --prefix: got b'P\\xff-', which is not valid UTF-8; expected UTF-8 text\n"


# ---------------------------------------------------------------------------------------------
# 6. Permissions and integrity


def test_init_ca_makes_its_directory_private_and_says_the_key_is_unencrypted(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    code, out, err = pki(d, "init-ca", "--cn", "Open CA", "--crl-url", CRL_URL)
    assert code == 0, err
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert "was mode 0777; made it 0700" in err
    assert "ca.key is NOT encrypted" in out and "encrypted disk" in out


def test_hand_edited_index_is_refused_naming_the_entry(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--count", "2", "--prefix", "e-")
    good = index(d)
    # A serial that is not the file's: revoke, export and crl refuse; nothing changes.
    edited = json.loads(json.dumps(good))
    edited["certificates"]["e-0001"]["serial"] = "7" * 30
    (d / "index.json").write_text(json.dumps(edited))
    fails(d, "revoke", "e-0001", expect="entry certificates.e-0001 has serial")
    fails(d, "export-pfx", "e-0001", expect="entry certificates.e-0001 has serial", env=password(16))
    edited["certificates"]["e-0001"].update(status="revoked", revokedAt="2026-01-01T00:00:00Z", reason="superseded")
    (d / "index.json").write_text(json.dumps(edited))
    fails(d, "crl", expect="entry certificates.e-0001 has serial")
    # Wrong structure: one line naming what is wrong, for every verb that reads the index.
    for change, expect in [
        (lambda data: data.update(certificates=[]), "'certificates' is not an object"),
        (lambda data: data["certificates"]["e-0002"].pop("serial"), "entry certificates.e-0002: serial None"),
        (lambda data: data["certificates"]["e-0002"].update(status="bogus"), "entry certificates.e-0002: status 'bogus'"),
        (lambda data: data["certificates"]["e-0002"].update(serial=data["certificates"]["e-0001"]["serial"]), "is also the serial of certificates.e-0001"),
        (lambda data: data["certificates"].update({"e-0002": "text"}), "entry certificates.e-0002: expected an object"),
    ]:
        data = json.loads(json.dumps(good))
        change(data)
        (d / "index.json").write_text(json.dumps(data))
        for verb in (["list"], ["crl"], ["revoke", "e-0001"], ["issue-client", "--cn", "z"]):
            fails(d, *verb, expect=expect)
    (d / "index.json").write_bytes(b"\xff\xfe")
    fails(d, "list", expect="not UTF-8 text")


def test_export_pfx_without_a_terminal_is_one_line(shared: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "scripts.pki", "--dir", str(shared), "export-pfx", "laptop-01"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, start_new_session=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"pki: error: no terminal to ask for the PFX password on: set {PASSWORD_ENV}\n"


def test_check_chain_before_the_certificate(shared: Path) -> None:
    out = ok(shared, "check", "--chain", str(shared / "ca.pem"), str(shared / "issued" / "laptop-01.pem"))
    assert out.strip() == "accept"
    out = ok(shared, "check", "--crl", str(shared / "crl.pem"), "--chain", str(shared / "ca.pem"), "laptop-01")
    assert out.strip() == "accept"
    fails(shared, "check", "--chain", str(shared / "ca.pem"), expect="check needs CERT")
