"""Verdict edges, each judged twice: by `pki check` (the IIS verdict, components/certs/verdict.py)
and by OpenSSL's own chain verification (`openssl verify -purpose sslclient -x509_strict
-crl_check_all`), so the two cannot drift apart unnoticed.

Cases (issue 24): a root with pathLen 0 above an intermediate; an intermediate whose EKU lacks
clientAuth; an expired intermediate above a valid leaf; two fresh CRLs of one issuer where only
the newer lists the device, given in both orders. A clean chain is the control: both accept it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scripts.pki.cli import main as pki_main

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DAY = dt.timedelta(days=1)
OPENSSL = shutil.which("openssl")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Node:
    cert: x509.Certificate
    key: Any
    revoked: list[int] = field(default_factory=list)


def _issue(cn: str, issuer: Node | None, *, ca: bool, path_length: int | None = None, eku: tuple[x509.ObjectIdentifier, ...] | None = None,
           not_before: dt.datetime = NOW - DAY, not_after: dt.datetime = NOW + 30 * DAY) -> Node:
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.KeyUsage(not ca, False, False, False, False, ca, ca, False, False), critical=True)
        .add_extension(ski, critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return Node(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def _crl(issuer: Node, revoked: list[int], last_update: dt.datetime, number: int) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(last_update)
        .next_update(NOW + 6 * DAY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last_update - dt.timedelta(minutes=5)).build())
    return builder.sign(issuer.key, hashes.SHA256())


def _pem(item: Any) -> bytes:
    return item.public_bytes(serialization.Encoding.PEM)


@dataclass
class Case:
    root: Node
    chain: list[Node]  # intermediates, nearest the root first
    leaf: Node
    crls: list[x509.CertificateRevocationList]


def _chain_case(*, root_path_length: int | None = None, inter_eku: tuple[x509.ObjectIdentifier, ...] | None = None,
                inter_not_after: dt.datetime = NOW + 60 * DAY) -> Case:
    root = _issue("Edge Root", None, ca=True, path_length=root_path_length)
    inter = _issue("Edge Devices CA", root, ca=True, path_length=0, eku=inter_eku, not_after=inter_not_after)
    leaf = _issue("LAPTOP-EDGE", inter, ca=False, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), not_after=min(NOW + 30 * DAY, inter_not_after))
    if inter_not_after < NOW:  # a leaf that is valid itself, under an intermediate that ended
        leaf = _issue("LAPTOP-EDGE", inter, ca=False, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), not_before=NOW - DAY, not_after=NOW + 30 * DAY)
    crls = [_crl(root, [], NOW - DAY, 1), _crl(inter, [], NOW - DAY, 1)]
    return Case(root, [inter], leaf, crls)


def _two_crls_case(newer_first: bool) -> Case:
    root = _issue("Edge Root", None, ca=True)
    leaf = _issue("LAPTOP-EDGE", root, ca=False, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    older = _crl(root, [], NOW - 2 * DAY, 7)
    newer = _crl(root, [leaf.cert.serial_number], NOW - dt.timedelta(hours=1), 8)
    return Case(root, [], leaf, [newer, older] if newer_first else [older, newer])


def _write(tmp_path: Path, case: Case) -> dict[str, Path]:
    paths = {
        "root": tmp_path / "root.pem", "untrusted": tmp_path / "intermediates.pem", "leaf": tmp_path / "leaf.pem",
        "crls": tmp_path / "crls.pem", "trust": tmp_path / "trust.pem",
    }
    paths["root"].write_bytes(_pem(case.root.cert))
    paths["untrusted"].write_bytes(b"".join(_pem(n.cert) for n in case.chain))
    paths["leaf"].write_bytes(_pem(case.leaf.cert) + b"".join(_pem(n.cert) for n in reversed(case.chain)))
    paths["crls"].write_bytes(b"".join(_pem(c) for c in case.crls))
    for index, crl in enumerate(case.crls):  # one file each, in the case's order (pki check --crl A B)
        (tmp_path / f"crl-{index}.pem").write_bytes(_pem(crl))
    paths["trust"].write_bytes(_pem(case.root.cert) + b"".join(_pem(n.cert) for n in case.chain))
    return paths


def _pki_check(tmp_path: Path, paths: dict[str, Path]) -> tuple[int, dict[str, Any]]:
    """`pki check --json` in process, with the beacon's trust (root + intermediates) and its CRLs."""
    stdout, stderr = io.StringIO(), io.StringIO()
    crl_files = [str(p) for p in sorted(tmp_path.glob("crl-*.pem"))]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = pki_main(["--dir", str(tmp_path / "no-pki"), "check", str(paths["leaf"]), "--chain", str(paths["trust"]),
                         "--crl", *crl_files, "--issuer-cn", "*", "--json"])
    assert code in (0, 1), stderr.getvalue()
    return code, json.loads(stdout.getvalue())


def _openssl_verify(paths: dict[str, Path]) -> tuple[bool, str]:
    assert OPENSSL, "openssl is needed (.ci/install-debian-packages)"
    command = [OPENSSL, "verify", "-x509_strict", "-purpose", "sslclient", "-crl_check_all", "-CAfile", str(paths["root"]),
               "-CRLfile", str(paths["crls"])]
    if paths["untrusted"].read_bytes():
        command += ["-untrusted", str(paths["untrusted"])]
    result = subprocess.run([*command, str(paths["leaf"])], capture_output=True, text=True, timeout=30)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


CASES = {
    "control: a clean chain": (lambda: _chain_case(), True, None),
    "root pathLen 0 above an intermediate": (lambda: _chain_case(root_path_length=0), False, "path length"),
    "intermediate EKU without clientAuth": (lambda: _chain_case(inter_eku=(ExtendedKeyUsageOID.SERVER_AUTH,)), False, "purpose"),
    "expired intermediate above a valid leaf": (lambda: _chain_case(inter_not_after=NOW - DAY), False, "expired"),
    "two fresh CRLs, the newer lists the device, newer given first": (lambda: _two_crls_case(True), False, "revoked"),
    "two fresh CRLs, the newer lists the device, older given first": (lambda: _two_crls_case(False), False, "revoked"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pki_check_and_openssl_agree(tmp_path: Path, name: str) -> None:
    build, accepted, openssl_says = CASES[name]
    case = build()
    paths = _write(tmp_path, case)
    code, verdict = _pki_check(tmp_path, paths)
    ok, text = _openssl_verify(paths)
    assert (code == 0) == accepted, f"pki check: {verdict}"
    assert ok == accepted, f"openssl verify: {text}"
    if not accepted:
        assert openssl_says in text.lower(), text
        assert verdict["status"].startswith("403"), verdict
