"""The SSM Command document that converges a beacon: static script + desired state as data.

The document is built by a pure function so the plan can write it and the tests can inspect
it. The desired state travels as a base64 string literal (its alphabet cannot end a
single-quoted PowerShell string), and the static converge script is embedded verbatim inside a
script block: no configuration value is ever spliced into PowerShell code.
"""

from __future__ import annotations

import base64
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


def run_command(script: str, state: Mapping[str, Any]) -> list[str]:
    encoded = base64.b64encode(canonical_state(state).encode("ascii")).decode("ascii")
    return [
        "$ErrorActionPreference = 'Stop'",
        f"$stateBase64 = '{encoded}'",
        "$reportOnly = '{{ ReportOnly }}' -eq 'true'",
        "& {",
        *script.splitlines(),
        "} -EncodedState $stateBase64 -ReportOnly:$reportOnly",
        "exit $LASTEXITCODE",
    ]


def command_document(script: str, state: Mapping[str, Any], timeout_seconds: int) -> dict[str, Any]:
    return {
        "schemaVersion": "2.2",
        "description": "flexnet-beacon: converge IIS client-certificate mapping (mTLS) and report drift as JSON",
        "parameters": {
            "ReportOnly": {
                "type": "String",
                "description": "true: change nothing, report drift only",
                "default": "true" if state.get("reportOnly") else "false",
                "allowedValues": ["true", "false"],
            },
            "StateDigest": {
                "type": "String",
                "description": "SHA-256 of the desired state embedded below; the association passes it so that a state change re-runs the association",
                "default": "",
                "allowedPattern": "^[0-9a-f]{0,64}$",
            },
        },
        "mainSteps": [
            {
                "action": "aws:runPowerShellScript",
                "name": "ConvergeBeaconMtls",
                "precondition": {"StringEquals": ["platformType", "Windows"]},
                "inputs": {"timeoutSeconds": str(timeout_seconds), "runCommand": run_command(script, state)},
            }
        ],
    }


def document_content(document: Mapping[str, Any]) -> str:
    text = json.dumps(document, indent=1, sort_keys=False, ensure_ascii=True)
    if len(text.encode("utf-8")) > DOCUMENT_CONTENT_LIMIT:
        raise ValueError(
            f"the SSM document is {len(text.encode())} bytes, over the {DOCUMENT_CONTENT_LIMIT}-byte limit: "
            "fewer CA certificates or one-to-one certificates would fit"
        )
    return text
