"""Every shell command in README.md and docs/*.md runs as written, or is at least parsed (issue 23).

The blocks: fenced ```sh, ```bash and ```console blocks. Each carries a marker, an HTML comment on
the line right before its opening fence (indented like the fence):

    <!-- run -->                  run it
    <!-- run: moto -->            run it with AWS pointed at a moto server on loopback
    <!-- parse-only: REASON -->   parse it; REASON is one of PARSE_ONLY_REASONS (needs AWS, ...)

An unmarked block fails. A ```text block marked `<!-- output -->` right after a run block is
that block's expected output (stdout and stderr as a terminal shows them): line by line, a line
`...` matches any number of lines, `...` inside a line any text; trailing blanks are ignored.
A run ```console block runs its `$ ` lines, and its other lines are its expected output.

The run blocks of one page run in order in ONE bash (`set -e`), as a reader follows the page in
one terminal: files and shell variables carry over from block to block. The shell runs in a
temporary copy of the project (the files git tracks or would track, without .git, .venv and
build; .venv a symlink to this checkout's), with .venv/bin first on PATH, no AWS credentials or
configuration unless the block is `run: moto`, and no PKI_PASSWORD/PKI_CA_PASSWORD. A block
fails on a non-zero exit (the page stops there) or an output that does not match.

Every block, run or not, is also parsed: continuation lines joined, heredoc bodies skipped,
split at ; && || | &, `VAR=value` prefixes dropped, variables set earlier on the page expanded.
Each command's program must be known: a module of this project run as `.venv/bin/python -m
MODULE` (bare `python`/`python3` only on a page that runs `source .venv/bin/activate` first,
except `python3 -m venv`), whose verb and every flag must appear in `--help` of that module and
verb; a `make` target of the Makefile; a program in .venv/bin; or one of EXTERNAL_PROGRAMS.

Self-tests at the end prove each check reports what it should (so the page tests can fail).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent

SHELL_LANGS = ("sh", "bash", "console")
PARSE_ONLY_REASONS = (
    "needs AWS",  # a real account: Secrets Manager, SSM, live IIS logs, a deployed beacon
    "needs Windows",
    "needs pulumi",  # the Pulumi CLI and a backend
    "needs a device",  # runs on an enrolled device (UNIX agent host)
    "starts the emulator",  # the AWS emulator the `run: moto` blocks get from this harness
    "is the test suite",  # `make test` runs this file
    "needs the git history",  # a worktree of origin/main (the copy the run blocks get has no .git)
)
# Programs that are not this project's (their flags are not checked: they are not installed here
# or not ours). A name outside this list and outside .venv/bin is a typo or a new dependency.
EXTERNAL_PROGRAMS = frozenset({
    "aws", "pulumi", "openssl", "git", "cp", "mv", "rm", "mkdir", "cat", "sed", "diff", "chmod", "chown", "ls",
    "grep", "head", "tail", "tee", "test", "true", "false", "echo", "printf", "cd", "export", "source", ".", "set",
    "unset", "umask", "sleep", "kill", "wait", "read", "exit", "date", "jq", "curl", "tar", "gpg", "crontab",
})
SKIPPED_KEYWORDS = frozenset({"for", "case", "select"})  # `for x in a b`: no command in it
LEADING_KEYWORDS = frozenset({"if", "elif", "while", "until", "do", "then", "else", "{", "!", "time"})
CLOSING_KEYWORDS = frozenset({"done", "fi", "esac", "}"})
PROJECT_MODULE = re.compile(r"^(scripts|bench)(\.\w+)*$")
PAGE_TIMEOUT = 180  # seconds for one page's shell


# --- reading the pages ------------------------------------------------------------------------

def doc_pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^`\n]*$")
_MARKER = re.compile(r"^[ \t]*<!--\s*(?P<body>.*?)\s*-->[ \t]*$")


@dataclass
class Block:
    page: Path
    line: int  # line of the opening fence (1-based)
    lang: str
    text: str  # the content, the fence's indentation removed
    marker: str | None  # the comment's body, e.g. "run", "run: moto", "parse-only: needs AWS"
    output: str | None = None  # the expected output, if the page shows one
    output_line: int = 0

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"

    @property
    def kind(self) -> str:
        return (self.marker or "").split(":", 1)[0].strip()

    @property
    def moto(self) -> bool:
        return self.marker is not None and re.fullmatch(r"run:\s*moto", self.marker) is not None

    def commands_text(self) -> str:
        """The shell text to run or parse: for a console block its `$ ` lines (and their
        continuation lines)."""
        if self.lang != "console":
            return self.text
        lines, continuing = [], False
        for line in self.text.splitlines():
            if line.startswith("$ ") or continuing:
                lines.append(line[2:] if line.startswith("$ ") and not continuing else line)
                continuing = line.rstrip().endswith("\\")
        return "\n".join(lines) + "\n"

    def expected_output(self) -> str | None:
        if self.lang == "console":
            lines, continuing = [], False
            for line in self.text.splitlines():
                if line.startswith("$ ") or continuing:
                    continuing = line.rstrip().endswith("\\")
                    continue
                lines.append(line)
            return "\n".join(lines) + "\n" if any(line.strip() for line in lines) else self.output
        return self.output


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block of the page (any language), with the marker on the line before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE_OPEN.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body, end = [], index + 1
        while end < len(lines) and not re.fullmatch(rf"[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*", lines[end]):
            body.append(lines[end][len(indent):] if lines[end].startswith(indent) else lines[end].lstrip())
            end += 1
        previous = lines[index - 1] if index > 0 else ""
        marker = _MARKER.match(previous)
        found.append(Block(page, index + 1, opening["lang"].lower(), "\n".join(body) + "\n", marker["body"] if marker else None))
        index = end + 1
    return found


def shell_blocks(page: Path) -> list[Block]:
    """The shell blocks of a page, each with the `<!-- output -->` text block that follows it."""
    blocks, shells = fenced_blocks(page), []
    for block in blocks:
        if block.lang in SHELL_LANGS:
            shells.append(block)
        elif block.marker == "output":
            if not shells:
                raise AssertionError(f"{block.page.name}:{block.line}: an output block with no shell block before it")
            shells[-1].output, shells[-1].output_line = block.text, block.line
    return shells


def marker_problems(block: Block) -> list[str]:
    if block.marker is None:
        return [f"{block.where}: ```{block.lang} block without a marker (<!-- run -->, <!-- run: moto --> or "
                f"<!-- parse-only: REASON --> on the line before the fence)"]
    if block.marker in ("run", "run: moto") or block.moto:
        return []
    reason = re.fullmatch(r"parse-only:\s*(?P<reason>.+)", block.marker)
    if reason is None:
        return [f"{block.where}: unknown marker <!-- {block.marker} -->"]
    if reason["reason"] not in PARSE_ONLY_REASONS:
        return [f"{block.where}: parse-only reason {reason['reason']!r} is not one of {', '.join(PARSE_ONLY_REASONS)}"]
    if block.output is not None:
        return [f"{block.where}: a parse-only block has an <!-- output --> block: only run blocks are compared"]
    return []


# --- parsing commands --------------------------------------------------------------------------

_HEREDOC = re.compile(r"<<(-?)[ \t]*(['\"]?)(\w+)\2")
_OPERATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;", "|&"})
_REDIRECTS = frozenset({">", ">>", "<", ">&", "&>", "<&", "<<", "<<<", ">|", "&>>"})


def logical_lines(text: str) -> list[str]:
    """Continuation lines joined, heredoc bodies dropped (the `<<EOF` stays on its line)."""
    out, pending, heredoc = [], "", None
    for raw in text.splitlines():
        if heredoc is not None:
            if (raw.lstrip("\t") if heredoc[0] else raw) == heredoc[1]:
                heredoc = None
            continue
        if raw.rstrip().endswith("\\") and not raw.lstrip().startswith("#"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = pending + raw
        if _open_quote(line):  # a quoted string over several lines (python3 -c '...')
            pending = line + "\n"
            continue
        pending = ""
        found = _HEREDOC.search(line)
        if found:
            heredoc = (found.group(1) == "-", found.group(3))
        out.append(line)
    if pending:
        out.append(pending)
    return out


def _open_quote(line: str) -> bool:
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        list(lexer)
    except ValueError:
        return True
    return False


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of one logical line, as word lists (quotes removed)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError as exc:  # an unclosed quote
        raise ValueError(f"cannot split {line!r}: {exc}") from None
    commands, current, skip = [], [], False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token in _OPERATORS:
            if current:
                commands.append(current)
            current = []
        elif token in _REDIRECTS:
            skip = True
            if current and re.fullmatch(r"\d", current[-1]):  # 2>&1: the fd number is not an argument
                current.pop()
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


def block_commands(text: str, variables: dict[str, str] | None = None) -> Iterator[list[str]]:
    """Every simple command of a block, variables assigned earlier expanded (`variables`: those
    of the blocks before it on the page, updated with this block's)."""
    variables = {} if variables is None else variables
    for line in logical_lines(text):
        for words in split_commands(line):
            if words[0] in CLOSING_KEYWORDS or words[0] in SKIPPED_KEYWORDS:
                continue
            while words and words[0] in LEADING_KEYWORDS:
                words = words[1:]
            if words and words[0] == "export":
                words = words[1:]
                if all(_ASSIGNMENT.match(w) or re.fullmatch(r"\w+", w) for w in words):
                    variables.update(w.split("=", 1) for w in words if "=" in w)  # type: ignore[arg-type]
                    continue
            while words and _ASSIGNMENT.match(words[0]):
                name, value = words.pop(0).split("=", 1)
                if not words:
                    variables[name] = value
            if not words:
                continue
            expanded: list[str] = []
            for word in words:
                name = re.fullmatch(r"\$\{?(\w+)\}?", word)
                if name and name.group(1) in variables:
                    expanded += shlex.split(variables[name.group(1)])
                else:
                    expanded.append(word)
            yield expanded


@lru_cache(maxsize=None)
def module_help(module: str, verb: str | None = None) -> str:
    """What `python -m MODULE [VERB] --help` prints (run in this process: one import per module)."""
    argv = [module, *([verb] if verb else []), "--help"]
    saved, out = sys.argv[:], io.StringIO()
    try:
        sys.argv = argv
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    except ImportError as exc:
        return f"(cannot import {module}: {exc})"
    finally:
        sys.argv = saved
    return out.getvalue()


def help_options(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


def help_verbs(text: str) -> set[str]:
    """The sub-commands an argparse help lists under its positional arguments (4 spaces in)."""
    section = text.split("positional arguments:", 1)[1] if "positional arguments:" in text else ""
    section = re.split(r"\n\S", section, maxsplit=1)[0]
    return set(re.findall(r"^    ([a-z][\w-]*)(?=\s|$)", section, re.M)) - {"verb"}


def help_required(text: str) -> list[set[str]]:
    """The options the usage line requires: outside [brackets]; `(--a X | --b Y)` needs one of them."""
    usage = text.split("\n\n", 1)[0]
    while True:
        stripped = re.sub(r"\[[^\[\]]*\]", "", usage)
        if stripped == usage:
            break
        usage = stripped
    required = []
    for group in re.findall(r"\(([^()]*)\)", usage):
        required.append(set(re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)", group)))
    usage = re.sub(r"\([^()]*\)", "", usage)
    required += [{name} for name in re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)", usage)]
    return [names for names in required if names]


def _option(word: str) -> str | None:
    if not word.startswith("-") or word == "-" or word == "--" or re.fullmatch(r"-\d[\d.]*", word):
        return None
    return word.split("=", 1)[0]


def module_problems(module: str, args: list[str], where: str, root: Path = ROOT) -> list[str]:
    """A project module's verb and flags against its --help."""
    if not (root / Path(*module.split("."))).with_suffix(".py").is_file() and not (root / Path(*module.split(".")) / "__main__.py").is_file():
        return [f"{where}: python -m {module}: no such module in the project"]
    top = module_help(module)
    if not top.startswith("usage:"):
        return [f"{where}: python -m {module} --help printed no usage: {top.strip()[:200]}"]
    verbs = help_verbs(top)
    if "-h" in args or "--help" in args:
        return []
    problems, known, verb = [], help_options(top), None
    for position, word in enumerate(args):
        option = _option(word)
        if option is not None:
            if option not in known:
                problems.append(f"{where}: python -m {module}{' ' + verb if verb else ''}: no option {option} (per --help)")
            continue
        if verbs and verb is None and word in verbs:
            verb = word
            known = help_options(module_help(module, verb))
            continue
        if verbs and verb is None and position > 0 and _option(args[position - 1]) is None and not word.isupper():
            problems.append(f"{where}: python -m {module}: {word!r} is not one of its verbs ({', '.join(sorted(verbs))})")
            break
    if verbs and verb is None and not problems:
        problems.append(f"{where}: python -m {module}: no verb ({', '.join(sorted(verbs))})")
    if not problems and (not verbs or verb):
        given = {_option(word) for word in args}
        for names in help_required(module_help(module, verb) if verb else top):
            if not names & given:
                problems.append(f"{where}: python -m {module}{' ' + verb if verb else ''}: {' or '.join(sorted(names))} "
                                f"is required (per --help)")
    return problems


@lru_cache(maxsize=None)
def make_targets(root: Path = ROOT) -> frozenset[str]:
    text = (root / "Makefile").read_text(encoding="utf-8")
    variables = dict(re.findall(r"^(\w+)\s*:=\s*(\S+)\s*$", text, re.M))
    targets = set()
    for target in re.findall(r"^([^\s:#=][^:=]*?):(?!=)", text, re.M):
        for name in target.split():
            targets.add(re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), name))
    return frozenset(targets)


def command_problems(words: list[str], where: str, activated: bool, root: Path = ROOT) -> list[str]:
    program, args = words[0], words[1:]
    venv = re.fullmatch(r"(?:\$\w+|\$\{\w+\}|\S*)/\.venv/bin/(\w+)", program)  # "$repo/.venv/bin/python"
    if venv:
        program = f".venv/bin/{venv.group(1)}"
    if program in ("python", "python3") and not activated:
        if args[:2] == ["-m", "venv"]:
            return []
        return [f"{where}: `{program} ...` runs the system Python: write .venv/bin/python (or `source .venv/bin/activate` "
                f"at the top of the page)"]
    if program in (".venv/bin/python", "python", "python3"):
        if args[:1] == ["-m"] and len(args) > 1:
            module = args[1]
            if PROJECT_MODULE.match(module):
                return module_problems(module, args[2:], where, root)
            return []
        return []  # -c, -, a script file: the run blocks execute them
    if program == "make":
        missing = [t for t in args if not t.startswith("-") and "=" not in t and t not in make_targets(root)]
        return [f"{where}: make {t}: no such target in the Makefile" for t in missing]
    if program.startswith(".venv/bin/"):
        return [] if (ROOT / program).exists() else [f"{where}: {program}: not in .venv/bin"]
    if program.startswith("policy/venv/bin/"):
        return []  # made by `python3 -m venv policy/venv` on the same page
    if program in EXTERNAL_PROGRAMS or program.startswith(("./", "/")):
        return []
    return [f"{where}: unknown program {program!r} (a typo, or add it to EXTERNAL_PROGRAMS)"]


def parse_problems(block: Block, activated: bool, root: Path = ROOT, variables: dict[str, str] | None = None) -> list[str]:
    text = block.commands_text()
    syntax = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    if syntax.returncode != 0:
        return [f"{block.where}: bash -n: {syntax.stderr.strip()}"]
    problems = []
    try:
        for words in block_commands(text, variables):
            problems += command_problems(words, block.where, activated, root)
    except ValueError as exc:
        problems.append(f"{block.where}: {exc}")
    return problems


def page_activates_venv(blocks: list[Block]) -> bool:
    return any(re.search(r"^\s*(source|\.) \.venv/bin/activate\b", b.commands_text(), re.M) for b in blocks[:1])


# --- running them ------------------------------------------------------------------------------

# Without git: what .gitignore keeps out of a clone (build output, virtualenvs, the PKI, caches).
_NOT_COPIED = frozenset({".git", ".venv", "venv", "build", "__pycache__", ".pytest_cache", ".hypothesis"})
_NOT_COPIED_AT_THE_TOP = frozenset({"pki", "mutants"})


def project_files(root: Path) -> list[str]:
    """What a clone holds (plus files not committed yet): git's tracked and untracked files that are
    not ignored; without git (an unpacked archive), every file outside the directories .gitignore
    names."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        return sorted({name for name in listed.stdout.split("\0") if name and (root / name).is_file()})
    names = []
    for folder, dirs, files in os.walk(root):
        top = Path(folder) == root
        dirs[:] = [d for d in dirs if d not in _NOT_COPIED and not (top and d in _NOT_COPIED_AT_THE_TOP)]
        names += [str(Path(folder).relative_to(root) / f) for f in files if not f.endswith(".pyc")]
    return sorted(names)


def project_copy(root: Path, dest: Path) -> Path:
    """A copy of the project without .git, .venv and build; .venv a symlink to root's. Times are
    kept, so make sees .venv as up to date (no pip install)."""
    for name in project_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
        # Its bytecode too (still valid: copy2 keeps the source's time), so the page's many
        # `python -m scripts...` runs do not each compile the project again.
        compiled = Path(importlib.util.cache_from_source(str(root / name))) if name.endswith(".py") else None
        if compiled is not None and compiled.is_file():
            (target.parent / "__pycache__").mkdir(exist_ok=True)
            shutil.copy2(compiled, target.parent / "__pycache__" / compiled.name)
    if (root / ".venv").exists():
        (dest / ".venv").symlink_to(root / ".venv")
    return dest


def base_env(home: Path) -> dict[str, str]:
    # A reader's shell is not inside make: under `make test` MAKELEVEL/MAKEFLAGS would make a page's
    # `make plan` print "Entering directory" lines the page does not show.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PKI_", "PULUMI_", "PYTEST_", "FLEXNET_", "MAKE", "MFLAGS"))}
    env.update({
        "HOME": str(home),
        "PATH": f".venv/bin{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONUNBUFFERED": "1",  # stdout and stderr in the order a terminal shows them
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "COLUMNS": "200",
    })
    return env


def moto_exports(endpoint: str) -> str:
    """What the page's emulator block exports (docs/first-deploy.md), for a server of the harness."""
    return (f"export AWS_ENDPOINT_URL={shlex.quote(endpoint)} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
            f"AWS_DEFAULT_REGION=us-east-1\n")


_MOTO_VARS = "AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION"


def page_script(blocks: list[Block], logs: Path, endpoint: str | None) -> str:
    """One bash script for the page's run blocks: each block's output into its own file, the
    number of the block running into logs/current."""
    parts = ["set -e"]
    for number, block in enumerate(blocks):
        env = moto_exports(endpoint) if block.moto and endpoint else f"unset {_MOTO_VARS}\n"
        parts.append(f"echo {number} > {shlex.quote(str(logs / 'current'))}\n{env}"
                     f"{{\n{block.commands_text()}\n}} > {shlex.quote(str(logs / f'{number}.log'))} 2>&1")
    parts.append(f"echo done > {shlex.quote(str(logs / 'current'))}")
    return "\n".join(parts) + "\n"


def output_matches(expected: str, got: str) -> bool:
    """Line by line: `...` alone matches any lines, `...` inside a line any text."""
    want = [line.rstrip() for line in expected.strip("\n").splitlines()]
    have = [line.rstrip() for line in got.strip("\n").splitlines()]
    pattern = "".join("(?:.*\\n)*?" if line == "..." else ".*".join(map(re.escape, line.split("..."))) + "\\n" for line in want)
    return re.fullmatch(pattern, "".join(line + "\n" for line in have)) is not None


@dataclass
class PageRun:
    problems: list[str] = field(default_factory=list)
    outputs: dict[int, str] = field(default_factory=dict)


def run_page(blocks: list[Block], root: Path = ROOT, endpoint: str | None = None) -> PageRun:
    result = PageRun()
    runnable = [b for b in blocks if b.kind == "run"]
    if not runnable:
        return result
    with tempfile.TemporaryDirectory(prefix="docs-commands-") as temp:
        temp_path = Path(temp)
        project = project_copy(root, temp_path / "project")
        logs = temp_path / "logs"
        logs.mkdir()
        (temp_path / "home").mkdir()
        script = temp_path / "page.sh"
        script.write_text(page_script(runnable, logs, endpoint), encoding="utf-8")
        try:
            done = subprocess.run(["bash", str(script)], cwd=project, env=base_env(temp_path / "home"),
                                  capture_output=True, text=True, timeout=PAGE_TIMEOUT)
            code: int | str = done.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {PAGE_TIMEOUT} s"
        current = (logs / "current").read_text().strip() if (logs / "current").exists() else "0"
        for number, block in enumerate(runnable):
            log = logs / f"{number}.log"
            got = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            result.outputs[number] = got
            if current != "done" and int(current) == number:
                tail = "\n    ".join(got.splitlines()[-30:])
                result.problems.append(f"{block.where}: exit {code} (the page stops here):\n    {tail}")
                break
            expected = block.expected_output()
            if expected is not None and not output_matches(expected, got):
                result.problems.append(f"{block.where}: output differs from the page's (line {block.output_line or block.line}):\n"
                                       f"--- expected\n{expected}--- got\n{got}")
    return result


# --- the moto server for `run: moto` blocks -------------------------------------------------------

_moto: dict[str, str] = {}


def moto_server() -> str:
    """One moto server on 127.0.0.1 for the `run: moto` pages (reset for each page)."""
    if "endpoint" not in _moto:
        sys.path.insert(0, str(ROOT))
        from tests.ops_fixtures.support import moto_endpoint  # starts moto[server] once per run

        _moto["endpoint"] = moto_endpoint()
    from tests.ops_fixtures.support import reset_moto

    reset_moto()
    return _moto["endpoint"]


# --- the repository's own pages ------------------------------------------------------------------

PAGES = doc_pages()


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def page_problems(page: Path) -> list[str]:
    blocks = shell_blocks(page)
    problems: list[str] = []
    for block in blocks:
        problems += marker_problems(block)
    activated, variables = page_activates_venv(blocks), {}  # one shell per page: variables carry over
    for block in blocks:
        problems += parse_problems(block, activated, variables=variables)
    return problems


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_block_is_marked_and_parses(page: Path) -> None:
    problems = page_problems(page)
    assert not problems, "\n".join(problems)


RUN_PAGES = [p for p in PAGES if any(b.kind == "run" for b in shell_blocks(p))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=_id)
def test_run_blocks_run_as_written(page: Path) -> None:
    blocks = shell_blocks(page)
    endpoint = moto_server() if any(b.moto for b in blocks) else None
    problems = run_page(blocks, endpoint=endpoint).problems
    assert not problems, "\n".join(problems)


def test_the_pages_run_something_and_the_first_deploy_page_runs_against_moto() -> None:
    """The harness is not vacuous: pages run blocks, and the newcomer's page goes through moto."""
    assert len(RUN_PAGES) >= 3
    first = ROOT / "docs" / "first-deploy.md"
    assert first in RUN_PAGES and any(b.moto for b in shell_blocks(first))


# --- the checks catch what they should -----------------------------------------------------------

def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_unmarked_and_unknown_markers_are_reported(tmp_path: Path) -> None:
    page = _page(tmp_path, "```sh\necho a\n```\n\n<!-- parse-only: needs coffee -->\n```bash\necho b\n```\n"
                           "<!-- run -->\n```sh\necho c\n```\n<!-- parse-only: needs AWS -->\n```console\n$ aws s3 ls\n```\n")
    problems = [p for b in shell_blocks(page) for p in marker_problems(b)]
    assert len(problems) == 2 and "page.md:1: ```sh block without a marker" in problems[0] and "needs coffee" in problems[1]


def test_parse_checks_flags_verbs_venv_make_and_programs(tmp_path: Path) -> None:
    text = (
        "<!-- parse-only: needs AWS -->\n```sh\n"
        'P=".venv/bin/python -m scripts.pki --dir pki"\n'
        "$P init-ca --cn X --no-such-flag\n"  # unknown flag of the verb
        "$P frobnicate\n"  # unknown verb
        "python -m scripts.plan --stack dev\n"  # system Python
        ".venv/bin/python -m scripts.ops --stack-outputs f.json \\\n    readiness --stack pilot --min-ready 98\n"  # fine
        "make plan STACK=pilot && make no-such-target\n"
        "pyhton3 -m scripts.plan\n"
        ".venv/bin/python -m scripts.ops --stack-outputs f.json publish-server-cert x.pfx\n"  # --stack is required
        "cat <<'EOF' > x\nnot --a command\nEOF\n"
        "python3 -m venv policy/venv && policy/venv/bin/pip install -r policy/requirements.txt\n"
        "```\n"
    )
    problems = parse_problems(shell_blocks(_page(tmp_path, text))[0], activated=False)
    assert len(problems) == 6, problems
    assert "no option --no-such-flag" in problems[0] and "init-ca" in problems[0]
    assert "'frobnicate' is not one of its verbs" in problems[1]
    assert "runs the system Python" in problems[2]
    assert "make no-such-target" in problems[3]
    assert "unknown program 'pyhton3'" in problems[4]
    assert "publish-server-cert: --stack is required (per --help)" in problems[5]
    assert parse_problems(shell_blocks(_page(tmp_path, text.replace("python -m scripts.plan", "python -m scripts.plan -h")))[0], activated=True)[:1] \
        == [problems[0]]  # activated: python is the venv's


def test_run_reports_a_failing_block_and_a_wrong_output(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "Makefile").write_text("all:\n", encoding="utf-8")
    (root / "data.txt").write_text("one\n", encoding="utf-8")
    page = _page(tmp_path, "<!-- run -->\n```sh\nX=kept\ncat data.txt\necho two >> data.txt\n```\n"
                           "<!-- output -->\n```text\none\n```\n"
                           "<!-- run -->\n```sh\necho \"$X\"; cat data.txt; ls .venv >/dev/null 2>&1 || echo no-venv\n```\n"
                           "<!-- output -->\n```text\nkept\n...\nno-venv\n```\n"
                           "<!-- run -->\n```console\n$ echo three\nfour\n```\n"
                           "<!-- run -->\n```sh\nfalse\necho never\n```\n<!-- run -->\n```sh\necho after\n```\n")
    outcome = run_page(shell_blocks(page), root=root)
    assert outcome.outputs[0] == "one\n" and outcome.outputs[1] == "kept\none\ntwo\nno-venv\n"
    assert len(outcome.problems) == 2, outcome.problems
    assert "page.md:22: output differs" in outcome.problems[0] and "three" in outcome.problems[0]
    assert outcome.problems[1].startswith("page.md:27: exit 1 (the page stops here)")
    assert 4 not in outcome.outputs  # nothing after the failing block ran


def test_output_matching() -> None:
    assert output_matches("a\n...\nd\n", "a\nb\nc\nd\n") and output_matches("a\n...\nb", "a\nb\n")
    assert output_matches("wrote ... files\n", "wrote 11 files   \n")
    assert not output_matches("a\nb\n", "a\nb\nc\n") and not output_matches("x ... y", "x z\n")


# --- commands in the stack files' comments -----------------------------------------------------

def stack_comment_commands(root: Path = ROOT) -> list[tuple[str, str]]:
    """(stack file, command) for every `.venv/bin/python -m ...` line in a stack file's comments."""
    found = []
    for path in sorted((root / "stacks").glob("Pulumi.*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            command = re.match(r"^\s*#\s*(\.venv/bin/python -m \S.*)$", line)
            if command:
                found.append((path.name, command.group(1).strip()))
    return found


def test_commands_in_stack_file_comments_parse_and_a_page_runs_them() -> None:
    """A stack file's comment tells the reader what to run (the pilot's: its readiness report):
    its program and flags must exist, and a page of the docs runs it exactly (issue 23)."""
    commands = stack_comment_commands()
    assert any(name == "Pulumi.pilot.yaml" for name, _ in commands)
    run_text = "\n".join(b.commands_text() for page in RUN_PAGES for b in shell_blocks(page) if b.kind == "run")
    for name, command in commands:
        problems = [p for words in block_commands(command) for p in command_problems(words, name, activated=False)]
        assert not problems, problems
        assert command in run_text, f"{name}: `{command}` is run by no page"
