"""A member's own profile: which fields they may edit, editing them, completing them once."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import User
from portal.services.accounts import AccountError, normalize_email
from portal.sso.engine import ACCOUNT_FIELDS, FIELD_LABEL

#: Longest value of each account field (the column sizes).
MAX_LENGTH = {"username": 80, "email": 254, "first_name": 120, "last_name": 120}


def locked_fields_for(user: User) -> set[str]:
    """Return the fields an identity provider owns for this user (read-only here)."""
    locked: set[str] = set()
    for identity in user.identities:
        locked.update(identity.locked_fields or [])
    return locked & set(ACCOUNT_FIELDS)


def pending_fields_for(user: User) -> list[str]:
    """Return the fields the user still has to supply on *Complete your profile*, in form order."""
    pending = set(user.pending_fields or [])
    return [key for key in ACCOUNT_FIELDS if key in pending]


def _clean(key: str, raw: str | None, user: User) -> str | None:
    """Validate one submitted value; return it as stored (``None`` for an empty optional one)."""
    value = (raw or "").strip()
    label = FIELD_LABEL[key]
    if len(value) > MAX_LENGTH[key]:
        raise AccountError(f"{label} must be at most {MAX_LENGTH[key]} characters.")
    if key == "email":
        if not value:
            return None
        value = normalize_email(value)
        other = db.session.scalar(sa.select(User).where(User.email == value, User.id != user.id))
        if other is not None:
            raise AccountError("That email address is already used by another account.")
    elif key == "username":
        if not value:
            return None
        other = db.session.scalar(
            sa.select(User).where(User.username_key == value.lower(), User.id != user.id)
        )
        if other is not None:
            raise AccountError("That username is already taken.")
    return value


def _save(user: User) -> dict[str, str]:
    """Commit; a concurrent claim of the same username or email becomes a field error."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return {"username": "That username or email address was just taken; try another."}
    return {}


def _set(user: User, key: str, value: str | None) -> None:
    if key == "username":
        user.username = value
        user.username_key = value.lower() if value else None
    elif key in ("first_name", "last_name"):
        setattr(user, key, value or "")
    else:
        setattr(user, key, value)


def update_profile(user: User, submitted: Mapping[str, str | None]) -> dict[str, str]:
    """Apply the member's edits; return ``{field: message}`` errors (nothing saved if any).

    A field the identity provider owns is refused when its value changes, even if the page
    was tampered with to submit it.
    """
    locked = locked_fields_for(user)
    errors: dict[str, str] = {}
    cleaned: dict[str, str | None] = {}
    for key in ACCOUNT_FIELDS:
        if key not in submitted:
            continue
        current = getattr(user, key) or ""
        if key in locked:
            if (submitted[key] or "").strip() != current:
                errors[key] = (
                    f"{FIELD_LABEL[key]} is managed by your identity provider; change it there."
                )
            continue
        try:
            cleaned[key] = _clean(key, submitted[key], user)
        except AccountError as exc:
            errors[key] = str(exc)
    if errors:
        return errors
    for key, value in cleaned.items():
        _set(user, key, value)
    return _save(user)


def complete_profile(user: User, submitted: Mapping[str, str | None]) -> dict[str, str]:
    """Save the fields asked on *Complete your profile*; return errors (nothing saved if any).

    Each pending field is required; once saved, the page is not shown again.
    """
    errors: dict[str, str] = {}
    cleaned: dict[str, str | None] = {}
    for key in pending_fields_for(user):
        raw = submitted.get(key)
        if not (raw or "").strip():
            errors[key] = f"{FIELD_LABEL[key]} is required."
            continue
        try:
            cleaned[key] = _clean(key, raw, user)
        except AccountError as exc:
            errors[key] = str(exc)
    if errors:
        return errors
    for key, value in cleaned.items():
        _set(user, key, value)
    user.pending_fields = None
    return _save(user)
