"""`rotate-server-cert`: a new PFX version in the stack's secrets, the State Manager association
run now (it imports the certificate and rebinds HTTP.sys with every flag), then `verify` that
the new thumbprint is bound and the HTTP.sys flags are the desired ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .aws import Aws
from .common import OpsError, note
from .outputs import Beacon
from .secrets import PASSWORD_SECRET, PFX_SECRET, ServerPfx, publish, secret_name
from .ssm import desired_state, start_association, wait_association
from . import verify


def _names(arn: Any, name: str) -> bool:
    """Does a secret ARN (full, with the random suffix, or partial) name this secret?"""
    if not isinstance(arn, str) or ":secret:" not in arn:
        return False
    tail = arn.split(":secret:", 1)[1]
    return tail == name or (tail.startswith(name + "-") and len(tail) == len(name) + 7)


def check_stack_uses_secrets(state: Mapping[str, Any] | None, stack: str, document: str) -> str:
    """Refuse to rotate when the beacons would not pick the secrets up; a note when unknown."""
    if state is None:
        return f"could not read the desired state from {document}: assuming it takes the certificate from {secret_name(stack, PFX_SECRET)}"
    server = state.get("serverCertificate")
    if not isinstance(server, dict):
        raise OpsError(
            "the stack does not take its certificate from Secrets Manager yet (serverCertificate is not set in the converge "
            "document): run publish-server-cert, the two `pulumi config set` lines it prints and `pulumi up` first"
        )
    for key, leaf in (("pfxSecretArn", PFX_SECRET), ("passwordSecretArn", PASSWORD_SECRET)):
        if not _names(server.get(key), secret_name(stack, leaf)):
            raise OpsError(
                f"the stack reads its certificate from {server.get(key)}, not from {secret_name(stack, leaf)}: point the "
                "stack at the secrets this tool writes (pulumi config set ... ; pulumi up) or rotate that secret instead"
            )
    return ""


@dataclass
class RotateResult:
    published: dict[str, Any]
    thumbprint: str
    execution: dict[str, Any]
    targets: list[dict[str, Any]]
    verified: verify.VerifyResult

    @property
    def association_ok(self) -> bool:
        return self.execution.get("Status") == "Success" and all(t.get("Status") == "Success" for t in self.targets)

    @property
    def ok(self) -> bool:
        return self.association_ok and self.verified.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "thumbprint": self.thumbprint,
            "published": self.published,
            "association": {
                "executionId": self.execution.get("ExecutionId"),
                "status": self.execution.get("Status"),
                "detailedStatus": self.execution.get("DetailedStatus"),
                "targets": [
                    {"resourceId": t.get("ResourceId"), "status": t.get("Status"), "detailedStatus": t.get("DetailedStatus")}
                    for t in self.targets
                ],
            },
            "verify": self.verified.to_dict(),
        }

    def lines(self) -> list[str]:
        out = [f"published new certificate {self.thumbprint}: " + ", ".join(f"{r['name']} {r['action']}" for r in self.published.values())]
        out.append(f"association run {self.execution.get('ExecutionId')}: {self.execution.get('Status')} {self.execution.get('DetailedStatus') or ''}".rstrip())
        for target in self.targets:
            out.append(f"  {target.get('ResourceId')}: {target.get('Status')} {target.get('DetailedStatus') or ''}".rstrip())
        out.append("")
        out += self.verified.lines()
        out.append("")
        out.append(
            f"rotation {'complete' if self.ok else 'NOT complete'}: new thumbprint {self.thumbprint} "
            + ("bound with the desired HTTP.sys flags on every beacon" if self.ok else "is not bound everywhere, or the association failed (see above)")
        )
        return out


def run(
    aws: Aws,
    stack: str,
    pfx: ServerPfx,
    beacons: Sequence[Beacon],
    *,
    document: str,
    association_id: str,
    log_group: str | None,
    expected_digest: str | None,
    kms_key_id: str | None,
    timeout: float,
    interval: float,
    warn_days: int,
) -> RotateResult:
    state, _ = desired_state(aws, document)
    caution = check_stack_uses_secrets(state, stack, document)
    if caution:
        note(caution)
    published = publish(aws, stack, pfx, kms_key_id)
    if all(r["action"] == "unchanged" for r in published.values()):
        note(f"the secrets already hold this certificate ({pfx.thumbprint}); running the association anyway")
    known = start_association(aws, association_id)
    note(f"association {association_id} started; waiting up to {timeout:g} s")
    execution, targets = wait_association(aws, association_id, known, timeout, interval, note)
    verified = verify.run(
        aws,
        document,
        beacons,
        log_group=log_group,
        expected_digest=expected_digest,
        timeout=timeout,
        interval=interval,
        expect_thumbprint=pfx.thumbprint,
        warn_days=warn_days,
        comment="flexnet-beacon ops rotate-server-cert check (report-only)",
    )
    return RotateResult(published, pfx.thumbprint, execution, targets, verified)
