"""`python -m scripts.pki`: a small offline PKI for beacon (server) and device (client) certificates.

Verbs: init-ca, issue-server, issue-client, sign-csr, revoke, crl, export-pfx, inspect, check,
list. See docs/pki.md. The pure certificate logic (reading, mapping rules, the IIS verdict) lives
in components/certs/ and components/iis/mapping_rules.py so the deployment code reuses it.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from .cli import main as _main

    return _main(argv)


__all__ = ["main"]
