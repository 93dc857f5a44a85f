"""Local accounts: create, authenticate, promote; teams."""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db
from portal.models import ROLE_MANAGER, ROLE_MEMBER, Team, User
from portal.models.base import utcnow


class AccountError(ValueError):
    """Bad input for an account operation; the message is for the person who typed it."""


@dataclass
class NewUser:
    """What is needed to create a local account."""

    email: str
    password: str
    username: str | None = None
    first_name: str = ""
    last_name: str = ""
    role: str = ROLE_MEMBER


def identifier_key(value: str) -> str:
    """Return the form under which an email address or username is compared and stored.

    Unicode NFKC plus case folding, so that look-alikes which ``lower()`` keeps apart (or
    merges only one way) compare equal: U+212A KELVIN SIGN is the letter k, full-width
    letters are letters, ``ß`` is ``ss``. NFKC is applied again after folding because
    folding can produce characters NFKC would have composed.
    """
    folded = unicodedata.normalize("NFKC", value.strip()).casefold()
    return unicodedata.normalize("NFKC", folded)


def normalize_email(email: str) -> str:
    """Validate an email address's syntax and return its comparison key (`identifier_key`)."""
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise AccountError(f"Email address is not valid: {exc}") from exc
    return identifier_key(result.normalized)


def get_user_by_email(email: str) -> User | None:
    """Return the user with this email address (compared by `identifier_key`)."""
    return db.session.scalar(sa.select(User).where(User.email == identifier_key(email)))


def get_user_by_username(username: str) -> User | None:
    """Return the user with this username (compared by `identifier_key`)."""
    return db.session.scalar(sa.select(User).where(User.username_key == identifier_key(username)))


def create_user(data: NewUser) -> User:
    """Create a local account, refusing duplicates with a clear message."""
    email = normalize_email(data.email)
    if len(data.password) < 8:
        raise AccountError("Password must be at least 8 characters.")
    if data.role not in (ROLE_MEMBER, ROLE_MANAGER):
        raise AccountError(f"Unknown role {data.role!r}.")
    if get_user_by_email(email):
        raise AccountError(f"An account with the email address {email} already exists.")
    username = (data.username or email.split("@")[0]).strip()
    if get_user_by_username(username):
        raise AccountError(f"The username {username} is already taken.")
    user = User(
        email=email,
        username=username,
        username_key=identifier_key(username),
        # Created by a community manager (admin or CLI): trusted like a provider's value.
        username_source="manager",
        first_name=data.first_name.strip(),
        last_name=data.last_name.strip(),
        role=data.role,
    )
    user.set_password(data.password)
    db.session.add(user)
    db.session.commit()
    return user


@dataclass(frozen=True)
class LocalSignIn:
    """The outcome of a local sign-in: the account the email names (if any) and the verdict."""

    user: User | None
    ok: bool
    #: ``signed_in``, ``unknown_account``, ``no_password``, ``members_not_allowed`` or
    #: ``wrong_password`` (for the audit log; the page says the same for every failure).
    reason: str


@cache
def dummy_password_hash() -> str:
    """Return a hash of a random password, made like real ones (same method and cost)."""
    return generate_password_hash(secrets.token_urlsafe(16))


def authenticate_local(email: str, password: str, *, members_allowed: bool = True) -> LocalSignIn:
    """Check an email and password against the local accounts, in the same time for all.

    An unknown email, an account without a password, and (when ``members_allowed`` is false,
    under *Remote Login Only*) a member's account are checked against a dummy hash, so the
    time taken tells nothing; the role is decided before the password, so a member's right
    and wrong passwords get the same answer.
    """
    user = get_user_by_email(email)
    if user is None:
        reason = "unknown_account"
    elif not user.password_hash:
        reason = "no_password"
    elif not members_allowed and not user.is_manager:
        reason = "members_not_allowed"
    else:
        reason = ""
    if reason:
        check_password_hash(dummy_password_hash(), password)
        return LocalSignIn(user, False, reason)
    assert user is not None and user.password_hash
    if not check_password_hash(user.password_hash, password):
        return LocalSignIn(user, False, "wrong_password")
    return LocalSignIn(user, True, "signed_in")


def record_login(user: User) -> None:
    """Stamp the user's last sign-in time."""
    user.last_login_at = utcnow()
    db.session.commit()


def create_team(name: str) -> Team:
    """Create a team with a unique (case-insensitive) name."""
    name = name.strip()
    if not name:
        raise AccountError("Team name is required.")
    if len(name) > 120:
        raise AccountError("Team name must be at most 120 characters.")
    if db.session.scalar(sa.select(Team).where(Team.name_key == name.lower())):
        raise AccountError(f"A team named {name} already exists.")
    team = Team(name=name, name_key=name.lower())
    db.session.add(team)
    db.session.commit()
    return team


def rename_team(team: Team, name: str) -> Team:
    """Rename a team, keeping names unique."""
    name = name.strip()
    if not name:
        raise AccountError("Team name is required.")
    clash = db.session.scalar(
        sa.select(Team).where(Team.name_key == name.lower(), Team.id != team.id)
    )
    if clash:
        raise AccountError(f"A team named {name} already exists.")
    team.name, team.name_key = name, name.lower()
    db.session.commit()
    return team


def delete_team(team: Team) -> None:
    """Delete a team; systems that onboarded into it stop onboarding."""
    db.session.delete(team)
    db.session.commit()


def list_teams() -> list[Team]:
    """Return every team, by name."""
    return list(db.session.scalars(sa.select(Team).order_by(Team.name_key)))
