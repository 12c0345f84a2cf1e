"""Find secret material in text: PEM private keys, PKCS#12 (PFX) blobs, literal passwords.

Used by the test suite over the repository, every plan artifact and the mocked resource
inputs, so that no key, PFX or password reaches git, a plan or Pulumi state in plain text.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_PEM_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}={0,2}")
# password = "..." / "password": "..." with a literal value (placeholders like <...>, ${...},
# $variables and empty strings are not secrets).
_PASSWORD = re.compile(
    r"""(?i)\b(?:password|passwd|pwd)["']?[ \t]*[:=][ \t]*["']([^"'<>${}\s)(][^"'<>${}\r\n]{5,})["']"""
)


_REFERENCE = re.compile(r"[a-z][A-Za-z]*(?:Arn|Id|Name|Key|Path|Env)")


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str
    excerpt: str


def _is_pkcs12(blob: str) -> bool:
    try:
        der = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=False)
    except (binascii.Error, ValueError):
        return False
    # PFX: SEQUENCE { INTEGER 3 (version), ... } -- a certificate starts SEQUENCE { SEQUENCE ... }.
    if len(der) < 8 or der[0] != 0x30:
        return False
    offset = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    return der[offset : offset + 3] == b"\x02\x01\x03"


def scan(text: str, where: str) -> list[Finding]:
    findings = [Finding("private key", where, m.group(0)) for m in _PEM_KEY.finditer(text)]
    for m in _BASE64_RUN.finditer(text):
        if _is_pkcs12(m.group(0)):
            findings.append(Finding("pkcs12 blob", where, m.group(0)[:24] + "..."))
    for m in _PASSWORD.finditer(text):
        if _REFERENCE.fullmatch(m.group(1)):
            continue  # a reference to where the password lives, e.g. "serverCertificatePasswordSecretArn"
        findings.append(Finding("password", where, m.group(0)[:40]))
    return findings
