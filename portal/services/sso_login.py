"""The runtime SSO sign-in: start a login attempt, finish it, and resolve the account.

Views call `start_sso_login` and `complete_sso_login`; the Flask-free engine in
`portal.sso.engine` does the protocol work, and `resolve_account` turns its `SSOResult`
into a local account in one transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import AuthSystem, Identity, LoginAttempt, User
from portal.models.base import utcnow
from portal.services import audit
from portal.services.accounts import authenticate_local, identifier_key
from portal.services.auth_systems import get_system_by_slug, read_client_secret
from portal.services.groups import check_sign_in_allowed, sync_member_groups
from portal.services.outbound import address_policy
from portal.services.secrets import SecretUnreadable, decrypt_secret, encrypt_secret
from portal.sso.discovery import get_discovery_cache, requires_iss_parameter
from portal.sso.engine import (
    ACCOUNT_FIELDS,
    FIELD_LABEL,
    ProfileParam,
    SSOConfig,
    SSOResult,
    Trace,
    begin_login,
    finish_login,
)
from portal.sso.errors import IssuerMismatch, SSOError, StateInvalid
from portal.sso.fields import LOGIN_LOCAL_AND_REMOTE, LOGIN_LOCAL_ONLY, LOGIN_REMOTE_ONLY
from portal.sso.http import HttpSettings, get_http_client
from portal.sso.idtoken import get_jwks_cache
from portal.sso.placeholders import Context, render
from portal.urls import redirect_url_for, safe_next

log = logging.getLogger(__name__)

#: Session key of the random browser key that login attempts are bound to.
BROWSER_SESSION_KEY = "sso_browser"
#: How long a login attempt (its `state`) stays usable.
ATTEMPT_LIFETIME = timedelta(minutes=10)
#: Open (unused, unexpired) login attempts one browser may hold; a new one drops the oldest.
MAX_OPEN_ATTEMPTS_PER_BROWSER = 5
#: Account fields that are unique across users, so a match on them means "same person?".
UNIQUE_FIELDS: tuple[str, ...] = ("email", "username")
#: How many times account resolution is retried after losing a race on a unique constraint.
RESOLVE_ATTEMPTS = 3


class AccountConflict(SSOError):
    """A unique field from the provider matches a local account that may not be upgraded."""

    code = "account_conflict"

    def __init__(self, field: str, log_detail: str = "") -> None:
        self.field = field
        label = FIELD_LABEL[field]
        super().__init__(
            log_detail or f"{label} matches an existing account without upgrade",
            user_message=(
                f"An account with the same {label} already exists on this site, and it cannot "
                "be connected to your identity provider account automatically. Please contact "
                "the community team; nothing was changed."
            ),
        )


class EmailNotVerified(SSOError):
    """An upgrade by Email Address was refused: nobody vouches for the provider's email."""

    code = "email_not_verified"
    default_user_message = (
        "Your identity provider has not verified your email address, so it cannot be used to "
        "connect to your existing account here. Verify your email address with your identity "
        "provider and sign in again, or contact the community team; nothing was changed."
    )


class MembershipDenied(SSOError):
    """The system's sign-in restriction refuses this membership status."""

    code = "membership_denied"


class SettingsUnreadable(SSOError):
    """A stored secret of the system (or attempt) cannot be decrypted with the configured keys."""

    code = "settings_unreadable"
    default_user_message = (
        "Sign-in with this identity provider is not available right now. Please try again "
        "later or contact the community team."
    )


class SystemUnavailable(Exception):
    """The authentication system is unknown, disabled, or not offered to this person."""


@dataclass
class SignIn:
    """A finished SSO sign-in: who, through which system, and where to go next."""

    user: User
    system: AuthSystem
    id_token: str | None
    next_path: str
    created: bool


# -- configuration ----------------------------------------------------------------------------


def http_settings() -> HttpSettings:
    """Return the outbound HTTP settings from the app config, with the address policy."""
    cfg = current_app.config
    return HttpSettings(
        connect_timeout=float(cfg["PORTAL_HTTP_CONNECT_TIMEOUT"]),
        read_timeout=float(cfg["PORTAL_HTTP_READ_TIMEOUT"]),
        max_bytes=int(cfg["PORTAL_HTTP_MAX_BYTES"]),
        total_timeout=float(cfg.get("PORTAL_HTTP_TOTAL_TIMEOUT", 15.0)),
        policy=address_policy(),
    )


def build_sso_config(system: AuthSystem) -> SSOConfig:
    """Return the engine's configuration for a saved system (secret decrypted)."""
    params = {
        row.field: ProfileParam(
            path=row.path or "", can_upgrade=row.can_upgrade, must_supply=row.must_supply
        )
        for row in system.params
    }
    try:
        client_secret = read_client_secret(system)
    except SecretUnreadable:
        raise SettingsUnreadable(
            "client secret not decryptable with PORTAL_ENCRYPTION_KEYS"
        ) from None
    return SSOConfig(
        slug=system.slug,
        client_id=system.client_id,
        client_secret=client_secret,
        redirect_url=redirect_url_for(system.slug),
        login_url=system.login_url,
        token_url=system.token_url,
        token_method=system.token_method or "POST",
        token_headers=system.token_headers or "",
        token_body=system.token_body or "",
        access_token_path=system.access_token_path or "access_token",
        profile_url=system.profile_url or "",
        profile_headers=system.profile_headers or "",
        issuer=system.issuer or "",
        jwks_url=system.jwks_url or "",
        scope=system.scope or "",
        params=params,
    )


def get_login_system(slug: str, *, is_manager: bool = False) -> AuthSystem:
    """Return the enabled system for ``slug`` that this person may sign in with.

    *Local Login Only* hides a system from the public, but a community manager may still
    try its flow.
    """
    system = get_system_by_slug(slug)
    if system is None or not system.enabled:
        raise SystemUnavailable(slug)
    if system.login_mode == LOGIN_LOCAL_ONLY and not is_manager:
        raise SystemUnavailable(slug)
    return system


def public_login_systems(systems: list[AuthSystem]) -> list[AuthSystem]:
    """Return the systems whose SSO link the public sees on the login page."""
    return [s for s in systems if s.login_mode in (LOGIN_LOCAL_AND_REMOTE, LOGIN_REMOTE_ONLY)]


def remote_only_in_force(systems: list[AuthSystem]) -> bool:
    """Tell whether an enabled system is Remote Login Only (members can't sign in locally)."""
    return any(s.login_mode == LOGIN_REMOTE_ONLY for s in systems)


# -- login attempts ---------------------------------------------------------------------------


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def attempt_of_browser(attempt: LoginAttempt, browser_key: str | None) -> bool:
    """Tell whether ``attempt`` was started by the browser holding ``browser_key``."""
    return bool(browser_key) and hmac.compare_digest(attempt.browser_hash, _digest(browser_key))


def new_browser_key() -> str:
    """Return a random key to keep in the browser's session; attempts are bound to its hash."""
    return secrets.token_urlsafe(32)


def start_sso_login(
    system: AuthSystem, *, browser_key: str, next_path: str = "", is_test: bool = False
) -> str:
    """Record a new login attempt for this browser and return the IdP login URL.

    ``is_test`` marks an attempt started from the admin's test screen: its callback
    traces the sign-in instead of signing anyone in.
    """
    attempt = begin_login(build_sso_config(system))
    # Keep the table small: attempts are useless after ATTEMPT_LIFETIME.
    db.session.execute(
        sa.delete(LoginAttempt).where(LoginAttempt.created_at < utcnow() - timedelta(days=1))
    )
    _drop_oldest_open_attempts(_digest(browser_key), keep=MAX_OPEN_ATTEMPTS_PER_BROWSER - 1)
    db.session.add(
        LoginAttempt(
            state_hash=_digest(attempt.state),
            browser_hash=_digest(browser_key),
            auth_system_id=system.id,
            issuer=system.issuer or "",
            nonce=attempt.nonce,
            code_verifier_encrypted=encrypt_secret(attempt.code_verifier),
            next_path=safe_next(next_path, default=""),
            is_test=is_test,
        )
    )
    db.session.commit()
    return attempt.url


def _drop_oldest_open_attempts(browser_hash: str, *, keep: int) -> None:
    """Delete this browser's open attempts beyond its ``keep`` newest.

    A member with a few tabs keeps working, while one browser cannot pile up rows (a
    cookie-less flood gets a new browser key each time: the per-address limit bounds it).
    """
    stale = (
        sa.select(LoginAttempt.id)
        .where(
            LoginAttempt.browser_hash == browser_hash,
            LoginAttempt.used_at.is_(None),
            LoginAttempt.created_at >= utcnow() - ATTEMPT_LIFETIME,
        )
        .order_by(LoginAttempt.created_at.desc(), LoginAttempt.id.desc())
        .offset(keep)
    )
    ids = list(db.session.scalars(stale))
    if ids:
        db.session.execute(sa.delete(LoginAttempt).where(LoginAttempt.id.in_(ids)))


def _as_aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def consume_login_attempt(
    system: AuthSystem, state: str | None, browser_key: str | None
) -> LoginAttempt:
    """Return the attempt matching ``state`` for this browser and mark it used, or raise.

    Missing, unknown, used, expired, other-system and other-browser states are all refused
    without writing anything; a valid one is marked used atomically, so a replay (even a
    concurrent one) loses.
    """
    if not state:
        raise StateInvalid("the callback carried no state")
    attempt = db.session.scalar(
        sa.select(LoginAttempt).where(LoginAttempt.state_hash == _digest(state))
    )
    if attempt is None:
        raise StateInvalid("unknown state")
    if attempt.auth_system_id != system.id:
        raise StateInvalid("state belongs to another authentication system")
    if attempt.used_at is not None:
        raise StateInvalid("state already used")
    if utcnow() - _as_aware(attempt.created_at) > ATTEMPT_LIFETIME:
        raise StateInvalid("state expired")
    if not attempt_of_browser(attempt, browser_key):
        raise StateInvalid("state was issued to another browser session")
    claimed = db.session.execute(
        sa.update(LoginAttempt)
        .where(LoginAttempt.id == attempt.id, LoginAttempt.used_at.is_(None))
        .values(used_at=utcnow())
    )
    db.session.commit()
    if claimed.rowcount != 1:
        raise StateInvalid("state already used (concurrent callback)")
    db.session.refresh(attempt)
    return attempt


def purge_login_attempts(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete login attempts older than ``older_than``; return how many."""
    cutoff = utcnow() - older_than
    result = db.session.execute(sa.delete(LoginAttempt).where(LoginAttempt.created_at < cutoff))
    db.session.commit()
    return result.rowcount or 0


def _read_verifier(attempt: LoginAttempt) -> str:
    try:
        return decrypt_secret(attempt.code_verifier_encrypted)
    except SecretUnreadable:
        raise SettingsUnreadable("PKCE verifier not decryptable (keys changed?)") from None


def is_test_state(state: str | None) -> bool:
    """Tell whether ``state`` belongs to an attempt started from the admin's test screen."""
    if not state:
        return False
    query = sa.select(LoginAttempt.is_test).where(LoginAttempt.state_hash == _digest(state))
    return bool(db.session.scalar(query))


def finish_attempt(
    system: AuthSystem,
    attempt: LoginAttempt,
    params: Mapping[str, str],
    *,
    trace: Trace | None = None,
    enforce_required: bool = True,
) -> SSOResult:
    """Check the callback's issuer and run the engine for a consumed attempt."""
    # RFC 9207: the issuer named in the response must be the one this attempt was sent to,
    # and a provider whose discovery says it always names itself must have done so.
    if attempt.issuer and params.get("iss") and params["iss"] != attempt.issuer:
        raise IssuerMismatch(f"callback iss {params['iss']!r}, expected {attempt.issuer!r}")
    http = get_http_client(http_settings())
    if (
        attempt.issuer
        and not params.get("iss")
        and requires_iss_parameter(attempt.issuer, http, get_discovery_cache())
    ):
        raise IssuerMismatch(
            "callback without iss, although the provider's discovery document advertises "
            "authorization_response_iss_parameter_supported"
        )
    return finish_login(
        build_sso_config(system),
        params=params,
        nonce=attempt.nonce,
        code_verifier=_read_verifier(attempt),
        http=http,
        jwks_cache=get_jwks_cache(),
        trace=trace,
        enforce_required=enforce_required,
    )


def complete_sso_login(
    system: AuthSystem, params: Mapping[str, str], *, browser_key: str | None
) -> SignIn:
    """Check the callback's state and issuer, finish the login and resolve the account."""
    attempt = consume_login_attempt(system, params.get("state"), browser_key)
    if attempt.is_test:
        raise StateInvalid("a test attempt's state reached the sign-in callback")
    result = finish_attempt(system, attempt, params)
    try:
        user, created = resolve_account(system, result)
    except LinkConfirmationRequired as pending:
        pending.link.next_path = attempt.next_path or "/"
        raise
    return SignIn(
        user=user,
        system=system,
        id_token=result.id_token,
        next_path=attempt.next_path or "/",
        created=created,
    )


# -- account resolution -----------------------------------------------------------------------

#: Where a username came from (`User.username_source`).
SOURCE_MEMBER = "member"
SOURCE_PROVIDER = "provider"
#: How long a pending link waits for the member to confirm it with the account's password.
PENDING_LINK_LIFETIME = timedelta(minutes=10)


class UsernameNotTrusted(SSOError):
    """An upgrade by Username was refused: the system does not vouch for usernames."""

    code = "username_not_trusted"
    default_user_message = (
        "Your identity provider's username cannot be used to connect to an existing account "
        "on this site, because this site has not been told that the provider vouches for "
        "usernames. Please contact the community team; nothing was changed."
    )


class LinkNotAllowed(SSOError):
    """The matched account may only be linked by its owner's password, and it has none."""

    code = "link_not_allowed"
    default_user_message = (
        "Your sign-in matches an existing account on this site that can only be connected by "
        "signing in to it once with its password, and it has none. Please contact the "
        "community team; nothing was changed."
    )


class PendingLinkExpired(SSOError):
    """The link waiting for confirmation is missing, expired or no longer possible."""

    code = "link_expired"
    default_user_message = (
        "This request to connect your account has expired. Please sign in again; nothing "
        "was connected."
    )


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


def _email_verified_claim(result: SSOResult) -> bool | None:
    """Return what the provider says of ``email_verified`` (ID token first); None if silent."""
    for doc in (result.id_claims or {}, result.profile or {}):
        value = doc.get("email_verified") if isinstance(doc, dict) else None
        if value is True or (isinstance(value, str) and value.strip().lower() == "true"):
            return True
        if value is False or (isinstance(value, str) and value.strip().lower() == "false"):
            return False
    return None


def _vouched(system: AuthSystem, result: SSOResult, field: str) -> bool:
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


def _not_vouched(system: AuthSystem, result: SSOResult, field: str) -> SSOError:
    if field == "email":
        claim = _email_verified_claim(result)
        why = (
            "email_verified is false"
            if claim is False
            else "no email_verified: true and the system does not trust its emails"
        )
        return EmailNotVerified(f"upgrade by Email Address refused: {why}")
    return UsernameNotTrusted("upgrade by Username refused: the system does not trust usernames")


def provider_values(system: AuthSystem, result: SSOResult) -> dict[str, str | None]:
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


def _find_match(field: str, value: str) -> User | None:
    if field == "email":
        return db.session.scalar(sa.select(User).where(User.email == identifier_key(value)))
    return db.session.scalar(sa.select(User).where(User.username_key == identifier_key(value)))


def _locked_fields(system: AuthSystem, values: Mapping[str, Any]) -> list[str]:
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
        if key in locked or not fill_only or not current:
            if key == "email" and value != user.email:
                other = _find_match("email", value)
                if other is not None and other.id != user.id:
                    raise AccountConflict("email", "new Email Address belongs to another account")
            if key == "username":
                new_key = identifier_key(value)
                if (user.username_key or "") != new_key:
                    other = _find_match("username", value)
                    if other is not None and other.id != user.id:
                        if other.username_source != SOURCE_MEMBER:
                            raise AccountConflict(
                                "username", "new Username belongs to another account"
                            )
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


def needs_owner_confirmation(user: User) -> bool:
    """Tell whether linking onto ``user`` needs its owner to sign in to it first."""
    return user.is_manager or bool(user.password_hash)


def plan_account(
    system: AuthSystem, result: SSOResult, *, confirmed_user_id: int | None = None
) -> AccountPlan:
    """Decide, without writing, which account an SSO result signs in, upgrades or creates.

    ``confirmed_user_id`` names an account whose owner has just proved, with its password,
    that the link is theirs. Raises AccountConflict, EmailNotVerified, UsernameNotTrusted
    or LinkNotAllowed when the result may not proceed.
    """
    values = provider_values(system, result)
    identity = db.session.scalar(
        sa.select(Identity).where(
            Identity.auth_system_id == system.id, Identity.subject == result.subject
        )
    )
    if identity is not None:
        return AccountPlan("sign_in", identity.user, identity, None, values)

    # Which local accounts share a unique field with this person?
    matches: dict[str, User] = {}
    for field in UNIQUE_FIELDS:
        value = values.get(field)
        if value:
            found = _find_match(field, value)
            if field == "username" and found is not None:
                if found.username_source == SOURCE_MEMBER:
                    # Typed here by a member: proves nothing, blocks nothing. The provider's
                    # value wins when it is written (see _apply_fields).
                    found = None
            if found is not None:
                matches[field] = found
    if not matches:
        return AccountPlan("create", None, None, None, values)

    upgradable = [f for f in matches if (p := system.param(f)) is not None and p.can_upgrade]
    if not upgradable:
        raise AccountConflict(next(iter(matches)))
    target = matches[upgradable[0]]
    for field, found in matches.items():
        if found.id != target.id:
            raise AccountConflict(field, f"{FIELD_LABEL[field]} matches a different account")
    if any(i.auth_system_id == system.id for i in target.identities):
        raise AccountConflict(upgradable[0], "matching account is already bound to another User ID")
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


def check_membership_allowed(system: AuthSystem, result: SSOResult) -> None:
    """Raise MembershipDenied when the system's sign-in restriction refuses this profile."""
    denied = check_sign_in_allowed(system, result.fields)
    if denied:
        raise MembershipDenied(
            f"membership status {result.fields.get('membership_status')!r} may not sign in",
            user_message=denied,
        )


#: Test hook: called after the lookups and before the writes (used to force a race).
_before_write: Callable[[], None] | None = None


def _pending_link(system: AuthSystem, result: SSOResult, plan: AccountPlan) -> PendingLink:
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


def _resolve_once(
    system: AuthSystem, result: SSOResult, confirmed_user_id: int | None = None
) -> tuple[User, bool]:
    plan = plan_account(system, result, confirmed_user_id=confirmed_user_id)
    if plan.action == "confirm":
        raise LinkConfirmationRequired(_pending_link(system, result, plan))
    values = plan.values
    locked = _locked_fields(system, values)
    now = utcnow()
    if _before_write:
        _before_write()

    if plan.identity is not None:
        user = plan.identity.user
        _apply_fields(user, values, locked, fill_only=True)
        plan.identity.locked_fields = locked
        plan.identity.last_login_at = now
        user.last_login_at = now
        sync_member_groups(user, system, group_sync_fields(values, result))
        return user, False

    user = plan.user
    created = user is None
    if user is None:
        user = User(first_name="", last_name="")
        db.session.add(user)
        _apply_fields(user, values, locked, fill_only=False)
        # Fields the provider did not supply are asked once, on *Complete your profile*.
        user.pending_fields = [key for key in ACCOUNT_FIELDS if not values.get(key)] or None
        if system.onboarding_team is not None:
            user.teams.append(system.onboarding_team)
    else:
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
    db.session.add(
        Identity(
            user=user,
            auth_system_id=system.id,
            subject=result.subject,
            locked_fields=locked,
            last_login_at=now,
        )
    )
    sync_member_groups(user, system, group_sync_fields(values, result))
    return user, created


def resolve_account(
    system: AuthSystem, result: SSOResult, *, confirmed_user_id: int | None = None
) -> tuple[User, bool]:
    """Sign in, upgrade or create the account for an SSO result, in one transaction.

    The system's sign-in restriction is checked first (nothing is written when it refuses),
    and the member's groups from this system are synced in the same transaction.
    Returns the user and whether it was created. Raises LinkConfirmationRequired, writing
    nothing, when the matched account must be confirmed by its owner first. Two
    simultaneous first logins of the same person race on the unique constraints; the loser
    rolls back and tries again, and then finds the binding the winner made.
    """
    check_membership_allowed(system, result)
    system_id = system.id
    for attempt in range(RESOLVE_ATTEMPTS):
        try:
            user, created = _resolve_once(system, result, confirmed_user_id)
            db.session.commit()
            return user, created
        except IntegrityError:
            db.session.rollback()
            log.info("SSO account resolution lost a race (try %d), retrying", attempt + 1)
            system = db.session.get(AuthSystem, system_id)
        except BaseException:
            db.session.rollback()
            raise
    raise SSOError("account resolution still hit a unique constraint after retries")


# -- pending links: an upgrade the matched account's owner confirms -----------------------------


def seal_pending_link(link: PendingLink) -> str:
    """Encrypt a pending link to keep in the member's session."""
    return encrypt_secret(json.dumps(asdict(link), default=str))


def unseal_pending_link(sealed: Any) -> PendingLink | None:
    """Return the pending link kept in the session; None when absent, unreadable or expired."""
    if not isinstance(sealed, str) or not sealed:
        return None
    try:
        link = PendingLink(**json.loads(decrypt_secret(sealed)))
    except Exception:  # noqa: BLE001  (an old key, a tampered or outdated value: no link)
        return None
    if link.expires_at < utcnow().timestamp():
        return None
    return link


def pending_link_account(link: PendingLink) -> tuple[AuthSystem, User]:
    """Return the system and the account a pending link would connect, or raise."""
    system = db.session.get(AuthSystem, link.system_id)
    user = db.session.get(User, link.user_id)
    if system is None or not system.enabled or user is None or not user.email:
        raise PendingLinkExpired("pending link's system or account is gone")
    return system, user


def confirm_pending_link(link: PendingLink, password: str) -> SignIn | None:
    """Link the account once its owner's password is right; None (nothing written) if wrong.

    The link is decided again from scratch (`plan_account`), so a system setting changed
    or an account linked in the meantime refuses it just as a new sign-in would.
    """
    system, target = pending_link_account(link)
    checked = authenticate_local(target.email or "", password)
    if not checked.ok or checked.user is None or checked.user.id != target.id:
        # Keep whatever the password check recorded (throttling, audit); nothing else is new.
        db.session.commit()
        return None
    result = SSOResult(
        subject=link.subject,
        fields=dict(link.fields),
        missing_required=[],
        token_response={},
        profile={},
        id_claims={"email_verified": True} if link.email_verified else None,
    )
    try:
        user, created = resolve_account(system, result, confirmed_user_id=target.id)
    except LinkConfirmationRequired:
        raise PendingLinkExpired("pending link no longer matches the same account") from None
    return SignIn(
        user=user, system=system, id_token=None, next_path=link.next_path, created=created
    )


# -- logout and profile links -----------------------------------------------------------------


def logout_redirect_url(
    system: AuthSystem | None, *, return_to: str, id_token: str | None
) -> str | None:
    """Return the rendered Alternate Logout URL, or ``None`` when the system has none."""
    if system is None or not system.logout_url:
        return None
    values = {"ClientID": system.client_id, "ReturnToURL": return_to, "IDToken": id_token or ""}
    return render(system.logout_url, Context.URL, values)


def profile_edit_url(system: AuthSystem, *, return_to: str) -> str | None:
    """Return the rendered Alternate Profile Edit URL, or ``None`` when the system has none."""
    if not system.profile_edit_url:
        return None
    values = {"ClientID": system.client_id, "ReturnToURL": return_to}
    return render(system.profile_edit_url, Context.URL, values)


def seal_id_token(id_token: str | None) -> str | None:
    """Encrypt an ID token to keep in the session until logout."""
    return encrypt_secret(id_token) if id_token else None


def unseal_id_token(sealed: str | None) -> str | None:
    """Decrypt an ID token kept in the session; ``None`` when absent or unreadable."""
    if not sealed:
        return None
    try:
        return decrypt_secret(sealed) or None
    except Exception:  # noqa: BLE001  (an old key or a tampered value: just omit the hint)
        return None
