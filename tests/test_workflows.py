"""The GitHub workflows (.github/workflows/): valid, and doing what docs/review.md says they do.

Validated offline: YAML parse, the GitHub workflow JSON schema that check-jsonschema ships
(`--builtin-schema vendor.github-workflows`, no network), the inputs of every action used against
the inputs those actions declare at the pinned major version, and the review contract: make test
before any preview, preview per stack with the policy pack and a pull-request comment, up for dev
then prod with prod behind the `production` environment, AWS by OIDC role, no stored credentials.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
PR = WORKFLOWS / "pull-request.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))

# Inputs declared in each action's action.yml at the major version the workflows pin (read from the
# actions' repositories). A misspelt input (policy-packs, role_to_assume) is otherwise ignored by
# GitHub with a warning, and the preview would silently run without the policy pack.
ACTION_INPUTS: dict[str, set[str]] = {
    "actions/checkout@v7": {
        "allow-unsafe-pr-checkout", "clean", "fetch-depth", "fetch-tags", "filter", "github-server-url", "lfs", "path",
        "persist-credentials", "ref", "repository", "set-safe-directory", "show-progress", "sparse-checkout",
        "sparse-checkout-cone-mode", "ssh-key", "ssh-known-hosts", "ssh-strict", "ssh-user", "submodules", "token",
    },
    "actions/setup-python@v7": {
        "allow-prereleases", "architecture", "cache", "cache-dependency-path", "check-latest", "freethreaded",
        "pip-version", "python-version", "python-version-file", "token", "update-environment",
    },
    "actions/upload-artifact@v7": {
        "archive", "compression-level", "if-no-files-found", "include-hidden-files", "name", "overwrite", "path",
        "retention-days",
    },
    "aws-actions/configure-aws-credentials@v6": {
        "action-timeout-s", "allowed-account-ids", "audience", "aws-access-key-id", "aws-profile", "aws-region",
        "aws-secret-access-key", "aws-session-token", "custom-tags", "disable-retry", "force-skip-oidc", "http-proxy",
        "inline-session-policy", "managed-session-policies", "mask-aws-account-id", "no-proxy", "output-credentials",
        "output-env-credentials", "overwrite-aws-profile", "retry-max-attempts", "role-chaining",
        "role-duration-seconds", "role-external-id", "role-session-name", "role-skip-session-tagging",
        "role-to-assume", "special-characters-workaround", "sts-endpoint", "transitive-tag-keys",
        "unset-current-credentials", "use-existing-credentials", "web-identity-token-file",
    },
    "pulumi/auth-actions@v2": {
        "cloud-url", "export-environment-variables", "organization", "requested-token-type", "scope", "token-expiration",
    },
    "pulumi/actions@v7": {
        "always-include-summary", "cloud-url", "color", "command", "comment-on-pr", "comment-on-pr-number",
        "comment-on-summary", "config-map", "continue-on-error", "debug", "diff", "edit-pr-comment", "exclude",
        "exclude-dependents", "exclude-protected", "expect-no-changes", "github-token", "log-flow", "log-verbosity",
        "message", "parallel", "plan", "policyPackConfigs", "policyPacks", "pulumi-version", "pulumi-version-file",
        "refresh", "remove", "replace", "secrets-provider", "stack-name", "suppress-outputs", "suppress-progress",
        "target", "target-dependents", "upsert", "work-dir",
    },
}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), path
    if True in document:  # YAML 1.1 reads the key `on` as a boolean
        document["on"] = document.pop(True)
    return document


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def all_steps(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, job in document["jobs"].items():
        for step in steps(job):
            yield name, step


def action(step: dict[str, Any]) -> str:
    return str(step.get("uses", "")).split("@")[0]


def pulumi_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in steps(job) if action(s) == "pulumi/actions"]


def permissions(document: dict[str, Any], job: dict[str, Any]) -> dict[str, str]:
    """A job's effective permissions: its own block replaces the workflow's."""
    return dict(job.get("permissions", document.get("permissions")) or {})


def needs(job: dict[str, Any]) -> list[str]:
    value = job.get("needs") or []
    return [value] if isinstance(value, str) else list(value)


def upstream(document: dict[str, Any], name: str) -> set[str]:
    """Every job that must finish before job `name` starts."""
    seen: set[str] = set()
    todo = needs(document["jobs"][name])
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += needs(document["jobs"][current])
    return seen


def runs_make_test(job: dict[str, Any]) -> bool:
    return any(re.search(r"(^|\n|&&\s*)make test\b", str(s.get("run", ""))) for s in steps(job))


def pinned_version() -> str:
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("pulumi=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError("requirements.txt pins no pulumi")


# --- validity --------------------------------------------------------------------------------------

def test_expected_workflows_exist():
    assert {p.name for p in workflow_files()} >= {"pull-request.yml", "deploy.yml"}


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_workflow_parses(path):
    document = load(path)
    assert document["name"] and document["on"] and document["jobs"]
    for name, job in document["jobs"].items():
        assert job.get("runs-on"), name
        assert steps(job), name
        for step in steps(job):
            assert ("uses" in step) != ("run" in step), (name, step)


def _check_jsonschema() -> list[str] | None:
    script = Path(sys.executable).with_name("check-jsonschema")
    if script.exists():
        return [str(script)]
    if importlib.util.find_spec("check_jsonschema") is not None:
        return [sys.executable, "-m", "check_jsonschema"]
    return None


def test_workflows_match_the_github_workflow_schema():
    command = _check_jsonschema()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("check-jsonschema is in requirements-dev.txt; CI must have it")
        pytest.skip("check-jsonschema not installed")
    result = subprocess.run(
        [*command, "--builtin-schema", "vendor.github-workflows", *map(str, workflow_files())],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    """The schema check is not vacuous: a misspelt job key (enviroment) fails it."""
    command = _check_jsonschema()
    if command is None:
        pytest.skip("check-jsonschema not installed")
    broken = tmp_path / "broken.yml"
    broken.write_text(DEPLOY.read_text(encoding="utf-8").replace("    environment: production", "    enviroment: production"))
    result = subprocess.run([*command, "--builtin-schema", "vendor.github-workflows", str(broken)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "enviroment" in result.stdout


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_actions_are_pinned_and_given_only_declared_inputs(path):
    for job, step in all_steps(load(path)):
        uses = step.get("uses")
        if not uses:
            continue
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", uses), f"{job}: {uses} is not pinned"
        assert uses in ACTION_INPUTS, f"{job}: {uses} is not in the table of known action inputs"
        unknown = set(step.get("with") or {}) - ACTION_INPUTS[uses]
        assert not unknown, f"{job}: {uses} has no input(s) {sorted(unknown)}"


# --- credentials --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_no_stored_credentials_anywhere(path):
    text = path.read_text(encoding="utf-8")
    for forbidden in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws-access-key-id", "aws-secret-access-key",
                      "AWS_SESSION_TOKEN", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "secrets."):
        assert forbidden not in text, f"{path.name} mentions {forbidden}"
    assert "pull_request_target" not in text  # would run with secrets on code from forks


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_aws_credentials_come_from_an_oidc_role(path):
    document = load(path)
    assert permissions(document, {}) == {"contents": "read"}  # the workflow default is read-only
    found = 0
    for name, job in document["jobs"].items():
        aws = [s for s in steps(job) if action(s) == "aws-actions/configure-aws-credentials"]
        if pulumi_steps(job):
            assert aws, f"{name} runs pulumi without AWS credentials"
        for step in aws:
            found += 1
            assert permissions(document, job).get("id-token") == "write", f"{name} cannot request an OIDC token"
            role = step["with"]["role-to-assume"]
            assert re.fullmatch(r"\$\{\{ vars\.AWS_\w+_ROLE_ARN \}\}", role), role
            assert step["with"].get("aws-region")
        if not aws:
            assert permissions(document, job).get("id-token") != "write", f"{name} needs no OIDC token"
    assert found


# --- pull requests -----------------------------------------------------------------------------------

def test_pull_requests_run_make_test_then_preview_every_stack():
    document = load(PR)
    assert "pull_request" in document["on"]
    tests = [name for name, job in document["jobs"].items() if runs_make_test(job)]
    assert tests
    previews = {name: job for name, job in document["jobs"].items() if pulumi_steps(job)}
    assert previews
    for name, job in previews.items():
        assert set(tests) & upstream(document, name), f"{name} does not wait for make test"
        assert job["strategy"]["matrix"]["stack"] == STACKS  # every stack in stacks/
        for step in pulumi_steps(job):
            inputs = step["with"]
            assert inputs["command"] == "preview"
            assert inputs["stack-name"] == "${{ matrix.stack }}"
            assert inputs["comment-on-pr"] is True
            assert inputs["policyPacks"] == "policy" and inputs["work-dir"] in (".", "./")
        assert permissions(document, job).get("pull-requests") == "write"  # to comment


def test_pull_requests_show_the_offline_plan_diff():
    document = load(PR)
    runs = "\n".join(str(s.get("run", "")) for _, s in all_steps(document))
    assert "make plan-all" in runs and "diff -ru build/plan-base build/plan" in runs
    assert "GITHUB_STEP_SUMMARY" in runs


# --- deployment ----------------------------------------------------------------------------------------

def _up_jobs(document: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """{stack: (job name, job)} for the jobs that run `pulumi up`."""
    found = {}
    for name, job in document["jobs"].items():
        for step in pulumi_steps(job):
            if step["with"]["command"] == "up":
                found[step["with"]["stack-name"]] = (name, job)
    return found


def test_main_deploys_dev_then_prod_behind_an_approval():
    document = load(DEPLOY)
    assert document["on"]["push"]["branches"] == ["main"]
    ups = _up_jobs(document)
    assert set(ups) == {"dev", "prod"}
    dev_name, _ = ups["dev"]
    prod_name, prod = ups["prod"]
    assert dev_name in upstream(document, prod_name), "prod must wait for dev"
    assert prod.get("environment") == "production", "prod up needs the production environment (approval)"
    assert any(runs_make_test(document["jobs"][j]) for j in upstream(document, dev_name)), "dev up must wait for make test"
    # The approver sees a preview of prod (in the run summary) before approving.
    assert any(s["with"]["command"] == "preview" and s["with"]["stack-name"] == "prod"
               for n in upstream(document, prod_name) for s in pulumi_steps(document["jobs"][n]))
    assert document["concurrency"]["cancel-in-progress"] is False


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_every_pulumi_run_uses_the_policy_pack_and_the_pinned_cli(path):
    for name, job in load(path)["jobs"].items():
        for step in pulumi_steps(job):
            assert step["with"]["policyPacks"] == "policy", name
            assert str(step["with"]["pulumi-version"]) == pinned_version(), name
            venv_steps = "\n".join(str(s.get("run", "")) for s in steps(job))
            assert "policy/venv/bin/pip install" in venv_steps and "-r policy/requirements.txt" in venv_steps, name
    assert (ROOT / "policy" / "PulumiPolicy.yaml").is_file()


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    variables = dict(re.findall(r"^(\w+)\s*:=\s*(\S+)\s*$", text, re.MULTILINE))
    targets = set()
    for target in re.findall(r"^([^\s:#=][^:=]*?):(?!=)", text, re.MULTILINE):
        targets.add(re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), target.strip()))
    return targets


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_make_targets_used_by_the_workflows_exist(path):
    targets = _make_targets()
    for _, step in all_steps(load(path)):
        for target in re.findall(r"\bmake ([\w./-]+)", str(step.get("run", ""))):
            assert target in targets, f"make {target}: no such target in the Makefile"


def test_every_pulumi_up_and_preview_is_preceded_by_the_require_guard():
    """The switch from observe to require is checked (ops readiness) before each preview and up,
    with the history the guard needs to read the stack file before the change."""
    checked = 0
    for path in workflow_files():
        document = load(path)
        for name, job in (document.get("jobs") or {}).items():
            job_steps = steps(job)
            runs = [i for i, s in enumerate(job_steps) if action(s) == "pulumi/actions" and (s.get("with") or {}).get("command") in ("up", "preview")]
            guards = [i for i, s in enumerate(job_steps) if "scripts.require_guard" in str(s.get("run", ""))]
            if not runs:
                continue
            if (job.get("strategy") or {}).get("matrix") is None and "prod" in name and "preview" in name:
                continue  # the approver's preview of prod: the up job that follows is guarded
            checked += 1
            assert guards and guards[0] < runs[0], f"{path.name}:{name}: no require guard before pulumi"
            checkout = next(s for s in job_steps if action(s) == "actions/checkout")
            assert (checkout.get("with") or {}).get("fetch-depth") == 0, f"{path.name}:{name}: the guard needs the history"
            assert "--base-ref" in str(job_steps[guards[0]]["run"])
    assert checked == 3  # pull-request preview (both stacks), deploy up dev, deploy up prod
