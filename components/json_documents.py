"""The one JSON reader for documents users hand the tools (`pulumi stack output --json` files,
the deployed outputs of the guard): nesting depth and duplicate keys checked, one-line errors.

`json.loads` recurses per level: 50,000 levels of `[[[` end in RecursionError, a traceback in
every tool that reads the file; duplicate keys silently keep the last value (a second
"enforcement" could hide the first from a reviewer). Both are refused here, with the reason.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # stack outputs nest three or four levels


class JsonDocumentError(ValueError):
    """A JSON document that cannot be used: one line."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise JsonDocumentError(f"duplicate key {key!r} (JSON readers differ on which one wins)")
        found[key] = value
    return found


def depth_of(value: Any) -> int:
    """Nesting depth (a scalar is 0, [] is 1), without recursion."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            todo += [(v, depth + 1) for v in item.values()]
            deepest = max(deepest, depth + 1)
        elif isinstance(item, list):
            todo += [(v, depth + 1) for v in item]
            deepest = max(deepest, depth + 1)
    return deepest


def load_json_document(text: str) -> Any:
    """The parsed document; JsonDocumentError (a ValueError) for invalid JSON, duplicate keys or
    nesting deeper than MAX_DEPTH."""
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise JsonDocumentError(f"nested deeper than {MAX_DEPTH} levels") from None
    except JsonDocumentError:
        raise
    except ValueError as exc:
        raise JsonDocumentError(str(exc)) from None
    if depth_of(value) > MAX_DEPTH:
        raise JsonDocumentError(f"nested deeper than {MAX_DEPTH} levels")
    return value
