"""`python -m scripts.ops`: day-2 operations for FlexNet beacons (boto3).

Verbs: publish-server-cert, verify, probe, expiry, rotate-server-cert, readiness. Runbook:
docs/operations.md. Modules by concern: outputs (stack outputs), aws (session, region, error
lines), secrets (the PFX in Secrets Manager), ssm (send-command, polling, association), report
(the converge report), verify, rotate, probe (mTLS matrix), expiry (certificates, CRLs, metrics),
readiness (reading the IIS logs, the report) with w3c (W3C lines) and fleet (devices and their
verdicts), cli (argparse).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from .cli import main as _main

    return _main(argv)


__all__ = ["main"]
