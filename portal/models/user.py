"""Accounts: members and community managers, and the teams they belong to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db
from portal.models.base import utcnow

ROLE_MEMBER = "member"
ROLE_MANAGER = "manager"
ROLES = (ROLE_MEMBER, ROLE_MANAGER)

team_members = sa.Table(
    "team_members",
    db.metadata,
    sa.Column("team_id", sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)


class User(UserMixin, db.Model):
    """A person who can sign in, locally or through an authentication system."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Lower-cased email address; unique. Empty until an SSO member supplies one.
    email: Mapped[str | None] = mapped_column(sa.String(254), unique=True)
    #: Public alias; unique (case-insensitively, stored as typed in ``username``).
    username: Mapped[str | None] = mapped_column(sa.String(80))
    #: Lower-cased username, the key of the uniqueness check.
    username_key: Mapped[str | None] = mapped_column(sa.String(80), unique=True)
    first_name: Mapped[str] = mapped_column(sa.String(120), default="")
    last_name: Mapped[str] = mapped_column(sa.String(120), default="")
    #: Werkzeug hash; ``None`` for accounts that only sign in through SSO.
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    #: ``member`` or ``manager`` (community manager).
    role: Mapped[str] = mapped_column(sa.String(20), default=ROLE_MEMBER)
    #: The authentication system whose "Groups contains V -> community manager" rule gave the
    #: manager role (its sync may take the role back); ``None`` when a manager gave it, or none.
    manager_role_system_id: Mapped[int | None] = mapped_column(sa.Integer)
    #: Membership status and type as the identity provider last reported them.
    membership_status: Mapped[str | None] = mapped_column(sa.String(120))
    membership_type: Mapped[str | None] = mapped_column(sa.String(120))
    membership_synced_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: Where ``username`` came from: ``member`` (typed here, never trusted for linking),
    #: ``provider`` (an identity provider supplied it) or ``manager``; ``None`` for old rows.
    username_source: Mapped[str | None] = mapped_column(sa.String(20))
    #: An email address the member typed, waiting for its confirmation link to be opened.
    #: It matches nothing and blocks nothing until confirmed.
    email_pending: Mapped[str | None] = mapped_column(sa.String(254))
    #: Rotated to end every session of this user (sign-out, password or role change,
    #: disabling); a session carrying another generation is signed out.
    session_generation: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Set when a community manager disables the account: it can no longer sign in.
    disabled_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: When a provider last ended sessions of this user (back-channel logout, webhook), as
    #: epoch seconds: a session signed in through a system before it is checked against
    #: ``provider_session_ends`` (``portal/auth/sessions.py``). Null: nothing to check.
    provider_logout_at: Mapped[float | None] = mapped_column(sa.Float)
    #: Profile fields the member still has to supply on *Complete your profile*.
    pending_fields: Mapped[list[str] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    teams: Mapped[list[Team]] = relationship(secondary=team_members, back_populates="members")
    identities: Mapped[list[Any]] = relationship(
        "Identity", back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def is_manager(self) -> bool:
        """Tell whether this user is a community manager."""
        return self.role == ROLE_MANAGER

    @property
    def is_active(self) -> bool:
        """Tell whether the account may sign in (a manager has not disabled it)."""
        return self.disabled_at is None

    def get_id(self) -> str:
        """Return the session's name for this user: ``"<id>:<session generation>"``.

        Rotating ``session_generation`` makes every session issued before it stale
        (``portal.auth.sessions.load_user`` refuses it).
        """
        return f"{self.id}:{self.session_generation or 0}"

    @property
    def display_name(self) -> str:
        """Return the best human name for this user."""
        full = f"{self.first_name} {self.last_name}".strip()
        return full or self.username or self.email or f"user {self.id}"

    def set_password(self, password: str) -> None:
        """Store a hash of ``password``."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """Tell whether ``password`` matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email!r}>"


class Team(db.Model):
    """A group of people that new SSO members can be onboarded into."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    #: Lower-cased name, unique.
    name_key: Mapped[str] = mapped_column(sa.String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    members: Mapped[list[User]] = relationship(secondary=team_members, back_populates="teams")

    def __repr__(self) -> str:
        return f"<Team {self.name!r}>"
