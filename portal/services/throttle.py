"""Throttling: the rate limits of sign-in, SSO and managers' heavy actions.

Route limits are Flask-Limiter decorators whose values are settings (``PORTAL_RATELIMIT_*``),
keyed by the client's address or, for managers, by their user id. The per-account back-off
of local sign-in counts only *failed* attempts and must know when a lockout starts (to audit
it once), so it is kept here, on the same storage as the route limits: Redis when
``REDIS_URL`` is set (shared by every instance), this process's memory otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app
from flask_limiter.util import get_remote_address
from flask_login import current_user
from limits import RateLimitItem, parse, parse_many
from limits.strategies import FixedWindowRateLimiter

from portal.extensions import limiter

log = logging.getLogger(__name__)

#: Scopes of the counters kept here (Flask-Limiter's own are named after the endpoint).
ACCOUNT_SCOPE = "local-sign-in-account"
OPEN_SSO_SCOPE = "sso-open-sign-ins"
AUDIT_SCOPE = "audit-sign-in-failed"
#: At most one failed-sign-in audit row per source address in this window.
FAILED_SIGN_IN_AUDIT_RATE = "1/minute"


def _setting(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


def manager_key() -> str:
    """Key a manager's limits by user id (the address for anyone not signed in)."""
    if current_user.is_authenticated:
        return f"user:{current_user.get_id()}"
    return f"ip:{get_remote_address()}"


# --- route limits (decorators) -------------------------------------------------------------

#: ``/login`` and ``/login/local`` POSTs share one budget per address.
local_sign_in_per_ip = limiter.shared_limit(
    _setting("PORTAL_RATELIMIT_LOGIN_IP"), scope="local-sign-in", methods=["POST"]
)
#: Each bogus callback costs a lookup, a log line and (once a minute) an audit row; only
#: failed callbacks count, so members signing in are never slowed, however many share an address.
sso_callback_per_ip = limiter.limit(
    _setting("PORTAL_RATELIMIT_SSO_CALLBACK"),
    deduct_when=lambda response: response.status_code >= 400,
)
#: POSTs to a Sign-in Initiation URL, per address: each token POST costs a call to the
#: provider's token API, and a flood of them is what a login-CSRF campaign looks like.
sso_initiate_per_ip = limiter.limit(_setting("PORTAL_RATELIMIT_SSO_INITIATE"), methods=["POST"])
#: POSTs a provider sends server to server (back-channel logout, deprovisioning webhook), per
#: address and with the same budget: only refused ones count, since a provider's legitimate
#: bursts (everyone logged out at once) all come from its few addresses.
provider_notice_per_ip = limiter.limit(
    _setting("PORTAL_RATELIMIT_SSO_INITIATE"),
    methods=["POST"],
    deduct_when=lambda response: response.status_code >= 400,
)
#: *Test this configuration* starts and imports, per manager and per action.
per_manager = limiter.limit(
    _setting("PORTAL_RATELIMIT_MANAGER"), key_func=manager_key, methods=["POST"]
)


def current_retry_after() -> int | None:
    """Return the seconds until the limit this request broke lets it through again."""
    current = limiter.current_limit
    if current is None or not current.breached:
        return None
    try:
        return max(1, math.ceil(current.reset_at - time.time()))
    except Exception:  # the storage went away between the check and now
        log.exception("Could not read the reset time of a rate limit")
        return None


# --- per-account back-off of local sign-in ------------------------------------------------


@dataclass(frozen=True)
class Lockout:
    """Local sign-in for one account is paused: for how long, and by which window."""

    retry_after: int
    window: str


def _enabled() -> bool:
    return bool(current_app.config.get("RATELIMIT_ENABLED", True)) and limiter.initialized


def _strategy() -> FixedWindowRateLimiter:
    # limiter.limiter is the in-memory fallback while Redis is unreachable.
    return _strategy_of(limiter.limiter.storage)


@functools.lru_cache(maxsize=8)
def _strategy_of(storage: object) -> FixedWindowRateLimiter:
    """The fixed-window strategy over one storage, built once (every SSO start counts)."""
    return FixedWindowRateLimiter(storage)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=32)
def _limits_of(text: str) -> tuple[RateLimitItem, ...]:
    """A setting's rate limits, parsed once per text (it is read at every sign-in)."""
    return tuple(parse_many(text))


def _prefix() -> str:
    return current_app.config.get("RATELIMIT_KEY_PREFIX") or "portal"


def account_key(email: str) -> str:
    """Return the throttling key of the account an email names (typed as it was).

    NFKC plus casefold, so every spelling of one address shares one counter; hashed, so the
    storage holds no email address and a huge input makes no huge key.
    """
    from portal.services.accounts import identifier_key

    normalized = identifier_key(email)
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:40]


def _account_items() -> list[RateLimitItem]:
    return list(_limits_of(current_app.config["PORTAL_RATELIMIT_LOGIN_ACCOUNT"]))


def account_lockout(email: str) -> Lockout | None:
    """Return the lockout in force for this account, or ``None`` when it may try to sign in."""
    if not _enabled():
        return None
    ids = (_prefix(), ACCOUNT_SCOPE, account_key(email))
    try:
        strategy = _strategy()
        found: Lockout | None = None
        for item in _account_items():
            if strategy.test(item, *ids):
                continue
            reset_at, _remaining = strategy.get_window_stats(item, *ids)
            wait = max(1, math.ceil(reset_at - time.time()))
            if found is None or wait > found.retry_after:
                found = Lockout(retry_after=wait, window=str(item))
        return found
    except Exception:
        # Fail open on a storage fault: the per-address limit still holds.
        log.exception("Could not read the sign-in lockout of an account")
        return None


def note_failed_sign_in(email: str) -> Lockout | None:
    """Count a failed local sign-in for this account; return the lockout it starts, if any.

    A lockout starts on the failure that fills a window, exactly once per window (the
    storage's atomic increment tells), so concurrent failures cannot record it twice.
    """
    if not _enabled():
        return None
    ids = (_prefix(), ACCOUNT_SCOPE, account_key(email))
    try:
        storage = limiter.limiter.storage
        filled = False
        for item in _account_items():
            count = storage.incr(item.key_for(*ids), item.get_expiry())
            filled = filled or count == item.amount
        return account_lockout(email) if filled else None
    except Exception:
        log.exception("Could not count a failed sign-in")
        return None


def allow_failed_sign_in_row(source: str | None) -> bool:
    """Tell whether a failed SSO sign-in from ``source`` may add an audit row now.

    At most one row per source address per minute: a flood of bogus callbacks still gets its
    failure pages and log lines, but cannot fill the audit table.
    """
    if not source or not _enabled():
        return True
    try:
        return _strategy().hit(parse(FAILED_SIGN_IN_AUDIT_RATE), _prefix(), AUDIT_SCOPE, source)
    except Exception:
        log.exception("Could not check the audit budget of a failed sign-in")
        return True


# --- unfinished SSO sign-ins per address ---------------------------------------------------


def _open_sso_ids() -> tuple[str, ...]:
    return (_prefix(), OPEN_SSO_SCOPE, get_remote_address())


def _open_sso_items() -> list[RateLimitItem]:
    return list(_limits_of(current_app.config["PORTAL_RATELIMIT_SSO_START"]))


def start_sso_sign_in() -> int | None:
    """Count an SSO start from this address; return the seconds to wait when refused.

    Each start writes a login attempt, so starts that never come back are what a flood looks
    like. `finish_sso_sign_in` takes a finished one off the count: only unfinished sign-ins
    fill the window, and a crowd behind one address signing in for real is never held back.
    """
    if not _enabled():
        return None
    ids = _open_sso_ids()
    try:
        strategy = _strategy()
        items = _open_sso_items()
        for item in items:
            if not strategy.test(item, *ids):
                reset_at, _remaining = strategy.get_window_stats(item, *ids)
                return max(1, math.ceil(reset_at - time.time()))
        for item in items:
            strategy.hit(item, *ids)
        return None
    except Exception:
        log.exception("Could not count an SSO start")
        return None


def finish_sso_sign_in() -> None:
    """Take a sign-in that came back finished off this address's count of unfinished ones."""
    if not _enabled():
        return
    ids = _open_sso_ids()
    try:
        storage = limiter.limiter.storage
        for item in _open_sso_items():
            key = item.key_for(*ids)
            if storage.get(key) > 0:
                storage.incr(key, item.get_expiry(), amount=-1)
    except Exception:
        log.exception("Could not count a finished SSO sign-in")
