"""Low-level file writing of the PKI directory: file modes, atomic writes, syncs.

Imported by store.py (the PKI directory, :class:`store.Batch`) and parallel.py (the background
writer); it imports nothing from this package, so neither of those needs the other for it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path

PRIVATE_FILE = 0o600
PUBLIC_FILE = 0o644
PRIVATE_DIR = 0o700
PUBLIC_DIR = 0o755


def atomic_write(path: str | Path, data: bytes, mode: int = PUBLIC_FILE, durable: bool = True) -> None:
    """Write to a temporary file in the same directory (created with ``mode``), then rename.

    durable: fsync the file before the rename and the directory after it. Bulk writers pass
    False and call :func:`sync_filesystem` once for all their files (see :class:`store.Batch`)."""
    head, tail = os.path.split(os.fspath(path))
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exactly this mode whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(head or ".")


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Flush everything written to the filesystem holding ``path``: Linux syncfs(2) (one call
    instead of an fsync per file), else sync(2)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            syncfs = libc.syncfs
        except (OSError, AttributeError):
            syncfs = None
        if syncfs is not None:
            fd = os.open(path, os.O_RDONLY)
            try:
                if syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
    os.sync()
