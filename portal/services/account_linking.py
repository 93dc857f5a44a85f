"""Sign-in methods a member manages on the account page: list, link another, unlink one.

Linking runs the ordinary SSO flow while the member is signed in, and binds the provider's
identity to *that* account (never another, never a new one). The link is bound to the
browser session that started it: the start writes a link intent (the member, the system and
the login attempt it started) into the signed session, and the callback consumes it once.
A callback without it is an ordinary sign-in and never links.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from portal.extensions import db
from portal.models import AuthSystem, Identity, User
from portal.models.base import utcnow
from portal.services import audit
from portal.services.account_resolution import (
    _apply_fields,
    _locked_fields,
    check_membership_allowed,
    group_sync_fields,
    provider_values,
)
from portal.services.auth_systems import list_enabled_systems
from portal.services.group_mapping import sync_manager_role, sync_member_groups
from portal.services.login_attempts import (
    ATTEMPT_LIFETIME,
    OPEN_ATTEMPTS_SESSION_KEY,
    claim_login_attempt,
)
from portal.services.settings_snapshot import SystemSettings, confirm_snapshot, system_by_id
from portal.services.sso_login import (
    SystemUnavailable,
    finish_attempt,
    public_login_systems,
    remote_only_in_force,
)
from portal.services.users import unlink_identity
from portal.sso.engine import SSOResult
from portal.sso.errors import IdentityLinkedElsewhere, LinkRequestInvalid, SystemLinkedOtherwise
from portal.sso.fields import PUBLIC_LOGIN_MODES

log = logging.getLogger(__name__)

#: Session key of the link intent (see the module's docstring).
LINK_INTENT = "sso_link_intent"


class UnlinkRefused(ValueError):
    """Unlinking would leave the member without a way to sign in; the message says so."""


# -- what the account page shows ------------------------------------------------------------


@dataclass
class SignInMethod:
    """One way the member signs in: a linked system, or the local password."""

    label: str
    #: The binding; None for the local password.
    identity: Identity | None = None
    linked_at: datetime | None = None
    last_sign_in: datetime | None = None
    #: The member may unlink it (it is not their only way to sign in).
    can_unlink: bool = False


def _may_use_password(user: User, systems: list[AuthSystem]) -> bool:
    """Tell whether the local password signs this user in (members not under Remote Only)."""
    return bool(user.password_hash) and (user.is_manager or not remote_only_in_force(systems))


def _other_ways(user: User, identity: Identity, systems: list[AuthSystem]) -> int:
    """Count the ways ``user`` could still sign in once ``identity`` is unlinked."""
    offered = {s.id for s in public_login_systems(systems)}
    others = [
        i
        for i in user.identities
        if i.id != identity.id and i.disabled_at is None and i.auth_system_id in offered
    ]
    return len(others) + (1 if _may_use_password(user, systems) else 0)


def list_sign_in_methods(user: User) -> list[SignInMethod]:
    """Return the member's linked systems (by name), then "Password" when they have one."""
    systems = list_enabled_systems()
    methods = [
        SignInMethod(
            label=identity.auth_system.name,
            identity=identity,
            linked_at=identity.created_at,
            last_sign_in=identity.last_login_at,
            can_unlink=_other_ways(user, identity, systems) > 0,
        )
        for identity in sorted(user.identities, key=lambda i: i.auth_system.name_key)
    ]
    if user.password_hash:
        methods.append(SignInMethod(label="Password"))
    return methods


def linkable_systems(user: User) -> list[AuthSystem]:
    """Return the systems offered on the login page that ``user`` is not linked to yet."""
    linked = {i.auth_system_id for i in user.identities}
    return [s for s in public_login_systems(list_enabled_systems()) if s.id not in linked]


def get_own_identity(user: User, identity_id: int) -> Identity | None:
    """Return the binding ``identity_id`` of ``user`` (None when it is someone else's)."""
    return db.session.scalar(
        sa.select(Identity)
        .where(Identity.id == identity_id, Identity.user_id == user.id)
        .options(joinedload(Identity.auth_system))
    )


# -- the link intent ---------------------------------------------------------------------------


def offered_for_link(system: SystemSettings | None, slug: str) -> SystemSettings:
    """Return ``system`` when the login page offers it; raise SystemUnavailable otherwise."""
    if system is None or not system.enabled or system.login_mode not in PUBLIC_LOGIN_MODES:
        raise SystemUnavailable(slug)
    return system


def make_link_intent(user: User, system: SystemSettings, session: Mapping[str, Any]) -> dict:
    """Return the link intent of the attempt just started (the last one this browser opened)."""
    opened = session.get(OPEN_ATTEMPTS_SESSION_KEY) or []
    return {
        "user": user.get_id(),
        "system": system.id,
        "slug": system.slug,
        "attempt": opened[-1] if opened else None,
        "expires": time.time() + ATTEMPT_LIFETIME.total_seconds(),
    }


def _intent_problem(intent: Any, user: User, system: SystemSettings) -> str | None:
    """Return why ``intent`` cannot link ``system`` to ``user`` (for the log), or None."""
    if not isinstance(intent, dict):
        return "no link intent"
    if intent.get("user") != user.get_id():
        return "link intent of another user or session generation"
    if intent.get("system") != system.id:
        return "link intent of another system"
    if not isinstance(intent.get("attempt"), int):
        return "link intent without its attempt"
    if not isinstance(intent.get("expires"), int | float) or intent["expires"] < time.time():
        return "link intent expired"
    return None


def complete_link(
    user: User,
    system: SystemSettings,
    params: Mapping[str, str],
    *,
    intent: Any,
    browser_key: str | None,
    reference: str,
) -> bool:
    """Finish a link flow's callback: check the intent, claim its attempt, bind the identity.

    Returns True when the identity was linked now, False when it was this account's already.
    Raises an SSOError (nothing written but the consumed attempt) otherwise.
    """
    problem = _intent_problem(intent, user, system)
    if problem:
        raise LinkRequestInvalid(problem)
    attempt = claim_login_attempt(system, params.get("state"), browser_key)
    if attempt.id != intent["attempt"]:
        raise LinkRequestInvalid("callback of another login attempt than the link's")
    if not confirm_snapshot(attempt.settings_version):
        system = offered_for_link(system_by_id(system.id), system.slug)
    result = finish_attempt(system, attempt, params)
    return link_identity(user, system, result, reference)


# -- binding and unbinding -------------------------------------------------------------------


def link_identity(user: User, system: SystemSettings, result: SSOResult, reference: str) -> bool:
    """Bind the provider identity of ``result`` to the signed-in ``user`` (one transaction).

    The system's access rules apply as at sign-in (but *Existing Accounts Only* does not
    refuse: the account exists). Refused, writing nothing, when the identity belongs to
    another account or ``user`` has another identity at this system. Returns False when
    the identity is ``user``'s already.
    """
    check_membership_allowed(system, result)
    bound = db.session.scalar(
        sa.select(Identity).where(
            Identity.auth_system_id == system.id, Identity.subject == result.subject
        )
    )
    if bound is not None:
        if bound.user_id != user.id:
            raise IdentityLinkedElsewhere(
                f"subject bound to user {bound.user_id}, link asked by user {user.id}"
            )
        return False
    if any(i.auth_system_id == system.id for i in user.identities):
        raise SystemLinkedOtherwise(f"user {user.id} is bound to this system under another subject")
    values = provider_values(system, result)
    locked = _locked_fields(system, values)
    now = utcnow()
    try:
        # The same rules as a sign-in's upgrade: provider-owned fields are refreshed (an email
        # that belongs to another account is an AccountConflict), empty ones filled.
        _apply_fields(user, values, locked, fill_only=True)
        db.session.add(
            Identity(
                user_id=user.id,
                auth_system_id=system.id,
                subject=result.subject,
                locked_fields=locked,
                created_at=now,
                last_login_at=now,
            )
        )
        db.session.flush()
        db.session.expire(user, ["identities"])
        sync_member_groups(user, system, group_sync_fields(values, result))
        audit.record_event(
            audit.IDENTITY_LINKED,
            actor=user,
            system=system,  # type: ignore[arg-type]
            reference=reference,
            details={"user_id": user.id, "locked_fields": locked},
        )
        db.session.commit()
    except IntegrityError:
        # Another account bound this identity (or this account this system) meanwhile.
        db.session.rollback()
        raise IdentityLinkedElsewhere("lost a race on the identity's unique constraints") from None
    except BaseException:
        db.session.rollback()
        raise
    return True


def unlink_own_identity(user: User, identity: Identity) -> str:
    """Remove one of the member's own bindings, unless it is their only way to sign in.

    The groups from that system go and its fields unlock (the admin's `unlink_identity`);
    a manager role that system's rules gave is taken back as when its group disappears.
    Returns the system's name.
    """
    systems = list_enabled_systems()
    name = identity.auth_system.name
    if _other_ways(user, identity, systems) == 0:
        raise UnlinkRefused(
            f"{name} is your only way to sign in, so it cannot be unlinked. Link another "
            "sign-in method first."
        )
    if user.manager_role_system_id == identity.auth_system_id:
        sync_manager_role(user, identity.auth_system, {})
    audit.record_event(
        audit.IDENTITY_UNLINKED,
        actor=user,
        system=identity.auth_system,
        details={"user_id": user.id, "by": "member"},
    )
    unlink_identity(user, identity)
    return name
