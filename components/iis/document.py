"""The SSM Command document that converges a beacon: a small static bootstrap; the converge
script and the desired state are S3 objects named by their SHA-256.

The desired state grows with the certificates (5,000 one-to-one devices are megabytes), and a
Command document holds 64 KB, so neither the script nor the state is embedded. The stack's
private converge bucket holds `converge/script-<sha256>.ps1` and `converge/state-<sha256>.json`;
the document's parameters name the bucket, the region and both digests (their defaults are the
deployed ones, so `ops verify` can send the document with ReportOnly alone). The bootstrap
downloads both objects through the S3 gateway endpoint into a private directory of its own, reads each
once into memory, checks the SHA-256 of those bytes against its parameter (a mismatch stops
before anything runs) and runs exactly those bytes: the script as a script block, the state as
-EncodedState. Every
parameter is constrained by an allowedPattern that admits no quote, so a value SSM substitutes
into the bootstrap's single-quoted strings cannot become code. The instance's inputs never
depend on any of this; a state change changes the objects, the document's defaults and the
association's parameters, and State Manager runs the association again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

WINDOWS_DIR = Path(__file__).resolve().parent / "windows"
CONVERGE_SCRIPT = WINDOWS_DIR / "Set-BeaconMtls.ps1"
USER_DATA = WINDOWS_DIR / "user-data.ps1"
# Service limit for a Command document's content.
DOCUMENT_CONTENT_LIMIT = 64 * 1024
USER_DATA_LIMIT = 16 * 1024


def canonical_state(state: Mapping[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def state_digest(state: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_state(state).encode("ascii")).hexdigest()


def read_user_data() -> str:
    return USER_DATA.read_text(encoding="utf-8")


def read_converge_script() -> str:
    return CONVERGE_SCRIPT.read_text(encoding="utf-8")


def script_digest(script: str) -> str:
    return hashlib.sha256(script.encode("utf-8")).hexdigest()


def state_key(digest: str) -> str:
    return f"{OBJECT_PREFIX}state-{digest}.json"


def script_key(digest: str) -> str:
    return f"{OBJECT_PREFIX}script-{digest}.ps1"


OBJECT_PREFIX = "converge/"
_DIGEST = "^[0-9a-f]{64}$"
# S3 bucket names: lowercase letters, digits, dots and hyphens (no quote can pass).
_BUCKET = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
_REGION = "^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$"

# The bootstrap: static code; {{ Name }} are SSM parameters, each held to a pattern without quotes.
# The state folder is created private (SYSTEM and Administrators, nothing inherited from
# ProgramData) when the bootstrap is first to make it; the bootstrap itself never writes into it
# (the converge script checks and repairs it): the objects go to a new directory of a random name
# under SYSTEM's temp folder, created private, removed once both are in memory. Each object is
# read once into memory, its SHA-256 checked on those bytes, and those same bytes run: a file
# swapped on disk after the check changes nothing.
BOOTSTRAP = (
    "$ErrorActionPreference = 'Stop'",
    "$ProgressPreference = 'SilentlyContinue'",
    "$bucket = '{{ StateBucket }}'",
    "$region = '{{ StateRegion }}'",
    "$reportOnly = '{{ ReportOnly }}' -eq 'true'",
    "$acl = New-Object -TypeName System.Security.AccessControl.DirectorySecurity",
    "$acl.SetAccessRuleProtection($true, $false)",
    "foreach ($sid in @('S-1-5-18', 'S-1-5-32-544')) {",
    "    $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid",
    "    $acl.AddAccessRule((New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList $identity, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow'))",
    "}",
    "$dir = Join-Path $env:ProgramData 'flexnet-beacon'",
    "if (-not (Test-Path -LiteralPath $dir)) { $null = [IO.Directory]::CreateDirectory($dir, $acl) }",
    "$work = Join-Path ([IO.Path]::GetTempPath()) ('flexnet-beacon-' + [guid]::NewGuid().ToString('N'))",
    "$null = [IO.Directory]::CreateDirectory($work, $acl)",
    "$objects = @(",
    "    @{ Key = 'converge/script-{{ ScriptDigest }}.ps1'; Digest = '{{ ScriptDigest }}'; File = (Join-Path $work 'Set-BeaconMtls.ps1'); Bytes = $null },",
    "    @{ Key = 'converge/state-{{ StateDigest }}.json'; Digest = '{{ StateDigest }}'; File = (Join-Path $work 'state.json'); Bytes = $null }",
    ")",
    "foreach ($object in $objects) {",
    "    try {",
    "        $null = Read-S3Object -BucketName $bucket -Key $object.Key -File $object.File -Region $region",
    "        $object.Bytes = [IO.File]::ReadAllBytes($object.File)",
    "    } catch {",
    "        [Console]::Error.WriteLine(\"converge bootstrap: cannot read s3://$bucket/$($object.Key) in ${region}: $($_.Exception.Message)\")",
    "        Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue",
    "        exit 1",
    "    }",
    "    $hasher = [Security.Cryptography.SHA256]::Create()",
    "    $actual = -join @($hasher.ComputeHash($object.Bytes) | ForEach-Object { $_.ToString('x2') })",
    "    $hasher.Dispose()",
    "    if ($actual -ne $object.Digest) {",
    "        Remove-Item -LiteralPath $work -Recurse -Force",
    "        [Console]::Error.WriteLine(\"converge bootstrap: s3://$bucket/$($object.Key) has SHA-256 $actual, expected $($object.Digest): nothing was run\")",
    "        exit 1",
    "    }",
    "}",
    "Remove-Item -LiteralPath $work -Recurse -Force",
    "$converge = [scriptblock]::Create([Text.Encoding]::UTF8.GetString($objects[0].Bytes).TrimStart([char]0xFEFF))",
    "& $converge -EncodedState ([Convert]::ToBase64String($objects[1].Bytes)) -ReportOnly:$reportOnly",
    "exit $LASTEXITCODE",
)


def command_document(
    timeout_seconds: int,
    report_only: bool,
    bucket: str,
    region: str,
    state_sha256: str,
    script_sha256: str,
) -> dict[str, Any]:
    """The converge document; the defaults of its parameters are the deployed objects."""

    def parameter(description: str, default: str, pattern: str) -> dict[str, str]:
        return {"type": "String", "description": description, "default": default, "allowedPattern": pattern}

    return {
        "schemaVersion": "2.2",
        "description": "flexnet-beacon: converge IIS client-certificate mapping (mTLS) and report drift as JSON",
        "parameters": {
            "ReportOnly": {
                "type": "String",
                "description": "true: change nothing, report drift only",
                "default": "true" if report_only else "false",
                "allowedValues": ["true", "false"],
            },
            "StateBucket": parameter("the stack's converge bucket (script and desired state objects)", bucket, _BUCKET),
            "StateRegion": parameter("the bucket's region", region, _REGION),
            "StateDigest": parameter("SHA-256 of the desired state object converge/state-<digest>.json", state_sha256, _DIGEST),
            "ScriptDigest": parameter("SHA-256 of the converge script object converge/script-<digest>.ps1", script_sha256, _DIGEST),
        },
        "mainSteps": [
            {
                "action": "aws:runPowerShellScript",
                "name": "ConvergeBeaconMtls",
                "precondition": {"StringEquals": ["platformType", "Windows"]},
                "inputs": {"timeoutSeconds": str(timeout_seconds), "runCommand": list(BOOTSTRAP)},
            }
        ],
    }


def document_content(document: Mapping[str, Any]) -> str:
    text = json.dumps(document, indent=1, sort_keys=False, ensure_ascii=True)
    if len(text.encode("utf-8")) > DOCUMENT_CONTENT_LIMIT:  # static and small: only a code change could do this
        raise ValueError(f"the SSM document is {len(text.encode())} bytes, over the {DOCUMENT_CONTENT_LIMIT}-byte limit")
    return text
