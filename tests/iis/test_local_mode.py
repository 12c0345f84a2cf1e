"""The converge script's local mode (-Local, issue 25), on its syntax tree: no AWS call is reachable
with -Local, and without it the EC2 path reaches the same AWS calls as before.

`local_problems`: every AWS call (the AWS Tools cmdlets, and the script's own wrappers
Get-SecretValue and Send-Report, whose call sites are held to the rule themselves) sits where
-Local cannot be: in the then-branch of `if (-not $localMode ...)`, in the else-branch of
`if ($localMode)`, after an earlier `if ($localMode) { ...; return|throw }` of its function, or
in a function whose every call site is so guarded; a wrapper's cmdlets by the wrapper's own
early return or throw.
`ec2_problems`: the local guards leave the EC2 path as it was: a positive guard is `$localMode`
alone (an `-or` would also skip the call on EC2), `$localMode` is assigned once, from -Local,
and the AWS calls are exactly the expected ones (a new one is added here on purpose, guarded).
Both run on the real script and on mutated copies, which must fail; comments are not code.
"""

from __future__ import annotations

import pytest
from tree_sitter import Node, Tree

import converge_flow as flow
import ps_lint
from conftest import ROOT

CONVERGE = ROOT / "components" / "iis" / "windows" / "Set-BeaconMtls.ps1"
AWS_CMDLETS = {"get-secsecretvalue", "read-s3object", "new-cwllogstream", "write-cwllogevent", "get-ec2instancemetadata"}
AWS_WRAPPERS = {"get-secretvalue", "send-report"}
# (function, AWS call) -> how many: the calls the EC2 path makes (top level: None).
EXPECTED_CALLS = {
    ("get-secretvalue", "get-secsecretvalue"): 1,
    ("get-mappedaccount", "get-secretvalue"): 1,
    ("sync-servercertificate", "get-secretvalue"): 2,
    ("sync-beaconinstaller", "read-s3object"): 1,
    ("sync-beaconregistration", "get-ec2instancemetadata"): 1,
    ("sync-beaconregistration", "get-secretvalue"): 1,
    ("send-report", "new-cwllogstream"): 1,
    ("send-report", "write-cwllogevent"): 1,
    (None, "send-report"): 1,
}
LOCAL = "$localMode"


def positive(condition: str) -> bool:
    """True whenever -Local is given: `$localMode`, or `$localMode -or ...`."""
    return condition == LOCAL or condition.startswith(LOCAL + " -or ")


def negative(condition: str) -> bool:
    """False whenever -Local is given: `-not $localMode` alone or as an operand of -and."""
    return f"-not {LOCAL}" in [p.strip() for p in condition.split(" -and ")] and " -or " not in condition


def _ends_function(block: Node | None) -> bool:
    """The block's last statement leaves the function (return or throw)."""
    statements = flow._statements(block) if block is not None else []
    return bool(statements) and statements[-1].type == "flow_control_statement" and flow._text(statements[-1]).split(" ")[0].lower() in ("return", "throw")


def _early_exits(function: Node) -> list[Node]:
    """`if (<positive>) { ...; return|throw }` statements of the function's own body (no else)."""
    body = next((c for c in ps_lint.walk(function) if c.type == "script_block_body"), None)
    found = []
    for statement in flow._statements(body) if body is not None else []:
        if statement.type == "if_statement" and LOCAL in flow._condition(statement):
            then, other = flow._branches(statement)
            if positive(flow._condition(statement)) and other is None and _ends_function(then):
                found.append(statement)
    return found


def _local_ifs(node: Node, function: Node | None) -> list[tuple[Node, bool]]:
    """The if statements around `node` (inside its function) whose condition names $localMode,
    each with whether `node` is in its then-branch."""
    found = []
    child, parent = node, node.parent
    while parent is not None and parent != function:
        if parent.type == "if_statement" and LOCAL in flow._condition(parent):
            then, _ = flow._branches(parent)
            found.append((parent, child == then))
        child, parent = parent, parent.parent
    return found


def _guarded_here(node: Node) -> bool:
    function = flow._function_of(node)
    for statement, in_then in _local_ifs(node, function):
        condition = flow._condition(statement)
        if (in_then and negative(condition)) or (not in_then and positive(condition)):
            return True
    return function is not None and any(e.end_byte <= node.start_byte for e in _early_exits(function))


def _guarded(tree: Tree, node: Node, seen: frozenset[str] = frozenset()) -> bool:
    if _guarded_here(node):
        return True
    function = flow._function_of(node)
    if function is None:
        return False
    name = flow._function_name(function)
    if name in seen or name in AWS_WRAPPERS:
        return False  # a wrapper refuses -Local itself (its call sites are held to the rule too)
    sites = flow._call_sites(tree, name)
    return bool(sites) and all(_guarded(tree, site, seen | {name}) for site in sites)


def aws_calls(tree: Tree) -> list[tuple[str | None, str, Node]]:
    """(function or None, AWS command, node) for every AWS cmdlet and wrapper call."""
    found = []
    for command in ps_lint.commands(tree):
        name = (command.name or "").lower()
        if command.node is not None and name in AWS_CMDLETS | AWS_WRAPPERS:
            function = flow._function_of(command.node)
            found.append((flow._function_name(function) if function is not None else None, name, command.node))
    return found


def local_problems(text: str) -> list[str]:
    tree = ps_lint.parse(text)
    problems = [str(d) for d in ps_lint.defects(tree)]
    for function, name, node in aws_calls(tree):
        if not _guarded(tree, node):
            problems.append(f"line {node.start_point[0] + 1}: {name} in {function or 'the top level'} can run with -Local")
    return problems


def ec2_problems(text: str) -> list[str]:
    tree = ps_lint.parse(text)
    problems = []
    counts: dict[tuple[str | None, str], int] = {}
    for function, name, node in aws_calls(tree):
        counts[(function, name)] = counts.get((function, name), 0) + 1
        for statement, in_then in _local_ifs(node, flow._function_of(node)):
            condition = flow._condition(statement)
            if not in_then and condition != LOCAL:
                problems.append(f"line {node.start_point[0] + 1}: {name} is in the else of `if ({condition})`: on EC2 it runs only when the rest is false")
    for function_node in ps_lint.function_nodes(tree).values():
        for statement in ps_lint.walk(function_node):
            if statement.type == "if_statement" and positive(flow._condition(statement)) and flow._condition(statement) != LOCAL:
                problems.append(f"line {statement.start_point[0] + 1}: `if ({flow._condition(statement)})` also decides on EC2: a local guard is $localMode alone")
    if counts != EXPECTED_CALLS:
        problems.append(f"AWS calls {sorted(counts.items(), key=str)} differ from the EC2 path's {sorted(EXPECTED_CALLS.items(), key=str)}")
    assignments = [flow._text(n) for n in ps_lint.walk(tree.root_node) if n.type == "assignment_expression" and flow._text(n).startswith(LOCAL + " ")]
    if assignments != [f"{LOCAL} = [bool]$Local"]:
        problems.append(f"$localMode must be assigned once, from -Local: {assignments}")
    return problems


CHECKERS = {"local": local_problems, "ec2": ec2_problems}


@pytest.fixture(scope="module")
def script() -> str:
    return CONVERGE.read_text(encoding="utf-8")


@pytest.mark.parametrize("checker", sorted(CHECKERS))
def test_the_script_keeps_the_rule(script: str, checker: str) -> None:
    assert CHECKERS[checker](script) == []


def test_the_rule_is_not_vacuous(script: str) -> None:
    """Every AWS call the EC2 path makes is found, and each is guarded in a different way."""
    tree = ps_lint.parse(script)
    calls = aws_calls(tree)
    assert sum(EXPECTED_CALLS.values()) == len(calls) == 10
    here = {name: _guarded_here(node) for _, name, node in calls if name in AWS_CMDLETS}
    assert here == dict.fromkeys(AWS_CMDLETS, True)  # each in its function: an early return or throw
    # The call sites of the wrappers each by their own branch, not only through the wrapper.
    sites = [node for function, name, node in calls if name in AWS_WRAPPERS]
    assert len(sites) == 5 and all(_guarded_here(node) for node in sites)


def _mutate(script: str, old: str, new: str) -> str:
    assert script.count(old) == 1, f"the mutation's anchor is not unique in the script: {old!r}"
    return script.replace(old, new)


INSTALLER_SKIP = "    if ($localMode) { [void]$report.warnings.Add(\"-Local: the beacon installer"
REGISTRATION_SKIP = "    if ($localMode) { [void]$report.warnings.Add('-Local: no beacon configuration file"
PFX_BRANCH = "    if ($localMode) {\n        $pfxBytes = [IO.File]::ReadAllBytes($PfxPath)"

MUTATIONS = [
    ("local", "comment out the installer's local skip", INSTALLER_SKIP, "    # if ($localMode) { [void]$report.warnings.Add(\"-Local: the beacon installer"),
    ("local", "invert the registration's local skip", REGISTRATION_SKIP, "    if (-not $localMode) { [void]$report.warnings.Add('-Local: no beacon configuration file"),
    ("local", "the report sent to CloudWatch Logs with -Local", "if ($LogGroupName -and -not $localMode) {", "if ($LogGroupName) {"),
    ("local", "an -or in the CloudWatch guard", "if ($LogGroupName -and -not $localMode) {", "if ($LogGroupName -and -not $localMode -or $env:CI) {"),
    ("local", "the PFX branches swapped", PFX_BRANCH, "    if (-not $localMode) {\n        $pfxBytes = [IO.File]::ReadAllBytes($PfxPath)"),
    ("local", "the domain password read from Secrets Manager whatever the mode",
     "        else { $secret = Get-SecretValue -SecretId $account.passwordSecretArn }", "        $secret = Get-SecretValue -SecretId $account.passwordSecretArn"),
    ("local", "a new AWS call outside any guard",
     "function Sync-Schannel {\n", "function Sync-Schannel {\n    $null = Get-EC2InstanceMetadata -Category 'InstanceId'\n"),
    ("local", "Get-SecretValue's own guard commented out (its call sites hold, its body would not)",
     "    if ($localMode) { throw \"-Local: secret $SecretId is not read (no AWS call)\" }", "    # if ($localMode) { throw \"-Local: secret $SecretId is not read (no AWS call)\" }"),
    ("ec2", "the installer skipped on EC2 too when a condition holds", INSTALLER_SKIP,
     "    if ($localMode -or $installer.sha256) { [void]$report.warnings.Add(\"-Local: the beacon installer"),
    ("ec2", "local mode switched on by something else", "$localMode = [bool]$Local\n", "$localMode = [bool]$Local\nif ($env:CI) { $localMode = $true }\n"),
    ("ec2", "an AWS call dropped from the EC2 path",
     "        $pfxSecret = Get-SecretValue -SecretId $server.pfxSecretArn\n", "        $pfxSecret = $null\n"),
    ("ec2", "the Secrets Manager branch in the else of a wider local guard", PFX_BRANCH,
     "    if ($localMode -or $PfxPath) {\n        $pfxBytes = [IO.File]::ReadAllBytes($PfxPath)"),
    ("local", "Send-Report's own guard dropped", "    param([string]$Json, [string]$Group)\n    if ($localMode) { return }\n", "    param([string]$Json, [string]$Group)\n"),
]


@pytest.mark.parametrize("checker,what,old,new", MUTATIONS, ids=[f"{m[0]}: {m[1]}" for m in MUTATIONS])
def test_the_checker_catches_the_mutation(script: str, checker: str, what: str, old: str, new: str) -> None:
    mutated = _mutate(script, old, new)
    assert CHECKERS[checker](mutated), f"{checker} did not notice: {what}"


def test_every_rule_has_mutations() -> None:
    assert {m[0] for m in MUTATIONS} == set(CHECKERS)


def test_a_guard_in_a_comment_is_no_guard() -> None:
    text = ("function Get-Thing {\n    # if ($localMode) { return }\n    $null = Read-S3Object -BucketName 'b' -Key 'k' -File 'f'\n}\n"
            "if (Start-Step -Name 'x') { try { Get-Thing; Complete-Step -Name 'x' } catch { Complete-Step -Name 'x' -Failure $_ } }\n")
    assert [p.split(": ", 1)[1] for p in local_problems(text)] == ["read-s3object in get-thing can run with -Local"]
    guarded = text.replace("    # if ($localMode) { return }", "    if ($localMode) { return }")
    assert local_problems(guarded) == []


# --- what -Local does instead, and what stays the same ---------------------------------------------

@pytest.fixture(scope="module")
def functions(script: str):
    return ps_lint.function_nodes(ps_lint.parse(script))


def test_local_reads_the_pfx_and_passwords_from_the_files_given(functions) -> None:
    certificate = ps_lint.node_text(functions["Sync-ServerCertificate"])
    local = certificate[certificate.index(PFX_BRANCH.strip()):certificate.index("} else {")]
    assert "[IO.File]::ReadAllBytes($PfxPath)" in local and "Read-PasswordFile -Path $PfxPasswordPath" in local
    # After the branch the same code imports the PFX as on EC2: one Get-PfxData, one Import-PfxCertificate.
    after = certificate[certificate.index("$password = ConvertTo-SecureString -String $passwordText"):]
    assert after.count("Get-PfxData") == 1 and after.count("Import-PfxCertificate") == 1
    account = ps_lint.node_text(functions["Get-MappedAccount"])
    assert "if ($localMode) { $secret = @{ SecretString = (Read-PasswordFile -Path $AccountPasswordPath" in account
    reader = ps_lint.node_text(functions["Read-PasswordFile"])
    assert 'if (-not $Path) { throw "-Local: give -$Name FILE" }' in reader and ".TrimEnd(\"`r\", \"`n\")" in reader


def test_local_skips_what_only_aws_holds_with_a_warning(functions, script: str) -> None:
    for name in ("Sync-BeaconInstaller", "Sync-BeaconRegistration"):
        exits = _early_exits(functions[name])
        assert len(exits) == 1 and "[void]$report.warnings.Add(" in ps_lint.node_text(exits[0]) and _ends_function(flow._branches(exits[0])[0]), name
    assert "if ($localMode -and $LogGroupName) { [void]$report.warnings.Add(\"-Local: the report is not sent to CloudWatch Logs" in script
    # The file parameters mean nothing on EC2: given without -Local, the run fails before any step.
    assert "if (-not $localMode -and ($PfxPath -or $PfxPasswordPath -or $AccountPasswordPath)) { throw" in script


def test_the_report_file_is_written_whatever_the_outcome(script: str) -> None:
    tree = ps_lint.parse(script)
    writes = [(m, n) for m, n in ps_lint.invoked_methods(tree.root_node) if m == "IO.File::WriteAllText"]
    assert len(writes) == 1 and flow._function_of(writes[0][1]) is None
    # At the end, after the exit code and the report are final, before the report goes to stdout.
    assert script.index("$json = ConvertTo-Json -InputObject $report") < script.index("[IO.File]::WriteAllText($ReportPath, $json)") < script.index("Write-Output $json")
