"""The Windows converge job (.github/workflows/windows-converge.yml, issue 25), checked here
without Windows: it runs only on GitHub's hosted Windows runners.

- the workflow: its triggers (pull requests touching the Windows side or the IIS desired state,
  weekly), the lab made on Linux and handed over as an artifact, windows-2022 (and windows-2025),
  the project installed, every case of Test-ConvergeLab.ps1 a step of its own in the case order,
  reports and logs uploaded whatever happened; pinned actions and a clean security audit;
- the job's PowerShell: parsed by tree-sitter-powershell, linted against tests/ps_lint, and what
  each case asserts (exit codes, the status matrix, SYSTEM through Task Scheduler, -Local);
- the lab (scripts/windows_lab.py), made here for real: the files the job reads, the CA keys
  left out, each client's verdict as `pki check` predicts it equal to what the job expects IIS to
  answer, the desired states, and `ops probe` run as the job runs it against an OpenSSL beacon;
- `python -m scripts.ops` loads where fcntl does not exist (Windows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import verification

import ps_lint
import test_workflows as workflows
from conftest import ROOT
from scripts import windows_lab
from scripts.pki.cli import main as pki_main
from tests.tls.conftest import BeaconServer

WORKFLOW = ROOT / ".github" / "workflows" / "windows-converge.yml"
JOB_DIR = ROOT / ".github" / "windows"
CASES_SCRIPT = JOB_DIR / "Test-ConvergeLab.ps1"
SETUP_SCRIPT = JOB_DIR / "Initialize-ConvergeLab.ps1"
EXPORT_SCRIPT = JOB_DIR / "Export-ConvergeLabLogs.ps1"
JOB_SCRIPTS = sorted(JOB_DIR.glob("*.ps1"))
CONVERGE = ROOT / "components" / "iis" / "windows" / "Set-BeaconMtls.ps1"
# What the issue asks the job to prove, by case: every one must be a step.
REQUIRED_CASES = {"fail-closed-fresh", "first-run", "restart-pending", "compliant", "handshakes", "w3c-log", "observe", "require",
                  "fail-closed-locked", "schannel-restart"}
# The answers IIS must give each client under require (docs/iis-mtls.md, "Status codes").
MATRIX = {"device": (200, 0), "none": (403, 7), "revoked": (403, 13), "foreign": (403, 16), "expired": (403, 17), "unmapped": (401, 2)}
# Programs the job's scripts run besides cmdlets (curl.exe and python.exe through Invoke-Native).
JOB_NATIVE = {"netsh.exe"}


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return workflows.load(WORKFLOW)


@pytest.fixture(scope="module")
def converge_job(workflow) -> dict[str, Any]:
    return workflow["jobs"]["converge"]


def runs(job: dict[str, Any]) -> list[str]:
    return [str(step.get("run", "")) for step in workflows.steps(job)]


def cases() -> list[str]:
    """The cases of Test-ConvergeLab.ps1, in the order its ValidateSet (and the job) runs them."""
    match = re.search(r"\[ValidateSet\(([^)]*)\)\]\s*\[string\]\$Case", CASES_SCRIPT.read_text(encoding="utf-8"))
    assert match, "Test-ConvergeLab.ps1 declares its cases in [ValidateSet(...)] on -Case"
    return re.findall(r"'([a-z0-9-]+)'", match.group(1))


def case_bodies() -> dict[str, str]:
    """Each case's clause of the script's final switch, as text."""
    text = CASES_SCRIPT.read_text(encoding="utf-8")
    switch = text[text.index("switch ($Case) {"):]
    found = {}
    for match in re.finditer(r"^    '([a-z0-9-]+)' \{\n(.*?)^    \}\n", switch, re.M | re.S):
        found[match.group(1)] = match.group(2)
    return found


# --- the workflow ------------------------------------------------------------------------------------

def test_runs_on_pull_requests_that_touch_the_windows_side_and_weekly(workflow) -> None:
    triggers = workflow["on"]
    assert triggers["pull_request"]["branches"] == ["main"]
    paths = triggers["pull_request"]["paths"]
    for needed in ("components/iis/**", "components/certs/**", "components/config.py", ".github/windows/**",
                   ".github/workflows/windows-converge.yml", "scripts/windows_lab.py", "scripts/pki/**", "scripts/ops/probe.py"):
        assert needed in paths, needed
    # Every file the job runs or reads falls under a path of the filter.
    for path in [CONVERGE, SETUP_SCRIPT, CASES_SCRIPT, EXPORT_SCRIPT, ROOT / "components" / "iis" / "state.py", ROOT / "scripts" / "windows_lab.py"]:
        relative = path.relative_to(ROOT).as_posix()
        assert any(relative == p or (p.endswith("/**") and relative.startswith(p[:-2])) for p in paths), relative
    (schedule,) = triggers["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*") and re.fullmatch(r"[0-6]", weekday) and minute.isdigit() and hour.isdigit(), "once a week"
    assert workflow["permissions"] == {"contents": "read"}


def test_the_lab_is_made_on_linux_and_handed_over_without_ca_keys(workflow) -> None:
    lab = workflow["jobs"]["lab"]
    assert lab["runs-on"].startswith("ubuntu-")
    commands = runs(lab)
    assert "make .venv/.installed-runtime" in commands
    made = next(c for c in commands if "scripts.windows_lab" in c)
    assert made == ".venv/bin/python -m scripts.windows_lab --out build/lab --pki build/lab-pki"
    upload = next(s for s in workflows.steps(lab) if workflows.action(s) == "actions/upload-artifact")
    assert upload["with"]["path"] == "build/lab" and upload["with"]["retention-days"] == 1  # the PKI (CA keys) stays in build/lab-pki
    download = next(s for s in workflows.steps(workflow["jobs"]["converge"]) if workflows.action(s) == "actions/download-artifact")
    assert download["with"] == {"name": upload["with"]["name"], "path": "lab"}


def test_runs_on_windows_server_2022_and_the_next_image(converge_job) -> None:
    assert converge_job["runs-on"] == "${{ matrix.image }}"
    assert converge_job["strategy"]["matrix"]["image"] == ["windows-2022", "windows-2025"]
    assert converge_job["strategy"]["fail-fast"] is False  # one image failing says nothing about the other
    assert converge_job["needs"] == "lab"
    assert converge_job["defaults"]["run"]["shell"] == "powershell"  # Windows PowerShell 5.1, as on the beacons


def test_installs_the_role_services_python_and_the_project_before_any_case(converge_job) -> None:
    commands = runs(converge_job)
    setup = commands.index(".github/windows/Initialize-ConvergeLab.ps1 -Lab lab -Out artifacts")
    install = commands.index("python -m pip install --disable-pip-version-check -r requirements.txt")
    first_case = next(i for i, c in enumerate(commands) if "Test-ConvergeLab.ps1" in c)
    assert install < first_case and setup < first_case
    python = next(s for s in workflows.steps(converge_job) if workflows.action(s) == "actions/setup-python")
    assert str(python["with"]["python-version"]) == "3.11"
    # The role services are the desired state's own list (Web-Cert-Auth checked by name), in one call.
    setup_text = SETUP_SCRIPT.read_text(encoding="utf-8")
    assert "$wanted = @($state.features.install)" in setup_text and "$result = Install-WindowsFeature -Name $wanted" in setup_text
    assert "if ($wanted -notcontains 'Web-Cert-Auth') { throw" in setup_text


def test_every_case_is_a_step_in_the_case_order(converge_job) -> None:
    listed = cases()
    assert REQUIRED_CASES <= set(listed), REQUIRED_CASES - set(listed)
    steps = [c for c in runs(converge_job) if "Test-ConvergeLab.ps1" in c]
    assert steps == [f".github/windows/Test-ConvergeLab.ps1 -Case {case}" for case in listed]
    assert set(case_bodies()) == set(listed), "a switch clause per case, and a case per clause"


def test_reports_and_logs_are_uploaded_whatever_happened(converge_job) -> None:
    steps = workflows.steps(converge_job)
    export = next(i for i, s in enumerate(steps) if "Export-ConvergeLabLogs.ps1" in str(s.get("run", "")))
    upload = next(i for i, s in enumerate(steps) if workflows.action(s) == "actions/upload-artifact")
    assert export < upload == len(steps) - 1
    assert steps[export]["if"] == "always()" and steps[upload]["if"] == "always()"
    assert steps[upload]["with"]["path"] == "artifacts" and steps[upload]["with"]["if-no-files-found"] == "error"
    exported = EXPORT_SCRIPT.read_text(encoding="utf-8")
    for source in ("inetpub\\logs\\LogFiles", "System32\\LogFiles\\HTTPERR", "'flexnet-beacon'"):
        assert source in exported, source
    assert "Join-Path $outDir 'reports'" in CASES_SCRIPT.read_text(encoding="utf-8")  # every run's report is kept there


def test_the_workflow_passes_the_pin_and_security_checks() -> None:
    """test_workflows.py checks every workflow (this one included): the same checks, on this one."""
    assert WORKFLOW in workflows.workflow_files()
    text = WORKFLOW.read_text(encoding="utf-8")
    for match in workflows.USES_LINE.finditer(text):
        name, commit = match["ref"].split("@")
        assert (commit, match["comment"]) == workflows.ACTION_PINS[name], match["ref"]
    for _, step in workflows.all_steps(workflows.load(WORKFLOW)):
        assert "${{" not in str(step.get("run", "")), step
    result, findings = workflows._audit(WORKFLOW)
    assert findings == [] and result.returncode == 0, "\n".join(map(workflows._describe, findings))


# --- the job's PowerShell --------------------------------------------------------------------------

def job_table() -> ps_lint.CmdletTable:
    table = ps_lint.load_table()
    return dataclasses.replace(table, native=frozenset(JOB_NATIVE))


@pytest.mark.parametrize("path", JOB_SCRIPTS, ids=[p.name for p in JOB_SCRIPTS])
def test_the_job_scripts_parse_and_lint(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    text.encode("ascii")  # Windows PowerShell 5.1 reads a file without BOM as the ANSI code page
    tree = ps_lint.parse(text)
    assert ps_lint.defects(tree) == []
    assert ps_lint.lint(text, job_table()) == []
    assert ps_lint.member_problems(text) == []
    assert ps_lint.string_variable_problems(tree) == []
    assert not any(p[-1:].isdigit() for c in ps_lint.commands(tree) for p in c.parameters)  # tree-sitter-powershell #59
    assert text.rstrip().endswith("exit 0"), "GitHub's powershell shell exits with the last native exit code"


def test_the_lint_of_the_job_scripts_is_not_vacuous() -> None:
    text = CASES_SCRIPT.read_text(encoding="utf-8")
    broken = text.replace("Register-ScheduledTask -TaskName $task", "Register-ScheduledTask -Taskname $task -RunAs $task", 1)
    assert broken != text
    assert any("Register-ScheduledTask has no parameter -RunAs" in p for p in ps_lint.lint(broken, job_table()))
    assert any("unknown command 'curl.exe'" in p for p in ps_lint.lint("& curl.exe @('-s')\n", job_table()))


def test_each_converge_run_is_the_local_mode_as_system() -> None:
    text = CASES_SCRIPT.read_text(encoding="utf-8")
    run = ps_lint.node_text(ps_lint.function_nodes(ps_lint.parse(text))["Invoke-ConvergeRun"])
    assert "New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest" in run
    assert "System32\\WindowsPowerShell\\v1.0\\powershell.exe" in run  # Windows PowerShell 5.1, as SSM runs it
    given = set(re.findall(r"'-([A-Za-z]+)'", run[run.index("$arguments = @("):run.index("-join ' '")]))
    converge_parameters = set(ps_lint.script_parameters(ps_lint.parse(CONVERGE.read_text(encoding="utf-8"))))
    assert {"Local", "StatePath", "PfxPath", "PfxPasswordPath", "ReportPath"} <= given
    assert given - {"NoProfile", "NonInteractive", "ExecutionPolicy", "File"} <= converge_parameters
    assert "[long](Get-ScheduledTaskInfo -TaskName $task).LastTaskResult" in run  # the process's exit code
    assert "Assert-Lab -That ($code -eq $Expect)" in run


EXPECTED_EXITS = {
    "fail-closed-fresh": [1], "first-run": [3010], "restart-pending": [4], "compliant": [0], "applications": [0, 0],
    "state-folder": [0], "account-record": [0], "mime-web-config": [0, 0], "observe": [0], "require": [0],
    "fail-closed-locked": [1, 0], "schannel-restart": [3010],
}


def test_each_case_expects_its_exit_codes() -> None:
    bodies = case_bodies()
    for case, body in bodies.items():
        exits = [int(code) for code in re.findall(r"Invoke-ConvergeRun -Name '[a-z-]+' -StateName '\w+' -Expect (\d+)", body)]
        assert exits == EXPECTED_EXITS.get(case, []), case
    # The two cases that cannot commit make applicationHost.config read-only, and always undo it.
    for case in ("fail-closed-fresh", "fail-closed-locked"):
        assert "Set-ConfigReadOnly -ReadOnly $true\n        try {" in bodies[case] and "finally { Set-ConfigReadOnly -ReadOnly $false }" in bodies[case]
        assert "(Get-ConfigHash) -eq $before" in bodies[case] and "Get-StepStatus -Report $report -Name 'lockdown') -eq 'failed'" in bodies[case]
    assert "$got -eq '000'" in bodies["fail-closed-fresh"]  # nothing answers: never an anonymous 200
    for case in ("first-run", "restart-pending", "schannel-restart"):
        assert "Assert-NoRestart" in bodies[case], case
    for case in ("restart-pending", "compliant", "account-record", "observe", "require"):
        assert "Assert-SamePassword" in bodies[case], case
    for case in ("observe", "require"):
        assert "Assert-OnlyChanges -Report $report -Pattern $lockdownChanges" in bodies[case]
        assert f"Invoke-Probe -Enforcement '{case}'" in bodies[case] and "Test-Matrix" in bodies[case]
    assert "Invoke-Probe -Enforcement 'require'" in bodies["handshakes"] and "Test-Matrix -Phase 'require'" in bodies["handshakes"]
    assert "Test-Matrix -Phase 'locked' -Enforcement 'require'" in bodies["fail-closed-locked"]
    for field in ("crt-subject", "crt-issuer", "crt-serial", "crt-flags"):
        assert f"'{field}'" in bodies["w3c-log"]


def test_the_matrix_is_what_the_issue_names(lab) -> None:
    assert windows_lab.CLIENTS == MATRIX
    manifest = lab["manifest"]
    assert {name: tuple(entry["expect"]) for name, entry in manifest["clients"].items()} == MATRIX
    text = CASES_SCRIPT.read_text(encoding="utf-8")
    # Under observe the two that anonymous authentication serves instead: no certificate, no mapping.
    assert "$observeAdmits = @('none', 'unmapped')" in text
    matrix = ps_lint.node_text(ps_lint.function_nodes(ps_lint.parse(text))["Test-Matrix"])
    assert "Invoke-Curl -Client $client -Phase $Phase" in matrix and "Wait-IisLog -Phase $Phase -Clients $clients" in matrix
    assert """"$($entry['sc-status']).$($entry['sc-substatus'])\"""" in matrix  # the sub-status, from the IIS log
    assert "$curl = Join-Path $env:SystemRoot 'System32\\curl.exe'" in text  # the curl.exe Windows ships (Schannel)


# --- the lab, made for real ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("windows-lab")
    out, pki_dir = base / "lab", base / "lab-pki"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert windows_lab.main(["--out", str(out), "--pki", str(pki_dir)]) == 0
    return {"out": out, "pki": pki_dir, "manifest": json.loads((out / "lab.json").read_text(encoding="utf-8"))}


def _files(manifest: dict[str, Any]) -> list[str]:
    names = [manifest[k] for k in ("serverCa", "serverPfx", "serverPfxSecretFile", "clientsSecretFile", "crl")] + list(manifest["states"].values())
    names.append(manifest["sameNameRoot"]["file"])
    for entry in manifest["clients"].values():
        names += [f"clients/{f}" for f in (entry["files"] or {}).values()]
    return names


def test_the_lab_holds_what_the_job_reads_and_no_ca_key(lab) -> None:
    out, manifest = lab["out"], lab["manifest"]
    for name in _files(manifest):
        assert (out / name).exists(), name
    ca_keys = [(lab["pki"] / "ca.key").read_bytes(), (lab["pki"] / "private" / "server-ca.key").read_bytes()]
    for path in out.rglob("*"):
        if path.is_file():
            assert not any(key.strip() in path.read_bytes() for key in ca_keys), f"{path.name} holds a CA key"
    for path in [out / manifest["serverPfxSecretFile"], out / manifest["clientsSecretFile"], *out.glob("clients/*.key"), *out.glob("clients/*.pfx")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def _password(out: Path, name: str) -> bytes:
    text = (out / name).read_text(encoding="ascii")
    assert text.endswith("\n") and text.count("\n") == 1  # one line: the converge run reads it without the line break
    return text.rstrip("\n").encode()


def test_each_client_pfx_holds_only_its_certificate_and_key(lab) -> None:
    out, manifest = lab["out"], lab["manifest"]
    password = _password(out, manifest["clientsSecretFile"])
    for name, entry in manifest["clients"].items():
        if entry["files"] is None:
            assert name == "none"
            continue
        key, certificate, extra = pkcs12.load_key_and_certificates((out / "clients" / entry["files"]["pfx"]).read_bytes(), password)
        pem = x509.load_pem_x509_certificate((out / "clients" / entry["files"]["pem"]).read_bytes())
        assert certificate == pem and extra == [] and key is not None, name  # Schannel curl takes the first certificate
        assert key.public_key() == pem.public_key(), name


def _stack_file(tmp_path: Path, variant: str) -> Path:
    path = tmp_path / f"Pulumi.lab-{variant}.yaml"
    path.write_text(yaml.safe_dump({"config": {**windows_lab.LAB_CONFIG, **windows_lab.VARIANTS[variant]}}), encoding="utf-8")
    return path


def test_pki_check_predicts_what_the_job_expects_iis_to_answer(lab, tmp_path) -> None:
    """`pki check` (the project's model of IIS's checks) with the lab's CA, CRL and mapping rules
    gives each client the answer the job asserts on Windows: the lab is built as intended."""
    out, manifest = lab["out"], lab["manifest"]
    stack = _stack_file(tmp_path, "require")
    for name, entry in manifest["clients"].items():
        if entry["files"] is None:
            continue
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
            code = pki_main(["--dir", str(lab["pki"]), "check", str(out / "clients" / entry["files"]["pem"]), "--chain", str(out / "devices-ca.pem"),
                             "--crl", str(out / manifest["crl"] / "devices-ca.crl"), "--stack-config", str(stack), "--json"])
        verdict = json.loads(stdout.getvalue())
        status, substatus = MATRIX[name]
        if status == 200:
            assert code == 0 and verdict["accepted"] is True, (name, verdict)
        else:
            assert code == 1 and verdict["status"] == f"{status}.{substatus}", (name, verdict)


def test_the_server_certificate_and_the_crls_are_where_their_urls_say(lab) -> None:
    out, manifest = lab["out"], lab["manifest"]
    key, leaf, chain = pkcs12.load_key_and_certificates((out / manifest["serverPfx"]).read_bytes(), _password(out, manifest["serverPfxSecretFile"]))
    assert key is not None and leaf is not None
    assert leaf.fingerprint(hashes.SHA1()).hex().upper() == manifest["serverThumbprint"]
    server_ca = x509.load_pem_x509_certificate((out / manifest["serverCa"]).read_bytes())
    store = verification.Store([server_ca])
    verifier = verification.PolicyBuilder().store(store).time(dt.datetime.now(dt.timezone.utc)).build_server_verifier(verification.DNSName(manifest["serverName"]))
    verifier.verify(leaf, chain)  # raises unless the server CA (name-constrained) vouches for the lab's beacon name
    device = x509.load_pem_x509_certificate((out / "clients" / manifest["clients"]["device"]["files"]["pem"]).read_bytes())
    for certificate, crl_name in ((device, "devices-ca.crl"), (leaf, "server-devices-ca.crl")):
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        urls = [n.value for p in points for n in (p.full_name or [])]
        assert urls == [f"http://{manifest['crlHost']}:{manifest['crlPort']}/{crl_name}"], urls
        assert (out / manifest["crl"] / crl_name).is_file()
    crl = x509.load_der_x509_crl((out / manifest["crl"] / "devices-ca.crl").read_bytes())
    revoked = x509.load_pem_x509_certificate((out / "clients" / manifest["clients"]["revoked"]["files"]["pem"]).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(device.serial_number) is None


def test_the_desired_states_are_the_plans_for_the_lab(lab) -> None:
    out, manifest = lab["out"], lab["manifest"]
    states = {name: json.loads((out / file).read_text(encoding="utf-8")) for name, file in manifest["states"].items()}
    require, observe, locked = states["require"], states["observe"], states["lockedObserve"]
    assert "Web-Cert-Auth" in require["features"]["install"]
    assert require["crlUrls"] == [f"http://{manifest['crlHost']}:{manifest['crlPort']}/devices-ca.crl"]
    assert require["serverCertificate"] is None and require["reportOnly"] is False  # the PFX comes from -PfxPath
    assert require["mappedAccount"] == {"type": "local", "name": manifest["mappedAccount"], "domain": None, "passwordSecretArn": None}
    assert [t["thumbprint"] for t in require["trustStores"]] == [manifest["caThumbprint"]] * 2  # Root and ClientAuthIssuer

    def without(state: dict[str, Any], *paths: str) -> dict[str, Any]:
        copy = json.loads(json.dumps(state))
        for path in paths:
            *parents, leaf = path.split(".")
            node = copy
            for part in parents:
                node = node[part]
            del node[leaf]
        return copy

    switch = ("enforcement", "access.sslFlags", "authentication.anonymousEnabled")
    assert require["access"]["sslFlags"] != observe["access"]["sslFlags"] and observe["authentication"]["anonymousEnabled"] is True
    assert without(require, *switch) == without(observe, *switch), "observe differs from require in the switch alone"
    mappings = "authentication.clientCertificateMapping.manyToOneMappings"
    assert without(locked, mappings) == without(observe, mappings)
    names = [m["name"] for m in locked["authentication"]["clientCertificateMapping"]["manyToOneMappings"]]
    assert len(names) == 2 and names[0].startswith("Deny ")  # one more mapping: the lock-down must rewrite them


def test_the_same_name_root_is_not_self_signed(lab) -> None:
    out, manifest = lab["out"], lab["manifest"]
    renamed = x509.load_der_x509_certificate((out / manifest["sameNameRoot"]["file"]).read_bytes())
    assert renamed.subject == renamed.issuer
    assert renamed.fingerprint(hashes.SHA1()).hex().upper() == manifest["sameNameRoot"]["thumbprint"]
    with pytest.raises(Exception):
        renamed.verify_directly_issued_by(renamed)


def test_ops_probe_as_the_job_runs_it_against_an_openssl_beacon(lab) -> None:
    """The job's probe command (lab files, --connect, both TLS versions) against an OpenSSL server
    holding the lab's server certificate and requiring the lab CA with its CRL: every row as expected."""
    out, pki_dir, manifest = lab["out"], lab["pki"], lab["manifest"]
    crl_pem = pki_dir / "crl.pem"
    server = BeaconServer(pki_dir / "issued" / f"{manifest['serverName']}.pem", pki_dir / "private" / f"{manifest['serverName']}.key",
                          [out / "devices-ca.pem"], [crl_pem], chain_crl_check=False)
    clients = out / "clients"
    device, revoked = manifest["clients"]["device"]["files"], manifest["clients"]["revoked"]["files"]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "scripts.ops", "probe", f"https://{manifest['serverName']}:{server.port}/ManageSoftDL/", "--connect", "127.0.0.1",
             "--ca", str(out / manifest["serverCa"]), "--enforcement", "require", "--tls12", "--json",
             "--cert", str(clients / device["pem"]), "--key", str(clients / device["key"]),
             "--revoked-cert", str(clients / revoked["pem"]), "--revoked-key", str(clients / revoked["key"])],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )
    finally:
        server.close()
    payload = json.loads(result.stdout)
    assert result.returncode == 0 and payload["ok"] is True, result.stdout + result.stderr
    assert len(payload["matrix"]) == 8  # the 8 rows Test-ConvergeLab.ps1 requires: 4 cases, TLS 1.3 and 1.2


def test_bad_input_is_one_line_and_creates_nothing(tmp_path) -> None:
    taken = tmp_path / "lab"
    taken.mkdir()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert windows_lab.main(["--out", str(taken)]) == 2
    assert stderr.getvalue().count("\n") == 1 and "--out" in stderr.getvalue() and "exists" in stderr.getvalue()
    assert not (tmp_path / "lab.pki").exists() and list(taken.iterdir()) == []


# --- ops probe on Windows ---------------------------------------------------------------------------

def test_scripts_ops_loads_without_fcntl(tmp_path) -> None:
    """Windows has no fcntl (scripts/pki/store.py takes it only where it locks a PKI): the probe's
    command line loads and parses there. The stand-in makes `import fcntl` fail, as on Windows."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['fcntl'] = None\n", encoding="utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    blocked = subprocess.run([sys.executable, "-c", "import fcntl"], capture_output=True, text=True, env=env, timeout=60)
    assert blocked.returncode != 0 and "fcntl" in blocked.stderr  # the stand-in works
    result = subprocess.run([sys.executable, "-m", "scripts.ops", "probe", "--help"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 0 and "--revoked-cert" in result.stdout, result.stderr[-2000:]
