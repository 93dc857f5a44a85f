"""Login attempts: the `state` of each sign-in, bound to the browser that started it."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from flask import session

from portal.database import (
    COMMIT_WITHOUT_WAITING,
    PlainStatement,
    commit_keeping_loaded,
    plain_connection,
    single_statements,
)
from portal.extensions import db
from portal.models import AuthSystem, LoginAttempt, SettingsVersion
from portal.models.base import utcnow
from portal.models.settings_version import SETTINGS_VERSION_ID
from portal.services.secrets import SecretUnreadable, decrypt_secret, encrypt_secret
from portal.services.settings_snapshot import SystemSettings
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


#: Session key of the ids of the attempts this browser started and has not finished.
OPEN_ATTEMPTS_SESSION_KEY = "sso_open"


def record_login_attempt(
    system: AuthSystem | SystemSettings,
    *,
    state: str,
    nonce: str,
    code_verifier: str,
    browser_key: str,
    next_path: str = "",
    is_test: bool = False,
) -> RecordedAttempt:
    """Store a new login attempt for this browser: one INSERT, and one DELETE past the cap.

    ``is_test`` marks an attempt started from the admin's test screen: its callback
    traces the sign-in instead of signing anyone in. Expired attempts are purged off the
    sign-in path (`purge_expired_attempts`). The INSERT also reads the settings version,
    handed back with the new attempt's id.
    """
    browser_hash = _digest(browser_key)
    # One INSERT that hands back the new id, committed by itself, on the driver's cursor.
    with plain_connection() as connection:
        (row,) = connection.run(
            _INSERT_ATTEMPT,
            {
                "p_state_hash": _digest(state),
                "p_browser_hash": browser_hash,
                "p_auth_system_id": system.id,
                "p_issuer": system.issuer or "",
                "p_nonce": nonce,
                "p_code_verifier_encrypted": encrypt_secret(code_verifier),
                "p_next_path": safe_next(next_path, default=""),
                "p_is_test": is_test,
                "p_created_at": utcnow(),
            },
        )
        connection.commit()
    # Rarely anything to do: a browser past the cap, or the purge's turn.
    if _drop_oldest_open_attempts(row["id"], browser_hash=browser_hash) | _purge_now_and_then():
        commit_keeping_loaded()
    return RecordedAttempt(row["id"], row["settings_version"])


class RecordedAttempt(NamedTuple):
    """A login attempt just stored, and the settings version its INSERT read."""

    id: int
    settings_version: int | None


_ATTEMPTS = LoginAttempt.__table__
_INSERTED_COLUMNS = (
    "state_hash",
    "browser_hash",
    "auth_system_id",
    "issuer",
    "nonce",
    "code_verifier_encrypted",
    "next_path",
    "is_test",
    "created_at",
)
#: The settings version, read by the attempt's INSERT and by its claim themselves: neither the
#: start nor the callback needs a read of its own to know whether its settings snapshot is
#: current (`confirm_snapshot`).
_CURRENT_SETTINGS_VERSION = (
    sa.select(SettingsVersion.version)
    .where(SettingsVersion.id == SETTINGS_VERSION_ID)
    .scalar_subquery()
    .label("settings_version")
)
_INSERT_ATTEMPT = PlainStatement(
    sa.insert(_ATTEMPTS)
    .values({name: sa.bindparam(f"p_{name}") for name in _INSERTED_COLUMNS})
    .returning(_ATTEMPTS.c.id, _CURRENT_SETTINGS_VERSION, COMMIT_WITHOUT_WAITING),
    columns=[_ATTEMPTS.c.id, _CURRENT_SETTINGS_VERSION, COMMIT_WITHOUT_WAITING],
)
_DELETE_OPEN_ATTEMPT = PlainStatement(
    sa.delete(_ATTEMPTS).where(
        _ATTEMPTS.c.id == sa.bindparam("p_id"), _ATTEMPTS.c.used_at.is_(None)
    )
)


def drop_login_attempt(attempt_id: int) -> None:
    """Delete an attempt nobody used (started on settings that changed meanwhile)."""
    with plain_connection() as connection:
        connection.run(_DELETE_OPEN_ATTEMPT, {"p_id": attempt_id})
        connection.commit()
    _forget_open_attempt(attempt_id)


def _drop_oldest_open_attempts(new_id: int, *, browser_hash: str) -> bool:
    """Keep this browser's open attempts to the cap: the oldest goes when a new one is started.

    The session lists the ids of the attempts this browser started, so a member with a few
    tabs keeps working and nothing is read to enforce it; one browser cannot pile up rows (a
    cookie-less flood gets a new browser key each time: the per-address limit bounds it).
    """
    listed = session.get(OPEN_ATTEMPTS_SESSION_KEY)
    open_ids = [i for i in listed if isinstance(i, int)] if isinstance(listed, list) else []
    open_ids.append(new_id)
    stale, keep = (
        open_ids[:-MAX_OPEN_ATTEMPTS_PER_BROWSER],
        open_ids[-MAX_OPEN_ATTEMPTS_PER_BROWSER:],
    )
    if stale:
        db.session.execute(
            sa.delete(LoginAttempt).where(
                LoginAttempt.id.in_(stale),
                LoginAttempt.browser_hash == browser_hash,
                LoginAttempt.used_at.is_(None),
            ),
            bind_arguments=single_statements(),
        )
    session[OPEN_ATTEMPTS_SESSION_KEY] = keep
    return bool(stale)


def _forget_open_attempt(attempt_id: int) -> None:
    listed = session.get(OPEN_ATTEMPTS_SESSION_KEY)
    if isinstance(listed, list) and attempt_id in listed:
        session[OPEN_ATTEMPTS_SESSION_KEY] = [i for i in listed if i != attempt_id]


#: How often each process deletes attempts a day old, in the transaction of a new one.
PURGE_INTERVAL_S = 600.0
_next_purge = time.monotonic() + PURGE_INTERVAL_S
_purge_lock = threading.Lock()


def _purge_now_and_then() -> bool:
    """Delete attempts a day old, at most once per interval per process (not per sign-in)."""
    global _next_purge
    with _purge_lock:
        if time.monotonic() < _next_purge:
            return False
        _next_purge = time.monotonic() + PURGE_INTERVAL_S
    db.session.execute(
        sa.delete(LoginAttempt).where(LoginAttempt.created_at < utcnow() - timedelta(days=1))
    )
    return True


def purge_expired_attempts(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete attempts older than ``older_than`` (used or not); return how many."""
    result = db.session.execute(
        sa.delete(LoginAttempt).where(LoginAttempt.created_at < utcnow() - older_than)
    )
    db.session.commit()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _as_aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class StateOfTestRun(StateInvalid):
    """The state belongs to a *Test this configuration* run: its callback is the test's."""


def claim_login_attempt(
    system: AuthSystem | SystemSettings,
    state: str | None,
    browser_key: str | None,
    *,
    is_test: bool = False,
) -> ClaimedAttempt:
    """Mark the attempt matching ``state`` for this browser and system used, and return it.

    One conditional UPDATE claims it, committed at once, so a replay (even a concurrent one,
    on another process) loses before any code is redeemed. Missing, unknown, used, expired,
    other-system and other-browser states are refused without writing anything; a test
    run's state reaching the sign-in (or the reverse) raises `StateOfTestRun`.
    """
    if not state:
        raise StateInvalid("the callback carried no state")
    if not browser_key:
        raise _why_unclaimed(system, state, None, is_test=is_test)
    now = utcnow()
    with plain_connection() as connection:
        rows = connection.run(
            _CLAIM_ATTEMPT,
            {
                "p_state_hash": _digest(state),
                "p_browser_hash": _digest(browser_key),
                "p_auth_system_id": system.id,
                "p_is_test": is_test,
                "p_not_before": now - ATTEMPT_LIFETIME,
                "p_now": now,
            },
        )
        if rows:
            connection.commit()
    if not rows:
        raise _why_unclaimed(system, state, browser_key, is_test=is_test)
    row = rows[0]
    del row[COMMIT_WITHOUT_WAITING.key]
    claimed = ClaimedAttempt(**row)
    _forget_open_attempt(claimed.id)
    return claimed


@dataclass(frozen=True)
class ClaimedAttempt:
    """What the callback needs of the attempt it has just claimed."""

    id: int
    auth_system_id: int
    issuer: str
    nonce: str
    code_verifier_encrypted: str
    next_path: str
    is_test: bool
    #: The settings version when the attempt was claimed (read by the same statement).
    settings_version: int | None = None


#: The attempt's own columns that the claim hands back.
_CLAIMED_COLUMNS = tuple(
    _ATTEMPTS.c[f.name] for f in dataclasses.fields(ClaimedAttempt) if f.name in _ATTEMPTS.c
)
#: One conditional UPDATE claims an attempt: its state, this browser, this system, unused and
#: unexpired, or nothing (Core with bound parameters: built and compiled once).
_CLAIM_ATTEMPT = PlainStatement(
    sa.update(_ATTEMPTS)
    .where(
        _ATTEMPTS.c.state_hash == sa.bindparam("p_state_hash"),
        _ATTEMPTS.c.browser_hash == sa.bindparam("p_browser_hash"),
        _ATTEMPTS.c.auth_system_id == sa.bindparam("p_auth_system_id"),
        _ATTEMPTS.c.is_test == sa.bindparam("p_is_test"),
        _ATTEMPTS.c.used_at.is_(None),
        _ATTEMPTS.c.created_at >= sa.bindparam("p_not_before"),
    )
    .values(used_at=sa.bindparam("p_now"))
    .returning(*_CLAIMED_COLUMNS, _CURRENT_SETTINGS_VERSION, COMMIT_WITHOUT_WAITING),
    columns=[*_CLAIMED_COLUMNS, _CURRENT_SETTINGS_VERSION, COMMIT_WITHOUT_WAITING],
)


def _why_unclaimed(
    system: AuthSystem | SystemSettings, state: str, browser_key: str | None, *, is_test: bool
) -> StateInvalid:
    """Tell why no attempt was claimed (the failure path only: one more read)."""
    attempt = db.session.scalar(
        sa.select(LoginAttempt).where(LoginAttempt.state_hash == _digest(state))
    )
    if attempt is None:
        return StateInvalid("unknown state")
    if attempt.auth_system_id != system.id:
        return StateInvalid("state belongs to another authentication system")
    if attempt.is_test != is_test:
        if attempt.is_test:
            return StateOfTestRun("a test attempt's state reached the sign-in callback")
        return StateInvalid("a sign-in attempt's state reached the test callback")
    if attempt.used_at is not None:
        return StateInvalid("state already used")
    if utcnow() - _as_aware(attempt.created_at) > ATTEMPT_LIFETIME:
        return StateInvalid("state expired")
    if not attempt_of_browser(attempt, browser_key):
        return StateInvalid("state was issued to another browser session")
    return StateInvalid("state already used (concurrent callback)")


def is_test_state(state: str | None) -> bool:
    """Tell whether ``state`` belongs to an attempt started from the admin's test screen."""
    if not state:
        return False
    query = sa.select(LoginAttempt.is_test).where(LoginAttempt.state_hash == _digest(state))
    return bool(db.session.scalar(query))


def read_verifier(attempt: ClaimedAttempt) -> str:
    """Return the attempt's PKCE code verifier, decrypted."""
    try:
        return decrypt_secret(attempt.code_verifier_encrypted)
    except SecretUnreadable:
        raise SettingsUnreadable("PKCE verifier not decryptable (keys changed?)") from None


def count_open_attempts() -> int:
    """Return how many sign-ins were started and are neither finished nor expired."""
    return int(
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(LoginAttempt)
            .where(
                LoginAttempt.used_at.is_(None),
                LoginAttempt.created_at > utcnow() - ATTEMPT_LIFETIME,
            )
        )
        or 0
    )
