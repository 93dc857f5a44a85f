"""JMESPath expressions that pick values out of token and profile documents."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult


@lru_cache(maxsize=512)
def _compile(expr: str) -> ParsedResult:
    return jmespath.compile(expr)


def validate_path(expr: str) -> str | None:
    """Return None when the expression is valid JMESPath, else the parser's message."""
    try:
        _compile(expr)
    except JMESPathError as exc:
        return str(exc)
    return None


def search_path(expr: str, data: Any) -> Any:
    """Evaluate a JMESPath expression against data (compiled expressions are cached)."""
    return _compile(expr).search(data)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def child_path(base: str, key: str | int) -> str:
    """Return the JMESPath of member ``key`` (a name or a list index) of the value at ``base``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    name = key if _IDENTIFIER.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{base}.{name}" if base else name


@dataclass
class PathNode:
    """One value of a JSON document, with the JMESPath that picks it."""

    key: str
    path: str
    #: ``object``, ``array``, ``string``, ``number``, ``boolean`` or ``null``.
    kind: str
    #: The value as JSON text, for leaves.
    text: str = ""
    children: list[PathNode] = field(default_factory=list)


def path_tree(doc: Any, base: str = "", key: str = "") -> PathNode:
    """Return ``doc`` as a tree of nodes, each carrying the JMESPath of its value."""
    if isinstance(doc, dict):
        children = [path_tree(v, child_path(base, str(k)), str(k)) for k, v in doc.items()]
        return PathNode(key, base, "object", children=children)
    if isinstance(doc, list):
        children = [path_tree(v, child_path(base, i), f"[{i}]") for i, v in enumerate(doc)]
        return PathNode(key, base, "array", children=children)
    if isinstance(doc, bool):
        kind = "boolean"
    elif isinstance(doc, int | float):
        kind = "number"
    elif doc is None:
        kind = "null"
    else:
        kind = "string"
    return PathNode(key, base, kind, text=json.dumps(doc, ensure_ascii=False))
