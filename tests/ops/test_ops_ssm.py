"""verify and rotate-server-cert against moto on loopback.

moto stores the converge document (the real script with the golden dev state as data) and
answers SendCommand and GetCommandInvocation over HTTP; the converge reports it cannot produce are
recorded reports laid into GetCommandInvocation's answer (botocore after-call), first 'InProgress'
then final, so the polling runs for real. State Manager association runs (not in moto) are
answered through botocore before-call events.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from components.certs import facts as cert_facts
from tests.ops_fixtures.support import (
    PFX_PASS,
    BeaconCa,
    Hooks,
    aws_env,
    boto_client,
    compact,
    create_document,
    freeze,
    golden_state,
    ok_response,
    outputs_file,
    report,
    request_body,
    run,
)

BEACON_1 = "i-7f0c2bfe3eaaa5b58"
BEACON_2 = "i-313de044c3a981bf5"
TWO_BEACONS = [
    {"name": "beacon-1", "instanceId": BEACON_1, "hostname": "ec2-198-51-100-53.us-east-1.compute.amazonaws.com", "availabilityZone": "us-east-1a"},
    {"name": "beacon-2", "instanceId": BEACON_2, "hostname": "ec2-198-51-100-109.us-east-1.compute.amazonaws.com", "availabilityZone": "us-east-1b"},
]


class Invocations:
    """GetCommandInvocation answers per instance: each call takes the next, the last repeats."""

    def __init__(self, hooks: Hooks):
        self.plan: dict[str, list[dict[str, Any]]] = {}
        self.seen: list[str] = []
        hooks.after("ssm", "GetCommandInvocation", self.change)

    def set(self, instance_id: str, *answers: dict[str, Any]) -> None:
        self.plan[instance_id] = list(answers)

    def change(self, parsed: dict[str, Any]) -> None:
        instance = parsed.get("InstanceId", "")
        self.seen.append(instance)
        answers = self.plan.get(instance)
        if answers:
            parsed.update(answers.pop(0) if len(answers) > 1 else answers[0])


RUNNING = {"Status": "InProgress", "StatusDetails": "InProgress", "ResponseCode": -1, "StandardOutputContent": ""}


def final(value: dict[str, Any] | str, code: int) -> dict[str, Any]:
    text = value if isinstance(value, str) else compact(value)
    status = "Success" if code == 0 else "Failed"
    return {"Status": status, "StatusDetails": status, "ResponseCode": code, "StandardOutputContent": text, "StandardErrorContent": ""}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    aws_env(monkeypatch, tmp_path)
    freeze(monkeypatch)
    name, digest = create_document(golden_state(), full=request.node.name == "test_verify_compliant_beacon")
    hooks = Hooks(monkeypatch)
    return {"tmp": tmp_path, "document": name, "digest": digest, "hooks": hooks, "invocations": Invocations(hooks)}


def outputs(stack: dict[str, Any], **changes: Any) -> str:
    values = {"mtls.stateDigest": stack["digest"], "mtls.documentName": stack["document"], **changes}
    return str(outputs_file(stack["tmp"], **values))


def test_verify_compliant_beacon(stack, capsys) -> None:
    stack["invocations"].set(BEACON_1, RUNNING, RUNNING, final(report("report-compliant.json"), 0))
    sent: list[dict[str, Any]] = []
    stack["hooks"].after("ssm", "SendCommand", lambda parsed: sent.append(parsed["Command"]))
    code, out, err = run(capsys, "--stack-outputs", outputs(stack), "verify", "--poll", "0.01")
    assert code == 0, out + err
    assert sent[0]["DocumentName"] == stack["document"] and sent[0]["Parameters"] == {"ReportOnly": ["true"]}
    assert sent[0]["InstanceIds"] == [BEACON_1]
    assert stack["invocations"].seen.count(BEACON_1) == 3  # polled until final
    assert "1/1 done: beacon-1 Success" in err and "0/1 done: beacon-1 InProgress" in err  # progress on stderr
    assert f"beacon-1 ({BEACON_1}): compliant [Success, exit 0] -> OK" in out
    assert "1 beacon(s): 1 compliant; all pass" in out
    assert "note:" not in out  # the document's state digest matches the outputs


def test_verify_drift_and_failure_on_two_beacons_exit_1_with_json(stack, capsys) -> None:
    invocations = stack["invocations"]
    invocations.set(BEACON_1, RUNNING, final(report("report-drift.json"), 3))
    invocations.set(BEACON_2, final(report("report-failed.json"), 1))
    code, out, err = run(capsys, "--stack-outputs", outputs(stack, beacons=TWO_BEACONS), "verify", "--poll", "0.01", "--json")
    assert code == 1, err
    result = json.loads(out)
    assert result["ok"] is False and result["desiredStateFromDocument"] is True
    first, second = result["beacons"]
    assert (first["name"], first["status"], first["responseCode"], first["verdict"]) == ("beacon-1", "drift", 3, "fail")
    failing = {c["name"] for c in first["checks"] if c["result"] == "fail"}
    assert failing == {"run", "sslFlags", "anonymous", "HTTP.sys", "trust", "CRL"}
    assert (second["status"], second["responseCode"]) == ("failed", 1)
    assert "no server certificate" in next(c for c in second["checks"] if c["name"] == "run")["detail"]
    assert second["report"]["computer"] == "EC2AMAZ-DEV0001"

    code, out, _ = run(capsys, "--stack-outputs", outputs(stack, beacons=TWO_BEACONS), "verify", "--poll", "0.01")
    assert code == 1
    assert "beacon-1 (i-7f0c2bfe3eaaa5b58): drift [Failed, exit 3] -> FAIL" in out
    assert "FAIL: drift or failure above" in out
    assert "clientcertnegotiation=disable (desired enable)" in out


def test_verify_report_cut_by_ssm_is_read_from_the_converge_log_group(stack, capsys) -> None:
    big = report("report-compliant.json")
    big["warnings"] = [f"note {i}: " + "x" * 200 for i in range(150)]
    logs = boto_client("logs")
    logs.create_log_group(logGroupName="/flexnet-beacon/dev/converge")
    logs.create_log_stream(logGroupName="/flexnet-beacon/dev/converge", logStreamName="EC2AMAZ-DEV0001")
    logs.put_log_events(
        logGroupName="/flexnet-beacon/dev/converge",
        logStreamName="EC2AMAZ-DEV0001",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": compact(big)}],
    )
    stack["invocations"].set(BEACON_1, final(compact(big)[:24000], 0))
    code, out, err = run(capsys, "--stack-outputs", outputs(stack), "verify", "--poll", "0.01", "--json")
    assert code == 0, err
    beacon = json.loads(out)["beacons"][0]
    assert beacon["reportSource"] == "CloudWatch Logs /flexnet-beacon/dev/converge/EC2AMAZ-DEV0001"
    assert beacon["verdict"] == "warn"  # 150 warnings, nothing failing


def test_verify_without_a_report_and_with_stale_outputs(stack, capsys) -> None:
    undelivered = {"Status": "DeliveryTimedOut", "StatusDetails": "DeliveryTimedOut", "ResponseCode": -1, "StandardOutputContent": ""}
    stack["invocations"].set(BEACON_1, undelivered)
    code, out, err = run(capsys, "--stack-outputs", outputs(stack, **{"mtls.stateDigest": "0" * 64}), "verify", "--poll", "0.01")
    assert code == 1, err
    assert "note: document mtls-document-898530f holds desired state" in out and "outputs file is stale" in out
    assert "DeliveryTimedOut: the instance did not pick the command up in time" in out


def test_verify_from_flags_without_an_outputs_file(stack, capsys) -> None:
    stack["invocations"].set(BEACON_2, final(report("report-compliant.json"), 0))
    code, out, err = run(
        capsys, "verify", "--region", "us-east-1", "--instance-id", BEACON_2, "--document-name", stack["document"], "--poll", "0.01"
    )
    assert code == 0, err
    assert f"instance-1 ({BEACON_2}): compliant" in out


# ---------------------------------------------------------------------------------------------
# rotate-server-cert


class Association:
    """State Manager answers moto lacks: an old execution, then a new one after StartAssociationsOnce."""

    def __init__(self, hooks: Hooks, final_status: str = "Success"):
        self.started = False
        self.polls = 0
        self.final_status = final_status
        hooks.before("ssm", "StartAssociationsOnce", self.start)
        hooks.before("ssm", "DescribeAssociationExecutions", self.executions)
        hooks.before("ssm", "DescribeAssociationExecutionTargets", self.targets)

    def start(self, params: dict[str, Any]) -> Any:
        assert request_body(params)["AssociationIds"] == ["1a7e6168-f489"]
        self.started = True
        return ok_response({})

    def executions(self, params: dict[str, Any]) -> Any:
        old = {"AssociationId": "1a7e6168-f489", "ExecutionId": "old-run", "Status": "Success", "CreatedTime": dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)}
        items = [old]
        if self.started:
            self.polls += 1
            status = "InProgress" if self.polls < 3 else self.final_status
            # CreatedTime from a clock behind ours: told apart by id, not by time.
            items.insert(0, {"AssociationId": "1a7e6168-f489", "ExecutionId": "new-run", "Status": status, "DetailedStatus": status, "CreatedTime": dt.datetime(2026, 5, 2, tzinfo=dt.timezone.utc)})
        return ok_response({"AssociationExecutions": items})

    def targets(self, params: dict[str, Any]) -> Any:
        assert request_body(params)["ExecutionId"] == "new-run"
        return ok_response({"AssociationExecutionTargets": [{"ResourceId": BEACON_1, "Status": self.final_status, "DetailedStatus": self.final_status}]})


def rotated_report(thumbprint: str) -> dict[str, Any]:
    value = report("report-compliant.json")
    value["checks"]["binding"]["thumbprint"] = thumbprint
    value["checks"]["httpSys"]["certhash"] = thumbprint.lower()
    return value


def prepare_rotation(stack, capsys, monkeypatch, with_secrets_in_state: bool = True) -> tuple[Path, Any, str]:
    monkeypatch.setenv("PKI_PASSWORD", PFX_PASS)
    ca = BeaconCa()
    old_pfx, old_cert = ca.pfx(stack["tmp"] / "old.pfx")
    assert run(capsys, "--stack-outputs", outputs(stack), "publish-server-cert", str(old_pfx), "--stack", "dev")[0] == 0
    sm = boto_client("secretsmanager")
    server = {
        "pfxSecretArn": sm.describe_secret(SecretId="flexnet-beacon/dev/server-pfx")["ARN"],
        "passwordSecretArn": sm.describe_secret(SecretId="flexnet-beacon/dev/server-pfx-password")["ARN"],
        "store": "My",
    }
    name, digest = create_document(golden_state(serverCertificate=server if with_secrets_in_state else None))
    stack["digest"] = digest
    new_pfx, new_cert = ca.pfx(stack["tmp"] / "new.pfx")
    return new_pfx, new_cert, cert_facts.thumbprint(old_cert)


def test_rotate_publishes_runs_the_association_and_finds_the_new_thumbprint_bound(stack, capsys, monkeypatch) -> None:
    new_pfx, new_cert, _ = prepare_rotation(stack, capsys, monkeypatch)
    association = Association(stack["hooks"])
    new = cert_facts.thumbprint(new_cert)
    stack["invocations"].set(BEACON_1, RUNNING, final(rotated_report(new), 0))
    code, out, err = run(capsys, "--stack-outputs", outputs(stack), "rotate-server-cert", str(new_pfx), "--poll", "0.01")
    assert code == 0, out + err
    assert association.started and association.polls >= 3
    assert "association 1a7e6168-f489: InProgress" in err and "association 1a7e6168-f489: Success" in err
    assert f"published new certificate {new}: flexnet-beacon/dev/server-pfx new-version" in out
    assert f"rotation complete: new thumbprint {new} bound with the desired HTTP.sys flags on every beacon" in out
    current = boto_client("secretsmanager").get_secret_value(SecretId="flexnet-beacon/dev/server-pfx")
    assert current["SecretBinary"] == new_pfx.read_bytes()


def test_rotate_reports_the_old_certificate_still_bound(stack, capsys, monkeypatch) -> None:
    new_pfx, new_cert, old = prepare_rotation(stack, capsys, monkeypatch)
    Association(stack["hooks"])
    stale = rotated_report(old)
    stale["checks"]["httpSys"]["clientcertnegotiation"] = "disable"  # renewal dropped the netsh-only flag
    stack["invocations"].set(BEACON_1, final(stale, 0))
    code, out, err = run(capsys, "--stack-outputs", outputs(stack), "rotate-server-cert", str(new_pfx), "--poll", "0.01", "--json")
    assert code == 1, err
    result = json.loads(out)
    assert result["ok"] is False and result["association"]["status"] == "Success"
    checks = {c["name"]: c for c in result["verify"]["beacons"][0]["checks"]}
    assert checks["binding"]["items"] == [f"bound {old}, expected {cert_facts.thumbprint(new_cert)}"]
    assert "clientcertnegotiation=disable (desired enable)" in checks["HTTP.sys"]["items"]


def test_rotate_with_a_failed_association_run(stack, capsys, monkeypatch) -> None:
    new_pfx, new_cert, _ = prepare_rotation(stack, capsys, monkeypatch)
    Association(stack["hooks"], final_status="Failed")
    stack["invocations"].set(BEACON_1, final(report("report-failed.json"), 1))
    code, out, _ = run(capsys, "--stack-outputs", outputs(stack), "rotate-server-cert", str(new_pfx), "--poll", "0.01")
    assert code == 1
    assert "association run new-run: Failed" in out and f"  {BEACON_1}: Failed" in out and "rotation NOT complete" in out


def test_rotate_refuses_a_stack_that_does_not_read_the_secrets(stack, capsys, monkeypatch) -> None:
    new_pfx, _, _ = prepare_rotation(stack, capsys, monkeypatch, with_secrets_in_state=False)
    association = Association(stack["hooks"])
    sm = boto_client("secretsmanager")
    versions = lambda: [v["VersionId"] for v in sm.list_secret_version_ids(SecretId="flexnet-beacon/dev/server-pfx")["Versions"]]  # noqa: E731
    before = versions()
    code, _, err = run(capsys, "--stack-outputs", outputs(stack), "rotate-server-cert", str(new_pfx), "--poll", "0.01")
    assert code == 1 and err.count("\n") == 1
    assert "does not take its certificate from Secrets Manager yet" in err
    assert not association.started
    assert versions() == before


def test_verify_reads_the_state_from_the_bucket_and_refuses_a_tampered_object(stack, capsys) -> None:
    """The document names the state object by digest; an object that does not hash to its name
    is not believed (checks fall back to the built-in expectations, and the note says why)."""
    from components.iis.document import state_key
    from tests.ops_fixtures.support import STATE_BUCKET

    stack["invocations"].set(BEACON_1, final(report("report-compliant.json"), 0))
    code, out, err = run(capsys, "--stack-outputs", outputs(stack), "verify", "--poll", "0.01", "--json")
    assert code == 0, err
    assert json.loads(out)["desiredStateFromDocument"] is True
    boto_client("s3").put_object(Bucket=STATE_BUCKET, Key=state_key(stack["digest"]), Body=b'{"stack": "tampered"}')
    code, out, err = run(capsys, "--stack-outputs", outputs(stack), "verify", "--poll", "0.01", "--json")
    result = json.loads(out)
    assert result["desiredStateFromDocument"] is False
    assert any("does not hash to its name" in note for note in result["notes"]), result["notes"]
