"""Count and read rows: users and identities, audit events, raw audit columns."""

from __future__ import annotations

import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuditEvent, Identity, User


def count(model) -> int:
    """Return how many rows a model's table holds."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def users_and_identities() -> tuple[int, int]:
    """Return (users, identities) counts."""
    db.session.expire_all()
    return count(User), count(Identity)


def events(kind: str | None = None) -> list[AuditEvent]:
    """Return the recorded events (of one kind), oldest first."""
    db.session.expire_all()
    query = sa.select(AuditEvent).order_by(AuditEvent.id)
    if kind:
        query = query.where(AuditEvent.kind == kind)
    return list(db.session.scalars(query))


def raw_audit_rows() -> str:
    """Return every column of every audit row as one text (to search for secrets)."""
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM audit_events")).all()
    return "\n".join(repr(tuple(row)) for row in rows)
