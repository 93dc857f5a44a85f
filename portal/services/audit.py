"""The audit log: configuration changes, sign-ins and failed sign-ins (see docs/audit-log.md).

``record_event`` only adds a row to the current session: the caller's commit saves the
change and its audit row together, or neither. Nothing recorded here is ever a secret, an
authorization code or a token: the Client Secret shows as "changed", and a failed sign-in
keeps its error code and a fixed summary, never the provider's text.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from portal.database import PlainStatement, run_in_session
from portal.extensions import db
from portal.models import AuditEvent, AuthSystem, User
from portal.models.base import utcnow
from portal.services import throttle
from portal.sso.profile_fields import FIELD_LABEL

log = logging.getLogger(__name__)

SYSTEM_CREATED = "system.created"
SYSTEM_UPDATED = "system.updated"
SYSTEM_DELETED = "system.deleted"
SYSTEM_ENABLED = "system.enabled"
SYSTEM_DISABLED = "system.disabled"
MAPPING_CHANGED = "mapping.changed"
SIGN_IN = "sign_in"
SIGN_IN_LOCAL = "sign_in_local"
SIGN_IN_FAILED = "sign_in_failed"
SIGN_IN_LOCAL_FAILED = "sign_in_local_failed"
LOCKOUT = "lockout"
TEST_RUN = "test_run"
GROUP_DELETED = "group.deleted"
ROLE_CHANGED = "user.role_changed"
USER_DISABLED = "user.disabled"
USER_ENABLED = "user.enabled"
SESSIONS_REVOKED = "sessions.revoked"
ACCOUNT_LINKED = "account.linked"
EMAIL_CONFIRMED = "email.confirmed"
MEMBERSHIP_RECHECK_ENDED = "membership.recheck_ended"
PROVIDER_LOGOUT = "provider.logout"
WEBHOOK_MEMBER_UPDATED = "webhook.member_updated"
WEBHOOK_MEMBER_DELETED = "webhook.member_deleted"
IDENTITY_LINKED = "identity.linked"
IDENTITY_UNLINKED = "identity.unlinked"
USER_MERGED = "user.merged"

#: Every kind of event, with the label the audit screen shows, in the screen's order.
KINDS: tuple[tuple[str, str], ...] = (
    (SYSTEM_CREATED, "System created"),
    (SYSTEM_UPDATED, "System changed"),
    (SYSTEM_DELETED, "System deleted"),
    (SYSTEM_ENABLED, "System enabled"),
    (SYSTEM_DISABLED, "System disabled"),
    (MAPPING_CHANGED, "Group mapping changed"),
    (SIGN_IN, "SSO sign-in"),
    (SIGN_IN_LOCAL, "Local sign-in"),
    (SIGN_IN_FAILED, "Failed SSO sign-in"),
    (SIGN_IN_LOCAL_FAILED, "Wrong local password"),
    (LOCKOUT, "Sign-in locked out"),
    (TEST_RUN, "Test this configuration run"),
    (GROUP_DELETED, "Member group deleted"),
    (ROLE_CHANGED, "Role changed"),
    (USER_DISABLED, "User disabled"),
    (USER_ENABLED, "User enabled"),
    (SESSIONS_REVOKED, "Sessions ended"),
    (ACCOUNT_LINKED, "Account linked after confirmation"),
    (EMAIL_CONFIRMED, "Email address confirmed"),
    (MEMBERSHIP_RECHECK_ENDED, "Signed out by a membership re-check"),
    (PROVIDER_LOGOUT, "Back-channel logout"),
    (WEBHOOK_MEMBER_UPDATED, "Member updated by webhook"),
    (WEBHOOK_MEMBER_DELETED, "Member deleted by webhook"),
    (IDENTITY_LINKED, "Sign-in method linked"),
    (IDENTITY_UNLINKED, "Sign-in method unlinked"),
    (USER_MERGED, "Accounts merged"),
)
KIND_LABELS: dict[str, str] = dict(KINDS)
#: Kinds that record a manager's configuration change (they trigger the opportunistic purge).
CONFIG_KINDS: frozenset[str] = frozenset(
    {
        SYSTEM_CREATED,
        SYSTEM_UPDATED,
        SYSTEM_DELETED,
        SYSTEM_ENABLED,
        SYSTEM_DISABLED,
        MAPPING_CHANGED,
        GROUP_DELETED,
        ROLE_CHANGED,
        USER_DISABLED,
        USER_ENABLED,
        USER_MERGED,
    }
)

#: The opportunistic purge runs at most this often per process.
PURGE_INTERVAL_SECONDS = 3600
_PURGE_STAMP = "portal_audit_last_purge"
#: A provider's OAuth error code is kept only when it looks like one (``access_denied``).
_SAFE_ERROR_CODE = re.compile(r"^[a-z0-9_.\-]{1,40}$")


# --- recording ----------------------------------------------------------------------------


def _actor_label(user: User) -> str:
    return (user.email or user.display_name or f"user {user.id}")[:255]


def record_event(
    kind: str,
    *,
    actor: User | None = None,
    system: AuthSystem | None = None,
    reference: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the current session (the caller commits it with its change)."""
    if kind not in KIND_LABELS:
        raise ValueError(f"Unknown audit event kind {kind!r}.")
    event = AuditEvent(
        kind=kind,
        actor_id=actor.id if actor is not None else None,
        actor_label=_actor_label(actor) if actor is not None else "",
        auth_system_id=system.id if system is not None else None,
        auth_system_name=(system.name or "")[:120] if system is not None else "",
        reference=reference,
        details=dict(details or {}),
    )
    db.session.add(event)
    if kind in CONFIG_KINDS:
        _maybe_purge()
    return event


#: The sign-in's own event, written as a plain row (nothing else in the session refers to it).
EVENT_COLUMNS = (
    "created_at",
    "kind",
    "actor_id",
    "actor_label",
    "auth_system_id",
    "auth_system_name",
    "reference",
    "details",
)
#: One INSERT on the driver's cursor, in the caller's transaction (`run_in_session`).
_INSERT_EVENT = PlainStatement(
    AuditEvent.__table__.insert().values(
        {name: sa.bindparam(f"p_{name}") for name in EVENT_COLUMNS}
    )
)


def event_row(
    kind: str,
    *,
    actor: User | None = None,
    actor_label: str | None = None,
    system: AuthSystem | None = None,
    reference: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a hot-path audit event's `EVENT_COLUMNS` (the row `insert_event` writes).

    ``actor_label`` stands for an actor whose row is written in the same statement (no id
    yet: the caller supplies ``actor_id``).
    """
    if kind not in KIND_LABELS or kind in CONFIG_KINDS:
        raise ValueError(f"Audit event kind {kind!r} is unknown or is a configuration change.")
    if actor_label is None:
        actor_label = _actor_label(actor) if actor is not None else ""
    return {
        "created_at": utcnow(),
        "kind": kind,
        "actor_id": actor.id if actor is not None else None,
        "actor_label": actor_label[:255],
        "auth_system_id": system.id if system is not None else None,
        "auth_system_name": (system.name or "")[:120] if system is not None else "",
        "reference": reference,
        "details": dict(details or {}),
    }


def insert_event(
    kind: str,
    *,
    actor: User | None = None,
    system: AuthSystem | None = None,
    reference: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Write an audit event in the current transaction, without an object in the session.

    For the hot paths (every sign-in writes one): the same row as `record_event`, one INSERT,
    committed or rolled back with the caller's change. Never for configuration kinds (those
    start the opportunistic purge through `record_event`).
    """
    row = event_row(kind, actor=actor, system=system, reference=reference, details=details)
    run_in_session(_INSERT_EVENT, {f"p_{name}": value for name, value in row.items()})


def record_failed_sign_in(
    slug: str,
    *,
    reference: str,
    code: str,
    summary: str,
    source: str | None = None,
    **facts: Any,
) -> None:
    """Record and commit a failed SSO sign-in under the reference shown to the member.

    At most one row per ``source`` (the client's address) per minute is written, so anonymous
    requests cannot fill the table; the caller's log line keeps the reference of every one.

    Whatever the failed flow left in the session is rolled back first, so only the audit
    row is committed. ``facts`` may add ``provider_error`` (kept only when it looks like an
    OAuth error code), ``http_status`` and ``field`` (the label of a missing profile field);
    the failure's free text (``log_detail``) is never stored: it can quote the provider.
    A database problem here is logged and swallowed: the member still gets the failure page.
    """
    details: dict[str, Any] = {"code": code[:40], "summary": summary[:200], "slug": slug[:120]}
    provider_error = facts.get("provider_error")
    if isinstance(provider_error, str) and _SAFE_ERROR_CODE.match(provider_error):
        details["provider_error"] = provider_error
    status = facts.get("http_status")
    if isinstance(status, int) and not isinstance(status, bool):
        details["http_status"] = status
    if facts.get("field") in FIELD_LABEL.values():
        details["field"] = facts["field"]
    if not throttle.allow_failed_sign_in_row(source):
        db.session.rollback()
        log.info("Failed sign-in ref=%s not audited: one row per source a minute", reference)
        return
    try:
        db.session.rollback()
        system = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == slug))
        event = record_event(SIGN_IN_FAILED, system=system, reference=reference, details=details)
        if system is None:
            event.auth_system_name = slug[:120]
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("Could not record the failed sign-in ref=%s in the audit log", reference)


def record_failed_local_sign_in(
    email: str,
    user: User | None,
    *,
    reason: str,
    lockout: throttle.Lockout | None = None,
    **details: Any,
) -> None:
    """Record and commit a refused local sign-in, and the lockout it started, by account.

    The row names the account when it exists, else the email as typed (normalized); never
    the password. ``details`` are small facts about the page (``remote_only``, ...).
    A database problem here is logged and swallowed: the person still gets the form's answer.
    """
    from portal.services.accounts import identifier_key

    label = identifier_key(email)[:254]
    try:
        db.session.rollback()
        failed = record_event(
            SIGN_IN_LOCAL_FAILED, actor=user, details={"reason": reason, **details}
        )
        events = [failed]
        if lockout is not None:
            events.append(
                record_event(
                    LOCKOUT,
                    actor=user,
                    details={"window": lockout.window, "retry_after": lockout.retry_after},
                )
            )
        if user is None:
            for event in events:
                event.actor_label = label
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("Could not record a refused local sign-in in the audit log")


# --- retention ----------------------------------------------------------------------------


def retention_days() -> int:
    """Return how many days events are kept (0: forever)."""
    return int(current_app.config.get("PORTAL_AUDIT_RETENTION_DAYS", 365) or 0)


def purge_audit_events(older_than_days: int, *, commit: bool = True) -> int:
    """Delete the events older than ``older_than_days`` days; return how many (0 keeps all)."""
    if older_than_days <= 0:
        return 0
    cutoff = utcnow() - timedelta(days=older_than_days)
    result = db.session.execute(sa.delete(AuditEvent).where(AuditEvent.created_at < cutoff))
    if commit:
        db.session.commit()
    return result.rowcount or 0


def _maybe_purge() -> None:
    """Purge expired events inside the current transaction, at most once an hour per process.

    Only configuration changes call this: they are rare and made by a manager, so sign-ins
    never pay for the delete (``flask audit purge`` from cron covers quiet sites).
    """
    days = retention_days()
    if days <= 0:
        return
    now = time.monotonic()
    last = current_app.extensions.get(_PURGE_STAMP)
    if last is not None and now - last < PURGE_INTERVAL_SECONDS:
        return
    current_app.extensions[_PURGE_STAMP] = now
    purge_audit_events(days, commit=False)
