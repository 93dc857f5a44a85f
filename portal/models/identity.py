"""SSO bindings and login attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.auth_system import AuthSystem
from portal.models.base import utcnow
from portal.models.user import User


class Identity(db.Model):
    """A user's binding to an authentication system, keyed by the provider's User ID."""

    __tablename__ = "identities"
    __table_args__ = (
        sa.UniqueConstraint("auth_system_id", "subject", name="uq_identities_subject"),
        sa.UniqueConstraint("user_id", "auth_system_id", name="uq_identities_user_system"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No index of their own: each column leads one of the unique constraints above, whose
    # index serves a lookup (or a cascade) by it alone. A second index would be written at
    # every sign-in for nothing, and PostgreSQL could plan the binding lookup on it (every
    # binding of the system, filtered by subject), a plan it keeps while the table grows.
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    auth_system_id: Mapped[int] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE")
    )
    #: The provider's stable User ID for this person.
    subject: Mapped[str] = mapped_column(sa.String(255))
    #: Profile fields this provider supplies and the member may not edit here.
    locked_fields: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: Set when the provider's deprovisioning webhook deleted this member: no sign-in
    #: through this binding any more (a manager unlinks it to let the member back).
    disabled_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="identities")
    auth_system: Mapped[AuthSystem] = relationship()


class LoginAttempt(db.Model):
    """One SSO sign-in in progress: state, nonce and PKCE verifier, used once."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 of the ``state`` sent to the provider (the state itself is not stored).
    state_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # Neither the browser's key nor the system is indexed: every statement naming them names
    # the attempt too (its state or its id), and the start's INSERT would write both indexes
    # for nothing. PostgreSQL could also plan the claim on either and keep that plan while the
    # table grows (on the system's: every attempt of the system, filtered by state). Deleting
    # a system finds its attempts without one (attempts are purged after a day).
    #: SHA-256 of a random key kept in this browser's session: binds the attempt to it.
    browser_hash: Mapped[str] = mapped_column(sa.String(64))
    auth_system_id: Mapped[int] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE")
    )
    #: Issuer expected in the callback's ``iss`` (RFC 9207), copied at start.
    issuer: Mapped[str] = mapped_column(sa.Text, default="")
    nonce: Mapped[str] = mapped_column(sa.String(255))
    #: PKCE verifier, encrypted like the client secret.
    code_verifier_encrypted: Mapped[str] = mapped_column(sa.Text)
    #: Where to go after signing in (a same-site path).
    next_path: Mapped[str] = mapped_column(sa.Text, default="")
    #: Started from the admin's test screen: trace, don't sign in.
    is_test: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    #: The redacted trace a test sign-in produced, for the admin's test screen to show.
    test_result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, index=True
    )
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
