"""Reading stacks/Pulumi.<stack>.yaml safely: the one loader for stack files (scripts.plan,
scripts.doctor, `pki check --stack-config`, the tests).

``yaml.safe_load`` constructs no arbitrary objects but still expands anchors and aliases: a
few hundred bytes of nested aliases (a "billion laughs") become gigabytes once the config is
turned into Pulumi's strings. Stack files need neither, so :class:`StackLoader` refuses any
anchor (``&name``) or alias (``*name``, also the ``<<`` merge key's) at the first one, before
anything is built. Nesting deeper than MAX_DEPTH (a stack's structured values need a few
levels; 50,000 levels of `[[[` ended in RecursionError) and duplicate keys (YAML keeps the last
silently) are refused the same way, and so is a document that is not a mapping, or whose
`config` is not one. The file is read through components.safe_files: a regular file of at most
4 MiB, UTF-8.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from .safe_files import STACK_FILE_LIMIT, read_text


class StackFileError(ValueError):
    """A stack file that cannot be used: one line, without the path."""


MAX_DEPTH = 32


class StackLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors and aliases, deep nesting and duplicate keys."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            raise ComposerError(
                None, None,
                "anchors and aliases (&name, *name, <<: *name) are not allowed in a stack file; write the values out",
                mark,
            )
        if self._depth >= MAX_DEPTH:  # refused before the recursion goes deeper
            raise ComposerError(None, None, f"values nested deeper than {MAX_DEPTH} levels; a stack file needs a few", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the constructor names it
                break
            if duplicate:
                raise ConstructorError(None, None, f"duplicate key {key!r} (YAML would keep only the last)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_stack_text(text: str) -> Any:
    """The parsed document (None for an empty one); StackFileError for invalid YAML, aliases included."""
    try:
        document = yaml.load(text, Loader=StackLoader)  # noqa: S506 - StackLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise StackFileError(f"not valid YAML: {_describe(exc)}") from None
    if document is not None and not isinstance(document, dict):
        raise StackFileError(f"the document is a {_kind(document)}; expected a mapping (config:, and optionally secretsprovider: ...)")
    config = (document or {}).get("config")
    if config is not None and not isinstance(config, dict):
        raise StackFileError(f"config is {_kind(config)} {_short(config)}; expected a mapping of key: value lines (flexnet-beacon:key: value)")
    return document


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
