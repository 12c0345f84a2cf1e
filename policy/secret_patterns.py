"""What counts as secret material in text, defined once: PEM private keys, base64 PKCS#12 (PFX)
blobs and passwords set to literals -- and what does not (references, placeholders, variables,
commands, masks, public certificates).

Two users: the policy pack (policy/rules.py, rule no-secret-material, over user data and SSM
documents) and the test suite's scanner (components/secret_scan.py, over the repository, the plan
artifacts and the mocked inputs); tests/test_secret_patterns.py checks that both flag the same text.

Why here and why a module: `pulumi policy publish` uploads only policy/, so the pack cannot read
anything outside it, while components/ runs from the repository root and can import
`policy.secret_patterns` (this package's __init__ imports nothing). A data file could hold the
regular expressions but not the decisions that go with them (a PFX's DER header, a literal versus a
reference), which would then be written twice. Standard library only: the pack's virtualenv holds
just pulumi-policy and pulumi. Nothing in this file is itself a key header, a PFX or a password
assignment, so the repository scan needs no exception for it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

# Kinds of material. PASSWORD_LITERAL, not PASSWORD: a password-named constant set to a quoted
# string is exactly what the scan reports.
PRIVATE_KEY = "private key"
PKCS12_BLOB = "pkcs12 blob"
PASSWORD_LITERAL = "password"
URL_CREDENTIALS = "url credentials"


@dataclass(frozen=True)
class SecretMatch:
    """One piece of secret material: its kind, where it is in the text ([start, end)) and, for a
    private key, the words before PRIVATE KEY in its header ("EC", "RSA", "ENCRYPTED", "" for PKCS#8)."""

    kind: str
    start: int
    end: int
    label: str = ""


# -- PEM private keys: any "-----BEGIN [WORD ...]PRIVATE KEY-----" header (PKCS#1/SEC1/PKCS#8,
# ENCRYPTED, OPENSSH). Written with -{5} and [ ] so that this line is not such a header.
PEM_PRIVATE_KEY = re.compile(r"-{5}BEGIN ((?:[A-Z0-9]+ )*)PRIVATE[ ]KEY-{5}")

# -- PKCS#12: base64 of a DER SEQUENCE with a long-form length starts MI plus one of A-P. 64 chars
# is one line of a wrapped blob, enough to decode the header; the blob need not start a word.
BASE64_DER = re.compile(r"MI[A-P][A-Za-z0-9+/]{61,}={0,2}")
# PFX: SEQUENCE { INTEGER 3, SEQUENCE { OID 1.2.840.113549.1.7.(1|2) ... } ... }
_PFX_VERSION = b"\x02\x01\x03"
_PKCS7_OID_PREFIX = bytes.fromhex("06092a864886f70d0107")

# -- Credentials in a URL's authority: a user, a colon and a password before '@host' (RFC 3986
# userinfo with a password part). A CRL or AIA URL never needs one; one copied into outputs is a leak.
URL_WITH_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:'\"<>]*:[^\s/?#@'\"<>]+@[^\s/?#'\"<>]")

# -- Passwords: a password-named key/variable (DbPassword, PKI_PASSWORD, ssh_passphrase, pwd, also
# inside escaped JSON) assigned with : or =, or a quoted literal handed to a PowerShell -Password
# parameter or ConvertTo-SecureString. A value is quoted -- "double" (may be \"escaped\" and hold
# backslashes), 'single' or mismatched -- or bare: up to a separator or a JSON escape (\n, \").
_QUOTED = r"""\\?"[^"\r\n]*"|'[^'\r\n]*'|["'][^"'\r\n]*["']"""
_BARE = r"""(?:[^\s'",;)}\]\\]|\\(?![nrtu"\\/]))+"""
PASSWORD_NAMES = r"\b\w*?(?:password|passwd|passphrase|pwd)"
_SEPARATOR = r"""\b\\?["']?\s*[:=]\s*"""
PASSWORD_ASSIGNMENT = re.compile(PASSWORD_NAMES + _SEPARATOR + f"(?P<value>{_QUOTED}|{_BARE})", re.IGNORECASE)
PASSWORD_ASSIGNMENT_QUOTED = re.compile(PASSWORD_NAMES + _SEPARATOR + f"(?P<value>{_QUOTED})", re.IGNORECASE)
PASSWORD_PARAMETER = re.compile(
    r"(?:-(?:Password|PlainPassword)|ConvertTo-SecureString(?:\s+-String)?)\s+" + f"(?P<value>{_QUOTED})",
    re.IGNORECASE,
)

# -- Not secrets. A value starting like a variable, expression or placeholder: $x, $(...), (...),
# {...}, <...>. A template or SSM parameter reference anywhere: ${...}, {{...}}. A mask or an
# elision (****, ...). A name of the setting that holds the password
# (serverCertificatePasswordSecretArn). Bare values only (quoted, these are text): @(...), [type],
# %VAR%, &cmd, a command Verb-Noun, a keyword, a word ending in a colon -- a YAML key, as in
# Pulumi's `secure:` under a secret setting.
REFERENCE_START = ("$", "(", "{", "<")
BARE_REFERENCE_START = ("@", "[", "%", "&")
TEMPLATE_MARKERS = ("${", "{{")
MASK_CHARS = frozenset("*.\u2026")
CMDLET = re.compile(r"^[A-Z][A-Za-z]+-[A-Z][A-Za-z0-9]*$")
NOT_SECRETS = frozenset({"true", "false", "null", "none", "required", "optional", "yes", "no"})
SETTING_REFERENCE = re.compile(r"[a-z][A-Za-z]*(?:Arn|Id|Name|Key|Path|Env)")


def is_pfx(blob: str) -> bool:
    """True when base64 text decodes to a PKCS#12 header (version 3, then PKCS#7 content info)."""
    head = blob[: len(blob) - len(blob) % 4][:48]
    try:
        der = base64.b64decode(head, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(der) < 2 or der[0] != 0x30:
        return False
    offset = _after_length(der, 1)
    if der[offset : offset + 3] != _PFX_VERSION:
        return False
    offset += 3
    if offset + 2 > len(der) or der[offset] != 0x30:
        return False
    offset = _after_length(der, offset + 1)
    return der[offset : offset + len(_PKCS7_OID_PREFIX)] == _PKCS7_OID_PREFIX


def _after_length(der: bytes, index: int) -> int:
    """Offset of the contents whose DER length octets start at index (short, long or indefinite)."""
    first = der[index]
    return index + 1 + (first & 0x7F if first > 0x80 else 0)


def literal_value(value: str) -> str | None:
    """The literal a password is set to, or None when it is a reference, expression or empty."""
    raw = value.strip()
    inner = re.sub(r"^[\\\"']+|[\\\"']+$", "", raw)
    quoted = inner != raw
    if not inner or inner.startswith(REFERENCE_START) or set(inner) <= MASK_CHARS:
        return None
    if any(marker in inner for marker in TEMPLATE_MARKERS) or SETTING_REFERENCE.fullmatch(inner):
        return None
    if not quoted and (
        inner.startswith(BARE_REFERENCE_START) or CMDLET.match(inner) or inner.lower() in NOT_SECRETS
        or inner.endswith(":")
    ):
        return None
    return inner


def find(text: str, *, bare_values: bool = True) -> list[SecretMatch]:
    """Secret material in text, keys first, then PFX blobs, then URL credentials, then passwords,
    each in text order.

    bare_values: whether an unquoted value is a literal, as in YAML, .env files, connection strings
    and PowerShell arguments (the policy's user data and SSM documents). In Python source it is an
    expression (``password: bytes``, ``password=read_password()``), so the repository scan passes
    False for *.py files: there, only quoted values are literals."""
    if not isinstance(text, str) or not text:
        return []
    found = [
        SecretMatch(PRIVATE_KEY, m.start(), m.end(), (m.group(1) or "").strip())
        for m in PEM_PRIVATE_KEY.finditer(text)
    ]
    found += [SecretMatch(PKCS12_BLOB, m.start(), m.end()) for m in BASE64_DER.finditer(text) if is_pfx(m.group(0))]
    found += [SecretMatch(URL_CREDENTIALS, m.start(), m.end() - 1) for m in URL_WITH_PASSWORD.finditer(text)]
    assignment = PASSWORD_ASSIGNMENT if bare_values else PASSWORD_ASSIGNMENT_QUOTED
    for pattern in (assignment, PASSWORD_PARAMETER):
        found += [
            SecretMatch(PASSWORD_LITERAL, m.start(), m.end())
            for m in pattern.finditer(text)
            if literal_value(m.group("value")) is not None
        ]
    return found
