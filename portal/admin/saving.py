"""Run a form's save and show the service's refusal under the field it concerns."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from wtforms import Field

T = TypeVar("T")


def saved(field: Field, error: type[Exception], save: Callable[[], T]) -> T | None:
    """Return what ``save`` returns, or None after showing its ``error`` under ``field``."""
    try:
        return save()
    except error as exc:
        field.errors.append(str(exc))
        return None
