"""Run a form's save and show the service's refusal under the field it concerns; say it saved."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import flash
from wtforms import Field

from portal.models import AuthSystem
from portal.services.auth_systems import hidden_from_members

T = TypeVar("T")


def saved(field: Field, error: type[Exception], save: Callable[[], T]) -> T | None:
    """Return what ``save`` returns, or None after showing its ``error`` under ``field``."""
    try:
        return save()
    except error as exc:
        field.errors.append(str(exc))
        return None


def flash_saved(system: AuthSystem, done: str) -> None:
    """Say the system was ``done`` (added, saved...), and warn when members still can't see it."""
    flash(f"Authentication system {system.name} {done}.", "success")
    hidden = hidden_from_members(system)
    if hidden:
        flash(f"{system.name}: {hidden}", "warning")
