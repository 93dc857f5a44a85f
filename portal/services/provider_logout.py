"""A provider ends access at once: back-channel logout and the deprovisioning webhook.

Issue 9, items 3 and 4. Both arrive server to server, both are single use (a logout token's
``jti``, a webhook's signature: `use_once`), and both end a member's sessions through one
system (`end_provider_sessions`), which `provider_session_ended` finds at the member's next
request. The webhook also re-syncs the member's status and groups with the sign-in's own
services (`sync_member_groups`, `check_sign_in_allowed`) or, for ``member.deleted``, disables
the binding (and the account, when it has no other way to sign in).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from portal.config import http_settings
from portal.database import PlainStatement, commit_keeping_loaded, plain_connection
from portal.extensions import db
from portal.models import (
    AuthSystem,
    Identity,
    ProviderSession,
    ProviderSessionEnd,
    UsedToken,
    User,
)
from portal.models.base import utcnow
from portal.services import audit, membership_recheck
from portal.services.group_mapping import check_sign_in_allowed, sync_member_groups
from portal.services.secrets import SecretUnreadable, decrypt_secret
from portal.services.settings_snapshot import SystemSettings, settings_of
from portal.services.users import rotate_session_generation
from portal.sso.errors import LogoutTokenInvalid
from portal.sso.http import get_http_client
from portal.sso.idtoken import get_jwks_cache
from portal.sso.logout_token import LogoutRequest, validate_logout_token

log = logging.getLogger(__name__)


def now() -> float:
    """Return the current time in epoch seconds (tests move it by replacing this function)."""
    return time.time()


# --- single use ------------------------------------------------------------------------------


def _digest(kind: str, system_id: int, value: str) -> str:
    return hashlib.sha256(f"{kind}:{system_id}:{value}".encode()).hexdigest()


def use_once(kind: str, system_id: int, value: str, usable_until: float) -> bool:
    """Record ``value`` as used (committed); False when it was used already.

    The unique digest decides, so two processes receiving the same value at once cannot
    both accept it. Rows whose value could no longer be accepted anyway are purged first.
    """
    moment = datetime.fromtimestamp(now(), UTC)
    db.session.execute(sa.delete(UsedToken).where(UsedToken.expires_at < moment))
    db.session.add(
        UsedToken(
            digest=_digest(kind, system_id, value),
            expires_at=datetime.fromtimestamp(usable_until, UTC),
        )
    )
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


# --- ending sessions ---------------------------------------------------------------------------


def _longest_session() -> float:
    config = current_app.config
    hours = max(config["PORTAL_MEMBER_LIFETIME_HOURS"], config["PORTAL_MANAGER_LIFETIME_HOURS"])
    return hours * 3600.0


def end_provider_sessions(user: User, system_id: int, sid: str | None = None) -> None:
    """End ``user``'s sessions through a system (only the provider session ``sid``, if given).

    In the current transaction; the caller commits. Rows older than any session are purged.
    """
    moment = now()
    db.session.execute(
        sa.delete(ProviderSessionEnd).where(
            ProviderSessionEnd.ended_at < moment - _longest_session()
        )
    )
    db.session.add(
        ProviderSessionEnd(user_id=user.id, auth_system_id=system_id, sid=sid, ended_at=moment)
    )
    user.provider_logout_at = moment
    if sid is None:
        # Every session through the system ends: the tokens kept for them are of no more use.
        # (A session ended by sid drops its own at its next request, in end_expired_session.)
        membership_recheck.forget_sso_sessions(user, system_id)


def provider_session_ended(
    user: User, system_id: int | None, sid: str | None, since: float
) -> bool:
    """Tell whether a provider ended this session (through ``system_id``, signed in at ``since``).

    Costs nothing for the members no provider ever logged out: the user row, already loaded,
    says when the last provider logout happened.
    """
    if system_id is None or user.provider_logout_at is None or user.provider_logout_at < since:
        return False
    match = sa.or_(ProviderSessionEnd.sid.is_(None), ProviderSessionEnd.sid == (sid or ""))
    found = db.session.scalar(
        sa.select(ProviderSessionEnd.id)
        .where(
            ProviderSessionEnd.user_id == user.id,
            ProviderSessionEnd.auth_system_id == system_id,
            ProviderSessionEnd.ended_at >= since,
            match,
        )
        .limit(1)
    )
    return found is not None


# --- back-channel logout ------------------------------------------------------------------------


def record_provider_session(user: User, system_id: int, sid: str) -> None:
    """Remember that ``user`` signed in through a system under the provider session ``sid``."""
    if not sid or len(sid) > 255:
        return
    # One plain INSERT standing alone (on PostgreSQL without BEGIN and COMMIT), outside the
    # session: the signed-in user the page still reads is not expired.
    moment = now()
    with plain_connection() as connection:
        connection.run(
            _INSERT_PROVIDER_SESSION,
            {"auth_system_id": system_id, "sid": sid, "user_id": user.id, "signed_in_at": moment},
        )
        connection.commit()
    global _sessions_purged_at
    if moment - _sessions_purged_at >= PURGE_INTERVAL:
        # Rows older than any session name nobody: dropped at most once an hour per process.
        _sessions_purged_at = moment
        _purge_provider_sessions(moment)
        commit_keeping_loaded()


_INSERT_PROVIDER_SESSION = PlainStatement(
    ProviderSession.__table__.insert().values(
        {name: sa.bindparam(name) for name in ("auth_system_id", "sid", "user_id", "signed_in_at")}
    )
)
#: Old ``provider_sessions`` rows are purged at most this often per process (seconds).
PURGE_INTERVAL = 3600.0
_sessions_purged_at = 0.0


def _purge_provider_sessions(moment: float) -> None:
    db.session.execute(
        sa.delete(ProviderSession).where(ProviderSession.signed_in_at < moment - _longest_session())
    )


def _identities(system: SystemSettings, request: LogoutRequest) -> list[Identity]:
    """Return the bindings a logout token names: by ``sub``, else by the session's ``sid``."""
    query = sa.select(Identity).where(Identity.auth_system_id == system.id)
    if request.subject is not None:
        query = query.where(Identity.subject == request.subject)
    else:
        holders = sa.select(ProviderSession.user_id).where(
            ProviderSession.auth_system_id == system.id, ProviderSession.sid == request.sid
        )
        query = query.where(Identity.user_id.in_(holders))
    return list(db.session.scalars(query))


def apply_backchannel_logout(system: SystemSettings, logout_token: str) -> int:
    """Validate a logout token (Back-Channel Logout 2.6) and end the sessions it names.

    Returns how many members' sessions ended (0 when the token names nobody Portal knows:
    still a success for the provider, 2.8). Raises LogoutTokenInvalid, writing nothing, for
    an invalid or replayed token.
    """
    config = system.sso_config
    request = validate_logout_token(
        logout_token,
        issuer=config.issuer,
        client_id=config.client_id,
        jwks_url=config.jwks_url,
        http=get_http_client(http_settings()),
        jwks_cache=get_jwks_cache(),
        clock=now,
    )
    identities = _identities(system, request)
    if not use_once("jti", system.id, request.jti, request.usable_until):
        raise LogoutTokenInvalid("logout token already used (jti)")
    _purge_provider_sessions(now())
    for identity in identities:
        end_provider_sessions(identity.user, system.id, request.sid)
        audit.record_event(
            audit.PROVIDER_LOGOUT,
            actor=identity.user,
            system=system,  # type: ignore[arg-type]  # the audit reads .id and .name
            details={"ended": "one provider session" if request.sid else "every session"},
        )
    db.session.commit()
    return len(identities)


# --- deprovisioning webhook -------------------------------------------------------------------

#: Headers of a webhook request: when it was signed (epoch seconds) and the signature.
TIMESTAMP_HEADER = "X-Portal-Timestamp"
SIGNATURE_HEADER = "X-Portal-Signature"
#: A request signed longer ago (or further ahead) than this is refused; a signature is
#: remembered that long, so a replay inside the window is refused too.
REPLAY_WINDOW = 300
#: The largest body accepted (an event is a few hundred bytes).
MAX_BODY = 64 * 1024
MEMBER_UPDATED = "member.updated"
MEMBER_DELETED = "member.deleted"
EVENTS = (MEMBER_UPDATED, MEMBER_DELETED)
#: Longest text of ``user_id``, ``status`` and ``type``; most ``groups`` values.
MAX_TEXT = 255
MAX_GROUPS = 200


class WebhookRefused(Exception):
    """A webhook request Portal does not act on: its HTTP status and JSON ``error``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(f"{error}: {description}")


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """Return the ``X-Portal-Signature`` value of a body: ``sha256=`` HMAC of ``<ts>.<body>``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256")
    return "sha256=" + mac.hexdigest()


def _check_signature(system: AuthSystem, headers: Mapping[str, str], body: bytes) -> str:
    """Check the timestamp window and the HMAC; return the signature (to use it once)."""
    if not system.webhook_secret_encrypted:
        raise WebhookRefused(404, "not_found", "This system has no Webhook Signing Secret.")
    try:
        secret = decrypt_secret(system.webhook_secret_encrypted)
    except SecretUnreadable:
        log.error("Webhook of system %s: the Webhook Signing Secret cannot be decrypted", system.id)
        raise WebhookRefused(503, "temporarily_unavailable", "Try again later.") from None
    timestamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    signature = (headers.get(SIGNATURE_HEADER) or "").strip()
    if not timestamp.isdigit() or len(timestamp) > 12 or not signature:
        raise WebhookRefused(401, "invalid_signature", "Missing timestamp or signature.")
    expected = sign_webhook(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise WebhookRefused(401, "invalid_signature", "The signature does not match.")
    if abs(now() - int(timestamp)) > REPLAY_WINDOW:
        raise WebhookRefused(
            401, "stale_timestamp", "The timestamp is outside the 5-minute window."
        )
    return signature


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise WebhookRefused(400, "invalid_request", f"{name} must be a string.")
    text = str(value).strip()
    if not text or len(text) > MAX_TEXT:
        raise WebhookRefused(400, "invalid_request", f"{name} is empty or too long.")
    return text


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook event: what happened to whom, and the values it carries."""

    event: str
    user_id: str
    #: ``membership_status`` / ``membership_type`` / ``groups``: only the keys it carried.
    fields: dict[str, Any]


def read_webhook_event(body: bytes) -> WebhookEvent:
    """Parse and check an event document; raise WebhookRefused (400) when it is not one."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WebhookRefused(400, "invalid_request", "The body is not JSON.") from None
    if not isinstance(doc, dict):
        raise WebhookRefused(400, "invalid_request", "The body must be a JSON object.")
    event = doc.get("event")
    if event not in EVENTS:
        raise WebhookRefused(
            400, "invalid_request", "event must be member.updated or member.deleted."
        )
    fields: dict[str, Any] = {}
    for key, field in (("status", "membership_status"), ("type", "membership_type")):
        if key in doc:
            fields[field] = None if doc[key] is None else _text(doc[key], key)
    if "groups" in doc:
        groups = doc["groups"]
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
            raise WebhookRefused(400, "invalid_request", "groups must be a list of names.")
        fields["groups"] = [_text(g, "groups") for g in groups]
    return WebhookEvent(event=event, user_id=_text(doc.get("user_id"), "user_id"), fields=fields)


def _other_way_in(user: User, identity: Identity) -> bool:
    """Tell whether ``user`` can still sign in without ``identity``: a password, another binding."""
    if user.password_hash:
        return True
    return any(other.id != identity.id and other.disabled_at is None for other in user.identities)


def apply_webhook(slug: str, headers: Mapping[str, str], body: bytes) -> str:
    """Verify a deprovisioning webhook request and apply its event at once (one transaction).

    Returns what happened (``updated``, ``signed_out``, ``deleted``, ``no_account``). Raises
    WebhookRefused, writing nothing, for a bad signature, a stale or replayed request, or a
    body that is not an event.
    """
    system = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == slug))
    if system is None:
        raise WebhookRefused(404, "not_found", "No such system.")
    if len(body) > MAX_BODY:
        raise WebhookRefused(413, "invalid_request", "The body is too large.")
    signature = _check_signature(system, headers, body)
    event = read_webhook_event(body)
    identity = db.session.scalar(
        sa.select(Identity).where(
            Identity.auth_system_id == system.id, Identity.subject == event.user_id
        )
    )
    if not use_once("webhook", system.id, signature, now() + 2 * REPLAY_WINDOW):
        raise WebhookRefused(409, "replayed", "This request was received already.")
    if identity is None:
        db.session.commit()
        return "no_account"
    outcome = (
        _delete_member(system, identity)
        if event.event == MEMBER_DELETED
        else _update_member(system, identity, event.fields)
    )
    db.session.commit()
    return outcome


def _update_member(system: AuthSystem, identity: Identity, given: dict[str, Any]) -> str:
    """Re-sync status, type and groups as a sign-in would; refused now → signed out."""
    user = identity.user
    settings = settings_of(system)
    # Values the event leaves out stay as they are: the account's status and type, and the
    # groups that came from the provider's Groups claim (only the provider knows those).
    fields = {
        "membership_status": user.membership_status,
        "membership_type": user.membership_type,
        # The event names no address: the account's (the one its sign-ins supplied) is
        # checked against Allowed Email Domains.
        "email": user.email,
        **given,
    }
    sync_member_groups(user, settings, fields, keep_groups_claim="groups" not in given)
    denied = check_sign_in_allowed(settings, fields, without_profile=True)
    if denied:
        end_provider_sessions(user, system.id)
    audit.record_event(
        audit.WEBHOOK_MEMBER_UPDATED,
        actor=user,
        system=system,
        details={
            "changed": sorted(_LABELS[key] for key in given),
            "signed_out": bool(denied),
        },
    )
    return "signed_out" if denied else "updated"


_LABELS = {"membership_status": "status", "membership_type": "type", "groups": "groups"}


def _delete_member(system: AuthSystem, identity: Identity) -> str:
    """Disable the binding and end its sessions; disable the account if it has no other way in."""
    user = identity.user
    identity.disabled_at = utcnow()
    end_provider_sessions(user, system.id)
    account_disabled = False
    if user.disabled_at is None and not _other_way_in(user, identity):
        user.disabled_at = utcnow()
        rotate_session_generation(user)
        account_disabled = True
    audit.record_event(
        audit.WEBHOOK_MEMBER_DELETED,
        actor=user,
        system=system,
        details={"binding_disabled": True, "account_disabled": account_disabled},
    )
    return "deleted"
