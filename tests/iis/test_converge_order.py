"""The converge script's step order, read from its syntax tree (components/iis/windows/Set-BeaconMtls.ps1).

At the top level every step is one block of exactly this shape:

    if (Start-Step -Name 'lockdown' -Requires 'webAdministration') {
        try { Sync-Lockdown; Complete-Step -Name 'lockdown' } catch { Complete-Step -Name 'lockdown' -Failure $_ }
    }

so a step that throws is recorded (report.steps) and the next steps still run, and a step runs
only when the steps it needs did not fail. The order is fixed: lock-down (mappings, mapping
authentication on, anonymous off, SSL flags) is the first step that writes IIS configuration, and
everything that can fail for outside reasons (Secrets Manager, the PFX, the trust stores, netsh,
the installer) comes after it; the installer is last. Nothing opens 443 (the https binding, the
HTTP.sys record) unless the lock-down succeeded in the same run, and nothing decides from a file
of the state folder before the folder was made private: `dependency_problems` derives both from
what each step reaches, so a new step is held to them too. `step_problems` is the checker; the mutation
tests below prove it fails when two steps are swapped, a try is removed, two steps share one try,
a dependency is dropped or a step is called outside its block.
"""

from __future__ import annotations

import re
from functools import lru_cache

import pytest

import ps_lint
from conftest import ROOT

CONVERGE = ROOT / "components" / "iis" / "windows" / "Set-BeaconMtls.ps1"

# (step name, the function it runs, the steps it needs) in the order the script runs them.
EXPECTED = [
    ("stateFolder", "Initialize-StateFolder", ()),
    ("reboot", "Read-RebootState", ("stateFolder",)),
    ("features", "Sync-Features", ("stateFolder",)),
    ("webAdministration", "Import-IisModule", ()),
    ("lockdown", "Sync-Lockdown", ("webAdministration",)),
    ("requestFiltering", "Sync-RequestFiltering", ("webAdministration",)),
    ("mimeMaps", "Sync-MimeMaps", ("webAdministration",)),
    ("logging", "Sync-Logging", ("webAdministration",)),
    ("serverCertificate", "Sync-ServerCertificate", ()),
    ("trustStores", "Sync-TrustStores", ()),
    ("schannel", "Sync-Schannel", ("stateFolder",)),
    ("rootStore", "Test-RootStore", ()),
    ("beaconInstaller", "Sync-BeaconInstaller", ("lockdown", "stateFolder")),
    ("lockdownAfterInstaller", "Sync-Lockdown", ("lockdown",)),
    ("siteBinding", "Sync-SiteBinding", ("lockdown", "lockdownAfterInstaller?", "serverCertificate", "stateFolder")),
    ("httpSys", "Sync-HttpSys", ("lockdown", "lockdownAfterInstaller?", "serverCertificate")),
    ("crl", "Test-CrlReachability", ()),
    ("beaconRegistration", "Sync-BeaconRegistration", ("stateFolder",)),
]
# Commands that depend on something outside the instance or change HTTP.sys / certificates / IIS.
OUTSIDE_OR_RISKY = {"get-secsecretvalue", "read-s3object", "import-pfxcertificate", "netsh.exe", "start-process", "invoke-webrequest"}
IIS_WRITES = {"set-webconfigurationproperty", "add-webconfigurationproperty", "remove-webconfigurationproperty", "new-webbinding"}
# What opens 443 to the internet: the https binding and the HTTP.sys record (and IIS's own view of it).
# netsh writes go through Invoke-Netsh; any other netsh call only reads (checked below).
OPENS_443 = {"new-webbinding", "invoke-netsh"}
OPENS_443_METHODS = {".addsslcertificate"}
# What reads or writes a file of the state folder that decides something (restarts, the account
# record, the installer): such a step needs the folder to have been made private first.
STATE_FILES = {"read-rebootmarker", "write-rebootmarker", "register-reboot", "read-reboothistory"}
# Functions that are machinery, not steps, and may be called at the top level.
MACHINERY = {"start-step", "complete-step", "write-log", "read-desiredstate", "request-reboot", "send-report"}


def _name_of(command) -> str:
    values = ps_lint.argument_after(command, "Name")
    return values[0] if values else ""


def steps_of(text: str) -> tuple[list[tuple[str, str, tuple[str, ...]]], list[str]]:
    """The top-level step blocks as (name, function, requires), and every deviation from the shape."""
    steps, problems = _steps_of(text)
    return list(steps), list(problems)


@lru_cache(maxsize=16)
def _steps_of(text: str) -> tuple[tuple[tuple[str, str, tuple[str, ...]], ...], tuple[str, ...]]:
    tree = ps_lint.parse(text)
    problems = [str(d) for d in ps_lint.defects(tree)]
    defined = {name.lower() for name in ps_lint.function_nodes(tree)}
    steps: list[tuple[str, str, tuple[str, ...]]] = []
    inside_blocks: set[int] = set()
    for command in ps_lint.commands(tree):
        if command.name != "Start-Step" or ps_lint.enclosing(command.node, ("function_statement",)) is not None:
            continue
        name = _name_of(command.node)
        requires = tuple(ps_lint.argument_after(command.node, "Requires"))
        block = ps_lint.enclosing(command.node, ("if_statement",))
        if block is None:
            problems.append(f"step {name}: Start-Step is not the condition of an if")
            continue
        bodies = [c for c in block.children if c.type == "statement_block"]
        statements = [c for c in bodies[0].children if c.type == "statement_list"] if bodies else []
        tries = [c for c in statements[0].children if c.is_named] if statements else []
        if len(tries) != 1 or tries[0].type != "try_statement":
            problems.append(f"step {name}: its block is not exactly one try/catch")
            continue
        try_node = tries[0]
        try_block = [c for c in try_node.children if c.type == "statement_block"][0]
        called = [n for n in ps_lint.walk(try_block) if n.type == "command"]
        functions = [c for c in called if (ps_lint._command_name(c) or "").lower() in defined - MACHINERY]
        completes = [c for c in called if ps_lint._command_name(c) == "Complete-Step"]
        if len(functions) != 1:
            problems.append(f"step {name}: its try runs {len(functions)} step functions, not one: "
                            f"{[ps_lint._command_name(c) for c in functions]}")
            continue
        if len(completes) != 1 or _name_of(completes[0]) != name or ps_lint.argument_after(completes[0], "Failure"):
            problems.append(f"step {name}: the try does not end with Complete-Step -Name '{name}'")
        catches = [n for n in ps_lint.walk(try_node) if n.type == "catch_clause"]
        handled = [c for c in (ps_lint.walk(catches[0]) if len(catches) == 1 else []) if c.type == "command"
                   and ps_lint._command_name(c) == "Complete-Step" and _name_of(c) == name
                   and ps_lint.argument_after(c, "Failure") == ["$_"]]
        if len(catches) != 1 or len(handled) != 1:
            problems.append(f"step {name}: no catch that records Complete-Step -Name '{name}' -Failure $_")
        inside_blocks.add(functions[0].start_byte)
        steps.append((name, ps_lint._command_name(functions[0]) or "", requires))
    # No step function may run at the top level outside such a block.
    for command in ps_lint.commands(tree):
        if (command.name and command.name.lower() in defined - MACHINERY and command.node.start_byte not in inside_blocks
                and ps_lint.enclosing(command.node, ("function_statement",)) is None):
            problems.append(f"line {command.line}: {command.name} runs at the top level outside a step block")
    return tuple(steps), tuple(problems)


def step_problems(text: str) -> list[str]:
    steps, problems = steps_of(text)
    if steps != EXPECTED:
        problems.append(f"steps, in order: {steps}\nexpected: {EXPECTED}")
    return problems


@pytest.fixture(scope="module")
def converge() -> str:
    return CONVERGE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tree(converge: str):
    return ps_lint.parse(converge)


def test_steps_run_in_order_each_in_its_own_try(converge: str) -> None:
    assert step_problems(converge) == []


def test_lockdown_is_the_first_step_that_writes_iis_and_nothing_outside_comes_before_it(tree) -> None:
    order = [function for _, function, _ in EXPECTED]
    first = order.index("Sync-Lockdown")
    for function in order[:first]:
        reached = ps_lint.reachable_commands(tree, function)
        assert not reached & (OUTSIDE_OR_RISKY | IIS_WRITES), (function, reached & (OUTSIDE_OR_RISKY | IIS_WRITES))
        assert ".commitchanges" not in ps_lint.reachable_methods(tree, function), function
    assert ".commitchanges" in ps_lint.reachable_methods(tree, "Sync-Lockdown")
    # What lock-down must not wait for comes after it: the PFX, trust stores, netsh, the installer.
    later = set().union(*(ps_lint.reachable_commands(tree, f) for f in order[first + 1:]))
    assert {"get-secsecretvalue", "import-pfxcertificate", "netsh.exe", "read-s3object", "start-process"} <= later
    # The installer and the re-check of the lock-down after it come before anything touches 443.
    names = [name for name, _, _ in EXPECTED]
    assert names.index("beaconInstaller") + 1 == names.index("lockdownAfterInstaller") < names.index("siteBinding") < names.index("httpSys")


def opens_443(tree, function: str) -> bool:
    return bool(ps_lint.reachable_commands(tree, function) & OPENS_443 or ps_lint.reachable_methods(tree, function) & OPENS_443_METHODS)


def dependency_problems(text: str) -> list[str]:
    """Derived from what each step does, not from the list above: a step that can open 443 needs
    lockdown; a step that decides from a state-folder file needs stateFolder; lockdown itself
    needs nothing but the IIS module (it must run whatever else failed)."""
    tree = ps_lint.parse(text)
    steps, problems = steps_of(text)
    for name, function, requires in steps:
        if opens_443(tree, function) and "lockdown" not in requires:
            problems.append(f"step {name} can open 443 ({function}) without requiring lockdown")
        if opens_443(tree, function) and "lockdownAfterInstaller?" not in requires:
            problems.append(f"step {name} can open 443 ({function}) without the lock-down's re-check after the installer")
        if opens_443(tree, function) and [n for n, _, _ in steps].index(name) < [n for n, _, _ in steps].index("beaconInstaller"):
            problems.append(f"step {name} can open 443 ({function}) before the installer has run and been undone")
        if ps_lint.reachable_commands(tree, function) & STATE_FILES and "stateFolder" not in requires and function != "Sync-Lockdown":
            problems.append(f"step {name} uses state-folder files without requiring stateFolder")
        if function == "Sync-Lockdown" and name == "lockdown" and set(requires) != {"webAdministration"}:
            problems.append(f"lockdown waits for {requires}: it must run whatever else failed")
    return problems


def test_nothing_opens_443_without_the_lockdown_and_files_need_a_private_folder(converge: str, tree) -> None:
    assert dependency_problems(converge) == []
    # The rule is not vacuous: both 443 steps and the installer do reach what opens or decides.
    assert opens_443(tree, "Sync-SiteBinding") and opens_443(tree, "Sync-HttpSys")
    assert ps_lint.reachable_commands(tree, "Sync-Schannel") & STATE_FILES
    functions = ps_lint.function_nodes(tree)
    for name, node in functions.items():
        for call in [c for c in ps_lint.walk(node) if c.type == "command" and ps_lint._command_name(c) == "netsh.exe"]:
            assert name == "Invoke-Netsh" or "'show'" in ps_lint.node_text(call), f"{name} calls netsh to change something: use Invoke-Netsh"


@pytest.mark.parametrize(
    ("step", "requires", "weakened"),
    [
        ("siteBinding", "-Requires 'lockdown', 'lockdownAfterInstaller?', 'serverCertificate', 'stateFolder'", "-Requires 'lockdownAfterInstaller?', 'serverCertificate', 'stateFolder'"),
        ("httpSys", "-Requires 'lockdown', 'lockdownAfterInstaller?', 'serverCertificate'", "-Requires 'lockdown', 'serverCertificate'"),
        ("schannel", "-Requires 'stateFolder'", ""),
        ("lockdown", "-Requires 'webAdministration'", "-Requires 'webAdministration', 'serverCertificate'"),
    ],
)
def test_dropping_a_443_or_folder_dependency_is_caught(converge: str, step: str, requires: str, weakened: str) -> None:
    line = f"if (Start-Step -Name '{step}' {requires})"
    assert line in converge, line
    mutated = converge.replace(line, f"if (Start-Step -Name '{step}' {weakened})".replace(" )", ")"))
    assert mutated != converge
    assert any(step in p for p in dependency_problems(mutated)), dependency_problems(mutated)
    assert any("steps, in order" in p for p in step_problems(mutated))


def test_a_new_step_that_opens_443_without_the_lockdown_is_caught(converge: str) -> None:
    """A step added later (not in EXPECTED) that reaches netsh is caught by the derived rule alone."""
    extra = ("    if (Start-Step -Name 'extraBinding' -Requires 'serverCertificate') {\n"
             "        try { Sync-HttpSys -Thumbprint $thumbprint; Complete-Step -Name 'extraBinding' } catch { Complete-Step -Name 'extraBinding' -Failure $_ }\n    }\n")
    anchor = "    if (Start-Step -Name 'crl')"
    mutated = converge.replace(anchor, extra + anchor, 1)
    assert any("extraBinding can open 443" in p for p in dependency_problems(mutated))


def test_lockdown_converges_the_sections_even_when_the_account_fails(tree) -> None:
    """Secrets Manager (domain account) or a local account error must not stop anonymous off / sslFlags."""
    lockdown = ps_lint.function_nodes(tree)["Sync-Lockdown"]
    calls = [c for c in ps_lint.walk(lockdown) if c.type == "command" and ps_lint._command_name(c) == "Get-MappedAccount"]
    assert len(calls) == 1
    guard = ps_lint.enclosing(calls[0], ("try_statement", "function_statement"))
    assert guard is not None and guard.type == "try_statement", "Get-MappedAccount must sit in its own try inside Sync-Lockdown"
    assert any(n.type == "catch_clause" for n in ps_lint.walk(guard))
    # The section settings are set after the guarded account, unconditionally (not inside the try
    # nor inside the branch that needs the account), and the commit follows them.
    setters = [c for c in ps_lint.walk(lockdown) if c.type == "command" and ps_lint._command_name(c) == "Set-LockdownSetting"]
    assert len(setters) == 1 and setters[0].start_byte > guard.end_byte
    assert ps_lint.enclosing(setters[0], ("if_statement", "function_statement")).type == "function_statement"
    commit = ps_lint.node_text(lockdown).index("$manager.CommitChanges()")
    assert ps_lint.node_text(lockdown).index("Set-LockdownSetting") < commit


def test_the_http_sys_flags_are_asserted_after_the_iis_binding(tree) -> None:
    """AddSslCertificate (siteBinding) rewrites the HTTP.sys record; httpSys must come after it."""
    names = [name for name, _, _ in EXPECTED]
    assert names.index("siteBinding") < names.index("httpSys")
    assert "addsslcertificate" in ps_lint.node_text(ps_lint.function_nodes(tree)["Sync-SiteBinding"]).lower()


def test_the_lockdown_recheck_runs_after_an_installer_that_ran(converge: str) -> None:
    line = next(l for l in converge.splitlines() if "Start-Step -Name 'lockdownAfterInstaller'" in l)
    assert "@('changed', 'failed') -contains $run.results['beaconInstaller']" in line and "-not $run.restarting" in line


def test_optional_requirements_and_a_restart_in_progress(tree) -> None:
    body = ps_lint.node_text(ps_lint.function_nodes(tree)["Start-Step"])
    assert "if ($optional -and -not $seen) { continue }" in body, "'name?' is needed only when that step ran"
    assert "if ($run.restarting) { $missing +=" in body, "nothing runs once the installer started a restart"


def test_a_skipped_step_says_which_step_it_needed(tree) -> None:
    body = ps_lint.node_text(ps_lint.function_nodes(tree)["Start-Step"])
    assert "@('ok', 'changed', 'drift') -notcontains" in body
    assert "-Status 'skipped' -Message \"not run: it needs" in body
    shape = ps_lint.hashtable_shape(ps_lint.hashtable_literal(tree, "$step"))
    assert list(shape) == ["name", "status", "error"]


# --- the checker fails on a regression: mutations of the real script ------------------------------

def _block(text: str, step: str) -> str:
    match = re.search(r"    if \(Start-Step -Name '" + step + r"'[^\n]*\n        try \{[^\n]*\n    \}\n", text)
    assert match, step
    return match.group(0)


def _swap(text: str, first: str, second: str) -> str:
    a, b = _block(text, first), _block(text, second)
    return text.replace(a, "\0A").replace(b, a).replace("\0A", b)


@pytest.mark.parametrize(
    ("first", "second"),
    [("lockdown", "beaconInstaller"), ("features", "lockdown"), ("siteBinding", "httpSys"), ("serverCertificate", "lockdown"), ("crl", "beaconInstaller")],
)
def test_swapping_two_steps_is_caught(converge: str, first: str, second: str) -> None:
    mutated = _swap(converge, first, second)
    assert mutated != converge
    assert any("steps, in order" in p for p in step_problems(mutated))


def test_removing_a_try_is_caught(converge: str) -> None:
    mutated = converge.replace(
        "try { Sync-Lockdown; Complete-Step -Name 'lockdown' } catch { Complete-Step -Name 'lockdown' -Failure $_ }",
        "Sync-Lockdown; Complete-Step -Name 'lockdown'",
    )
    assert mutated != converge
    assert any("not exactly one try/catch" in p for p in step_problems(mutated))


def test_a_catch_that_does_not_record_the_failure_is_caught(converge: str) -> None:
    mutated = converge.replace("catch { Complete-Step -Name 'trustStores' -Failure $_ }", "catch { Write-Log 'ignored' }")
    assert mutated != converge
    assert any("no catch that records" in p for p in step_problems(mutated))


def test_two_steps_in_one_try_are_caught(converge: str) -> None:
    mutated = converge.replace("try { Sync-TrustStores; Complete-Step", "try { Sync-TrustStores; Sync-Schannel; Complete-Step")
    assert mutated != converge
    assert any("runs 2 step functions" in p for p in step_problems(mutated))


def test_dropping_a_dependency_is_caught(converge: str) -> None:
    mutated = converge.replace("Start-Step -Name 'beaconInstaller' -Requires 'lockdown', 'stateFolder'", "Start-Step -Name 'beaconInstaller' -Requires 'stateFolder'")
    assert mutated != converge
    assert any("steps, in order" in p for p in step_problems(mutated))


def test_a_step_called_outside_its_block_is_caught(converge: str) -> None:
    mutated = converge.replace("$failed = @($report.steps", "Sync-Schannel\n$failed = @($report.steps", 1)
    assert mutated != converge
    assert any("Sync-Schannel runs at the top level outside a step block" in p for p in step_problems(mutated))


def test_the_example_report_lists_the_steps_in_the_scripts_order() -> None:
    import json

    example = json.loads((ROOT / "docs" / "examples" / "converge-report.json").read_text())
    names = [s["name"] for s in example["steps"]]
    # In the script's order; lockdownAfterInstaller runs only after an installer that ran.
    assert names == [name for name, _, _ in EXPECTED if name in names]
    assert set(names) == {name for name, _, _ in EXPECTED} - {"lockdownAfterInstaller"}
    assert {s["status"] for s in example["steps"]} <= {"ok", "changed", "drift", "failed", "skipped"}


def test_every_step_is_described_in_what_a_failed_run_leaves_behind() -> None:
    doc = (ROOT / "docs" / "iis-mtls.md").read_text(encoding="utf-8")
    section = doc[doc.index("## What a failed run leaves behind"):]
    section = section[: section.index("\n## ", 5)]
    for name, _, _ in EXPECTED:
        assert f"`{name}`" in section, name
