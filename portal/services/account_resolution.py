"""Account resolution: which local account an SSO result signs in, upgrades or creates."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from portal.database import (
    PlainStatement,
    attach_loaded,
    commit_keeping_loaded,
    insert_statement,
    insert_values,
    plain_connection,
    read_alone,
    run_in_session,
    session_has_begun,
)
from portal.errors import AccountDisabled
from portal.extensions import db
from portal.models import AuditEvent, AuthSystem, GroupMembership, Identity, Team, User
from portal.models.base import utcnow
from portal.services import audit
from portal.services.accounts import identifier_key
from portal.services.group_mapping import (
    membership_values,
    new_account_needs_sync,
    new_account_refusal,
    sign_in_refusal,
    sync_member_groups,
)
from portal.services.settings_snapshot import SystemSettings, settings_of
from portal.sso.engine import SSOResult
from portal.sso.errors import (
    AccountConflict,
    EmailNotVerified,
    LinkNotAllowed,
    MembershipDenied,
    SSOError,
    UsernameNotTrusted,
)
from portal.sso.profile_fields import ACCOUNT_FIELDS, FIELD_LABEL

log = logging.getLogger(__name__)

#: Account fields that are unique across users, so a match on them means "same person?".
UNIQUE_FIELDS: tuple[str, ...] = ("email", "username")
#: How many times account resolution is retried after losing a race on a unique constraint.
RESOLVE_ATTEMPTS = 3
#: Where a username came from (`User.username_source`).
SOURCE_MEMBER = "member"
SOURCE_PROVIDER = "provider"
#: How long a pending link waits for the member to confirm it with the account's password.
PENDING_LINK_LIFETIME = timedelta(minutes=10)


@dataclass
class PendingLink:
    """An upgrade waiting for the member to sign in once to the matched account.

    Holds only what finishing the link needs; kept encrypted in the member's session.
    """

    system_id: int
    subject: str
    user_id: int
    matched_on: str
    #: The mapped profile fields (the provider values and what the group sync reads).
    fields: dict[str, Any]
    #: The provider said ``email_verified: true``.
    email_verified: bool
    #: Seconds since the epoch after which the link is refused.
    expires_at: float
    next_path: str = "/"


class LinkConfirmationRequired(Exception):
    """Not a failure: the matched account must be confirmed with its password first."""

    def __init__(self, link: PendingLink) -> None:
        super().__init__("account link waits for confirmation")
        self.link = link


# -- matching: which local account the provider's values point at -----------------------------


def _email_verified_claim(result: SSOResult) -> bool | None:
    """Return what the provider says of ``email_verified`` (ID token first); None if silent."""
    for doc in (result.id_claims or {}, result.profile or {}):
        value = doc.get("email_verified") if isinstance(doc, dict) else None
        if value is True or (isinstance(value, str) and value.strip().lower() == "true"):
            return True
        if value is False or (isinstance(value, str) and value.strip().lower() == "false"):
            return False
    return None


def _vouched(system: SystemSettings, result: SSOResult, field: str) -> bool:
    """Tell whether the provider's value of ``field`` may link an existing account.

    Linking on a value nobody checked is an account takeover: anyone can create an account
    at many providers with someone else's address or username and, if we linked it, sign
    in here as that person. An email counts when the provider says ``email_verified: true``
    or the manager said the provider verifies emails (and the provider does not say
    ``false``); a username only when the manager said the provider verifies usernames.
    """
    if field == "email":
        claim = _email_verified_claim(result)
        return claim is True or (claim is None and bool(system.trusts_email))
    return bool(system.trusts_username)


def _not_vouched(system: SystemSettings, result: SSOResult, field: str) -> SSOError:
    if field == "email":
        claim = _email_verified_claim(result)
        why = (
            "email_verified is false"
            if claim is False
            else "no email_verified: true and the system does not trust its emails"
        )
        return EmailNotVerified(f"upgrade by Email Address refused: {why}")
    return UsernameNotTrusted("upgrade by Username refused: the system does not trust usernames")


def provider_values(system: SystemSettings, result: SSOResult) -> dict[str, str | None]:
    """Return the provider's field values, normalized as they are stored.

    Membership fields are present only when the system maps them, so that a system that
    doesn't describe membership never clears what another one set.
    """
    values: dict[str, str | None] = {key: result.fields.get(key) for key in ACCOUNT_FIELDS}
    if values["email"]:
        values["email"] = identifier_key(values["email"])
    for key in ("membership_status", "membership_type"):
        row = system.param(key)
        if row is not None and row.path:
            values[key] = result.fields.get(key)
    return values


def group_sync_fields(values: Mapping[str, Any], result: SSOResult) -> dict[str, Any]:
    """Return the mapped fields the group sync reads: membership only when the system maps it."""
    fields = dict(result.fields)
    for key in ("membership_status", "membership_type"):
        if key not in values:
            fields.pop(key, None)
    return fields


def _conflict(field: str, log_detail: str = "") -> AccountConflict:
    """Return the conflict on ``field``, worded with the field's label."""
    return AccountConflict(field, FIELD_LABEL[field], log_detail)


def _find_match(field: str, value: str) -> User | None:
    if field == "email":
        return db.session.scalar(sa.select(User).where(User.email == identifier_key(value)))
    return db.session.scalar(sa.select(User).where(User.username_key == identifier_key(value)))


def _holder_keys(values: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Return the stored forms of this person's email address and username (None if absent)."""
    email = identifier_key(values["email"]) if values.get("email") else None
    username = identifier_key(values["username"]) if values.get("username") else None
    return email, username


def _matches_among(ids: list[int], email: str | None, username: str | None) -> dict[str, User]:
    """Return, by field, the accounts among ``ids`` holding this email address or username."""
    if not ids:
        return {}
    found: dict[str, User] = {}
    for user in db.session.scalars(sa.select(User).where(User.id.in_(ids))):
        if email and user.email == email:
            found["email"] = user
        if username and user.username_key == username:
            found["username"] = user
    return found


_identities, _users = Identity.__table__, User.__table__
_memberships = GroupMembership.__table__
_holder_id = _users.c.id.label("holder_id")


def _binding_select(*extra: Any) -> sa.Select[Any]:
    """The binding of ``subject`` at ``system_id`` with its account and the account's group
    memberships (one row per membership), and ``extra`` columns."""
    return (
        sa.select(_identities, _users, _memberships, *extra)
        .select_from(
            _identities.join(_users, _users.c.id == _identities.c.user_id).outerjoin(
                _memberships, _memberships.c.user_id == _users.c.id
            )
        )
        .where(
            _identities.c.auth_system_id == sa.bindparam("system_id"),
            _identities.c.subject == sa.bindparam("subject"),
        )
    )


def _binding_or_holders() -> PlainStatement:
    """The binding with its account and the account's groups, and the accounts holding the
    person's email address or username, in one Core statement (the hot path's statements are
    built once and run on the driver's cursor, in the session's transaction or alone: a Core
    statement through the session costs about five times the driver's own work; an ORM
    query with joined loads three times as much).

    Rows of the binding (one per membership) carry ``holder_id`` NULL; each holder's row
    carries only ``holder_id``. A missing email or username is NULL, which equals nothing.
    A first sign-in (the usual case) finds neither and costs one round trip.
    """
    binding = _binding_select(sa.null().label("holder_id"))
    padding = [sa.null() for _ in (*_identities.c, *_users.c, *_memberships.c)]
    # One SELECT per unique key, not one with an OR: PostgreSQL plans an OR of two keys on a
    # new community's small table as a scan of every account, and keeps that plan prepared.
    # (An account holding both appears twice; its id is counted once.)
    by_email, by_username = (
        sa.select(*padding, _users.c.id).where(column == sa.bindparam(name))
        for column, name in ((_users.c.email, "email"), (_users.c.username_key, "username"))
    )
    return PlainStatement(
        sa.union_all(binding, by_email, by_username),
        columns=[*_identities.c, *_users.c, *_memberships.c, _holder_id],
        by_column=True,
    )


_BINDING_OR_HOLDERS = _binding_or_holders()
#: The binding alone (looked for again once an account holding its values was found).
_IDENTITY_WITH_USER_AND_GROUPS = PlainStatement(
    _binding_select(), columns=[*_identities.c, *_users.c, *_memberships.c], by_column=True
)


def _find_identity(system_id: int, subject: str) -> Identity | None:
    """Return the binding of ``subject`` at the system, with its user and the user's groups."""
    params = {"system_id": system_id, "subject": subject}
    return _attach_binding(run_in_session(_IDENTITY_WITH_USER_AND_GROUPS, params))


def _find_identity_or_holders(
    system_id: int, subject: str, email: str | None, username: str | None
) -> tuple[Identity | None, list[int]]:
    """Return the binding of ``subject`` (as `_find_identity`), or else the ids of the accounts
    holding ``email`` or ``username``: one statement."""
    params = {"system_id": system_id, "subject": subject, "email": email, "username": username}
    rows = read_alone(_BINDING_OR_HOLDERS, params)
    binding = [row for row in rows if row[_holder_id] is None]
    if binding:
        return _attach_binding(binding), []
    return None, sorted({row[_holder_id] for row in rows})


def _attach_binding(rows: list[dict[Any, Any]]) -> Identity | None:
    """Return the binding in ``rows`` (one per membership), with its user and groups, as a
    joined load leaves them in the session."""
    if not rows:
        return None
    identity = attach_loaded(Identity, rows[0])
    user = attach_loaded(User, rows[0])
    # What a joined load sets, unless the session held these objects loaded already.
    if "user" not in identity.__dict__:
        set_committed_value(identity, "user", user)
    if "group_memberships" not in user.__dict__:
        memberships = [
            attach_loaded(GroupMembership, row)
            for row in rows
            if row[_memberships.c.id] is not None
        ]
        set_committed_value(user, "group_memberships", memberships)
    return identity


def _locked_fields(system: SystemSettings, values: Mapping[str, Any]) -> list[str]:
    """Return the must-supply fields the provider supplied: the member may not edit them here."""
    return [
        row.field
        for row in system.params
        if row.field in ACCOUNT_FIELDS and row.must_supply and values.get(row.field)
    ]


def _displace_username(holder: User) -> None:
    """Take a member-typed username from ``holder``: they choose another on their next visit."""
    log.info("user %s loses the member-typed username to a provider-supplied one", holder.id)
    holder.username = None
    holder.username_key = None
    holder.username_source = None
    pending = set(holder.pending_fields or []) | {"username"}
    holder.pending_fields = [key for key in ACCOUNT_FIELDS if key in pending]
    # Free the unique key before the provider's holder takes it.
    db.session.flush()


def _apply_fields(user: User, values: Mapping[str, Any], locked: list[str], *, fill_only: bool):
    """Copy provider values onto the user.

    Locked (provider-owned) fields are always refreshed; the others only fill empty fields,
    so a member's own edits of fields the provider does not own are kept. A provider's
    username wins over one another member typed here.
    """
    for key in ACCOUNT_FIELDS:
        value = values.get(key)
        if not value:
            continue
        current = getattr(user, key)
        if value == current and (key != "username" or user.username_source == SOURCE_PROVIDER):
            # Nothing to write: setting it again would mark the account changed, and flushing
            # that takes a connection for nothing.
            continue
        if key in locked or not fill_only or not current:
            if key == "email" and value != user.email:
                other = _find_match("email", value)
                if other is not None and other.id != user.id:
                    raise _conflict("email", "new Email Address belongs to another account")
            if key == "username":
                new_key = identifier_key(value)
                if (user.username_key or "") != new_key:
                    other = _find_match("username", value)
                    if other is not None and other.id != user.id:
                        if other.username_source != SOURCE_MEMBER:
                            raise _conflict("username", "new Username belongs to another account")
                        _displace_username(other)
                    user.username_key = new_key
                user.username_source = SOURCE_PROVIDER
            setattr(user, key, value)


@dataclass
class AccountPlan:
    """What an SSO result would do to the accounts: decided by reading only."""

    #: ``sign_in`` (a known binding), ``upgrade`` (bind an existing account), ``confirm``
    #: (bind an existing account once its owner signs in to it) or ``create``.
    action: str
    #: The account signed in or upgraded; None when one is to be created.
    user: User | None
    #: The existing binding, for ``sign_in``.
    identity: Identity | None
    #: The field an upgrade matched on (``email`` or ``username``).
    matched_on: str | None
    #: The provider's values, normalized as they are stored.
    values: dict[str, str | None]
    #: An account whose member-typed username the provider's username takes (``create``).
    displaced: User | None = None


def needs_owner_confirmation(user: User) -> bool:
    """Tell whether linking onto ``user`` needs its owner to sign in to it first."""
    return user.is_manager or bool(user.password_hash)


def plan_account(
    system: AuthSystem | SystemSettings,
    result: SSOResult,
    *,
    confirmed_user_id: int | None = None,
) -> AccountPlan:
    """Decide, without writing, which account an SSO result signs in, upgrades or creates.

    ``confirmed_user_id`` names an account whose owner has just proved, with its password,
    that the link is theirs. Raises AccountConflict, EmailNotVerified, UsernameNotTrusted
    or LinkNotAllowed when the result may not proceed.
    """
    system = settings_of(system)
    values = provider_values(system, result)
    # The binding, or else which local accounts share a unique field with this person.
    email, username = _holder_keys(values)
    identity, holder_ids = _find_identity_or_holders(system.id, result.subject, email, username)
    if identity is not None:
        return AccountPlan("sign_in", identity.user, identity, None, values)
    matches = _matches_among(holder_ids, email, username)
    username_holder = matches.get("username")
    if username_holder is not None and username_holder.username_source == SOURCE_MEMBER:
        # Typed here by a member: proves nothing, blocks nothing. The provider's value wins
        # when it is written (see _apply_fields).
        del matches["username"]
    if not matches:
        # username_holder, if any, typed its username here: the provider's value takes it.
        return _plan_new_account(system, values, username_holder)
    # The same person signing in twice at once: the other sign-in committed the account and
    # its binding together after we looked for the binding. Looking again after finding the
    # account is enough to see it (a commit is all or nothing), on every database.
    identity = _find_identity(system.id, result.subject)
    if identity is not None:
        return AccountPlan("sign_in", identity.user, identity, None, values)

    upgradable = [f for f in matches if (p := system.param(f)) is not None and p.can_upgrade]
    if not upgradable:
        raise _conflict(next(iter(matches)))
    target = matches[upgradable[0]]
    for field, found in matches.items():
        if found.id != target.id:
            raise _conflict(field, f"{FIELD_LABEL[field]} matches a different account")
    if any(i.auth_system_id == system.id for i in target.identities):
        raise _conflict(upgradable[0], "matching account is already bound to another User ID")
    vouched = [f for f in upgradable if _vouched(system, result, f)]
    if not vouched:
        raise _not_vouched(system, result, upgradable[0])
    if needs_owner_confirmation(target) and confirmed_user_id != target.id:
        # Never linked silently: a manager's account or one with a local password is
        # linked only once its owner signs in to it (see confirm_pending_link).
        if not target.password_hash or not target.email:
            raise LinkNotAllowed(
                "matching account needs its owner's confirmation and has no local password"
            )
        return AccountPlan("confirm", target, None, vouched[0], values)
    return AccountPlan("upgrade", target, None, vouched[0], values)


def check_membership_allowed(system: AuthSystem | SystemSettings, result: SSOResult) -> None:
    """Raise MembershipDenied when the system's access rules refuse this profile."""
    refusal = sign_in_refusal(settings_of(system), result.fields, result.profile)
    if refusal:
        raise MembershipDenied(f"access rule: {refusal.reason}", user_message=refusal.message)


def _plan_new_account(
    system: SystemSettings, values: dict[str, str | None], displaced: User | None = None
) -> AccountPlan:
    """Plan a new account, unless the system has *Existing Accounts Only* (MembershipDenied)."""
    refusal = new_account_refusal(system)
    if refusal:
        raise MembershipDenied(f"access rule: {refusal.reason}", user_message=refusal.message)
    return AccountPlan("create", None, None, None, values, displaced)


# -- resolution: carry the plan out in one transaction ---------------------------------------


def _pending_link(system: SystemSettings, result: SSOResult, plan: AccountPlan) -> PendingLink:
    assert plan.user is not None and plan.matched_on is not None
    return PendingLink(
        system_id=system.id,
        subject=result.subject,
        user_id=plan.user.id,
        matched_on=plan.matched_on,
        fields=dict(result.fields),
        email_verified=_email_verified_claim(result) is True,
        expires_at=(utcnow() + PENDING_LINK_LIFETIME).timestamp(),
    )


def _new_user_row(plan: AccountPlan, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Return the columns of the account of a person seen for the first time.

    The membership columns of the group sync and the sign-in time are in the row already:
    nothing is left to update.
    """
    values = plan.values
    row: dict[str, Any] = {"first_name": "", "last_name": ""}
    for key in ACCOUNT_FIELDS:
        if values.get(key):
            row[key] = values[key]
    if values.get("username"):
        row["username_key"] = identifier_key(values["username"] or "")
        row["username_source"] = SOURCE_PROVIDER
    # Fields the provider did not supply are asked once, on *Complete your profile*.
    row["pending_fields"] = [key for key in ACCOUNT_FIELDS if not values.get(key)] or None
    row.update(membership_values(fields, now), last_login_at=now)
    return row


def _create_user(
    system: SystemSettings, plan: AccountPlan, fields: Mapping[str, Any], now: datetime
) -> User:
    """Insert the account of a person seen for the first time (the plan found no holder).

    One INSERT .. RETURNING gives the session its object.
    """
    if plan.displaced is not None:
        _displace_username(plan.displaced)
    row = _new_user_row(plan, fields, now)
    (inserted,) = run_in_session(_INSERT_USER, insert_values(_users, row))
    user = attach_loaded(User, inserted)
    if system.onboarding_team_id is not None:
        team = db.session.get(Team, system.onboarding_team_id)
        if team is not None:
            set_committed_value(user, "teams", [])
            user.teams.append(team)
    return user


def _binding_row(
    system: SystemSettings, subject: str, locked: list[str], now: datetime, user_id: int | None
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "auth_system_id": system.id,
        "subject": subject,
        "locked_fields": locked,
        "created_at": now,
        "last_login_at": now,
    }


_events = AuditEvent.__table__


def _create_at_once_statement() -> PlainStatement:
    """A new account, its binding and its sign-in's audit event as one statement.

    ``WITH new_user AS (INSERT .. RETURNING *), .. SELECT * FROM new_user``: PostgreSQL runs
    every INSERT of the WITH once, to completion, and the statement is atomic on its own, so
    on an autocommit connection it needs no BEGIN or COMMIT (five round trips become one).
    Parameters: the account's as `insert_values` names them (``p_``), the binding's with
    ``i_`` and the event's with ``e_``, neither with the account's id (the statement's own).
    """
    user = (
        sa.insert(_users)
        .values({c.key: sa.bindparam(f"p_{c.key}") for c in _users.c if not c.primary_key})
        .returning(*_users.c)
        .cte("new_user")
    )
    new_id = sa.select(user.c.id).scalar_subquery()
    binding = (
        sa.insert(_identities)
        .values(
            {
                c.key: new_id if c.key == "user_id" else sa.bindparam(f"i_{c.key}")
                for c in _identities.c
                if not c.primary_key
            }
        )
        .cte("new_binding")
    )
    event = (
        sa.insert(_events)
        .values(
            {
                name: new_id if name == "actor_id" else sa.bindparam(f"e_{name}")
                for name in audit.EVENT_COLUMNS
            }
        )
        .cte("sign_in_event")
    )
    return PlainStatement(sa.select(user).add_cte(binding, event), columns=list(user.c))


_CREATE_AT_ONCE = _create_at_once_statement()


def _creates_at_once(system: SystemSettings, plan: AccountPlan, fields: Mapping[str, Any]) -> bool:
    """Tell whether this first sign-in writes only the account, its binding and its event.

    On PostgreSQL (INSERTs in a WITH), with nothing begun in the session, no username to take from
    another account, no onboarding team, no group or role to give, and an email address
    to name the account in the audit log: then `_create_at_once` writes it all in one
    statement. Everything else takes the session's transaction (`_create_user`).
    """
    return (
        db.engine.dialect.name == "postgresql"
        and not session_has_begun()
        and plan.displaced is None
        and system.onboarding_team_id is None
        and bool(plan.values.get("email"))
        and not new_account_needs_sync(system, fields)
    )


def _create_at_once(
    system: SystemSettings,
    plan: AccountPlan,
    result: SSOResult,
    fields: Mapping[str, Any],
    locked: list[str],
    now: datetime,
    reference: str | None,
) -> User:
    """Write the account, its binding and the sign-in's audit event in one autocommit
    statement (`_CREATE_AT_ONCE`); return the account, in the session as a query leaves it.

    A unique constraint another sign-in won raises IntegrityError and writes nothing.
    """
    row = _new_user_row(plan, fields, now)
    params = insert_values(_users, row)
    binding = insert_values(_identities, _binding_row(system, result.subject, locked, now, None))
    params.update({f"i_{k[2:]}": v for k, v in binding.items() if k != "p_user_id"})
    event = audit.event_row(
        audit.SIGN_IN, actor_label=row["email"], system=system, reference=reference
    )
    params.update({f"e_{k}": v for k, v in event.items() if k != "actor_id"})
    with plain_connection() as connection:
        (inserted,) = connection.run(_CREATE_AT_ONCE, params)
    return attach_loaded(User, inserted)


#: A new account as a plain row, every column back (an ORM INSERT .. RETURNING of the
#: entity costs five times as much).
_INSERT_USER = insert_statement(_users)
#: The account's columns every returning sign-in writes: its sign-in time and the membership
#: columns of the group sync.
_TOUCHED_USER_COLUMNS = (
    "last_login_at",
    "membership_synced_at",
    "membership_status",
    "membership_type",
)


def _touch(table: sa.Table, names: tuple[str, ...], prefix: str = "") -> sa.Update:
    """UPDATE of ``names`` of one row of ``table``, by ``{prefix}row_id``, each from its
    ``{prefix}<name>`` parameter."""
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam(f"{prefix}row_id"))
        .values({name: sa.bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in names})
    )


#: The binding's columns every returning sign-in writes: its sign-in time and the fields the
#: provider owns.
_TOUCHED_BINDING_COLUMNS = ("locked_fields", "last_login_at")


#: What every returning sign-in writes, built once, in the session's transaction.
_TOUCH_IDENTITY = PlainStatement(_touch(_identities, _TOUCHED_BINDING_COLUMNS))
_TOUCH_USER = PlainStatement(_touch(_users, _TOUCHED_USER_COLUMNS))
#: The same two UPDATEs and the sign-in's audit event as one statement, for an autocommit
#: connection: ``WITH touched_binding AS (UPDATE ..), touched_account AS (UPDATE ..) INSERT
#: INTO audit_events ..`` (PostgreSQL runs every statement of the WITH once, to completion;
#: the whole is atomic on its own). Parameters: ``i_``, ``u_`` and ``e_`` prefixed.
_TOUCH_AT_ONCE = PlainStatement(
    sa.insert(_events)
    .values({name: sa.bindparam(f"e_{name}") for name in audit.EVENT_COLUMNS})
    .add_cte(
        _touch(_identities, _TOUCHED_BINDING_COLUMNS, "i_").cte("touched_binding"),
        _touch(_users, _TOUCHED_USER_COLUMNS, "u_").cte("touched_account"),
    )
)


def _touched_values(
    identity: Identity, user: User, fields: Mapping[str, Any], locked: list[str], now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return what a returning sign-in writes: the binding's columns and the account's."""
    binding = {"row_id": identity.id, "locked_fields": locked, "last_login_at": now}
    columns = {
        "membership_status": user.membership_status,
        "membership_type": user.membership_type,
        **membership_values(fields, now),
        "last_login_at": now,
    }
    return binding, {"row_id": user.id, **columns}


def _mark_touched(identity: Identity, user: User, binding: dict[str, Any], account: dict[str, Any]):
    """Tell the session the objects hold the values written (nothing is left for its flush)."""
    for obj, written in ((identity, binding), (user, account)):
        for key, value in written.items():
            if key != "row_id":
                set_committed_value(obj, key, value)


def _touch_binding(
    identity: Identity, user: User, fields: Mapping[str, Any], locked: list[str], now: datetime
) -> None:
    """Write a returning sign-in's times and membership columns as two plain UPDATEs.

    Any other change `_apply_fields` made is flushed as usual.
    """
    binding, account = _touched_values(identity, user, fields, locked, now)
    run_in_session(_TOUCH_IDENTITY, binding)
    run_in_session(_TOUCH_USER, account)
    _mark_touched(identity, user, binding, account)


def _touches_at_once(user: User) -> bool:
    """Tell whether a returning sign-in writes only its two UPDATEs and its audit event.

    On PostgreSQL, with nothing begun or pending in the session (no provider value
    that moved, no group or role that changed), for an active account: then `_touch_at_once`
    writes them as one statement outside any transaction.
    """
    session = db.session()
    return (
        db.engine.dialect.name == "postgresql"
        and user.is_active
        and not session_has_begun()
        and not (session.new or session.deleted)
        # A provider-owned field set again to the value it holds marks its object dirty
        # without a change to write.
        and not any(session.is_modified(obj) for obj in session.dirty)
    )


def _touch_at_once(
    system: SystemSettings,
    identity: Identity,
    user: User,
    fields: Mapping[str, Any],
    locked: list[str],
    now: datetime,
    reference: str | None,
) -> None:
    """Write the returning sign-in's two UPDATEs and its audit event in one autocommit
    statement (`_TOUCH_AT_ONCE`)."""
    binding, account = _touched_values(identity, user, fields, locked, now)
    params = {f"i_{k}": v for k, v in binding.items()} | {f"u_{k}": v for k, v in account.items()}
    event = audit.event_row(audit.SIGN_IN, actor=user, system=system, reference=reference)
    params |= {f"e_{k}": v for k, v in event.items()}
    with plain_connection() as connection:
        connection.run(_TOUCH_AT_ONCE, params)
    _mark_touched(identity, user, binding, account)


#: A new binding, written as a plain row (its user is in the database already).
_INSERT_IDENTITY = insert_statement(_identities)


def _resolve_once(
    system: SystemSettings,
    result: SSOResult,
    confirmed_user_id: int | None = None,
    reference: str | None = None,
) -> tuple[User, bool, bool]:
    """Carry out the plan; return the user, whether it was created, and whether the
    sign-in's audit event is written already."""
    plan = plan_account(system, result, confirmed_user_id=confirmed_user_id)
    if plan.action == "confirm":
        raise LinkConfirmationRequired(_pending_link(system, result, plan))
    values = plan.values
    locked = _locked_fields(system, values)
    now = utcnow()
    fields = group_sync_fields(values, result)

    if plan.identity is not None:
        if plan.identity.disabled_at is not None:
            # The provider's deprovisioning webhook deleted this member (provider_logout.py).
            log.warning("Sign-in refused: the binding %s was deprovisioned", plan.identity.id)
            raise AccountDisabled()
        user = plan.identity.user
        _apply_fields(user, values, locked, fill_only=True)
        # The group sync first: whatever it changes is written in the session's transaction
        # (it leaves the membership columns to the UPDATE of the account).
        sync_member_groups(user, system, fields, membership_written=True)
        if _touches_at_once(user):
            _touch_at_once(system, plan.identity, user, fields, locked, now, reference)
            return user, False, True
        _touch_binding(plan.identity, user, fields, locked, now)
        return user, False, False

    created = plan.user is None
    if created and _creates_at_once(system, plan, fields):
        return _create_at_once(system, plan, result, fields, locked, now, reference), True, True
    if plan.user is None:
        user = _create_user(system, plan, fields, now)
    else:
        user = plan.user
        _apply_fields(user, values, locked, fill_only=True)
        audit.record_event(
            audit.ACCOUNT_LINKED,
            actor=user,
            system=system,
            details={
                "matched_on": FIELD_LABEL[plan.matched_on or "email"],
                "confirmed_with_password": confirmed_user_id == user.id,
            },
        )
        user.last_login_at = now
    run_in_session(
        _INSERT_IDENTITY,
        insert_values(_identities, _binding_row(system, result.subject, locked, now, user.id)),
    )
    if not created:
        # The account's list of bindings, if loaded, lacks the row just written: reload it.
        db.session.expire(user, ["identities"])
    sync_member_groups(user, system, fields, new_account=created)
    return user, created, False


def resolve_account(
    system: AuthSystem | SystemSettings,
    result: SSOResult,
    *,
    confirmed_user_id: int | None = None,
    reference: str | None = None,
) -> tuple[User, bool]:
    """Sign in, upgrade or create the account for an SSO result, in one transaction.

    The system's sign-in restriction is checked first (nothing is written when it refuses),
    and the member's groups from this system are synced and the sign-in audited in the same
    transaction (under ``reference``, the one the sign-in's log line names). Returns the
    user and whether it was created. Raises
    LinkConfirmationRequired, writing nothing, when the matched account must be confirmed by
    its owner first, and AccountDisabled, writing nothing, for a disabled account. Two
    simultaneous first sign-ins of the same person race on the unique constraints; the
    loser rolls back and tries again, and then finds the binding the winner made.
    """
    system = settings_of(system)
    check_membership_allowed(system, result)
    for attempt in range(RESOLVE_ATTEMPTS):
        try:
            user, created, audited = _resolve_once(system, result, confirmed_user_id, reference)
            if not user.is_active:
                log.warning("Sign-in refused: account %s is disabled", user.id)
                raise AccountDisabled()
            db.session.flush()
            if not audited:
                audit.insert_event(audit.SIGN_IN, actor=user, system=system, reference=reference)
            commit_keeping_loaded()
            return user, created
        except IntegrityError:
            db.session.rollback()
            log.info("SSO account resolution lost a race (try %d), retrying", attempt + 1)
        except BaseException:
            db.session.rollback()
            raise
    raise SSOError("account resolution still hit a unique constraint after retries")
