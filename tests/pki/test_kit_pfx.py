"""What the kit's PFX and encrypted UNIX key really are, as `openssl` reports them, against the
numbers build.py states (PFX_BAG_ROUNDS, PFX_MAC_ITERATIONS, PFX_LEGACY_ROUNDS, PKCS8_KEY_ROUNDS)
and the text docs/pki.md and docs/onboarding.md print from them (build.pfx_scheme,
build.PKCS8_KEY_SCHEME), so the documentation cannot drift from the files again: it once said
50,000 MAC iterations where `openssl pkcs12 -info` shows 2048.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kit_lab import SECRET, make_lab
from pki_cli import ok
from scripts.pki import build
from scripts.pki import bundle as bundle_module

OPENSSL = shutil.which("openssl")
DOCS = Path(__file__).resolve().parents[2] / "docs"
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")


@pytest.fixture(autouse=True)
def no_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_module, "sync_filesystem", lambda path: None)


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = make_lab(tmp_path_factory.mktemp("pfx"))
    d, stack = base / "pki", base / "stacks" / "Pulumi.lab.yaml"
    ok(d, "bundle", "dev-0001", "--platform", "all", "--stack-config", str(stack), env={"PKI_PASSWORD": SECRET})
    ok(d, "bundle", "dev-0001", "--legacy", "--stack-config", str(stack), "--out", str(base / "legacy"), env={"PKI_PASSWORD": SECRET})
    return base


def openssl(*args: str) -> str:
    """Output (stdout and stderr: `pkcs12 -info` writes its report to stderr) of an openssl command
    that must succeed, the password in PKI_PASSWORD as the docs write it."""
    result = subprocess.run([str(OPENSSL), *args], env={**os.environ, "PKI_PASSWORD": SECRET}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def pkcs12_info(pfx: Path) -> dict[str, tuple[str, int]]:
    """`openssl pkcs12 -info -noout -in device.pfx -passin env:PKI_PASSWORD`, parsed:
    {"mac" | "certificates" | "key": (algorithm text, iterations)}."""
    text = openssl("pkcs12", "-info", "-noout", "-in", str(pfx), "-passin", "env:PKI_PASSWORD")
    found: dict[str, tuple[str, int]] = {}
    for label, pattern in (("mac", r"^MAC: (\S+), Iteration (\d+)$"), ("certificates", r"^PKCS7 Encrypted data: (.+), Iteration (\d+)"),
                           ("key", r"^Shrouded Keybag: (.+), Iteration (\d+)")):
        match = re.search(pattern, text, re.MULTILINE)
        assert match, f"{label} not in openssl's report:\n{text}"
        found[label] = (match.group(1), int(match.group(2)))
    return found


def normalised(path: Path) -> str:
    return " ".join(path.read_text(encoding="utf-8").split())


def test_modern_pfx_is_what_build_states(kits: Path) -> None:
    info = pkcs12_info(kits / "pki" / "bundles" / "dev-0001" / "windows/device.pfx")
    assert info["mac"] == ("sha256", build.PFX_MAC_ITERATIONS)
    assert info["certificates"] == ("PBES2, PBKDF2, AES-256-CBC", build.PFX_BAG_ROUNDS)
    assert info["key"] == ("PBES2, PBKDF2, AES-256-CBC", build.PFX_BAG_ROUNDS)
    report = openssl("pkcs12", "-info", "-noout", "-in", str(kits / "pki" / "bundles" / "dev-0001" / "windows/device.pfx"), "-passin", "env:PKI_PASSWORD")
    assert report.count("PRF hmacWithSHA256") == 2


def test_legacy_pfx_is_what_build_states(kits: Path) -> None:
    info = pkcs12_info(kits / "legacy" / "bundles" / "dev-0001" / "windows/device.pfx")
    assert info["mac"] == ("sha1", build.PFX_MAC_ITERATIONS)
    assert info["certificates"] == ("pbeWithSHA1And3-KeyTripleDES-CBC", build.PFX_LEGACY_ROUNDS)
    assert info["key"] == ("pbeWithSHA1And3-KeyTripleDES-CBC", build.PFX_LEGACY_ROUNDS)


def test_encrypted_unix_key_is_what_build_states_and_the_agent_step_opens_it(kits: Path, tmp_path: Path) -> None:
    key = kits / "pki" / "bundles" / "dev-0001" / "unix/device.key"
    parsed = openssl("asn1parse", "-in", str(key))
    assert re.search(r":PBES2\b", parsed) and re.search(r":PBKDF2\b", parsed) and ":hmacWithSHA256" in parsed and ":aes-256-cbc" in parsed
    rounds = re.search(r"prim: INTEGER\s+:([0-9A-F]+)", parsed)
    assert rounds and int(rounds.group(1), 16) == build.PKCS8_KEY_ROUNDS
    # The agent-side step of unix/INSTALL.txt and docs/onboarding.md.
    clear = tmp_path / "device.key"
    openssl("pkey", "-in", str(key), "-out", str(clear), "-passin", "env:PKI_PASSWORD")
    assert clear.read_bytes().startswith((b"-----BEGIN " + b"PRIVATE KEY-----"))


def test_the_docs_state_these_numbers_and_the_legacy_guidance() -> None:
    for doc in (DOCS / "pki.md", DOCS / "onboarding.md"):
        text = normalised(doc)
        for statement in (build.pfx_scheme(False), build.pfx_scheme(True), build.PFX_LEGACY_FOR, build.PFX_MODERN_FROM):
            assert statement in text, f"{doc.name} does not state: {statement}"
        assert "three PBKDF2" not in text and "50,000 MAC" not in text
    assert build.PKCS8_KEY_SCHEME in normalised(DOCS / "onboarding.md")
    assert "openssl pkcs12 -info -noout -in device.pfx -passin env:PKI_PASSWORD" in normalised(DOCS / "pki.md")
