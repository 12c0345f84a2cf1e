"""Run `python -m scripts.pki` in process, for the pki tests: exit code, stdout and stderr."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

from scripts.pki import cli


def pki(directory: Path, *args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    """`python -m scripts.pki --dir DIR ARGS`; `env` sets (or, with None, removes) variables for the call."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}

    def apply(values: dict[str, str | None]) -> None:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    apply(dict(env or {}))
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(["--dir", str(directory), *args])
    finally:
        apply(saved)
    return code, stdout.getvalue(), stderr.getvalue()


def ok(directory: Path, *args: str, **kw: Any) -> str:
    code, out, err = pki(directory, *args, **kw)
    assert code == 0, f"{args} -> {code}: {out}{err}"
    return out


def fails(directory: Path, *args: str, expect: str, **kw: Any) -> str:
    """Exit 2 with exactly one line on stderr containing `expect`, and no traceback."""
    code, out, err = pki(directory, *args, **kw)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pki: error: "), err
    assert expect in lines[0], lines[0]
    return lines[0]


def init_ca(directory: Path, cn: str, crl_url: str, *extra: str) -> Path:
    """`init-ca --cn CN --o "Example Corp" --crl-url URL EXTRA...` in `directory`, which it returns."""
    ok(directory, "init-ca", "--cn", cn, "--o", "Example Corp", "--crl-url", crl_url, *extra)
    return directory


def read_index(directory: Path) -> dict[str, Any]:
    """The PKI's index.json, parsed."""
    return json.loads((directory / "index.json").read_text())
