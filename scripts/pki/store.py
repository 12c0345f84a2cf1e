"""The PKI directory: fixed layout, index.json, atomic writes, private files 0600 from creation.

    PKI/
      ca.pem  ca.key          issuing CA (the root itself, or the intermediate with --intermediate)
      root.pem root.key       only with --intermediate: the root, which signs the intermediate and root-crl
      chain.pem               issuing CA, then root (just the root without an intermediate)
      crl.pem crl.der         the issuing CA's CRL
      root-crl.pem root-crl.der   only with --intermediate: the root's CRL (covers the intermediate)
      server-ca.pem           only with a server CA (init-ca/init-server-ca --server-domain): the
                              name-constrained root that signs the beacons' server certificates
      private/server-ca.key   its key
      server-crl.pem server-crl.der   the server CA's CRL (covers the server certificates it signed)
      issued/NAME.pem         issued certificates
      issued/NAME.SERIAL.pem  certificates `renew` superseded (their keys are gone; index: NAME's "previous")
      private/NAME.key        their keys (directory 0700, files 0600); none for CSR-signed ones
      pfx/NAME.pfx            exports (0600)
      index.json              what was issued: serials, names, kind, status, revocation, notAfter
      crlnumber.json          the last CRL numbers (kept apart so that `crl` never rewrites index.json)

Bulk commands write their files without a sync each (each still appears atomically, by a rename
of a temporary file created with its final mode), then make them durable with one filesystem sync
(:class:`Batch`), and only then write index.json once, so the index never names a file that a
crash could lose.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.safe_files import CERTIFICATE_FILE_LIMIT, INDEX_FILE_LIMIT, KEY_FILE_LIMIT, FileRefused, check_regular, read_regular, read_text

from . import journal, keycrypt, renew_journal
from .entries import INDEX_VERSION, index_problem, serial_of
from .files import PRIVATE_DIR, PRIVATE_FILE, PUBLIC_DIR, PUBLIC_FILE, atomic_write, sync_filesystem
from .names import RESERVED_NAMES, SERVER_CA_NAME, name_key, name_problem
from .parallel import BackgroundWriter


class PkiError(Exception):
    """Bad input or state: printed as one line, exit code 2."""


def check_name(name: str, what: str = "name") -> str:
    """A certificate name doubles as a file name (issued/NAME.pem, private/NAME.key, pfx/NAME.pfx)
    on Linux and Windows: names.name_problem says what is refused."""
    problem = name_problem(name)
    if problem:
        raise PkiError(f"{what} {name!r} is not usable: {problem}")
    return name


def _write_unsynced(path: str | Path, data: bytes, mode: int) -> None:
    """How :class:`Batch` writes a file, here or in a background writer (which gets this
    function): atomic, final mode from creation, no fsync (:meth:`Batch.sync` makes all durable)."""
    atomic_write(path, data, mode, durable=False)


class Batch:
    """Files of one bulk command: each written atomically and with its final mode from creation,
    all made durable by one :meth:`sync` (syncfs) before index.json names them.

    With :meth:`start_background` the writes happen in forked writer processes (parallel.py),
    one per directory (creations in one directory are serialised by the kernel; two directories
    proceed side by side), each in the order given, while this process goes on signing.
    :meth:`write` returns a token (lane, position); after :meth:`drain`, :meth:`is_written`
    says whether that file is on disk."""

    def __init__(self, root: Path):
        self.root = root
        self.pending = 0  # files written and not yet synced
        self._writers: list[Any] = []
        self._lane_of: dict[str, int] = {}
        self._sent: list[int] = [0]
        self._done: list[int] = [0]  # files on disk per lane, in order

    def start_background(self, lanes: int = 2) -> bool:
        writers = []
        for _ in range(lanes):
            writer = BackgroundWriter(_write_unsynced)
            if not writer.start():
                break
            writers.append(writer)
        if writers:
            self._writers = writers
            self._sent = [0] * len(writers)
            self._done = [0] * len(writers)
        return bool(writers)

    def write(self, path: str | Path, data: bytes, mode: int) -> tuple[int, int]:
        """Write (or hand to a writer) one file; returns its token."""
        if self._writers:
            text = os.fspath(path)
            folder = os.path.dirname(text)
            lane = self._lane_of.get(folder)
            if lane is None:
                lane = self._lane_of[folder] = len(self._lane_of) % len(self._writers)
            position = self._sent[lane]
            self._writers[lane].write(text, data, mode)
            self._sent[lane] = position + 1
        else:
            lane, position = 0, self._done[0]
            _write_unsynced(path, data, mode)
            self._done[0] = position + 1
        self.pending += 1
        return lane, position

    def is_written(self, token: tuple[int, int]) -> bool:
        lane, position = token
        return position < self._done[lane]

    def drain(self) -> BaseException | None:
        """Wait for the background writers (if any); returns the first error that stopped one.
        After this, nothing more will be written."""
        first: BaseException | None = None
        writers, self._writers = self._writers, []
        for lane, writer in enumerate(writers):
            self._done[lane], error = writer.close()
            first = first or error
        return first

    def sync(self) -> None:
        if self.pending:
            sync_filesystem(self.root)
            self.pending = 0


def dumps_index(value: Any) -> str:
    """``json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)``, byte for byte, for
    the JSON types index.json holds, about twice as fast: with ``indent`` the standard library
    falls back to its pure-Python encoder, which dominates writing an index of 100,000 entries."""
    return _encode(value, "\n")


def _encode(value: Any, newline: str) -> str:
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    inner = newline + "  "
    if kind is dict:
        if not value:
            return "{}"
        if not all(type(k) is str for k in value):
            return _fallback(value, newline)
        items = [encode_basestring(k) + ": " + _encode(value[k], inner) for k in sorted(value)]
        return "{" + inner + ("," + inner).join(items) + newline + "}"
    if kind is list:
        if not value:
            return "[]"
        return "[" + inner + ("," + inner).join([_encode(v, inner) for v in value]) + newline + "]"
    return _fallback(value, newline)


def _fallback(value: Any, newline: str) -> str:
    """Anything unusual (floats, tuples, non-string keys): the standard library, re-indented."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return text.replace("\n", newline)


def key_pem(key: Any, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM; with a password encrypted (keycrypt.py: PBES2, AES-256-CBC)."""
    if password is not None:
        return keycrypt.encrypted_pem(key, password)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class Pki:
    """One PKI directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.ca_pem = self.root / "ca.pem"
        self.ca_key = self.root / "ca.key"
        self.root_pem = self.root / "root.pem"
        self.root_key = self.root / "root.key"
        self.chain_pem = self.root / "chain.pem"
        self.crl_pem = self.root / "crl.pem"
        self.crl_der = self.root / "crl.der"
        self.root_crl_pem = self.root / "root-crl.pem"
        self.root_crl_der = self.root / "root-crl.der"
        self.server_ca_pem = self.root / "server-ca.pem"
        self.server_ca_key = self.root / "private" / f"{SERVER_CA_NAME}.key"
        self.server_crl_pem = self.root / "server-crl.pem"
        self.server_crl_der = self.root / "server-crl.der"
        self.index_path = self.root / "index.json"
        self.crl_number_path = self.root / "crlnumber.json"
        self.issued = self.root / "issued"
        self.private = self.root / "private"
        self.pfx = self.root / "pfx"
        self.journal_path = self.root / journal.JOURNAL_FILE
        self.renew_journal_path = self.root / renew_journal.RENEW_JOURNAL_FILE
        self._index: dict[str, Any] | None = None
        self._taken: set[str] | None = None
        self._on_disk: set[str] | None = None
        self._lock_depth = 0

    # -- state ------------------------------------------------------------------------------
    def ca_files(self) -> list[Path]:
        return [p for p in (self.ca_pem, self.ca_key, self.root_pem, self.root_key, self.server_ca_pem, self.server_ca_key, self.index_path, self.crl_number_path) if p.exists()]

    def has_ca(self) -> bool:
        return self.ca_pem.is_file() and self.index_path.is_file()

    def require_ca(self) -> None:
        if not self.has_ca():
            for path in (self.ca_pem, self.index_path):  # there, but a device, a FIFO, a dangling link...
                if os.path.lexists(path):
                    try:
                        check_regular(path, INDEX_FILE_LIMIT)
                    except (OSError, FileRefused) as exc:
                        raise PkiError(f"{path}: unreadable ({getattr(exc, 'strerror', None) or exc})") from None
            raise PkiError(f"no CA in {self.root}/ (ca.pem and index.json missing): run `python -m scripts.pki --dir {self.root} init-ca --cn NAME` first")

    @property
    def index(self) -> dict[str, Any]:
        if self._index is None:
            self._index = self._read_index()
            if self._lock_depth == 0 and (self.journal_path.exists() or self.renew_journal_path.exists()):
                with self.locked():  # an interrupted command left its journal: recover it first
                    pass
        assert self._index is not None
        return self._index

    def _read_index(self) -> dict[str, Any]:
        """index.json, checked: a regular UTF-8 file, and every entry well-formed (entries.py);
        anything else is refused, naming the entry, and never trusted."""
        self.require_ca()
        collecting = gc.isenabled()
        gc.disable()  # parsing and checking make no cycles: no collection needs to walk the half-built index
        try:
            try:
                data = json.loads(read_text(self.index_path, INDEX_FILE_LIMIT))
            except (OSError, ValueError) as exc:
                raise PkiError(f"{self.index_path}: unreadable ({getattr(exc, 'strerror', None) or exc})") from None
            problem = index_problem(data)
        finally:
            if collecting:
                gc.enable()
        if problem:
            raise PkiError(f"{self.index_path}: {problem}; refusing to use it (restore it from a backup, or fix that entry)")
        gc.freeze()  # it lives as long as the command: later collections skip its ~10 objects per entry (cli.main unfreezes)
        return data

    def check_file_serial(self, name: str, item: dict[str, Any]) -> None:
        """The certificate file of an entry must be the certificate the entry names (serial): a
        hand-edited index.json must not revoke or export another certificate than it says."""
        path = self.issued / f"{name}.pem"
        if not path.exists():
            return
        actual = self.load_cert(path).serial_number
        if actual != serial_of(item):
            raise PkiError(
                f"{self.index_path}: entry certificates.{name} has serial {item['serial']} but {path} has serial "
                f"{actual:X}: index.json was edited or damaged; restore it (nothing was changed)"
            )

    def new_index(self, ca: dict[str, Any]) -> None:
        self._index = {"version": INDEX_VERSION, "ca": ca, "authorities": {}, "certificates": {}}
        self._taken = None

    def save_index(self) -> None:
        """One atomic, durable write of the whole index (the commit point of every change)."""
        atomic_write(self.index_path, (dumps_index(self.index) + "\n").encode("utf-8"), PUBLIC_FILE)

    # -- CRL numbers ------------------------------------------------------------------------
    def next_crl_number(self, key: str) -> int:
        """The last number (crlnumber.json; older PKIs kept it in index.json's "ca") plus one."""
        last = int(self.index["ca"].get(key, 0))
        try:
            saved = json.loads(read_text(self.crl_number_path, KEY_FILE_LIMIT))
        except FileNotFoundError:
            saved = {}
        except (OSError, ValueError) as exc:
            raise PkiError(f"{self.crl_number_path}: unreadable ({exc}); it holds the last CRL numbers") from None
        if not isinstance(saved, dict) or not isinstance(saved.get(key, 0), int):
            raise PkiError(f"{self.crl_number_path}: expected {{\"crlNumber\": N, \"rootCrlNumber\": M}}")
        return max(last, saved.get(key, 0)) + 1

    def save_crl_number(self, key: str, number: int) -> None:
        """Record a CRL number before the CRL is written: a crash then skips a number, never
        reuses one for a different CRL."""
        try:
            saved = json.loads(read_text(self.crl_number_path, KEY_FILE_LIMIT))
        except FileNotFoundError:
            saved = {}
        except (OSError, ValueError):
            saved = {}
        saved = saved if isinstance(saved, dict) else {}
        saved[key] = number
        atomic_write(self.crl_number_path, (dumps_index(saved) + "\n").encode("utf-8"), PUBLIC_FILE)

    @property
    def certificates(self) -> dict[str, dict[str, Any]]:
        return self.index["certificates"]

    def entry(self, name: str) -> dict[str, Any]:
        found = self.certificates.get(name)
        if found is None:
            known = sorted(self.certificates)
            hint = f" (known: {', '.join(known[:5])}{', ...' if len(known) > 5 else ''})" if known else " (nothing issued yet)"
            raise PkiError(f"unknown name {name!r} in {self.root}/index.json{hint}")
        return found

    def add_certificate(self, name: str, item: dict[str, Any]) -> None:
        self.certificates[name] = item
        if self._taken is not None:
            self._taken.add(name_key(name))

    def has_server_ca(self) -> bool:
        """A server CA made by init-ca/init-server-ca --server-domain (recorded in index.json)."""
        return "server" in self.index.get("authorities", {})

    def check_new_name(self, name: str, also: dict[str, str] | None = None) -> None:
        """Refuse a name already used or left on disk, compared by names.name_key (Unicode NFC and
        case folded: Windows file names ignore case, and the NFC and NFD spellings of one name are
        one device). ``also``: the names taken earlier in this request, by key. The names in use
        and on disk are read once per command (sets), not once per name."""
        check_name(name)
        key = name_key(name)
        if key in RESERVED_NAMES:
            raise PkiError(f"name {name!r} is reserved: {self.private / (key + '.key')} holds {RESERVED_NAMES[key]}; choose another name")
        if self._taken is None:
            self._taken = {name_key(existing) for existing in self.certificates}
        if key in self._taken:
            for existing, item in self.certificates.items():
                if name_key(existing) == key:
                    same = "" if existing == name else f" as {existing!r} (the same name once Unicode-normalised and case-folded)"
                    raise PkiError(f"name {name!r} is already issued{same} (serial {item['serial']}, {item['status']}); choose another name")
        if also is not None and key in also:
            first = also[key]
            same = "" if first == name else f" (as {first!r}: the same name once Unicode-normalised and case-folded)"
            raise PkiError(f"name {name!r} appears twice in this request{same}")
        if self._on_disk is None:
            self._on_disk = set()
            for directory, suffix in ((self.issued, ".pem"), (self.private, ".key")):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    self._on_disk.update(file_key for f in os.listdir(directory) if (file_key := name_key(f)).endswith(suffix))
        for directory, file_name in ((self.issued, f"{key}.pem"), (self.private, f"{key}.key")):
            if file_name in self._on_disk:
                raise PkiError(f"{directory / (name + file_name[-4:])} exists but is not in index.json; remove it or choose another name")

    # -- files ------------------------------------------------------------------------------
    def ensure_dirs(self) -> None:
        self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        self.issued.mkdir(mode=PUBLIC_DIR, exist_ok=True)
        self.private.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(self.private, PRIVATE_DIR)

    def write_key(self, path: Path, key: Any, batch: Batch | None = None, password: bytes | None = None) -> None:
        (batch.write if batch is not None else atomic_write)(path, key_pem(key, password), PRIVATE_FILE)

    def write_cert(self, path: Path, cert: x509.Certificate, batch: Batch | None = None) -> None:
        (batch.write if batch is not None else atomic_write)(path, cert_pem(cert), PUBLIC_FILE)

    def load_cert(self, path: Path) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(read_regular(path, CERTIFICATE_FILE_LIMIT))
        except (OSError, ValueError) as exc:
            raise PkiError(f"{path}: unreadable certificate ({getattr(exc, 'strerror', None) or exc})") from None

    def load_key(self, path: Path) -> Any:
        """A PEM private key; an encrypted one (init-ca --encrypt-key) with PKI_CA_PASSWORD."""
        try:
            data = read_regular(path, KEY_FILE_LIMIT)
            if keycrypt.is_encrypted(data):
                return keycrypt.load_encrypted(data, str(path))
            return serialization.load_pem_private_key(data, password=None)
        except keycrypt.PasswordProblem as exc:
            raise PkiError(str(exc)) from None
        except (OSError, ValueError, TypeError) as exc:
            raise PkiError(f"{path}: unreadable private key ({getattr(exc, 'strerror', None) or exc})") from None

    def _pair(self, cert_path: Path, key_path: Path) -> tuple[x509.Certificate, Any]:
        """A CA certificate and its key, which must belong together: a certificate signed with
        another key fails at every relying party (IIS 403.16) and a CRL cannot be signed."""
        cert, key = self.load_cert(cert_path), self.load_key(key_path)
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            raise PkiError(
                f"{key_path} does not belong to {cert_path} (their public keys differ): nothing it signs would verify "
                f"(IIS: 403.16); restore the key that was made with {cert_path.name}"
            )
        return cert, key

    def issuing(self) -> tuple[x509.Certificate, Any]:
        self.require_ca()
        return self._pair(self.ca_pem, self.ca_key)

    def intermediate(self) -> bool:
        return bool(self.index["ca"].get("intermediate"))

    def server_ca(self) -> tuple[x509.Certificate, Any]:
        """The server CA (init-server-ca) and its key, which must belong together."""
        if not self.has_server_ca():
            raise PkiError(f"no server CA in {self.root}/: run `python -m scripts.pki --dir {self.root} init-server-ca --server-domain DOMAIN` first")
        return self._pair(self.server_ca_pem, self.server_ca_key)

    def server_domains(self) -> list[str]:
        """The DNS subtrees the server CA is constrained to ([] without a server CA)."""
        return list(self.index["ca"].get("serverDomains", [])) if self.has_server_ca() else []

    def root_ca(self) -> tuple[x509.Certificate, Any]:
        if self.intermediate():
            return self._pair(self.root_pem, self.root_key)
        return self.issuing()

    def chain(self) -> list[x509.Certificate]:
        """Issuing CA first, then the root (one certificate without an intermediate)."""
        certs = [self.load_cert(self.ca_pem)]
        if self.intermediate():
            certs.append(self.load_cert(self.root_pem))
        return certs

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the directory itself while index.json is read-modified-written
        (re-entrant). Taking it re-reads index.json and first recovers the issuing journal an
        interrupted command left (journal.py), and finishes or undoes an interrupted renew
        (renew_journal.py). Background writers forked inside inherit the lock,
        so a killed command's writer finishes before the next command recovers."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            import fcntl  # POSIX only, so imported here: scripts.ops imports this module and runs on Windows too (ops probe)

            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_depth = 1
            if (self.journal_path.exists() or self.renew_journal_path.exists()) and self.has_ca():
                self._index, self._taken, self._on_disk = self._read_index(), None, None
                journal.recover(self)
                renew_journal.recover(self)  # an interrupted renew: finished or undone (renew_journal.py)
                self._taken, self._on_disk = None, None
            yield
        finally:
            self._lock_depth = 0
            os.close(fd)


SERIAL_TEXT = re.compile(r"^(0x)?[0-9a-fA-F:\s]+$")


def parse_serial(text: str) -> int:
    if not SERIAL_TEXT.match(text or ""):
        raise PkiError(f"--serial: got {text!r}; expected hex digits (colons and spaces allowed), e.g. 4f:1a:09")
    digits = re.sub(r"[:\s]", "", text[2:] if text.lower().startswith("0x") else text)
    if not digits:
        raise PkiError(f"--serial: got {text!r}; expected hex digits")
    return int(digits, 16)
