"""Authentication systems: read at runtime by the sign-in flow, written by the admin."""

from __future__ import annotations

import re
import unicodedata

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import AuthSystem
from portal.services.secrets import decrypt_secret, encrypt_secret, rotate_secret


def slugify(name: str) -> str:
    """Return the URL identifier for a system's name (ASCII, lower case, dashes)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def list_auth_systems() -> list[AuthSystem]:
    """Return every authentication system, by name."""
    return list(db.session.scalars(sa.select(AuthSystem).order_by(AuthSystem.name_key)))


def list_enabled_systems() -> list[AuthSystem]:
    """Return the enabled systems with their profile parameters, by name."""
    query = (
        sa.select(AuthSystem)
        .where(AuthSystem.enabled.is_(True))
        .options(selectinload(AuthSystem.params))
        .order_by(AuthSystem.name_key)
    )
    return list(db.session.scalars(query))


def get_auth_system(system_id: int) -> AuthSystem | None:
    """Return the system with this id."""
    return db.session.get(AuthSystem, system_id)


def get_system_by_slug(slug: str) -> AuthSystem | None:
    """Return the system whose Redirect URL uses ``slug``."""
    query = (
        sa.select(AuthSystem)
        .where(AuthSystem.slug == slug)
        .options(selectinload(AuthSystem.params))
    )
    return db.session.scalar(query)


def read_client_secret(system: AuthSystem) -> str:
    """Return the decrypted client secret of ``system``."""
    return decrypt_secret(system.client_secret_encrypted)


def store_client_secret(system: AuthSystem, secret: str) -> None:
    """Encrypt and set the client secret of ``system`` (not committed)."""
    system.client_secret_encrypted = encrypt_secret(secret)


def rotate_all_secrets() -> int:
    """Re-encrypt every stored client secret under the newest key; return how many."""
    count = 0
    for system in db.session.scalars(sa.select(AuthSystem)):
        if system.client_secret_encrypted:
            system.client_secret_encrypted = rotate_secret(system.client_secret_encrypted)
            count += 1
    db.session.commit()
    return count
