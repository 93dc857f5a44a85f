"""Member groups: their names, what refers to them, deletion, and memberships by hand."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from portal.extensions import db
from portal.models import AuthSystem, ContentItem, GroupMembership, MemberGroup, User
from portal.models.content import content_groups
from portal.models.group import GroupMappingSettings, GroupRule
from portal.services import audit


class GroupError(ValueError):
    """Bad input for a group operation; the message is for the person who typed it."""


# --- values -------------------------------------------------------------------------------


def normalize_value(value: Any, object_key: str = "") -> str | None:
    """Return the comparable form of one profile value (trimmed, case-folded), or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, Mapping):
        key = object_key.strip().casefold()
        if key:
            for k, v in value.items():
                if str(k).strip().casefold() == key and not isinstance(v, Mapping | list):
                    return normalize_value(v)
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    elif isinstance(value, list):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    text = text.strip().casefold()
    return text or None


def parse_values(text: str) -> list[str]:
    """Split what a manager typed into values: one per line or separated by commas."""
    seen: dict[str, str] = {}
    for part in re.split(r"[\n,]", text or ""):
        shown = part.strip()
        key = normalize_value(shown)
        if key and key not in seen:
            seen[key] = shown
    return list(seen.values())


# --- groups -------------------------------------------------------------------------------


def list_groups() -> list[MemberGroup]:
    """Return every member group, by name."""
    return list(db.session.scalars(sa.select(MemberGroup).order_by(MemberGroup.name_key)))


def get_group(group_id: int) -> MemberGroup | None:
    """Return the group with this id."""
    return db.session.get(MemberGroup, group_id)


def _clean_name(name: str, exclude_id: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise GroupError("Group name is required.")
    if len(name) > 120:
        raise GroupError("Group name must be at most 120 characters.")
    query = sa.select(MemberGroup.id).where(MemberGroup.name_key == name.casefold())
    if exclude_id is not None:
        query = query.where(MemberGroup.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise GroupError(f"A member group named {name} already exists.")
    return name


def create_group(name: str, description: str = "") -> MemberGroup:
    """Create a member group with a unique (case-insensitive) name."""
    name = _clean_name(name)
    group = MemberGroup(name=name, name_key=name.casefold(), description=description.strip())
    db.session.add(group)
    db.session.commit()
    return group


def update_group(group: MemberGroup, name: str, description: str = "") -> MemberGroup:
    """Rename a group and change its description."""
    name = _clean_name(name, exclude_id=group.id)
    group.name, group.name_key, group.description = name, name.casefold(), description.strip()
    db.session.commit()
    return group


@dataclass
class GroupUsage:
    """What deleting a group would touch."""

    content: list[ContentItem] = field(default_factory=list)
    content_count: int = 0
    rules: list[GroupRule] = field(default_factory=list)
    default_for: list[AuthSystem] = field(default_factory=list)
    member_count: int = 0

    @property
    def is_used(self) -> bool:
        """Tell whether anything refers to the group."""
        return bool(self.content_count or self.rules or self.default_for or self.member_count)


def describe_group_usage(group: MemberGroup, content_limit: int = 20) -> GroupUsage:
    """Return the content, rules, systems and members that refer to ``group``."""
    content_ids = sa.select(content_groups.c.content_id).where(
        content_groups.c.group_id == group.id
    )
    usage = GroupUsage()
    usage.content_count = db.session.scalar(
        sa.select(sa.func.count()).select_from(content_ids.subquery())
    )
    usage.content = list(
        db.session.scalars(
            sa.select(ContentItem)
            .where(ContentItem.id.in_(content_ids))
            .order_by(ContentItem.title)
            .limit(content_limit)
        )
    )
    usage.rules = list(
        db.session.scalars(
            sa.select(GroupRule).where(GroupRule.group_id == group.id).order_by(GroupRule.id)
        )
    )
    usage.default_for = list(
        db.session.scalars(
            sa.select(AuthSystem)
            .join(GroupMappingSettings, GroupMappingSettings.auth_system_id == AuthSystem.id)
            .where(GroupMappingSettings.default_group_id == group.id)
            .order_by(AuthSystem.name_key)
        )
    )
    usage.member_count = db.session.scalar(
        sa.select(sa.func.count(sa.distinct(GroupMembership.user_id))).where(
            GroupMembership.group_id == group.id
        )
    )
    return usage


def delete_group(group: MemberGroup, *, actor: User | None = None) -> None:
    """Delete a group with its memberships and rules; content stops naming it.

    Content that only this group could open stays restricted to groups, so nobody gains
    access by the deletion (a manager then picks other groups for it). The audit log keeps
    the group's name and, in words, every mapping rule that went with it.
    """
    usage = describe_group_usage(group, content_limit=0)
    audit.record_event(
        audit.GROUP_DELETED,
        actor=actor,
        details={
            "group": group.name,
            "group_id": group.id,
            "rules": [
                {
                    "system_id": rule.auth_system_id,
                    "system": rule.auth_system.name,
                    "rule": rule_text(rule),
                }
                for rule in usage.rules
            ],
            "default_for": [system.name for system in usage.default_for],
            "members": usage.member_count,
            "content": usage.content_count,
        },
    )
    db.session.execute(
        sa.update(GroupMappingSettings)
        .where(GroupMappingSettings.default_group_id == group.id)
        .values(default_group_id=None)
    )
    db.session.execute(sa.delete(content_groups).where(content_groups.c.group_id == group.id))
    db.session.delete(group)
    db.session.commit()


def rule_text(rule: GroupRule) -> str:
    """Describe a mapping rule in words, as the audit log keeps it."""
    values = ", ".join(rule.values_display or rule.values or [])
    if rule.group_id is None:
        return f"{rule.kind_label}: {values}"
    group = rule.group or get_group(rule.group_id)
    return f"{rule.kind_label} {values} → {group.name if group else 'a deleted group'}"


# --- membership by hand -------------------------------------------------------------------


def list_user_memberships(user: User) -> list[GroupMembership]:
    """Return every membership of ``user`` with its group and source, by group name."""
    return list(
        db.session.scalars(
            sa.select(GroupMembership)
            .join(MemberGroup, MemberGroup.id == GroupMembership.group_id)
            .where(GroupMembership.user_id == user.id)
            .options(joinedload(GroupMembership.group), joinedload(GroupMembership.auth_system))
            .order_by(MemberGroup.name_key, GroupMembership.id)
        )
    )


def assign_manual_group(user: User, group: MemberGroup) -> bool:
    """Put ``user`` in ``group`` by hand; return False when they already were (by hand)."""
    exists = db.session.scalar(
        sa.select(GroupMembership.id).where(
            GroupMembership.user_id == user.id,
            GroupMembership.group_id == group.id,
            GroupMembership.auth_system_id.is_(None),
        )
    )
    if exists is not None:
        return False
    db.session.add(GroupMembership(user_id=user.id, group_id=group.id, auth_system_id=None))
    db.session.commit()
    return True


def remove_manual_group(user: User, group: MemberGroup) -> bool:
    """Remove the by-hand membership of ``user`` in ``group``; return whether there was one.

    Memberships that came from an authentication system stay: the provider owns them.
    """
    result = db.session.execute(
        sa.delete(GroupMembership).where(
            GroupMembership.user_id == user.id,
            GroupMembership.group_id == group.id,
            GroupMembership.auth_system_id.is_(None),
        )
    )
    db.session.commit()
    return bool(result.rowcount)
