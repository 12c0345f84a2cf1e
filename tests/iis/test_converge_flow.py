"""The converge script's safety rules on its syntax tree (tests/iis/converge_flow.py), each with
mutations of the real script that the checker must catch: a commented-out line is not code."""

from __future__ import annotations

import pytest

import converge_flow as flow
from conftest import ROOT

CONVERGE = ROOT / "components" / "iis" / "windows" / "Set-BeaconMtls.ps1"
CHECKERS = {
    "report_only": flow.report_only_problems,
    "reboot": flow.reboot_problems,
    "fallback": flow.fallback_problems,
    "lockdown_skip": flow.lockdown_skip_problems,
}


@pytest.fixture(scope="module")
def script() -> str:
    return CONVERGE.read_text(encoding="utf-8")


@pytest.mark.parametrize("checker", sorted(CHECKERS))
def test_the_script_keeps_the_rule(script: str, checker: str) -> None:
    assert CHECKERS[checker](script) == []


def _mutate(script: str, old: str, new: str) -> str:
    assert script.count(old) == 1, f"the mutation's anchor is not unique in the script: {old!r}"
    return script.replace(old, new)


ACCOUNT_STEP = "catch { Add-Problem \"mapped account $($state.mappedAccount.name): $($_.Exception.Message) (the mappings were left as they are; the sections were still converged)\" }"
WANTED = "                $wantedMany = @(Get-WantedManyToOne -UserName $mapped.userName)  # refuses duplicate names before anything changes\n"

MUTATIONS = [
    # -ReportOnly changes nothing
    ("report_only", "comment out Invoke-Converge's report-only return",
     "    if ($reportOnlyMode) { return }\n    try { $null = & $Fix }", "    # if ($reportOnlyMode) { return }\n    try { $null = & $Fix }"),
    ("report_only", "comment out Invoke-ConvergeAll's report-only return",
     "    if ($reportOnlyMode -or $What.Count -eq 0) { return }", "    # if ($reportOnlyMode -or $What.Count -eq 0) { return }"),
    ("report_only", "weaken Invoke-ConvergeAll's return to empty change sets only",
     "    if ($reportOnlyMode -or $What.Count -eq 0) { return }", "    if ($What.Count -eq 0) { return }"),
    ("report_only", "the report-only return after the fix",
     "    if ($reportOnlyMode) { return }\n    try { $null = & $Fix }\n", "    try { $null = & $Fix }\n    if ($reportOnlyMode) { return }\n"),
    ("report_only", "drop the condition of the restart marker's removal",
     "if (-not $reportOnlyMode) { Remove-Item -LiteralPath $rebootMarker -Force }", "Remove-Item -LiteralPath $rebootMarker -Force"),
    ("report_only", "invert that condition",
     "if (-not $reportOnlyMode) { Remove-Item -LiteralPath $rebootMarker -Force }", "if ($reportOnlyMode) { Remove-Item -LiteralPath $rebootMarker -Force }"),
    ("report_only", "an -or in that condition",
     "if (-not $reportOnlyMode) { Remove-Item -LiteralPath $rebootMarker -Force }", "if (-not $reportOnlyMode -or $true) { Remove-Item -LiteralPath $rebootMarker -Force }"),
    ("report_only", "comment out the fallback writer's report-only return",
     "    if ($reportOnlyMode) { return 0 }\n    $fallback = Open-ServerManager", "    # if ($reportOnlyMode) { return 0 }\n    $fallback = Open-ServerManager"),
    ("report_only", "a registry write outside Invoke-Converge",
     "function Sync-Schannel {\n", "function Sync-Schannel {\n    $null = New-ItemProperty -Path $schannelKey -Name 'X' -PropertyType DWord -Value 1 -Force\n"),
    # restarts
    ("reboot", "comment out the SCHANNEL Register-Reboot",
     "                Register-Reboot -Reason \"SCHANNEL $name", "                # Register-Reboot -Reason \"SCHANNEL $name"),
    ("reboot", "the SCHANNEL Register-Reboot after the write",
     "                Register-Reboot -Reason \"SCHANNEL $name set to $($wanted[$name]) (was '$current')\"\n                $null = New-ItemProperty -Path $schannelKey -Name $name -PropertyType DWord -Value $wanted[$name] -Force\n",
     "                $null = New-ItemProperty -Path $schannelKey -Name $name -PropertyType DWord -Value $wanted[$name] -Force\n                Register-Reboot -Reason \"SCHANNEL $name set to $($wanted[$name]) (was '$current')\"\n"),
    ("reboot", "drop the role services' restart",
     "            if (\"$($result.RestartNeeded)\" -eq 'Yes') { Register-Reboot -Reason \"Install-WindowsFeature", "            if (\"$($result.RestartNeeded)\" -eq 'Yes') { Write-Log -Message \"Install-WindowsFeature"),
    ("reboot", "drop the installer's 3010",
     "elseif ($code -eq 3010) { Register-Reboot -Reason", "elseif ($code -eq 3010) { Write-Log -Message"),
    # the fallback after a failed commit
    ("fallback", "invert the fallback condition",
     "            if ($mappingItems.Count -eq 0) { throw }", "            if ($mappingItems.Count -ne 0) { throw }"),
    ("fallback", "comment out the fallback condition (always falls back: no rethrow untouched)",
     "            if ($mappingItems.Count -eq 0) { throw }", "            # if ($mappingItems.Count -eq 0) { throw }"),
    ("fallback", "comment out the fallback writer",
     "            $kept = Write-LockdownFallback -Settings $settings\n            throw \"the mappings and section settings were not committed",
     "            # $kept = Write-LockdownFallback -Settings $settings\n            throw \"the mappings and section settings were not committed"),
    ("fallback", "the mapping items taken from nothing",
     "$mappingItems = @($items | Where-Object { $_ -match '^(many|one)-to-one mappings' })", "$mappingItems = @()"),
    # nothing skips the lock-down writer
    ("lockdown_skip", "an early return after the account step",
     ACCOUNT_STEP + "\n", ACCOUNT_STEP + "\n        if ($null -eq $mapped) { return }\n"),
    ("lockdown_skip", "an exit after the account step",
     ACCOUNT_STEP + "\n", ACCOUNT_STEP + "\n        exit 1\n"),
    ("lockdown_skip", "a throw after the account step",
     ACCOUNT_STEP + "\n", ACCOUNT_STEP + "\n        if ($null -eq $mapped) { throw 'no account' }\n"),
    ("lockdown_skip", "the wanted mappings built outside the try again",
     "        if ($null -ne $mapped -and $null -ne $currentMany) {\n            try {\n" + WANTED,
     "        if ($null -ne $mapped -and $null -ne $currentMany) {\n" + WANTED.replace("                ", "            ", 1) + "            try {\n"),
    ("lockdown_skip", "the current mappings read without their try",
     "        try { $currentMany = @(Read-ManyToOne -Section $section) }\n        catch {", "        $currentMany = @(Read-ManyToOne -Section $section)\n        if ($false) {"),
    ("lockdown_skip", "the mapping build's catch rethrows before the fallback",
     "                if ($reportOnlyMode) { throw }\n                $kept = Write-LockdownFallback", "                throw\n                $kept = Write-LockdownFallback"),
]


@pytest.mark.parametrize("checker,what,old,new", MUTATIONS, ids=[f"{m[0]}: {m[1]}" for m in MUTATIONS])
def test_the_checker_catches_the_mutation(script: str, checker: str, what: str, old: str, new: str) -> None:
    mutated = _mutate(script, old, new)
    assert CHECKERS[checker](mutated), f"{checker} did not notice: {what}"


def test_every_rule_has_mutations() -> None:
    assert {m[0] for m in MUTATIONS} == set(CHECKERS)


def test_comments_are_not_code() -> None:
    """The same guard, present only as a comment, is no guard (what a text check would accept)."""
    text = "function Invoke-Converge {\n    param([string]$What, [scriptblock]$Fix)\n    # if ($reportOnlyMode) { return }\n    try { $null = & $Fix } catch { throw }\n}\n" \
           "function Invoke-ConvergeAll {\n    param([string[]]$What, [scriptblock]$Fix)\n    if ($reportOnlyMode -or $What.Count -eq 0) { return }\n    $null = & $Fix\n}\n"
    assert flow.report_only_problems(text) == ["Invoke-Converge: no report-only return before & $Fix"]
