"""BeaconMtls under mocks: converge objects in the stack's bucket, a small static document, the
association, and rule changes that never touch instances; states of any size."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from components.iis import document as doc
from components.iis.rate_control import association_max_errors
from components.iis.state_bucket import bucket_prefix
from conftest import ROOT, Planned, plan_stack
from tests import ps_lint

HOSTILE = [
    "'; Remove-Item C:\\ -Recurse; '",
    '"; $(Stop-Computer) "',
    "`$(calc)`",
    "line1\nline2",
    "'@\n$x = 1\n@'",
    '"@\nStop-Computer\n@"',
    "ünïcødé ✓ ‮evil",
    "${env:COMPUTERNAME}",
    "{{ StateBucket }}",
]


def document_of(p: Planned) -> dict:
    return json.loads(p.one("ssm/document:Document").inputs["content"])


def objects_of(p: Planned) -> dict[str, dict]:
    return {r.name: r.inputs for r in p.of_type("s3/bucketObjectv2:BucketObjectv2")}


def test_document_is_the_static_bootstrap_with_the_deployed_objects_as_defaults(dev: Planned) -> None:
    resource = dev.one("ssm/document:Document").inputs
    assert (resource["documentType"], resource["documentFormat"], resource["targetType"]) == ("Command", "JSON", "/AWS::EC2::Instance")
    assert len(resource["content"].encode()) <= doc.DOCUMENT_CONTENT_LIMIT
    document = json.loads(resource["content"])
    assert document["schemaVersion"] == "2.2"
    (step,) = document["mainSteps"]
    assert step["action"] == "aws:runPowerShellScript"
    assert step["precondition"] == {"StringEquals": ["platformType", "Windows"]}
    assert step["inputs"]["timeoutSeconds"] == "1800"
    assert step["inputs"]["runCommand"] == list(doc.BOOTSTRAP)
    defaults = {name: p["default"] for name, p in document["parameters"].items()}
    objects = objects_of(dev)
    assert defaults == {
        "ReportOnly": "false",
        "StateBucket": dev.outputs["mtls"]["stateBucket"],
        "StateRegion": "us-east-1",
        "StateDigest": dev.outputs["mtls"]["stateDigest"],
        "ScriptDigest": dev.outputs["mtls"]["scriptDigest"],
    }
    assert objects["mtls-state"]["key"] == f"converge/state-{defaults['StateDigest']}.json"
    assert objects["mtls-script"]["key"] == f"converge/script-{defaults['ScriptDigest']}.ps1"


def test_objects_hold_exactly_the_state_and_script_their_digests_name(prod: Planned) -> None:
    objects = objects_of(prod)
    state, script = objects["mtls-state"], objects["mtls-script"]
    assert state["bucket"] == script["bucket"] == prod.outputs["mtls"]["stateBucket"]
    # What Get-FileHash computes over the downloaded file is what the parameter says.
    assert hashlib.sha256(state["content"].encode("utf-8")).hexdigest() == prod.outputs["mtls"]["stateDigest"]
    assert hashlib.sha256(script["content"].encode("utf-8")).hexdigest() == prod.outputs["mtls"]["scriptDigest"]
    assert script["content"] == doc.read_converge_script()
    loaded = json.loads(state["content"])
    assert loaded["stack"] == "prod"
    assert loaded["authentication"]["clientCertificateMapping"]["manyToOneMappings"][0]["rules"][0]["matchCriteria"] == "Example Device Issuing CA"
    assert all(o["serverSideEncryption"] == "AES256" for o in objects.values())


def test_the_document_waits_for_its_objects(dev: Planned) -> None:
    document = dev.one("ssm/document:Document")
    objects = {r.urn for r in dev.of_type("s3/bucketObjectv2:BucketObjectv2")}
    assert objects <= set(document.dependencies)


def test_association(prod: Planned) -> None:
    assoc = prod.one("ssm/association:Association", "mtls-association").inputs
    document = prod.one("ssm/document:Document")
    assert assoc["name"].startswith("mtls-document")
    assert assoc["documentVersion"] == "1"
    assert assoc["scheduleExpression"] == "rate(30 minutes)"
    assert assoc["applyOnlyAtCronInterval"] is False
    assert assoc["complianceSeverity"] == "HIGH"
    assert assoc["associationName"] == "flexnet-beacon-prod-mtls"
    # Two beacons: one at a time, and the run goes on past one failing beacon (rate_control.py).
    assert (assoc["maxConcurrency"], assoc["maxErrors"]) == ("1", association_max_errors(2)) == ("1", "1")
    (target,) = assoc["targets"]
    assert target["key"] == "InstanceIds"
    assert sorted(target["values"]) == sorted(b["instanceId"] for b in prod.outputs["beacons"])
    params = assoc["parameters"]
    assert params == {
        "ReportOnly": "false",
        "StateBucket": prod.outputs["mtls"]["stateBucket"],
        "StateRegion": "us-east-1",
        "StateDigest": prod.outputs["mtls"]["stateDigest"],
        "ScriptDigest": prod.outputs["mtls"]["scriptDigest"],
    }
    assert document.parent.endswith("BeaconMtls::mtls")


def test_schedule_severity_report_only_from_config() -> None:
    p = plan_stack("dev", {"convergeSchedule": "rate(2 hours)", "complianceSeverity": "CRITICAL", "convergeReportOnly": "true", "convergeTimeoutSeconds": 600})
    assoc = p.one("ssm/association:Association", "mtls-association").inputs
    assert assoc["scheduleExpression"] == "rate(2 hours)"
    assert assoc["complianceSeverity"] == "CRITICAL"
    assert assoc["parameters"]["ReportOnly"] == "true"
    assert document_of(p)["parameters"]["ReportOnly"]["default"] == "true"
    assert document_of(p)["mainSteps"][0]["inputs"]["timeoutSeconds"] == "600"


def test_converge_log_group_and_role_may_write_it_and_read_the_objects(dev: Planned) -> None:
    group = dev.one("cloudwatch/logGroup:LogGroup", "mtls-logs").inputs
    assert group["name"] == "/flexnet-beacon/dev/converge"
    policy = json.loads(dev.one("iam/rolePolicy:RolePolicy", "beacon-1-stack-read").inputs["policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["WriteBeaconLogs"]["Resource"][0].endswith(":log-group:/flexnet-beacon/dev/converge")
    bucket = dev.outputs["mtls"]["stateBucket"]
    assert statements["ReadConvergeObjects"] == {
        "Sid": "ReadConvergeObjects", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{bucket}/converge/*",
    }


def test_the_bucket_is_private_versioned_encrypted_and_tls_only(dev: Planned, prod: Planned) -> None:
    for p, protected in ((dev, False), (prod, True)):
        bucket = p.one("s3/bucket:Bucket", "converge-bucket")
        assert bucket.inputs["bucketPrefix"] == bucket_prefix(p.outputs["mtls"]["stateBucket"].split("-converge-")[0].removeprefix("flexnet-beacon-"))
        assert bucket.inputs["forceDestroy"] is (not protected) and bucket.retain_on_delete is protected
        block = p.one("s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "converge-public-access").inputs
        assert all(block[k] is True for k in ("blockPublicAcls", "ignorePublicAcls", "blockPublicPolicy", "restrictPublicBuckets"))
        assert p.one("s3/bucketVersioning:BucketVersioning", "converge-versioning").inputs["versioningConfiguration"]["status"] == "Enabled"
        rule = p.one("s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "converge-encryption").inputs["rules"][0]
        assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        lifecycle = p.one("s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "converge-lifecycle").inputs["rules"][0]
        assert lifecycle["noncurrentVersionExpiration"]["noncurrentDays"] == 30
        statement = json.loads(p.one("s3/bucketPolicy:BucketPolicy", "converge-policy").inputs["policy"])["Statement"][0]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize("stack", ["dev", "prod", "Prod_EU.Stack-with-a-very-long-name-indeed"])
def test_bucket_prefix_is_a_valid_bucket_name_start(stack: str) -> None:
    prefix = bucket_prefix(stack)
    assert len(prefix) <= 37 and prefix.endswith("-converge-")
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*-converge-", prefix)
    assert re.fullmatch(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", prefix + "0123456789abcdef0123456789")


def test_only_the_converge_bucket_and_stack_buckets_pass_the_s3_endpoint(dev: Planned) -> None:
    bucket = dev.outputs["mtls"]["stateBucket"]
    policy = json.loads(dev.one("ec2/vpcEndpoint:VpcEndpoint", "net-s3").inputs["policy"])
    stack = next(s for s in policy["Statement"] if s["Sid"] == "StackBuckets")
    assert stack["Resource"] == [f"arn:aws:s3:::{bucket}/*"]
    domains = next(d for d in dev.of_type("route53/resolverFirewallDomainList:ResolverFirewallDomainList") if d.name.endswith("-allowed")).inputs["domains"]
    assert f"{bucket}.s3.us-east-1.amazonaws.com" in domains and f"{bucket}.s3.amazonaws.com" in domains


def _instances(p: Planned) -> dict[str, dict]:
    return {r.name: r.inputs for r in p.of_type("ec2/instance:Instance")}


@pytest.mark.parametrize(
    "change",
    [
        {"extraMappingRules": ["Subject.O=Other Corp"]},
        {"denyMappingRules": ["Subject.OU=Contractors"]},
        {"clientCaCertificates": ["stacks/certs/dev-devices-ca.pem", "stacks/certs/prod-device-ca-chain.pem"]},
        {"serverCertificateSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:flexnet-beacon/prod/new-pfx-Zz9Zz9",
         "serverCertificatePasswordSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:flexnet-beacon/prod/new-pw-Zz9Zz9"},
        {"revocationChecking": "false", "exclusiveClientTrust": "false", "clientAuthTrustMode": 1},
        {"mappedAccountName": "Agents2"},
    ],
    ids=["extra-rule", "deny-rule", "more-cas", "new-certificate", "httpsys-flags", "account"],
)
def test_rule_ca_or_certificate_change_never_touches_instances(prod: Planned, change: dict) -> None:
    changed = plan_stack("prod", change)
    assert _instances(changed) == _instances(prod), "a beacon would be updated or replaced"
    assert objects_of(changed)["mtls-state"]["key"] != objects_of(prod)["mtls-state"]["key"], "a new state is a new object"
    before = prod.one("ssm/association:Association", "mtls-association").inputs["parameters"]
    after = changed.one("ssm/association:Association", "mtls-association").inputs["parameters"]
    assert before["StateDigest"] != after["StateDigest"], "the association must change so State Manager re-runs it"
    assert before["ScriptDigest"] == after["ScriptDigest"]
    assert document_of(changed)["mainSteps"] == document_of(prod)["mainSteps"], "the bootstrap never depends on the state"


def test_user_data_is_static_and_small(dev: Planned, prod: Planned) -> None:
    dev_ud = dev.one("ec2/instance:Instance").inputs["userData"]
    assert dev_ud.startswith("<powershell>") and dev_ud.rstrip().endswith("</powershell>")
    assert len(dev_ud.encode()) <= 4096
    assert {i["userData"] for i in _instances(prod).values()} == {dev_ud}


# --- the bootstrap: static code, parameters as data ------------------------------------------

def _substituted(values: dict[str, str]) -> str:
    text = "\n".join(doc.BOOTSTRAP)
    for name, value in values.items():
        text = text.replace("{{ " + name + " }}", value)
    return text


def _shape(text: str) -> list[str]:
    tree = ps_lint.parse(text)
    assert not ps_lint.defects(tree), ps_lint.defects(tree)
    return [node.type for node in ps_lint.walk(tree.root_node)]


def _patterns() -> dict[str, str]:
    parameters = doc.command_document(60, False, "b" * 10, "us-east-1", "0" * 64, "1" * 64)["parameters"]
    return {name: p["allowedPattern"] for name, p in parameters.items() if "allowedPattern" in p}


def test_bootstrap_parses_and_every_cmdlet_is_known() -> None:
    text = _substituted({"StateBucket": "flexnet-beacon-dev-converge-0123456789ab", "StateRegion": "eu-west-1",
                         "ReportOnly": "false", "StateDigest": "a" * 64, "ScriptDigest": "b" * 64})
    _shape(text)
    assert ps_lint.lint(text) == []
    assert set(re.findall(r"\{\{ (\w+) \}\}", "\n".join(doc.BOOTSTRAP))) == {"StateBucket", "StateRegion", "ReportOnly", "StateDigest", "ScriptDigest"}


def test_bootstrap_checks_both_digests_before_it_runs_anything() -> None:
    lines = list(doc.BOOTSTRAP)
    read = next(i for i, line in enumerate(lines) if "$object.Bytes = [IO.File]::ReadAllBytes($object.File)" in line)
    verify = next(i for i, line in enumerate(lines) if "$hasher.ComputeHash($object.Bytes)" in line)
    run = next(i for i, line in enumerate(lines) if "[scriptblock]::Create" in line)
    mismatch = next(i for i, line in enumerate(lines) if "$actual -ne $object.Digest" in line)
    assert read < verify < mismatch < run
    # The mismatch branch deletes the file and exits 1 before the loop ends.
    branch = lines[mismatch: lines.index("    }", mismatch) + 1]
    assert any("Remove-Item" in line for line in branch) and any(line.strip() == "exit 1" for line in branch)
    assert lines[-1] == "exit $LASTEXITCODE"


def test_the_bootstrap_runs_exactly_the_bytes_it_checked() -> None:
    """Read once into memory, hashed in memory, run from memory: a file swapped on disk after the
    check (a local user racing the download) changes nothing that runs."""
    text = "\n".join(doc.BOOTSTRAP)
    assert text.count("ReadAllBytes(") == 1 and "ReadAllText" not in text and "Get-FileHash" not in text
    assert "$converge = [scriptblock]::Create([Text.Encoding]::UTF8.GetString($objects[0].Bytes)" in text
    assert "& $converge -EncodedState ([Convert]::ToBase64String($objects[1].Bytes))" in text
    assert "-StatePath" not in text, "the state is passed as the checked bytes, never re-read from the file"


def test_the_bootstrap_creates_the_state_folder_private_and_downloads_into_its_own_directory() -> None:
    text = "\n".join(doc.BOOTSTRAP)
    acl = text.index("$acl.SetAccessRuleProtection($true, $false)")
    assert "foreach ($sid in @('S-1-5-18', 'S-1-5-32-544'))" in text
    assert acl < text.index("if (-not (Test-Path -LiteralPath $dir)) { $null = [IO.Directory]::CreateDirectory($dir, $acl) }")
    # Downloads go to a new private directory of a random name (never into a folder not yet checked).
    work = text.index("$null = [IO.Directory]::CreateDirectory($work, $acl)")
    assert "[guid]::NewGuid()" in text and "[IO.Path]::GetTempPath()" in text
    assert acl < work < text.index("Read-S3Object")
    assert "Join-Path $dir 'converge'" not in text and "New-Item" not in text
    # Removed once the bytes are in memory, before the script runs; and on every early exit.
    assert text.index("Remove-Item -LiteralPath $work -Recurse -Force\n$converge") < text.index("& $converge")
    assert text.count("Remove-Item -LiteralPath $work -Recurse -Force") == 3


def test_user_data_creates_the_state_folder_private_before_writing_in_it() -> None:
    from components.iis.document import read_user_data

    text = read_user_data()
    create = text.index("$null = [IO.Directory]::CreateDirectory($dir, $acl)")
    assert text.index("$acl.SetAccessRuleProtection($true, $false)") < create
    assert "foreach ($sid in @('S-1-5-18', 'S-1-5-32-544'))" in text
    for write in ("Add-Content -LiteralPath $log", "Set-Content -LiteralPath $running"):
        assert create < text.index(write), write
    assert "New-Item -ItemType Directory -Path $dir" not in text, "a folder made by New-Item inherits ProgramData's ACL"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_no_hostile_value_fits_a_parameter_pattern(hostile: str) -> None:
    for name, pattern in _patterns().items():
        assert not re.search(pattern, hostile), f"{name} would admit {hostile!r}"


def test_every_value_the_patterns_admit_leaves_the_bootstrap_syntax_unchanged() -> None:
    """SSM substitutes {{ Name }} textually: any value its pattern admits must stay data."""
    plain = {"StateBucket": "abc", "StateRegion": "us-east-1", "ReportOnly": "true", "StateDigest": "0" * 64, "ScriptDigest": "f" * 64}
    extremes = {"StateBucket": "a.b-" + "c" * 57 + "9", "StateRegion": "us-gov-west-1", "ReportOnly": "false", "StateDigest": "9" * 64, "ScriptDigest": "a" * 64}
    for name, pattern in _patterns().items():
        assert re.search(pattern, plain[name]) and re.search(pattern, extremes[name]), name
    assert _shape(_substituted(plain)) == _shape(_substituted(extremes))


@pytest.mark.parametrize("hostile", HOSTILE[:4])
def test_a_hostile_state_changes_only_its_digest(hostile: str) -> None:
    plain_state = {"site": {"name": "Default Web Site"}, "x": "plain"}
    hostile_state = {"site": {"name": hostile}, "x": hostile}
    plain = doc.command_document(60, False, "bucket-a", "us-east-1", doc.state_digest(plain_state), "1" * 64)
    evil = doc.command_document(60, False, "bucket-a", "us-east-1", doc.state_digest(hostile_state), "1" * 64)
    assert plain["mainSteps"] == evil["mainSteps"]
    differing = {k for k in plain["parameters"] if plain["parameters"][k] != evil["parameters"][k]}
    assert differing == {"StateDigest"}
    assert hostile not in json.dumps(evil, ensure_ascii=False)


# --- any size ------------------------------------------------------------------------------------

def _device_certificates(tmp_path, count: int) -> tuple[str, list[str]]:
    """A CA and `count` distinct device certificates (one shared device key: only the
    certificates are mapped, one-to-one)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    ca_key, device_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bulk Devices CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.example.com/bulk.crl")], None, None, None)]), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ca_path = tmp_path / "ca.pem"  # tmp_path is the project base of the plan: paths relative to it
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths = []
    for i in range(count):
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"laptop-{i:05d}")]))
                .issuer_name(ca_name).public_key(device_key.public_key()).serial_number(1000 + i)
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        path = tmp_path / f"laptop-{i:05d}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths.append(path.name)
    return ca_path.name, paths


def test_five_thousand_one_to_one_devices_plan_within_every_size_limit(tmp_path) -> None:
    ca, devices = _device_certificates(tmp_path, 5000)
    # The sample must be a device of the configured CA (its CDP is the firewall's CRL egress).
    p = plan_stack("dev", {"clientCaCertificates": [ca], "mappingMode": "one-to-one", "oneToOneCertificates": devices,
                           "sampleDeviceCertificate": devices[0], "crlUrls": ["http://crl.example.com/bulk.crl"]}, base=tmp_path)
    state = json.loads(objects_of(p)["mtls-state"]["content"])
    assert len(state["authentication"]["clientCertificateMapping"]["oneToOneMappings"]) == 5000
    content = p.one("ssm/document:Document").inputs["content"]
    assert len(content.encode()) <= doc.DOCUMENT_CONTENT_LIMIT / 8, "the document no longer grows with the devices"
    assert len(objects_of(p)["mtls-state"]["content"].encode()) < 5 * 1024**3  # a single PUT
    assert len(p.one("ec2/instance:Instance").inputs["userData"].encode()) <= doc.USER_DATA_LIMIT
    assert all(len(v) <= 512 for v in p.one("ssm/association:Association", "mtls-association").inputs["parameters"].values())
