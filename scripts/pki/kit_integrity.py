"""What a device kit (kit format 2, bundle_files.py) must be before anything in it is believed
(`verify-bundle`): read safely, complete, unchanged, and signed by the expected kit signer.

Reading (:func:`read_kit`): only the kit folder and its windows/ and unix/ folders are opened
(by descriptor, each folder without following a symbolic link), and in them only regular files,
each opened with O_NOFOLLOW | O_NONBLOCK, checked with fstat to be a regular file of at most
KIT_FILE_LIMIT bytes before it is read; a symbolic link, FIFO, device, socket or an oversized
file is a problem naming it, never opened or read whole. Names a kit's JSON gives are looked up
among the files read, so a name such as ``../../etc/hostname`` can never reach the filesystem: it
is refused as not a plain file name of the kit.

Checking (:func:`check_kit`), each problem naming its file:
- manifest.json is kit format 2 (a version 1 kit is refused: it was made before kit signing),
  and manifest.sig verifies over its exact bytes with the expected signer's certificate;
- every file of the kit is listed in manifest.json with its SHA-256 and size, none is missing,
  none is extra, and the files of the kit's platform are all there;
- windows/: kit-signer.cer is the expected signer, install.json.sig verifies over install.json,
  install.json lists every other file install.ps1 reads with SHA-256 and size (and no other),
  names only plain file names, and install.ps1 is the static template, byte for byte.

The content (certificate, trust, CA set, agent files) is verify_bundle.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from components.certs import facts as cert_facts

from . import bundle_files as kit
from . import kit_signing

MAX_ENTRIES = 64  # a kit folder holds about a dozen entries; more is not a kit
V1_REFUSAL = "made before kit signing (version 1): run bundle again"
REQUIRED = {
    "windows": ("device.pfx", kit.INSTALL_PS1, kit.INSTALL_JSON, kit.INSTALL_SIG, kit.SIGNER_CER, "mgssetup.ini"),
    "unix": ("device.pem", "device.key", kit.ROLLOUT_NAME, "UNIXConfig.ini", "INSTALL.txt"),
}  # unix/cert.pem: present unless the server trust is preinstalled (verify_bundle checks which)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


@dataclass
class KitFiles:
    """The regular files of one kit, by path relative to it ("manifest.json", "windows/device.pfx")."""

    data: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class Checked:
    manifest: dict[str, Any]
    install: dict[str, Any] | None  # windows/install.json, when the kit has windows/
    problems: list[str]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_kit(folder: Path, limit: int = kit.KIT_FILE_LIMIT) -> KitFiles:
    found = KitFiles()
    try:
        fd = os.open(folder, _DIR_FLAGS)
    except OSError as exc:
        found.problems.append(f"the kit folder cannot be opened ({exc.strerror})")
        return found
    try:
        _read_folder(fd, "", found, limit)
    finally:
        os.close(fd)
    return found


def _read_folder(fd: int, prefix: str, found: KitFiles, limit: int) -> None:
    names = sorted(os.listdir(fd))
    if len(names) > MAX_ENTRIES:
        found.problems.append(f"{prefix or 'the kit folder '}holds {len(names)} entries; a kit folder has at most {MAX_ENTRIES}")
        return
    for name in names:
        relative = prefix + name
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            found.problems.append(f"{relative} cannot be read ({exc.strerror})")
            continue
        if stat.S_ISDIR(info.st_mode) and not prefix and name in kit.PLATFORM_DIRS["all"]:
            try:
                sub = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                found.problems.append(f"{relative}/ cannot be opened ({exc.strerror})")
                continue
            try:
                _read_folder(sub, relative + "/", found, limit)
            finally:
                os.close(sub)
            continue
        if not stat.S_ISREG(info.st_mode):
            found.problems.append(f"{relative} is {_kind(info.st_mode)}: a kit holds only regular files (in its windows/ and unix/ folders)")
            continue
        _read_file(fd, name, relative, found, limit)


def _read_file(fd: int, name: str, relative: str, found: KitFiles, limit: int) -> None:
    try:
        file_fd = os.open(name, _FILE_FLAGS, dir_fd=fd)  # O_NOFOLLOW: a link swapped in since the stat fails here
    except OSError as exc:
        found.problems.append(f"{relative} cannot be opened as a regular file ({exc.strerror})")
        return
    try:
        info = os.fstat(file_fd)
        if not stat.S_ISREG(info.st_mode):
            found.problems.append(f"{relative} is {_kind(info.st_mode)}: a kit holds only regular files")
            return
        if info.st_size > limit:
            found.problems.append(f"{relative} has {info.st_size} bytes; a kit file has at most {limit} (not read)")
            return
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(file_fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # it grew while being read
            found.problems.append(f"{relative} has more than {limit} bytes; a kit file has at most {limit}")
            return
        found.data[relative] = b"".join(chunks)
        found.modes[relative] = stat.S_IMODE(info.st_mode)
    finally:
        os.close(file_fd)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def plain_kit_path(text: object) -> bool:
    """"windows/NAME" or "unix/NAME" with NAME a plain file name (what manifest.json may name)."""
    if not isinstance(text, str):
        return False
    folder, _, name = text.partition("/")
    return folder in kit.PLATFORM_DIRS["all"] and bool(kit.SAFE_FILE_NAME.fullmatch(name))


def _listing_problems(where: str, listed: Any, present: dict[str, bytes], plain: Any) -> list[str]:
    """Compare a "files" object ({name: {sha256, size}}) with the files present (same keys)."""
    if not isinstance(listed, dict):
        return [f"{where}: \"files\" is not an object"]
    problems: list[str] = []
    prefix = "windows/" if where.startswith("windows/") else ""
    for name in sorted(listed):
        item = listed[name]
        if not plain(name):
            problems.append(f"{where} names {name!r}: not a plain file name inside the kit folder")
            continue
        if not isinstance(item, dict) or not isinstance(item.get("sha256"), str) or not _SHA256.fullmatch(item["sha256"]) or type(item.get("size")) is not int:
            problems.append(f"{where}: the entry of {prefix}{name} is not {{\"sha256\": 64 hex digits, \"size\": N}}")
            continue
        data = present.get(name)
        if data is None:
            problems.append(f"{prefix}{name} is missing (listed in {where})")
        elif len(data) != item["size"] or hashlib.sha256(data).hexdigest() != item["sha256"]:
            problems.append(f"{prefix}{name} differs from its SHA-256 and size in {where}")
    for name in sorted(set(present) - set(listed)):
        problems.append(f"{prefix}{name} is not listed in {where}")
    return problems


def check_kit(files: KitFiles, signer_thumbprint: str, signer_cert: x509.Certificate | None) -> Checked:
    """The integrity of a kit read by :func:`read_kit`, against the expected signer (its
    thumbprint, and its certificate when known apart from the kit: the PKI's kit-signer.pem)."""
    problems = list(files.problems)
    data = files.data
    raw = data.get(kit.MANIFEST)
    if raw is None:
        return Checked({}, None, problems + ([] if any(p.startswith(kit.MANIFEST) for p in problems) else [f"{kit.MANIFEST} is missing"]))
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        manifest = None
    if not isinstance(manifest, dict):
        return Checked({}, None, problems + [f"{kit.MANIFEST} is not a kit manifest (not a JSON object)"])
    version = manifest.get("kitVersion")
    if version == 1:
        return Checked(manifest, None, [f"{kit.MANIFEST}: {V1_REFUSAL}"])
    if version != kit.KIT_VERSION:
        return Checked(manifest, None, problems + [f"{kit.MANIFEST}: kit format {version!r}; expected {kit.KIT_VERSION}"])

    # The signer's certificate: the PKI's, else the one a Windows kit carries if it is the expected one.
    carried = data.get(f"windows/{kit.SIGNER_CER}")
    carried_cert = None
    if carried is not None:
        try:
            carried_cert = x509.load_der_x509_certificate(carried)
        except ValueError:
            problems.append(f"windows/{kit.SIGNER_CER} is not a DER certificate")
        else:
            if cert_facts.thumbprint(carried_cert) != signer_thumbprint:
                problems.append(f"windows/{kit.SIGNER_CER} is the certificate of {cert_facts.thumbprint(carried_cert)}, not of the kit signer {signer_thumbprint}")
                carried_cert = None
    verifier = signer_cert or carried_cert
    signature = data.get(kit.MANIFEST_SIG)
    if signature is None:
        problems.append(f"{kit.MANIFEST_SIG} is missing: the kit is not signed")
    elif verifier is None:
        problems.append(f"{kit.MANIFEST_SIG}: no certificate of the kit signer {signer_thumbprint} to check it with "
                        "(a UNIX kit carries none: verify with --dir of the PKI that made it)")
    elif not kit_signing.verifies(verifier, raw, signature):
        problems.append(f"{kit.MANIFEST_SIG}: the signature over {kit.MANIFEST} does not verify with the kit signer {signer_thumbprint} "
                        f"({kit.MANIFEST} was changed after it was signed, or another key signed it)")
    if manifest.get("signer") != signer_thumbprint:
        problems.append(f"{kit.MANIFEST}: signer {manifest.get('signer')!r}; expected {signer_thumbprint}")
    platform = manifest.get("platform")
    if platform not in kit.PLATFORMS:
        return Checked(manifest, None, problems + [f"{kit.MANIFEST}: platform {platform!r}; expected one of {', '.join(kit.PLATFORMS)}"])
    folders = kit.PLATFORM_DIRS[platform]
    kit_files = {k: v for k, v in data.items() if k not in (kit.MANIFEST, kit.MANIFEST_SIG)}
    problems += _listing_problems(kit.MANIFEST, manifest.get("files"), kit_files, plain_kit_path)
    listed = _object(manifest.get("files"))
    for path in sorted(set(data) | set(listed)):
        if "/" in path and path.split("/", 1)[0] not in folders:
            problems.append(f"{path}: a {platform} kit has no {path.split('/', 1)[0]}/ folder")
    for folder in folders:
        for name in REQUIRED[folder]:
            if f"{folder}/{name}" not in listed:
                problems.append(f"{folder}/{name} is missing (not in {kit.MANIFEST})")
    install = _check_windows(data, verifier, signer_thumbprint, problems) if "windows" in folders else None
    return Checked(manifest, install, problems)


def _check_windows(data: dict[str, bytes], verifier: x509.Certificate | None, signer_thumbprint: str, problems: list[str]) -> dict[str, Any] | None:
    raw = data.get(f"windows/{kit.INSTALL_JSON}")
    if raw is None:
        return None
    signature = data.get(f"windows/{kit.INSTALL_SIG}")
    if signature is None:
        problems.append(f"windows/{kit.INSTALL_SIG} is missing: install.ps1 would refuse the kit")
    elif verifier is not None and not kit_signing.verifies(verifier, raw, signature):
        problems.append(f"windows/{kit.INSTALL_SIG}: the signature over windows/{kit.INSTALL_JSON} does not verify with the kit signer "
                        f"{signer_thumbprint} (install.json was changed after it was signed, or another key signed it)")
    script = data.get(f"windows/{kit.INSTALL_PS1}")
    if script is not None and script != kit.template_bytes():
        problems.append(f"windows/{kit.INSTALL_PS1} is not the static template scripts/pki/windows/install.ps1")
    try:
        install = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        install = None
    if not isinstance(install, dict):
        problems.append(f"windows/{kit.INSTALL_JSON} is not an ASCII JSON object")
        return None
    if install.get("schemaVersion") != kit.KIT_VERSION:
        problems.append(f"windows/{kit.INSTALL_JSON}: schemaVersion {install.get('schemaVersion')!r}; expected {kit.KIT_VERSION}")
    present = {path.split("/", 1)[1]: value for path, value in data.items()
               if path.startswith("windows/") and path.split("/", 1)[1] not in kit.INSTALL_UNLISTED}
    problems += _listing_problems(f"windows/{kit.INSTALL_JSON}", install.get("files"), present, lambda n: isinstance(n, str) and bool(kit.SAFE_FILE_NAME.fullmatch(n)))
    listed = _object(install.get("files"))
    pfx = _object(install.get("pfx"))
    if pfx.get("file") != "device.pfx":
        problems.append(f"windows/{kit.INSTALL_JSON}: pfx.file {pfx.get('file')!r}; expected 'device.pfx'")
    cas = install.get("caCertificates")
    if not isinstance(cas, list) or not all(isinstance(c, dict) for c in cas):
        problems.append(f"windows/{kit.INSTALL_JSON}: caCertificates is not a list of objects")
    else:
        for entry in cas:
            name = entry.get("file")
            if not isinstance(name, str) or not kit.SAFE_FILE_NAME.fullmatch(name) or not name.endswith(".cer"):
                problems.append(f"windows/{kit.INSTALL_JSON}: caCertificates names {name!r}: not a plain .cer file name inside the kit folder")
            elif name not in listed:
                problems.append(f"windows/{kit.INSTALL_JSON}: caCertificates names {name}, which its \"files\" does not list")
        named = {entry.get("file") for entry in cas}
        for name in sorted(n for n in listed if isinstance(n, str) and n.endswith(".cer") and n not in named):
            problems.append(f"windows/{name} is a CA file that install.json's caCertificates does not name")
    superseded = install.get("supersedes")
    if not isinstance(superseded, list) or not all(isinstance(t, str) and kit.THUMBPRINT.fullmatch(t) for t in superseded):
        problems.append(f"windows/{kit.INSTALL_JSON}: supersedes is not a list of thumbprints (40 uppercase hex digits)")
    elif pfx.get("thumbprint") in superseded:
        problems.append(f"windows/{kit.INSTALL_JSON}: supersedes names the kit's own certificate {pfx.get('thumbprint')}")
    return install
