"""The documentation's links and paths lead somewhere inside the repository.

1. Every relative link in README.md and docs/**/*.md ([text](target), [text](<target>),
   ![alt](target) and reference definitions `[id]: target`) resolves, from the directory of the
   Markdown file, to a file or directory that exists inside the repository. Links with a URL
   scheme (https:, mailto:, ...) and pure #anchors are not checked; a #fragment is dropped
   before the check.
2. Every repository path written as inline code (`components/...`, `scripts/...`, `tests/...`,
   `docs/...`, `stacks/...`, `policy/...`, `bench/...`) exists. `<placeholder>` and `*` match
   any name. Build output (build/plan/...) is not a repository path and is not checked.

3. No link leaves the repository: the pages stand on their own. A source is cited in a code span
   (GitHub renders it as text, not as a link), often as a footnote (`[^id]` with `[^id]: ...`),
   and every footnote used is defined on its page.

Links and paths inside fenced code blocks are examples, not references, and are skipped.
Both checkers are plain functions, and each has a self-test on a temporary tree that proves
it reports what it should (so the tests can fail).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Prefixes of paths that name something in this repository.
REPO_PATH_PREFIXES = ("components/", "scripts/", "tests/", "docs/", "stacks/", "policy/", "bench/")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?^ {0,3}\1[`~]*[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# [text](target "title") and [text](<target with spaces>); the text may hold nested [brackets].
_INLINE_LINK = re.compile(
    r"\[(?:[^\[\]\\]|\\.|\[[^\[\]]*\])*\]"  # [text]
    r"\(\s*(?:<(?P<angle>[^>\n]*)>|(?P<bare>[^\s()<>]+(?:\([^\s()]*\)[^\s()<>]*)*))"  # (target
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"  # optional "title")
)
# [id]: target  /  [id]: <target with spaces>  (reference definitions, at most 3 spaces indented)
_REFERENCE = re.compile(r"^ {0,3}\[(?!\^)[^\]\n]+\]:[ \t]*(?:<(?P<angle>[^>\n]*)>|(?P<bare>\S+))", re.M)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def markdown_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]


def _without_fences(text: str) -> str:
    # Keep the line count (for line numbers in messages): blank every line of a fenced block.
    return _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def link_targets(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline, image and reference link outside code."""
    prose = _without_fences(text)
    # Code spans are not links, but keep their length so positions (and lines) stay right.
    prose = _CODE_SPAN.sub(lambda m: "`" + " " * (len(m.group(0)) - 2) + "`", prose)
    found = []
    for pattern in (_INLINE_LINK, _REFERENCE):
        for match in pattern.finditer(prose):
            target = match.group("angle") if match.group("angle") is not None else match.group("bare")
            found.append((_line_of(prose, match.start()), target.strip()))
    return sorted(found)


def link_problems(markdown: Path, root: Path = ROOT) -> list[str]:
    """Every relative link in `markdown` that is missing or leaves `root`, as 'file:line: target: why'."""
    root = root.resolve()
    problems = []
    for line, target in link_targets(markdown.read_text(encoding="utf-8")):
        where = f"{markdown.relative_to(root) if markdown.resolve().is_relative_to(root) else markdown}:{line}: {target}"
        if not target or target.startswith("#") or target.startswith("//") or _SCHEME.match(target):
            continue
        path_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if not path_part:
            continue
        base = root if path_part.startswith("/") else markdown.resolve().parent
        resolved = (base / path_part.lstrip("/")).resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{where}: points outside the repository ({resolved})")
        elif not resolved.exists():
            problems.append(f"{where}: no such file or directory ({resolved.relative_to(root)})")
    return problems


def code_paths(text: str) -> list[tuple[int, str]]:
    """(line, path) of every inline code span outside fenced blocks that is a repository path."""
    prose = _without_fences(text)
    found = []
    for match in _CODE_SPAN.finditer(prose):
        span = match.group(2).strip()
        if re.search(r"\s", span) or not span.startswith(REPO_PATH_PREFIXES):
            continue
        found.append((_line_of(prose, match.start()), span))
    return found


def _exists(root: Path, path: str) -> bool:
    pattern = re.sub(r"<[^<>/]*>", "*", path.rstrip("/"))
    if "*" in pattern or "?" in pattern or "[" in pattern:
        return any(root.glob(pattern))
    return (root / pattern).exists()


def path_problems(markdown: Path, root: Path = ROOT) -> list[str]:
    """Every repository path in inline code in `markdown` that does not exist under `root`."""
    problems = []
    for line, path in code_paths(markdown.read_text(encoding="utf-8")):
        if not _exists(root, path):
            name = markdown.relative_to(root) if markdown.is_relative_to(root) else markdown
            problems.append(f"{name}:{line}: `{path}` does not exist")
    return problems


# --- the repository's own documentation --------------------------------------------------------


def _ids(files: list[Path]) -> list[str]:
    return [str(f.relative_to(ROOT)) for f in files]


DOCS = markdown_files()


def test_the_documentation_is_found() -> None:
    assert (ROOT / "README.md").is_file()
    assert len(DOCS) > 2 and all(path.is_file() for path in DOCS)


@pytest.mark.parametrize("markdown", DOCS, ids=_ids(DOCS))
def test_relative_links_resolve_inside_the_repository(markdown: Path) -> None:
    problems = link_problems(markdown)
    assert not problems, "broken or escaping links:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("markdown", DOCS, ids=_ids(DOCS))
def test_repository_paths_in_code_exist(markdown: Path) -> None:
    problems = path_problems(markdown)
    assert not problems, "paths that are not in the repository:\n  " + "\n  ".join(problems)


# --- the checkers catch what they should (so the tests above can fail) ------------------------


def test_link_checker_reports_missing_and_escaping_links(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs" / "with space").mkdir(parents=True)
    (tmp_path / "outside.md").write_text("# outside\n")  # exists, but not in the repository
    (repo / "docs" / "there.md").write_text("# there\n")
    (repo / "docs" / "with space" / "a b.md").write_text("# a b\n")
    page = repo / "docs" / "page.md"
    page.write_text(
        "\n".join(
            [
                "# page",
                "[outside](../../outside.md) and [missing](missing.md).",
                "[fine](there.md#section), [angle](<with space/a b.md>), ![img](there.md \"title\")",
                "[web](https://example.com/x.md), [mail](mailto:a@example.com), [anchor](#page)",
                "`[in code](nowhere.md)`",
                "```",
                "[in a fence](nowhere-either.md)",
                "```",
                "[ref-ok]: there.md",
                "[ref-bad]: <gone away.md>",
                "[ref-out]: ../../outside.md#top",
                "",
            ]
        )
    )
    problems = link_problems(page, repo)
    assert len(problems) == 4, problems
    assert any("../../outside.md" in p and "outside the repository" in p and ":2:" in p for p in problems)
    assert any("missing.md" in p and "no such file" in p and ":2:" in p for p in problems)
    assert any("gone away.md" in p and "no such file" in p and ":10:" in p for p in problems)
    assert any("../../outside.md#top" in p and "outside the repository" in p and ":11:" in p for p in problems)
    assert not any("nowhere" in p for p in problems), "links in code are not links"


def test_link_checker_resolves_from_the_markdown_files_directory(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "README.md").write_text("[doc](docs/a.md) [up](../outside.md)\n")
    (repo / "docs" / "a.md").write_text("[readme](../README.md) [self](a.md) [wrong](docs/a.md)\n")
    (tmp_path / "outside.md").write_text("# outside\n")
    readme = link_problems(repo / "README.md", repo)
    assert len(readme) == 1 and "../outside.md" in readme[0] and "outside the repository" in readme[0]
    doc = link_problems(repo / "docs" / "a.md", repo)
    assert len(doc) == 1 and "docs/a.md" in doc[0] and "no such file" in doc[0]


def test_path_checker_reports_missing_paths_and_skips_build_output(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "components" / "iis").mkdir(parents=True)
    (repo / "components" / "iis" / "state.py").write_text("")
    (repo / "stacks").mkdir()
    (repo / "stacks" / "Pulumi.dev.yaml").write_text("")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_ops_a.py").write_text("")
    page = repo / "README.md"
    page.write_text(
        "`components/iis/state.py` `components/iis/` `stacks/Pulumi.<stack>.yaml` `tests/test_ops_*.py`\n"
        "`components/iis_state.py` `scripts/gone.py` `build/plan/dev/appcmd.txt` `python -m scripts.plan`\n"
        "```\ncomponents/fenced.py `components/fenced.py`\n```\n"
    )
    problems = path_problems(page, repo)
    assert len(problems) == 2, problems
    assert any("`components/iis_state.py`" in p for p in problems)
    assert any("`scripts/gone.py`" in p for p in problems)


# --- no link leaves the repository ---------------------------------------------------------------

_AUTOLINK = re.compile(r"<(?P<target>[A-Za-z][A-Za-z0-9+.-]*:[^<>\s]*)>")
_BARE_URL = re.compile(r"(?<![\w/])(?P<target>(?:https?|ftp)://[^\s<>()\[\]`]+|www\.[A-Za-z0-9-]+\.[^\s<>()\[\]`]+)", re.I)


def external_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every link that would leave the repository when the page is rendered:
    a Markdown link or reference with a URL scheme, an <autolink>, or a bare URL in prose (which
    GitHub renders as a link). Fenced blocks and code spans are examples and citations, not links."""
    prose = _without_fences(text)
    prose = _CODE_SPAN.sub(lambda m: "`" + " " * (len(m.group(0)) - 2) + "`", prose)
    found = [(line, target) for line, target in link_targets(text) if _SCHEME.match(target) or target.startswith("//")]
    for pattern in (_AUTOLINK, _BARE_URL):
        for match in pattern.finditer(prose):
            found.append((_line_of(prose, match.start()), match.group("target").rstrip(".,:;!?'\"")))  # as GitHub ends a bare URL
    return sorted(set(found))


def test_the_external_link_finder_finds_every_kind(tmp_path: Path) -> None:
    page = (
        "A [doc](https://example.org/a) and ![img](http://example.org/i.png) and <https://example.org/auto>.\n"
        "Bare: see https://example.org/bare, or www.example.org/page.\n"
        "[ref]: https://example.org/ref\n"
        "Cited, not linked: `https://example.org/cited` and [local](docs/x.md) and [anchor](#top).\n"
        "```sh\ncurl https://example.org/in-a-block\n```\n"
    )
    assert sorted(target for _, target in external_links(page)) == sorted([
        "https://example.org/a", "http://example.org/i.png", "https://example.org/auto", "https://example.org/bare",
        "www.example.org/page", "https://example.org/ref"])


@pytest.mark.parametrize("markdown", DOCS, ids=_ids(DOCS))
def test_no_link_leaves_the_repository(markdown: Path) -> None:
    """The repository stands on its own: sources are cited in code spans (`docs.flexera.com/...`),
    which read the same but are not links."""
    found = external_links(markdown.read_text(encoding="utf-8"))
    assert not found, "links that leave the repository (cite them in a code span instead):\n  " + "\n  ".join(
        f"{markdown.relative_to(ROOT)}:{line}: {target}" for line, target in found)


_FOOTNOTE_USE = re.compile(r"\[\^([^\]\s]+)\](?!:)")
_FOOTNOTE_DEFINITION = re.compile(r"^ {0,3}\[\^([^\]\s]+)\]:", re.M)


def footnote_problems(text: str) -> list[str]:
    prose = _CODE_SPAN.sub(lambda m: "`" + " " * (len(m.group(0)) - 2) + "`", _without_fences(text))
    used, defined = set(_FOOTNOTE_USE.findall(prose)), set(_FOOTNOTE_DEFINITION.findall(prose))
    return [f"[^{name}] is used but not defined" for name in sorted(used - defined)] + \
           [f"[^{name}] is defined but never used" for name in sorted(defined - used)]


def test_the_footnote_check_finds_both_mistakes() -> None:
    assert footnote_problems("A[^a] and B[^b].\n\n[^a]: `https://example.org/a`\n[^c]: `x`\n") == [
        "[^b] is used but not defined", "[^c] is defined but never used"]


@pytest.mark.parametrize("markdown", DOCS, ids=_ids(DOCS))
def test_every_footnote_is_defined_and_used(markdown: Path) -> None:
    problems = footnote_problems(markdown.read_text(encoding="utf-8"))
    assert not problems, f"{markdown.relative_to(ROOT)}: " + "; ".join(problems)
