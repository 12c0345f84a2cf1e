"""Find secret material in text: PEM private keys, PKCS#12 (PFX) blobs, literal passwords.

Used by the test suite over the repository, every plan artifact and the mocked resource
inputs, so that no key, PFX or password reaches git, a plan or Pulumi state in plain text.

What counts as secret material is defined once, in policy/secret_patterns.py, and shared with the
policy pack's no-secret-material rule (policy/rules.py): a published pack holds only policy/, so
the definition lives there and this module imports it (tests/test_secret_patterns.py checks that
both flag the same samples).
"""

from __future__ import annotations

from dataclasses import dataclass

from policy import secret_patterns


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str
    excerpt: str


def _excerpt(text: str, match: secret_patterns.SecretMatch) -> str:
    found = text[match.start : match.end]
    if match.kind == secret_patterns.PKCS12_BLOB:
        return found[:24] + "..."
    if match.kind == secret_patterns.PASSWORD_LITERAL:
        return found[:40]
    if match.kind == secret_patterns.URL_CREDENTIALS:
        return found[: found.index("://") + 3] + "...:...@"  # never the credentials themselves
    return found


def scan(text: str, where: str) -> list[Finding]:
    """Secret material in text; where names its source (a path, a plan file, a resource). In Python
    source (where ends in .py) an unquoted value is an expression, so only quoted ones are literals."""
    matches = secret_patterns.find(text, bare_values=not where.endswith(".py"))
    return [Finding(m.kind, where, _excerpt(text, m)) for m in matches]
