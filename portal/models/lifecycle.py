"""What a provider's back-channel logout and deprovisioning webhook leave behind."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db


class UsedToken(db.Model):
    """A single-use value already accepted: a logout token's ``jti``, a webhook's signature.

    Only a digest is kept (of the kind, the system and the value), until the value could no
    longer be accepted anyway; the unique digest refuses a replay in every process at once.
    """

    __tablename__ = "used_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 (hex) of ``"<kind>:<system id>:<value>"``.
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: After this moment the value is refused for its age: the row may be purged.
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), index=True)


class ProviderSessionEnd(db.Model):
    """A provider ended a member's sessions through one system (all, or one ``sid``).

    Sessions through that system signed in before ``ended_at`` are signed out at their next
    request (``portal/auth/sessions.py``). Rows older than the longest session are purged.
    """

    __tablename__ = "provider_session_ends"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_system_id: Mapped[int] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE")
    )
    #: The provider's session id (``sid``) when only that session ended; null: every session.
    sid: Mapped[str | None] = mapped_column(sa.String(255))
    #: When, in epoch seconds (the clock sessions are stamped with).
    ended_at: Mapped[float] = mapped_column(sa.Float, index=True)


class ProviderSession(db.Model):
    """A sign-in whose ID token named the provider's session (``sid``), for logout by ``sid``.

    A back-channel logout token may name only the ``sid``: this row says whose it was. Rows
    older than the longest session are purged when a logout arrives.
    """

    __tablename__ = "provider_sessions"
    __table_args__ = (sa.Index("ix_provider_sessions_system_sid", "auth_system_id", "sid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    auth_system_id: Mapped[int] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE")
    )
    sid: Mapped[str] = mapped_column(sa.String(255))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: When the sign-in happened, in epoch seconds.
    signed_in_at: Mapped[float] = mapped_column(sa.Float)
