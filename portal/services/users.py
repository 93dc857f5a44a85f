"""User management for community managers: search, SSO bindings, roles."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload

from portal.extensions import db
from portal.models import ROLE_MANAGER, ROLE_MEMBER, GroupMembership, Identity, User
from portal.services.content import PER_PAGE, Page, escape_like


class UserAdminError(ValueError):
    """A user-management operation that must not happen; the message says why."""


def search_users(query: str = "", page: int = 1, per_page: int = PER_PAGE) -> Page:
    """Return one page of users whose name, username or email contains ``query``."""
    page = max(1, page)
    stmt = sa.select(User)
    words = (query or "").strip().lower().split()
    full_name = sa.func.lower(User.first_name + " " + User.last_name)
    for word in words:
        pattern = "%" + escape_like(word) + "%"
        stmt = stmt.where(
            sa.or_(
                sa.func.lower(User.email).like(pattern, escape="\\"),
                User.username_key.like(pattern, escape="\\"),
                full_name.like(pattern, escape="\\"),
            )
        )
    total = db.session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery()))
    items = list(
        db.session.scalars(
            stmt.order_by(User.email, User.id).limit(per_page).offset((page - 1) * per_page)
        )
    )
    return Page(items, total or 0, page, per_page)


def get_user(user_id: int) -> User | None:
    """Return the user with this id, with their SSO bindings."""
    return db.session.scalar(
        sa.select(User)
        .where(User.id == user_id)
        .options(selectinload(User.identities).joinedload(Identity.auth_system))
    )


def get_identity(user: User, identity_id: int) -> Identity | None:
    """Return the SSO binding ``identity_id`` of ``user``."""
    return db.session.scalar(
        sa.select(Identity)
        .where(Identity.id == identity_id, Identity.user_id == user.id)
        .options(joinedload(Identity.auth_system))
    )


def unlink_identity(user: User, identity: Identity) -> None:
    """Remove an SSO binding and the groups that came from that system.

    The provider's fields stop being locked; the next SSO sign-in with that account binds
    again (matching as the system's upgrade options say).
    """
    db.session.execute(
        sa.delete(GroupMembership).where(
            GroupMembership.user_id == user.id,
            GroupMembership.auth_system_id == identity.auth_system_id,
        )
    )
    db.session.delete(identity)
    db.session.commit()
    db.session.expire(user)


def count_managers() -> int:
    """Return how many community managers there are."""
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(User).where(User.role == ROLE_MANAGER)
    )


def promote_user(user: User) -> None:
    """Make ``user`` a community manager."""
    user.role = ROLE_MANAGER
    db.session.commit()


def demote_user(user: User) -> None:
    """Make ``user`` a member again, refusing to remove the last community manager."""
    if user.role != ROLE_MANAGER:
        return
    # Lock the managers' rows (PostgreSQL) so two demotions can't both see "another one left".
    managers = list(
        db.session.scalars(sa.select(User.id).where(User.role == ROLE_MANAGER).with_for_update())
    )
    if len(managers) <= 1:
        db.session.rollback()
        raise UserAdminError("This is the last community manager; promote someone else first.")
    user.role = ROLE_MEMBER
    db.session.commit()
