"""Certificate names. A name doubles as a file name (issued/NAME.pem, private/NAME.key,
pfx/NAME.pfx, bundles/NAME/) on Linux and on the Windows machines the kits go to, whether it
comes from the command line, a CSV, a CSR, index.json or the issuing journal: every source is
checked by the same rules (:func:`name_problem`), and names are compared by :func:`name_key`
(Unicode NFC, then case folding), so that the NFC and NFD spellings of one name, or two
spellings differing only by case, are one device.

Imports nothing from this package: store.py, entries.py and journal.py all use it.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Iterable

MAX_NAME = 64  # the X.509 upper bound of a common name
_WINDOWS_BAD = set('<>:"/\\|?*')
# Windows device names, also with an extension (NUL.txt is NUL), in any case: "Naming Files,
# Paths, and Namespaces" (learn.microsoft.com/windows/win32/fileio/naming-a-file) lists CON, PRN,
# AUX, NUL, COM1-9, COM¹ COM² COM³, LPT1-9, LPT¹ LPT² LPT³; CONIN$ and CONOUT$ are the console
# (CreateFile, "Consoles"). Not tried on Windows here.
WINDOWS_DEVICES = frozenset({
    "con", "prn", "aux", "nul", "conin$", "conout$",
    *(f"{port}{n}" for port in ("com", "lpt") for n in (*"123456789", "\u00b9", "\u00b2", "\u00b3")),
})
SERVER_CA_NAME = "server-ca"
# Keys of the PKI itself kept in private/ beside the certificates' keys: no certificate may take these names.
RESERVED_NAMES = {SERVER_CA_NAME: "the server CA's key", "kit-signer": "the kit-signing key"}


def name_key(name: str) -> str:
    """What two names are compared by: NFC, case folded (folding can leave a string that is not
    NFC, hence the second normalisation)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a certificate name (separators, '..', control and Windows-reserved
    characters, Windows device names, length), or None."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if name != name.strip():
        return "it starts or ends with whitespace"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if ".." in name or name.startswith("."):
        return "it contains '..' or starts with '.'"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") for ch in name):
        return "it contains control characters"
    if any(ch in _WINDOWS_BAD for ch in name):
        return "it contains one of < > : \" | ? * (not allowed in Windows file names)"
    if name.endswith("."):
        return "it ends with '.'"
    if name_key(name.split(".")[0].rstrip(" ")) in WINDOWS_DEVICES:  # Windows ignores spaces before the extension
        return "it is a reserved Windows device name (CON, PRN, AUX, NUL, COM1-9, COM¹-³, LPT1-9, LPT¹-³, CONIN$, CONOUT$, with or without an extension)"
    if len(name) > MAX_NAME:
        return f"it has {len(name)} characters (at most {MAX_NAME}: the X.509 limit of a common name)"
    return None


def reserved_problem(name: str) -> str | None:
    """A name the PKI keeps for its own keys (private/NAME.key), or None."""
    holder = RESERVED_NAMES.get(name_key(name))
    return f"it is reserved: private/{name_key(name)}.key holds {holder}" if holder else None


# Many names at once (index.json: up to 100,000): joined by newlines (never part of a name) and
# looked at as one text by C-level passes (bytes.translate, substring search); only when that
# finds something to look at is each name checked by itself. Names that pass are plain ASCII
# names that name_problem and reserved_problem accept.
_PLAIN_CHARS = (string.ascii_letters + string.digits + "_.-\n").encode("ascii")
_SUSPECT_LINE = re.compile(  # on the lowercased text: a line that is a device name (also with an extension) or a reserved name
    rb"\n(?:%s)[.\n]" % b"|".join(re.escape(name.encode("ascii")) for name in (*(d for d in WINDOWS_DEVICES if d.isascii()), *RESERVED_NAMES))
).search
_PLAIN_NAME = re.compile(  # the same rules for one plain ASCII name
    r"(?!\.)(?!.*\.\.)(?!(?:con|prn|aux|nul|com[1-9]|lpt[1-9])(?:\.|$))(?!(?:%s)$)[A-Za-z0-9_.-]{1,%d}(?<!\.)"
    % ("|".join(map(re.escape, RESERVED_NAMES)), MAX_NAME),
    re.IGNORECASE | re.ASCII,
).fullmatch


def _all_plain(names: list[str]) -> bool:
    try:
        data = ("\n" + "\n".join(names) + "\n").encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return False
    if data.count(b"\n") != len(names) + 1:  # a newline inside a name
        return False
    if data.translate(None, _PLAIN_CHARS) or b".." in data or b"\n." in data or b".\n" in data or b"\n\n" in data:
        return False
    return max(map(len, names)) <= MAX_NAME and not _SUSPECT_LINE(data.lower())


def first_name_problem(names: Iterable[str]) -> tuple[str, str] | None:
    """(name, why) of the first unusable or reserved name among ``names``, or None."""
    names = list(names)
    if not names or _all_plain(names):
        return None
    for name in names:
        if type(name) is str and _PLAIN_NAME(name):
            continue
        problem = name_problem(name) or reserved_problem(name)
        if problem:
            return name, problem
    return None
