"""Where `bundle` writes kits: the bundles/ directory, its lock, and whole kits renamed into place.

Each kit is written into bundles/.tmp-XXXX and renamed to bundles/<name>, so a kit either does
not exist or is complete; a kit being replaced is first renamed to .old-XXXX (a symbolic link
planted at bundles/<name> is moved, never followed). What an interrupted run leaves is only
.tmp-* and .old-* directories, which :func:`remove_leftovers` clears under the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from .files import PRIVATE_DIR, PUBLIC_DIR
from .store import PkiError


def bundles_root(base: Path) -> Path:
    """base/bundles (0700), made with the parents it needs (0755: Path.mkdir(parents=True) would
    make those 0777 minus the umask, world-writable under umask 000). A mode given to mkdir is only
    ever narrowed by the umask, so these are the widest modes whatever the umask."""
    root = base / "bundles"
    if root.is_symlink():
        raise PkiError(f"{root}: a symbolic link; give a real directory with --out")
    missing = []
    folder = base
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for parent in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another run
            os.mkdir(parent, PUBLIC_DIR)
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, PRIVATE_DIR)
    if not root.is_dir():
        raise PkiError(f"{root}: not a directory; give another --out")
    return root


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PkiError(f"{root}: another bundle run is writing here") from None
        yield
    finally:
        os.close(fd)


def remove_leftovers(root: Path) -> None:
    for leftover in [*root.glob(".tmp-*"), *root.glob(".old-*")]:
        remove(leftover)


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def place_kit(root: Path, final: Path, folders: tuple[str, ...], files: list[tuple[str, bytes, int]]) -> None:
    """Write ``files`` ((relative path, bytes, mode), in this order) into root/.tmp-XXXX with
    the sub-folders ``folders``, then rename it to ``final`` (replacing what is there)."""
    tmp = root / f".tmp-{secrets.token_hex(8)}"
    try:
        os.mkdir(tmp, PRIVATE_DIR)
        for sub in folders:
            os.mkdir(tmp / sub, PRIVATE_DIR)
        for relative, data, mode in files:
            write_new(tmp / relative, data, mode)
        if os.path.lexists(final):
            old = root / f".old-{secrets.token_hex(8)}"
            os.rename(final, old)  # a symbolic link planted there is moved, never followed
            os.rename(tmp, final)
            remove(old)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
