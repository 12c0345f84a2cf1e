"""`python -m scripts.plan` (and every other reader of stacks/*.yaml) against hostile input
(issue 15): the plan reads only the project's files, only regular ones, and bounded; a stack
file is YAML without anchors or aliases; every refusal names the key (ConfigInvalid) or is one
line, exit 2, no traceback.

Certificate paths are checked through components.stack.prepare with a temporary project
directory as base (fast; the same function the program runs); the command line in process,
except for non-UTF-8 argv bytes, which only a real process receives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from components.config import ConfigInvalid
from components.stack import prepare
from components.stack_yaml import StackFileError, load_stack_text, read_stack_document
from conftest import ROOT
from scripts import doctor, plan
from tests.certs.test_trust import cert

ALIAS_BOMB = "config:\n" + "\n".join(
    ['  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
) + "\n"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project directory with a CA and a device certificate under certs/."""
    (tmp_path / "certs").mkdir()
    ca, ca_key = cert("Devices CA")
    device, _ = cert("laptop-1", ("Devices CA", ca_key), ca=False, cdp=["http://crl.example.com/devices.crl"])
    (tmp_path / "certs" / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "certs" / "laptop-1.pem").write_bytes(device.public_bytes(serialization.Encoding.PEM))
    return tmp_path


def raw_config(**overrides: object) -> dict[str, str]:
    raw = {"clientCaCertificates": json.dumps(["certs/ca.pem"]), "crlUrls": json.dumps(["http://crl.example.com/devices.crl"])}
    raw.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in overrides.items()})
    return raw


def issues_of(raw: dict[str, str], base: Path) -> list[tuple[str, object, str]]:
    with pytest.raises(ConfigInvalid) as raised:
        prepare(raw, "dev", "us-east-1", base=base)
    return [(i.key, i.value, i.expected) for i in raised.value.issues]


def test_the_project_files_are_read(project: Path) -> None:
    prepared = prepare(raw_config(sampleDeviceCertificate="certs/laptop-1.pem"), "dev", "us-east-1", base=project)
    assert [c.source for c in prepared.trust.roots] == ["certs/ca.pem"]


@pytest.mark.parametrize("key", ["clientCaCertificates", "oneToOneCertificates", "sampleDeviceCertificate"])
def test_absolute_paths_are_refused_naming_the_key(project: Path, key: str) -> None:
    absolute = str(project / "certs" / "ca.pem")  # even one that exists: it is not "relative to the project"
    value: object = absolute if key == "sampleDeviceCertificate" else [absolute]
    extra = {"mappingMode": "one-to-one"} if key == "oneToOneCertificates" else {}
    found = issues_of(raw_config(**{key: value}, **extra), project)
    assert [(k, v) for k, v, _ in found] == [(key, absolute)]
    assert "relative to the project" in found[0][2] and "not absolute" in found[0][2]


@pytest.mark.parametrize("target", ["outside-file", "/dev/zero", "/etc/passwd"])
def test_symlinks_out_of_the_project_are_refused(project: Path, tmp_path_factory: pytest.TempPathFactory, target: str) -> None:
    if target == "outside-file":
        outside = tmp_path_factory.mktemp("elsewhere") / "ca.pem"
        outside.write_bytes((project / "certs" / "ca.pem").read_bytes())
        target = str(outside)
    (project / "certs" / "link.pem").symlink_to(target)
    for key, value in (("clientCaCertificates", ["certs/link.pem"]), ("sampleDeviceCertificate", "certs/link.pem")):
        found = issues_of(raw_config(**{key: value}), project)
        assert found[0][:2] == (key, "certs/link.pem")
        assert "inside the project" in found[0][2] and "leads out of the project" in found[0][2]


def test_fifos_devices_and_directories_in_the_project_are_never_opened(project: Path) -> None:
    os.mkfifo(project / "certs" / "fifo.pem")
    (project / "certs" / "dir.pem").mkdir()
    (project / "certs" / "zero.pem").symlink_to("../certs/fifo.pem")  # a link inside the project, to the FIFO
    started = time.monotonic()
    for name, kind in (("fifo.pem", "a FIFO"), ("zero.pem", "a FIFO"), ("dir.pem", "a directory")):
        found = issues_of(raw_config(clientCaCertificates=[f"certs/{name}"]), project)
        assert found[0][:2] == ("clientCaCertificates", f"certs/{name}") and kind in found[0][2], found
    assert time.monotonic() - started < 5  # never blocked on the FIFO


def test_yaml_aliases_are_refused_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(StackFileError, match="anchors and aliases"):
        load_stack_text(ALIAS_BOMB)
    with pytest.raises(StackFileError, match="anchors and aliases"):
        load_stack_text("config:\n  base: &b {x: 1}\n  other:\n    <<: *b\n")
    assert time.monotonic() - started < 1
    assert load_stack_text("config:\n  flexnet-beacon:owner: team\n") == {"config": {"flexnet-beacon:owner": "team"}}


def _stacks(tmp_path: Path, name: str, content: bytes | None) -> Path:
    stacks = tmp_path / "stacks"
    stacks.mkdir(exist_ok=True)
    if content is not None:
        (stacks / f"Pulumi.{name}.yaml").write_bytes(content)
    return stacks


def _plan_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, stacks: Path, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(plan, "STACKS", stacks)
    code = plan.main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


@pytest.mark.parametrize(
    "content, expect",
    [
        (ALIAS_BOMB.encode(), "anchors and aliases (&name, *name, <<: *name) are not allowed in a stack file"),
        (b"config:\n  flexnet-beacon:owner: Jos\xe9\n", "not UTF-8 text (byte b'\\xe9' at offset"),
        (b"config: [unclosed", "not valid YAML: while parsing a flow sequence"),
    ],
    ids=["alias-bomb", "latin-1", "broken"],
)
def test_bad_stack_files_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, content: bytes, expect: str) -> None:
    stacks = _stacks(tmp_path, "bad", content)
    code, err = _plan_cli(monkeypatch, capsys, stacks, "--stack", "bad", "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and expect in err, err
    assert not (tmp_path / "out").exists()


def test_a_fifo_or_device_as_stack_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    stacks = _stacks(tmp_path, "fifo", None)
    os.mkfifo(stacks / "Pulumi.fifo.yaml")
    (stacks / "Pulumi.zero.yaml").symlink_to("/dev/zero")
    for name, kind in (("fifo", "a FIFO"), ("zero", "a character device")):
        code, err = _plan_cli(monkeypatch, capsys, stacks, "--stack", name, "--out", str(tmp_path / "out"))
        assert code == 2 and err.count("\n") == 1 and kind in err, err


@pytest.mark.parametrize("out", ["/etc/passwd", "/etc/passwd/plan", "FILE"])
def test_out_that_is_a_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, out: str) -> None:
    if out == "FILE":
        (tmp_path / "file").write_text("not a directory")
        out = str(tmp_path / "file")
    monkeypatch.setattr(plan, "run_program", None, raising=False)  # never reached: --out is checked first
    code, err = _plan_cli(monkeypatch, capsys, ROOT / "stacks", "--stack", "dev", "--out", out)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: --out: got {out!r}; expected a directory"), err


def test_non_utf8_argv_bytes_are_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "scripts.plan", "--stack", b"dev\xff"], cwd=ROOT, capture_output=True, timeout=60)
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr == b"error: --stack: got b'dev\\xff', which is not valid UTF-8; expected UTF-8 text\n"


def test_every_stack_reader_refuses_aliases(tmp_path: Path) -> None:
    """scripts.doctor and the tests' own readers use the same loader as the plan."""
    _stacks(tmp_path, "bomb", ALIAS_BOMB.encode())
    found = doctor.read_stack_files(tmp_path)
    assert "anchors and aliases" in found["bomb"]["error"]
    assert doctor.check_stack_config("bomb", tmp_path).status != "ok"
    with pytest.raises(StackFileError):
        read_stack_document(tmp_path / "stacks" / "Pulumi.bomb.yaml")
    # The repository's own stack files pass the strict loader.
    for path in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        assert isinstance(read_stack_document(path), dict), path
