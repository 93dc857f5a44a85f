"""User management for community managers: search, SSO bindings, roles, disabling, sessions."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload

from portal.extensions import db
from portal.models import ROLE_MANAGER, ROLE_MEMBER, GroupMembership, Identity, User
from portal.models.base import utcnow
from portal.services import audit
from portal.services.content import PER_PAGE, Page, escape_like

#: Why a user's sessions were ended, as the audit log records it.
REVOKE_SIGN_OUT_EVERYWHERE = "sign_out_everywhere"
REVOKE_PASSWORD_CHANGED = "password_changed"
REVOKE_ROLE_CHANGED = "role_changed"
REVOKE_DISABLED = "disabled"
REVOKE_MERGED = "merged"
REVOKE_REASONS: dict[str, str] = {
    REVOKE_SIGN_OUT_EVERYWHERE: "Sign out everywhere",
    REVOKE_PASSWORD_CHANGED: "Password changed",
    REVOKE_ROLE_CHANGED: "Role changed",
    REVOKE_DISABLED: "Account disabled",
    REVOKE_MERGED: "Account merged into another",
}
ROLE_LABELS = {ROLE_MANAGER: "Community manager", ROLE_MEMBER: "Member"}


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
    """Return how many community managers can sign in (disabled ones don't count)."""
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(User)
        .where(User.role == ROLE_MANAGER, User.disabled_at.is_(None))
    )


# --- sessions -----------------------------------------------------------------------------


def _subject(user: User) -> dict[str, object]:
    """Return who an event is about, for its audit details (the actor may be someone else)."""
    return {"user_id": user.id, "user": (user.email or user.display_name)[:255]}


def rotate_session_generation(user: User) -> None:
    """End every session of ``user`` (in the current transaction; the caller commits).

    The increment happens in SQL, so two rotations at once both count.
    """
    db.session.execute(
        sa.update(User)
        .where(User.id == user.id)
        .values(session_generation=sa.func.coalesce(User.session_generation, 0) + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(user, ["session_generation"])


def end_sessions(user: User) -> None:
    """End every session of ``user`` at sign-out (not audited: the user's own, ordinary act)."""
    rotate_session_generation(user)
    db.session.commit()


def revoke_sessions(user: User, *, actor: User | None, reason: str, commit: bool = True) -> None:
    """End every session of ``user`` and audit who did it and why (``REVOKE_*``)."""
    if reason not in REVOKE_REASONS:
        raise ValueError(f"Unknown reason {reason!r}.")
    rotate_session_generation(user)
    audit.record_event(
        audit.SESSIONS_REVOKED,
        actor=actor,
        details={**_subject(user), "reason": reason, "reason_label": REVOKE_REASONS[reason]},
    )
    if commit:
        db.session.commit()


def change_password(user: User, password: str, *, actor: User | None = None) -> None:
    """Set a new local password and end every session signed in with the old one."""
    if len(password) < 8:
        raise UserAdminError("The password must be at least 8 characters long.")
    user.set_password(password)
    revoke_sessions(user, actor=actor, reason=REVOKE_PASSWORD_CHANGED)


# --- roles --------------------------------------------------------------------------------


def _change_role(user: User, role: str, actor: User | None) -> None:
    old = user.role
    user.role = role
    # A manager's own decision: no provider's manager-role rule takes it back later.
    user.manager_role_system_id = None
    audit.record_event(
        audit.ROLE_CHANGED,
        actor=actor,
        details={
            **_subject(user),
            "old_role": old,
            "new_role": role,
            "old_label": ROLE_LABELS.get(old, old),
            "new_label": ROLE_LABELS.get(role, role),
        },
    )
    # Sessions opened under the old role end: a demoted manager's open admin tabs, or a
    # copied cookie of a newly promoted member, do not carry over.
    revoke_sessions(user, actor=actor, reason=REVOKE_ROLE_CHANGED, commit=False)
    db.session.commit()


def promote_user(user: User, *, actor: User | None = None) -> None:
    """Make ``user`` a community manager."""
    if user.role == ROLE_MANAGER:
        return
    _change_role(user, ROLE_MANAGER, actor)


def demote_user(user: User, *, actor: User | None = None) -> None:
    """Make ``user`` a member again, refusing to remove the last community manager."""
    if user.role != ROLE_MANAGER:
        return
    # Lock the managers' rows (PostgreSQL) so two demotions can't both see "another one left".
    managers = list(
        db.session.scalars(
            sa.select(User.id)
            .where(User.role == ROLE_MANAGER, User.disabled_at.is_(None))
            .with_for_update()
        )
    )
    if user.id in managers and len(managers) <= 1:
        db.session.rollback()
        raise UserAdminError("This is the last community manager; promote someone else first.")
    _change_role(user, ROLE_MEMBER, actor)


# --- disabling ----------------------------------------------------------------------------


def disable_user(user: User, *, actor: User | None) -> None:
    """Stop ``user`` from signing in and end their sessions now."""
    if actor is not None and actor.id == user.id:
        raise UserAdminError("You cannot disable your own account.")
    if user.disabled_at is not None:
        return
    user.disabled_at = utcnow()
    audit.record_event(audit.USER_DISABLED, actor=actor, details=_subject(user))
    revoke_sessions(user, actor=actor, reason=REVOKE_DISABLED, commit=False)
    db.session.commit()


def enable_user(user: User, *, actor: User | None) -> None:
    """Let a disabled ``user`` sign in again."""
    if user.disabled_at is None:
        return
    user.disabled_at = None
    audit.record_event(audit.USER_ENABLED, actor=actor, details=_subject(user))
    db.session.commit()
