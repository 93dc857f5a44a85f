"""A member's own profile: which fields they may edit, editing them, completing them once.

What a member types here is never trusted like a provider's value. A typed username is
marked ``member`` (it never links an account, and a provider's value takes it over); a
typed email address waits in ``email_pending`` until the member opens the confirmation
link mailed to it, so until then it matches nothing and blocks nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from flask import current_app, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import User
from portal.services import audit
from portal.services.accounts import AccountError, identifier_key, normalize_email
from portal.services.mail import send_message
from portal.sso.profile_fields import ACCOUNT_FIELDS, FIELD_LABEL
from portal.urls import absolute_url

#: Longest value of each account field (the column sizes).
MAX_LENGTH = {"username": 80, "email": 254, "first_name": 120, "last_name": 120}
#: `User.username_source` of a username the member typed.
SOURCE_MEMBER = "member"
#: How long an email confirmation link works.
EMAIL_CONFIRMATION_MAX_AGE = 24 * 3600
_EMAIL_SALT = "portal.email-confirmation"


class EmailConfirmationError(ValueError):
    """A confirmation link that cannot confirm; the message is for the member."""


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


def _check_length(key: str, value: str) -> None:
    """Refuse a value longer than the field's column."""
    if len(value) > MAX_LENGTH[key]:
        raise AccountError(f"{FIELD_LABEL[key]} must be at most {MAX_LENGTH[key]} characters.")


def _clean(key: str, raw: str | None, user: User) -> str | None:
    """Validate one submitted value; return it as stored (``None`` for an empty optional one).

    An email address is only normalized: it will wait for confirmation, so it is not
    checked against other accounts (that would tell who has an account here, and a pending
    address blocks nobody). A username must be free.
    """
    value = (raw or "").strip()
    _check_length(key, value)
    if key == "email":
        if not value:
            return None
        value = normalize_email(value)
        _check_length(key, value)
    elif key == "username":
        if not value:
            return None
        username_key = identifier_key(value)
        _check_length(key, username_key)
        other = db.session.scalar(
            sa.select(User).where(User.username_key == username_key, User.id != user.id)
        )
        if other is not None:
            raise AccountError("That username is already taken.")
    return value


def _save(user: User) -> dict[str, str]:
    """Commit; a concurrent claim of the same username becomes a field error."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return {"username": "That username was just taken; try another."}
    return {}


def _set(user: User, key: str, value: str | None) -> None:
    if key == "username":
        new_key = identifier_key(value) if value else None
        if new_key != user.username_key:
            # Typed here: never links an account, and a provider's value takes it over.
            user.username_source = SOURCE_MEMBER if value else None
        user.username = value
        user.username_key = new_key
    elif key == "email":
        if value is None:
            # Removing one's address claims nothing: no confirmation needed.
            user.email = None
            user.email_pending = None
        elif value not in (identifier_key(user.email or ""), user.email_pending):
            # Counts only once the member opens the link mailed to it.
            user.email_pending = value
    elif key in ("first_name", "last_name"):
        setattr(user, key, value or "")
    else:
        setattr(user, key, value)


def _clean_and_set(
    user: User, values: Mapping[str, str | None], errors: dict[str, str]
) -> dict[str, str]:
    """Clean ``values`` into ``errors`` and, when there are none at all, set them on ``user``."""
    cleaned: dict[str, str | None] = {}
    for key, raw in values.items():
        try:
            cleaned[key] = _clean(key, raw, user)
        except AccountError as exc:
            errors[key] = str(exc)
    if not errors:
        for key, value in cleaned.items():
            _set(user, key, value)
    return errors


def update_profile(user: User, submitted: Mapping[str, str | None]) -> dict[str, str]:
    """Apply the member's edits; return ``{field: message}`` errors (nothing saved if any).

    A field the identity provider owns is refused when its value changes, even if the page
    was tampered with to submit it. A new email address is kept pending (see
    `send_email_confirmation`).
    """
    locked = locked_fields_for(user)
    errors: dict[str, str] = {}
    values: dict[str, str | None] = {}
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
        values[key] = submitted[key]
    if _clean_and_set(user, values, errors):
        return errors
    return _save(user)


def complete_profile(user: User, submitted: Mapping[str, str | None]) -> dict[str, str]:
    """Save the fields asked on *Complete your profile*; return errors (nothing saved if any).

    Each pending field is required; once saved, the page is not shown again (an email
    address typed here still waits for its confirmation link).
    """
    errors: dict[str, str] = {}
    values: dict[str, str | None] = {}
    for key in pending_fields_for(user):
        raw = submitted.get(key)
        if not (raw or "").strip():
            errors[key] = f"{FIELD_LABEL[key]} is required."
            continue
        values[key] = raw
    if _clean_and_set(user, values, errors):
        return errors
    user.pending_fields = None
    return _save(user)


# -- email confirmation -----------------------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_EMAIL_SALT)


def email_confirmation_token(user: User) -> str:
    """Return a signed token that confirms ``user``'s pending address, and only that one."""
    return _serializer().dumps({"u": user.id, "e": user.email_pending})


def send_email_confirmation(user: User) -> bool:
    """Mail the confirmation link of ``user``'s pending address; tell whether it was sent."""
    if not user.email_pending:
        return False
    link = absolute_url(url_for("auth.confirm_email", token=email_confirmation_token(user)))
    body = (
        f"Hello,\n\nSomeone (we hope you) asked to use {user.email_pending} for the account "
        f"{user.username or user.display_name} on this site. To confirm, open this link within "
        f"24 hours and press Confirm:\n\n{link}\n\n"
        "If this wasn't you, ignore this message: the address will not be used.\n"
    )
    return send_message(user.email_pending, "Confirm your email address", body)


def read_email_confirmation(token: str) -> tuple[User, str]:
    """Return the user and the address a confirmation token is for, or raise."""
    try:
        data = _serializer().loads(token, max_age=EMAIL_CONFIRMATION_MAX_AGE)
    except SignatureExpired:
        raise EmailConfirmationError(
            "This confirmation link has expired. Open your account page to send a new one."
        ) from None
    except BadSignature:
        raise EmailConfirmationError("This confirmation link is not valid.") from None
    user = db.session.get(User, data.get("u")) if isinstance(data, dict) else None
    address = data.get("e") if isinstance(data, dict) else None
    if user is None or not address or user.email_pending != address:
        raise EmailConfirmationError(
            "This confirmation link is for an address that is no longer waiting for "
            "confirmation. Open your account page to see or send the current one."
        )
    return user, address


def confirm_email(token: str) -> User:
    """Make the pending address the account's email, unless another account now holds it."""
    user, address = read_email_confirmation(token)
    taken = EmailConfirmationError(
        "That email address is already used by another account on this site, so it cannot "
        "be confirmed for yours. Nothing was changed."
    )
    other = db.session.scalar(sa.select(User).where(User.email == address, User.id != user.id))
    if other is not None:
        raise taken
    previous = user.email
    user.email = address
    user.email_pending = None
    audit.record_event(
        audit.EMAIL_CONFIRMED,
        actor=user,
        details={"previous": previous or "", "email": address},
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise taken from None
    return user


def cancel_email_change(user: User) -> None:
    """Forget the member's pending address."""
    user.email_pending = None
    db.session.commit()
