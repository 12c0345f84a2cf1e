"""SSM: run the stack's converge document on the beacons (report-only), wait for the invocations,
fetch their reports; read the desired state back from the document; run the association now.

Invocation states: Pending, InProgress, Delayed and Cancelling are still running; every other
status is final. A non-zero exit of the script (1 failed, 4 restart still pending; 3010 makes SSM
Agent restart the instance) makes SSM say Failed with that ResponseCode: the report is read from
stdout whatever the status. Report-only drift exits 0.
"""

from __future__ import annotations

import hashlib
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from botocore.exceptions import ClientError

from components.iis.document import state_digest, state_key

from .aws import Aws, error_code, error_message
from .common import OpsError, parse_time
from .outputs import Beacon
from .report import ReportError, computer_name, extract_report

RUNNING = {"Pending", "InProgress", "Delayed", "Cancelling"}
ASSOCIATION_RUNNING = {"Pending", "InProgress", "Waiting", "Delayed"}
FINAL_HINTS = {
    "DeliveryTimedOut": "the instance did not pick the command up in time (SSM agent offline or stopped instance)",
    "ExecutionTimedOut": "the converge script ran longer than the document's timeoutSeconds",
    "TimedOut": "the command timed out",
    "Undeliverable": "the instance is not reachable by SSM (terminated, or not managed)",
    "Terminated": "the command was terminated on the instance",
    "InvalidPlatform": "the document needs Windows (platformType) and the instance is not Windows",
    "AccessDenied": "the instance's role may not run the document",
    "Cancelled": "the command was cancelled",
}

Progress = Callable[[str], None]


@dataclass
class Invocation:
    beacon: Beacon
    status: str = "Pending"
    details: str = ""
    response_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    report: dict[str, Any] | None = None
    report_source: str = ""
    report_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.beacon.name,
            "instanceId": self.beacon.instance_id,
            "invocationStatus": self.status,
            "statusDetails": self.details,
            "responseCode": self.response_code,
            "reportSource": self.report_source or None,
            "reportError": self.report_error or None,
            "stderr": self.stderr or None,
        }


def send_report_only(aws: Aws, document: str, beacons: Sequence[Beacon], comment: str) -> str:
    """SendCommand of the converge document with ReportOnly=true; the command id."""
    ids = [b.instance_id for b in beacons]
    try:
        sent = aws.client("ssm").send_command(
            DocumentName=document,
            InstanceIds=ids,
            Parameters={"ReportOnly": ["true"]},
            Comment=comment[:100],
            TimeoutSeconds=600,
        )
    except ClientError as exc:
        code = error_code(exc)
        if code == "InvalidInstanceId":
            raise OpsError(
                f"instance(s) {', '.join(ids)} not managed by SSM in {aws.region}: the instance is stopped or terminated, its SSM agent "
                "is not registered, its role lacks AmazonSSMManagedInstanceCore, or it is in another region "
                f"(check: aws ssm describe-instance-information --region {aws.region})"
            ) from None
        if code == "InvalidDocument":
            raise OpsError(f"SSM document {document!r} not found in {aws.region}: wrong region, or the stack outputs are stale ({error_message(exc)})") from None
        if code in ("InvalidParameters", "InvalidDocumentVersion"):
            raise OpsError(f"SSM document {document!r} does not take ReportOnly=true ({error_message(exc)}): is it the converge document of this stack?") from None
        raise
    return sent["Command"]["CommandId"]


def poll_invocations(
    aws: Aws,
    command_id: str,
    beacons: Sequence[Beacon],
    timeout: float,
    interval: float,
    progress: Progress,
) -> list[Invocation]:
    """Poll GetCommandInvocation until every beacon is final; OpsError on the overall timeout."""
    ssm = aws.client("ssm")
    invocations = {b.instance_id: Invocation(b) for b in beacons}
    start = time.monotonic()
    last_line = ""
    last_shown = start
    while True:
        for inv in invocations.values():
            if inv.status not in RUNNING:
                continue
            try:
                got = ssm.get_command_invocation(CommandId=command_id, InstanceId=inv.beacon.instance_id)
            except ClientError as exc:
                if error_code(exc) == "InvocationDoesNotExist":  # not registered yet right after SendCommand
                    continue
                if error_code(exc) == "InvalidInstanceId":
                    raise OpsError(f"instance {inv.beacon.instance_id} ({inv.beacon.name}) is not managed by SSM in {aws.region}") from None
                raise
            inv.status = str(got.get("Status") or "Pending")
            inv.details = str(got.get("StatusDetails") or "")
            code = got.get("ResponseCode")
            inv.response_code = int(code) if isinstance(code, int) and code >= 0 else None
            inv.stdout = got.get("StandardOutputContent") or ""
            inv.stderr = (got.get("StandardErrorContent") or "").strip()
        elapsed = time.monotonic() - start
        pending = [i for i in invocations.values() if i.status in RUNNING]
        line = ", ".join(f"{i.beacon.name} {i.status}" for i in invocations.values())
        if line != last_line or time.monotonic() - last_shown >= 30:
            done = len(invocations) - len(pending)
            progress(f"{done}/{len(invocations)} done: {line} ({elapsed:.0f} s)")
            last_line, last_shown = line, time.monotonic()
        if not pending:
            return list(invocations.values())
        if elapsed >= timeout:
            waiting = ", ".join(f"{i.beacon.name} ({i.beacon.instance_id}) {i.status}" for i in pending)
            raise OpsError(
                f"command {command_id} timed out after {timeout:g} s waiting for {waiting}; "
                f"see aws ssm list-command-invocations --command-id {command_id} --details --region {aws.region}"
            )
        time.sleep(interval)


def report_from_logs(aws: Aws, log_group: str, computer: str, since_ms: int) -> dict[str, Any] | None:
    """The newest report the script sent to CloudWatch Logs (stream = computer name) since a time."""
    logs = aws.client("logs")
    try:
        events = logs.get_log_events(logGroupName=log_group, logStreamName=computer, startTime=since_ms, startFromHead=False).get("events", [])
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    for event in reversed(events):
        try:
            return extract_report(event.get("message", ""))
        except ReportError:
            continue
    return None


def attach_reports(aws: Aws, invocations: Sequence[Invocation], log_group: str | None, since_ms: int) -> None:
    """Parse each invocation's report; a report cut by SSM's 24,000-character limit is read from
    the converge log group instead."""
    for inv in invocations:
        try:
            inv.report = extract_report(inv.stdout)
            inv.report_source = "stdout"
        except ReportError as exc:
            inv.report_error = str(exc)
            computer = computer_name(inv.stdout)
            if log_group and computer and "cut at" in str(exc):
                found = report_from_logs(aws, log_group, computer, since_ms)
                if found is not None:
                    inv.report, inv.report_error = found, ""
                    inv.report_source = f"CloudWatch Logs {log_group}/{computer}"
                else:
                    inv.report_error += f"; no report from {computer} in {log_group} either"
            if inv.report is None and inv.status in FINAL_HINTS:
                inv.report_error = f"{inv.status}: {FINAL_HINTS[inv.status]} ({inv.report_error})"


def desired_state(aws: Aws, document: str) -> tuple[dict[str, Any] | None, str]:
    """The desired state the converge document points at: its StateBucket/StateDigest parameter
    defaults name the object converge/state-<digest>.json; (None, why not) when it cannot be read."""
    try:
        content = aws.client("ssm").get_document(Name=document).get("Content") or ""
    except ClientError as exc:
        if error_code(exc) == "InvalidDocument":
            raise OpsError(f"SSM document {document!r} not found in {aws.region}: wrong region, or the stack outputs are stale") from None
        return None, f"could not read document {document} ({error_code(exc)}): checks use built-in expectations"
    try:
        parameters = json.loads(content).get("parameters") or {}
        bucket = str(parameters["StateBucket"]["default"])
        digest = str(parameters["StateDigest"]["default"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, f"document {document} is not the converge document (no StateBucket/StateDigest parameters)"
    key = state_key(digest)
    try:
        body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        return None, f"could not read s3://{bucket}/{key} ({error_code(exc)}): checks use built-in expectations"
    if hashlib.sha256(body).hexdigest() != digest:
        return None, f"s3://{bucket}/{key} does not hash to its name: checks use built-in expectations"
    try:
        return json.loads(body.decode("utf-8")), ""
    except ValueError:
        return None, f"s3://{bucket}/{key} is not JSON"


def digest_note(state: Mapping[str, Any] | None, expected: str | None, document: str) -> str:
    if state is None or not expected:
        return ""
    actual = state_digest(state)
    if actual != expected:
        return (
            f"document {document} holds desired state {actual[:12]}.., the stack outputs say {expected[:12]}..: "
            "the outputs file is stale or the document was changed outside Pulumi"
        )
    return ""


def _executions(aws: Aws, association_id: str) -> list[dict[str, Any]]:
    try:
        return aws.client("ssm").describe_association_executions(AssociationId=association_id, MaxResults=50).get("AssociationExecutions", [])
    except ClientError as exc:
        if error_code(exc) in ("AssociationDoesNotExist", "InvalidAssociation"):
            raise OpsError(f"association {association_id} not found in {aws.region}: wrong region, or the stack outputs are stale") from None
        raise


def start_association(aws: Aws, association_id: str) -> set[str]:
    """StartAssociationsOnce; returns the ids of the executions that existed before (new ones are
    told apart by id, not by time, so the operator's clock does not matter)."""
    before = {str(e.get("ExecutionId")) for e in _executions(aws, association_id)}
    try:
        aws.client("ssm").start_associations_once(AssociationIds=[association_id])
    except ClientError as exc:
        if error_code(exc) in ("AssociationDoesNotExist", "InvalidAssociation"):
            raise OpsError(f"association {association_id} not found in {aws.region}: wrong region, or the stack outputs are stale") from None
        raise
    return before


def _created(item: Mapping[str, Any]) -> float:
    created = item.get("CreatedTime")
    parsed = created if isinstance(created, dt.datetime) else parse_time(created)
    return parsed.timestamp() if parsed is not None else 0.0


def wait_association(
    aws: Aws, association_id: str, known: set[str], timeout: float, interval: float, progress: Progress
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wait for the first execution that was not in `known` to finish; (execution, its targets)."""
    start = time.monotonic()
    last = ""
    while True:
        fresh = [e for e in _executions(aws, association_id) if str(e.get("ExecutionId")) not in known]
        execution = min(fresh, key=_created) if fresh else None
        status = str(execution.get("Status", "?")) if execution else "not started"
        detailed = execution.get("DetailedStatus") if execution else None
        elapsed = time.monotonic() - start
        line = f"association {association_id}: {status}" + (f" ({detailed})" if detailed else "")
        if line != last:
            progress(f"{line} ({elapsed:.0f} s)")
            last = line
        if execution is not None and status not in ASSOCIATION_RUNNING:
            break
        if elapsed >= timeout:
            raise OpsError(
                f"association {association_id} timed out after {timeout:g} s ({status}); "
                f"see aws ssm describe-association-executions --association-id {association_id} --region {aws.region}"
            )
        time.sleep(interval)
    targets = aws.client("ssm").describe_association_execution_targets(
        AssociationId=association_id, ExecutionId=execution["ExecutionId"]
    ).get("AssociationExecutionTargets", [])
    return execution, targets
