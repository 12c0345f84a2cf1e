"""The files of a device onboarding kit (`bundle`), built from data only, and passwords.csv.

Layout of one kit, bundles/<device>/ (directory 0700), kit format 2; windows/ only with
--platform windows or all, unix/ only with unix or all:

    manifest.json               what the kit is: device, serial, beacons, stack, platform, signer,
                                every other file of the kit with SHA-256 and size
    manifest.sig                the kit signer's signature over manifest.json (kit_signing.py)
    windows/device.pfx          certificate + non-exportable-on-import key, AES-256 (0600)
    windows/root-N.cer          the beacons' name-constrained server root(s): LocalMachine\\Root (DER)
    windows/intermediate-N.cer  intermediate CA(s), e.g. the device CA's: LocalMachine\\CA (DER)
    windows/install.ps1         the static script (scripts/pki/windows/install.ps1, the same in every kit)
    windows/install.json        its data: file names with SHA-256 and size, thumbprints, stores,
                                beacon URLs, the thumbprints it supersedes
    windows/install.json.sig    the kit signer's signature over install.json (install.ps1 checks it)
    windows/kit-signer.cer      the kit signer's certificate (DER)
    windows/mgssetup.ini        the lines for new agent installs (CRLF, ASCII)
    unix/device.pem             certificate (+ intermediates), PEM
    unix/device.key             key, PKCS#8 PEM (0600); "ENCRYPTED PRIVATE KEY" with --encrypt-key
                                (always with --platform all)
    unix/cert.pem               root CA(s) of the beacons' server certificate (SSLCACertificateFile)
    unix/mgsft_rollout_response the lines for new agent installs (LF)
    unix/UNIXConfig.ini         the preference for installed agents (mgsconfig -i)
    unix/INSTALL.txt            where each file goes

File names inside a kit are fixed; the device name is only the directory's name and a value in
JSON/text. The agent files (rollout, mgssetup.ini, UNIXConfig.ini) hold no device data at all:
only the beacon host names, checked by beacons.check_host. docs/onboarding.md has the sources.
The contract between these files and install.ps1 is kit format 2 (docs/onboarding.md).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import secrets
import string
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.certs import facts as cert_facts
from components.safe_files import TABLE_FILE_LIMIT, read_text

from .beacons import download_url, upload_url
from .build import PKCS8_KEY_SCHEME
from .store import PkiError, check_name

KIT_VERSION = 2
PLATFORMS = ("windows", "unix", "all")
PLATFORM_DIRS = {"windows": ("windows",), "unix": ("unix",), "all": ("windows", "unix")}
KIT_FILE_LIMIT = 1024 * 1024  # every file of a kit is far smaller; verify-bundle refuses larger ones unread
MANIFEST, MANIFEST_SIG = "manifest.json", "manifest.sig"
INSTALL_JSON, INSTALL_SIG, SIGNER_CER, INSTALL_PS1 = "install.json", "install.json.sig", "kit-signer.cer", "install.ps1"
# windows/ files that install.json's "files" does not list: itself, its signature, the script, the signer.
INSTALL_UNLISTED = (INSTALL_JSON, INSTALL_SIG, INSTALL_PS1, SIGNER_CER)
SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # as install.ps1's $SafeFileName
THUMBPRINT = re.compile(r"[0-9A-F]{40}")
TEMPLATE = Path(__file__).with_name("windows") / "install.ps1"
PREFERENCE = "AddClientCertificateAndKey"
ROLLOUT_NAME = "mgsft_rollout_response"
ROLLOUT_SETTINGS = (  # besides the two bootstrap URLs; values as the agent's sample response file writes them
    ("MGSFT_HTTPS_ADDCLIENTCERTIFICATEANDKEY", "true"),
    ("MGSFT_HTTPS_CHECKSERVERCERTIFICATE", "true"),
    ("MGSFT_HTTPS_CHECKCERTIFICATEREVOCATION", "true"),
    ("MGSFT_HTTPS_PRIORITIZEREVOCATIONCHECKS", "CRL"),
)
UNIX_ROLLOUT_PATH = "/var/tmp/mgsft_rollout_response"  # Flexera's sample flexia-setup.sh
UNIX_CA_PATH = "/var/opt/managesoft/etc/ssl/cert.pem"  # default of SSLCACertificateFile
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 24  # 24 of 62 symbols: 142 bits
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_QUOTED_START = (*_FORMULA_START, "'")  # what passwords.csv prefixes with '


@lru_cache(maxsize=1)
def template_bytes() -> bytes:
    return TEMPLATE.read_bytes()


def bundle_dir(root: Path, name: str) -> Path:
    """root/<name>, refusing anything that is not one plain file name inside root."""
    check_name(name, "device name")
    target = root / name
    if target.parent != root or PurePosixPath(name).name != name or target.name != name:
        raise PkiError(f"device name {name!r} is not usable as a directory name")
    return target


def bootstrap_host(name: str, hosts: list[str]) -> str:
    """The beacon a device bootstraps against: a stable choice by name, so a bulk rollout is spread
    over the beacons (afterwards the agent picks beacons from the failover list of its policy)."""
    number = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    return hosts[number % len(hosts)]


def rollout_response(host: str) -> bytes:
    lines = [
        "# FlexNet inventory agent bootstrap (mgsft_rollout_response) for UNIX-like devices,",
        "# made by python -m scripts.pki bundle. Copy to /var/tmp/mgsft_rollout_response before installing.",
        f"MGSFT_BOOTSTRAP_DOWNLOAD={download_url(host)}",
        f"MGSFT_BOOTSTRAP_UPLOAD={upload_url(host)}",
        *(f"{key}={value}" for key, value in ROLLOUT_SETTINGS),
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def mgssetup_ini(host: str) -> bytes:
    lines = [
        "; Lines for mgssetup.ini (FlexNet inventory agent, new installs on Windows), made by",
        "; python -m scripts.pki bundle. Merge them into the mgssetup.ini of your agent installer:",
        "; keep its file name and its other sections. The certificate itself comes from install.ps1.",
        "[Custom Install Settings]",
        f"DEPLOYSERVERURL={download_url(host)}",
        "",
        "[Common]",
        f"{PREFERENCE}=True",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def unix_config_ini() -> bytes:
    lines = [
        "# The agent preference for an installed UNIX agent: /opt/managesoft/bin/mgsconfig -i UNIXConfig.ini",
        "[ManageSoft\\Common]",
        f"{PREFERENCE}=True",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def unix_install_text(name: str, stack: str | None, cert_path: str | None, key_path: str | None, key_encrypted: bool = False,
                      server_ca: bool = True) -> bytes:
    unset = "NOT SET: Flexera's documentation does not say where the UNIX agent reads it; ask Flexera for your agent version, then run bundle again with {}"
    target = key_path or "<client key path>"
    decrypt = [
        "",
        f"device.key is encrypted ({PKCS8_KEY_SCHEME}) with this device's PFX password",
        "(PKI_PASSWORD of the run, or its row of passwords.csv, sent apart from this kit). On the device, as root:",
        f"  umask 077; openssl pkey -in device.key -out {target}   # asks for the password",
        f"  chown root {target}; chmod 600 {target}; rm device.key",
    ] if key_encrypted else []
    lines = [
        f"FlexNet inventory agent onboarding kit: device {name}" + (f", stack {stack}" if stack else ""),
        "",
        "File                     Goes to",
        f"mgsft_rollout_response   {UNIX_ROLLOUT_PATH}  (before installing the agent; new installs only)",
        f"cert.pem                 {UNIX_CA_PATH}  (CA of the beacons' server certificate; SSLCACertificateFile)" if server_ca else
        f"(no cert.pem)            the devices already trust the beacons' CA (--server-trust preinstalled): keep {UNIX_CA_PATH} as it is",
        "UNIXConfig.ini           /opt/managesoft/bin/mgsconfig -i UNIXConfig.ini  (installed agents: AddClientCertificateAndKey)",
        f"device.pem               {cert_path or unset.format('--unix-client-cert PATH')}",
        f"device.key               {key_path or unset.format('--unix-client-key PATH')}  (mode 0600, owner root)",
        *decrypt,
        "",
        "Sources: docs/onboarding.md of the flexnet-beacon project.",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def check_unix_path(text: str | None, what: str) -> str | None:
    """An absolute POSIX path with printable ASCII and no spaces (it is written into INSTALL.txt)."""
    if text is None:
        return None
    if not text.startswith("/") or ".." in text.split("/") or not all(33 <= ord(ch) < 127 for ch in text) or len(text) > 255:
        raise PkiError(f"{what}: got {text!r}; expected an absolute path in printable ASCII without spaces or '..'")
    return text


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def dns_constraints(cert: x509.Certificate) -> tuple[list[str], list[str]] | None:
    """(permitted, excluded) dNSName subtrees of a CA's NameConstraints, lower case; None when it
    has no permitted dNSName subtree (then it can vouch for any DNS name)."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    permitted = [n.value.lower() for n in constraints.permitted_subtrees or () if isinstance(n, x509.DNSName)]
    excluded = [n.value.lower() for n in constraints.excluded_subtrees or () if isinstance(n, x509.DNSName)]
    if not permitted or "" in permitted:  # an empty dNSName base permits every name
        return None
    return permitted, excluded


def dns_subtree_covers(base: str, name: str) -> bool:
    """RFC 5280 4.2.1.10: a base covers itself and any name with labels added on the left; a base
    with a leading '.' (a common extension, OpenSSL's too) only the names below it."""
    name = name.lower().rstrip(".")
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def ca_files(chain: list[x509.Certificate]) -> list[tuple[str, str, x509.Certificate]]:
    """(file name, store, certificate) for the CA certificates a Windows kit imports.

    Root: only self-signed certificates with permitted dNSName constraints (the beacons' server
    CA): a root in LocalMachine\\Root vouches for TLS servers on the whole device, so none that
    can vouch for names outside the beacons' domains is ever installed (bundle._server_trust
    checks that the subtrees cover every beacon). CA: everything else of the chain, the device
    CA's root included (device-root-N.cer): LocalMachine\\CA confers no trust, it only lets
    Windows build the device certificate's chain (install.ps1 checks the chain ends there) and
    send its intermediates."""
    out: list[tuple[str, str, x509.Certificate]] = []
    roots = device_roots = intermediates = 0
    for cert in chain:
        if cert_facts.is_self_signed(cert):
            if dns_constraints(cert) is None:
                device_roots += 1
                out.append((f"device-root-{device_roots}.cer", "CA", cert))
                continue
            roots += 1
            out.append((f"root-{roots}.cer", "Root", cert))
        else:
            intermediates += 1
            out.append((f"intermediate-{intermediates}.cer", "CA", cert))
    return out


def listing(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """{name: {"sha256", "size"}} by name: the "files" of manifest.json and install.json."""
    return {path: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for path, data in sorted(files.items())}


def install_json(name: str, stack: str | None, cert: x509.Certificate, cas: list[tuple[str, str, x509.Certificate]], hosts: list[str],
                 supersedes: list[str], files: dict[str, bytes]) -> bytes:
    """windows/install.json. files: every file of windows/ that install.ps1 reads besides
    INSTALL_UNLISTED (device.pfx, the CA files, mgssetup.ini), by plain name."""
    data = {
        "schemaVersion": KIT_VERSION,
        "device": name,
        "stack": stack,
        "pfx": {"file": "device.pfx", "thumbprint": cert_facts.thumbprint(cert), "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(), "notAfter": cert_facts.iso(cert.not_valid_after_utc)},
        "caCertificates": [{"file": file, "store": store, "thumbprint": cert_facts.thumbprint(ca), "subject": ca.subject.rfc4514_string()} for file, store, ca in cas],
        "beaconUrls": [download_url(h) for h in hosts],
        "supersedes": supersedes,
        "files": listing(files),
    }
    # ASCII only (non-ASCII as \\u escapes): Windows PowerShell 5.1 reads a file without BOM as ANSI.
    return (json.dumps(data, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def manifest(entries: dict[str, Any], files: dict[str, bytes]) -> bytes:
    return (json.dumps({**entries, "files": listing(files)}, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def supersedes(item: dict[str, Any], where: str) -> list[str]:
    """Thumbprints of the earlier certificates of a device name (entry["previous"], written by
    `renew`; none when absent), checked: install.ps1 deletes these from LocalMachine\\My."""
    found: list[str] = []
    for record in item.get("previous") or []:
        value = record.get("thumbprint") if isinstance(record, dict) else None
        if not isinstance(value, str) or not THUMBPRINT.fullmatch(value):
            raise PkiError(f"{where}.previous: thumbprint {value!r}; expected 40 uppercase hexadecimal digits")
        if value == item.get("sha1"):
            raise PkiError(f"{where}.previous names the current certificate {value}: the kit would remove it from the device")
        if value not in found:
            found.append(value)
    return found


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A kit's manifest.json of this KIT_VERSION, else None (for rerun decisions, not trust)."""
    try:
        data = json.loads(read_text(folder / MANIFEST, KIT_FILE_LIMIT))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kitVersion") == KIT_VERSION else None


def files_intact(folder: Path, data: dict[str, Any]) -> bool:
    """Every listed file present with its size, and the manifest's signature (cheap: a rerun
    uses it to skip complete kits)."""
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        return False
    try:
        if (folder / MANIFEST_SIG).stat().st_size == 0:
            return False
    except OSError:
        return False
    for relative, item in files.items():
        try:
            if (folder / relative).stat().st_size != item.get("size"):
                return False
        except (OSError, AttributeError):
            return False
    return True


def new_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _cell(text: str) -> str:
    """A spreadsheet opening the CSV must not run a cell as a formula: a device name starting
    with = + - @ (or tab/CR) gets a leading ', and so does one that really starts with ', so that
    every name reads back exactly (:func:`_uncell`)."""
    return "'" + text if text.startswith(_QUOTED_START) else text


def _uncell(text: str) -> str:
    """Drop the ' :func:`_cell` added: one followed by a formula character or another '. Any
    other leading ' is the name's own (files written before names starting with ' were quoted
    read back the same)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_QUOTED_START) else text


def passwords_csv(rows: dict[str, str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["device", "password"])
    for name in sorted(rows):
        writer.writerow([_cell(name), rows[name]])
    return buffer.getvalue().encode("utf-8")


def read_passwords(path: Path) -> dict[str, str]:
    try:
        text = read_text(path, TABLE_FILE_LIMIT)  # a regular file only: a FIFO there must not hang bundle or verify-bundle
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PkiError(f"{path}: unreadable ({exc.strerror})") from None
    except ValueError as exc:
        raise PkiError(f"{path}: {exc}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != ["device", "password"]:
        raise PkiError(f"{path}: expected the header row device,password")
    rows: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, row in enumerate(reader, start=2):
        if len(row) != 2:
            raise PkiError(f"{path}:{number}: expected two columns, device and password")
        name = _uncell(row[0])
        if name in lines:  # two passwords for one device: which one the PFX has is unknowable
            raise PkiError(f"{path}:{number}: device {name!r} again (also on line {lines[name]}); expected one row per device")
        lines[name] = number
        rows[name] = row[1]
    return rows
