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
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import db
from portal.models import AuditEvent, AuthSystem, Team, User
from portal.models.auth_system import LOGIN_MODES, TYPES
from portal.models.base import utcnow
from portal.services import throttle
from portal.services.content import Page, escape_like
from portal.sso.fields import LABELS
from portal.sso.profile_fields import FIELD_LABEL, OPTION_FIELDS, PARAM_OPTIONS, PROFILE_FIELDS

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
    }
)

#: What the audit log stores instead of a value that must stay secret.
HIDDEN = "[hidden]"
#: Events per page on the audit screen.
PER_PAGE = 50
#: The opportunistic purge runs at most this often per process.
PURGE_INTERVAL_SECONDS = 3600
_PURGE_STAMP = "portal_audit_last_purge"

#: A header, body or JSON key whose literal value is likely a credential.
_SENSITIVE_NAME = re.compile(r"secret|passw|token|key|auth|cookie|assertion|signature", re.I)
_PLACEHOLDER_ONLY = re.compile(r"^\s*(?:[A-Za-z]+\s+)?(?:%[A-Za-z]+%\s*)+$")
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


# --- field-by-field changes ---------------------------------------------------------------


def _team_name(team_id: Any) -> str:
    if team_id in (None, ""):
        return "None"
    team = db.session.get(Team, team_id) if isinstance(team_id, int) else None
    return team.name if team is not None else f"team {team_id} (deleted)"


def _mask_headers(text: str) -> str:
    """Hide literal values of credential-looking headers; placeholders stay readable."""
    lines = []
    for line in (text or "").splitlines():
        name, sep, value = line.partition(":")
        if sep and _SENSITIVE_NAME.search(name) and not _PLACEHOLDER_ONLY.match(value):
            line = f"{name}: {HIDDEN}"
        lines.append(line)
    return "\n".join(lines)


_FORM_PAIR = re.compile(r"(?P<key>[^&=\s]+)=(?P<value>[^&]*)")
_JSON_PAIR = re.compile(r'"(?P<key>[^"\\]+)"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\]|\\.)*)"')


def _mask_body(text: str) -> str:
    """Hide literal values of credential-looking keys in a form or JSON body template."""

    def hide(match: re.Match[str]) -> str:
        key, value = match.group("key"), match.group("value")
        if not _SENSITIVE_NAME.search(key) or _PLACEHOLDER_ONLY.match(value) or not value:
            return match.group(0)
        if "sep" in match.groupdict():
            return f'"{key}"{match.group("sep")}"{HIDDEN}"'
        return f"{key}={HIDDEN}"

    if (text or "").lstrip().startswith(("{", "[")):
        return _JSON_PAIR.sub(hide, text)
    return _FORM_PAIR.sub(hide, text or "")


def _shown(key: str, value: Any) -> str:
    """Return the readable form of one field's value, as the audit screen shows it."""
    if key == "onboarding_team_id":
        return _team_name(value)
    if key == "login_mode":
        return LOGIN_MODES.get(value, str(value or ""))
    if key == "type":
        return TYPES.get(value, str(value or ""))
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if key in ("token_headers", "profile_headers"):
        return _mask_headers(str(value or ""))
    if key == "token_body":
        return _mask_body(str(value or ""))
    return "" if value is None else str(value)


def diff_auth_system_data(
    before: Mapping[str, Any], after: Mapping[str, Any], *, secret_changed: bool = False
) -> list[dict[str, Any]]:
    """Return the fields that differ between two ``auth_system_data`` dicts, in form order.

    Each change is ``{"field", "label", "old", "new"}`` with readable values; the Client
    Secret, when ``secret_changed``, is ``{"field", "label", "changed": True}`` and nothing else.
    """
    changes: list[dict[str, Any]] = []
    for key, label in LABELS.items():
        if key == "client_secret":
            if secret_changed:
                changes.append({"field": key, "label": label, "changed": True})
            continue
        old, new = _shown(key, before.get(key)), _shown(key, after.get(key))
        if old != new:
            changes.append({"field": key, "label": label, "old": old, "new": new})
    old_params = before.get("params") or {}
    new_params = after.get("params") or {}
    for key, label in PROFILE_FIELDS:
        old_row, new_row = old_params.get(key) or {}, new_params.get(key) or {}
        old, new = str(old_row.get("path") or ""), str(new_row.get("path") or "")
        if old != new:
            changes.append(
                {"field": f"params.{key}.path", "label": f"{label} path", "old": old, "new": new}
            )
        if key not in OPTION_FIELDS:
            continue
        for option, option_label in PARAM_OPTIONS.items():
            old_on, new_on = bool(old_row.get(option)), bool(new_row.get(option))
            if old_on != new_on:
                changes.append(
                    {
                        "field": f"params.{key}.{option}",
                        "label": f"{label}: {option_label}",
                        "old": _shown(option, old_on),
                        "new": _shown(option, new_on),
                    }
                )
    return changes


# --- the audit screen ---------------------------------------------------------------------


@dataclass
class AuditFilters:
    """What the audit screen is narrowed to; empty values mean "any"."""

    system_id: int | None = None
    user: str = ""
    kind: str = ""
    date_from: date | None = None
    date_to: date | None = None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, dt_time.min, tzinfo=UTC)


def _filtered(filters: AuditFilters) -> sa.Select[tuple[AuditEvent]]:
    query = sa.select(AuditEvent)
    if filters.system_id is not None:
        query = query.where(AuditEvent.auth_system_id == filters.system_id)
    if filters.kind in KIND_LABELS:
        query = query.where(AuditEvent.kind == filters.kind)
    text = filters.user.strip().lower()
    if text:
        pattern = "%" + escape_like(text) + "%"
        full_name = sa.func.lower(User.first_name + " " + User.last_name)
        matching_users = sa.select(User.id).where(
            sa.or_(
                sa.func.lower(User.email).like(pattern, escape="\\"),
                sa.func.lower(User.username).like(pattern, escape="\\"),
                full_name.like(pattern, escape="\\"),
            )
        )
        query = query.where(
            sa.or_(
                sa.func.lower(AuditEvent.actor_label).like(pattern, escape="\\"),
                AuditEvent.actor_id.in_(matching_users),
            )
        )
    if filters.date_from is not None:
        query = query.where(AuditEvent.created_at >= _day_start(filters.date_from))
    if filters.date_to is not None:
        # Inclusive: everything before the start of the next day (UTC).
        query = query.where(AuditEvent.created_at < _day_start(filters.date_to + timedelta(1)))
    return query


def list_audit_events(
    filters: AuditFilters | None = None, page: int = 1, per_page: int = PER_PAGE
) -> Page:
    """Return one page of the events matching ``filters``, newest first."""
    page = max(1, page)
    query = _filtered(filters or AuditFilters())
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    items = list(
        db.session.scalars(
            query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    return Page(items, total or 0, page, per_page)


def list_audit_systems() -> list[tuple[int, str]]:
    """Return (id, name) of every system the log mentions or that exists, by name.

    A deleted system keeps the name it had in its most recent event, marked "(deleted)".
    """
    names = {s.id: s.name for s in db.session.scalars(sa.select(AuthSystem))}
    latest = (
        sa.select(AuditEvent.auth_system_id, sa.func.max(AuditEvent.id).label("last_id"))
        .where(AuditEvent.auth_system_id.is_not(None))
        .group_by(AuditEvent.auth_system_id)
        .subquery()
    )
    recorded = db.session.execute(
        sa.select(AuditEvent.auth_system_id, AuditEvent.auth_system_name).join(
            latest, AuditEvent.id == latest.c.last_id
        )
    )
    choices = dict(names)
    for system_id, name in recorded:
        if system_id not in names:
            choices[system_id] = f"{name or f'system {system_id}'} (deleted)"
    return sorted(choices.items(), key=lambda item: (item[1].lower(), item[0]))


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
