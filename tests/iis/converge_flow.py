"""Control-flow checks of the converge script, on its syntax tree (comments are not code here).

Text checks of the script read comments too: a commented-out `if ($reportOnlyMode) { return }`
still contains the text. These checkers read only statements of the tree-sitter-powershell
tree, so commenting a line out, inverting a condition or adding an early exit changes what they
see. Each returns a list of problems (empty: holds); the tests run them on the real script and
on mutated copies, which must fail.

- `report_only_problems`: every change of the machine is reachable only where -ReportOnly cannot
  be: inside the fix block of Invoke-Converge/Invoke-ConvergeAll (whose report-only return comes
  first), under `if (-not $reportOnlyMode ...)`, after a function's own report-only return, or in a
  function whose every caller is so guarded.
- `reboot_problems`: every restart-needing change has its Register-Reboot in the same block.
- `fallback_problems`: the catch around the lock-down commit falls back to the section settings
  whenever mappings were part of the change set.
- `lockdown_skip_problems`: between the mapped-account step and the lock-down writer of
  Sync-Lockdown nothing leaves the function (return, exit, break, continue, throw, or a call that
  throws) without the section settings written first.
"""

from __future__ import annotations

import re
from typing import Iterator

from tree_sitter import Node, Tree

import ps_lint

# Commands and methods that change the machine (not the converge run's own log and report).
CHANGING_COMMANDS = {
    "install-windowsfeature", "uninstall-windowsfeature", "import-pfxcertificate", "new-itemproperty", "set-itemproperty",
    "remove-itemproperty", "new-localuser", "set-localuser", "enable-localuser", "remove-localgroupmember", "add-localgroupmember",
    "new-webbinding", "invoke-netsh", "start-process", "remove-item", "set-acl", "move-item", "new-item", "set-content",
    "add-storecertificate", "request-reboot",
}
# Set-ManyToOne, Sync-OneToOne and Set-LockdownSetting change the configuration in memory only: the
# change is the CommitChanges() that follows (checked as a method, where it is called).
CHANGING_METHODS = {".commitchanges", ".addsslcertificate", "io.file::delete", "io.file::writeallbytes", "io.directory::createdirectory", "io.directory::delete"}
# Functions that change only the converge run's own files on purpose, in report-only mode too.
OWN_FILES: dict[str, str] = {
    "write-log": "the run's log (C:\\ProgramData\\FlexNetBeacon\\converge.log)",
    "initialize-statefolder": "creates and locks down the state folder: the report and the log need it in report-only mode too",
    "send-report": "writes the run's report file",
    "write-rebootmarker": "records a restart request (reached only from Register-Reboot, which changes nothing in report-only mode)",
    "save-accountrecord": "the DPAPI record of a password that exists (held, never generated in report-only mode)",
    "sync-logfile": "the rotating copy of the run's log",
    "read-rebootmarker": "moves its own unreadable restart marker aside",
    "read-reboothistory": "moves its own unreadable restart history aside",
}
# (function, change) pairs that touch only a file of the run itself.
OWN_FILE_CHANGES = {
    ("sync-servercertificate", "io.file::writeallbytes"): "the PFX fetched from Secrets Manager, to a temporary file for Get-PfxData",
    ("sync-servercertificate", "remove-item"): "that temporary file, removed in finally",
}
FLOW = {"return", "exit", "break", "continue", "throw"}
_SPACE = re.compile(r"\s+")


def _text(node: Node) -> str:
    return _SPACE.sub(" ", ps_lint.node_text(node)).strip()


def _statements(block: Node) -> list[Node]:
    """The statements of a statement_block / script_block (comments excluded)."""
    lists = [c for c in ps_lint.walk(block) if c.type == "statement_list"]
    if not lists:
        return []
    first = lists[0]
    return [c for c in first.children if c.type not in ("comment", ";", "\n")]


def _condition(if_node: Node) -> str:
    for child in if_node.children:
        if child.type == "pipeline":
            return _text(child)
    return ""


def _branches(if_node: Node) -> tuple[Node | None, Node | None]:
    """(then block, else block) of an if_statement (elseif chains count as the else side)."""
    then = next((c for c in if_node.children if c.type == "statement_block"), None)
    other = next((c for c in if_node.children if c.type in ("else_clause", "elseif_clauses")), None)
    return then, other


def _only_flow(block: Node | None, kinds: set[str]) -> bool:
    """The block is one flow-control statement of these kinds (return 0 included)."""
    if block is None:
        return False
    statements = _statements(block)
    return len(statements) == 1 and statements[0].type == "flow_control_statement" and _text(statements[0]).split(" ")[0].lower() in kinds


def positive_report_only(condition: str) -> bool:
    """`$reportOnlyMode` or `$reportOnlyMode -or ...`: true whenever the run is report-only."""
    return condition == "$reportOnlyMode" or condition.startswith("$reportOnlyMode -or ")


def negative_report_only(condition: str) -> bool:
    """`-not $reportOnlyMode` alone or as one operand of -and: false whenever the run is report-only."""
    parts = [p.strip() for p in condition.split(" -and ")]
    return "-not $reportOnlyMode" in parts and " -or " not in condition


def _command_name(node: Node) -> str | None:
    for child in node.children:
        if child.type == "command_name":
            return ps_lint.node_text(child).lower()
        if child.type == "command_name_expr":
            inner = [c for c in child.children if c.type == "command_name"]
            return ps_lint.node_text(inner[0]).lower() if inner else None
    return None


def _function_of(node: Node) -> Node | None:
    return ps_lint.enclosing(node, ("function_statement",))


def _function_name(function: Node) -> str:
    return next(ps_lint.node_text(c) for c in function.children if c.type == "function_name").lower()


def _early_report_only_return_before(function: Node, node: Node) -> bool:
    body = next((c for c in ps_lint.walk(function) if c.type == "script_block_body"), None)
    if body is None:
        return False
    for statement in _statements(body):
        if statement.start_byte >= node.start_byte:
            return False
        if statement.type == "if_statement" and positive_report_only(_condition(statement)) and _only_flow(_branches(statement)[0], {"return"}):
            return True
    return False


def _guarded_here(node: Node) -> bool:
    """Guarded by its own surroundings within its function (or the top level)."""
    child, parent = node, node.parent
    function = _function_of(node)
    while parent is not None and parent != function:
        if parent.type == "script_block_expression":
            owner = ps_lint.enclosing(parent, ("command",))
            if owner is not None and _command_name(owner) in ("invoke-converge", "invoke-convergeall"):
                return True
        if parent.type == "if_statement":
            then, other = _branches(parent)
            condition = _condition(parent)
            if child == then and negative_report_only(condition):
                return True
            if child == other and positive_report_only(condition):
                return True
        child, parent = parent, parent.parent
    return function is not None and _early_report_only_return_before(function, node)


def _call_sites(tree: Tree, name: str) -> list[Node]:
    return [c.node for c in ps_lint.commands(tree) if c.node is not None and (c.name or "").lower() == name]


def _guarded(tree: Tree, node: Node, seen: frozenset[str] = frozenset()) -> bool:
    if _guarded_here(node):
        return True
    function = _function_of(node)
    if function is None:
        return False
    name = _function_name(function)
    if name in OWN_FILES:
        return True
    if name in seen:
        return False  # a cycle of unguarded calls
    sites = _call_sites(tree, name)
    return bool(sites) and all(_guarded(tree, site, seen | {name}) for site in sites)


def changing_nodes(tree: Tree) -> Iterator[tuple[str, Node]]:
    for command in ps_lint.commands(tree):
        if command.node is not None and (command.name or "").lower() in CHANGING_COMMANDS:
            yield (command.name or "").lower(), command.node
    for method, node in ps_lint.invoked_methods(tree.root_node):
        if method.lower() in CHANGING_METHODS:
            yield method.lower(), node


def report_only_problems(text: str) -> list[str]:
    tree = ps_lint.parse(text)
    problems = []
    functions = ps_lint.function_nodes(tree)
    for name, marker in (("Invoke-Converge", "& $Fix"), ("Invoke-ConvergeAll", "& $Fix")):
        function = functions.get(name)
        fix = next((c for c in ps_lint.walk(function) if c.type == "command" and _text(c) == marker), None) if function else None
        if fix is None or not _early_report_only_return_before(function, fix):
            problems.append(f"{name}: no report-only return before {marker}")
    for what, node in changing_nodes(tree):
        function = _function_of(node)
        where = _function_name(function) if function is not None else "top level"
        if (where, what) not in OWN_FILE_CHANGES and not _guarded(tree, node):
            problems.append(f"line {node.start_point[0] + 1}: {what} in {where} can run under -ReportOnly")
    return problems


def _enclosing_statement_list(node: Node) -> Node | None:
    return ps_lint.enclosing(node, ("statement_list",))


def reboot_problems(text: str) -> list[str]:
    """SCHANNEL writes: Register-Reboot earlier in the same block. Role services and the installer:
    their result's restart request leads to Register-Reboot in the block that ran them."""
    tree = ps_lint.parse(text)
    problems = []
    for command in ps_lint.commands(tree):
        name = (command.name or "").lower()
        node = command.node
        if node is None or name not in ("new-itemproperty", "set-itemproperty", "install-windowsfeature", "uninstall-windowsfeature", "start-process"):
            continue  # only these change something that needs a restart: skip the block walk for the rest
        block = _enclosing_statement_list(node)
        assert block is not None
        statements = [c for c in block.children if c.type != "comment"]
        registers = [s for s in statements if "register-reboot" in {n.lower() for n in ps_lint.command_names(s)}]
        if name in ("new-itemproperty", "set-itemproperty") and "$schannelKey" in ps_lint.argument_after(node, "Path"):
            if not any(s.end_byte <= node.start_byte for s in registers):
                problems.append(f"line {node.start_point[0] + 1}: SCHANNEL value written without Register-Reboot before it in its block")
        if name in ("install-windowsfeature", "uninstall-windowsfeature"):
            checks = [s for s in registers if s.type == "if_statement" and ".RestartNeeded" in _condition(s) and s.start_byte > node.end_byte]
            if not checks:
                problems.append(f"line {node.start_point[0] + 1}: {command.name}'s RestartNeeded does not lead to Register-Reboot in its block")
        if name == "start-process":
            function = _function_of(node)
            exits = {c: False for c in ("1641", "3010")}
            for statement in ps_lint.walk(function) if function is not None else []:
                if statement.type in ("if_statement", "elseif_clause"):
                    condition = _condition(statement)
                    then = next((c for c in statement.children if c.type == "statement_block"), None)
                    for code in exits:
                        if condition == f"$code -eq {code}" and then is not None and "register-reboot" in {n.lower() for n in ps_lint.command_names(then)}:
                            exits[code] = True
            for code, found in exits.items():
                if not found:
                    problems.append(f"line {node.start_point[0] + 1}: installer exit {code} does not lead to Register-Reboot")
    return problems


def _catch_blocks(node: Node) -> list[Node]:
    return [c for c in ps_lint.walk(node) if c.type == "catch_clause"]


def fallback_problems(text: str) -> list[str]:
    """In Sync-Lockdown, the catch of the try that commits the change set (Invoke-ConvergeAll ...
    CommitChanges) rethrows untouched only when no mapping was in it; otherwise it first writes
    the section settings alone (Write-LockdownFallback), then throws."""
    tree = ps_lint.parse(text)
    function = ps_lint.function_nodes(tree).get("Sync-Lockdown")
    if function is None:
        return ["Sync-Lockdown is missing"]
    tries = [t for t in ps_lint.walk(function) if t.type == "try_statement"
             and any(s.type != "try_statement" and "CommitChanges" in _text(s) for s in _statements(next(c for c in t.children if c.type == "statement_block")))]
    if len(tries) != 1:
        return [f"Sync-Lockdown: expected one try around the commit, found {len(tries)}"]
    catches = [c for c in tries[0].children if c.type == "catch_clauses"]
    if not catches:
        return ["Sync-Lockdown: the commit has no catch"]
    body = _statements(next(c for c in ps_lint.walk(catches[0]) if c.type == "statement_block"))
    kinds = [(s.type, _text(s)) for s in body]
    guard = [i for i, (kind, text) in enumerate(kinds) if kind == "if_statement"]
    fallback = [i for i, (_, text) in enumerate(kinds) if "Write-LockdownFallback" in text]
    final = [i for i, (kind, text) in enumerate(kinds) if kind == "flow_control_statement" and text.startswith("throw")]
    problems = []
    if len(guard) != 1 or _condition(body[guard[0]]) != "$mappingItems.Count -eq 0" or not _only_flow(_branches(body[guard[0]])[0], {"throw"}):
        problems.append("Sync-Lockdown: the commit's catch must rethrow untouched only when `$mappingItems.Count -eq 0`")
    if not fallback or not final or not (guard and guard[0] < fallback[0] < final[-1]):
        problems.append("Sync-Lockdown: the commit's catch must write Write-LockdownFallback, then throw")
    mapping = [s for s in ps_lint.walk(function) if s.type == "assignment_expression" and _text(s).startswith("$mappingItems =")]
    if len(mapping) != 1 or "'^(many|one)-to-one mappings'" not in _text(mapping[0]):
        problems.append("Sync-Lockdown: $mappingItems must be the mapping items of the change set")
    return problems


# Commands that cannot throw under $ErrorActionPreference = 'Stop' (they only record).
NEVER_THROW = {"add-problem", "write-log"}
# The writer of the section settings alone: if it throws, nothing else could have written them.
FALLBACK_WRITER = "write-lockdownfallback"


def _catch_is_safe(catch: Node) -> bool:
    """A catch that swallows the exception, or rethrows only after writing the fallback (or only
    under -ReportOnly, which changes nothing)."""
    for flow in ps_lint.walk(catch):
        if flow.type != "flow_control_statement" or _text(flow).split(" ")[0].lower() != "throw":
            continue
        if _in_report_only_branch(flow, catch):
            continue
        statements = _statements(next(c for c in catch.children if c.type == "statement_block"))
        if not any("Write-LockdownFallback" in _text(s) and s.end_byte <= flow.start_byte for s in statements):
            return False
    return True


def _in_report_only_branch(node: Node, limit: Node) -> bool:
    child, parent = node, node.parent
    while parent is not None and parent != limit:
        if parent.type == "if_statement" and child == _branches(parent)[0] and positive_report_only(_condition(parent)):
            return True
        child, parent = parent, parent.parent
    return False


def _protected(node: Node, function: Node) -> bool:
    """Leaving from here writes the section settings first: inside the body of a try whose every
    catch is safe, inside a catch after its Write-LockdownFallback, or under -ReportOnly."""
    if _in_report_only_branch(node, function):
        return True
    child, parent = node, node.parent
    while parent is not None and parent != function:
        if parent.type == "try_statement" and child.type == "statement_block":
            catches = _catch_blocks(parent)
            if catches and all(_catch_is_safe(c) for c in catches):
                return True
        if parent.type == "catch_clause":
            statements = _statements(next(c for c in parent.children if c.type == "statement_block"))
            if any("Write-LockdownFallback" in _text(s) and s.end_byte <= node.start_byte for s in statements):
                return True
        child, parent = parent, parent.parent
    return False


def lockdown_skip_problems(text: str) -> list[str]:
    """From the mapped-account step to the writer (`Set-LockdownSetting -Config $config`), every way
    out of Sync-Lockdown writes the section settings first: no return/exit/break/continue/throw,
    and no command that can throw (any cmdlet or function, under $ErrorActionPreference 'Stop')
    outside a try whose catch writes the fallback or swallows the error."""
    tree = ps_lint.parse(text)
    function = ps_lint.function_nodes(tree).get("Sync-Lockdown")
    if function is None:
        return ["Sync-Lockdown is missing"]
    own = [c.node for c in ps_lint.commands(tree) if c.node is not None and _function_of(c.node) == function]
    account = next((n for n in own if _command_name(n) == "get-mappedaccount"), None)
    writer = next((n for n in own if _command_name(n) == "set-lockdownsetting" and "$config" in ps_lint.argument_after(n, "Config")), None)
    if account is None or writer is None:
        return ["Sync-Lockdown: the mapped-account step or the writer is missing"]
    start = ps_lint.enclosing(account, ("try_statement",)) or account
    problems = []
    for node in ps_lint.walk(function):
        if not (start.end_byte <= node.start_byte < writer.start_byte):
            continue
        if node.type == "flow_control_statement" and _text(node).split(" ")[0].lower() in FLOW and not _protected(node, function):
            problems.append(f"line {node.start_point[0] + 1}: `{_text(node)[:40]}` leaves Sync-Lockdown before the lock-down writer")
        if node.type == "command" and (_command_name(node) or "") not in NEVER_THROW | {FALLBACK_WRITER} and not _protected(node, function):
            problems.append(f"line {node.start_point[0] + 1}: {_command_name(node) or _text(node)[:30]} can throw before the lock-down writer, outside a try that writes the fallback")
    return problems
