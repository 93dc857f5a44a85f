"""Settings read from the environment only."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import current_app

from portal.services.outbound import address_policy
from portal.sso.http import HttpSettings

DEV_SECRET_KEY = "dev-only-secret-key-not-for-production"
#: Shortest SECRET_KEY production accepts (32 characters of a random token: 192 bits or more).
MIN_SECRET_KEY_LENGTH = 32
#: The largest request body Portal reads. The largest legitimate upload is an SSO import
#: (at most 1 MiB, ``MAX_DOCUMENT_BYTES``) with its multipart envelope; 2 MiB leaves room
#: for that and refuses anything bigger before it is read.
DEFAULT_MAX_CONTENT_LENGTH = 2 * 1024 * 1024


class ConfigError(RuntimeError):
    """The environment does not describe a runnable configuration."""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}.") from exc


def _whole_number(env: dict[str, str], name: str, default: int, *, minimum: int, hint: str) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be {hint}, got {value}.")
    return value


def _days(env: dict[str, str], name: str, default: int) -> int:
    return _whole_number(env, name, default, minimum=0, hint="0 (keep forever) or more days")


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    return _whole_number(env, name, default, minimum=1, hint="1 or more")


def _check_production(env: dict[str, str], secret_key: str, keys: list[str], base_url: str) -> None:
    """Refuse a production configuration that would run with weak or broken settings."""
    from cryptography.fernet import Fernet

    if len(secret_key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters when "
            "PORTAL_ENV=production (it signs sessions): generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
        )
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # The key itself is never quoted: it is a secret, and logs keep error messages.
            raise ConfigError(
                f"PORTAL_ENCRYPTION_KEYS entry {position} is not a valid Fernet key: generate "
                "one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`."
            ) from None
    if not base_url.lower().startswith("https://"):
        raise ConfigError(
            "PORTAL_BASE_URL must be the site's https:// address when PORTAL_ENV=production "
            "(sign-in cookies and redirect URLs depend on it)."
        )
    if _flag(env.get("FLASK_DEBUG")):
        raise ConfigError(
            "FLASK_DEBUG must be off when PORTAL_ENV=production: the debugger runs code "
            "typed into an error page."
        )


def _networks(env: dict[str, str], name: str) -> tuple[Any, ...]:
    from portal.sso.netpolicy import parse_networks

    try:
        return parse_networks(env.get(name, ""))
    except ValueError as exc:
        raise ConfigError(f"{name} must list CIDR networks, e.g. 10.20.0.0/16: {exc}") from exc


def _rate_limits(env: dict[str, str], name: str, default: str) -> str:
    from limits import parse_many

    value = (env.get(name) or "").strip() or default
    try:
        parse_many(value)
    except ValueError as exc:
        raise ConfigError(
            f"{name} must list rate limits such as '5/minute;20/hour', got {value!r}."
        ) from exc
    return value


#: Default rate limits (``limits`` notation; ``;`` separates layered windows).
#: A shared office or conference network rarely sends 20 sign-ins a minute, while one address
#: spraying passwords across accounts is held to 200 guesses an hour.
DEFAULT_LOGIN_IP_LIMITS = "20/minute;200/hour"
#: Failed local sign-ins per account (the email typed): a member who mistypes a few times is
#: never stopped, an attacker gets 5 guesses a minute, then 20 an hour, then 100 a day.
DEFAULT_LOGIN_ACCOUNT_LIMITS = "5/minute;20/hour;100/day"
#: Unfinished SSO sign-ins started from one address. A sign-in that comes back finished no
#: longer counts, so a keynote's crowd behind one conference NAT signs in at any pace, while a
#: flood of starts that never finish (each writes a login attempt) stops here.
DEFAULT_SSO_START_LIMITS = "500/10 minutes"
#: Failed SSO callbacks per address (a successful sign-in never counts): a person fails a few
#: times at most; a flood of bogus callbacks stops here.
DEFAULT_SSO_CALLBACK_LIMITS = "30/minute;300/hour"
#: POSTs to a Sign-in Initiation URL per address (a refresh token from the platform, or a
#: third-party-initiated login): a member is sent there once per sign-in.
DEFAULT_SSO_INITIATE_LIMITS = "20/minute;200/hour"
#: *Test this configuration* starts and imports per manager: each calls out or parses a file.
DEFAULT_MANAGER_LIMITS = "10/minute;100/hour"


#: Database connections each process keeps open when PORTAL_THREADS is not set (one per thread
#: of a gunicorn worker, as gunicorn.conf.py runs them).
DB_POOL_SIZE = 16


def load_config(instance_path: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables."""
    env = dict(os.environ if env is None else env)
    production = env.get("PORTAL_ENV", "development").strip().lower() == "production"
    secret_key, keys = _secrets(env, production)
    base_url = env.get("PORTAL_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    if production:
        _check_production(env, secret_key, keys, base_url)
    threads = _positive_int(env, "PORTAL_THREADS", DB_POOL_SIZE)
    return {
        "PORTAL_ENV": "production" if production else "development",
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": _database_url(env, instance_path),
        # hide_parameters: a failed statement's error (and so a traceback in the log) names the
        # statement, never its values, which can be a state, a verifier or a token.
        # pool_size: the connections a worker keeps open, one per thread (PORTAL_THREADS, as
        # gunicorn.conf.py reads it; 16 by default). With SQLAlchemy's 5, a worker whose threads
        # held more at once closed the extra ones as they came back and opened new ones a moment
        # later (a PostgreSQL connection costs both sides a few ms of CPU). max_overflow: as many
        # again (a request may hold two at once: its session's and a plain statement's), so none
        # waits for one.
        # No pool_pre_ping: a server connection idle in the pool is pinged before use instead
        # (portal/database.py), not every checkout.
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "hide_parameters": True,
            "pool_size": threads,
            "max_overflow": threads,
        },
        "PORTAL_BASE_URL": base_url,
        "PORTAL_TRUST_PROXY": _flag(env.get("PORTAL_TRUST_PROXY")),
        "PORTAL_ENCRYPTION_KEYS": keys,
        **_outbound_settings(env),
        #: Days the audit log keeps events; 0 keeps them forever.
        "PORTAL_AUDIT_RETENTION_DAYS": _days(env, "PORTAL_AUDIT_RETENTION_DAYS", 365),
        **_rate_limit_settings(env),
        **_mail_settings(env, production),
        "MAX_CONTENT_LENGTH": _positive_int(
            env, "PORTAL_MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH
        ),
        **_session_settings(env, production),
        **_operations_settings(env),
    }


#: Values PORTAL_LOG_FORMAT accepts.
LOG_FORMATS = ("text", "json")


def _operations_settings(env: dict[str, str]) -> dict[str, Any]:
    """Return the settings of what an operator watches: logs and metrics."""
    log_format = (env.get("PORTAL_LOG_FORMAT") or "text").strip().lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"PORTAL_LOG_FORMAT must be text or json, got {log_format!r}.")
    return {
        #: "json": one JSON object per log line, for a log shipper (portal/request_log.py).
        "PORTAL_LOG_FORMAT": log_format,
        #: Bearer token a Prometheus scraper sends to /metrics; unset, /metrics answers 404.
        "PORTAL_METRICS_TOKEN": (env.get("PORTAL_METRICS_TOKEN") or "").strip(),
    }


def _secrets(env: dict[str, str], production: bool) -> tuple[str, list[str]]:
    """Return SECRET_KEY and the encryption keys (development defaults outside production)."""
    secret_key = env.get("SECRET_KEY", "")
    if not secret_key:
        if production:
            raise ConfigError("SECRET_KEY must be set when PORTAL_ENV=production.")
        secret_key = DEV_SECRET_KEY

    keys_raw = env.get("PORTAL_ENCRYPTION_KEYS", "")
    keys = [k.strip() for k in keys_raw.split(",") if k.strip()]
    if not keys:
        if production:
            raise ConfigError("PORTAL_ENCRYPTION_KEYS must be set when PORTAL_ENV=production.")
        # A development key derived from SECRET_KEY, so a restart can still read secrets.
        digest = hashlib.sha256(("portal-dev-fernet:" + secret_key).encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return secret_key, keys


def _database_url(env: dict[str, str], instance_path: str) -> str:
    """Return the SQLAlchemy URL: DATABASE_URL (on psycopg 3), else SQLite in the instance."""
    default_db = "sqlite:///" + str(Path(instance_path) / "portal.sqlite3")
    database_url = env.get("DATABASE_URL") or default_db
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
    return database_url


def _outbound_settings(env: dict[str, str]) -> dict[str, Any]:
    """Return the limits of the calls Portal makes to identity providers."""
    return {
        "PORTAL_ALLOW_INSECURE_HTTP": _flag(env.get("PORTAL_ALLOW_INSECURE_HTTP")),
        "PORTAL_HTTP_CONNECT_TIMEOUT": _float(env, "PORTAL_HTTP_CONNECT_TIMEOUT", 5.0),
        "PORTAL_HTTP_READ_TIMEOUT": _float(env, "PORTAL_HTTP_READ_TIMEOUT", 10.0),
        "PORTAL_HTTP_MAX_BYTES": int(_float(env, "PORTAL_HTTP_MAX_BYTES", 1_048_576)),
        #: Seconds a whole outbound call (connect, send, headers and body) may take.
        "PORTAL_HTTP_TOTAL_TIMEOUT": _float(env, "PORTAL_HTTP_TOTAL_TIMEOUT", 15.0),
        #: Networks outbound calls may reach although private (an on-premises AMS, say).
        "PORTAL_ALLOWED_PRIVATE_NETWORKS": _networks(env, "PORTAL_ALLOWED_PRIVATE_NETWORKS"),
    }


def _rate_limit_settings(env: dict[str, str]) -> dict[str, Any]:
    """Return the Flask-Limiter settings and Portal's rate limits."""
    return {
        #: Redis shared by every instance, for the rate limits (memory of this process otherwise).
        "REDIS_URL": env.get("REDIS_URL", "").strip(),
        "RATELIMIT_ENABLED": _flag(env.get("PORTAL_RATELIMIT_ENABLED", "1")),
        # Memory: limits' own storage, swept inline (portal/ratelimit_storage.py).
        "RATELIMIT_STORAGE_URI": env.get("REDIS_URL", "").strip() or "portal-memory://",
        "RATELIMIT_STRATEGY": "fixed-window",
        "RATELIMIT_KEY_PREFIX": "portal",
        # Redis down: keep limiting, per instance, rather than answering 500.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "PORTAL_RATELIMIT_LOGIN_IP": _rate_limits(
            env, "PORTAL_RATELIMIT_LOGIN_IP", DEFAULT_LOGIN_IP_LIMITS
        ),
        "PORTAL_RATELIMIT_LOGIN_ACCOUNT": _rate_limits(
            env, "PORTAL_RATELIMIT_LOGIN_ACCOUNT", DEFAULT_LOGIN_ACCOUNT_LIMITS
        ),
        "PORTAL_RATELIMIT_SSO_START": _rate_limits(
            env, "PORTAL_RATELIMIT_SSO_START", DEFAULT_SSO_START_LIMITS
        ),
        "PORTAL_RATELIMIT_SSO_CALLBACK": _rate_limits(
            env, "PORTAL_RATELIMIT_SSO_CALLBACK", DEFAULT_SSO_CALLBACK_LIMITS
        ),
        "PORTAL_RATELIMIT_SSO_INITIATE": _rate_limits(
            env, "PORTAL_RATELIMIT_SSO_INITIATE", DEFAULT_SSO_INITIATE_LIMITS
        ),
        "PORTAL_RATELIMIT_MANAGER": _rate_limits(
            env, "PORTAL_RATELIMIT_MANAGER", DEFAULT_MANAGER_LIMITS
        ),
    }


def _mail_settings(env: dict[str, str], production: bool) -> dict[str, Any]:
    """Return the outgoing mail settings (Flask-Mailman).

    Without MAIL_SERVER outside production, mail is written to the console and to
    instance/outbox/ instead of being sent.
    """
    mail_server = env.get("MAIL_SERVER", "").strip()
    return {
        "MAIL_SERVER": mail_server or "localhost",
        "MAIL_PORT": int(_float(env, "MAIL_PORT", 25)),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": _flag(env.get("MAIL_USE_TLS")),
        "MAIL_USE_SSL": _flag(env.get("MAIL_USE_SSL")),
        "MAIL_DEFAULT_SENDER": env.get("MAIL_DEFAULT_SENDER") or "portal@localhost",
        "MAIL_TIMEOUT": 10,
        "MAIL_BACKEND": "smtp"
        if mail_server or production
        else "portal.services.mail.OutboxEmailBackend",
    }


def _session_settings(env: dict[str, str], production: bool) -> dict[str, Any]:
    """Return the session lifetimes and the session, remember and CSRF cookie settings."""
    manager_hours = _positive_int(env, "PORTAL_MANAGER_LIFETIME_HOURS", 12)
    member_hours = _positive_int(env, "PORTAL_MEMBER_LIFETIME_HOURS", 168)
    return {
        # Session lifetimes (see portal/auth/sessions.py for why these defaults). Managers
        # hold the keys to every sign-in (client secrets, roles), so their sessions end
        # sooner: 30 minutes idle / 12 hours in all, OWASP ASVS 3.3.2's level-2 figures.
        # Members: 4 hours idle lets a long recording play without a request, and 7 days in
        # all makes a lapsed membership reach the provider's answer within a week.
        "PORTAL_MANAGER_IDLE_MINUTES": _positive_int(env, "PORTAL_MANAGER_IDLE_MINUTES", 30),
        "PORTAL_MANAGER_LIFETIME_HOURS": manager_hours,
        "PORTAL_MEMBER_IDLE_MINUTES": _positive_int(env, "PORTAL_MEMBER_IDLE_MINUTES", 240),
        "PORTAL_MEMBER_LIFETIME_HOURS": member_hours,
        # The signed cookie itself expires too (Flask checks its signature's age, Flask-Login
        # the remember cookie's), so no cookie outlives the longest session.
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=max(manager_hours, member_hours)),
        "REMEMBER_COOKIE_DURATION": timedelta(hours=max(manager_hours, member_hours)),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        # ``__Host-`` cookies are only sent over https, to this host, for every path: no
        # sibling subdomain can plant or overwrite them. Development serves plain http.
        "SESSION_COOKIE_NAME": "__Host-session" if production else "session",
        "REMEMBER_COOKIE_NAME": "__Host-remember_token" if production else "remember_token",
        "WTF_CSRF_TIME_LIMIT": None,
    }


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
