"""Load the object a URL names, or answer 404: the one "get or 404" of the views."""

from __future__ import annotations

from typing import TypeVar

from flask import abort

T = TypeVar("T")


def found_or_404(obj: T | None) -> T:
    """Return ``obj``, or answer 404 Not Found when the lookup found nothing."""
    if obj is None:
        abort(404)
    return obj
