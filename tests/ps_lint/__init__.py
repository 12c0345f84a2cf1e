"""Static checks of the Windows PowerShell scripts under components/iis/windows (no PowerShell needed).

- `parse` / `defects`: tree-sitter-powershell syntax tree and its ERROR / MISSING nodes.
- `commands` / `lint`: every command and -Parameter used, checked against cmdlets.json (Windows
  Server 2022 / Windows PowerShell 5.1 cmdlets with their parameters and doc sources), the
  script's own functions and an explicit list of native executables.
- `member_paths`: `$state.a.b` member chains (following variables assigned from them and
  foreach loops over them), to check them against a desired-state document.
- `hashtable_keys`: the keys of the hashtable literal assigned to a variable (report shape).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import tree_sitter_powershell
from tree_sitter import Language, Node, Parser, Tree

TABLE_PATH = Path(__file__).with_name("cmdlets.json")


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(Language(tree_sitter_powershell.language()))


@lru_cache(maxsize=32)
def parse(text: str) -> Tree:
    """The syntax tree of a script; memoised by text (trees are only read), so the mutation tests'
    checkers and the tests that read the real script share one parse."""
    return _parser().parse(text.encode("utf-8"))


def node_text(node: Node) -> str:
    return node.text.decode("utf-8") if node.text is not None else ""


def walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


@dataclass(frozen=True)
class Defect:
    kind: str  # ERROR or MISSING
    line: int  # 1-based
    column: int  # 1-based
    text: str
    ancestors: tuple[str, ...]

    def __str__(self) -> str:
        return f"line {self.line}:{self.column}: {self.kind} {self.text!r} (in {' > '.join(self.ancestors[-4:])})"


def defects(tree: Tree) -> list[Defect]:
    found: list[Defect] = []

    def visit(node: Node, ancestors: tuple[str, ...]) -> None:
        if node.type == "ERROR" or node.is_missing:
            kind = "MISSING" if node.is_missing else "ERROR"
            text = node.type if node.is_missing else node_text(node)[:80]
            found.append(Defect(kind, node.start_point[0] + 1, node.start_point[1] + 1, text, ancestors))
        for child in node.children:
            visit(child, ancestors + (node.type,))

    visit(tree.root_node, ())
    return found


# --- commands ------------------------------------------------------------------------------------

@dataclass
class Command:
    name: str | None  # None when the command is an expression (& $block, & { ... })
    line: int
    parameters: list[str] = field(default_factory=list)  # without the leading '-'
    operator: str | None = None  # '&' or '.'
    node: Node | None = None


_PER_TREE: dict[tuple[str, int], tuple[Tree, Any]] = {}


def _per_tree(kind: str, tree: Tree, build: Any) -> Any:
    """`build(tree)` once per tree (trees are only read; parse() memoises them by text)."""
    cached = _PER_TREE.get((kind, id(tree)))
    if cached is not None and cached[0] is tree:
        return cached[1]
    if len(_PER_TREE) > 128:
        _PER_TREE.clear()
    value = build(tree)
    _PER_TREE[(kind, id(tree))] = (tree, value)
    return value


def commands(tree: Tree) -> list[Command]:
    """Every command of the tree (a shared list: do not change it)."""
    return _per_tree("commands", tree, _commands)


def _commands(tree: Tree) -> list[Command]:
    found: list[Command] = []
    for node in walk(tree.root_node):
        if node.type != "command":
            continue
        name = None
        operator = None
        for child in node.children:
            if child.type == "command_invokation_operator":
                operator = node_text(child).strip()
            elif child.type == "command_name":
                name = node_text(child)
            elif child.type == "command_name_expr":
                inner = [c for c in child.children if c.type == "command_name"]
                name = node_text(inner[0]) if inner else None
        command = Command(name, node.start_point[0] + 1, operator=operator, node=node)
        elements = [c for c in node.children if c.type == "command_elements"]
        for element_list in elements:
            for element in element_list.children:
                if element.type == "command_parameter":
                    command.parameters.append(node_text(element).lstrip("-").rstrip(":"))
        found.append(command)
    return found


@dataclass(frozen=True)
class Function:
    name: str
    parameters: frozenset[str]
    line: int


def functions(tree: Tree) -> dict[str, Function]:
    """Functions defined in the script: lower-case name -> parameters (lower-case)."""
    found: dict[str, Function] = {}
    for node in walk(tree.root_node):
        if node.type != "function_statement":
            continue
        names = [c for c in node.children if c.type == "function_name"]
        if not names:
            continue
        params: set[str] = set()
        for inner in walk(node):
            if inner.type == "script_parameter" and _owning_function(inner) == node:
                variables = [c for c in inner.children if c.type == "variable"]
                if variables:
                    params.add(node_text(variables[0]).lstrip("$").lower())
        name = node_text(names[0])
        found[name.lower()] = Function(name, frozenset(params), node.start_point[0] + 1)
    return found


def _owning_function(node: Node) -> Node | None:
    parent = node.parent
    while parent is not None:
        if parent.type in ("function_statement", "script_block_expression"):
            return parent
        parent = parent.parent
    return None


def script_parameters(tree: Tree) -> list[str]:
    """Parameters of the script's own param() block (the first statement), in order."""
    block = first_param_block(tree)
    if block is None:
        return []
    names = []
    for node in walk(block):
        if node.type == "script_parameter":
            variables = [c for c in node.children if c.type == "variable"]
            names.append(node_text(variables[0]).lstrip("$"))
    return names


def first_param_block(tree: Tree) -> Node | None:
    for node in walk(tree.root_node):
        if node.type == "param_block":
            return node
        if node.type in ("function_statement", "statement_list"):
            return None
    return None


# --- the cmdlet table ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CmdletTable:
    cmdlets: dict[str, tuple[str, frozenset[str]]]  # lower name -> (module, lower parameter names)
    common: frozenset[str]
    native: frozenset[str]
    docs: dict[str, str]  # module -> documentation URL


def load_table(path: Path = TABLE_PATH) -> CmdletTable:
    data = json.loads(path.read_text(encoding="utf-8"))
    cmdlets: dict[str, tuple[str, frozenset[str]]] = {}
    docs: dict[str, str] = {}
    for module, entry in data["modules"].items():
        docs[module] = entry["doc"]
        for name, params in entry["cmdlets"].items():
            cmdlets[name.lower()] = (module, frozenset(p.lower() for p in params))
    common = frozenset(p.lower() for p in data["common_parameters"]["names"])
    native = frozenset(n.lower() for n in data["native"]["commands"])
    return CmdletTable(cmdlets, common, native, docs)


def lint(text: str, table: CmdletTable | None = None) -> list[str]:
    """Every unknown command or unknown parameter, as a readable message (empty: clean)."""
    table = table or load_table()
    tree = parse(text)
    defined = functions(tree)
    problems: list[str] = []
    for command in commands(tree):
        if command.name is None:
            continue  # & $scriptBlock / & { ... }: not a named command
        key = command.name.lower()
        if key in defined:
            allowed = defined[key].parameters | table.common
            origin = f"function {defined[key].name} (line {defined[key].line})"
        elif key in table.cmdlets:
            module, params = table.cmdlets[key]
            allowed = params | table.common
            origin = f"{command.name} ({module}, {table.docs[module]})"
        elif key in table.native:
            continue  # native executables take their own arguments
        else:
            problems.append(
                f"line {command.line}: unknown command {command.name!r}: not a function of the script, "
                f"not in tests/ps_lint/cmdlets.json and not an allowed native executable"
            )
            continue
        for parameter in command.parameters:
            if parameter.lower() not in allowed:
                problems.append(f"line {command.line}: {command.name} has no parameter -{parameter} (checked against {origin})")
    return problems


# --- what PowerShell rejects but the grammar accepts ----------------------------------------------

# `"... $name: ..."` is a parse error in PowerShell ("Variable reference is not valid. ':' was not
# followed by a valid variable name character"); tree-sitter-powershell reads it as $name + ':'.
_SCOPED_VARIABLE = re.compile(r"\$(?!\()(\w+):(?![\w{])")


def string_variable_problems(tree: Tree) -> list[str]:
    problems = []
    for node in walk(tree.root_node):
        if node.type == "expandable_string_literal":
            for match in _SCOPED_VARIABLE.finditer(node_text(node)):
                problems.append(
                    f"line {node.start_point[0] + 1}: '${match.group(1)}:' in {node_text(node)[:60]!r} is not a valid variable "
                    f"reference in PowerShell: write $({'$' + match.group(1)}) or ${{{match.group(1)}}}"
                )
    return problems


# --- member paths on the desired state ------------------------------------------------------------

@dataclass(frozen=True)
class MemberPath:
    root: str  # variable the chain starts at (lower-case)
    path: tuple[str, ...]  # state path the variable stands for + the members used
    line: int


def _member_chain(node: Node) -> tuple[str, list[str]] | None:
    """`$a.b.c` (member_access nodes) -> ('a', ['b', 'c']); None for anything else."""
    members: list[str] = []
    current = node
    while current.type == "member_access":
        names = [c for c in current.children if c.type == "member_name"]
        simple = [c for c in names[0].children if c.type == "simple_name"] if names else []
        if not simple:
            return None  # $x.$dynamic or $x.'quoted': not checkable
        members.append(node_text(simple[0]))
        current = current.children[0]
    if current.type != "variable":
        return None
    return node_text(current).lstrip("$").lower(), list(reversed(members))


def _unwrap(node: Node) -> Node:
    """The single meaningful expression inside wrapper nodes (pipeline > ... > unary_expression)."""
    current = node
    while True:
        named = [c for c in current.children if c.is_named and c.type != "comment"]
        if current.type in ("member_access", "variable") or len(named) != 1:
            return current
        if current.type in ("command", "array_expression", "script_block_expression", "hash_literal_expression",
                            "sub_expression", "parenthesized_expression", "invokation_expression", "element_access"):
            return current
        current = named[0]


def member_paths(tree: Tree, roots: tuple[str, ...] = ("state",)) -> tuple[list[MemberPath], list[str]]:
    """Every member chain that starts at a root or at a variable aliased to a path under it.

    Aliases: `$x = $state.a.b` and `foreach ($x in $state.a.b)` make `$x` stand for `a.b` (`a.b[]`
    for the loop). A variable that is both aliased and assigned something else is reported as
    ambiguous (the second list), so every checked chain means exactly one thing.
    """
    aliases: dict[str, tuple[str, ...]] = {root: () for root in roots}
    other_assignments: set[str] = set()
    changed = True
    while changed:  # aliases of aliases, in any order of appearance
        changed = False
        for node in walk(tree.root_node):
            target = source = None
            loop = False
            if node.type == "assignment_expression":
                left = [c for c in node.children if c.type == "left_assignment_expression"]
                right = [c for c in node.children if c.is_named and c.type not in ("left_assignment_expression", "assignement_operator")]
                if left and right:
                    target, source = _unwrap(left[0]), _unwrap(right[0])
            elif node.type == "foreach_statement":
                variables = [c for c in node.children if c.type == "variable"]
                pipelines = [c for c in node.children if c.type == "pipeline"]
                if variables and pipelines:
                    target, source, loop = variables[0], _unwrap(pipelines[0]), True
            if target is None or target.type != "variable":
                continue
            name = node_text(target).lstrip("$").lower()
            if name in roots:
                continue
            chain = None
            if source is not None and source.type in ("member_access", "variable"):
                chain = _member_chain(source)
            if chain and chain[0] in aliases:
                path = aliases[chain[0]] + tuple(chain[1]) + (("[]",) if loop else ())
                if aliases.get(name) != path:
                    if name in aliases:
                        other_assignments.add(name)
                    else:
                        aliases[name] = path
                        changed = True
            else:
                other_assignments.add(name)
    ambiguous = sorted(n for n in other_assignments if n in aliases and n not in roots)
    found: list[MemberPath] = []
    for node in walk(tree.root_node):
        if node.type != "member_access" or (node.parent is not None and node.parent.type == "member_access"
                                            and node.parent.children[0] == node):
            continue  # only the outermost member_access of a chain
        chain = _member_chain(node)
        if chain and chain[0] in aliases:
            found.append(MemberPath(chain[0], aliases[chain[0]] + tuple(chain[1]), node.start_point[0] + 1))
    return found, [f"${n} is assigned from the desired state and from something else" for n in ambiguous]


# PowerShell members that exist on any value (intrinsic) or on a PSCustomObject from ConvertFrom-Json.
INTRINSIC_MEMBERS = frozenset({"count", "length", "psobject", "gettype", "tostring"})


def check_path(document: Any, path: tuple[str, ...]) -> str | None:
    """None when `path` reads keys that exist in `document`, else the first key that does not."""
    node = document
    walked: list[str] = []
    for member in path:
        if member == "[]":
            if not isinstance(node, list):
                return f"{'.'.join(walked) or '$state'} is not a list (foreach over it)"
            node = node[0] if node else None
            walked.append("[]")
            continue
        if member.lower() in INTRINSIC_MEMBERS:
            return None
        if isinstance(node, list):  # member enumeration over a list
            node = node[0] if node else None
        if isinstance(node, dict):
            if member not in node:  # JSON keys are case-sensitive in our contract
                close = [k for k in node if k.lower() == member.lower()]
                hint = f" (the key is spelt {close[0]!r})" if close else ""
                return f"{'.'.join(walked + [member])}: no key {member!r} under {'.'.join(walked) or 'the state'}{hint}"
            node = node[member]
            walked.append(member)
            continue
        return None  # a scalar or null: further members are .NET members (ToUpper, ...)
    return None


# --- hashtable literals ---------------------------------------------------------------------------

def hashtable_literal(tree: Tree, target: str) -> Node | None:
    """The first hashtable literal assigned to `target` (`$report`, `$report.checks.mappings`, ...)."""
    wanted = target.replace(" ", "").lower()
    for node in walk(tree.root_node):
        if node.type != "assignment_expression":
            continue
        left = [c for c in node.children if c.type == "left_assignment_expression"]
        if not left or node_text(left[0]).replace(" ", "").lower() != wanted:
            continue
        for inner in walk(node):
            if inner.type == "hash_literal_expression":
                return inner
    return None


def hashtable_keys(node: Node) -> dict[str, Node | None]:
    """Keys of one hashtable literal -> the nested hash literal of the value, if the value is one."""
    keys: dict[str, Node | None] = {}
    for entry in walk(node):
        if entry.type != "hash_entry" or _enclosing_hash(entry) != node:
            continue
        key_nodes = [c for c in entry.children if c.type == "key_expression"]
        if not key_nodes:
            continue
        nested = None
        for inner in walk(entry):
            if inner.type == "hash_literal_expression" and inner != node:
                nested = inner
                break
        keys[node_text(key_nodes[0]).strip("'\"")] = nested
    return keys


def _enclosing_hash(node: Node) -> Node | None:
    parent = node.parent
    while parent is not None and parent.type != "hash_literal_expression":
        parent = parent.parent
    return parent


def hashtable_shape(node: Node) -> dict[str, Any]:
    """Nested key structure of a hashtable literal: {key: nested shape or None}."""
    return {key: (hashtable_shape(nested) if nested is not None else None) for key, nested in hashtable_keys(node).items()}


def strip_user_data_wrapper(text: str) -> str:
    """The PowerShell inside EC2 `<powershell>...</powershell>` user data."""
    match = re.fullmatch(r"\s*<powershell>\r?\n(.*)\r?\n</powershell>\s*", text, re.S)
    if not match:
        raise ValueError("user data must be <powershell> on the first line and </powershell> on the last")
    return match.group(1)


# --- functions and what they call ------------------------------------------------------------------

def function_nodes(tree: Tree) -> dict[str, Node]:
    """Function name (as written) -> its function_statement node (a shared dict: do not change it)."""
    return _per_tree("functions", tree, _function_nodes)


def _function_nodes(tree: Tree) -> dict[str, Node]:
    found: dict[str, Node] = {}
    for node in walk(tree.root_node):
        if node.type == "function_statement":
            names = [c for c in node.children if c.type == "function_name"]
            if names:
                found[node_text(names[0])] = node
    return found


def enclosing(node: Node, types: tuple[str, ...]) -> Node | None:
    """The nearest ancestor of one of these node types."""
    parent = node.parent
    while parent is not None and parent.type not in types:
        parent = parent.parent
    return parent


def command_names(node: Node) -> list[str]:
    """Names of the commands called anywhere inside `node`, in source order."""
    return [name for c in walk(node) if c.type == "command" for name in [_command_name(c)] if name]


def _command_name(node: Node) -> str | None:
    for child in node.children:
        if child.type == "command_name":
            return node_text(child)
        if child.type == "command_name_expr":
            inner = [c for c in child.children if c.type == "command_name"]
            return node_text(inner[0]) if inner else None
    return None


_GRAPHS: dict[int, tuple[Tree, dict[str, tuple[set[str], set[str]]]]] = {}


def call_graph(tree: Tree) -> dict[str, tuple[set[str], set[str]]]:
    """Function (lower-case) -> (commands it calls, '.method' names it invokes), built once per tree."""
    cached = _GRAPHS.get(id(tree))
    if cached is not None and cached[0] is tree:
        return cached[1]
    graph = {
        name.lower(): ({c.lower() for c in command_names(node)}, {m.lower() for m, _ in invoked_methods(node) if m.startswith(".")})
        for name, node in function_nodes(tree).items()
    }
    if len(_GRAPHS) > 32:
        _GRAPHS.clear()
    _GRAPHS[id(tree)] = (tree, graph)
    return graph


def reachable_commands(tree: Tree, start: str) -> set[str]:
    """Every command `start` calls, directly or through the script's own functions (lower-case)."""
    graph = call_graph(tree)
    seen: set[str] = set()
    todo = [start.lower()]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in graph:
            todo += list(graph[name][0])
    return seen - {start.lower()}


def argument_after(command: Node, parameter: str) -> list[str]:
    """The literal value(s) given to -parameter of a command: 'a' -> ['a'], 'a', 'b' -> ['a', 'b']."""
    elements = [c for c in command.children if c.type == "command_elements"]
    if not elements:
        return []
    items = [e for e in elements[0].children if e.type != "command_argument_sep"]
    for index, item in enumerate(items):
        if item.type == "command_parameter" and node_text(item).lstrip("-").rstrip(":").lower() == parameter.lower():
            if index + 1 >= len(items) or items[index + 1].type == "command_parameter":
                return []
            value = items[index + 1]
            return [node_text(s).strip("'\"") for s in walk(value) if s.type in ("string_literal", "variable")]
    return []


# --- .NET members ----------------------------------------------------------------------------------

MEMBERS_PATH = Path(__file__).with_name("members.json")


def invoked_methods(node: Node) -> list[tuple[str, Node]]:
    """Method calls inside `node`: ('.Name' for instance calls, '[Type]::Name' as 'Type::Name')."""
    found: list[tuple[str, Node]] = []
    for call in walk(node):
        if call.type != "invokation_expression":
            continue
        members = [c for c in call.children if c.type == "member_name"]
        if not members:
            continue
        name = node_text(members[0])
        if any(c.type == "::" for c in call.children):
            types = [c for c in call.children if c.type == "type_literal"]
            type_name = node_text(types[0]).strip("[]") if types else "?"
            found.append((f"{type_name}::{name}", call))
        else:
            found.append((f".{name}", call))
    return found


def member_problems(text: str, path: Path = MEMBERS_PATH) -> list[str]:
    """Every .NET method the script calls is in members.json (instance by name, static by type)."""
    table = json.loads(path.read_text(encoding="utf-8"))
    instance = {name.lower() for name in table["instance"]}
    static = {name.lower() for name in table["static"]}
    problems = []
    for name, node in invoked_methods(parse(text).root_node):
        known = static if "::" in name else instance
        key = name.lower() if "::" in name else name[1:].lower()
        if key not in known:
            problems.append(f"line {node.start_point[0] + 1}: {name} is not in tests/ps_lint/members.json")
    return problems


def reachable_methods(tree: Tree, start: str) -> set[str]:
    """Instance method names (lower-case, '.name') called by `start` or any function it reaches."""
    graph = call_graph(tree)
    names = {start.lower()} | reachable_commands(tree, start)
    return {m for f in names if f in graph for m in graph[f][1]}
