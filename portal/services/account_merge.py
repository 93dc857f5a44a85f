"""Merge two accounts of one person: preview what moves, then move it in one transaction.

The *source* account's SSO bindings, group memberships and teams move to the *kept* account,
the kept account's empty profile fields are filled from the source (never overwritten), and
the source is deleted. What stays behind, table by table (every ``users.id`` foreign key):

- ``identities``: moved (a system both accounts are bound to is a conflict: no merge);
- ``group_memberships``: moved, unless the kept account has the same group from the same
  source already (then the source's row is dropped);
- ``team_members``: moved (teams the kept account is in already are not doubled);
- ``sso_sessions``, ``provider_sessions``, ``provider_session_ends``: dropped with the source:
  they describe the source's sessions, which the merge ends;
- ``audit_events`` keep the source's id and label (no foreign key): history is not rewritten.

Deleting (not disabling) the source frees its email address and username for the kept
account; nothing that outlives the source's sessions is lost.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from portal.extensions import db
from portal.models import (
    ROLE_MANAGER,
    ContentItem,
    GroupMembership,
    Identity,
    ProviderSession,
    ProviderSessionEnd,
    SSOSession,
    Team,
    User,
)
from portal.services import audit
from portal.services.content import visible_item_ids
from portal.services.users import REVOKE_MERGED, revoke_sessions, search_users
from portal.sso.profile_fields import ACCOUNT_FIELDS, FIELD_LABEL


class MergeRefused(ValueError):
    """The merge must not happen; the message says why (nothing was written)."""


@dataclass
class MergePreview:
    """What merging ``source`` into ``kept`` would do, and why it may not."""

    kept: User
    source: User
    #: The source's bindings that move: (system name, provider User ID).
    identities: list[Identity] = field(default_factory=list)
    #: Systems both accounts are bound to: the merge is refused.
    conflicts: list[str] = field(default_factory=list)
    #: The source's memberships that move (the kept account lacks them from that source).
    memberships: list[GroupMembership] = field(default_factory=list)
    teams: list[Team] = field(default_factory=list)
    #: Content the kept account can open only after the merge.
    content: list[ContentItem] = field(default_factory=list)
    #: Empty fields of the kept account filled from the source: (field, label, value).
    fills: list[tuple[str, str, str]] = field(default_factory=list)
    #: The source is a manager and the kept account is not: the role is not carried.
    role_not_carried: bool = False
    #: The kept account is disabled: nobody signs in to it until a manager enables it.
    kept_disabled: bool = False
    #: Why the merge is refused (empty: it may proceed).
    refusals: list[str] = field(default_factory=list)
    #: A digest of everything above: a merge of a preview that changed is refused.
    digest: str = ""


def find_merge_candidates(kept: User, query: str, limit: int = 20) -> list[User]:
    """Return accounts (not ``kept``) matching an email, username, name, or an id."""
    query = (query or "").strip()
    if not query:
        return []
    found: list[User] = []
    if query.isdigit():
        by_id = db.session.get(User, int(query))
        if by_id is not None:
            found.append(by_id)
    found += [u for u in search_users(query, 1, limit).items if u not in found]
    return [u for u in found if u.id != kept.id][:limit]


def _memberships(user: User) -> list[GroupMembership]:
    return list(
        db.session.scalars(
            sa.select(GroupMembership)
            .where(GroupMembership.user_id == user.id)
            .options(joinedload(GroupMembership.group), joinedload(GroupMembership.auth_system))
            .order_by(GroupMembership.id)
        )
    )


def _can_sign_in_locally(user: User) -> bool:
    return bool(user.password_hash) and user.is_active


def _last_local_manager(user: User) -> bool:
    """Tell whether ``user`` is the last active community manager with a local password."""
    if user.role != ROLE_MANAGER or not _can_sign_in_locally(user):
        return False
    others = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(User)
        .where(
            User.role == ROLE_MANAGER,
            User.disabled_at.is_(None),
            User.id != user.id,
            User.password_hash.is_not(None),
            User.password_hash != "",
        )
    )
    return not others


def _digest(preview: MergePreview) -> str:
    """Return a digest of the accounts' state that the preview showed."""

    def state(user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "role": user.role,
            "disabled": user.disabled_at is not None,
            "password": bool(user.password_hash),
            "fields": {key: getattr(user, key) for key in ACCOUNT_FIELDS},
            "identities": sorted((i.id, i.auth_system_id, i.subject) for i in user.identities),
            "memberships": sorted((m.group_id, m.auth_system_id or 0) for m in _memberships(user)),
            "teams": sorted(t.id for t in user.teams),
        }

    shown = {
        "kept": state(preview.kept),
        "source": state(preview.source),
        "content": [c.id for c in preview.content],
    }
    return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()


def preview_merge(kept: User, source: User, *, actor: User | None = None) -> MergePreview:
    """Return what merging ``source`` into ``kept`` would move, and why it may be refused."""
    preview = MergePreview(kept=kept, source=source)
    if kept.id == source.id:
        preview.refusals.append("An account cannot be merged into itself.")
        preview.digest = _digest(preview)
        return preview
    kept_systems = {i.auth_system_id for i in kept.identities}
    for identity in sorted(source.identities, key=lambda i: i.auth_system.name_key):
        if identity.auth_system_id in kept_systems:
            preview.conflicts.append(identity.auth_system.name)
        else:
            preview.identities.append(identity)
    if preview.conflicts:
        preview.refusals.append(
            "Both accounts are linked to "
            + ", ".join(preview.conflicts)
            + ": one account per person at each system. Unlink one of them first."
        )
    kept_rows = {(m.group_id, m.auth_system_id) for m in _memberships(kept)}
    preview.memberships = [
        m for m in _memberships(source) if (m.group_id, m.auth_system_id) not in kept_rows
    ]
    kept_teams = {t.id for t in kept.teams}
    preview.teams = sorted(
        (t for t in source.teams if t.id not in kept_teams), key=lambda t: t.name_key
    )
    if not kept.is_manager:
        preview.content = list(
            db.session.scalars(
                sa.select(ContentItem)
                .where(
                    ContentItem.id.in_(sa.select(visible_item_ids(source).c.id)),
                    ContentItem.id.not_in(sa.select(visible_item_ids(kept).c.id)),
                )
                .order_by(ContentItem.title, ContentItem.id)
            )
        )
    for key in ACCOUNT_FIELDS:
        value = getattr(source, key)
        if value and not getattr(kept, key):
            preview.fills.append((key, FIELD_LABEL[key], value))
    preview.role_not_carried = source.is_manager and not kept.is_manager
    preview.kept_disabled = kept.disabled_at is not None
    if _last_local_manager(source):
        preview.refusals.append(
            f"{source.display_name} is the last community manager who can sign in with a "
            "password. Give the kept account the role and a password first, or keep this one."
        )
    if actor is not None and actor.id == source.id:
        preview.refusals.append(
            "You cannot merge away the account you are signed in with. Merge the other way, "
            "or ask another community manager."
        )
    preview.digest = _digest(preview)
    return preview


def merge_accounts(kept: User, source: User, *, actor: User, expected_digest: str) -> MergePreview:
    """Move ``source`` into ``kept`` and delete it, in one transaction with one audit event.

    Refused (MergeRefused, nothing written) when the preview refuses, or when the accounts
    changed since the preview the manager confirmed (``expected_digest``).
    """
    # Lock both rows (PostgreSQL) so two merges, or a merge and a role change, don't interleave;
    # the preview is then computed again from what the database holds now.
    db.session.execute(
        sa.select(User.id).where(User.id.in_([kept.id, source.id])).with_for_update()
    )
    db.session.expire_all()
    preview = preview_merge(kept, source, actor=actor)
    if preview.refusals or preview.digest != expected_digest:
        db.session.rollback()  # release the row locks: nothing was written
    if preview.refusals:
        raise MergeRefused(" ".join(preview.refusals))
    if preview.digest != expected_digest:
        raise MergeRefused(
            "The accounts changed since this preview was shown. Review the new preview and "
            "merge again; nothing was changed."
        )
    counts = {
        "identities": len(preview.identities),
        "memberships": len(preview.memberships),
        "teams": len(preview.teams),
        "content": len(preview.content),
        "fields": len(preview.fills),
    }
    source_id, source_label = source.id, (source.email or source.display_name)[:255]
    fills = {key: value for key, _, value in preview.fills}
    carried = {"username_key": source.username_key, "username_source": source.username_source}
    moving = [m.id for m in preview.memberships]
    teams = [t.id for t in preview.teams]
    try:
        db.session.execute(
            sa.update(Identity).where(Identity.user_id == source_id).values(user_id=kept.id)
        )
        if moving:
            db.session.execute(
                sa.update(GroupMembership)
                .where(GroupMembership.id.in_(moving))
                .values(user_id=kept.id)
            )
        # The source's own sessions: ended, their server-side halves dropped.
        for model in (SSOSession, ProviderSession, ProviderSessionEnd):
            db.session.execute(sa.delete(model).where(model.user_id == source_id))
        revoke_sessions(source, actor=actor, reason=REVOKE_MERGED, commit=False)
        audit.record_event(
            audit.USER_MERGED,
            actor=actor,
            details={
                "kept_id": kept.id,
                "kept": (kept.email or kept.display_name)[:255],
                "source_id": source_id,
                "source": source_label,
                "counts": counts,
                "fields_filled": [label for _, label, _ in preview.fills],
                "role_not_carried": preview.role_not_carried,
            },
        )
        db.session.flush()
        # Everything loaded before the bulk updates is stale: read the rows again, so that
        # deleting the source cascades only to what stayed behind (its other memberships).
        db.session.expire_all()
        for team_id in teams:
            kept.teams.append(db.session.get(Team, team_id))
        db.session.delete(db.session.get(User, source_id))
        # Dropping the source frees its unique email address and username for the kept one.
        db.session.flush()
        for key, value in fills.items():
            setattr(kept, key, value)
            if key == "username":
                kept.username_key = carried["username_key"]
                kept.username_source = carried["username_source"]
        if kept.pending_fields:
            kept.pending_fields = [f for f in kept.pending_fields if f not in fills] or None
        db.session.commit()
    except IntegrityError:
        # A binding or membership written meanwhile (e.g. a sign-in) collides: nothing moved.
        db.session.rollback()
        raise MergeRefused(
            "The accounts changed while merging. Review the new preview and merge again; "
            "nothing was changed."
        ) from None
    except BaseException:
        db.session.rollback()
        raise
    db.session.expire(kept)
    return preview
