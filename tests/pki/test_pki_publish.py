"""`python -m scripts.pki crl --publish BUCKET`: boto3 against moto running as a real server on
loopback (ThreadedMotoServer on 127.0.0.1, a free port), reached through AWS_ENDPOINT_URL like
any S3-compatible endpoint, with fake credentials from the environment.

Object bytes equal crl.der, Content-Type application/pkix-crl, Cache-Control, keys from the CDP
URL paths (and --prefix), the root CRL with an intermediate, and the one-line errors: missing
bucket, no credentials, unknown profile, access denied (exit 1: the CRL was written locally).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from scripts.pki import cli

CRL_URL = "http://crl.example.com/pki/devices.crl"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed (requirements-dev.txt)")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Environment for boto3: the moto endpoint, fake keys, no config files, no IMDS; returns
    an S3 client of the test itself."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    import boto3.session

    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION).client("s3", endpoint_url=endpoint)


def pki(directory: Path, *args: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(["--dir", str(directory), *args])
    return code, stdout.getvalue(), stderr.getvalue()


def ok(directory: Path, *args: str) -> tuple[str, str]:
    code, out, err = pki(directory, *args)
    assert code == 0, err
    return out, err


def error_line(directory: Path, *args: str, code: int = 2) -> str:
    got, _, err = pki(directory, *args)
    assert got == code and "Traceback" not in err, (got, err)
    errors = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(errors) == 1 and errors[0].startswith("pki: error: "), err
    return errors[0]


def bucket(s3: Any, name: str) -> str:
    s3.create_bucket(Bucket=name)
    return name


def crl_number(directory: Path) -> int:
    return json.loads((directory / "crlnumber.json").read_text())["crlNumber"]


def test_publish_to_the_cdp_path(aws: Any, tmp_path: Path) -> None:
    d = tmp_path / "pki"
    ok(d, "init-ca", "--cn", "Devices CA", "--crl-url", CRL_URL)
    ok(d, "issue-client", "--cn", "gone")
    ok(d, "revoke", "gone")
    name = bucket(aws, "crl-cdp")
    out, _ = ok(d, "crl", "--publish", name)
    assert f"published crl.der -> s3://{name}/pki/devices.crl" in out
    found = aws.get_object(Bucket=name, Key="pki/devices.crl")
    assert found["Body"].read() == (d / "crl.der").read_bytes()
    assert found["ContentType"] == "application/pkix-crl"
    assert found["CacheControl"] == "max-age=300"
    assert [o["Key"] for o in aws.list_objects_v2(Bucket=name)["Contents"]] == ["pki/devices.crl"]
    # Publishing again replaces the object with the new CRL; --max-age is honoured.
    ok(d, "crl", "--publish", f"s3://{name}", "--max-age", "60")
    again = aws.get_object(Bucket=name, Key="pki/devices.crl")
    assert again["Body"].read() == (d / "crl.der").read_bytes() and again["CacheControl"] == "max-age=60"


def test_publish_root_crl_and_prefix(aws: Any, tmp_path: Path) -> None:
    d = tmp_path / "pki"
    ok(d, "init-ca", "--cn", "Issuing CA", "--intermediate", "--crl-url", CRL_URL)
    name = bucket(aws, "crl-chain")
    out, _ = ok(d, "crl", "--publish", name)
    assert aws.get_object(Bucket=name, Key="pki/devices.crl")["Body"].read() == (d / "crl.der").read_bytes()
    root = aws.get_object(Bucket=name, Key="pki/root-devices.crl")  # the intermediate's CDP (derived)
    assert root["Body"].read() == (d / "root-crl.der").read_bytes() and root["ContentType"] == "application/pkix-crl"
    ok(d, "crl", "--publish", name, "--prefix", "lab/")  # --prefix replaces the CDP's directory
    keys = sorted(o["Key"] for o in aws.list_objects_v2(Bucket=name)["Contents"])
    assert keys == ["lab/devices.crl", "lab/root-devices.crl", "pki/devices.crl", "pki/root-devices.crl"]


def test_publish_without_cdp_uses_prefix_and_file_name(aws: Any, tmp_path: Path) -> None:
    d = tmp_path / "pki"
    ok(d, "init-ca", "--cn", "No CDP CA")
    name = bucket(aws, "crl-plain")
    out, err = ok(d, "crl", "--publish", name, "--prefix", "ca/")
    assert f"s3://{name}/ca/crl.der" in out
    assert "does not end in .crl" in err  # the lab bucket serves *.crl only
    assert aws.get_object(Bucket=name, Key="ca/crl.der")["Body"].read() == (d / "crl.der").read_bytes()


def test_missing_bucket(aws: Any, tmp_path: Path) -> None:
    d = tmp_path / "pki"
    ok(d, "init-ca", "--cn", "Devices CA", "--crl-url", CRL_URL)
    line = error_line(d, "crl", "--publish", "no-such-bucket-here")
    assert line == "pki: error: --publish: bucket 'no-such-bucket-here' does not exist (NoSuchBucket); nothing was uploaded"
    assert (d / "crl.der").is_file()  # the CRL itself was signed and written


def test_no_credentials(aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "pki"
    ok(d, "init-ca", "--cn", "Devices CA", "--crl-url", CRL_URL)
    before = crl_number(d)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    line = error_line(d, "crl", "--publish", "crl-any")
    assert line.startswith("pki: error: no AWS credentials found: set AWS_PROFILE (or --profile)")
    assert crl_number(d) == before  # checked before anything was signed


def test_unknown_profile_and_bad_arguments(aws: Any, tmp_path: Path) -> None:
    d = tmp_path / "pki"
    ok(d, "init-ca", "--cn", "Devices CA", "--crl-url", CRL_URL)
    assert "--profile: The config profile (nosuch) could not be found" in error_line(d, "crl", "--publish", "crl-any", "--profile", "nosuch")
    assert "expected an S3 bucket name" in error_line(d, "crl", "--publish", "Bad_Bucket")
    assert "--prefix: got '/abs/'" in error_line(d, "crl", "--publish", "crl-any", "--prefix", "/abs/")
    assert "go with --publish BUCKET" in error_line(d, "crl", "--prefix", "x/")


def test_access_denied_is_exit_1(aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto does not enforce policies: botocore's before-call event answers AccessDenied, so the
    ClientError is botocore's own."""
    import botocore.session

    original = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-call.s3.PutObject", lambda **kw: _denied(kw))
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    d = tmp_path / "pki"
    ok(d, "init-ca", "--cn", "Devices CA", "--crl-url", CRL_URL)
    name = bucket(aws, "crl-denied")
    line = error_line(d, "crl", "--publish", name, code=1)
    assert line.startswith(f"pki: error: s3://{name}/pki/devices.crl: access denied (AccessDenied: Access Denied)")
    assert f"s3:PutObject on arn:aws:s3:::{name}/pki/devices.crl" in line and "crl.der was written here, not published" in line


def _denied(kwargs: dict[str, Any]) -> Any:
    """before-call handler: a (http response, parsed) pair makes botocore skip the request."""
    from botocore.awsrequest import AWSResponse

    response = AWSResponse("https://s3.invalid/", 403, {}, None)
    return response, {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}


def test_object_keys() -> None:
    from scripts.pki.publish import object_keys

    urls = ["http://h1/pki/devices.crl", "http://h2/pki/devices.crl", "http://h3/other%20dir/x.crl", "http://h4/"]
    assert object_keys(urls, None, "crl.der") == [("pki/devices.crl", urls[0]), ("other dir/x.crl", urls[2])]
    assert object_keys(urls, "p/", "crl.der") == [("p/devices.crl", urls[0]), ("p/x.crl", urls[2])]
    assert object_keys([], None, "crl.der") == [("crl.der", None)]
    assert object_keys(["http://h/"], "a-", "root-crl.der") == [("a-root-crl.der", None)]
