"""expiry: a PKI made by scripts.pki, its CRL served over http on loopback (the CDP URL in the
certificates), the server certificate from Secrets Manager and CloudWatch metrics in moto."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from components.certs import facts as cert_facts
from tests.ops_fixtures.support import PFX_PASS, BeaconCa, aws_env, boto_client, create_document, golden_state, outputs_file, run
from tests.tls.conftest import pki_ok


class CdpServer:
    """An http server on loopback answering from a dict of path -> bytes (404 otherwise)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def cdp() -> Iterator[CdpServer]:
    server = CdpServer()
    yield server
    server.close()


def make_pki(tmp_path: Path, cdp: CdpServer, crl_days: int = 7) -> Path:
    d = tmp_path / "pki"
    pki_ok(d, "init-ca", "--cn", "Ops Devices CA", "--crl-url", f"{cdp.base}/devices.crl")
    pki_ok(d, "issue-client", "--cn", "laptop-0001", "--days", "365")
    pki_ok(d, "issue-client", "--cn", "laptop-0002", "--days", "10")
    pki_ok(d, "issue-client", "--cn", "laptop-0003", "--days", "5")
    pki_ok(d, "revoke", "laptop-0003")  # revoked: no longer watched
    pki_ok(d, "crl", "--days", str(crl_days))
    cdp.files["/devices.crl"] = (d / "crl.der").read_bytes()
    cdp.files["/devices.cer"] = (d / "ca.pem").read_bytes()  # an AIA URL among the CRL URLs: skipped
    return d


def test_pki_items_sorted_by_time_left_and_the_window(tmp_path: Path, cdp: CdpServer, capsys) -> None:
    d = make_pki(tmp_path, cdp)
    code, out, err = run(capsys, "expiry", "--pki", str(d), "--crl-url", f"{cdp.base}/devices.cer")
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["KIND", "NAME", "UNTIL", "DAYS", "STATE"]
    kinds = [line.split()[0] for line in lines[1:6]]
    assert kinds == ["crl", "crl", "device-certificate", "device-certificate", "ca-certificate"]
    assert "laptop-0002" in lines[3] and "WINDOW" in lines[3]
    assert "laptop-0003" not in out  # revoked
    assert f"{cdp.base}/devices.crl" in lines[1] + lines[2]
    assert "FAIL: 1 item(s) expired, inside the window" in out
    code, out, err = run(capsys, "expiry", "--pki", str(d), "--warn-days", "5", "--crl-warn-days", "1", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] and {i["kind"] for i in result["items"]} == {"crl", "device-certificate", "ca-certificate"}
    served = [i for i in result["items"] if i["source"] == f"{cdp.base}/devices.crl"][0]
    assert served["name"] == "CRL 2 of Ops Devices CA" and 6.9 < served["daysLeft"] <= 7


def test_crl_near_next_update_unreachable_and_unpublished(tmp_path: Path, cdp: CdpServer, capsys) -> None:
    d = make_pki(tmp_path, cdp, crl_days=1)
    code, out, _ = run(capsys, "expiry", "--pki", str(d), "--warn-days", "5", "--json")
    assert code == 1
    items = json.loads(out)["items"]
    assert {i["state"] for i in items if i["kind"] == "crl"} == {"window"}  # 1 day left < --crl-warn-days 2

    pki_ok(d, "revoke", "laptop-0001")
    pki_ok(d, "crl", "--days", "7")  # CRL 3 written locally, the CDP still serves CRL 2
    del cdp.files["/devices.cer"]
    code, out, _ = run(capsys, "expiry", "--pki", str(d), "--warn-days", "5", "--crl-url", f"{cdp.base}/gone.crl")
    assert code == 1
    rows = out.splitlines()
    assert rows[1].startswith("crl") and "UNREACHABLE" in rows[1] and "HTTP 404" in rows[1]
    assert f"crl.pem holds CRL 3 of Ops Devices CA but {cdp.base}/devices.crl serves CRL 2: publish the new one" in out


def test_server_certificate_from_secrets_manager_and_cloudwatch_metrics(tmp_path: Path, cdp: CdpServer, capsys, monkeypatch) -> None:
    aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("PKI_PASSWORD", PFX_PASS)
    d = make_pki(tmp_path, cdp)
    pfx, server_cert = BeaconCa().pfx(tmp_path / "beacon.pfx", days=20)
    assert run(capsys, "publish-server-cert", str(pfx), "--stack", "dev", "--region", "us-east-1", "--hostname", "ec2-198-51-100-53.us-east-1.compute.amazonaws.com", "--min-days", "10")[0] == 0
    ca_cert = cert_facts.read_certificates(d / "ca.pem")[0]
    trust = [{"pem": ca_cert.public_bytes(serialization.Encoding.PEM).decode(), "store": "Root", "thumbprint": cert_facts.thumbprint(ca_cert), "subject": "CN=Ops Devices CA"}]
    document, _ = create_document(golden_state(trustStores=trust, crlUrls=[f"{cdp.base}/devices.crl", f"{cdp.base}/devices.cer"]))
    outputs = outputs_file(tmp_path, **{"mtls.documentName": document, "crlEgress": None})

    code, out, err = run(capsys, "--stack-outputs", str(outputs), "expiry", "--put-metrics", "--json")
    assert code == 1, err  # the server certificate has 20 days left, inside 30
    result = json.loads(out)
    server = [i for i in result["items"] if i["kind"] == "server-certificate"]
    assert len(server) == 1 and server[0]["state"] == "window" and server[0]["source"].startswith("arn:aws:secretsmanager:us-east-1:")
    assert server[0]["detail"] == f"thumbprint {cert_facts.thumbprint(server_cert)}"
    assert [i["kind"] for i in result["items"]].count("ca-certificate") == 1  # from the document's trust stores
    assert [i["kind"] for i in result["items"]].count("crl") == 1  # the CRL URL from the document; the .cer skipped
    assert result["stack"] == "dev" and result["metricsPut"] > 0

    metrics = boto_client("cloudwatch").list_metrics(Namespace="FlexNetBeacon")["Metrics"]
    dims = [{d["Name"]: d["Value"] for d in m["Dimensions"]} for m in metrics if m["MetricName"] == "DaysLeft"]
    assert {"Stack": "dev", "Kind": "server-certificate"} in dims
    assert {"Stack": "dev", "Kind": "crl"} in dims and {"Stack": "dev", "Kind": "ca-certificate"} in dims
    assert any(m["MetricName"] == "CrlUnreachable" for m in metrics)
    assert all(dim.get("Kind") != "device-certificate" or "Name" not in dim for dim in dims)
    stats = boto_client("cloudwatch").get_metric_statistics(
        Namespace="FlexNetBeacon",
        MetricName="DaysLeft",
        Dimensions=[{"Name": "Stack", "Value": "dev"}, {"Name": "Kind", "Value": "server-certificate"}],
        StartTime=server_cert.not_valid_before_utc,
        EndTime=server_cert.not_valid_after_utc,
        Period=60,
        Statistics=["Minimum"],
    )["Datapoints"]
    assert stats and 19 < stats[0]["Minimum"] <= 20


def test_expiry_input_errors(tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = run(capsys, "expiry")
    assert code == 2 and "nothing to check" in err and err.count("\n") == 1
    code, _, err = run(capsys, "expiry", "--pki", str(tmp_path))
    assert code == 2 and "no CA there" in err
    code, _, err = run(capsys, "expiry", "--crl-url", "ldap:///CN=x", "--no-server-cert")
    assert code == 2 and "expected an http(s):// URL" in err
    code, _, err = run(capsys, "expiry", "--pki", str(tmp_path), "--put-metrics")
    assert code == 2 and "--put-metrics needs the stack name" in err


def _crl_rows(out: str, url: str) -> list[dict]:
    return [i for i in json.loads(out)["items"] if i["kind"] == "crl" and i["source"] == url]


def test_a_crl_url_that_serves_a_certificate_or_another_cas_crl_fails(tmp_path: Path, cdp: CdpServer, capsys) -> None:
    """IIS would answer 403.13 to every device: the CA's certificate at a CRL URL, or a CRL of another CA."""
    d = make_pki(tmp_path, cdp)
    other = tmp_path / "other"
    pki_ok(other, "init-ca", "--cn", "Another CA", "--crl-url", f"{cdp.base}/other.crl")
    pki_ok(other, "crl")
    cdp.files["/devices.crl"] = (d / "ca.pem").read_bytes()  # the CA certificate where the CRL belongs
    cdp.files["/wrong.crl"] = (other / "crl.der").read_bytes()
    code, out, _ = run(capsys, "expiry", "--pki", str(d), "--crl-url", f"{cdp.base}/wrong.crl", "--json")
    assert code == 1
    [served] = _crl_rows(out, f"{cdp.base}/devices.crl")
    assert served["state"] == "invalid" and "serves a certificate" in served["detail"] and "403.13" in served["detail"]
    [foreign] = _crl_rows(out, f"{cdp.base}/wrong.crl")
    assert foreign["state"] == "invalid" and "issued by 'Another CA', none of the CAs (Ops Devices CA)" in foreign["detail"]
    # A certificate at an AIA-like URL (.cer) is still no finding.
    assert not _crl_rows(out, f"{cdp.base}/devices.cer")


def test_a_crl_from_the_future_fails(tmp_path: Path, cdp: CdpServer, capsys) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    d = make_pki(tmp_path, cdp)
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    now = dt.datetime.now(dt.timezone.utc)
    future = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now + dt.timedelta(days=2))
              .next_update(now + dt.timedelta(days=9)).add_extension(x509.CRLNumber(99), critical=False).sign(key, hashes.SHA256()))
    cdp.files["/devices.crl"] = future.public_bytes(serialization.Encoding.DER)
    code, out, _ = run(capsys, "expiry", "--pki", str(d), "--json")
    [row] = _crl_rows(out, f"{cdp.base}/devices.crl")
    assert code == 1 and row["state"] == "invalid" and "is in the future" in row["detail"]


def test_one_deadline_bounds_a_trickling_crl_host(tmp_path: Path, capsys) -> None:
    """A host that answers a byte at a time never trips a per-read timeout; the fetch's own deadline does."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            listener.settimeout(0.2)
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000:
                    if stop.is_set():
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.2)

    threading.Thread(target=trickle, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.crl"
    started = time.monotonic()
    try:
        code, out, _ = run(capsys, "expiry", "--crl-url", url, "--fetch-timeout", "1", "--json")
    finally:
        stop.set()
    elapsed = time.monotonic() - started
    [row] = _crl_rows(out, url)
    assert code == 1 and row["state"] == "unreachable" and "no complete answer within 1 s" in row["detail"]
    assert elapsed < 10, elapsed  # the trickle would take hours; generous against a loaded machine
