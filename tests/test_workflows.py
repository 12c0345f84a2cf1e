"""The GitHub workflows (.github/workflows/): valid, and doing what docs/review.md says they do.

Validated offline: YAML parse, the GitHub workflow JSON schema that check-jsonschema ships
(`--builtin-schema vendor.github-workflows`, no network), the inputs of every action used against
the inputs those actions declare at the pinned commit, the GitHub Actions security audit (zizmor,
offline, zero findings; actions pinned to commits, images to digests, no expression expanded in
a script), and the review contract: make test before any preview, preview per stack with the
policy pack and a pull-request comment, up for dev, then the pilot and prod, with prod behind the `production`
environment, AWS by OIDC role, no stored credentials, and the require guard against the deployed stack's outputs before every preview and up (the
fetch and guard steps are also run, with a stand-in pulumi, as GitHub would run them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
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

# The release each action is pinned to: (commit, tag). A tag can be moved to other code, a commit
# cannot; the jobs that assume the AWS roles run these actions, so the workflows name the commit
# (`uses: owner/name@<commit> # <tag>`). Read from each action's repository, `git rev-parse
# <tag>^{commit}`, at the newest release of the major version the workflows used (v7, v6, v2).
ACTION_PINS: dict[str, tuple[str, str]] = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    # The Windows converge job's lab, made on Linux (windows-converge.yml); v8: artifacts of upload-artifact v4 and later.
    "actions/download-artifact": ("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
    "aws-actions/configure-aws-credentials": ("e6de054238d6b7531b4efff3b6587d9aade6a06c", "v6.2.3"),
    "pulumi/auth-actions": ("141415910c3beb54e03b48e9057c204c97b956f2", "v2.1.0"),
    "pulumi/actions": ("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
}

# Inputs declared in each action's action.yml at the pinned commit (read from the actions'
# repositories). A misspelt input (policy-packs, role_to_assume) is otherwise ignored by GitHub
# with a warning, and the preview would silently run without the policy pack.
ACTION_INPUTS: dict[str, set[str]] = {
    "actions/checkout": {
        "allow-unsafe-pr-checkout", "clean", "fetch-depth", "fetch-tags", "filter", "github-server-url", "lfs", "path",
        "persist-credentials", "ref", "repository", "set-safe-directory", "show-progress", "sparse-checkout",
        "sparse-checkout-cone-mode", "ssh-key", "ssh-known-hosts", "ssh-strict", "ssh-user", "submodules", "token",
    },
    "actions/setup-python": {
        "allow-prereleases", "architecture", "cache", "cache-dependency-path", "check-latest", "freethreaded",
        "pip-version", "python-version", "python-version-file", "token", "update-environment",
    },
    "actions/upload-artifact": {
        "archive", "compression-level", "if-no-files-found", "include-hidden-files", "name", "overwrite", "path",
        "retention-days",
    },
    "actions/download-artifact": {
        "artifact-ids", "digest-mismatch", "github-token", "merge-multiple", "name", "path", "pattern", "repository",
        "run-id", "skip-decompress",
    },
    "aws-actions/configure-aws-credentials": {
        "action-timeout-s", "allowed-account-ids", "audience", "aws-access-key-id", "aws-profile", "aws-region",
        "aws-secret-access-key", "aws-session-token", "custom-tags", "disable-retry", "force-skip-oidc", "http-proxy",
        "inline-session-policy", "managed-session-policies", "mask-aws-account-id", "no-proxy", "output-credentials",
        "output-env-credentials", "overwrite-aws-profile", "retry-max-attempts", "role-chaining",
        "role-duration-seconds", "role-external-id", "role-session-name", "role-skip-session-tagging",
        "role-to-assume", "special-characters-workaround", "sts-endpoint", "transitive-tag-keys",
        "unset-current-credentials", "use-existing-credentials", "web-identity-token-file",
    },
    "pulumi/auth-actions": {
        "cloud-url", "export-environment-variables", "organization", "requested-token-type", "scope", "token-expiration",
    },
    "pulumi/actions": {
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
    """The pulumi/actions steps that run a command (preview, up); see cli_installs for the others."""
    return [s for s in steps(job) if action(s) == "pulumi/actions" and (s.get("with") or {}).get("command")]


def cli_installs(job: dict[str, Any]) -> list[dict[str, Any]]:
    """pulumi/actions without a command: it only installs the CLI (for `pulumi stack output`)."""
    return [s for s in steps(job) if action(s) == "pulumi/actions" and not (s.get("with") or {}).get("command")]


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
        name, _, ref = str(uses).partition("@")
        assert name in ACTION_PINS, f"{job}: {uses} is not in the table of pinned actions"
        assert ref == ACTION_PINS[name][0], f"{job}: {uses} is not the pinned commit {ACTION_PINS[name][0]}"
        unknown = set(step.get("with") or {}) - ACTION_INPUTS[name]
        assert not unknown, f"{job}: {uses} has no input(s) {sorted(unknown)}"


USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+?)(?:\s+#\s*(?P<comment>.*?))?\s*$", re.M)


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_every_uses_names_a_full_commit_and_its_release_tag(path):
    """`uses: owner/name@<40 hex> # vX.Y.Z`, the comment being the release that commit is. Read from
    the text (YAML drops comments); as many such lines as the parsed workflow has uses:, so none
    hides in flow style."""
    text = path.read_text(encoding="utf-8")
    lines = list(USES_LINE.finditer(text))
    parsed = [str(step["uses"]) for _, step in all_steps(load(path)) if "uses" in step]
    assert [m["ref"] for m in lines] == parsed, f"{path.name}: every uses: on its own line, in block style"
    for match in lines:
        ref, comment = match["ref"], match["comment"] or ""
        where = f"{path.name}:{text.count(chr(10), 0, match.start()) + 1}: {ref}"
        assert re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}", ref), f"{where}: not pinned to a full commit SHA"
        assert re.fullmatch(r"v\d+\.\d+\.\d+", comment), f"{where}: the comment must name the release (# vX.Y.Z), not {comment!r}"
        name, commit = ref.split("@")
        assert (commit, comment) == ACTION_PINS.get(name), f"{where} # {comment}: not the commit of that release in ACTION_PINS"


def _images(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, image) for every container image a workflow runs: job containers, services, docker:// steps."""
    for name, job in document["jobs"].items():
        container = job.get("container")
        if container is not None:
            yield f"{name}.container", str(container.get("image") if isinstance(container, dict) else container)
        for service, spec in (job.get("services") or {}).items():
            yield f"{name}.services.{service}", str(spec.get("image") if isinstance(spec, dict) else spec)
        for step in steps(job):
            if str(step.get("uses", "")).startswith("docker://"):
                yield f"{name}.{step.get('name', 'step')}", str(step["uses"])[len("docker://"):]


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_container_images_are_pinned_by_digest(path):
    """A tag (python:3.11-bookworm) is whatever was last pushed under it; a digest is one image."""
    for where, image in _images(load(path)):
        assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", image), f"{path.name}:{where}: {image} is not pinned by digest"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_no_expression_is_expanded_inside_a_run_script(path):
    """`${{ }}` in run: is pasted into the script before bash reads it (a branch name or a matrix value
    becomes code); values reach scripts through env: and a quoted shell variable."""
    for job, step in all_steps(load(path)):
        script = str(step.get("run", ""))
        assert "${{" not in script, f"{path.name}:{job}: {step.get('name')!r} expands {re.findall(r'[$][{][{].*?[}][}]', script)} in run:"


# --- the security audit (zizmor) -------------------------------------------------------------------------

def _zizmor() -> str | None:
    script = Path(sys.executable).with_name("zizmor")
    return str(script) if script.exists() else None


def _audit(*inputs: Path, persona: str = "regular") -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """zizmor over `inputs`, offline: no GitHub token in its environment, no configuration file and no
    ignore comment honoured (neither may silence a finding); its JSON findings."""
    command = _zizmor()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("zizmor is in requirements-dev.txt; CI must have it")
        pytest.skip("zizmor not installed (pip install -r requirements-dev.txt)")
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN", "ZIZMOR_CONFIG")}
    result = subprocess.run(
        [command, "--offline", "--no-config", "--no-ignores", "--persona", persona, "--format", "json",
         "--no-progress", "--color", "never", *map(str, inputs)],
        capture_output=True, text=True, timeout=60, env=env | {"ZIZMOR_OFFLINE": "true"},
    )
    assert result.returncode != 1 and result.stdout.strip(), f"zizmor failed: {result.stderr[-2000:]}"
    return result, json.loads(result.stdout)


def _primary(finding: dict[str, Any]) -> list[dict[str, Any]]:
    """The concrete locations zizmor marks as the finding's own (the others are context)."""
    return [loc.get("concrete") or {} for loc in finding.get("locations") or []
            if (loc.get("symbolic") or {}).get("kind") == "Primary"]


def _describe(finding: dict[str, Any]) -> str:
    where = ", ".join(f"line {(c.get('location') or {}).get('start_point', {}).get('row', -1) + 1}: {c.get('feature')!r}"
                      for c in _primary(finding))
    return f"{finding.get('ident')} ({(finding.get('determinations') or {}).get('severity')}) {finding.get('desc')}: {where}"


def _pinned_dev_version(package: str) -> str:
    for line in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"requirements-dev.txt pins no {package}")


def test_zizmor_finds_nothing_in_the_workflows():
    """The GitHub Actions security audit at its default persona: zero findings, of any severity."""
    result, findings = _audit(WORKFLOWS)
    assert findings == [], "\n".join(map(_describe, findings))
    assert result.returncode == 0, result.stderr[-2000:]
    version = subprocess.run([_zizmor() or "zizmor", "--version"], capture_output=True, text=True, timeout=30).stdout.split()
    assert version == ["zizmor", _pinned_dev_version("zizmor")], "the audit ran another zizmor than requirements-dev.txt pins"


def test_zizmor_audit_is_not_vacuous(tmp_path):
    """The same audit over a copy with one action back on its tag and one branch name expanded in
    run: reports both, at the lines changed (so zero findings above means the workflows, not a
    blind audit)."""
    text = PR.read_text(encoding="utf-8")
    checkout = f"actions/checkout@{ACTION_PINS['actions/checkout'][0]} # {ACTION_PINS['actions/checkout'][1]}"
    assert checkout in text and 'git worktree add --detach /tmp/base "$BASE_SHA"' in text
    broken = tmp_path / "pull-request.yml"
    broken.write_text(text.replace(checkout, "actions/checkout@v7", 1)
                      .replace('"$BASE_SHA"', "${{ github.event.pull_request.head.ref }}", 1), encoding="utf-8")
    result, findings = _audit(broken)
    assert result.returncode != 0
    found = {(f["ident"], f["determinations"]["severity"]) for f in findings}
    assert found == {("unpinned-uses", "High"), ("template-injection", "High")}, "\n".join(map(_describe, findings))
    features = {f["ident"]: " ".join(str(c.get("feature")) for c in _primary(f)) for f in findings}
    assert "actions/checkout@v7" in features["unpinned-uses"]
    assert "github.event.pull_request.head.ref" in features["template-injection"]


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
    # A workflow that runs no pulumi assumes no role (windows-converge.yml touches no cloud at all).
    assert found or not any(pulumi_steps(job) or cli_installs(job) for job in document["jobs"].values())


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
    assert set(ups) == {"dev", "pilot", "prod"}  # the pilot too: its switch to require is the guarded one (issue 23)
    dev_name, _ = ups["dev"]
    pilot_name, pilot = ups["pilot"]
    assert dev_name in upstream(document, pilot_name) and pilot.get("environment") == "pilot"
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
        for step in cli_installs(job):  # install only: the pinned CLI and nothing else
            assert {k: str(v) for k, v in (step.get("with") or {}).items()} == {"pulumi-version": pinned_version()}, name
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


OUTPUTS_FETCH = re.compile(r'^pulumi stack output --json( --non-interactive)? --stack (?P<stack>"\$STACK"|[\w-]+) > "(?P<file>\$RUNNER_TEMP/[\w.-]+\.json)"$', re.M)
GUARD = re.compile(r'^\.venv/bin/python -m scripts\.require_guard --stack (?P<stack>"\$STACK"|[\w-]+) --deployed-outputs "(?P<file>[^"]+)"(?P<record> --record)?$')


def _stack_of(step: dict[str, Any], written: str) -> str:
    """The stack a run step names: literally, or through its env STACK."""
    return str((step.get("env") or {}).get("STACK")) if written == '"$STACK"' else written


def _guarded_jobs() -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(workflow, job name, job, its pulumi preview/up step) for every job the guard must precede."""
    for path in workflow_files():
        document = load(path)
        for name, job in (document.get("jobs") or {}).items():
            runs = [s for s in pulumi_steps(job) if s["with"]["command"] in ("up", "preview")]
            if not runs:
                continue
            if (job.get("strategy") or {}).get("matrix") is None and "prod" in name and "preview" in name:
                continue  # the approver's preview of prod: the up job that follows is guarded
            assert len(runs) == 1, f"{path.name}:{name}"
            yield path.name, name, job, runs[0]


def test_every_pulumi_up_and_preview_is_preceded_by_the_require_guard_against_the_deployed_outputs():
    """Before each preview and up: the pinned CLI, the deployed stack's outputs fetched after the AWS
    and Pulumi credentials, then the guard comparing the stack file with them (issue 20: the
    deployed stack is the reference, not git history)."""
    checked = 0
    for workflow, name, job, run in _guarded_jobs():
        where = f"{workflow}:{name}"
        job_steps = steps(job)
        position = {id(s): i for i, s in enumerate(job_steps)}
        fetches = [s for s in job_steps if OUTPUTS_FETCH.search(str(s.get("run", "")))]
        guards = [s for s in job_steps if "scripts.require_guard" in str(s.get("run", ""))]
        assert len(fetches) == 1 and len(guards) == 1, f"{where}: one outputs fetch and one guard"
        fetch, guard = fetches[0], guards[0]
        fetched = OUTPUTS_FETCH.search(str(fetch["run"]))
        guarded = GUARD.fullmatch(str(guard["run"]).strip())
        assert fetched and guarded, f"{where}: {guard['run']!r}"
        stack = str(run["with"]["stack-name"])
        assert _stack_of(fetch, fetched["stack"]) == _stack_of(guard, guarded["stack"]) == stack, where
        assert fetched["file"] == guarded["file"], f"{where}: the guard reads another file than the fetch wrote"
        assert "--base-ref" not in str(guard["run"]), f"{where}: the reference is the deployment, not git history"
        # Order: credentials, the CLI, the fetch, the guard, then pulumi.
        credentials = [s for s in job_steps if action(s) in ("aws-actions/configure-aws-credentials", "pulumi/auth-actions")]
        assert len(credentials) == 2 and cli_installs(job), where
        assert max(position[id(s)] for s in credentials) < position[id(fetch)], f"{where}: fetch before the credentials"
        assert position[id(cli_installs(job)[0])] < position[id(fetch)] < position[id(guard)] < position[id(run)], where
        checked += 1
    assert checked == 4  # pull-request preview (every stack), deploy up dev, pilot and prod


def test_a_failed_fetch_or_guard_stops_the_job():
    """No step between the fetch and pulumi may be skipped over or have its failure ignored."""
    for workflow, name, job, run in _guarded_jobs():
        where = f"{workflow}:{name}"
        for step in steps(job):
            assert not step.get("continue-on-error") and not job.get("continue-on-error"), f"{where}: {step.get('name')}"
            condition = str(step.get("if", ""))
            assert not re.search(r"always\(\)|failure\(\)|cancelled\(\)", condition), f"{where}: {step.get('name')} runs after a failure"
        for step in steps(job):
            text = str(step.get("run", ""))
            if "pulumi stack output" in text or "scripts.require_guard" in text:
                assert "|| true" not in text and "|| :" not in text and "set +e" not in text, where
            if "pulumi stack output" in text:
                assert text.lstrip().startswith("set -euo pipefail\n"), f"{where}: the fetch must stop at its first failure"
                # Never creates a stack: a missing one is a failure, not a new stack (docs/review.md).
                assert "--create" not in text and "stack init" not in text, where
                assert step["env"]["BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}", where
        assert not (run.get("with") or {}).get("upsert"), f"{where}: pulumi must not create a missing stack"


def test_up_records_the_verdict_and_previews_do_not():
    """The deploy's guard records the readiness verdict `pulumi up` requires for the switch
    (components/require_gate.py); a pull request's preview role is read-only and records nothing."""
    for workflow, name, job, run in _guarded_jobs():
        guard = next(s for s in steps(job) if "scripts.require_guard" in str(s.get("run", "")))
        records = "--record" in str(guard["run"])
        assert records is (run["with"]["command"] == "up"), f"{workflow}:{name}"


def _render(script: str, step: dict[str, Any], values: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A run step as GitHub hands it to bash: ${{ }} expressions replaced (only the known ones)."""
    def expression(match: re.Match[str]) -> str:
        assert match[1] in values, f"unexpected expression {match[0]}"
        return values[match[1]]

    pattern = r"\$\{\{\s*([\w.]+)\s*\}\}"
    env = {key: re.sub(pattern, expression, str(value)) for key, value in (step.get("env") or {}).items()}
    return re.sub(pattern, expression, script), env


FAKE_PULUMI = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$*:$FAKE_MODE" in
  *login*:login-fails) echo "error: problem logging in" >&2; exit 1 ;;
  *login*) exit 0 ;;
  *"stack output"*:no-stack) echo "error: no stack named '$STACK_WANTED' found" >&2; exit 255 ;;
  *"stack output"*:new) echo "{}" ;;
  *"stack output"*:observe) printf '%s\\n' "$FAKE_OUTPUTS" ;;
  *) echo "unexpected: $*" >&2; exit 3 ;;
esac
"""


@pytest.mark.parametrize("mode,backend,fails", [
    ("new", "s3://state-bucket", False),
    ("observe", "", False),
    ("no-stack", "s3://state-bucket", True),
    ("login-fails", "", True),
])
@pytest.mark.parametrize("workflow,job_name", [("deploy.yml", "up-dev"), ("deploy.yml", "up-pilot"), ("deploy.yml", "up-prod"), ("pull-request.yml", "preview")])
def test_the_fetch_and_the_guard_steps_run_as_written(tmp_path, workflow, job_name, mode, backend, fails):
    """The two steps, run with bash -e as GitHub runs them, against a stand-in pulumi: a failed login
    or a missing stack fails the step (so the deploy stops); `{}` (a new stack) and real outputs
    are written where the guard reads them, and the guard's own command line accepts them."""
    job = load(WORKFLOWS / workflow)["jobs"][job_name]
    stack = {"up-prod": "prod", "up-pilot": "pilot"}.get(job_name, "dev")
    fetch = next(s for s in steps(job) if OUTPUTS_FETCH.search(str(s.get("run", ""))))
    guard = next(s for s in steps(job) if "scripts.require_guard" in str(s.get("run", "")))
    values = {"vars.PULUMI_BACKEND_URL": backend, "matrix.stack": stack}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(FAKE_PULUMI, encoding="utf-8")
    (bin_dir / "pulumi").chmod(0o755)
    (tmp_path / "temp").mkdir()
    log = tmp_path / "pulumi.log"
    deployed = {"enforcement": "observe", "requireMinReadyPercent": 100, "logGroups": {"iis": f"/flexnet-beacon/{stack}/iis"}}
    base_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RUNNER_TEMP": str(tmp_path / "temp"), "FAKE_LOG": str(log),
                "FAKE_MODE": mode, "FAKE_OUTPUTS": json.dumps(deployed), "STACK_WANTED": stack, "HOME": str(tmp_path)}

    script, env = _render(str(fetch["run"]), fetch, values)
    result = subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, env=base_env | env, capture_output=True, text=True, timeout=60)
    calls = log.read_text(encoding="utf-8").splitlines()
    assert calls[0].startswith("login") and (backend in calls[0] if backend else calls[0].split() == ["login", "--non-interactive"])
    if fails:
        assert result.returncode != 0, result.stdout + result.stderr
        if mode == "login-fails":
            assert not any("stack output" in c for c in calls)
        return
    assert result.returncode == 0, result.stderr
    assert calls[1].split()[-2:] == ["--stack", stack] and "--json" in calls[1].split()

    script, env = _render(str(guard["run"]), guard, values)
    script = script.replace(".venv/bin/python", shlex.quote(sys.executable), 1) + " --dry-run"  # readiness is not run
    result = subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, env=base_env | env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    stack_file_says = "observe" if stack == "pilot" else "require"  # dev and prod keep the default
    assert stack_file_says in result.stdout
    if mode == "new":
        assert f"stack {stack} has never been deployed" in result.stdout and ("allowed" in result.stdout or stack == "pilot")
    elif stack == "pilot":  # observe (deployed) -> observe (file): nothing to guard, nothing run
        assert "enforcement observe (deployed) -> observe" in result.stdout and "nothing to guard" in result.stdout
    else:
        assert "enforcement observe (deployed) -> require" in result.stdout
        assert "--min-ready 100" in result.stdout
        assert ("--record" in result.stdout) is (workflow == "deploy.yml")
