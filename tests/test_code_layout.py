"""Layout of the code: scripts/pki/ imports without cycles (also counting imports inside
functions, which hide a cycle from Python but not from a reader), and no module of
scripts/ or components/ grows past MAX_LINES.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = "scripts.pki"
PACKAGE_DIR = ROOT / "scripts" / "pki"
MAX_LINES = 500
# Being split in its own change; remove from here once that lands.


def _modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PACKAGE_DIR.glob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The modules of the package an import statement names (``from . import a, b``,
    ``from .a import x``, ``from scripts.pki.a import x``, ``import scripts.pki.a``)."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith(PACKAGE + "."):
                found.add(alias.name[len(PACKAGE) + 1:].split(".")[0])
        return found & modules.keys()
    if node.level == 1:
        base = node.module
    elif node.level == 0 and node.module == PACKAGE:
        base = None
    elif node.level == 0 and node.module is not None and node.module.startswith(PACKAGE + "."):
        base = node.module[len(PACKAGE) + 1:]
    else:
        return found  # another package (or a level-2 import, which leaves scripts/pki/)
    if base is None:
        found.update(alias.name for alias in node.names)  # from . import a, b: the modules a, b
    else:
        found.add(base.split(".")[0])
    return found & modules.keys()


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the package it imports, at any depth of its code."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(node, modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_import_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "cli" in graph["__init__"]  # inside a function: `from .cli import main`
    assert "cli" in graph["__main__"]
    assert {"check", "inputs", "issue", "pfx", "revocation", "store"} <= graph["cli"]
    assert "build" in graph["issue"]  # `from . import build`
    assert "parallel" in graph["store"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_pki_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in scripts/pki/: " + " -> ".join(cycle or [])


def test_modules_are_small() -> None:
    too_long = []
    paths = sorted((ROOT / "scripts").rglob("*.py")) + sorted((ROOT / "components").rglob("*.py"))
    assert len(paths) > 30
    for path in paths:
        relative = path.relative_to(ROOT)
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long.append(f"{relative}: {lines} lines")
    assert not too_long, f"modules over {MAX_LINES} lines (split them): " + ", ".join(too_long)
