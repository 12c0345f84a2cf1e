"""Reading stacks/Pulumi.<stack>.yaml safely: the one loader for stack files (scripts.plan,
scripts.doctor, `pki check --stack-config`, the tests).

``yaml.safe_load`` constructs no arbitrary objects but still expands anchors and aliases: a
few hundred bytes of nested aliases (a "billion laughs") become gigabytes once the config is
turned into Pulumi's strings. Stack files need neither, so :class:`StackLoader` refuses any
anchor (``&name``) or alias (``*name``, also the ``<<`` merge key's) at the first one, before
anything is built. The file is read through components.safe_files: a regular file of at most
4 MiB, UTF-8.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from yaml.composer import ComposerError

from .safe_files import STACK_FILE_LIMIT, read_text


class StackFileError(ValueError):
    """A stack file that cannot be used: one line, without the path."""


class StackLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors and aliases."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            raise ComposerError(
                None, None,
                "anchors and aliases (&name, *name, <<: *name) are not allowed in a stack file; write the values out",
                mark,
            )
        return super().compose_node(parent, index)


def load_stack_text(text: str) -> Any:
    """The parsed document (None for an empty one); StackFileError for invalid YAML, aliases included."""
    try:
        return yaml.load(text, Loader=StackLoader)  # noqa: S506 - StackLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise StackFileError(f"not valid YAML: {_describe(exc)}") from None


def _describe(exc: yaml.YAMLError) -> str:
    """One line: the problem, where (line, column) and its context, without the source excerpt."""
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [p for p in (exc.context, exc.problem) if p]
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return (", ".join(parts) or "unparseable") + where
    return " ".join(str(exc).split())


def read_stack_document(path: str | os.PathLike[str]) -> Any:
    """Read and parse a stack file. OSError when it cannot be opened; StackFileError (or
    safe_files.FileRefused, also a ValueError) for everything else."""
    return load_stack_text(read_text(path, STACK_FILE_LIMIT))
