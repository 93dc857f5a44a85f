"""Each authentication system's group mapping: its settings, its rules, and the sync at sign-in.

How a profile maps onto groups (see ``docs/groups-and-content.md``):

* every value is compared after trimming and case-folding (``" Gold "`` matches ``gold``);
* the Groups field is a list whose items are strings, or objects the Groups path left whole:
  an object is read through the system's *group object key* (``{"Code": "GOLD"}`` with key
  ``Code`` gives ``gold``; key lookup is case-insensitive too) and, without a key or when the
  key is missing, compared as its compact JSON with sorted keys (``{"code":"gold"}``);
* numbers and booleans are compared as their text (``42``, ``true``).

The same settings hold the system's access rules, applied at sign-in and at every membership
re-check by ``sign_in_refusal`` (and to newcomers by ``new_account_refusal``): *Sign in only
when Membership Status is one of*, **Allowed Email Domains** (exact domains after the last
``@``, case-insensitive; a subdomain passes only when listed itself), **Required Claim** (a
JMESPath over the profile that must be truthy, as JMESPath defines it: not null, false, or an
empty text, list or object) and **Existing Accounts Only**.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from jmespath.exceptions import JMESPathError

from portal.extensions import db
from portal.models import ROLE_MANAGER, ROLE_MEMBER, AuthSystem, GroupMembership, User
from portal.models.base import utcnow
from portal.models.group import (
    ROLE_KINDS,
    RULE_GROUPS_CONTAINS,
    RULE_KINDS,
    RULE_STATUS_IN,
    RULE_TYPE_IN,
    SINGLE_VALUE_KINDS,
    GroupMappingSettings,
    GroupRule,
)
from portal.services import audit
from portal.services.groups import GroupError, get_group, normalize_value, parse_values, rule_text
from portal.services.settings_snapshot import SystemSettings, settings_of
from portal.sso.paths import path_limit_problem, search_path, validate_path

log = logging.getLogger(__name__)

DEFAULT_DENY_MESSAGE = (
    "Your membership does not allow you to sign in here at the moment. "
    "Please contact the community team if you think this is a mistake."
)


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
            allowed_email_domains=[],
            required_claim="",
            required_claim_message="",
            existing_accounts_only=False,
            existing_accounts_message="",
        )
    return settings


class AccessRuleError(GroupError):
    """Bad input for one access rule; ``field`` names the setting (a ``SETTINGS_LABELS`` key)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


#: A domain name as DNS writes it (IDNA labels included): letters, digits, hyphens, dots.
_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


def normalize_domain(text: str) -> str | None:
    """Return a domain in its comparable form (lower case, ASCII/IDNA), or None if it is none."""
    domain = text.strip().lower().removesuffix(".")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return domain if _DOMAIN.fullmatch(domain) else None


def parse_email_domains(text: str) -> list[str]:
    """Read *Allowed Email Domains* (one per line, or separated by commas); raise on a bad one."""
    domains: list[str] = []
    for part in re.split(r"[\n,]", text or ""):
        typed = part.strip().removeprefix("@")
        if not typed:
            continue
        domain = normalize_domain(typed)
        if domain is None:
            raise AccessRuleError(
                "allowed_email_domains",
                f"\u201c{typed[:80]}\u201d is not a domain name. Type one domain per line, "
                "such as example.org (no @, no wildcards; list each subdomain itself).",
            )
        if domain not in domains:
            domains.append(domain)
    return domains


def email_domain(email: Any) -> str | None:
    """Return the comparable domain of an email address (after its last ``@``), or None."""
    if not isinstance(email, str):
        return None
    text = email.strip()
    if not text or any(c.isspace() or ord(c) < 32 for c in text) or "@" not in text:
        return None
    local, _, domain = text.rpartition("@")
    return normalize_domain(domain) if local and domain else None


def required_claim_problem(expr: str) -> str | None:
    """Return why a Required Claim expression cannot be saved, or None."""
    problem = validate_path(expr)
    if problem is not None:
        return f"The Required Claim is not a valid JMESPath expression: {problem}"
    limit = path_limit_problem(expr)
    return f"The Required Claim {limit}" if limit else None


def is_truthy(value: Any) -> bool:
    """Tell whether a JMESPath result is true as JMESPath defines it (0 is true, [] is not)."""
    return value is not None and value is not False and value not in ("", [], {})


#: Labels of the mapping settings, as the mapping screen shows them (for the audit log).
SETTINGS_LABELS: dict[str, str] = {
    "default_group": "Default group",
    "restrict_sign_in": "Allow sign-in only when Membership Status is one of",
    "allowed_statuses": "Allowed Membership Status values",
    "deny_message": "Message shown when sign-in is not allowed",
    "group_object_key": "Key read from Groups values that are objects",
    "allowed_email_domains": "Allowed Email Domains",
    "required_claim": "Required Claim",
    "required_claim_message": "Message shown when the Required Claim is not met",
    "existing_accounts_only": "Existing Accounts Only",
    "existing_accounts_message": "Message shown to newcomers when Existing Accounts Only is on",
}


def settings_shown(settings: GroupMappingSettings) -> dict[str, str]:
    """Return the settings as the mapping screen shows them, by ``SETTINGS_LABELS`` key."""
    group = get_group(settings.default_group_id) if settings.default_group_id else None
    return {
        "default_group": group.name if group else "No default group",
        "restrict_sign_in": "Yes" if settings.restrict_sign_in else "No",
        "allowed_statuses": ", ".join(settings.allowed_statuses_display or []),
        "deny_message": settings.deny_message or "",
        "group_object_key": settings.group_object_key or "",
        "allowed_email_domains": ", ".join(settings.allowed_email_domains or []),
        "required_claim": settings.required_claim or "",
        "required_claim_message": settings.required_claim_message or "",
        "existing_accounts_only": "Yes" if settings.existing_accounts_only else "No",
        "existing_accounts_message": settings.existing_accounts_message or "",
    }


def settings_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[dict]:
    """Return the audit changes between two ``settings_shown`` dicts."""
    return [
        {"field": key, "label": label, "old": before[key], "new": after[key]}
        for key, label in SETTINGS_LABELS.items()
        if before[key] != after[key]
    ]


def apply_mapping_settings(
    settings: GroupMappingSettings,
    *,
    default_group_id: int | None,
    restrict_sign_in: bool,
    statuses: list[str],
    deny_message: str,
    group_object_key: str,
    allowed_email_domains: list[str] = (),  # type: ignore[assignment]
    required_claim: str = "",
    required_claim_message: str = "",
    existing_accounts_only: bool = False,
    existing_accounts_message: str = "",
) -> None:
    """Set a system's mapping settings (checked values; statuses as typed, one per item)."""
    settings.default_group_id = default_group_id
    settings.restrict_sign_in = restrict_sign_in
    settings.allowed_statuses_display = statuses
    settings.allowed_statuses = [normalize_value(s) or "" for s in statuses]
    settings.deny_message = deny_message.strip()
    settings.group_object_key = group_object_key.strip()
    settings.allowed_email_domains = list(allowed_email_domains)
    settings.required_claim = required_claim.strip()
    settings.required_claim_message = required_claim_message.strip()
    settings.existing_accounts_only = existing_accounts_only
    settings.existing_accounts_message = existing_accounts_message.strip()


def new_rule(system: AuthSystem, kind: str, values: list[str], group_id: int | None) -> GroupRule:
    """Return a mapping rule (not added to the session) for checked values, as typed.

    A rule of ``ROLE_KINDS`` gives the community manager role, never a group.
    """
    if kind in ROLE_KINDS:
        group_id = None
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
    allowed_email_domains: str = "",
    required_claim: str = "",
    required_claim_message: str = "",
    existing_accounts_only: bool = False,
    existing_accounts_message: str = "",
    actor: User | None = None,
) -> GroupMappingSettings:
    """Save the default group, the sign-in restriction, access rules and object key of ``system``.

    Raises GroupError (AccessRuleError naming the setting) on bad input, changing nothing.
    """
    if default_group_id is not None and get_group(default_group_id) is None:
        raise GroupError("The default group does not exist any more.")
    statuses = parse_values(allowed_statuses)
    if restrict_sign_in and not statuses:
        raise GroupError(
            "List at least one Membership Status that may sign in, or turn the restriction off."
        )
    domains = parse_email_domains(allowed_email_domains)
    problem = required_claim_problem(required_claim.strip()) if required_claim.strip() else None
    if problem:
        raise AccessRuleError("required_claim", problem)
    settings = get_mapping_settings(system)
    before = settings_shown(settings)
    apply_mapping_settings(
        settings,
        default_group_id=default_group_id,
        restrict_sign_in=restrict_sign_in,
        statuses=statuses,
        deny_message=deny_message,
        group_object_key=group_object_key,
        allowed_email_domains=domains,
        required_claim=required_claim,
        required_claim_message=required_claim_message,
        existing_accounts_only=existing_accounts_only,
        existing_accounts_message=existing_accounts_message,
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
    system: AuthSystem, kind: str, values: str, group_id: int | None, *, actor: User | None = None
) -> list[GroupRule]:
    """Add mapping rules to ``system``; return them (audited).

    "Groups contains" (and its manager-role kind) takes one value per rule, so several values
    typed at once make several rules (each then shows and deletes on its own). A rule of
    ``ROLE_KINDS`` ignores ``group_id``: it gives the community manager role.
    """
    if kind not in RULE_KINDS:
        raise GroupError("Choose what the rule looks at.")
    group = None
    if kind not in ROLE_KINDS:
        group = get_group(group_id) if group_id else None
        if group is None:
            raise GroupError("Choose the member group the rule puts people in.")
    shown = parse_values(values)
    if not shown:
        raise GroupError("Type at least one value.")
    batches = [[v] for v in shown] if kind in SINGLE_VALUE_KINDS else [shown]
    rules = []
    for batch in batches:
        rule = new_rule(system, kind, batch, group.id if group else None)
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


@dataclass(frozen=True, slots=True)
class SignInRefusal:
    """Why an access rule refuses a profile: ``reason`` for the log, ``message`` for the member."""

    reason: str
    message: str


def sign_in_refusal(
    system: AuthSystem | SystemSettings,
    fields: Mapping[str, Any],
    profile: Any = None,
    *,
    without_profile: bool = False,
) -> SignInRefusal | None:
    """Return why ``system``'s access rules refuse this profile, or None when they let it in.

    ``fields`` is the mapped profile (``SSOResult.fields``); ``profile`` the document the
    fields were read from, which the Required Claim searches. Reads no database: the rules
    come from the settings snapshot. The reason names no value of the profile.
    ``without_profile``: the caller holds no provider document (the deprovisioning webhook
    carries status, type and groups only), so the Required Claim is left to the next sign-in
    or membership re-check instead of refusing everyone.
    """
    policy = settings_of(system).group_policy
    fallback = policy.deny_message or DEFAULT_DENY_MESSAGE
    if policy.restrict_sign_in:
        status = normalize_value(fields.get("membership_status"))
        if status is None or status not in policy.allowed_statuses:
            return SignInRefusal("membership status is not one of those allowed", fallback)
    if policy.allowed_email_domains:
        if email_domain(fields.get("email")) not in policy.allowed_email_domains:
            return SignInRefusal("email address domain is not an Allowed Email Domain", fallback)
    if policy.required_claim and not without_profile:
        message = policy.required_claim_message or fallback
        try:
            met = is_truthy(search_path(policy.required_claim, profile or {}))
        except JMESPathError as exc:
            return SignInRefusal(
                f"Required Claim could not be evaluated ({type(exc).__name__})", message
            )
        if not met:
            return SignInRefusal("Required Claim is not met", message)
    return None


def check_sign_in_allowed(
    system: AuthSystem | SystemSettings,
    fields: Mapping[str, Any],
    profile: Any = None,
    *,
    without_profile: bool = False,
) -> str | None:
    """Return the message to show when ``system`` does not let this profile sign in, else None."""
    refusal = sign_in_refusal(system, fields, profile, without_profile=without_profile)
    return refusal.message if refusal else None


def new_account_refusal(system: AuthSystem | SystemSettings) -> SignInRefusal | None:
    """Return the refusal of a newcomer when the system has *Existing Accounts Only*, else None."""
    policy = settings_of(system).group_policy
    if not policy.existing_accounts_only:
        return None
    message = policy.existing_accounts_message or policy.deny_message or DEFAULT_DENY_MESSAGE
    return SignInRefusal("Existing Accounts Only: no new account through this system", message)


def group_values(raw: Any, object_key: str = "") -> set[str]:
    """Return the normalized values of a Groups field (a list, or a single value)."""
    items = raw if isinstance(raw, list | tuple) else ([] if raw is None else [raw])
    return {v for v in (normalize_value(item, object_key) for item in items) if v is not None}


def resolve_member_groups(
    system: AuthSystem | SystemSettings, fields: Mapping[str, Any]
) -> set[int]:
    """Return the ids of the groups ``system``'s rules give to this mapped profile."""
    policy = settings_of(system).group_policy
    status = normalize_value(fields.get("membership_status"))
    mtype = normalize_value(fields.get("membership_type"))
    groups = group_values(fields.get("groups"), policy.group_object_key)
    wanted: set[int] = set()
    if policy.default_group_id is not None:
        wanted.add(policy.default_group_id)
    for rule in policy.rules:
        if rule.group_id is None:  # a manager-role rule (sync_manager_role)
            continue
        if rule.kind == RULE_GROUPS_CONTAINS:
            hit = bool(rule.values & groups)
        elif rule.kind == RULE_STATUS_IN:
            hit = status in rule.values
        elif rule.kind == RULE_TYPE_IN:
            hit = mtype in rule.values
        else:
            hit = False
        if hit:
            wanted.add(rule.group_id)
    return wanted


def membership_values(fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Return the account's membership columns a sync writes from this mapped profile.

    Status and type only when the profile carries those keys (a system that doesn't map them
    never clears what another set), and always the sync time.
    """
    values: dict[str, Any] = {"membership_synced_at": now}
    for key in ("membership_status", "membership_type"):
        if key in fields:
            values[key] = _text_or_none(fields.get(key))
    return values


#: A new account's memberships, written in one statement (the account was inserted just now).
_INSERT_MEMBERSHIPS = GroupMembership.__table__.insert()


def new_account_needs_sync(system: AuthSystem | SystemSettings, fields: Mapping[str, Any]) -> bool:
    """Tell whether `sync_member_groups` would write anything for a new account.

    A new account holds no group and no role a system gave: only a group rule, or a manager
    rule, that matches this profile gives it something.
    """
    return bool(resolve_member_groups(system, fields)) or provider_grants_manager(system, fields)


def sync_member_groups(
    user: User,
    system: AuthSystem | SystemSettings,
    fields: Mapping[str, Any],
    *,
    new_account: bool = False,
    membership_written: bool = False,
    keep_groups_claim: bool = False,
) -> None:
    """Make ``user``'s groups from ``system`` match what the provider says now (no commit).

    Adds and removes only memberships whose source is ``system``; groups a manager assigned
    by hand and groups from other systems are kept. The community manager role follows the
    system's manager-role rules (``sync_manager_role``). Also records the membership status and
    type (when the profile carries those keys) and the sync time. Writes only what changed;
    the caller commits, in the same transaction as the rest of the sign-in.

    ``new_account``: ``user`` was inserted in this transaction with its membership columns
    (`membership_values`) and holds no membership yet: the groups are inserted in one
    statement, and ``user.group_memberships`` is left to load from the database if read.
    ``membership_written``: the caller wrote the membership columns already.
    ``keep_groups_claim``: ``fields`` carries no Groups (a webhook event that left them out):
    memberships a *Groups contains* rule gave are kept as they are.
    """
    system = settings_of(system)
    wanted = resolve_member_groups(system, fields)
    sync_manager_role(user, system, fields)
    if new_account:
        if wanted:
            now = user.membership_synced_at or utcnow()
            rows = [
                {"user_id": user.id, "group_id": g, "auth_system_id": system.id, "created_at": now}
                for g in sorted(wanted)
            ]
            db.session.connection().execute(_INSERT_MEMBERSHIPS, rows)
        return
    if not membership_written:
        for key, value in membership_values(fields, utcnow()).items():
            setattr(user, key, value)
    # Loaded with the member's binding at sign-in.
    memberships = user.group_memberships
    current = {m.group_id: m for m in memberships if m.auth_system_id == system.id}
    if keep_groups_claim:
        claimed = {r.group_id for r in system.group_policy.rules if r.kind == RULE_GROUPS_CONTAINS}
        wanted |= claimed & current.keys()
    for group_id, membership in current.items():
        if group_id not in wanted:
            memberships.remove(membership)
    for group_id in sorted(wanted - current.keys()):
        memberships.append(GroupMembership(group_id=group_id, auth_system_id=system.id))


def provider_grants_manager(system: AuthSystem | SystemSettings, fields: Mapping[str, Any]) -> bool:
    """Tell whether a "Groups contains V -> community manager" rule of ``system`` matches."""
    policy = settings_of(system).group_policy
    rules = [r for r in policy.rules if r.kind in ROLE_KINDS]
    if not rules:
        return False
    groups = group_values(fields.get("groups"), policy.group_object_key)
    return any(rule.values & groups for rule in rules)


def _keeps_last_manager(user: User) -> bool:
    """Tell whether taking ``user``'s role would leave no active manager, or none who can
    sign in locally (with a local password) while ``user`` can."""
    others = sa.select(User.id).where(
        User.role == ROLE_MANAGER, User.disabled_at.is_(None), User.id != user.id
    )
    # Lock the managers' rows (PostgreSQL) so two removals can't both see "another one left".
    if db.session.scalars(others.limit(1).with_for_update()).first() is None:
        return True
    if user.password_hash and user.is_active:
        local = others.where(User.password_hash.is_not(None), User.password_hash != "")
        return db.session.scalars(local.limit(1)).first() is None
    return False


def _record_role(user: User, system: SystemSettings, old: str, new: str, **extra: Any) -> None:
    labels = {ROLE_MANAGER: "Community manager", ROLE_MEMBER: "Member"}
    audit.record_event(
        audit.ROLE_CHANGED,
        system=system,  # type: ignore[arg-type]
        details={
            "user_id": user.id,
            "user": (user.email or user.display_name)[:255],
            "old_role": old,
            "new_role": new,
            "old_label": labels.get(old, old),
            "new_label": labels.get(new, new),
            "source": "provider groups",
            **extra,
        },
    )


def sync_manager_role(
    user: User, system: AuthSystem | SystemSettings, fields: Mapping[str, Any]
) -> None:
    """Give or take the community manager role as ``system``'s manager-role rules say (no commit).

    Grants the role when a rule matches the member's Groups, remembering which system gave
    it. Takes it back only when that system gave it and no rule matches any more (a role a
    manager gave by hand is never taken), and never from the last active manager, nor from
    the last one who can sign in locally. Each change is audited. Reads nothing when the
    system has no such rule and did not give this account the role.
    """
    system = settings_of(system)
    if provider_grants_manager(system, fields):
        if user.role != ROLE_MANAGER:
            _record_role(user, system, user.role, ROLE_MANAGER)
            user.role = ROLE_MANAGER
            user.manager_role_system_id = system.id
        return
    if user.manager_role_system_id != system.id:
        return
    if user.role != ROLE_MANAGER:
        user.manager_role_system_id = None
        return
    if _keeps_last_manager(user):
        log.warning(
            "Manager role of user %s kept: the provider no longer grants it, but this is the "
            "last community manager who can sign in",
            user.id,
        )
        return
    _record_role(user, system, ROLE_MANAGER, ROLE_MEMBER)
    user.role = ROLE_MEMBER
    user.manager_role_system_id = None


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:120] or None
