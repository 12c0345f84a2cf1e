"""install.ps1 of the device onboarding kits (scripts/pki/windows/install.ps1), read from its syntax tree.

Nothing here runs PowerShell (there is none on this machine). The script is parsed with
tree-sitter-powershell (tests/ps_lint, comments excluded) and held to what kit format 2 promises:

- nothing changes the machine (certificate stores, registry, files) before the verification
  function Test-Kit has returned, and Test-Kit itself changes nothing (`change_order_problems`);
- the verification pins the signer, checks the signature, the size and SHA-256 of every listed
  file, refuses links and unlisted files, and is the only reader of kit files (`verification_problems`);
- Read-Host only in the branch taken when a person is at a console (`prompt_problems`);
- the -PfxPasswordFile is deleted in the main flow's finally block (`password_file_problems`);
- functions that print are only called as statements (`output_problems`);
- superseded certificates and device.pfx go only after the new certificate is in place and checked.

Each checker has mutation tests: the script text is changed the way a regression would change it
and the checker must fail. The data-level tests build a kit exactly as the contract describes it
(and, once `pki bundle` writes format 2, take one from it) and check the script's constants
against it: file names, the 64-byte P1363 signature in 88 characters of base64, the size bounds.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import ps_lint
from scripts.pki import bundle_files as kit

SCRIPT = kit.TEMPLATE
VERIFY = "Test-Kit"
PASSWORD_REMOVAL = "Remove-PasswordFile"
INTERACTIVE_CHECK = "Test-InteractiveUser"
PRINTERS = {"write-output", "write-host", "write-information", "write-step"}

# What changes the machine. Commands: certificate stores, registry (provider), files.
CHANGING_COMMANDS = {
    "import-certificate", "import-pfxcertificate", "export-certificate", "export-pfxcertificate",
    "new-item", "set-item", "remove-item", "rename-item", "move-item", "copy-item", "clear-item",
    "new-itemproperty", "set-itemproperty", "remove-itemproperty", "rename-itemproperty",
    "set-content", "add-content", "clear-content", "out-file", "set-acl",
}
REGISTRY_WRITES = {"setvalue", "createsubkey", "deletevalue", "deletesubkey", "deletesubkeytree"}  # Microsoft.Win32.RegistryKey
STORE_WRITES = {"add", "addrange", "remove", "removerange"}  # on an X509Store: a variable whose name ends in "store"
FILE_WRITES = {"io.file::delete", "io.file::writeallbytes", "io.file::writealltext", "io.file::move", "io.file::copy",
               "io.file::replace", "io.directory::delete", "io.directory::createdirectory", "io.directory::move"}
PERSISTS_A_KEY = "persistkeyset"  # a PFX opened with it leaves its key in the machine's key store
# What reads a kit file: only Test-Kit may (through Read-BoundedFile), and Read-PasswordFile its own file.
FILE_READERS = {"get-content", "get-pfxdata", "import-certificate", "import-pfxcertificate", "get-filehash"}
FILE_READ_METHODS = {"io.file::readallbytes", "io.file::readalltext", "io.file::readalllines", "io.file::open", "io.file::openread"}


@pytest.fixture(scope="module")
def script() -> str:
    return SCRIPT.read_text(encoding="ascii")


# ---------------------------------------------------------------------------------------------
# The syntax tree: changes, calls, statements


def _static_name(call: Any) -> str | None:
    if not any(c.type == "::" for c in call.children):
        return None
    types = [c for c in call.children if c.type == "type_literal"]
    members = [c for c in call.children if c.type == "member_name"]
    if not types or not members:
        return None
    name = ps_lint.node_text(types[0]).strip("[]").lower()
    return (name[len("system."):] if name.startswith("system.") else name) + "::" + ps_lint.node_text(members[0]).lower()


def direct_changes(node: Any) -> list[tuple[str, int]]:
    """What in `node` itself (not in the functions it calls) changes the machine: (what, line)."""
    found: list[tuple[str, int]] = []
    for inner in ps_lint.walk(node):
        line = inner.start_point[0] + 1
        if inner.type == "command":
            name = (ps_lint._command_name(inner) or "").lower()
            if name in CHANGING_COMMANDS:
                found.append((name, line))
        elif inner.type == "invokation_expression":
            members = [c for c in inner.children if c.type == "member_name"]
            if not members:
                continue
            method = ps_lint.node_text(members[0]).lower()
            static = _static_name(inner)
            if static is not None:
                if static in FILE_WRITES:
                    found.append((static, line))
            elif method in REGISTRY_WRITES:
                found.append(("." + method, line))
            elif method in STORE_WRITES and re.search(r"store$", ps_lint.node_text(inner.children[0]), re.I):
                found.append((ps_lint.node_text(inner.children[0]) + "." + method, line))
        elif inner.type in ("string_literal", "expandable_string_literal", "member_name"):
            if PERSISTS_A_KEY in ps_lint.node_text(inner).lower():
                found.append(("PersistKeySet", line))
    return found


def called_functions(node: Any, functions: dict[str, Any]) -> set[str]:
    defined = {name.lower() for name in functions}
    return {name.lower() for name in ps_lint.command_names(node)} & defined


def function_closure(tree: Any, start: str) -> set[str]:
    """`start` and every script function it reaches (lower-case)."""
    functions = ps_lint.function_nodes(tree)
    by_lower = {name.lower(): node for name, node in functions.items()}
    seen: set[str] = set()
    todo = [start.lower()]
    while todo:
        name = todo.pop()
        if name in seen or name not in by_lower:
            continue
        seen.add(name)
        todo += list(called_functions(by_lower[name], functions))
    return seen


def changes_of(tree: Any, node: Any) -> list[tuple[str, int]]:
    """What `node` changes, itself or through the script functions it reaches."""
    functions = ps_lint.function_nodes(tree)
    by_lower = {name.lower(): n for name, n in functions.items()}
    found = list(direct_changes(node))
    for name in called_functions(node, functions):
        for reached in function_closure(tree, name):
            found += [(f"{what} (in {reached})", line) for what, line in direct_changes(by_lower[reached])]
    return found


def top_statements(tree: Any) -> list[Any]:
    lists = [c for c in tree.root_node.children if c.type == "statement_list"]
    return [c for c in lists[0].children if c.type != "comment"] if lists else []


def main_try(tree: Any) -> Any | None:
    tries = [s for s in top_statements(tree) if s.type == "try_statement"]
    return tries[0] if len(tries) == 1 else None


def block_statements(block: Any) -> list[Any]:
    lists = [c for c in block.children if c.type == "statement_list"]
    return [c for c in lists[0].children if c.type != "comment"] if lists else []


def try_parts(node: Any) -> tuple[list[Any], list[Any], list[Any] | None]:
    """(statements of the try block, catch blocks, statements of the finally block or None)."""
    body = next(c for c in node.children if c.type == "statement_block")
    catches = [b for clause in ps_lint.walk(node) if clause.type == "catch_clause" and ps_lint.enclosing(clause, ("try_statement",)) == node
               for b in clause.children if b.type == "statement_block"]
    finals = [c for c in node.children if c.type == "finally_clause"]
    final = block_statements(next(c for c in finals[0].children if c.type == "statement_block")) if finals else None
    return block_statements(body), catches, final


def calls(node: Any, name: str) -> list[Any]:
    return [c for c in ps_lint.walk(node) if c.type == "command" and (ps_lint._command_name(c) or "").lower() == name.lower()]


def guarded_throws(tree: Any, function_names: set[str]) -> list[str]:
    """Conditions (lower-case, spaces collapsed) of the `if` statements, in these functions, whose
    then-branch throws: the checks that stop the script."""
    found = []
    for name, node in ps_lint.function_nodes(tree).items():
        if name.lower() not in function_names:
            continue
        for branch in ps_lint.walk(node):
            if branch.type != "if_statement":
                continue
            condition = next((c for c in branch.children if c.type == "pipeline"), None)
            then = next((c for c in branch.children if c.type == "statement_block"), None)
            if condition is None or then is None:
                continue
            if any(s.type == "flow_control_statement" and ps_lint.node_text(s).lower().startswith("throw") for s in ps_lint.walk(then)):
                found.append(re.sub(r"\s+", " ", ps_lint.node_text(condition).lower()))
    return found


# ---------------------------------------------------------------------------------------------
# The checkers


def change_order_problems(text: str) -> list[str]:
    """Every store/registry/file change is reachable only after Test-Kit returned in the main flow."""
    tree = ps_lint.parse(text)
    functions = {name.lower(): node for name, node in ps_lint.function_nodes(tree).items()}
    if VERIFY.lower() not in functions:
        return [f"no function {VERIFY}"]
    problems = [f"line {line}: {VERIFY} changes the machine: {what}" for what, line in changes_of(tree, functions[VERIFY.lower()])]
    trying = main_try(tree)
    if trying is None:
        return problems + ["the main flow is not one top-level try statement"]
    for statement in top_statements(tree):
        if statement.type != "function_statement" and statement != trying:
            problems += [f"line {line}: top-level code outside the main try changes the machine: {what}" for what, line in changes_of(tree, statement)]
    body, catches, final = try_parts(trying)
    verified = next((i for i, s in enumerate(body) if s.type == "pipeline" and calls(s, VERIFY)), None)
    if verified is None:
        return problems + [f"the main try block does not call {VERIFY} as one of its own statements"]
    for statement in body[:verified]:
        problems += [f"line {line}: changes the machine before {VERIFY} returned: {what}" for what, line in changes_of(tree, statement)]
    for block in catches:
        problems += [f"line {line}: the catch block changes the machine: {what}" for what, line in changes_of(tree, block)]
    for statement in final or []:
        for what, line in changes_of(tree, statement):
            if f"(in {PASSWORD_REMOVAL.lower()})" not in what:
                problems.append(f"line {line}: the finally block changes the machine: {what}")
    removal = functions.get(PASSWORD_REMOVAL.lower())
    if removal is not None:
        for command in calls(removal, "Remove-Item"):
            if ps_lint.argument_after(command, "LiteralPath") != ["$Path"]:
                problems.append(f"line {command.start_point[0] + 1}: {PASSWORD_REMOVAL} deletes something else than its -Path")
        others = [what for what, _ in direct_changes(removal) if what != "remove-item"]
        if others or called_functions(removal, ps_lint.function_nodes(tree)) - {"test-infolder", "write-step"}:
            problems.append(f"{PASSWORD_REMOVAL} does more than delete the password file: {others}")
    return problems


def verification_problems(text: str) -> list[str]:
    """Test-Kit (and what it calls) checks every promise of the contract, each with a throw, and
    is the only reader of kit files."""
    tree = ps_lint.parse(text)
    reached = function_closure(tree, VERIFY)
    conditions = guarded_throws(tree, reached)
    required = {
        "the signer's thumbprint is -SignerThumbprint": lambda c: ".thumbprint -ne $signer" in c,
        "the signature over install.json verifies": lambda c: c.startswith("-not ") and ".verifydata($jsonbytes, $signature," in c,
        "the signature is 64 bytes": lambda c: "$signaturebytes" in c,
        "a reparse point is refused": lambda c: "$info.attributes" in c and "reparsepoint" in c,
        "a file is read up to its bound only": lambda c: "-gt $limit" in c,
        "no file but the listed ones is in the folder": lambda c: c == "-not $allowed.containskey($entry.name)",
        "every file the kit uses is listed": lambda c: c == "-not $listed.containskey($name)",
        "each file has its listed size": lambda c: "$content.length -ne $item.size" in c,
        "each file has its listed SHA-256": lambda c: "$hash -cne $item.sha256" in c,
        "each CA file has its listed thumbprint": lambda c: "$cert.thumbprint -ne $thumbprint" in c,
        "only roots go to Root": lambda c: "$store -eq 'root' -and -not $selfsigned" in c,
        "the device certificate's issuer is in the kit": lambda c: c == "$null -eq $issuer",
        "supersedes never names the new certificate": lambda c: "$thumbprint -eq $devicethumbprint" in c,
        "the schema version is the script's": lambda c: "$kitschemaversion" in c,
    }
    problems = [f"{VERIFY} does not refuse a kit unless {what}" for what, test in required.items() if not any(test(c) for c in conditions)]
    functions = ps_lint.function_nodes(tree)
    kit_test = functions.get(VERIFY)
    if kit_test is not None:
        loops = {re.sub(r"\s+", " ", ps_lint.node_text(next(c for c in n.children if c.type == "pipeline")).lower()): n
                 for n in ps_lint.walk(kit_test) if n.type == "foreach_statement"}
        hashing = loops.get("$listed.values")
        if hashing is None or not {"read-boundedfile", "get-sha256hex"} <= {c.lower() for c in ps_lint.command_names(hashing)}:
            problems.append(f"{VERIFY} does not read and hash every file install.json lists")
        if "$folderinfo.getfilesysteminfos()" not in loops:
            problems.append(f"{VERIFY} does not look at every entry of the kit folder")
        if "get-filekind" not in {c.lower() for c in ps_lint.command_names(kit_test)}:
            problems.append(f"{VERIFY} does not give every listed file a kind")
    kind = functions.get("Get-FileKind")
    exits = [n for n in ps_lint.walk(kind) if n.type == "flow_control_statement"] if kind is not None else []
    unguarded = [n for n in exits if ps_lint.node_text(n).lower().startswith("return") and ps_lint.enclosing(n, ("if_statement",)) is None]
    if not exits or not ps_lint.node_text(exits[-1]).lower().startswith("throw") or unguarded:
        problems.append("Get-FileKind does not refuse a file of no known kind")
    allowed_readers = reached | {"read-passwordfile"}
    for command in ps_lint.commands(tree):
        name = (command.name or "").lower()
        if name in FILE_READERS:
            problems.append(f"line {command.line}: {command.name} reads a file outside {VERIFY}")
        elif name == "read-boundedfile" and command.node is not None:
            owner = ps_lint.enclosing(command.node, ("function_statement",))
            owner_name = ps_lint.node_text(next(c for c in owner.children if c.type == "function_name")) if owner is not None else "the main flow"
            if owner_name.lower() not in allowed_readers:
                problems.append(f"{owner_name} reads a file itself: the later steps use the bytes {VERIFY} checked")
    for method, call in ps_lint.invoked_methods(tree.root_node):
        if _static_name(call) in FILE_READ_METHODS:
            problems.append(f"line {call.start_point[0] + 1}: {method} reads a file outside {VERIFY}")
    return problems


def prompt_problems(text: str) -> list[str]:
    """Read-Host only in the then-branch of `if (Test-InteractiveUser)`, which rules out SYSTEM and
    non-interactive sessions."""
    tree = ps_lint.parse(text)
    problems = []
    for command in calls(tree.root_node, "Read-Host"):
        branch = ps_lint.enclosing(command, ("if_statement",))
        if branch is None:
            problems.append(f"line {command.start_point[0] + 1}: Read-Host outside an if")
            continue
        condition = next((c for c in branch.children if c.type == "pipeline"), None)
        then = next((c for c in branch.children if c.type == "statement_block"), None)
        inside_then = then is not None and then.start_byte <= command.start_byte < then.end_byte
        if condition is None or ps_lint.node_text(condition).strip() != INTERACTIVE_CHECK or not inside_then:
            problems.append(f"line {command.start_point[0] + 1}: Read-Host not in the branch taken only when {INTERACTIVE_CHECK}")
    check = ps_lint.function_nodes(tree).get(INTERACTIVE_CHECK)
    code = _code_only_text(check) if check is not None else ""
    if "[Environment]::UserInteractive" not in code or ".IsSystem" not in code:
        problems.append(f"{INTERACTIVE_CHECK} does not rule out SYSTEM and non-interactive sessions")
    return problems


def password_file_problems(text: str) -> list[str]:
    """The -PfxPasswordFile is deleted in the finally block of the main flow, and only there."""
    tree = ps_lint.parse(text)
    trying = main_try(tree)
    if trying is None:
        return ["the main flow is not one top-level try statement"]
    _, _, final = try_parts(trying)
    problems = []
    in_final = [c for s in (final or []) for c in calls(s, PASSWORD_REMOVAL)]
    if not in_final or ps_lint.argument_after(in_final[0], "Path") != ["$passwordPath"]:
        problems.append(f"the main flow's finally block does not call {PASSWORD_REMOVAL} -Path $passwordPath")
    everywhere = calls(tree.root_node, PASSWORD_REMOVAL)
    if len(everywhere) != len(in_final):
        problems.append(f"{PASSWORD_REMOVAL} is called outside the finally block")
    removal = ps_lint.function_nodes(tree).get(PASSWORD_REMOVAL)
    if removal is None or not calls(removal, "Remove-Item"):
        problems.append(f"{PASSWORD_REMOVAL} does not delete the file")
    assigned = [s for s in ps_lint.walk(tree.root_node) if s.type == "assignment_expression"
                and ps_lint.node_text(s).startswith("$passwordPath =") and "$PfxPasswordFile" in ps_lint.node_text(s)]
    if not assigned:
        problems.append("$passwordPath is not taken from -PfxPasswordFile")
    return problems


def output_problems(text: str) -> list[str]:
    """A function that prints (Write-Step, Write-Output) is only called as a statement: assigned
    from or used in a condition, its lines would become part of a value."""
    tree = ps_lint.parse(text)
    functions = ps_lint.function_nodes(tree)
    direct = {name.lower() for name, node in functions.items() if {c.lower() for c in ps_lint.command_names(node)} & PRINTERS}
    printing = {name.lower() for name in functions if function_closure(tree, name) & direct}
    problems = []
    for command in ps_lint.walk(tree.root_node):
        if command.type != "command" or (ps_lint._command_name(command) or "").lower() not in printing:
            continue
        chain = command.parent
        pipeline = chain.parent if chain is not None else None
        if chain is None or chain.type != "pipeline_chain" or pipeline is None or pipeline.type != "pipeline" or pipeline.parent is None \
                or pipeline.parent.type != "statement_list":
            problems.append(f"line {command.start_point[0] + 1}: {ps_lint._command_name(command)} prints but its output is used as a value")
    return problems


def _code_only_text(node: Any) -> str:
    raw = node.text
    out, last = [], 0
    for inner in sorted((n for n in ps_lint.walk(node) if n.type == "comment"), key=lambda n: n.start_byte):
        out.append(raw[last:inner.start_byte - node.start_byte])
        last = inner.end_byte - node.start_byte
    out.append(raw[last:])
    return b"".join(out).decode()


# ---------------------------------------------------------------------------------------------
# The script as it is


def test_parses_lints_and_calls_only_documented_members(script: str) -> None:
    tree = ps_lint.parse(script)
    assert ps_lint.defects(tree) == []
    assert ps_lint.lint(script) == []
    assert ps_lint.member_problems(script) == []
    assert ps_lint.string_variable_problems(tree) == []
    for command in ps_lint.commands(tree):
        assert command.operator is None, f"line {command.line}: & or . runs something that is not a named command"
        assert not any(p[-1:].isdigit() for p in command.parameters), command.line  # tree-sitter-powershell #59


def test_takes_data_only_and_keeps_the_key_on_the_machine(script: str) -> None:
    code = _code_only_text(ps_lint.parse(script).root_node)
    for banned in ("invoke-expression", "iex ", "add-type", "[scriptblock]::create", "expandstring", "invoke-command", "start-process"):
        assert banned not in code.lower(), banned
    assert "Exportable" not in code  # the flag: the key cannot be exported from the machine again
    imports = [line for line in code.splitlines() if "X509KeyStorageFlags]'" in line]
    assert len(imports) == 1 and "'MachineKeySet, PersistKeySet'" in imports[0]


def test_parameters_and_exit_codes(script: str) -> None:
    tree = ps_lint.parse(script)
    assert ps_lint.script_parameters(tree) == ["SignerThumbprint", "PfxPasswordFile", "PfxPassword", "KeepPfx", "CheckOnly", "ProbeBeacons"]
    block = ps_lint.first_param_block(tree)
    assert block is not None and re.fullmatch(r"\s*<#.*?#>\s*", script[: block.start_byte], re.S)
    exits = sorted(ps_lint.node_text(n) for n in ps_lint.walk(tree.root_node) if n.type == "flow_control_statement" and ps_lint.node_text(n).startswith("exit"))
    assert exits == ["exit 0", "exit 1"]
    header = script[: block.start_byte]
    assert "3010" in header and "never occurs" in header and "Exit codes: 0" in header


def test_nothing_changes_before_the_verification(script: str) -> None:
    assert change_order_problems(script) == []
    tree = ps_lint.parse(script)
    # The checker sees the changes that are there (so an empty answer means something).
    seen = {what for what, _ in changes_of(tree, main_try(tree))}
    for expected in ("$store.add", ".setvalue", ".createsubkey", "remove-item", "PersistKeySet"):
        assert any(what.startswith(expected) for what in seen), (expected, seen)


def test_the_verification_covers_every_promise(script: str) -> None:
    assert verification_problems(script) == []


def test_no_prompt_without_a_person(script: str) -> None:
    assert prompt_problems(script) == []
    assert len(calls(ps_lint.parse(script).root_node, "Read-Host")) == 1


def test_the_password_file_is_deleted_in_finally(script: str) -> None:
    assert password_file_problems(script) == []


def test_printing_functions_are_statements(script: str) -> None:
    assert output_problems(script) == []


def test_renewal_and_pfx_removal_come_after_the_new_certificate_is_checked(script: str) -> None:
    tree = ps_lint.parse(script)
    body, _, _ = try_parts(main_try(tree))

    def first(name: str) -> int:
        return next(i for i, s in enumerate(body) if calls(s, name))

    order = [first(n) for n in (VERIFY, "Test-DevicePfx", "Install-CaCertificates", "Install-DeviceCertificate", "Get-InstalledDeviceProblem")]
    assert order == sorted(order) and len(set(order)) == len(order), order
    for name in ("Remove-SupersededCertificates", "Remove-ConsumedPfx"):
        (call,) = calls(tree.root_node, name)
        branch = ps_lint.enclosing(call, ("if_statement",))
        assert branch is not None and ps_lint.node_text(next(c for c in branch.children if c.type == "pipeline")) == "$null -eq $deviceProblem"
        assert body.index(branch) > first("Get-InstalledDeviceProblem")
    removal = ps_lint.function_nodes(tree)["Remove-SupersededCertificates"]
    text = _code_only_text(removal)
    assert "foreach ($thumbprint in $Kit.supersedes)" in text and "if ($thumbprint -eq $Kit.pfxThumbprint) { continue }" in text
    pfx = _code_only_text(ps_lint.function_nodes(tree)["Remove-ConsumedPfx"])
    assert pfx.index("if ($KeepPfx)") < pfx.index("Remove-Item")


def test_registry_locations_and_preferences(script: str) -> None:
    tree = ps_lint.parse(script)
    code = _code_only_text(tree.root_node)
    assert "$AgentKeyPath = 'SOFTWARE\\ManageSoft Corp\\ManageSoft'" in code and "$CommonKeyName = 'Common'" in code
    # One registry view: the 32-bit one, which is [Registry] on 64-bit and on 32-bit Windows.
    bases = [c for c in ps_lint.walk(tree.root_node) if c.type == "invokation_expression" and _static_name(c) == "microsoft.win32.registrykey::openbasekey"]
    assert len(bases) == 1 and "[Microsoft.Win32.RegistryView]::Registry32" in ps_lint.node_text(bases[0])
    assert "HKLM:" not in code and "Registry64" not in code
    assert "'HKLM\\SOFTWARE\\Wow6432Node\\ManageSoft Corp\\ManageSoft'" in code and "'HKLM\\SOFTWARE\\ManageSoft Corp\\ManageSoft'" in code
    # The preferences: the Windows-relevant ones of the kit's rollout settings, as REG_SZ True.
    table = re.search(r"\$Preferences = \[ordered\]@\{([^}]*)\}", code)
    assert table is not None
    wanted = dict(re.findall(r"(\w+) = '(\w+)'", table.group(1)))
    assert wanted == {"AddClientCertificateAndKey": "True", "CheckServerCertificate": "True", "CheckCertificateRevocation": "True"}
    rollout = {key.removeprefix("MGSFT_HTTPS_") for key, _ in kit.ROLLOUT_SETTINGS}
    assert {name.upper() for name in wanted} == rollout - {"PRIORITIZEREVOCATIONCHECKS"}  # UNIX-like only (Flexera)
    assert kit.PREFERENCE in wanted
    sets = [c for c in ps_lint.walk(tree.root_node) if c.type == "invokation_expression" and ps_lint.node_text(c).split("(")[0].endswith(".SetValue")]
    assert len(sets) == 2 and all("[Microsoft.Win32.RegistryValueKind]::String" in ps_lint.node_text(c) for c in sets)
    components = _code_only_text(ps_lint.function_nodes(tree)["Get-ComponentKeyNames"])
    assert ".GetSubKeyNames()" in components and "'\\CurrentVersion'" in components and "-eq $CommonKeyName" in components


def test_certificates_go_to_local_machine_stores_from_verified_bytes(script: str) -> None:
    tree = ps_lint.parse(script)
    stores = [c for c in ps_lint.walk(tree.root_node) if c.type == "command" and ps_lint._command_name(c) == "New-Object"
              and "X509Store" in ps_lint.node_text(c)]
    assert len(stores) == 1 and "StoreLocation]::LocalMachine" in ps_lint.node_text(stores[0])
    assignment = ps_lint.enclosing(stores[0], ("assignment_expression",))
    assert assignment is not None and re.match(r"\$\w*store\s*=", ps_lint.node_text(assignment), re.I)  # STORE_WRITES sees it
    adds = [c for c in ps_lint.walk(tree.root_node) if c.type == "invokation_expression" and ps_lint.node_text(c).startswith("$store.")]
    assert [ps_lint.node_text(c) for c in adds if ".Add(" in ps_lint.node_text(c)] == ["$store.Add($Certificate)"]
    adders = {name for name, node in ps_lint.function_nodes(tree).items() if calls(node, "Add-StoreCertificate")}
    assert adders == {"Install-CaCertificates", "Install-DeviceCertificate"}


def test_the_docs_scripts_lint() -> None:
    """The PowerShell the install guide hands out (detection script, Group Policy wrapper) uses
    only documented commands and parameters, and the install command lines name real parameters."""
    doc = (SCRIPT.parents[3] / "docs" / "onboarding-install.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```powershell\n(.*?)```", doc, re.S)
    scripts = [textwrap.dedent(b) for b in blocks if "powershell.exe" not in b]
    assert len(scripts) >= 2
    for text in scripts:
        assert not ps_lint.parse(text).root_node.has_error, text
        assert ps_lint.lint(text) == [], text
    parameters = set(ps_lint.script_parameters(ps_lint.parse(SCRIPT.read_text(encoding="ascii"))))
    calls_of_script = re.findall(r"(?:\\install\.ps1|'install\.ps1'\))([^(`>\n]*)", doc)
    named = {p for call in calls_of_script for p in re.findall(r"(?:^| )-(\w+)", call)}
    assert named and named <= parameters, named - parameters


# ---------------------------------------------------------------------------------------------
# Mutation self-tests: each checker fails on the regression it is there to catch


def _move_line_before(text: str, line: str, before: str) -> str:
    assert text.count(line) == 1 and text.count(before) == 1, (line, before)
    without = text.replace(line, "")
    return without.replace(before, line + before)


def _drop_line_with(text: str, fragment: str) -> str:
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if fragment in line]
    assert len(hits) == 1, (fragment, hits)
    del lines[hits[0]]
    return "".join(lines)


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


MUTATIONS: dict[str, tuple[Callable[[str], list[str]], Callable[[str], str], str]] = {
    "an import before the verification": (
        change_order_problems,
        lambda t: _move_line_before(t, "    Install-CaCertificates -Kit $kit\n", "    $kit = Test-Kit "),
        "before Test-Kit returned"),
    "the device import before the verification": (
        change_order_problems,
        lambda t: _move_line_before(t, "    Install-DeviceCertificate -Kit $kit -Password $password\n", "    $kit = Test-Kit "),
        "before Test-Kit returned"),
    "the verification changing a store": (
        change_order_problems,
        lambda t: _replace_once(t, "    $caFiles = @(", "    Add-StoreCertificate -StoreName 'Root' -Certificate $signerCert\n    $caFiles = @("),
        "Test-Kit changes the machine"),
    "the verification inside a condition": (
        change_order_problems,
        lambda t: _replace_once(t, "    $kit = Test-Kit -Folder $kitDir -Signer $signer -PasswordFile $passwordPath\n",
                                "    if ($signer) { $kit = Test-Kit -Folder $kitDir -Signer $signer -PasswordFile $passwordPath }\n"),
        "does not call Test-Kit as one of its own statements"),
    "a registry write at the top level": (
        change_order_problems,
        lambda t: _replace_once(t, "\n$passwordPath = $null\n", "\nSync-AgentPreferences\n$passwordPath = $null\n"),
        "outside the main try"),
    "a deletion in the catch block": (
        change_order_problems,
        lambda t: _replace_once(t, "    Write-Step 'FAIL' $_.Exception.Message\n} finally {", "    Write-Step 'FAIL' $_.Exception.Message\n    Remove-ConsumedPfx -Kit $kit\n} finally {"),
        "the catch block changes"),
    "the password removal deleting another file": (
        change_order_problems,
        lambda t: _replace_once(t, "        Remove-Item -LiteralPath $Path -Force\n", "        Remove-Item -LiteralPath $KitFolder -Force\n"),
        "deletes something else"),
    "no signature check": (
        verification_problems,
        lambda t: _drop_line_with(t, ".VerifyData($jsonBytes"),
        "the signature over install.json verifies"),
    "a signature check that only warns": (
        verification_problems,
        lambda t: _replace_once(t, "{ throw 'install.json.sig does not verify", "{ Write-Warning 'install.json.sig does not verify"),
        "the signature over install.json verifies"),
    "no signer pin": (
        verification_problems,
        lambda t: _drop_line_with(t, "if ($signerCert.Thumbprint -ne $Signer)"),
        "the signer's thumbprint"),
    "no hash comparison": (
        verification_problems,
        lambda t: _drop_line_with(t, "if ($hash -cne $item.sha256)"),
        "listed SHA-256"),
    "unlisted files allowed": (
        verification_problems,
        lambda t: _drop_line_with(t, "if (-not $allowed.ContainsKey($entry.Name))"),
        "no file but the listed ones"),
    "links followed": (
        verification_problems,
        lambda t: _drop_line_with(t, "is a link (reparse point), not a file"),
        "a reparse point is refused"),
    "a CA file not required in files": (
        verification_problems,
        lambda t: _drop_line_with(t, "if (-not $listed.ContainsKey($name))"),
        "every file the kit uses is listed"),
    "unknown file kinds accepted": (
        verification_problems,
        lambda t: _replace_once(t, "    throw \"install.json lists $Name, which is no file", "    return 'other'\n    throw \"install.json lists $Name, which is no file"),
        "Get-FileKind does not refuse"),
    "a kit file read again after the verification": (
        verification_problems,
        lambda t: _replace_once(t, "    $cert = [Security.Cryptography.X509Certificates.X509Certificate2]::new($Kit.pfxBytes, $Password, $flags)",
                                "    $cert = [Security.Cryptography.X509Certificates.X509Certificate2]::new((Read-BoundedFile -Path (Join-Path -Path $Kit.folder -ChildPath $PfxFileName) -Limit $MaxKitFileBytes -What 'x'), $Password, $flags)"),
        "reads a file itself"),
    "the PFX imported by path": (
        verification_problems,
        lambda t: _replace_once(t, "        Add-StoreCertificate -StoreName 'My' -Certificate $cert\n",
                                "        Import-PfxCertificate -FilePath (Join-Path -Path $Kit.folder -ChildPath $PfxFileName) -CertStoreLocation 'Cert:\\LocalMachine\\My' -Password $Password | Out-Null\n"),
        "Import-PfxCertificate reads a file outside"),
    "a prompt outside the interactive branch": (
        prompt_problems,
        lambda t: _replace_once(t, "    if (Test-InteractiveUser) {\n        return Read-Host", "    if ($true) {\n        return Read-Host"),
        "Read-Host not in the branch"),
    "a prompt before the check": (
        prompt_problems,
        lambda t: _replace_once(t, "    if ($PasswordFile) { return Read-PasswordFile -Path $PasswordFile }\n",
                                "    $typed = Read-Host -Prompt 'password' -AsSecureString\n    if ($PasswordFile) { return Read-PasswordFile -Path $PasswordFile }\n"),
        "Read-Host outside an if"),
    "SYSTEM not ruled out": (
        prompt_problems,
        lambda t: _replace_once(t, "    return -not [System.Security.Principal.WindowsIdentity]::GetCurrent().IsSystem\n", "    return $true\n"),
        "does not rule out SYSTEM"),
    "no finally": (
        password_file_problems,
        lambda t: _replace_once(t, "} finally {\n    Remove-PasswordFile -Path $passwordPath -KitFolder $kitDir\n}\n",
                                "}\nRemove-PasswordFile -Path $passwordPath -KitFolder $kitDir\n"),
        "finally block does not call"),
    "the password file removed inside the try": (
        password_file_problems,
        lambda t: _replace_once(t, "    Install-CaCertificates -Kit $kit\n", "    Remove-PasswordFile -Path $passwordPath -KitFolder $kitDir\n    Install-CaCertificates -Kit $kit\n"),
        "called outside the finally block"),
    "a printing function assigned from": (
        output_problems,
        lambda t: _replace_once(t, "    Install-CaCertificates -Kit $kit\n", "    $imported = Install-CaCertificates -Kit $kit\n"),
        "Install-CaCertificates prints"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS), ids=list(MUTATIONS))
def test_each_checker_fails_on_its_regression(script: str, mutation: str) -> None:
    checker, mutate, expected = MUTATIONS[mutation]
    changed = mutate(script)
    assert not ps_lint.parse(changed).root_node.has_error, "the mutation must stay valid PowerShell"
    problems = checker(changed)
    assert any(expected in p for p in problems), problems
    assert checker(script) == []


# ---------------------------------------------------------------------------------------------
# Data level: the script's constants against a kit made as the contract says


def script_constants(text: str) -> dict[str, Any]:
    """The top-level `$Name = literal` assignments of the script: strings, integers, string arrays."""
    found: dict[str, Any] = {}
    for statement in top_statements(ps_lint.parse(text)):
        match = re.fullmatch(r"\$(\w+) = (.+?)\s*(#.*)?", ps_lint.node_text(statement))
        if not match:
            continue
        value = match.group(2)
        if re.fullmatch(r"'(?:[^']|'')*'", value):
            found[match.group(1)] = value[1:-1].replace("''", "'")
        elif re.fullmatch(r"\d+", value):
            found[match.group(1)] = int(value)
        elif value.startswith("@(") and value.endswith(")"):
            found[match.group(1)] = [s.replace("''", "'") for s in re.findall(r"'((?:[^']|'')*)'", value)]
    return found


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp")])


def _certificate(subject: str, key: Any, issuer: tuple[str, Any] | None, *, ca: bool, eku: list[Any] | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    issuer_name, issuer_key = (subject, key) if issuer is None else issuer
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer_name)).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=3650 if ca or eku == [ExtendedKeyUsageOID.CODE_SIGNING] else 365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False), critical=True))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def p1363_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256 / SHA-256 as the contract writes it: r || s, 32 bytes each, big-endian."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - the Windows thumbprint is SHA-1


@pytest.fixture(scope="module")
def contract_kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """windows/ of a kit made exactly as the contract describes it, and the signer thumbprint."""
    folder = tmp_path_factory.mktemp("contract") / "windows"
    folder.mkdir()
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = _certificate("Kit Devices CA kit signer", signer_key, None, ca=False, eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    device_ca_key, server_ca_key, device_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    device_ca = _certificate("Kit Devices CA", device_ca_key, None, ca=True)
    server_ca = _certificate("Kit Beacons CA", server_ca_key, None, ca=True)
    device = _certificate("LAPTOP-0042", device_key, ("Kit Devices CA", device_ca_key), ca=False, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    files = {
        "device.pfx": pkcs12.serialize_key_and_certificates(b"LAPTOP-0042", device_key, device, None, serialization.BestAvailableEncryption(b"kit-password-1")),
        "root-1.cer": device_ca.public_bytes(serialization.Encoding.DER),
        "root-2.cer": server_ca.public_bytes(serialization.Encoding.DER),
        "mgssetup.ini": kit.mgssetup_ini("beacon1.example.test"),
    }
    data = {
        "schemaVersion": 2, "device": "LAPTOP-0042", "stack": "lab",
        "pfx": {"file": "device.pfx", "thumbprint": thumbprint(device), "subject": device.subject.rfc4514_string(),
                "issuer": device.issuer.rfc4514_string(), "notAfter": device.not_valid_after_utc.isoformat()},
        "caCertificates": [{"file": "root-1.cer", "store": "Root", "thumbprint": thumbprint(device_ca), "subject": device_ca.subject.rfc4514_string()},
                           {"file": "root-2.cer", "store": "Root", "thumbprint": thumbprint(server_ca), "subject": server_ca.subject.rfc4514_string()}],
        "beaconUrls": ["https://beacon1.example.test/ManageSoftDL/"],
        "supersedes": ["AB" * 20],
        "files": {name: {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)} for name, content in sorted(files.items())},
    }
    document = (json.dumps(data, indent=2, ensure_ascii=True) + "\n").encode("ascii")
    for name, content in {**files, "install.json": document, "kit-signer.cer": signer.public_bytes(serialization.Encoding.DER),
                          "install.json.sig": base64.b64encode(p1363_signature(signer_key, document)) + b"\n",
                          "install.ps1": SCRIPT.read_bytes()}.items():
        (folder / name).write_bytes(content)
    return folder, thumbprint(signer)


def constant_problems(folder: Path, signer_thumbprint: str, constants: dict[str, Any]) -> list[str]:
    """What in a kit folder the script's constants would refuse (a mirror of Test-Kit's data rules,
    not of its code: the code is held by the syntax-tree checks above)."""
    c = constants
    problems = []
    if not re.fullmatch(c["ThumbprintPattern"], signer_thumbprint):
        problems.append("the signer thumbprint does not match $ThumbprintPattern")
    signer = x509.load_der_x509_certificate((folder / "kit-signer.cer").read_bytes())
    if thumbprint(signer) != signer_thumbprint:
        problems.append("kit-signer.cer is not the signer")
    if (folder / "kit-signer.cer").stat().st_size > c["MaxSignerFileBytes"]:
        problems.append("kit-signer.cer exceeds $MaxSignerFileBytes")
    document = (folder / "install.json").read_bytes()
    if len(document) > c["MaxKitFileBytes"]:
        problems.append("install.json exceeds $MaxKitFileBytes")
    raw = (folder / "install.json.sig").read_bytes()
    if len(raw) > c["MaxSignatureFileBytes"]:
        problems.append("install.json.sig exceeds $MaxSignatureFileBytes")
    text = raw.decode("ascii", "replace").removesuffix("\n").removesuffix("\r")
    if len(text) != c["SignatureTextLength"] or not re.fullmatch(c["SignatureTextPattern"], text):
        problems.append("install.json.sig does not match $SignatureTextPattern / $SignatureTextLength")
    else:
        signature = base64.b64decode(text, validate=True)
        if len(signature) != c["SignatureBytes"]:
            problems.append("the signature is not $SignatureBytes bytes")
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
        key = signer.public_key()
        try:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise InvalidSignature("kit-signer.cer holds no EC key")
            key.verify(der, document, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            problems.append("install.json.sig does not verify")
    data = json.loads(document)
    if data.get("schemaVersion") != c["KitSchemaVersion"]:
        problems.append("schemaVersion is not $KitSchemaVersion")
    ca_files = [entry["file"] for entry in data["caCertificates"]]
    for name, item in data["files"].items():
        if not re.fullmatch(c["SafeFileName"], name) or name in c["UnlistedKitFiles"]:
            problems.append(f"{name}: not a listable file name")
        if not (name == c["PfxFileName"] or name == c["AgentIniFileName"] or (re.fullmatch(c["CaFilePattern"], name) and name in ca_files)):
            problems.append(f"{name}: no kind of file the script knows")
        if not re.fullmatch(c["Sha256Pattern"], item["sha256"]) or not isinstance(item["size"], int) or item["size"] > c["MaxKitFileBytes"]:
            problems.append(f"{name}: sha256 or size out of the script's bounds")
    present = {p.name for p in folder.iterdir()}
    if present - set(data["files"]) - set(c["UnlistedKitFiles"]):
        problems.append(f"files the script would refuse: {sorted(present - set(data['files']) - set(c['UnlistedKitFiles']))}")
    if set(c["UnlistedKitFiles"]) - present:
        problems.append(f"missing: {sorted(set(c['UnlistedKitFiles']) - present)}")
    if data["pfx"]["file"] != c["PfxFileName"]:
        problems.append("pfx.file is not $PfxFileName")
    if "issuer" not in data["pfx"]:
        problems.append("install.json has no pfx.issuer (the contract lists it): the chain check has no issuer")
    elif not any(entry["subject"] == data["pfx"]["issuer"] for entry in data["caCertificates"]):
        problems.append("no caCertificates subject equals pfx.issuer: the kit does not carry the device certificate's issuer for the chain check")
    for value in [data["pfx"]["thumbprint"], *[e["thumbprint"] for e in data["caCertificates"]], *data["supersedes"]]:
        if not re.fullmatch(c["ThumbprintPattern"], value):
            problems.append(f"thumbprint {value!r} does not match $ThumbprintPattern")
    for url in data["beaconUrls"]:
        if not re.fullmatch(c["BeaconUrlPattern"], url):
            problems.append(f"{url} does not match $BeaconUrlPattern")
    return problems


def test_the_script_constants_are_the_contract(script: str) -> None:
    c = script_constants(script)
    assert c["KitSchemaVersion"] == 2
    assert c["UnlistedKitFiles"] == ["install.ps1", "install.json", "install.json.sig", "kit-signer.cer"]
    assert (c["PfxFileName"], c["AgentIniFileName"], c["PasswordFileExtension"]) == ("device.pfx", "mgssetup.ini", ".password")
    assert c["SignatureBytes"] == 64 and c["SignatureTextLength"] == len(base64.b64encode(bytes(64))) == 88
    assert re.fullmatch(c["SignatureTextPattern"], base64.b64encode(os.urandom(64)).decode())
    assert c["MaxKitFileBytes"] >= 64 * 1024 and c["MaxSignatureFileBytes"] >= 90


def test_a_contract_kit_meets_the_script_constants(script: str, contract_kit: tuple[Path, str]) -> None:
    folder, signer = contract_kit
    assert constant_problems(folder, signer, script_constants(script)) == []


def test_the_constants_refuse_what_the_contract_excludes(script: str, contract_kit: tuple[Path, str], tmp_path: Path) -> None:
    """The same rules catch a DER signature, a tampered install.json, an extra file and a missing issuer."""
    folder, signer = contract_kit
    constants = script_constants(script)

    def variant(change: Callable[[Path], None]) -> list[str]:
        copy = tmp_path / f"v{len(list(tmp_path.iterdir()))}"
        copy.mkdir()
        for item in folder.iterdir():
            (copy / item.name).write_bytes(item.read_bytes())
        change(copy)
        return constant_problems(copy, signer, constants)

    def der_signature(where: Path) -> None:
        sig = base64.b64decode((where / "install.json.sig").read_bytes())
        half = len(sig) // 2
        der = encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))
        (where / "install.json.sig").write_bytes(base64.b64encode(der) + b"\n")

    def tamper(where: Path) -> None:
        data = json.loads((where / "install.json").read_bytes())
        data["caCertificates"][1]["store"] = "CA"
        (where / "install.json").write_bytes((json.dumps(data, indent=2) + "\n").encode())

    def no_issuer(where: Path) -> None:
        tamper(where)
        data = json.loads((where / "install.json").read_bytes())
        data["caCertificates"] = data["caCertificates"][1:]
        (where / "install.json").write_bytes((json.dumps(data, indent=2) + "\n").encode())

    assert any("$SignatureTextPattern" in p for p in variant(der_signature))
    assert "install.json.sig does not verify" in variant(tamper)
    def extra_file(where: Path) -> None:
        (where / "evil.dll").write_bytes(b"MZ")

    assert any("would refuse: ['evil.dll']" in p for p in variant(extra_file))
    assert any("pfx.issuer" in p for p in variant(no_issuer))


def test_a_kit_from_pki_bundle_meets_the_script_constants(script: str, tmp_path: Path) -> None:
    from pki_cli import ok, pki

    directory = tmp_path / "pki"
    ok(directory, "init-ca", "--cn", "Kit Devices CA", "--o", "Example Corp", "--server-domain", "example.test")
    ok(directory, "issue-server", "--dns", "beacon1.example.test")
    ok(directory, "issue-client", "--cn", "LAPTOP-0042", "--o", "Example Corp")
    code, out, err = pki(directory, "bundle", "LAPTOP-0042", "--beacon-host", "beacon1.example.test", env={"PKI_PASSWORD": secrets.token_urlsafe(18)})
    assert code == 0, out + err
    match = re.search(r"signer thumbprint: ([0-9A-F]{40})", out + err)
    assert match, out + err
    folder = directory / "bundles" / "LAPTOP-0042" / "windows"
    assert (folder / "install.ps1").read_bytes() == SCRIPT.read_bytes()
    assert kit.KIT_VERSION == 2
    assert constant_problems(folder, match.group(1), script_constants(script)) == []
    # The device CA's root travels for the chain check only: LocalMachine\CA, never Root.
    data = json.loads((folder / "install.json").read_bytes())
    stores = {entry["file"]: entry["store"] for entry in data["caCertificates"]}
    assert stores.get("device-root-1.cer") == "CA" and stores.get("root-1.cer") == "Root", stores
