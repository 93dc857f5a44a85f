"""Membership during a session: the tokens kept on the server, the re-check, the Logoff API.

A sign-in through a system that re-checks membership (*Re-check Membership Every
(minutes)* above 0) or that has a *Logoff API URL* keeps its tokens in an ``sso_sessions``
row, encrypted like the client secret; the session cookie holds only a random key naming
the row, and the time the next re-check is due, so a request before then costs no SQL.

Once due, the member's next request re-reads the profile: with the refresh token (the
*Refresh Token Post Body*, `engine.finish_refresh_login`), else with the access token while
it is valid, else the member is asked to sign in again. The sign-in restriction and the
group sync are the sign-in's own (`account_resolution`, `group_mapping`). A provider that
cannot be reached keeps the member's access for the *Grace Period (minutes)*. One
conditional UPDATE on ``checking_since`` lets one request at a time re-check a session,
whichever process it runs in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from portal.config import http_settings
from portal.database import commit_keeping_loaded
from portal.extensions import db
from portal.models import SSOSession, User
from portal.services import audit
from portal.services.account_resolution import group_sync_fields, provider_values
from portal.services.group_mapping import check_sign_in_allowed, sync_member_groups
from portal.services.secrets import SecretUnreadable, decrypt_secret, encrypt_secret
from portal.services.settings_snapshot import SystemSettings, system_by_id
from portal.services.sso_login import build_sso_config
from portal.services.users import end_sessions
from portal.sso.engine import (
    LogoffTokens,
    SSOResult,
    call_logoff_api,
    finish_refresh_login,
    recheck_with_access_token,
)
from portal.sso.errors import SSOError
from portal.sso.http import get_http_client
from portal.sso.idtoken import get_jwks_cache
from portal.sso.paths import search_path

log = logging.getLogger(__name__)

#: A claim older than this was left by a request that died: another request may re-check.
CLAIM_LEASE = timedelta(minutes=2)
#: While the provider cannot be reached, how soon (seconds) the next request tries again.
RETRY_UNREACHABLE = 60
#: While another request re-checks the session, how soon (seconds) this one looks again.
RETRY_BUSY = 10

#: Outcomes of a re-check.
CONFIRMED = "confirmed"
#: The provider could not be reached; access is kept within the Grace Period.
GRACE = "grace"
#: Another request is re-checking this session right now.
BUSY = "busy"
#: The system no longer re-checks (turned off, disabled or deleted).
OFF = "off"
#: The member is signed out (``message`` says why).
SIGNED_OUT = "signed_out"

SIGN_IN_AGAIN = "Please sign in again to confirm your membership."
PROVIDER_UNREACHABLE = (
    "We could not confirm your membership with the identity provider for a while, so you "
    "were signed out. Please sign in again."
)


@dataclass(frozen=True)
class RecheckOutcome:
    """What a re-check decided, and when (epoch seconds) the next one is due."""

    kind: str
    next_due: int | None = None
    #: For SIGNED_OUT: the message the member reads (the manager's, for a refusal).
    message: str = ""
    #: The reference of the log line, shown with a sign-out message.
    reference: str = ""
    #: For SIGNED_OUT: every session of the member ended (a refusal), not only this one.
    all_sessions: bool = False


def _at(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


def _row_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def keeps_tokens(system: SystemSettings) -> bool:
    """Tell whether sessions signed in through ``system`` keep their tokens on the server."""
    return system.recheck_minutes > 0 or _has_logoff_api(system)


def _has_logoff_api(system: SystemSettings | None) -> bool:
    """Tell whether ``system`` is an OAuth 2.0 system with a Logoff API URL."""
    return (
        system is not None
        and system.personify_config is None
        and bool(system.sso_config.logoff_url)
    )


def _longest_session() -> int:
    """Return the longest lifetime (seconds) a session may have, managers' or members'."""
    config = current_app.config
    hours = max(config["PORTAL_MEMBER_LIFETIME_HOURS"], config["PORTAL_MANAGER_LIFETIME_HOURS"])
    return int(hours) * 3600


def first_due(system: SystemSettings, moment: float) -> int | None:
    """Return when the first re-check of a session signed in at ``moment`` is due (or None)."""
    return int(moment) + system.recheck_minutes * 60 if system.recheck_minutes > 0 else None


# -- the tokens of a session --------------------------------------------------------------------


def _token_values(result: SSOResult, moment: float) -> dict[str, Any]:
    """Return the encrypted token columns of a token response (the refresh token apart)."""
    doc = {k: v for k, v in result.token_response.items() if k != "refresh_token"}
    expires_in = doc.get("expires_in")
    expires_at = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        expires_at = _at(moment + max(0.0, float(expires_in)))
    values: dict[str, Any] = {
        "token_response_encrypted": encrypt_secret(json.dumps(doc)),
        "access_expires_at": expires_at,
    }
    if result.refresh_token:
        values["refresh_token_encrypted"] = encrypt_secret(result.refresh_token)
    return values


def record_sso_session(
    system: SystemSettings, user: User, result: SSOResult, moment: float
) -> str | None:
    """Keep a new session's tokens on the server; return the key its cookie names it by.

    None (nothing written) when the system needs no tokens. One INSERT, committed.
    """
    if not keeps_tokens(system):
        return None
    key = secrets.token_urlsafe(32)
    values = {"refresh_token_encrypted": "", **_token_values(result, moment)}
    generation = user.session_generation or 0
    # The rows of this user's dead sessions: another generation (signed out, revoked), or
    # older than any session lives (expired without a sign-out).
    db.session.execute(
        sa.delete(SSOSession)
        .where(
            SSOSession.user_id == user.id,
            sa.or_(
                SSOSession.session_generation != generation,
                SSOSession.created_at < _at(moment - _longest_session()),
            ),
        )
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        sa.insert(SSOSession).values(
            id=_row_id(key),
            user_id=user.id,
            auth_system_id=system.id,
            subject=result.subject,
            session_generation=generation,
            checked_at=_at(moment),
            created_at=_at(moment),
            **values,
        )
    )
    db.session.commit()
    return key


def _read_tokens(row: SSOSession) -> tuple[str, dict[str, Any]]:
    """Return the row's refresh token and token response (raise SecretUnreadable)."""
    refresh = decrypt_secret(row.refresh_token_encrypted) if row.refresh_token_encrypted else ""
    doc: dict[str, Any] = {}
    if row.token_response_encrypted:
        loaded = json.loads(decrypt_secret(row.token_response_encrypted))
        doc = loaded if isinstance(loaded, dict) else {}
    return refresh, doc


def forget_sso_sessions(user: User, system_id: int | None = None) -> None:
    """Delete the server-side tokens of every session of ``user`` (through ``system_id``
    only, if given); not committed."""
    query = sa.delete(SSOSession).where(SSOSession.user_id == user.id)
    if system_id is not None:
        query = query.where(SSOSession.auth_system_id == system_id)
    db.session.execute(query)


def forget_sso_session(key: str | None) -> None:
    """Delete the server-side tokens of the session named ``key``, if any; not committed."""
    if key:
        db.session.execute(sa.delete(SSOSession).where(SSOSession.id == _row_id(key)))


# -- the re-check -------------------------------------------------------------------------------


def _claim(row_id: str, user_id: int, moment: float) -> bool:
    """Claim the session's re-check (one conditional UPDATE, committed); False if taken."""
    now = _at(moment)
    claimed = db.session.execute(
        sa.update(SSOSession)
        .where(
            SSOSession.id == row_id,
            SSOSession.user_id == user_id,
            sa.or_(
                SSOSession.checking_since.is_(None),
                SSOSession.checking_since < now - CLAIM_LEASE,
            ),
        )
        .values(checking_since=now)
        .execution_options(synchronize_session=False)
    )
    commit_keeping_loaded()
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def _log(
    reference: str, system: SystemSettings, user: User, outcome: str, detail: str = ""
) -> None:
    log.info(
        "Membership re-check ref=%s system=%s user=%s outcome=%s%s",
        reference,
        system.slug,
        user.id,
        outcome,
        f" detail={detail}" if detail else "",
    )


def _sign_out(
    user: User,
    system: SystemSettings,
    row: SSOSession | None,
    message: str,
    outcome: str,
    detail: str = "",
    *,
    all_sessions: bool = False,
) -> RecheckOutcome:
    """End this session (or, for a refusal, all of the member's) and say why."""
    reference = secrets.token_hex(4)
    _log(reference, system, user, outcome, detail)
    audit.record_event(
        audit.MEMBERSHIP_RECHECK_ENDED,
        actor=user,
        system=system,  # type: ignore[arg-type]  (its id and name, as a sign-in records)
        reference=reference,
        details={"outcome": outcome, **({"code": detail} if detail else {})},
    )
    if all_sessions:
        forget_sso_sessions(user)
        end_sessions(user)  # commits
    else:
        if row is not None:
            db.session.delete(row)
        db.session.commit()
    return RecheckOutcome(
        SIGNED_OUT, message=message, reference=reference, all_sessions=all_sessions
    )


def recheck_membership(
    key: str | None, user: User, system_id: Any, moment: float
) -> RecheckOutcome:
    """Re-check the membership of the session ``key`` of ``user``, signed in via ``system_id``.

    Called once the re-check is due. Never raises for the provider's sake: every outcome is
    one of the kinds above, and the caller signs the member out on SIGNED_OUT.
    """
    system = system_by_id(system_id) if isinstance(system_id, int) else None
    if system is None or not system.enabled or system.recheck_minutes <= 0:
        return RecheckOutcome(OFF)
    if not key:
        return _sign_out(user, system, None, SIGN_IN_AGAIN, "no_tokens")
    row_id = _row_id(key)
    if not _claim(row_id, user.id, moment):
        row = db.session.get(SSOSession, row_id)
        if row is None or row.user_id != user.id:
            return _sign_out(user, system, None, SIGN_IN_AGAIN, "no_tokens")
        return RecheckOutcome(BUSY, next_due=int(moment) + RETRY_BUSY)
    row = db.session.get(SSOSession, row_id, populate_existing=True)
    assert row is not None  # just claimed
    try:
        refresh_token, token_doc = _read_tokens(row)
    except (SecretUnreadable, ValueError):
        return _sign_out(user, system, row, SIGN_IN_AGAIN, "tokens_unreadable")
    # No transaction stays open while the provider is asked (it may take seconds).
    commit_keeping_loaded()
    try:
        result = _refresh(system, row, refresh_token, token_doc, moment)
    except SSOError as exc:
        if exc.provider_down:
            return _unreachable(user, system, row, exc, moment)
        return _sign_out(user, system, row, SIGN_IN_AGAIN, "refused_by_provider", exc.code)
    if result is None:
        return _sign_out(user, system, row, SIGN_IN_AGAIN, "no_usable_token")
    if result.subject != row.subject:
        return _sign_out(user, system, row, SIGN_IN_AGAIN, "subject_changed")
    denied = check_sign_in_allowed(system, result.fields, result.profile)
    if denied:
        return _sign_out(user, system, row, denied, "membership_denied", all_sessions=True)
    # The sign-in's own sync: membership columns and this system's groups, only what changed.
    sync_member_groups(user, system, group_sync_fields(provider_values(system, result), result))
    for name, value in _token_values(result, moment).items():
        setattr(row, name, value)
    row.checked_at = _at(moment)
    row.checking_since = None
    row.unreachable_since = None
    db.session.commit()
    _log(secrets.token_hex(4), system, user, CONFIRMED)
    return RecheckOutcome(CONFIRMED, next_due=int(moment) + system.recheck_minutes * 60)


def _refresh(
    system: SystemSettings,
    row: SSOSession,
    refresh_token: str,
    token_doc: dict[str, Any],
    moment: float,
) -> SSOResult | None:
    """Ask the provider again: refresh token, else a live access token; None when neither."""
    config = build_sso_config(system)
    http = get_http_client(http_settings())
    if refresh_token:
        return finish_refresh_login(
            config, refresh_token, http, get_jwks_cache(), what="membership re-check"
        )
    expires_at = row.access_expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)  # SQLite keeps no zone
    live = expires_at is None or expires_at > _at(moment)
    if token_doc and live and config.profile_requests:
        return recheck_with_access_token(config, token_doc, http)
    return None


def _unreachable(
    user: User, system: SystemSettings, row: SSOSession, exc: SSOError, moment: float
) -> RecheckOutcome:
    """Keep access within the Grace Period after the provider could not be reached."""
    since = row.unreachable_since
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    since = since or _at(moment)
    if _at(moment) - since >= timedelta(minutes=system.grace_minutes):
        return _sign_out(user, system, row, PROVIDER_UNREACHABLE, "grace_period_over", exc.code)
    row.unreachable_since = since
    row.checking_since = None
    db.session.commit()
    _log(secrets.token_hex(4), system, user, GRACE, exc.code)
    return RecheckOutcome(GRACE, next_due=int(moment) + RETRY_UNREACHABLE)


# -- sign-out: the Logoff API -------------------------------------------------------------------


def take_logoff_tokens(key: str | None, user: User, system_id: Any) -> LogoffTokens | None:
    """At sign-out: return the session's tokens for the Logoff API, and forget every session's.

    None when the system has no Logoff API URL. The rows are deleted (not committed: the
    sign-out commits) before the provider is called, so no transaction waits on it.
    """
    system = system_by_id(system_id) if isinstance(system_id, int) else None
    row = db.session.get(SSOSession, _row_id(key)) if key else None
    refresh_token, token_doc = "", {}
    if system is not None and row is not None and row.user_id == user.id:
        try:
            refresh_token, token_doc = _read_tokens(row)
        except (SecretUnreadable, ValueError):
            pass
    forget_sso_sessions(user)
    if system is None or not _has_logoff_api(system):
        return None
    try:
        access = search_path(system.sso_config.access_token_path or "access_token", token_doc)
    except Exception:  # noqa: BLE001  (a path that cannot run: the call goes without %Token%)
        access = None
    id_token = token_doc.get("id_token")
    return LogoffTokens(
        access_token=access if isinstance(access, str) else "",
        refresh_token=refresh_token,
        id_token=id_token if isinstance(id_token, str) else "",
    )


def call_logoff(system_id: Any, tokens: LogoffTokens, *, id_token: str | None = None) -> bool:
    """Call the system's Logoff API (server to server); False when it failed (logged).

    A failure is logged with a reference and never stops the sign-out; nothing secret is
    in the log line. ``id_token``: the one the session kept, when the row holds none.
    """
    system = system_by_id(system_id) if isinstance(system_id, int) else None
    if system is None or not _has_logoff_api(system):
        return False
    if id_token and not tokens.id_token:
        tokens = LogoffTokens(tokens.access_token, tokens.refresh_token, id_token)
    reference = secrets.token_hex(4)
    try:
        status = call_logoff_api(build_sso_config(system), tokens, get_http_client(http_settings()))
    except SSOError as exc:
        log.warning(
            "Logoff API failed ref=%s system=%s code=%s detail=%s",
            reference,
            system.slug,
            exc.code,
            (exc.log_detail or "-").replace("\r", "\\r").replace("\n", "\\n"),
        )
        return False
    log.info("Logoff API ref=%s system=%s status=%s", reference, system.slug, status)
    return True
