"""The SSO sign-in flow: start it, finish it, confirm a pending link, and the logout links."""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from portal.config import http_settings
from portal.extensions import db
from portal.models import AuthSystem, User
from portal.models.base import utcnow
from portal.services.account_resolution import (
    LinkConfirmationRequired,
    PendingLink,
    resolve_account,
)
from portal.services.accounts import authenticate_local
from portal.services.login_attempts import (
    ClaimedAttempt,
    RecordedAttempt,
    StateOfTestRun,
    claim_login_attempt,
    drop_login_attempt,
    read_verifier,
    record_login_attempt,
)
from portal.services.secrets import (
    SecretUnreadable,
    decrypt_secret,
    encrypt_secret,
    secret_readable,
)
from portal.services.settings_snapshot import (
    SystemSettings,
    confirm_snapshot,
    forget_request_snapshot,
    peek_snapshot,
    settings_of,
    system_by_id,
    system_by_slug,
)
from portal.sso.discovery import get_discovery_cache, requires_iss_parameter
from portal.sso.engine import (
    Initiation,
    SSOConfig,
    SSOResult,
    begin_login,
    finish_login,
    finish_refresh_login,
    read_initiation,
)
from portal.sso.errors import (
    IssuerMismatch,
    PendingLinkExpired,
    PlatformStartRefused,
    SettingsUnreadable,
    StateInvalid,
)
from portal.sso.fields import (
    LABELS,
    LOGIN_LOCAL_ONLY,
    LOGIN_REMOTE_ONLY,
    PUBLIC_LOGIN_MODES,
)
from portal.sso.http import get_http_client
from portal.sso.idtoken import get_jwks_cache
from portal.sso.personify import (
    PersonifyConfig,
    begin_personify_login,
    finish_personify_login,
    personify_result,
)
from portal.sso.placeholders import Context, render
from portal.sso.trace import Trace


class SystemUnavailable(Exception):
    """The authentication system is unknown, disabled, or not offered to this person."""


@dataclass
class SignIn:
    """A finished SSO sign-in: who, through which system, and where to go next."""

    user: User
    system: SystemSettings
    id_token: str | None
    next_path: str
    created: bool
    #: The sign-in's reference, in its audit event and its log line.
    reference: str = ""
    #: The engine's result (its tokens are kept when the system re-checks membership).
    result: SSOResult | None = None


# -- configuration ----------------------------------------------------------------------------


def build_sso_config(system: AuthSystem | SystemSettings) -> SSOConfig:
    """Return the engine's configuration for a system (secret decrypted)."""
    compiled = settings_of(system)
    try:
        client_secret = decrypt_secret(compiled.client_secret_encrypted)
    except SecretUnreadable:
        raise SettingsUnreadable(
            "client secret not decryptable with PORTAL_ENCRYPTION_KEYS"
        ) from None
    return dataclasses.replace(compiled.sso_config, client_secret=client_secret)


def build_personify_config(system: AuthSystem | SystemSettings) -> PersonifyConfig:
    """Return a Personify SSO system's engine configuration (secrets decrypted)."""
    compiled = settings_of(system)
    if compiled.personify_config is None:
        raise SettingsUnreadable(f"system {compiled.slug} is not a Personify SSO system")
    secrets_: dict[str, str] = {}
    for name, token in compiled.personify_secrets_encrypted.items():
        try:
            secrets_[name] = decrypt_secret(token)
        except SecretUnreadable:
            raise SettingsUnreadable(
                f"{LABELS[name]} not decryptable with PORTAL_ENCRYPTION_KEYS"
            ) from None
    return dataclasses.replace(compiled.personify_config, **secrets_)


def personify_return_url(system: SystemSettings, state: str) -> str:
    """Return where Personify sends the browser back: the Redirect URL with the attempt's state.

    Personify returns to the URL of the vendor token and adds ``ct`` to its query.
    """
    return f"{system.sso_config.redirect_url}?{urlencode({'state': state})}"


def read_appended_ct(params: Mapping[str, str]) -> dict[str, str]:
    """Return the callback's parameters, with a ``ct`` appended after a second ``?`` read.

    The return URL already carries ``?state=``; a Personify site that appends ``?ct=...``
    instead of ``&ct=...`` makes the state's value ``<state>?ct=<ct>``. A state Portal made
    never holds ``?`` (it is URL-safe base64), so splitting it is unambiguous.
    """
    found = dict(params)
    state, marker, ct = (found.get("state") or "").partition("?ct=")
    if marker and "ct" not in found:
        found["state"], found["ct"] = state, ct
    return found


def get_login_system(slug: str, *, is_manager: bool = False) -> SystemSettings:
    """Return the enabled system for ``slug`` that this person may sign in with.

    *Local Login Only* hides a system from the public, but a community manager may still
    try its flow. Read from the settings snapshot: one version read per request.
    """
    return _offered(system_by_slug(slug), slug, is_manager)


def _offered(system: SystemSettings | None, slug: str, is_manager: bool) -> SystemSettings:
    if system is None or not system.enabled:
        raise SystemUnavailable(slug)
    if system.login_mode == LOGIN_LOCAL_ONLY and not is_manager:
        raise SystemUnavailable(slug)
    return system


def peek_login_system(slug: str, *, is_manager: bool = False) -> SystemSettings:
    """Return the system of a start or a callback from this process's snapshot, unconfirmed.

    No version read: `start_current_login` and `complete_sso_login` confirm the snapshot with
    the version their first statement reads (the attempt's INSERT, its claim), before the
    browser is sent anywhere or a code is redeemed. A system the snapshot lacks or refuses
    is looked up afresh, so an outdated snapshot never turns a member away.
    """
    system = peek_snapshot().by_slug.get(slug)
    try:
        return _offered(system, slug, is_manager)
    except SystemUnavailable:
        forget_request_snapshot()
        return get_login_system(slug, is_manager=is_manager)


def public_login_systems(systems: list[AuthSystem]) -> list[AuthSystem]:
    """Return the systems whose SSO link the public sees on the login page."""
    return [s for s in systems if s.login_mode in PUBLIC_LOGIN_MODES]


def remote_only_in_force(systems: list[AuthSystem]) -> bool:
    """Tell whether an enabled system is Remote Login Only (members can't sign in locally)."""
    return any(s.login_mode == LOGIN_REMOTE_ONLY for s in systems)


# -- the sign-in -----------------------------------------------------------------------------


def start_sso_login(
    system: AuthSystem | SystemSettings,
    *,
    browser_key: str,
    next_path: str = "",
    is_test: bool = False,
    login_hint: str = "",
) -> str:
    """Record a new login attempt for this browser and return the IdP login URL.

    ``is_test`` marks an attempt started from the admin's test screen: its callback
    traces the sign-in instead of signing anyone in. ``login_hint`` (a third-party-initiated
    login's) fills the login URL's ``%LoginHint%``.
    """
    url, _recorded = _start(
        system, browser_key=browser_key, next_path=next_path, is_test=is_test, login_hint=login_hint
    )
    return url


def start_current_login(
    system: SystemSettings, *, is_manager: bool, browser_key: str, next_path: str = ""
) -> str:
    """Start a sign-in with ``system`` as this process's snapshot has it, then confirm it.

    ``system`` comes from `peek_login_system` (no version read): the attempt's INSERT reads
    the settings version. When the settings changed meanwhile (saved by another process or
    instance), that attempt is deleted and the sign-in starts again from the settings as they
    are now, or is refused (`SystemUnavailable`) if they no longer offer the system; the
    browser is only ever sent to a login URL built from the current settings.
    """
    url, recorded = _start(system, browser_key=browser_key, next_path=next_path)
    if confirm_snapshot(recorded.settings_version):
        return url
    drop_login_attempt(recorded.id)
    current = get_login_system(system.slug, is_manager=is_manager)
    return start_sso_login(current, browser_key=browser_key, next_path=next_path)


def _start(
    system: AuthSystem | SystemSettings,
    *,
    browser_key: str,
    next_path: str = "",
    is_test: bool = False,
    login_hint: str = "",
) -> tuple[str, RecordedAttempt]:
    compiled = settings_of(system)
    if compiled.personify_config is not None:
        return _start_personify_login(compiled, browser_key, next_path, is_test)
    # The login URL never carries the client secret (begin_login has no such placeholder):
    # only check, once per stored secret, that the callback will be able to read it.
    if not secret_readable(compiled.client_secret_encrypted):
        raise SettingsUnreadable("client secret not decryptable with PORTAL_ENCRYPTION_KEYS")
    attempt = begin_login(compiled.sso_config, login_hint=login_hint)
    recorded = record_login_attempt(
        system,
        state=attempt.state,
        nonce=attempt.nonce,
        code_verifier=attempt.code_verifier,
        browser_key=browser_key,
        next_path=next_path,
        is_test=is_test,
    )
    return attempt.url, recorded


def _start_personify_login(
    system: SystemSettings, browser_key: str, next_path: str, is_test: bool
) -> tuple[str, RecordedAttempt]:
    """Record a Personify attempt (state only: no nonce, no PKCE) and return the SSO Login URL.

    The state rides in the return URL, so the callback claims the attempt exactly as an
    OAuth 2.0 one: single use, this browser, this system.
    """
    config = build_personify_config(system)
    state = secrets.token_urlsafe(32)
    url = begin_personify_login(config, personify_return_url(system, state))
    recorded = record_login_attempt(
        system,
        state=state,
        nonce="",
        code_verifier="",
        browser_key=browser_key,
        next_path=next_path,
        is_test=is_test,
    )
    return url, recorded


def finish_attempt(
    system: AuthSystem | SystemSettings,
    attempt: ClaimedAttempt,
    params: Mapping[str, str],
    *,
    trace: Trace | None = None,
    enforce_required: bool = True,
) -> SSOResult:
    """Check the callback's issuer and run the engine for a consumed attempt."""
    compiled = settings_of(system)
    if compiled.personify_config is not None:
        profile = finish_personify_login(
            build_personify_config(compiled),
            params.get("ct") or "",
            get_http_client(http_settings()),
            trace,
        )
        return personify_result(
            profile, compiled.sso_config.params, enforce_required=enforce_required
        )
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
        code_verifier=read_verifier(attempt),
        http=http,
        jwks_cache=get_jwks_cache(),
        trace=trace,
        enforce_required=enforce_required,
    )


def complete_sso_login(
    system: SystemSettings,
    params: Mapping[str, str],
    *,
    browser_key: str | None,
    is_manager: bool = False,
) -> SignIn:
    """Check the callback's state and issuer, finish the login and resolve the account.

    Two short write transactions: the state is claimed (before any code is redeemed), then
    the account, its groups and the sign-in's audit event are written together. The claim
    also reads the settings version: settings changed since ``system`` was compiled are
    read again (and may refuse the system) before the code is redeemed.
    """
    system, attempt = _claim_attempt(system, params, browser_key, is_manager)
    if not confirm_snapshot(attempt.settings_version):
        system = _offered(system_by_id(system.id), system.slug, is_manager)
    result = finish_attempt(system, attempt, params)
    return _sign_in_with(system, result, next_path=attempt.next_path or "/")


def _claim_attempt(
    system: SystemSettings, params: Mapping[str, str], browser_key: str | None, is_manager: bool
) -> tuple[SystemSettings, ClaimedAttempt]:
    """Claim the callback's attempt for ``system``, or for its successor under the same slug.

    ``system`` may come from an outdated snapshot (`peek_login_system`): a system deleted
    and created again under the same name has a new id, which a refused claim reveals. The
    refused claim wrote nothing, so the claim is tried again with the current system.
    """
    try:
        return system, claim_login_attempt(system, params.get("state"), browser_key)
    except StateOfTestRun:
        raise
    except StateInvalid:
        forget_request_snapshot()
        current = system_by_slug(system.slug)
        if current is None or current.id == system.id:
            raise
    current = _offered(current, system.slug, is_manager)
    return current, claim_login_attempt(current, params.get("state"), browser_key)


def read_initiation_request(system: SystemSettings, params: Mapping[str, str]) -> Initiation:
    """Check a third-party-initiated login's ``iss`` against the system; return its hints."""
    return read_initiation(system.sso_config, params)


def complete_platform_login(system: SystemSettings, refresh_token: str) -> SignIn:
    """Finish a sign-in the platform started by POSTing a refresh token, and resolve the account.

    Only a system whose manager ticked *Accept sign-ins started by the platform* redeems
    one: the POST carries no state Portal made (login CSRF, see docs/security.md). The
    token goes only to the system's Token API URL; nothing is written before it is redeemed.
    """
    if not system.platform_start:
        raise PlatformStartRefused(f"system {system.slug} does not accept platform-started sign-in")
    result = finish_refresh_login(
        build_sso_config(system),
        refresh_token,
        get_http_client(http_settings()),
        get_jwks_cache(),
    )
    return _sign_in_with(system, result, next_path="/")


def _sign_in_with(system: SystemSettings, result: SSOResult, *, next_path: str) -> SignIn:
    """Resolve the account of a finished sign-in (one transaction) under a new reference."""
    reference = secrets.token_hex(4)
    try:
        user, created = resolve_account(system, result, reference=reference)
    except LinkConfirmationRequired as pending:
        pending.link.next_path = next_path
        raise
    return SignIn(
        user=user,
        system=system,
        id_token=result.id_token,
        next_path=next_path,
        created=created,
        reference=reference,
        result=result,
    )


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


def pending_link_account(link: PendingLink) -> tuple[SystemSettings, User]:
    """Return the system and the account a pending link would connect, or raise."""
    system = system_by_id(link.system_id)
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
    reference = secrets.token_hex(4)
    result = SSOResult(
        subject=link.subject,
        fields=dict(link.fields),
        missing_required=[],
        token_response={},
        profile={},
        id_claims={"email_verified": True} if link.email_verified else None,
    )
    try:
        user, created = resolve_account(
            system, result, confirmed_user_id=target.id, reference=reference
        )
    except LinkConfirmationRequired:
        raise PendingLinkExpired("pending link no longer matches the same account") from None
    return SignIn(
        user=user,
        system=system,
        id_token=None,
        next_path=link.next_path,
        created=created,
        reference=reference,
    )


# -- logout and profile links ----------------------------------------------------------------


def logout_redirect_url(
    system: AuthSystem | SystemSettings | None, *, return_to: str, id_token: str | None
) -> str | None:
    """Return the rendered Alternate Logout URL, or ``None`` when the system has none."""
    if system is None or not system.logout_url:
        return None
    values = {"ClientID": system.client_id, "ReturnToURL": return_to, "IDToken": id_token or ""}
    return render(system.logout_url, Context.URL, values)


def profile_edit_url(system: AuthSystem | SystemSettings, *, return_to: str) -> str | None:
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
