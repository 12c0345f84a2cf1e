"""What a real deployment needs, and what of it this machine is missing.

    python -m scripts.doctor [--json] [--check-aws] [--stack NAME]

Checks the Pulumi CLI (found, version not older than the pinned SDK), the AWS provider plugin,
AWS credentials (which source; nothing is called unless --check-aws, which then asks STS who
the credentials belong to, with a short timeout), the region (aws:region of each stack file
against AWS_REGION / AWS_DEFAULT_REGION), the Pulumi backend (PULUMI_BACKEND_URL or the
CLI's current login) and its secrets provider, the stack files and the policy pack's virtualenv.

Diagnosis only: it always exits 0, so it never fails the offline commands (`make plan`,
`make test`), which need none of this. Without --check-aws it makes no network call: the
credential chain is walked without the EC2/ECS metadata providers and without running a
credential_process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import yaml

from components.stack_yaml import read_stack_document

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m scripts.doctor"
OK, MISSING, WARNING, INFO = "ok", "missing", "warning", "info"
FALLBACK_MIN_CLI = (3, 0, 0)
CLI_TIMEOUT_S = 15
STS_TIMEOUT_S = 5
# Credential providers that would touch the network (instance/container metadata) or run a
# program (credential_process): skipped unless --check-aws.
ACTIVE_PROVIDERS = ("container-role", "iam-role", "custom-process")


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def _version_tuple(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def pinned(package: str, root: Path = ROOT) -> str | None:
    """The version requirements.txt pins for package, or None."""
    path = root / "requirements.txt"
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        if name.strip().lower() == package and version:
            return version.strip()
    return None


def pulumi_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("PULUMI_HOME") or Path(env.get("HOME") or Path.home()) / ".pulumi")


# --- Pulumi CLI and provider plugin ----------------------------------------------------------------

def check_pulumi_cli(env: Mapping[str, str], root: Path = ROOT,
                     run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Check:
    pin = pinned("pulumi", root)
    minimum = _version_tuple(pin) if pin else None
    minimum = minimum or FALLBACK_MIN_CLI
    fix = (f"install the Pulumi CLI >= {_dotted(minimum)} (https://www.pulumi.com/docs/install/), "
           "e.g. `curl -fsSL https://get.pulumi.com | sh -s -- --version " + _dotted(minimum) + "`")
    path = shutil.which("pulumi", path=env.get("PATH", ""))
    home_binary = pulumi_home(env) / "bin" / "pulumi"
    if path is None and home_binary.is_file() and os.access(home_binary, os.X_OK):
        return Check("pulumi-cli", MISSING, f"not on PATH, but installed at {home_binary}",
                     f"add {home_binary.parent} to PATH", {"path": str(home_binary), "minimum": _dotted(minimum)})
    if path is None:
        return Check("pulumi-cli", MISSING, "the pulumi command is not on PATH", fix, {"minimum": _dotted(minimum)})
    child_env = dict(env, PULUMI_SKIP_UPDATE_CHECK="true")  # no call home for a newer version
    try:
        result = run([path, "version"], capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=child_env)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("pulumi-cli", MISSING, f"{path} does not run: {exc}", fix, {"path": path})
    version = _version_tuple(result.stdout or "")
    data = {"path": path, "version": _dotted(version) if version else None, "minimum": _dotted(minimum)}
    if result.returncode != 0 or version is None:
        output = (result.stdout + result.stderr).strip().splitlines()
        return Check("pulumi-cli", MISSING, f"`{path} version` failed: {output[-1] if output else result.returncode}",
                     fix, data)
    if version < minimum:
        return Check("pulumi-cli", MISSING,
                     f"v{_dotted(version)} at {path} is older than the pinned Python SDK ({_dotted(minimum)})",
                     f"upgrade the Pulumi CLI to >= {_dotted(minimum)}", data)
    return Check("pulumi-cli", OK, f"v{_dotted(version)} at {path} (>= {_dotted(minimum)}, the pinned SDK)", data=data)


def check_aws_plugin(env: Mapping[str, str], root: Path = ROOT) -> Check:
    version = pinned("pulumi-aws", root)
    if not version:
        return Check("aws-plugin", INFO, "requirements.txt pins no pulumi-aws version")
    plugin = pulumi_home(env) / "plugins" / f"resource-aws-v{version}"
    data = {"version": version, "path": str(plugin)}
    if plugin.is_dir():
        return Check("aws-plugin", OK, f"resource-aws v{version} installed ({plugin})", data=data)
    return Check("aws-plugin", INFO, f"resource-aws v{version} not installed yet: the first preview downloads it",
                 f"or now: `pulumi plugin install resource aws v{version}`", data)


# --- AWS credentials and region ----------------------------------------------------------------------

@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ replaced by env for the duration (botocore reads os.environ directly)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _static_hints(env: Mapping[str, str]) -> list[str]:
    hints = []
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        hints.append("container credentials are configured (not fetched without --check-aws)")
    return hints


def check_aws_credentials(env: Mapping[str, str], check_aws: bool = False) -> Check:
    try:
        import botocore.session
    except ImportError:
        return Check("aws-credentials", MISSING, "boto3/botocore is not installed", "make plan (installs requirements.txt)")
    walk_env = dict(env)
    if not check_aws:
        walk_env["AWS_EC2_METADATA_DISABLED"] = "true"
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or None
    fix = ("configure credentials: `aws configure sso` / `aws sso login`, a profile (AWS_PROFILE), or in CI "
           "an OIDC role (.github/workflows, docs/review.md); never long-lived keys in the repository")
    try:
        with _environ(walk_env):
            session = botocore.session.Session(profile=profile)
            resolver = session.get_component("credential_provider")
            skipped = []
            if not check_aws:
                for method in ACTIVE_PROVIDERS:
                    if resolver.get_provider(method) is not None:
                        resolver.remove(method)
                        skipped.append(method)
            credentials = resolver.load_credentials()
            region = session.get_config_variable("region")
    except Exception as exc:  # noqa: BLE001 - a broken profile is a finding, not a crash
        return Check("aws-credentials", MISSING, f"the credential chain failed: {type(exc).__name__}: {exc}", fix,
                     {"profile": profile})
    data: dict[str, Any] = {"profile": profile, "default_region": region, "source": None}
    if credentials is None:
        hints = _static_hints(env)
        if skipped:
            hints.append("instance/container metadata and credential_process were not tried (use --check-aws)")
        return Check("aws-credentials", MISSING, "no credentials found" + (f"; {'; '.join(hints)}" if hints else ""),
                     fix, data)
    data["source"] = credentials.method
    detail = f"found: {credentials.method}" + (f" (profile {profile})" if profile else "")
    if not check_aws:
        return Check("aws-credentials", OK, detail + "; not verified (run with --check-aws to ask STS)", data=data)
    return _verify_with_sts(detail, data, profile, fix, walk_env)


def _verify_with_sts(detail: str, data: dict[str, Any], profile: str | None, fix: str, env: Mapping[str, str]) -> Check:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=STS_TIMEOUT_S, read_timeout=STS_TIMEOUT_S, retries={"max_attempts": 1})
    try:
        with _environ(env):
            session = boto3.Session(profile_name=profile)
            region = session.region_name or "us-east-1"
            identity = session.client("sts", region_name=region, config=config).get_caller_identity()
    except Exception as exc:  # noqa: BLE001 - expired SSO, no network, denied: all findings
        return Check("aws-credentials", MISSING, f"{detail}; STS refused or unreachable: {type(exc).__name__}: {exc}",
                     fix, data)
    data.update(account=identity.get("Account"), arn=identity.get("Arn"))
    return Check("aws-credentials", OK, f"{detail}; STS: account {identity.get('Account')} as {identity.get('Arn')}",
                 data=data)


def read_stack_files(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    stacks = {}
    for path in sorted((root / "stacks").glob("Pulumi.*.yaml")):
        name = path.name[len("Pulumi."):-len(".yaml")]
        try:
            document = read_stack_document(path) or {}  # no YAML aliases, regular UTF-8 file, size cap
        except (OSError, ValueError) as exc:
            stacks[name] = {"path": str(path.relative_to(root)), "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
            continue
        config = document.get("config") or {} if isinstance(document, dict) else {}
        stacks[name] = {
            "path": str(path.relative_to(root)),
            "region": config.get("aws:region") if isinstance(config, dict) else None,
            "secretsprovider": document.get("secretsprovider") if isinstance(document, dict) else None,
            "encryptionsalt": bool(isinstance(document, dict) and document.get("encryptionsalt")),
        }
    return stacks


def check_stack_files(stacks: Mapping[str, Mapping[str, Any]]) -> Check:
    if not stacks:
        return Check("stack-files", MISSING, "no stacks/Pulumi.<stack>.yaml", "add a stack file (see README)")
    broken = [f"{s['path']}: {s['error']}" for s in stacks.values() if s.get("error")]
    if broken:
        return Check("stack-files", MISSING, "; ".join(broken), "fix the YAML", {"stacks": dict(stacks)})
    listed = ", ".join(f"{name} ({s['path']})" for name, s in stacks.items())
    return Check("stack-files", OK, listed, data={"stacks": dict(stacks)})


def check_region(env: Mapping[str, str], stacks: Mapping[str, Mapping[str, Any]], wanted: list[str]) -> Check:
    env_region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    regions = {name: stacks[name].get("region") for name in wanted if name in stacks}
    data = {"env": env_region or None, "stacks": regions}
    unset = [name for name, region in regions.items() if not region]
    if unset:
        return Check("region", MISSING, f"aws:region not set in stack(s) {', '.join(unset)}",
                     "pulumi config set aws:region <region> --stack <stack>", data)
    described = ", ".join(f"{name}: {region}" for name, region in regions.items())
    differing = sorted({str(r) for r in regions.values() if env_region and r != env_region})
    if differing:
        return Check("region", WARNING,
                     f"{described}; AWS_REGION/AWS_DEFAULT_REGION is {env_region}: the stack file's aws:region "
                     "decides where Pulumi deploys, the environment only the CLI's and scripts' default",
                     "unset AWS_REGION or set it to the stack's region to avoid surprises in scripts.ops", data)
    return Check("region", OK, described + (f" (environment: {env_region})" if env_region else ""), data=data)


# --- Pulumi backend --------------------------------------------------------------------------------

def check_backend(env: Mapping[str, str], stacks: Mapping[str, Mapping[str, Any]]) -> Check:
    url = env.get("PULUMI_BACKEND_URL", "")
    source = "PULUMI_BACKEND_URL"
    credentials_file = pulumi_home(env) / "credentials.json"
    stored: dict[str, Any] = {}
    if credentials_file.is_file():
        try:
            stored = json.loads(credentials_file.read_text(encoding="utf-8")) or {}
        except (ValueError, OSError):
            stored = {}
    if not url:
        url, source = str(stored.get("current") or ""), str(credentials_file)
    data: dict[str, Any] = {"url": url or None, "source": source if url else None}
    if not url:
        return Check("backend", MISSING, "not logged in to any backend (no PULUMI_BACKEND_URL, no current login)",
                     "pulumi login (Pulumi Cloud) or pulumi login s3://<state-bucket>", data)
    if url.startswith(("http://", "https://")):
        token = bool(env.get("PULUMI_ACCESS_TOKEN")) or bool((stored.get("accessTokens") or {}).get(url))
        data["access_token"] = token  # whether one exists, never its value
        if not token:
            return Check("backend", MISSING, f"{url} (from {source}) but no access token",
                         f"pulumi login {url} (or PULUMI_ACCESS_TOKEN; in CI pulumi/auth-actions by OIDC)", data)
        return Check("backend", OK, f"{url} (from {source}), access token present", data=data)
    # Self-managed backend (s3://, file://, ...): secrets need a provider the stack files name or a passphrase.
    passphrase = bool(env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE"))
    providers = {name: s.get("secretsprovider") for name, s in stacks.items()}
    data.update(passphrase=passphrase, secretsproviders=providers)
    without = [name for name, provider in providers.items() if not provider]
    if without and not passphrase:
        return Check("backend", WARNING,
                     f"{url} (from {source}); stack(s) {', '.join(without)} name no secrets provider and no "
                     "PULUMI_CONFIG_PASSPHRASE is set",
                     "pulumi stack init <stack> --secrets-provider awskms://alias/<key> (the deploy role decrypts; "
                     "no passphrase to store)", data)
    return Check("backend", OK, f"{url} (from {source})", data=data)


def check_policy_pack(root: Path = ROOT) -> Check:
    pack = root / "policy"
    if not (pack / "PulumiPolicy.yaml").is_file():
        return Check("policy-pack", MISSING, "policy/PulumiPolicy.yaml is missing", "restore policy/ from git")
    python = pack / "venv" / "bin" / "python"
    if python.exists():
        return Check("policy-pack", OK, f"policy/ with its virtualenv ({python.parent.parent})",
                     data={"venv": str(python.parent.parent)})
    return Check("policy-pack", MISSING, "policy/venv does not exist (`pulumi preview --policy-pack policy` runs the "
                 "pack with it)", "python3 -m venv policy/venv && policy/venv/bin/pip install -r policy/requirements.txt")


def check_stack_config(name: str, root: Path = ROOT, account: str | None = None) -> Check:
    """The stack file through the program's own validation and readiness warnings (offline), and
    what would stop `pulumi up` of a protected stack (secrets of another account only when the
    account is known: --check-aws)."""
    from components.config import ConfigInvalid, stack_file_to_raw
    from components.network.flexera import describe as describe_flexera
    from components.deployability import deploy_blockers, foreign_secrets
    from components.stack import prepare

    path = root / "stacks" / f"Pulumi.{name}.yaml"
    try:
        raw, region, _secret = stack_file_to_raw(read_stack_document(path) or {})
        prepared = prepare(raw, name, region, base=root)
    except ConfigInvalid as invalid:
        return Check(f"config:{name}", MISSING, invalid.render().replace("\n", " "), f"fix {path.relative_to(root)} (make plan STACK={name} lists every problem)")
    except (OSError, yaml.YAMLError, ValueError) as exc:
        return Check(f"config:{name}", MISSING, f"{path.relative_to(root)}: {exc}", "fix the stack file")
    warnings = list(prepared.warnings)
    flexera = describe_flexera(prepared.cfg.flexera_region, prepared.allowlist)
    blockers = deploy_blockers(prepared.cfg, prepared.crl, account)  # account None: no secret judged foreign
    if not prepared.cfg.protection:
        warnings += foreign_secrets(prepared.cfg, account)
    if blockers:
        return Check(f"config:{name}", WARNING, f"{flexera}; pulumi up stops this protected stack ({len(blockers)}): " + " | ".join(blockers),
                     "fix each before pulumi up; preview and make plan still run", {"warnings": warnings, "blockers": blockers, "flexera": flexera})
    if warnings:
        return Check(f"config:{name}", WARNING, f"{flexera}; {len(warnings)} warning(s): " + " | ".join(warnings),
                     "each says what a real beacon would do; fix the config before pulumi up", {"warnings": warnings, "flexera": flexera})
    return Check(f"config:{name}", OK, f"valid, nothing a real beacon could not do; {flexera}", data={"warnings": [], "flexera": flexera})


# --- putting it together ----------------------------------------------------------------------------

def diagnose(env: Mapping[str, str] | None = None, root: Path = ROOT, check_aws: bool = False,
             stack: str | None = None) -> dict[str, Any]:
    env = dict(os.environ if env is None else env)
    stacks = read_stack_files(root)
    wanted = [stack] if stack else sorted(stacks)
    checks = [check_pulumi_cli(env, root), check_aws_plugin(env, root), check_aws_credentials(env, check_aws),
              check_region(env, stacks, wanted), check_backend(env, stacks), check_stack_files(stacks),
              check_policy_pack(root)]
    account = next((c.data.get("account") for c in checks if c.name == "aws-credentials" and c.data), None)
    checks += [check_stack_config(name, root, account) for name in wanted if name in stacks and not stacks[name].get("error")]
    if stack and stack not in stacks:
        checks.append(Check("stack", MISSING, f"no stacks/Pulumi.{stack}.yaml",
                            f"one of: {', '.join(sorted(stacks)) or '(none)'}"))
    missing = [c.name for c in checks if c.status == MISSING]
    return {
        "ready": not missing,
        "missing": missing,
        "checks": [asdict(c) for c in checks],
        "aws_called": check_aws,
        "note": "make plan and make test need none of this; they run offline under Pulumi mocks",
    }


LABELS = {
    "pulumi-cli": "Pulumi CLI", "aws-plugin": "AWS provider plugin", "aws-credentials": "AWS credentials",
    "region": "Region", "backend": "Pulumi backend", "stack-files": "Stack files", "policy-pack": "Policy pack",
    "stack": "Stack",
}


def render(report: Mapping[str, Any]) -> str:
    lines = ["What a real deployment (pulumi preview/up) needs:"]
    for check in report["checks"]:
        lines.append(f"  [{check['status']:^7}] {LABELS.get(check['name'], check['name'])}: {check['detail']}")
    fixes = [c for c in report["checks"] if c["status"] in (MISSING, WARNING) and c["fix"]]
    if report["missing"]:
        lines.append("")
        lines.append("Missing: " + ", ".join(LABELS.get(str(n), str(n)) for n in report["missing"]))
    if fixes:
        lines.append("To do:")
        lines += [f"  - {LABELS.get(c['name'], c['name'])}: {c['fix']}" for c in fixes]
    if report["ready"]:
        lines.append("")
        lines.append("Ready: pulumi preview --policy-pack policy --stack <stack>")
    lines.append(f"({report['note']}.)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--check-aws", action="store_true",
                        help="verify the credentials with STS GetCallerIdentity (the only network call)")
    parser.add_argument("--stack", help="only this stack's region (default: every stack file)")
    args = parser.parse_args(argv)
    try:
        report = diagnose(check_aws=args.check_aws, stack=args.stack)
    except Exception as exc:  # noqa: BLE001 - a diagnosis never fails the caller
        report = {"ready": False, "missing": ["doctor"], "checks": [asdict(Check(
            "doctor", MISSING, f"the doctor itself failed: {type(exc).__name__}: {exc}"))],
            "aws_called": args.check_aws, "note": "make plan and make test need none of this"}
    sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n" if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
