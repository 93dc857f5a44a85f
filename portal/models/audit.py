"""The audit log: who changed which authentication system, and who signed in through it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import utcnow


class AuditEvent(db.Model):
    """One thing that happened: a configuration change, a sign-in, or a failed sign-in.

    Ids of users and systems are kept without foreign keys, with a name snapshot beside
    them, so the log outlives the rows it talks about.
    """

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_events_kind_created", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, index=True
    )
    #: What happened: ``system.created``, ``system.updated``, ``sign_in``, ``sign_in_failed``...
    kind: Mapped[str] = mapped_column(sa.String(40))
    #: Who did it (the manager who changed a system; the member who signed in), if known.
    actor_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    #: The actor's email or name when the event was recorded.
    actor_label: Mapped[str] = mapped_column(sa.String(255), default="")
    #: The authentication system concerned, if any.
    auth_system_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    #: The system's name when the event was recorded.
    auth_system_name: Mapped[str] = mapped_column(sa.String(120), default="")
    #: The short reference shown to a member on a failure page.
    reference: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    #: Kind-specific facts, e.g. ``{"changes": [{"field", "label", "old", "new"}, ...]}``.
    #: Never a secret, code or token.
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
