"""The sign-in settings, compiled once per process and checked with one read per request.

The sign-in flow never loads an authentication system row by row. Each process keeps an
immutable snapshot of every system (its engine configuration with the secret still
encrypted, its profile parameters, its group mapping rules and sign-in restriction), and
one number, ``settings_version``, says whether the snapshot is still current:

* every change to a system, its parameters, its group rules or mapping settings, or a
  member group bumps the number in the same transaction (session events below, so no
  writer can forget it: the admin screens, import, the CLI and the tests all go through
  them);
* a sign-in request reads the number once (a primary-key read) and rebuilds the snapshot
  when it moved, so a change made by any process or instance is used by the next sign-in.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_request_context, request
from sqlalchemy import event
from sqlalchemy.orm import Session, selectinload

from portal.database import PlainStatement, plain_connection
from portal.extensions import db
from portal.models import (
    AuthSystem,
    GroupMappingSettings,
    GroupRule,
    MemberGroup,
    ProfileParamRow,
    ProfileRequestRow,
    SettingsVersion,
)
from portal.models.settings_version import SETTINGS_VERSION_ID
from portal.sso.engine import ProfileRequest, SSOConfig
from portal.sso.fields import (
    ENGINE_FIELDS,
    FIELDS,
    PERSONIFY_FIELDS,
    SECRET,
    TYPE_PERSONIFY,
    encrypted_column,
)
from portal.sso.personify import PersonifyConfig
from portal.sso.profile_fields import ProfileParam
from portal.urls import redirect_url_for

#: The models whose rows are sign-in settings: changing one bumps the version.
SETTINGS_MODELS: tuple[type, ...] = (
    AuthSystem,
    ProfileParamRow,
    ProfileRequestRow,
    GroupRule,
    GroupMappingSettings,
    MemberGroup,
)
_SETTINGS_TABLES = frozenset(model.__tablename__ for model in SETTINGS_MODELS)  # type: ignore[attr-defined]

#: What the engine assumes for a setting left empty (``SSOConfig``'s own defaults).
_ENGINE_DEFAULTS: dict[str, str] = {
    f.name: f.default for f in dataclasses.fields(SSOConfig) if isinstance(f.default, str)
}


# -- the compiled settings ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParamSettings:
    """One profile parameter: where the field is read, and its two options."""

    field: str
    path: str
    can_upgrade: bool
    must_supply: bool


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """One group mapping rule: a condition on the profile and the group it gives."""

    kind: str
    values: frozenset[str]
    #: None for a rule that gives the community manager role.
    group_id: int | None


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """A system's group mapping: default group, rules, sign-in restriction and access rules."""

    default_group_id: int | None = None
    restrict_sign_in: bool = False
    allowed_statuses: frozenset[str] = frozenset()
    deny_message: str = ""
    group_object_key: str = ""
    rules: tuple[RuleSettings, ...] = ()
    allowed_email_domains: frozenset[str] = frozenset()
    required_claim: str = ""
    required_claim_message: str = ""
    existing_accounts_only: bool = False
    existing_accounts_message: str = ""


@dataclass(frozen=True, slots=True)
class SystemSettings:
    """Everything the sign-in flow reads of one authentication system, immutable."""

    id: int
    slug: str
    name: str
    type: str
    enabled: bool
    login_mode: str
    issuer: str
    client_id: str
    client_secret_encrypted: str
    logout_url: str
    profile_edit_url: str
    trusts_email: bool
    trusts_username: bool
    #: "Accept sign-ins started by the platform": a POSTed refresh token is redeemed.
    platform_start: bool
    #: "Re-check Membership Every (minutes)" (0 = off) and "Grace Period (minutes)".
    recheck_minutes: int
    grace_minutes: int
    onboarding_team_id: int | None
    params: tuple[ParamSettings, ...]
    group_policy: GroupPolicy
    #: The engine's configuration, client secret left empty (it stays encrypted above).
    sso_config: SSOConfig
    #: A Personify SSO system's engine configuration, secrets left empty (encrypted below);
    #: None for other types.
    personify_config: PersonifyConfig | None = None
    #: The Personify secrets (``vendor_password``...), still encrypted.
    personify_secrets_encrypted: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )

    def param(self, field: str) -> ParamSettings | None:
        """Return the profile parameter for ``field``, if any."""
        return next((p for p in self.params if p.field == field), None)


def group_policy_from(
    settings: GroupMappingSettings | None, rules: Iterable[GroupRule]
) -> GroupPolicy:
    """Compile a system's mapping settings row and rules (in the order they were added)."""
    compiled = tuple(
        RuleSettings(kind=r.kind, values=frozenset(r.values or []), group_id=r.group_id)
        for r in sorted(rules, key=lambda r: r.id)
    )
    if settings is None:
        return GroupPolicy(rules=compiled)
    return GroupPolicy(
        default_group_id=settings.default_group_id,
        restrict_sign_in=bool(settings.restrict_sign_in),
        allowed_statuses=frozenset(settings.allowed_statuses or []),
        deny_message=settings.deny_message or "",
        group_object_key=settings.group_object_key or "",
        rules=compiled,
        allowed_email_domains=frozenset(settings.allowed_email_domains or []),
        required_claim=settings.required_claim or "",
        required_claim_message=settings.required_claim_message or "",
        existing_accounts_only=bool(settings.existing_accounts_only),
        existing_accounts_message=settings.existing_accounts_message or "",
    )


def load_group_policy(system_id: int) -> GroupPolicy:
    """Read one system's group mapping from the database."""
    settings = db.session.get(GroupMappingSettings, system_id)
    rules = db.session.scalars(sa.select(GroupRule).where(GroupRule.auth_system_id == system_id))
    return group_policy_from(settings, rules)


def compile_system(system: AuthSystem, policy: GroupPolicy | None = None) -> SystemSettings:
    """Return the immutable settings of a system row (its group policy read when not given)."""
    params = tuple(
        ParamSettings(
            field=row.field,
            path=row.path or "",
            can_upgrade=bool(row.can_upgrade),
            must_supply=bool(row.must_supply),
        )
        for row in system.params
    )
    engine_values = {
        name: getattr(system, name) or _ENGINE_DEFAULTS.get(name, "")
        for name in ENGINE_FIELDS
        if name != "client_secret"
    }
    sso_config = SSOConfig(
        slug=system.slug,
        client_secret="",
        redirect_url=redirect_url_for(system.slug),
        params={
            p.field: ProfileParam(path=p.path, can_upgrade=p.can_upgrade, must_supply=p.must_supply)
            for p in params
        },
        profile_requests=compile_profile_requests(system),
        **engine_values,
    )
    personify_config, personify_secrets = _personify_settings(system)
    return SystemSettings(
        id=system.id,
        slug=system.slug,
        name=system.name or "",
        type=system.type,
        enabled=bool(system.enabled),
        login_mode=system.login_mode,
        # A Personify system has no issuer (an OAuth value kept from a change of Type is
        # ignored, and never checked against a callback).
        issuer="" if personify_config else system.issuer or "",
        client_id=system.client_id or "",
        client_secret_encrypted=system.client_secret_encrypted or "",
        logout_url=system.logout_url or "",
        profile_edit_url=system.profile_edit_url or "",
        trusts_email=bool(system.trusts_email),
        trusts_username=bool(system.trusts_username),
        # Only an OAuth 2.0 system redeems a refresh token (a Personify one has no token API).
        platform_start=bool(system.platform_start) and not personify_config,
        # Only an OAuth 2.0 system has tokens to re-check with.
        recheck_minutes=0 if personify_config else int(system.recheck_minutes or 0),
        grace_minutes=int(system.grace_minutes or 0),
        onboarding_team_id=system.onboarding_team_id,
        params=params,
        group_policy=policy if policy is not None else load_group_policy(system.id),
        sso_config=sso_config,
        personify_config=personify_config,
        personify_secrets_encrypted=personify_secrets,
    )


def compile_profile_requests(system: AuthSystem) -> tuple[ProfileRequest, ...]:
    """Return a system's profile requests for the engine, in order; those without a URL are not
    sent (the form refuses one with headers or a body, but an empty slot is no request)."""
    return tuple(
        ProfileRequest(
            url=row.url, method=row.method or "GET", headers=row.headers or "", body=row.body or ""
        )
        for row in sorted(system.profile_requests, key=lambda r: r.position)
        if row.url
    )


def _personify_settings(
    system: AuthSystem,
) -> tuple[PersonifyConfig | None, Mapping[str, str]]:
    """Return a Personify system's configuration (secrets empty) and its encrypted secrets."""
    if system.type != TYPE_PERSONIFY:
        return None, MappingProxyType({})
    secrets = {
        name: getattr(system, encrypted_column(name)) or ""
        for name in PERSONIFY_FIELDS
        if FIELDS[name].kind == SECRET
    }
    values = {
        name: "" if name in secrets else (getattr(system, name) or "") for name in PERSONIFY_FIELDS
    }
    config = PersonifyConfig(slug=system.slug, **values)
    return config, MappingProxyType(secrets)


def settings_of(system: AuthSystem | SystemSettings) -> SystemSettings:
    """Return the compiled settings of a system given as a row (as it is now) or compiled."""
    if isinstance(system, SystemSettings):
        return system
    return compile_system(system)


# -- the per-process snapshot -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Every system's settings at one settings version."""

    version: int | None
    by_slug: Mapping[str, SystemSettings]
    by_id: Mapping[int, SystemSettings]


class SnapshotCache:
    """One app's snapshot, rebuilt when the settings version moved."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def peek(self) -> Snapshot | None:
        """Return the last snapshot built, without reading the version (None before the first)."""
        return self._snapshot

    def get(self) -> Snapshot:
        """Return the current snapshot: one version read, and a rebuild when it moved."""
        version = read_version()
        snapshot = self._snapshot
        if snapshot is not None and snapshot.version == version and version is not None:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is None or snapshot.version != version or version is None:
                # Read the version first, then the rows: rows at least as new as the number
                # they are kept under, so a change committed meanwhile only costs a rebuild.
                snapshot = _build(version)
                self._snapshot = snapshot
        return snapshot


#: The one read per sign-in request, on the driver's cursor (`PlainStatement`).
_READ_VERSION = PlainStatement(
    sa.select(SettingsVersion.version).where(SettingsVersion.id == SETTINGS_VERSION_ID),
    columns=[SettingsVersion.__table__.c.version],
)


def read_version() -> int | None:
    """Return the settings version (None when its row is missing)."""
    with plain_connection() as connection:
        rows = connection.run(_READ_VERSION, {})
    return rows[0]["version"] if rows else None


#: Read the rows as the database has them, even when this session holds older copies.
_FRESH = {"populate_existing": True}


def _build(version: int | None) -> Snapshot:
    query = sa.select(AuthSystem).options(
        selectinload(AuthSystem.params), selectinload(AuthSystem.profile_requests)
    )
    systems = list(db.session.scalars(query, execution_options=_FRESH))
    settings = {
        s.auth_system_id: s
        for s in db.session.scalars(sa.select(GroupMappingSettings), execution_options=_FRESH)
    }
    rules: dict[int, list[GroupRule]] = {}
    for rule in db.session.scalars(sa.select(GroupRule), execution_options=_FRESH):
        rules.setdefault(rule.auth_system_id, []).append(rule)
    compiled = [
        compile_system(s, group_policy_from(settings.get(s.id), rules.get(s.id, [])))
        for s in systems
    ]
    return Snapshot(
        version=version,
        by_slug={s.slug: s for s in compiled},
        by_id={s.id: s for s in compiled},
    )


_EXTENSION = "portal.settings_snapshot"
_ENVIRON_KEY = "portal.settings_snapshot"


def current_snapshot() -> Snapshot:
    """Return the settings snapshot for this request (one version read per request)."""
    if has_request_context():
        memo = request.environ.get(_ENVIRON_KEY)
        if memo is not None:
            return memo
    cache = current_app.extensions.setdefault(_EXTENSION, SnapshotCache())
    snapshot = cache.get()
    if has_request_context():
        request.environ[_ENVIRON_KEY] = snapshot
    return snapshot


def peek_snapshot() -> Snapshot:
    """Return this process's last snapshot for this request, without reading the version.

    For a request that reads the version later, in a statement it runs anyway (the
    callback's claim of its login attempt), and calls `confirm_snapshot` with it before
    using the settings. Reads the version when the process has no snapshot yet.
    """
    cache = current_app.extensions.setdefault(_EXTENSION, SnapshotCache())
    snapshot = cache.peek()
    if snapshot is None or snapshot.version is None or not has_request_context():
        return current_snapshot()
    request.environ.setdefault(_ENVIRON_KEY, snapshot)
    return request.environ[_ENVIRON_KEY]


def confirm_snapshot(version: int | None) -> bool:
    """Tell whether this request's snapshot is at ``version`` (read from the database).

    When it is not, the request forgets it: its next lookup reads the version and rebuilds.
    """
    memo = request.environ.get(_ENVIRON_KEY) if has_request_context() else None
    if memo is not None and version is not None and memo.version == version:
        return True
    forget_request_snapshot()
    return False


def system_by_slug(slug: str) -> SystemSettings | None:
    """Return the current settings of the system whose Redirect URL uses ``slug``."""
    return current_snapshot().by_slug.get(slug)


def system_by_id(system_id: int) -> SystemSettings | None:
    """Return the current settings of the system ``system_id``."""
    return current_snapshot().by_id.get(system_id)


def forget_request_snapshot() -> None:
    """Make this request read the version again (after it changed the settings itself)."""
    if has_request_context():
        request.environ.pop(_ENVIRON_KEY, None)


# -- bumping the version with every change ------------------------------------------------------


def bump_version(session: Session) -> None:
    """Move the settings version on, in ``session``'s transaction."""
    bumped = session.execute(
        sa.update(SettingsVersion)
        .where(SettingsVersion.id == SETTINGS_VERSION_ID)
        .values(version=SettingsVersion.version + 1)
    )
    if bumped.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(sa.insert(SettingsVersion).values(id=SETTINGS_VERSION_ID, version=1))


def _touches_settings(session: Session) -> bool:
    for obj in session.new | session.deleted:
        if isinstance(obj, SETTINGS_MODELS):
            return True
    return any(
        isinstance(obj, SETTINGS_MODELS) and session.is_modified(obj) for obj in session.dirty
    )


@event.listens_for(Session, "after_flush")
def _bump_after_flush(session: Session, _flush_context: Any) -> None:
    if _touches_settings(session):
        bump_version(session)
        forget_request_snapshot()


@event.listens_for(Session, "do_orm_execute")
def _bump_on_bulk_change(state: Any) -> None:
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in _SETTINGS_TABLES:
        bump_version(state.session)
        forget_request_snapshot()
