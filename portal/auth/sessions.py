"""Sessions that end: a generation checked on every request, an idle timeout and a lifetime.

A session names its user as ``"<id>:<generation>"`` (``User.get_id``). Rotating the user's
``session_generation`` (sign-out, *Sign out everywhere*, a password or role change, disabling)
makes every copy of every cookie issued before it name a stale generation, which the user
loader below refuses: the request is anonymous, as if the cookie had never been sent.

Each session also carries when it was signed in and when it was last seen. It ends after
``PORTAL_*_IDLE_MINUTES`` without a request, or ``PORTAL_*_LIFETIME_HOURS`` after sign-in,
whichever comes first; managers' limits are shorter (see ``portal/config.py``). The last-seen
time is written at most once a minute, so the cookie isn't re-signed on every request.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, flash, g, request, session
from flask.sessions import SecureCookieSessionInterface, session_json_serializer
from flask_login import current_user, logout_user
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from portal.database import PlainStatement, attach_loaded, plain_connection
from portal.extensions import db, login_manager
from portal.models import User
from portal.services import membership_recheck
from portal.services.provider_logout import provider_session_ended

#: Session keys: when the session was signed in and when it last made a request (epoch s).
SIGNED_IN_AT = "signed_in_at"
SEEN_AT = "seen_at"
#: The last-seen stamp is rewritten at most this often (seconds).
SEEN_RESOLUTION = 60
#: Session keys of the SSO flow (the browser key is `login_attempts.BROWSER_SESSION_KEY`).
ID_TOKEN = "sso_id_token"  # the ID token, encrypted, kept only for the logout redirect
SYSTEM_ID = "sso_system"  # the system the user signed in with
AFTER_PROFILE = "after_profile"  # where to go once the profile is complete
PENDING_LINK = "sso_pending_link"  # an upgrade waiting for the account's password, encrypted
PROVIDER_SID = "sso_sid"  # the provider's session id (the ID token's ``sid``), if it gave one
PROVIDER_SINCE = "sso_since"  # when the SSO sign-in happened (epoch s, float)
#: The random key naming this session's server-side tokens (`models.SSOSession`), and when
#: (epoch s) its membership re-check is due: before then a request costs no SQL for it.
SSO_SESSION = "sso_session"
RECHECK_DUE = "recheck_due"


def now() -> float:
    """Return the current time in seconds (tests move it by replacing this function)."""
    return time.time()


#: Every signed-in request loads its user: one Core statement built once (``Session.get``
#: builds its query per call; an ORM query costs twice the statement), made an object by
#: `attach_loaded`.
_USERS = User.__table__
_USER_BY_ID = PlainStatement(
    sa.select(_USERS).where(_USERS.c.id == sa.bindparam("user_id")), columns=list(_USERS.c)
)


class _KeyKeepingSigner(TimestampSigner):
    """itsdangerous' signer, deriving each key once instead of at every signature.

    The derived key depends only on the secret key, the salt and the method; itsdangerous
    derives it again for every cookie it reads or writes.
    """

    _derived: dict[tuple[Any, ...], bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        cache_key = (secret_key, tuple(self.secret_keys), self.salt, self.key_derivation)
        derived = self._derived.get(cache_key)
        if derived is None:
            derived = self._derived[cache_key] = super().derive_key(secret_key)
        return derived


class _SessionJSON:
    """Session contents as plain JSON, read back by Flask's tagged JSON.

    Flask's tagged serializer walks the whole session in Python to tag bytes, tuples or
    dates; Portal's session holds strings, numbers and lists only, which the standard
    library's C encoder writes directly (a tuple, as in flashed messages, becomes a list).
    Anything else falls back to the tagged form; reading takes either form.
    """

    @staticmethod
    def dumps(value: Any) -> str:
        try:
            return json.dumps(value, separators=(",", ":"), default=_not_plain_json)
        except TypeError:
            return session_json_serializer.dumps(value)

    @staticmethod
    def loads(value: str | bytes) -> Any:
        return session_json_serializer.loads(value)


def _not_plain_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not plain JSON")


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer built once per key.

    Flask builds a new serializer to read the cookie and another to write it, on every
    request; it depends only on the secret key (and its fallbacks), so it is kept until
    those change. Its signer keeps derived keys (`_KeyKeepingSigner`) and the contents are
    written as plain JSON (`_SessionJSON`).
    """

    serializer = _SessionJSON()  # type: ignore[assignment]
    _built: tuple[tuple[Any, ...], Any] | None = None

    def get_signing_serializer(self, app: Flask) -> Any:
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        built = self._built
        if built is not None and built[0] == key:
            return built[1]
        serializer = super().get_signing_serializer(app)
        if serializer is not None:
            serializer.signer = _KeyKeepingSigner
        self._built = (key, serializer)
        return serializer


#: Flask-WTF's names: the salt its ``validate_csrf`` checks and its default field name.
_CSRF_SALT = "wtf-csrf-token"


def _csrf_field() -> str:
    return current_app.config.get("WTF_CSRF_FIELD_NAME") or "csrf_token"


@functools.lru_cache(maxsize=8)
def _csrf_serializer(secret_key: str | bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=_CSRF_SALT, signer=_KeyKeepingSigner)


def csrf_token() -> str:
    """Return this request's signed CSRF token, as Flask-WTF's ``generate_csrf`` does.

    The same token, in the same form, that ``validate_csrf`` checks; the serializer is built
    once per key and its signing key derived once, where Flask-WTF builds both for every
    page that holds a form (the signed-in member's first page has the sign-out form).
    """
    field = _csrf_field()
    token = g.get(field)
    if token is None:
        raw = session.get(field)
        if not isinstance(raw, str) or not raw:
            raw = session[field] = new_csrf_secret()
        secret = current_app.config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
        token = _csrf_serializer(secret).dumps(raw)
        setattr(g, field, token)
    return token


def new_csrf_secret() -> str:
    """Return a new session CSRF secret, of the shape Flask-WTF mints (40 hex digits)."""
    return secrets.token_hex(20)


def renew_csrf_secret() -> None:
    """Give the session a new CSRF secret, and forget a token signed this request for the old.

    Only the secret is written: the token is signed when a page asks for it.
    """
    field = _csrf_field()
    g.pop(field, None)
    session[field] = new_csrf_secret()


def load_user(token: str) -> User | None:
    """Return the user a session names, or ``None`` when its generation is stale.

    A disabled user is refused too (their generation rotated when they were disabled).
    Tokens in the old ``"<id>"`` shape name no generation and are refused.
    """
    user_id, sep, generation = (token or "").partition(":")
    if not sep or not user_id.isdigit() or not generation.isdigit():
        return None
    with plain_connection() as connection:
        rows = connection.run(_USER_BY_ID, {"user_id": int(user_id)})
    if not rows:
        return None
    user = attach_loaded(User, rows[0])
    if (user.session_generation or 0) != int(generation) or not user.is_active:
        return None
    return user


def stamp_new_session() -> None:
    """Record in the session that it is signed in now."""
    session[SIGNED_IN_AT] = session[SEEN_AT] = int(now())


def limits_for(user: User) -> tuple[int, int]:
    """Return ``(idle, lifetime)`` in seconds for ``user``'s role."""
    config = current_app.config
    prefix = "PORTAL_MANAGER_" if user.is_manager else "PORTAL_MEMBER_"
    return config[prefix + "IDLE_MINUTES"] * 60, config[prefix + "LIFETIME_HOURS"] * 3600


def end_expired_session() -> None:
    """Sign the current user out when their session is idle or too old; stamp activity."""
    if request.endpoint == "static":
        return  # stylesheets and scripts: no user to load, no activity to stamp
    # Load the user afresh for this request, even when an application context outlives a
    # request (tests, scripts): Flask-Login caches the user on ``g``, which lives that long.
    g.pop("_login_user", None)
    if not current_user.is_authenticated:
        return
    signed_in_at, seen_at = session.get(SIGNED_IN_AT), session.get(SEEN_AT)
    moment = int(now())
    idle, lifetime = limits_for(current_user)
    message = None
    if not isinstance(signed_in_at, int) or not isinstance(seen_at, int):
        # A session that never went through sign-in (a restored remember cookie): refuse it.
        message = "Please sign in again."
    elif moment - signed_in_at >= lifetime:
        message = (
            f"You were signed out because your session reached its limit of "
            f"{_duration(lifetime)}. Please sign in again."
        )
    elif moment - seen_at >= idle:
        message = (
            f"You were signed out after {_duration(idle)} without activity. Please sign in again."
        )
    elif _ended_by_provider(current_user._get_current_object(), signed_in_at):
        message = (
            "You were signed out because your identity provider ended your session. "
            "Please sign in again."
        )
    if message is None:
        if moment - seen_at >= SEEN_RESOLUTION:
            session[SEEN_AT] = moment
        return
    if session.get(SSO_SESSION):
        # The tokens kept on the server for this session have no more use.
        membership_recheck.forget_sso_session(session[SSO_SESSION])
        db.session.commit()
    logout_user()
    session.clear()
    flash(message, "info")


def _ended_by_provider(user: User, signed_in_at: int) -> bool:
    """Tell whether back-channel logout or the webhook ended this SSO session."""
    since = session.get(PROVIDER_SINCE)
    if not isinstance(since, int | float):
        since = signed_in_at
    return provider_session_ended(user, session.get(SYSTEM_ID), session.get(PROVIDER_SID), since)


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _csrf_token_in_templates() -> dict[str, Any]:
    return {"csrf_token": csrf_token}


def init_app(app: Flask) -> None:
    """Load users by id and generation, and end idle or expired sessions before each request."""
    login_manager.user_loader(load_user)
    app.session_interface = CookieSessions()
    # Templates' ``csrf_token()`` (Flask-WTF's CSRFProtect set its own, equivalent, first):
    # as a global, and in the template context, where Flask-WTF's context processor would
    # otherwise shadow the global (a later processor's value wins).
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.context_processor(_csrf_token_in_templates)
    from portal.auth.recheck import recheck_membership_when_due

    # Registered before the blueprints, so they run before their own request checks.
    app.before_request(end_expired_session)
    app.before_request(recheck_membership_when_due)
