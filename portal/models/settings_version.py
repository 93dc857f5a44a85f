"""The settings version: one number every configuration change moves on."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db

#: The one row's id.
SETTINGS_VERSION_ID = 1


class SettingsVersion(db.Model):
    """A counter bumped in the same transaction as every change to the sign-in settings.

    Each process keeps a compiled snapshot of the authentication systems and checks this one
    number (a primary-key read) per sign-in request, so a change made by any process or
    instance is used by the next sign-in everywhere (``portal.services.settings_snapshot``).
    """

    __tablename__ = "settings_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
