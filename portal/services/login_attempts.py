"""Login attempts: the `state` of each sign-in, bound to the browser that started it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import session

from portal.extensions import db
from portal.models import AuthSystem, LoginAttempt
from portal.models.base import utcnow
from portal.services.secrets import SecretUnreadable, decrypt_secret, encrypt_secret
from portal.sso.errors import SettingsUnreadable, StateInvalid
from portal.urls import safe_next

#: Session key of the random browser key that login attempts are bound to.
BROWSER_SESSION_KEY = "sso_browser"
#: How long a login attempt (its `state`) stays usable.
ATTEMPT_LIFETIME = timedelta(minutes=10)
#: Open (unused, unexpired) login attempts one browser may hold; a new one drops the oldest.
MAX_OPEN_ATTEMPTS_PER_BROWSER = 5


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def attempt_of_browser(attempt: LoginAttempt, browser_key: str | None) -> bool:
    """Tell whether ``attempt`` was started by the browser holding ``browser_key``."""
    return bool(browser_key) and hmac.compare_digest(attempt.browser_hash, _digest(browser_key))


def session_browser_key() -> str | None:
    """Return the key this browser's session holds, or ``None`` when it holds none."""
    key = session.get(BROWSER_SESSION_KEY)
    return key if isinstance(key, str) and key else None


def ensure_browser_key() -> str:
    """Return this browser's key, giving its session a new random one when it has none."""
    key = session_browser_key()
    if key is None:
        key = session[BROWSER_SESSION_KEY] = secrets.token_urlsafe(32)
    return key


def record_login_attempt(
    system: AuthSystem,
    *,
    state: str,
    nonce: str,
    code_verifier: str,
    browser_key: str,
    next_path: str = "",
    is_test: bool = False,
) -> None:
    """Store a new login attempt for this browser, making room for it first.

    ``is_test`` marks an attempt started from the admin's test screen: its callback
    traces the sign-in instead of signing anyone in.
    """
    # Keep the table small: attempts are useless after ATTEMPT_LIFETIME.
    db.session.execute(
        sa.delete(LoginAttempt).where(LoginAttempt.created_at < utcnow() - timedelta(days=1))
    )
    _drop_oldest_open_attempts(_digest(browser_key), keep=MAX_OPEN_ATTEMPTS_PER_BROWSER - 1)
    db.session.add(
        LoginAttempt(
            state_hash=_digest(state),
            browser_hash=_digest(browser_key),
            auth_system_id=system.id,
            issuer=system.issuer or "",
            nonce=nonce,
            code_verifier_encrypted=encrypt_secret(code_verifier),
            next_path=safe_next(next_path, default=""),
            is_test=is_test,
        )
    )
    db.session.commit()


def _drop_oldest_open_attempts(browser_hash: str, *, keep: int) -> None:
    """Delete this browser's open attempts beyond its ``keep`` newest.

    A member with a few tabs keeps working, while one browser cannot pile up rows (a
    cookie-less flood gets a new browser key each time: the per-address limit bounds it).
    """
    stale = (
        sa.select(LoginAttempt.id)
        .where(
            LoginAttempt.browser_hash == browser_hash,
            LoginAttempt.used_at.is_(None),
            LoginAttempt.created_at >= utcnow() - ATTEMPT_LIFETIME,
        )
        .order_by(LoginAttempt.created_at.desc(), LoginAttempt.id.desc())
        .offset(keep)
    )
    ids = list(db.session.scalars(stale))
    if ids:
        db.session.execute(sa.delete(LoginAttempt).where(LoginAttempt.id.in_(ids)))


def _as_aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def consume_login_attempt(
    system: AuthSystem, state: str | None, browser_key: str | None
) -> LoginAttempt:
    """Return the attempt matching ``state`` for this browser and mark it used, or raise.

    Missing, unknown, used, expired, other-system and other-browser states are all refused
    without writing anything; a valid one is marked used atomically, so a replay (even a
    concurrent one) loses.
    """
    if not state:
        raise StateInvalid("the callback carried no state")
    attempt = db.session.scalar(
        sa.select(LoginAttempt).where(LoginAttempt.state_hash == _digest(state))
    )
    if attempt is None:
        raise StateInvalid("unknown state")
    if attempt.auth_system_id != system.id:
        raise StateInvalid("state belongs to another authentication system")
    if attempt.used_at is not None:
        raise StateInvalid("state already used")
    if utcnow() - _as_aware(attempt.created_at) > ATTEMPT_LIFETIME:
        raise StateInvalid("state expired")
    if not attempt_of_browser(attempt, browser_key):
        raise StateInvalid("state was issued to another browser session")
    claimed = db.session.execute(
        sa.update(LoginAttempt)
        .where(LoginAttempt.id == attempt.id, LoginAttempt.used_at.is_(None))
        .values(used_at=utcnow())
    )
    db.session.commit()
    if claimed.rowcount != 1:
        raise StateInvalid("state already used (concurrent callback)")
    db.session.refresh(attempt)
    return attempt


def is_test_state(state: str | None) -> bool:
    """Tell whether ``state`` belongs to an attempt started from the admin's test screen."""
    if not state:
        return False
    query = sa.select(LoginAttempt.is_test).where(LoginAttempt.state_hash == _digest(state))
    return bool(db.session.scalar(query))


def read_verifier(attempt: LoginAttempt) -> str:
    """Return the attempt's PKCE code verifier, decrypted."""
    try:
        return decrypt_secret(attempt.code_verifier_encrypted)
    except SecretUnreadable:
        raise SettingsUnreadable("PKCE verifier not decryptable (keys changed?)") from None
