"""`verify`: the converge document in report-only mode on every beacon, judged and tabulated.
`rotate-server-cert` reuses it with the thumbprint that must now be bound."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from .aws import Aws
from .common import note, now_utc
from .outputs import Beacon
from .report import Check, evaluate, render_beacon, verdict
from .ssm import Invocation, attach_reports, desired_state, digest_note, poll_invocations, send_report_only


@dataclass
class BeaconResult:
    invocation: Invocation
    checks: list[Check] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return verdict(self.checks)

    @property
    def status(self) -> str:
        if self.invocation.report is None:
            return "no-report"
        return str(self.invocation.report.get("status") or "unknown")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.invocation.to_dict(),
            "status": self.status,
            "verdict": self.verdict,
            "checks": [c.to_dict() for c in self.checks],
            "report": self.invocation.report,
        }


@dataclass
class VerifyResult:
    command_id: str
    document: str
    region: str
    beacons: list[BeaconResult]
    notes: list[str]
    desired_state: bool

    @property
    def ok(self) -> bool:
        return all(b.verdict != "fail" for b in self.beacons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "commandId": self.command_id,
            "document": self.document,
            "region": self.region,
            "desiredStateFromDocument": self.desired_state,
            "notes": self.notes,
            "beacons": [b.to_dict() for b in self.beacons],
        }

    def lines(self) -> list[str]:
        out = [f"verify: document {self.document}, command {self.command_id}, region {self.region}"]
        for note_text in self.notes:
            out.append(f"note: {note_text}")
        for result in self.beacons:
            inv = result.invocation
            code = "" if inv.response_code is None else f", exit {inv.response_code}"
            title = f"\n{inv.beacon.name} ({inv.beacon.instance_id}): {result.status} [{inv.status}{code}] -> {result.verdict.upper()}"
            out += render_beacon(title, result.checks)
        counts: dict[str, int] = {}
        for result in self.beacons:
            counts[result.status] = counts.get(result.status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        out.append("")
        out.append(f"{len(self.beacons)} beacon(s): {summary}; " + ("all pass" if self.ok else "FAIL: drift or failure above"))
        return out


def run(
    aws: Aws,
    document: str,
    beacons: Sequence[Beacon],
    *,
    log_group: str | None,
    expected_digest: str | None,
    timeout: float,
    interval: float,
    expect_thumbprint: str | None = None,
    warn_days: int = 30,
    comment: str = "flexnet-beacon ops verify (report-only)",
) -> VerifyResult:
    notes: list[str] = []
    state, why = desired_state(aws, document)
    if why:
        notes.append(why)
    stale = digest_note(state, expected_digest, document)
    if stale:
        notes.append(stale)
    since_ms = int(time.time() * 1000) - 60_000
    command_id = send_report_only(aws, document, beacons, comment)
    note(f"command {command_id} sent to {len(beacons)} beacon(s) (ReportOnly=true); waiting up to {timeout:g} s")
    invocations = poll_invocations(aws, command_id, beacons, timeout, interval, note)
    attach_reports(aws, invocations, log_group, since_ms)
    now = now_utc()
    results = []
    for inv in invocations:
        if inv.report is None:
            detail = inv.report_error or "no report"
            if inv.stderr:
                detail += f"; stderr: {inv.stderr.splitlines()[-1][:300]}"
            checks = [Check("run", "fail", f"{inv.status}: {detail}")]
        else:
            checks = evaluate(inv.report, now, state, expect_thumbprint, warn_days)
        results.append(BeaconResult(inv, checks))
    return VerifyResult(command_id, document, aws.region, results, notes, state is not None)
