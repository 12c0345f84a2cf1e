"""`pki renew`: a new certificate and key under the same device name; the old certificate kept as
history (index entry "previous", issued/NAME.SERIAL.pem), valid for a grace period that `crl`
enforces, or revoked at once (--revoke-old). Interrupted at every step, the next command sees the
old state or the new one. One device per name: `list --expiring`, `ops expiry` and readiness
(with a real renewal's two certificates presented in the IIS logs) count the device once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from pki_cli import fails, ok, pki, read_index
from scripts.ops import expiry as expiry_mod
from scripts.ops.expected import expected_devices
from scripts.ops.readiness_model import Aggregator
from scripts.pki import renew as renew_module
from scripts.pki import renew_journal
from scripts.pki import store as pki_store

CA_CN = "Renew Devices CA"
SECRET = "renew-password-1"
SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def public(key_or_cert: Any) -> bytes:
    return key_or_cert.public_key().public_bytes(*SPKI)


index = read_index


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the PKI directory: content and mode."""
    return {p.relative_to(d).as_posix(): (p.read_bytes(), mode(p)) for p in sorted(d.rglob("*")) if p.is_file()}


def crl_entries(d: Path) -> dict[str, tuple[str | None, dt.datetime]]:
    """serial (lowercase hex) -> (reason, revocation date) of crl.pem."""
    crl = x509.load_pem_x509_crl((d / "crl.pem").read_bytes())
    found = {}
    for revoked in crl:
        try:
            reason: str | None = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            reason = None
        found[format(revoked.serial_number, "x")] = (reason, revoked.revocation_date_utc)
    return found


def serial_text(serial: str) -> str:
    return serial.lstrip("0")


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    ok(d, "init-ca", "--cn", CA_CN, "--o", "Example Corp", "--crl-url", "http://crl.example.test/devices.crl")
    ok(d, "issue-client", "--cn", "dev-1", "--o", "Example Corp", "--ou", "Laptops", "--days", "20")
    return d


# ---------------------------------------------------------------------------------------------
# What renew makes


def test_renew_same_name_and_subject_new_key_old_kept_as_history(lab: Path) -> None:
    d = lab
    old_cert, old_key = cert_of(d / "issued/dev-1.pem"), (d / "private/dev-1.key").read_bytes()
    ok(d, "export-pfx", "dev-1", env={"PKI_PASSWORD": SECRET})
    out = ok(d, "renew", "dev-1", "--days", "200")
    new_cert = cert_of(d / "issued/dev-1.pem")
    new_key = serialization.load_pem_private_key((d / "private/dev-1.key").read_bytes(), None)
    entry = index(d)["certificates"]["dev-1"]

    # The same device: subject (CN, O, OU) and name; a new serial, key and validity.
    assert new_cert.subject == old_cert.subject and new_cert.serial_number != old_cert.serial_number
    assert public(new_key) == public(new_cert) != public(old_cert)
    assert (new_cert.not_valid_after_utc - new_cert.not_valid_before_utc).days == 200
    assert mode(d / "private/dev-1.key") == 0o600 and (d / "private/dev-1.key").read_bytes() != old_key
    assert entry["serial"] == format(new_cert.serial_number, "x").zfill(len(entry["serial"])) and entry["status"] == "valid"

    # The old certificate: its file under its serial, its key gone (and its PFX export), recorded.
    old_serial = format(old_cert.serial_number, "x")
    history = d / "issued" / f"dev-1.{entry['previous'][0]['serial']}.pem"
    assert cert_of(history) == old_cert
    assert sorted(p.name for p in (d / "private").iterdir()) == ["dev-1.key"]
    assert not (d / "pfx/dev-1.pfx").exists() and "pfx/dev-1.pfx removed" in out
    [record] = entry["previous"]
    thumbprint = old_cert.fingerprint(hashes.SHA1()).hex().upper()
    assert serial_text(record["serial"]) == old_serial and record["thumbprint"] == thumbprint and re.fullmatch(r"[0-9A-F]{40}", thumbprint)
    assert record["status"] == "valid" and record["notAfter"] == old_cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    grace = dt.datetime.fromisoformat(record["graceUntil"].replace("Z", "+00:00")) - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=29, hours=23) < grace <= dt.timedelta(days=30)
    assert record["file"] == f"issued/{history.name}" and f"valid until {record['graceUntil']}" in out

    # Every verb sees the new certificate under the name, and the old one as history.
    assert "accept" in ok(d, "check", "dev-1")
    ok(d, "export-pfx", "dev-1", env={"PKI_PASSWORD": SECRET})
    _, pfx_cert, _ = pkcs12.load_key_and_certificates((d / "pfx/dev-1.pfx").read_bytes(), SECRET.encode())
    assert pfx_cert == new_cert
    rows = json.loads(ok(d, "list", "--json"))
    assert [(r["name"], r["serial"], bool(r.get("superseded"))) for r in rows if r["name"] == "dev-1"] == [
        ("dev-1", entry["serial"], False), ("dev-1", record["serial"], True)]
    assert re.search(r"dev-1\s+client\s+superseded, valid until " + re.escape(record["graceUntil"]), ok(d, "list"))

    # A second renewal appends: the history is oldest first, every serial once.
    ok(d, "renew", "dev-1", "--grace-days", "2")
    again = index(d)["certificates"]["dev-1"]
    assert [r["serial"] for r in again["previous"]] == [record["serial"], entry["serial"]]
    assert len({p.name for p in (d / "issued").iterdir()}) == 3


def test_revoke_old_and_the_grace_period_enforced_by_crl(lab: Path) -> None:
    d = lab
    ok(d, "issue-client", "--cn", "dev-2", "--o", "Example Corp")
    ok(d, "issue-client", "--cn", "dev-3", "--o", "Example Corp")
    first = index(d)["certificates"]
    out = ok(d, "renew", "dev-1", "--revoke-old")
    assert "revoked (superseded)" in out and "crl" in out
    ok(d, "renew", "dev-2", "--grace-days", "0")  # the grace ends at once: the next crl revokes it
    ok(d, "renew", "dev-3", "--grace-days", "5")  # still in its grace: stays valid
    records = {n: index(d)["certificates"][n]["previous"][0] for n in ("dev-1", "dev-2", "dev-3")}
    assert records["dev-1"]["status"] == "revoked" and records["dev-1"]["reason"] == "superseded" and records["dev-1"]["graceUntil"] is None
    assert "superseded, grace ended" in ok(d, "list")

    out = ok(d, "crl")
    assert "revoked 1 superseded certificate(s) whose grace period after renew ended (reason superseded): dev-2" in out
    listed = crl_entries(d)
    old = {n: serial_text(first[n]["serial"]) for n in first}
    assert set(listed) == {old["dev-1"], old["dev-2"]}
    assert listed[old["dev-1"]][0] == listed[old["dev-2"]][0] == "superseded"
    ended = index(d)["certificates"]["dev-2"]["previous"][0]
    assert ended["status"] == "revoked" and ended["revokedAt"] == ended["graceUntil"]
    assert listed[old["dev-2"]][1].strftime("%Y-%m-%dT%H:%M:%SZ") == ended["graceUntil"]
    assert "revoked" not in ok(d, "crl").split("wrote")[0]  # nothing more ended: no second report

    # IIS's verdict with that CRL: the history file of a revoked one is 403.13, the new ones accepted.
    code, out, _ = pki(d, "check", str(d / "issued" / f"dev-1.{first['dev-1']['serial']}.pem"))
    assert code == 1 and "403.13" in out
    for name in ("dev-1", "dev-2", "dev-3"):
        assert "accept" in ok(d, "check", name)
    code, out, _ = pki(d, "check", str(d / "issued" / f"dev-3.{first['dev-3']['serial']}.pem"))
    assert code == 0, out  # within its grace

    # revoke --serial ends a grace early (the superseded one); revoke NAME is the current one.
    out = ok(d, "revoke", "--serial", first["dev-3"]["serial"], "--reason", "superseded")
    assert "dev-3's superseded certificate" in out
    fails(d, "revoke", "--serial", first["dev-3"]["serial"], expect="is already revoked")
    ok(d, "revoke", "dev-3")
    ok(d, "crl")
    assert {old["dev-3"], serial_text(index(d)["certificates"]["dev-3"]["serial"])} <= set(crl_entries(d))


def test_renew_refuses_what_is_not_a_renewable_device(lab: Path, tmp_path: Path) -> None:
    d = lab
    ok(d, "issue-server", "--dns", "beacon.example.test")
    ok(d, "issue-client", "--cn", "gone-1")
    ok(d, "revoke", "gone-1")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr-1")])).sign(key, hashes.SHA256())
    (tmp_path / "csr-1.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    ok(d, "sign-csr", str(tmp_path / "csr-1.csr"))
    before = snapshot(d)
    fails(d, "renew", "gone-1", expect="'gone-1' is revoked")
    fails(d, "renew", "csr-1", expect="signed from a CSR")
    fails(d, "renew", "beacon.example.test", expect="is a server certificate")
    fails(d, "renew", "nobody", expect="unknown name 'nobody'")
    code, _, err = pki(d, "renew", "dev-1", "--revoke-old", "--grace-days", "3")
    assert code == 2 and "not allowed with argument" in err
    code, _, err = pki(d, "renew", "dev-1", "--grace-days", "x")
    assert code == 2 and "--grace-days: got 'x'" in err
    assert snapshot(d) == before


def test_a_hand_edited_history_is_refused_naming_the_entry(lab: Path) -> None:
    d = lab
    ok(d, "issue-client", "--cn", "dev-2")
    ok(d, "renew", "dev-1")
    data = index(d)
    good = json.dumps(data)
    data["certificates"]["dev-1"]["previous"][0]["thumbprint"] = "b0cd"
    (d / "index.json").write_text(json.dumps(data))
    fails(d, "list", expect="entry certificates.dev-1.previous[0]: thumbprint 'b0cd' is not 40 uppercase hexadecimal digits")
    data = json.loads(good)
    data["certificates"]["dev-1"]["previous"][0]["serial"] = data["certificates"]["dev-2"]["serial"]
    (d / "index.json").write_text(json.dumps(data))
    fails(d, "list", expect="is also the serial of certificates.dev-1.previous[0]")
    data = json.loads(good)
    data["certificates"]["dev-1"]["previous"][0]["graceUntil"] = None
    (d / "index.json").write_text(json.dumps(data))
    fails(d, "crl", expect="status valid without graceUntil")


# ---------------------------------------------------------------------------------------------
# Interrupted at every step


class Killed(BaseException):
    """The process dies here: no except clause, finally or handler of renew runs on."""


def _kill_after(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Make renew die right after ``step``, as SIGKILL would (nothing cleans up)."""
    monkeypatch.setattr(renew_journal, "undo", lambda pki, renewal: None)  # a dead process undoes nothing
    last_file = {"journal": r"renewing\.journal", "staged key": r"\.dev-1\.renewing\.key", "staged cert": r"\.dev-1\.renewing\.pem",
                 "history copy": r"dev-1\.[0-9a-f]+\.pem"}.get(step)

    def counting(real: Callable[..., None]) -> Callable[..., None]:
        def write(path: Any, *args: Any, **kw: Any) -> None:
            real(path, *args, **kw)
            if last_file is not None and re.fullmatch(last_file, Path(path).name):
                raise Killed(step)
        return write

    monkeypatch.setattr(renew_journal, "atomic_write", counting(renew_journal.atomic_write))
    monkeypatch.setattr(renew_module, "atomic_write", counting(renew_module.atomic_write))
    if step == "commit":
        real_save = pki_store.Pki.save_index

        def save(self: Any) -> None:
            real_save(self)
            raise Killed(step)

        monkeypatch.setattr(pki_store.Pki, "save_index", save)
    if step == "first rename":
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            real_replace(src, dst)
            if str(src).endswith(".dev-1.renewing.pem"):
                raise Killed(step)

        monkeypatch.setattr(renew_journal.os, "replace", replace)


@pytest.mark.parametrize("step, committed", [
    ("journal", False), ("staged key", False), ("staged cert", False), ("history copy", False), ("commit", True), ("first rename", True),
])
def test_a_renew_killed_at_any_step_leaves_the_old_or_the_new_state(lab: Path, monkeypatch: pytest.MonkeyPatch, step: str, committed: bool) -> None:
    d = lab
    ok(d, "export-pfx", "dev-1", env={"PKI_PASSWORD": SECRET})
    before = snapshot(d)
    old_serial = index(d)["certificates"]["dev-1"]["serial"]
    with monkeypatch.context() as patch:
        _kill_after(patch, step)
        with pytest.raises(Killed):
            pki(d, "renew", "dev-1")
    # On disk right after the kill: the index is whole, the old one or the new one.
    serial = index(d)["certificates"]["dev-1"]["serial"]
    assert (serial != old_serial) is committed
    assert (d / "renewing.journal").exists()

    code, _, err = pki(d, "list")  # the next command recovers first
    assert code == 0 and ("finished the interrupted renewal" if committed else "undid the interrupted renewal") in err
    after = snapshot(d)
    assert "renewing.journal" not in after and not [p for p in after if "/." in p]
    if not committed:
        assert after == before  # byte for byte and mode for mode: as if renew never ran
        return
    entry = index(d)["certificates"]["dev-1"]
    cert = cert_of(d / "issued/dev-1.pem")
    key = serialization.load_pem_private_key((d / "private/dev-1.key").read_bytes(), None)
    assert format(cert.serial_number, "x") == serial_text(entry["serial"]) and public(key) == public(cert)
    assert entry["previous"][0]["serial"] == old_serial and cert_of(d / f"issued/dev-1.{old_serial}.pem").serial_number == int(old_serial, 16)
    assert "pfx/dev-1.pfx" not in after and mode(d / "private/dev-1.key") == 0o600
    assert "accept" in ok(d, "check", "dev-1")


def test_ctrl_c_or_a_disk_error_before_the_commit_changes_nothing(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = lab
    before = snapshot(d)
    real = renew_module.atomic_write
    for error, code in ((KeyboardInterrupt(), 130), (OSError(28, "No space left on device"), 2)):
        calls = []

        def failing(path: Any, *args: Any, **kw: Any) -> None:
            calls.append(path)
            if len(calls) == 2:
                raise error
            real(path, *args, **kw)

        monkeypatch.setattr(renew_module, "atomic_write", failing)
        got, _, err = pki(d, "renew", "dev-1")
        assert got == code and "Traceback" not in err, err
        assert snapshot(d) == before  # undone at once, journal included


# ---------------------------------------------------------------------------------------------
# One device per name


def _iis_fields(cert: x509.Certificate, issuer: x509.Certificate) -> str:
    """crt-subject crt-issuer crt-serial crt-flags as IIS writes them (W3C: spaces as '+')."""
    def dn(name: x509.Name) -> str:
        return ", ".join(f"{a.rfc4514_attribute_name}={a.value}" for a in name).replace(" ", "+")
    raw = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
    return f"{dn(cert.subject)} {dn(issuer.subject)} {'-'.join(f'{b:02x}' for b in raw)} 1"


def test_one_device_per_name_in_list_expiry_and_readiness(lab: Path) -> None:
    d = lab  # dev-1 ends in 20 days: inside a 30-day window until renewed
    ok(d, "issue-client", "--cn", "dev-2", "--o", "Example Corp", "--days", "20")
    old = cert_of(d / "issued/dev-1.pem")
    ok(d, "renew", "dev-1")
    new = cert_of(d / "issued/dev-1.pem")
    ca = cert_of(d / "ca.pem")

    # pki list --expiring: the renewed device is no longer expiring; its old certificate is history.
    rows = json.loads(ok(d, "list", "--expiring", "30", "--json"))
    assert [r["name"] for r in rows] == ["dev-2"]

    # ops expiry: one device-certificate per name; the superseded one listed as such, not judged.
    items, _, _, _ = expiry_mod.pki_items(str(d))
    judged = expiry_mod.judge(items, dt.datetime.now(dt.timezone.utc), 30, 3)
    devices = [(i.kind, i.name, i.state) for i in judged if i.kind in ("device-certificate", expiry_mod.SUPERSEDED)]
    assert sorted(devices) == [("device-certificate", "dev-1", "ok"), ("device-certificate", "dev-2", "window"), (expiry_mod.SUPERSEDED, "dev-1", "ok")]
    superseded = next(i for i in judged if i.kind == expiry_mod.SUPERSEDED)
    assert 19 < (superseded.days or 0) < 20.1  # until the old notAfter (sooner than the 30-day grace)
    metrics = expiry_mod.metric_data(judged, "lab", dt.datetime.now(dt.timezone.utc))
    assert not any(dim.get("Value") == expiry_mod.SUPERSEDED for m in metrics for dim in m["Dimensions"])

    # readiness: the device presented its old certificate, then (new kit installed) the new one.
    header = "#Fields: date time c-ip cs(User-Agent) cs-uri-stem sc-status sc-substatus crt-subject crt-issuer crt-serial crt-flags"
    aggregator = Aggregator(["/ManageSoftDL/"])
    for line in (header,
                 f"2026-06-01 00:00:00 10.0.0.1 agent /ManageSoftDL/ 200 0 {_iis_fields(old, ca)}",
                 f"2026-06-02 00:00:00 10.0.0.1 agent /ManageSoftDL/ 200 0 {_iis_fields(new, ca)}"):
        aggregator.add("beacon-1", line, 0)
    expected = expected_devices(str(d), dt.datetime.now(dt.timezone.utc))
    outcome = aggregator.finish([CA_CN], expected=expected.devices)
    assert len(aggregator.presentations) == 2  # two certificates were seen ...
    assert [(x.identity, x.state, x.requests) for x in outcome.devices] == [("dev-1", "ready", 2), ("dev-2", "unseen", 0)]  # ... one device
    assert expected.to_dict()["devices"] == 2 and expected.to_dict()["validClientCertificates"] == 2  # dev-1 once, dev-2
