"""JMESPath expressions that pick values out of token and profile documents."""

from __future__ import annotations

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
