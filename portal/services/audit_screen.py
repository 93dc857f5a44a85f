"""The audit screen: its filters, its pages of events, and the systems it can filter by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time

import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuditEvent, AuthSystem, User
from portal.services.audit import KIND_LABELS
from portal.services.content import Page, escape_like

#: Events per page on the audit screen.
PER_PAGE = 50


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
