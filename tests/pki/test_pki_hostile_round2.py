"""`python -m scripts.pki` under hostile conditions, second round (issue 22, the PKI's points).

- Point 1: names read from the issuing journal, the renewal journal and index.json are checked
  like names on the command line; a journaled certificate is recovered only when this CA signed
  it and index.json does not know its serial. A planted line reaches no file outside the PKI,
  records nothing, and is reported and kept.
- Point 7: SIGTERM and SIGINT to `bundle` (a real process) stop its workers; kits are complete
  or absent, and the next run clears what the interrupted one left.
- Point 8: Windows device names (superscript digits, CONIN$/CONOUT$) refused; names compared
  after NFC and case folding; whitespace-only passwords refused; `bundle --out` makes no
  world-writable directory under umask 000; passwords.csv reads back every name exactly.
- Point 10: index.json's entries are checked together, once per read, not by code per entry;
  the quick check and the entry-by-entry check agree.

Every password here is made at run time; every refusal is one line on stderr, exit 2.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import os
import random
import signal
import stat
import string
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.certs import facts as cert_facts
from conftest import ROOT
from kit_lab import make_lab
from pki_cli import fails, init_ca, ok, pki, read_index
from scripts.pki import bundle as bundle_module
from scripts.pki import bundle_files as kit
from scripts.pki import entries, parallel
from scripts.pki.inputs import PASSWORD_ENV
from scripts.pki.keycrypt import CA_PASSWORD_ENV

CRL_URL = "http://crl.example.com/round2-ca.crl"


def init(directory: Path, *extra: str) -> Path:
    return init_ca(directory, "Round Two Devices CA", CRL_URL, *extra)


index = read_index


def secret(length: int = 16, alphabet: str = string.ascii_letters) -> str:
    """A password made here (no literal password in the source)."""
    rng = random.Random(length)
    return "".join(rng.choice(alphabet) for _ in range(length))


def foreign_certificate(cn: str, issuer_cn: str | None = None) -> tuple[x509.Certificate, Any]:
    """A client certificate from a CA this PKI never had (self-signed by a fresh key, or claiming
    ``issuer_cn`` as its issuer without that CA's signature)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn or cn)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert, key


def own_certificate(d: Path, cn: str) -> x509.Certificate:
    """A certificate this PKI's CA signed (with its key) that index.json does not know."""
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30)).sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]


def plant_journal(d: Path, *lines: tuple[str, x509.Certificate], kind: str = "client", source: str = "key") -> None:
    text = "".join(json.dumps({"name": name, "kind": kind, "source": source,
                               "der": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()}) + "\n" for name, cert in lines)
    (d / "issuing.journal").write_text(text)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_bytes(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def victim(path: Path) -> bytes:
    """A file outside the PKI that a planted line aims at; its content, to compare afterwards."""
    content = f"victim {path.name}\n".encode()
    path.write_bytes(content)
    return content


# ---------------------------------------------------------------------------------------------
# Point 1: the journal and the index steer no path out of the PKI


@pytest.mark.parametrize("aim", ["relative", "absolute"])
def test_a_planted_journal_line_deletes_nothing_outside_the_pki(tmp_path: Path, aim: str) -> None:
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--cn", "laptop-01")
    before = index(d)
    target = tmp_path / "victim"
    kept = victim(target.with_suffix(".key"))
    name = "../../victim" if aim == "relative" else str(target)
    assert (d / "private" / f"{name}.key").resolve() == target.with_suffix(".key")  # where the old recovery unlinked
    cert, _ = foreign_certificate("victim")
    plant_journal(d, (name, cert))
    code, out, err = pki(d, "list")
    assert code == 0 and "laptop-01" in out and "Traceback" not in err
    assert target.with_suffix(".key").read_bytes() == kept
    assert index(d) == before  # nothing recorded
    assert f"name {name!r}: it contains a path separator" in err and "left alone" in err, err
    # The line is kept for inspection, not acted on again and not in the way of the next command.
    rejected = list(d.glob("issuing.journal.rejected-*"))
    assert len(rejected) == 1 and name in rejected[0].read_text() and not (d / "issuing.journal").exists()
    code, _, err = pki(d, "list")
    assert code == 0 and "left alone" not in err


def test_a_foreign_certificate_in_the_journal_is_not_recorded_nor_exported_outside(tmp_path: Path) -> None:
    """Files planted where the old recovery looked (inside and outside the PKI): a foreign
    certificate was recorded as a valid client, and export-pfx then wrote outside."""
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--cn", "laptop-01")
    inside, inside_key = foreign_certificate("planted-1", issuer_cn="Round Two Devices CA")  # claims our CA as issuer
    outside, outside_key = foreign_certificate("outside")
    (d / "issued" / "planted-1.pem").write_bytes(pem(inside))
    (d / "private" / "planted-1.key").write_bytes(key_bytes(inside_key))
    (tmp_path / "outside.pem").write_bytes(pem(outside))
    (tmp_path / "outside.key").write_bytes(key_bytes(outside_key))
    plant_journal(d, ("planted-1", inside), ("../../outside", outside))
    code, out, err = pki(d, "list", "--json")
    assert code == 0, err
    assert [row["name"] for row in json.loads(out) if not row["name"].startswith("(")] == ["laptop-01"]
    assert "name 'planted-1': its certificate (serial" in err and "was not signed by this PKI's CA" in err, err
    assert "name '../../outside': it contains a path separator" in err
    # Its files stay (they are not ours to delete); nothing is exported for them, inside or out.
    assert (d / "issued" / "planted-1.pem").read_bytes() == pem(inside) and (d / "private" / "planted-1.key").is_file()
    ok(d, "export-pfx", "*", env={PASSWORD_ENV: secret()})
    assert sorted(p.name for p in (d / "pfx").iterdir()) == ["laptop-01.pfx"]
    assert not list(tmp_path.glob("*.pfx"))
    fails(d, "export-pfx", "planted-1", expect="unknown name 'planted-1'", env={PASSWORD_ENV: secret()})


def test_a_journal_line_may_not_take_a_name_the_pki_keeps_for_its_own_keys(tmp_path: Path) -> None:
    """Even a certificate this CA signed: private/kit-signer.key is the kit signer's key."""
    d = init(tmp_path / "pki")
    signer_key = victim(d / "private" / "kit-signer.key")
    plant_journal(d, ("kit-signer", own_certificate(d, "kit-signer")))
    code, _, err = pki(d, "list")
    assert code == 0 and "name 'kit-signer': it is reserved" in err, err
    assert (d / "private" / "kit-signer.key").read_bytes() == signer_key
    assert "kit-signer" not in index(d)["certificates"]


def test_a_journaled_certificate_of_this_ca_is_still_recovered(tmp_path: Path) -> None:
    """What recovery is for: this CA's certificate, unknown serial, files on disk -> recorded;
    files not all there -> its partial files removed. Next to a rejected line, in one journal."""
    d = init(tmp_path / "pki")
    complete, partial = own_certificate(d, "done-1"), own_certificate(d, "half-1")
    (d / "issued" / "done-1.pem").write_bytes(pem(complete))
    (d / "private" / "done-1.key").write_bytes(key_bytes(ec.generate_private_key(ec.SECP256R1())))
    (d / "private" / "half-1.key").write_bytes(key_bytes(ec.generate_private_key(ec.SECP256R1())))
    foreign, _ = foreign_certificate("x")
    plant_journal(d, ("done-1", complete), ("half-1", partial), ("../x", foreign))
    code, _, err = pki(d, "list")
    assert code == 0 and "1 certificate(s) recorded in index.json (done-1 .. done-1); 1 never completed" in err, err
    assert index(d)["certificates"]["done-1"]["serial"] == cert_facts.serial_hex(complete.serial_number)
    assert not (d / "private" / "half-1.key").exists()
    assert "1 line(s) of" in err and "name '../x'" in err


def test_an_index_entry_whose_name_leaves_the_pki_is_refused(tmp_path: Path) -> None:
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--cn", "laptop-01")
    kept = victim(tmp_path / "victim.pfx")
    data = index(d)
    data["certificates"]["../../victim"] = data["certificates"].pop("laptop-01")
    (d / "index.json").write_text(json.dumps(data))
    for verb in (["list"], ["crl"], ["export-pfx", "*"], ["revoke", "../../victim"]):
        fails(d, *verb, expect="entry certificates.'../../victim': the name is not usable: it contains a path separator", env={PASSWORD_ENV: secret()})
    assert (tmp_path / "victim.pfx").read_bytes() == kept and not (d / "pfx").exists()
    data["certificates"]["server-ca"] = data["certificates"].pop("../../victim")
    (d / "index.json").write_text(json.dumps(data))
    fails(d, "list", expect="entry certificates.'server-ca': the name is not usable: it is reserved")


def test_a_renewal_journal_steers_no_path_out_of_the_pki(tmp_path: Path) -> None:
    """renewing.journal's serial builds the history file's name: issued/NAME.SERIAL.pem."""
    d = init(tmp_path / "pki")
    ok(d, "issue-client", "--cn", "dev1")
    kept = victim(tmp_path / "victim.pem")
    (d / "issued" / "dev1.x").mkdir()  # so that issued/dev1.x/../../../victim.pem resolves
    for journal, expect in [
        ({"name": "dev1", "oldSerial": "x/../../../victim", "newSerial": "0a"}, "are not hexadecimal"),
        ({"name": "../victim", "oldSerial": "0a", "newSerial": "0b"}, "name '../victim': it contains a path separator"),
        ({"name": "server-ca", "oldSerial": "0a", "newSerial": "0b"}, "name 'server-ca': it is reserved"),
    ]:
        (d / "renewing.journal").write_text(json.dumps(journal))
        fails(d, "list", expect=expect)
        assert (tmp_path / "victim.pem").read_bytes() == kept
    (d / "renewing.journal").unlink()
    ok(d, "list")


# ---------------------------------------------------------------------------------------------
# Point 7: SIGTERM and SIGINT stop bundle's workers


def _children(pid: int) -> set[int]:
    try:
        return {int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()  # a zombie has stopped
    except OSError:
        return False


def _kits(bundles: Path) -> list[Path]:
    return sorted(p for p in bundles.iterdir() if not p.name.startswith(".")) if bundles.is_dir() else []


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = make_lab(tmp_path_factory.mktemp("round2-fleet"))
    ok(base / "pki", "issue-client", "--count", str(FLEET), "--prefix", "k-", "--o", "Example Corp")
    return base


FLEET, JOBS = 32, 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and fork: Linux")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_signal_to_bundle_stops_its_workers_and_leaves_whole_kits(fleet: Path, tmp_path: Path, how: str) -> None:
    """A real process: the signal goes to the main process only (SIGKILL: as a supervisor ends
    one that did not stop). Its workers, found in /proc while it runs, are gone within seconds,
    little more than the kit each had in hand is written after the signal, every kit is whole, and the
    same command again writes the rest and leaves no temporary directory."""
    env = {**os.environ, PASSWORD_ENV: secret()}
    for attempt in range(3):  # a busy machine can let the whole run (32 kits, ~0.3 s) end before this loop looks again
        out = tmp_path / f"out-{attempt}"
        command = [sys.executable, "-m", "scripts.pki", "--dir", str(fleet / "pki"), "bundle", "--prefix", "k-", "--jobs", str(JOBS),
                   "--stack-config", str(fleet / "stacks" / "Pulumi.lab.yaml"), "--out", str(out)]
        log = tmp_path / f"stderr-{attempt}.txt"  # a file, not a pipe: a worker that outlived the process would hold a pipe open
        with log.open("wb") as stderr:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        workers: set[int] = set()
        started = time.monotonic()
        try:
            while len(_kits(out / "bundles")) < 2 and process.poll() is None:
                assert time.monotonic() - started < 60, "no kit after 60 s"
                workers |= _children(process.pid)
                time.sleep(0.005)
            if process.poll() is not None:
                assert process.returncode == 0, log.read_text()
                continue  # ended on its own: nothing to interrupt; again
            workers |= _children(process.pid)
            before = len(_kits(out / "bundles"))
            process.send_signal(getattr(signal, how))
            process.wait(timeout=30)
            deadline = time.monotonic() + 5
            while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.02)
            left = [pid for pid in workers if _alive(pid)]
        finally:
            if process.poll() is None:
                process.kill()
            for pid in workers:  # this test's own processes: none may run on after it
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        break
    else:
        pytest.fail("three bundle runs each ended before the signal could reach them")
    err = log.read_text()
    assert len(workers) == JOBS, workers
    assert process.returncode == {"SIGTERM": 143, "SIGINT": 130, "SIGKILL": -signal.SIGKILL}[how], err
    if how != "SIGKILL":
        assert "Traceback" not in err and "kit(s) complete in" in err, err
    assert not left, f"workers still running 5 s after {how}: {left}"
    kits = _kits(out / "bundles")
    assert len(kits) < FLEET, "the run ended before the signal: nothing was tested"
    # Each worker's kit in hand, and on a busy machine one more it began before the main process
    # got a CPU to handle the signal; not the chunks handed out (4 kits each, 2 per worker).
    assert len(kits) - before <= 2 * JOBS, f"{len(kits) - before} kits written after {how}: the workers went on past the kit in hand"
    for folder in kits:  # whole or absent: every file its manifest lists, with its size
        manifest = kit.read_manifest(folder)
        assert manifest is not None and kit.files_intact(folder, manifest), folder
    rerun = ok(fleet / "pki", "bundle", "--prefix", "k-", "--jobs", str(JOBS), "--stack-config", str(fleet / "stacks" / "Pulumi.lab.yaml"),
               "--out", str(out), env={PASSWORD_ENV: env[PASSWORD_ENV]})
    assert f"{FLEET - len(kits)} kit(s) written, {len(kits)} complete kit(s) skipped" in rerun
    assert len(_kits(out / "bundles")) == FLEET and not [p for p in (out / "bundles").iterdir() if p.name.startswith(".")]


def stuck_worker_scenario() -> dict[str, Any]:
    """Run in a fresh process (forking needs a single-threaded one; a test worker may hold
    threads): Workers over an item that never returns, interrupted 0.3 s in."""
    parallel.STOP_GRACE = 0.5
    workers: set[int] = set()

    def stuck(span: Any) -> int:
        time.sleep(60)  # ignores stop_requested(): only a kill ends it
        return len(span)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, interrupt)
    started = time.monotonic()
    raised = False
    try:
        with parallel.Workers(stuck, 2) as pool:
            workers.update(_children(os.getpid()))
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            pool.run(parallel.spans(8, 2), lambda count: None)
    except KeyboardInterrupt:
        raised = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    elapsed = time.monotonic() - started
    alive = sorted(pid for pid in workers if _alive(pid))
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return {"raised": raised, "elapsed": elapsed, "workers": sorted(workers), "alive": alive, "threads": threading.active_count()}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the background writer and the worker processes fork (Linux)")
def test_a_worker_stuck_in_an_item_is_killed_after_the_grace() -> None:
    """An item that never returns (a hung disk, say) does not hold the command after Ctrl-C:
    after STOP_GRACE the worker is killed, and the interruption is raised."""
    here = Path(__file__).resolve().parent
    code = "import json, test_pki_hostile_round2 as t; print(json.dumps(t.stuck_worker_scenario()))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (ROOT, here.parent, here)))}
    done = subprocess.run([sys.executable, "-c", code], cwd=here, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["threads"] == 1  # the scenario ran single-threaded: the fork it tests is the real one
    assert result["raised"], result
    assert result["elapsed"] < 10, result
    assert result["workers"] and not result["alive"], result


# ---------------------------------------------------------------------------------------------
# Point 8: names, passwords, modes, passwords.csv


@pytest.mark.parametrize("name", ["COM\u00b9", "com\u00b2.txt", "LPT\u00b3", "lpt\u00b9.log", "CONIN$", "conout$", "Conout$.txt", "nul.tar.gz", "COM9", "lpt1", "Aux .txt"])
def test_windows_device_names_are_refused(shared: Path, name: str) -> None:
    fails(shared, "issue-client", "--cn", name, expect=f"name {name!r} is not usable: it is a reserved Windows device name")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = init(tmp_path_factory.mktemp("round2") / "pki")
    ok(d, "issue-client", "--cn", unicodedata.normalize("NFC", "Gerät-1"))
    return d


def test_nfc_nfd_and_case_spellings_of_one_name_are_one_device(shared: Path, tmp_path: Path) -> None:
    nfc = unicodedata.normalize("NFC", "Gerät-1")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    fails(shared, "issue-client", "--cn", nfd, expect=f"name {nfd!r} is already issued as {nfc!r}")
    fails(shared, "issue-client", "--cn", "GERÄT-1", expect=f"name 'GERÄT-1' is already issued as {nfc!r}")
    rows = tmp_path / "devices.csv"
    first = unicodedata.normalize("NFD", "Café-2")
    rows.write_text(f"cn\n{first}\n{unicodedata.normalize('NFC', 'café-2')}\n", encoding="utf-8")
    fails(shared, "issue-client", "--from-csv", str(rows), expect=f"appears twice in this request (as {first!r}")
    assert set(index(shared)["certificates"]) == {nfc}


@pytest.mark.parametrize("blank", [" " * 12, "\t" * 14, "\u3000" * 12, " \n " * 5])
def test_whitespace_only_passwords_are_refused(shared: Path, tmp_path: Path, blank: str) -> None:
    fails(shared, "export-pfx", unicodedata.normalize("NFC", "Gerät-1"), expect=f"{PASSWORD_ENV}: only whitespace", env={PASSWORD_ENV: blank})
    assert not (shared / "pfx").exists() or not list((shared / "pfx").iterdir())
    d = tmp_path / "encrypted"
    fails(d, "init-ca", "--cn", "Blank CA", "--crl-url", CRL_URL, "--encrypt-key", expect=f"{CA_PASSWORD_ENV}: only whitespace", env={CA_PASSWORD_ENV: blank})
    assert not (d / "ca.key").exists()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lab(tmp_path_factory.mktemp("round2-kit"), clients=("=1+1", "'=1+1", "'plain", "+cmd"))


@pytest.fixture(autouse=True)
def no_syncfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """bundle's one filesystem sync waits for every other process's writes on a shared machine."""
    monkeypatch.setattr(bundle_module, "sync_filesystem", lambda path: None)


def test_bundle_refuses_a_whitespace_shared_password(lab: Path) -> None:
    fails(lab / "pki", "bundle", "dev-0001", "--stack-config", str(lab / "stacks" / "Pulumi.lab.yaml"), "--out", str(lab / "never"),
          expect=f"{PASSWORD_ENV}: only whitespace", env={PASSWORD_ENV: " " * 16})
    assert not (lab / "never" / "bundles" / "dev-0001").exists()


def test_bundle_out_directories_are_not_world_writable_under_umask_000(lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "c"
    previous = os.umask(0)
    try:
        ok(lab / "pki", "bundle", "dev-0001", "--stack-config", str(lab / "stacks" / "Pulumi.lab.yaml"), "--out", str(out), env={PASSWORD_ENV: secret()})
    finally:
        os.umask(previous)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", out):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o022 == 0, (folder, oct(folder.stat().st_mode))
    assert stat.S_IMODE((out / "bundles").stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "bundles" / "dev-0001").stat().st_mode) == 0o700


HOSTILE_NAMES = ["=1+1", "'=1+1", "''=1+1", "'plain", "''", "'", "+cmd", "-2", "@SUM(A1)", "plain", "a,b", 'q"uote', "Gerät", "'@x", "'-", "x'"]


def test_passwords_csv_reads_back_every_name_and_stays_spreadsheet_safe() -> None:
    rows = {name: secret(24 + i) for i, name in enumerate(HOSTILE_NAMES)}
    data = kit.passwords_csv(rows)
    import csv
    import io
    cells = [row[0] for row in csv.reader(io.StringIO(data.decode("utf-8")))][1:]
    assert len(set(cells)) == len(rows)  # one row per name, none alike
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)  # no cell a formula
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"round2-{os.getpid()}.csv"
    try:
        path.write_bytes(data)
        assert kit.read_passwords(path) == rows
        # A file written before names starting with ' were quoted: unambiguous rows read the same.
        path.write_bytes(b"device,password\r\n'plain,p1\r\n'=1+1,p2\r\n")
        assert kit.read_passwords(path) == {"'plain": "p1", "=1+1": "p2"}
        # Two rows for one device: refused, naming both lines (which password the PFX has is unknowable).
        path.write_bytes(b"device,password\r\n'=1+1,p1\r\n'=1+1,p2\r\n")
        with pytest.raises(Exception, match=r":3: device '=1\+1' again \(also on line 2\)"):
            kit.read_passwords(path)
    finally:
        path.unlink(missing_ok=True)


def test_kits_of_names_differing_by_a_leading_quote_verify_with_their_own_passwords(lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "kits"
    names = ["=1+1", "'=1+1", "'plain", "+cmd"]
    env = {PASSWORD_ENV: None}
    ok(lab / "pki", "bundle", *names, "--stack-config", str(lab / "stacks" / "Pulumi.lab.yaml"), "--out", str(out), env=env)
    rows = kit.read_passwords(out / "passwords.csv")
    assert sorted(rows) == sorted(names) and len(set(rows.values())) == len(names)
    code, text, err = pki(lab / "pki", "verify-bundle", str(out / "bundles"), "--stack-config", str(lab / "stacks" / "Pulumi.lab.yaml"), env=env)
    assert code == 0, text + err


# ---------------------------------------------------------------------------------------------
# Point 10: the index is checked once per read, column by column


def _big_index(count: int) -> dict[str, Any]:
    rng = random.Random(10)
    certificates = {}
    for number in range(count):
        certificates[f"old-{number:05d}"] = {
            "kind": "client", "source": "key", "serial": format(rng.getrandbits(150) | 1 << 120, "x"), "subject": f"CN=old-{number:05d}",
            "notBefore": "2026-01-01T00:00:00Z", "notAfter": "2027-01-01T00:00:00Z", "sha1": "AB" * 20,
            "status": "revoked" if number % 3 else "valid", "revokedAt": "2026-02-01T00:00:00Z" if number % 3 else None,
            "reason": "superseded" if number % 3 else None,
        }
    certificates["old-00001"]["previous"] = [{"serial": "0abc", "thumbprint": "CD" * 20, "notAfter": "2027-01-01T00:00:00Z",
                                              "graceUntil": "2026-03-01T00:00:00Z", "status": "valid", "revokedAt": None, "reason": None}]
    return {"version": entries.INDEX_VERSION, "ca": {}, "authorities": {"issuing": {"kind": "root-ca", "serial": "7f" * 10, "status": "valid",
            "notAfter": "2036-01-01T00:00:00Z"}}, "certificates": certificates}


def test_a_clean_index_is_checked_without_code_per_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = entries._entry_problem
    monkeypatch.setattr(entries, "_entry_problem", lambda item, authority=False: calls.append(authority) or real(item, authority))
    assert entries.index_problem(_big_index(3000)) is None
    assert calls == [True]  # the one authority; no certificate entry one by one


MUTATIONS = [
    lambda e: e.update(serial="0"), lambda e: e.update(serial="00"), lambda e: e.update(serial="AB:CD"), lambda e: e.update(serial=5),
    lambda e: e.update(serial="g1"), lambda e: e.update(serial="1" * 41), lambda e: e.pop("serial"), lambda e: e.update(kind="root-ca"),
    lambda e: e.update(kind=["client"]), lambda e: e.update(source=None), lambda e: e.pop("status"), lambda e: e.update(status="Valid"),
    lambda e: e.update(notBefore="2026-01-01 00:00:00Z"), lambda e: e.update(notAfter="2026-01-01T00:00:00+01:00"),
    lambda e: e.update(notAfter="2026-01-01T00:00:00.5Z"), lambda e: e.update(notAfter="٢٠٢٦-01-01T00:00:00Z"), lambda e: e.update(notAfter=None),
    lambda e: e.update(status="revoked", revokedAt=None), lambda e: e.update(status="revoked", revokedAt="2026-02-01T00:00:00Z\n2026-02-01T00:00:00Z"),
    lambda e: e.update(status="valid", revokedAt=5), lambda e: e.update(subject=None), lambda e: e.update(sha1=1), lambda e: e.update(ca=None),
    lambda e: e.update(ca="server"), lambda e: e.update(ca="issuing"), lambda e: e.update(previous=0), lambda e: e.update(previous=[]),
    lambda e: e.update(previous=[{"serial": "7f" * 10}]),
]


def test_the_quick_check_and_the_entry_by_entry_check_agree() -> None:
    """Every mutation of one entry (and duplicated serials): index_problem's verdict is the
    entry-by-entry check's, and a refusal names the entry."""
    base = _big_index(40)
    names = list(base["certificates"])
    rng = random.Random(22)
    for number, mutate in enumerate(MUTATIONS * 3):
        data = copy.deepcopy(base)
        name = rng.choice(names)
        mutate(data["certificates"][name])
        expected = _entry_by_entry(data)
        assert entries.index_problem(data) == expected, (number, name)
        if expected is not None:
            assert f"certificates.{name}" in expected
    for first, second in [("old-00003", "old-00007"), ("old-00004", None)]:
        data = copy.deepcopy(base)
        serial = data["certificates"][first]["serial"]
        if second is not None:
            data["certificates"][second]["serial"] = "0" + serial  # the same number
        else:
            data["authorities"]["issuing"]["serial"] = serial.upper()
        assert entries.index_problem(data) == _entry_by_entry(data) is not None


def _entry_by_entry(data: dict[str, Any]) -> str | None:
    """index_problem with the quick check forced to look closer."""
    saved = entries._all_usable
    entries._all_usable = lambda authorities, certificates: False  # type: ignore[assignment]
    try:
        return entries.index_problem(data)
    finally:
        entries._all_usable = saved  # type: ignore[assignment]
