"""The server-side half of a session signed in through SSO: its tokens and its re-checks."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import utcnow


class SSOSession(db.Model):
    """One browser session signed in through an authentication system that needs its tokens.

    Written at sign-in when the system re-checks membership or has a Logoff API; the
    session cookie names it by a random key whose SHA-256 is ``id`` (the tokens never
    travel in the cookie). Deleted at sign-out.
    """

    __tablename__ = "sso_sessions"

    #: SHA-256 (hex) of the random key kept in the session cookie.
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_system_id: Mapped[int] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE"), index=True
    )
    #: The user's session generation at sign-in: once it moved (sign-out, *Sign out
    #: everywhere*...) the session is dead and the row is deleted at the user's next sign-in.
    session_generation: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: The provider's User ID at sign-in: a re-check must find the same person.
    subject: Mapped[str] = mapped_column(sa.String(255))
    #: Fernet token of the refresh token ("" when the provider gave none); replaced when the
    #: provider rotates it.
    refresh_token_encrypted: Mapped[str] = mapped_column(sa.Text, default="")
    #: Fernet token of the last token response as JSON, its refresh token left out (held
    #: above): the access token, the ID token, what the profile requests may read.
    token_response_encrypted: Mapped[str] = mapped_column(sa.Text, default="")
    #: When the access token expires (from ``expires_in``); None when the provider didn't say.
    access_expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: When the membership was last confirmed with the provider.
    checked_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    #: Set while one request re-checks (a conditional UPDATE claims it): at most one at a time.
    checking_since: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: The first of the failed re-checks in a row that could not reach the provider.
    unreachable_since: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
