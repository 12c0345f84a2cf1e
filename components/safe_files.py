"""Reading files named by a user or a config value, which may be hostile: only regular files,
only up to a size cap, never opening a FIFO, a device or a terminal.

``Path.read_bytes()`` of ``/dev/zero`` grows until the process runs out of memory, and of a FIFO
blocks until someone writes to it. :func:`read_regular` refuses anything that is not a regular
file (after following symlinks) before opening it, opens without blocking (O_NONBLOCK) and reads
at most the cap. Problems are :class:`FileRefused` (a ValueError) with a one-line reason that does not
repeat the path, so callers print ``{what} {path}: {reason}``; a file that cannot be opened at
all raises OSError as usual.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MIB = 1024 * 1024

# Caps by kind of file. A CRL of 100,000 entries is about 4 MiB (DER) or 6 MiB (PEM).
CERTIFICATE_FILE_LIMIT = 64 * MIB  # certificates, CRLs, CSRs, chains (PEM bundles)
KEY_FILE_LIMIT = 1 * MIB  # private keys, PFX files
TABLE_FILE_LIMIT = 64 * MIB  # CSV device lists, stack outputs (JSON)
INDEX_FILE_LIMIT = 1024 * MIB  # the PKI's index.json (about 400 bytes per certificate)
STACK_FILE_LIMIT = 4 * MIB  # stacks/Pulumi.<stack>.yaml


class FileRefused(ValueError):
    """Not a regular file, larger than the cap, or not text in the expected encoding."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def size_text(size: int) -> str:
    return f"{size / MIB:.0f} MiB" if size >= MIB else f"{size} bytes"


def check_regular(path: str | os.PathLike[str], limit: int) -> int:
    """Refuse (FileRefused) a path that is not a regular file below ``limit`` bytes; returns its
    size. For files handed to another reader (OpenSSL) by name."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"{_kind(info.st_mode)}; expected a regular file")
    if info.st_size > limit:
        raise FileRefused(f"{size_text(info.st_size)}; expected a file of at most {size_text(limit)}")
    return info.st_size


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Anything else is refused before
    it is opened (opening a device can itself do something); the open is non-blocking and
    checked again, in case the path changed in between."""
    check_regular(path, limit)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{_kind(info.st_mode)}; expected a regular file")
        if info.st_size > limit:
            raise FileRefused(f"{size_text(info.st_size)}; expected a file of at most {size_text(limit)}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(limit + 1 - total, 4 * MIB))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise FileRefused(f"more than {size_text(limit)}; expected a file of at most {size_text(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], limit: int, encoding: str = "utf-8") -> str:
    """:func:`read_regular`, decoded; undecodable bytes are a FileRefused naming the offset."""
    data = read_regular(path, limit)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        name = "UTF-8" if encoding.lower().replace("_", "-").startswith("utf-8") else encoding
        raise FileRefused(f"not {name} text (byte {data[exc.start:exc.start + 1]!r} at offset {exc.start}); expected {name}") from None


def inside(path: Path, base: Path) -> bool:
    """Does ``path`` (symlinks followed) stay inside ``base`` (symlinks followed)?"""
    try:
        return path.resolve().is_relative_to(base.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False
