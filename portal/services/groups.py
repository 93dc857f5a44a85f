"""Member groups, mapping rules per authentication system, and the sync at every SSO login.

How a profile maps onto groups (see ``docs/groups-and-content.md``):

* every value is compared after trimming and case-folding (``" Gold "`` matches ``gold``);
* the Groups field is a list whose items are strings, or objects the Groups path left whole:
  an object is read through the system's *group object key* (``{"Code": "GOLD"}`` with key
  ``Code`` gives ``gold``; key lookup is case-insensitive too) and, without a key or when the
  key is missing, compared as its compact JSON with sorted keys (``{"code":"gold"}``);
* numbers and booleans are compared as their text (``42``, ``true``).
"""

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
from portal.models.base import utcnow
from portal.models.content import content_groups
from portal.models.group import (
    RULE_GROUPS_CONTAINS,
    RULE_KINDS,
    RULE_STATUS_IN,
    RULE_TYPE_IN,
    GroupMappingSettings,
    GroupRule,
)
from portal.services import audit

DEFAULT_DENY_MESSAGE = (
    "Your membership does not allow you to sign in here at the moment. "
    "Please contact the community team if you think this is a mistake."
)


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


def group_values(raw: Any, object_key: str = "") -> set[str]:
    """Return the normalized values of a Groups field (a list, or a single value)."""
    items = raw if isinstance(raw, list | tuple) else ([] if raw is None else [raw])
    return {v for v in (normalize_value(item, object_key) for item in items) if v is not None}


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


# --- mapping rules ------------------------------------------------------------------------


def get_mapping_settings(system: AuthSystem) -> GroupMappingSettings:
    """Return the system's mapping settings (a fresh, unsaved row when it has none)."""
    settings = db.session.get(GroupMappingSettings, system.id)
    if settings is None:
        settings = GroupMappingSettings(
            auth_system_id=system.id,
            restrict_sign_in=False,
            allowed_statuses=[],
            allowed_statuses_display=[],
            deny_message="",
            group_object_key="",
        )
    return settings


#: Labels of the mapping settings, as the mapping screen shows them (for the audit log).
SETTINGS_LABELS: dict[str, str] = {
    "default_group": "Default group",
    "restrict_sign_in": "Allow sign-in only when Membership Status is one of",
    "allowed_statuses": "Allowed Membership Status values",
    "deny_message": "Message shown when sign-in is not allowed",
    "group_object_key": "Key read from Groups values that are objects",
}


def settings_shown(settings: GroupMappingSettings) -> dict[str, str]:
    group = get_group(settings.default_group_id) if settings.default_group_id else None
    return {
        "default_group": group.name if group else "No default group",
        "restrict_sign_in": "Yes" if settings.restrict_sign_in else "No",
        "allowed_statuses": ", ".join(settings.allowed_statuses_display or []),
        "deny_message": settings.deny_message or "",
        "group_object_key": settings.group_object_key or "",
    }


def settings_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[dict]:
    """Return the audit changes between two ``settings_shown`` dicts."""
    return [
        {"field": key, "label": label, "old": before[key], "new": after[key]}
        for key, label in SETTINGS_LABELS.items()
        if before[key] != after[key]
    ]


def rule_text(rule: GroupRule) -> str:
    group = rule.group or get_group(rule.group_id)
    values = ", ".join(rule.values_display or rule.values or [])
    return f"{rule.kind_label} {values} → {group.name if group else 'a deleted group'}"


def apply_mapping_settings(
    settings: GroupMappingSettings,
    *,
    default_group_id: int | None,
    restrict_sign_in: bool,
    statuses: list[str],
    deny_message: str,
    group_object_key: str,
) -> None:
    """Set a system's mapping settings (checked values; statuses as typed, one per item)."""
    settings.default_group_id = default_group_id
    settings.restrict_sign_in = restrict_sign_in
    settings.allowed_statuses_display = statuses
    settings.allowed_statuses = [normalize_value(s) or "" for s in statuses]
    settings.deny_message = deny_message.strip()
    settings.group_object_key = group_object_key.strip()


def new_rule(system: AuthSystem, kind: str, values: list[str], group_id: int) -> GroupRule:
    """Return a mapping rule (not added to the session) for checked values, as typed."""
    return GroupRule(
        auth_system_id=system.id,
        kind=kind,
        values=[normalize_value(v) or "" for v in values],
        values_display=values,
        group_id=group_id,
    )


def save_mapping_settings(
    system: AuthSystem,
    *,
    default_group_id: int | None,
    restrict_sign_in: bool,
    allowed_statuses: str,
    deny_message: str,
    group_object_key: str,
    actor: User | None = None,
) -> GroupMappingSettings:
    """Save the default group, the sign-in restriction and the object key of ``system``."""
    if default_group_id is not None and get_group(default_group_id) is None:
        raise GroupError("The default group does not exist any more.")
    statuses = parse_values(allowed_statuses)
    if restrict_sign_in and not statuses:
        raise GroupError(
            "List at least one Membership Status that may sign in, or turn the restriction off."
        )
    settings = get_mapping_settings(system)
    before = settings_shown(settings)
    apply_mapping_settings(
        settings,
        default_group_id=default_group_id,
        restrict_sign_in=restrict_sign_in,
        statuses=statuses,
        deny_message=deny_message,
        group_object_key=group_object_key,
    )
    after = settings_shown(settings)
    changes = settings_changes(before, after)
    if changes:
        audit.record_event(
            audit.MAPPING_CHANGED, actor=actor, system=system, details={"changes": changes}
        )
    db.session.add(settings)
    db.session.commit()
    return settings


def list_rules(system: AuthSystem) -> list[GroupRule]:
    """Return the mapping rules of ``system`` in the order they were added."""
    return list(
        db.session.scalars(
            sa.select(GroupRule).where(GroupRule.auth_system_id == system.id).order_by(GroupRule.id)
        )
    )


def add_rule(
    system: AuthSystem, kind: str, values: str, group_id: int, *, actor: User | None = None
) -> list[GroupRule]:
    """Add mapping rules to ``system``; return them.

    "Groups contains" takes one value per rule, so several values typed at once make
    several rules (each then shows and deletes on its own).
    """
    if kind not in RULE_KINDS:
        raise GroupError("Choose what the rule looks at.")
    group = get_group(group_id)
    if group is None:
        raise GroupError("Choose the member group the rule puts people in.")
    shown = parse_values(values)
    if not shown:
        raise GroupError("Type at least one value.")
    batches = [[v] for v in shown] if kind == RULE_GROUPS_CONTAINS else [shown]
    rules = []
    for batch in batches:
        rule = new_rule(system, kind, batch, group.id)
        rule.group = group
        db.session.add(rule)
        rules.append(rule)
    changes = [
        {"field": "rule", "label": "Rule added", "old": "", "new": rule_text(r)} for r in rules
    ]
    audit.record_event(
        audit.MAPPING_CHANGED, actor=actor, system=system, details={"changes": changes}
    )
    db.session.commit()
    return rules


def delete_rule(rule: GroupRule, *, actor: User | None = None) -> None:
    """Delete one mapping rule (members lose its group at their next sign-in)."""
    changes = [{"field": "rule", "label": "Rule removed", "old": rule_text(rule), "new": ""}]
    audit.record_event(
        audit.MAPPING_CHANGED, actor=actor, system=rule.auth_system, details={"changes": changes}
    )
    db.session.delete(rule)
    db.session.commit()


def get_rule(system: AuthSystem, rule_id: int) -> GroupRule | None:
    """Return the rule ``rule_id`` of ``system``."""
    rule = db.session.get(GroupRule, rule_id)
    return rule if rule is not None and rule.auth_system_id == system.id else None


# --- the two functions the SSO flow calls -------------------------------------------------


def _settings_row(system: AuthSystem) -> GroupMappingSettings | None:
    return db.session.get(GroupMappingSettings, system.id)


def check_sign_in_allowed(system: AuthSystem, fields: Mapping[str, Any]) -> str | None:
    """Return the message to show when ``system`` does not let this profile sign in, else None.

    ``fields`` is the mapped profile (``SSOResult.fields``); only ``membership_status`` is read.
    """
    settings = _settings_row(system)
    if settings is None or not settings.restrict_sign_in:
        return None
    status = normalize_value(fields.get("membership_status"))
    if status is not None and status in set(settings.allowed_statuses or []):
        return None
    return settings.deny_message or DEFAULT_DENY_MESSAGE


def resolve_member_groups(system: AuthSystem, fields: Mapping[str, Any]) -> set[int]:
    """Return the ids of the groups ``system``'s rules give to this mapped profile."""
    settings = _settings_row(system)
    object_key = settings.group_object_key if settings else ""
    status = normalize_value(fields.get("membership_status"))
    mtype = normalize_value(fields.get("membership_type"))
    groups = group_values(fields.get("groups"), object_key)
    wanted: set[int] = set()
    if settings is not None and settings.default_group_id is not None:
        wanted.add(settings.default_group_id)
    for rule in list_rules(system):
        values = set(rule.values or [])
        if rule.kind == RULE_GROUPS_CONTAINS:
            hit = bool(values & groups)
        elif rule.kind == RULE_STATUS_IN:
            hit = status in values
        elif rule.kind == RULE_TYPE_IN:
            hit = mtype in values
        else:
            hit = False
        if hit:
            wanted.add(rule.group_id)
    return wanted


def sync_member_groups(user: User, system: AuthSystem, fields: Mapping[str, Any]) -> None:
    """Make ``user``'s groups from ``system`` match what the provider says now (no commit).

    Adds and removes only memberships whose source is ``system``; groups a manager assigned
    by hand and groups from other systems are kept. Also records the membership status and
    type (when the profile carries those keys) and the sync time. The caller commits, in the
    same transaction as the rest of the sign-in.
    """
    if "membership_status" in fields:
        user.membership_status = _text_or_none(fields.get("membership_status"))
    if "membership_type" in fields:
        user.membership_type = _text_or_none(fields.get("membership_type"))
    user.membership_synced_at = utcnow()
    wanted = resolve_member_groups(system, fields)
    if user.id is None:
        db.session.add(user)
        db.session.flush()
    current = {
        m.group_id: m
        for m in db.session.scalars(
            sa.select(GroupMembership).where(
                GroupMembership.user_id == user.id,
                GroupMembership.auth_system_id == system.id,
            )
        )
    }
    for group_id, membership in current.items():
        if group_id not in wanted:
            db.session.delete(membership)
    for group_id in wanted - current.keys():
        db.session.add(
            GroupMembership(user_id=user.id, group_id=group_id, auth_system_id=system.id)
        )
    db.session.flush()


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:120] or None


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


def user_group_ids(user_id: int) -> sa.Select[tuple[int]]:
    """Return a SELECT of the ids of the groups ``user_id`` is in (any source)."""
    return sa.select(GroupMembership.group_id).where(GroupMembership.user_id == user_id)
