"""Hostile JSON: bodies nested too deeply for the parser (RecursionError, a 500) or for PostgreSQL's
jsonb, and NUL characters that PostgreSQL text and jsonb refuse."""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


def depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (iterative: never recurses itself)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in items)
    return deepest


def loads(text: str | bytes) -> Any:
    """json.loads that raises ValueError (never RecursionError) and refuses nesting past MAX_DEPTH."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"the JSON nests deeper than {MAX_DEPTH} levels") from None
    if depth(value) > MAX_DEPTH:
        raise ValueError(f"the JSON nests deeper than {MAX_DEPTH} levels")
    return value


def problem(value: Any) -> str:
    """Why `value` cannot be stored as JSON here ('' when it can)."""
    if depth(value) > MAX_DEPTH:
        return f"it nests deeper than {MAX_DEPTH} levels"
    try:
        if "\\u0000" in json.dumps(value):
            return "it contains a NUL character"
    except (RecursionError, ValueError, TypeError) as exc:
        return f"it cannot be written as JSON ({exc.__class__.__name__})"
    return ""
