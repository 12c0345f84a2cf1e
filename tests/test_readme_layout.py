"""The README's layout table and architecture.md's component table agree with the tree (issue 23).

README.md "## Layout": every path the table names exists; every top-level directory of the
repository and every module (a .py file other than __init__.py and __main__.py) under components/
and scripts/ is listed. In the path column, a bare name (`config_checks.py`) is in the directory of
the path before it in the cell (`components/config.py`); in the "what" column, file and directory
names (`layout.py`, `windows/`) are inside the row's directory.

docs/architecture.md "## Components and packages": every path exists; every module under
components/ is named by its full path, and every module and package directly under scripts/ too.

The tree is what git has or would add: tracked files and untracked files that are not ignored.
Each check is a plain function with a self-test on a temporary tree (so the tests can fail).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CODE = re.compile(r"`([^`\n]+)`")
_NAME = re.compile(r"^[\w.-]+(\.\w+|/)$")  # a file or directory name: layout.py, windows/, aws-prices.json


def tree_files(root: Path = ROOT) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, text=True, check=True)
    return sorted(name for name in listed.stdout.split("\0") if name and (root / name).is_file())


def modules(files: list[str], *tops: str) -> set[str]:
    return {f for f in files if f.startswith(tuple(f"{t}/" for t in tops)) and f.endswith(".py")
            and Path(f).name not in ("__init__.py", "__main__.py")}


def top_dirs(files: list[str]) -> set[str]:
    return {f.split("/", 1)[0] + "/" for f in files if "/" in f}


def section_rows(text: str, heading: str) -> list[tuple[str, str]]:
    """(first cell, second cell) of every table row in the section under `heading`."""
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    rows = []
    for line in text[start:end if end >= 0 else len(text)].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 2 and not re.fullmatch(r"-+", cells[0]) and cells[0] != "path":
            rows.append((cells[0], cells[1]))
    return rows


def row_paths(path_cell: str, what_cell: str, root: Path = ROOT) -> tuple[list[str], list[str]]:
    """(paths of the path column, names of the what column resolved against the row's directories)."""
    paths, base = [], ""
    for span in _CODE.findall(path_cell):
        if "/" in span.rstrip("/"):
            path = span
        elif span.endswith("/") or not base:
            path = span  # a top-level directory or file
        else:
            path = base + span
        paths.append(path)
        base = path if path.endswith("/") else (path.rsplit("/", 1)[0] + "/" if "/" in path else "")
    dirs = [p for p in paths if p.endswith("/")]
    named = []
    for span in _CODE.findall(what_cell):
        if _NAME.match(span) and "/" not in span.rstrip("/") and dirs:
            named.append(next((d + span for d in dirs if (root / d / span).exists()), dirs[0] + span))
    return paths, named


def layout_problems(readme: str, files: list[str], root: Path = ROOT) -> list[str]:
    problems, listed = [], set()
    for path_cell, what_cell in section_rows(readme, "## Layout"):
        paths, named = row_paths(path_cell, what_cell, root)
        for path in paths + named:
            if not (root / path).exists():
                problems.append(f"README layout names `{path}`, which does not exist")
            listed.add(path)
    for module in sorted(modules(files, "components", "scripts")):
        if module not in listed:
            problems.append(f"README layout does not list {module}")
    for top in sorted(top_dirs(files)):
        if not any(p == top or p.startswith(top) for p in listed):
            problems.append(f"README layout does not list the top-level directory {top}")
    return problems


def architecture_problems(architecture: str, files: list[str], root: Path = ROOT) -> list[str]:
    problems, listed = [], set()
    for path_cell, _ in section_rows(architecture, "## Components and packages"):
        for span in _CODE.findall(path_cell):
            if not (root / span).exists():
                problems.append(f"architecture.md's component table names `{span}`, which does not exist")
            listed.add(span)
    wanted = modules(files, "components") | {f for f in modules(files, "scripts") if f.count("/") == 1}
    wanted |= {f.split("/", 2)[0] + "/" + f.split("/", 2)[1] + "/" for f in files if f.startswith("scripts/") and f.count("/") >= 2}
    for path in sorted(wanted - listed):
        problems.append(f"architecture.md's component table does not list {path}")
    return problems


def test_readme_layout_matches_the_tree() -> None:
    problems = layout_problems((ROOT / "README.md").read_text(encoding="utf-8"), tree_files())
    assert not problems, "\n".join(problems)


def test_architecture_component_table_matches_the_tree() -> None:
    problems = architecture_problems((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"), tree_files())
    assert not problems, "\n".join(problems)


def test_the_checks_report_missing_and_unlisted_paths(tmp_path: Path) -> None:
    for name in ("components/a.py", "components/sub/b.py", "components/sub/c.py", "scripts/tool.py",
                 "scripts/pkg/verb.py", "extra/file.txt", "components/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("", encoding="utf-8")
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    readme = ("## Layout\n\n| path | what |\n|---|---|\n| `components/a.py`, `gone.py` | x |\n"
              "| `components/sub/` | `b.py` and `missing.py` |\n| `scripts/tool.py` | y |\n## Next\n")
    problems = layout_problems(readme, files, tmp_path)
    assert problems == [
        "README layout names `components/gone.py`, which does not exist",
        "README layout names `components/sub/missing.py`, which does not exist",
        "README layout does not list components/sub/c.py",
        "README layout does not list scripts/pkg/verb.py",
        "README layout does not list the top-level directory extra/",
    ], problems
    architecture = ("## Components and packages\n\n| module | kind |\n|---|---|\n| `components/a.py` | pure |\n"
                    "| `scripts/nope.py` | tool |\n")
    assert architecture_problems(architecture, files, tmp_path) == [
        "architecture.md's component table names `scripts/nope.py`, which does not exist",
        "architecture.md's component table does not list components/sub/b.py",
        "architecture.md's component table does not list components/sub/c.py",
        "architecture.md's component table does not list scripts/pkg/",
        "architecture.md's component table does not list scripts/tool.py",
    ]


def index_problems(index: str, docs: Path) -> list[str]:
    """Every page of docs/ (and every file of docs/examples/) must be linked from docs/README.md."""
    linked = {target.split("#", 1)[0] for target in re.findall(r"\]\(([^)\s]+)\)", index)}
    wanted = [p for p in sorted(docs.glob("*.md")) if p.name != "README.md"] + sorted((docs / "examples").glob("*"))
    return [f"docs/README.md does not link {p.relative_to(docs).as_posix()}" for p in wanted
            if p.relative_to(docs).as_posix() not in linked]


def test_the_docs_index_lists_every_page() -> None:
    problems = index_problems((ROOT / "docs" / "README.md").read_text(encoding="utf-8"), ROOT / "docs")
    assert not problems, "\n".join(problems)


def test_the_index_check_reports_an_unlisted_page(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    for name in ("a.md", "b.md", "examples/x.json", "README.md"):
        (tmp_path / name).write_text("", encoding="utf-8")
    assert index_problems("[a](a.md#part) [x](examples/x.json)", tmp_path) == ["docs/README.md does not link b.md"]
