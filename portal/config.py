"""Settings read from the environment only."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

DEV_SECRET_KEY = "dev-only-secret-key-not-for-production"


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


def _days(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number of days, got {raw!r}.") from exc
    if value < 0:
        raise ConfigError(f"{name} must be 0 (keep forever) or more days, got {value}.")
    return value


def _networks(env: dict[str, str], name: str) -> tuple[Any, ...]:
    from portal.sso.netpolicy import parse_networks

    try:
        return parse_networks(env.get(name, ""))
    except ValueError as exc:
        raise ConfigError(f"{name} must list CIDR networks, e.g. 10.20.0.0/16: {exc}") from exc


def load_config(instance_path: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables."""
    env = dict(os.environ if env is None else env)
    production = env.get("PORTAL_ENV", "development").strip().lower() == "production"

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

    default_db = "sqlite:///" + str(Path(instance_path) / "portal.sqlite3")
    database_url = env.get("DATABASE_URL") or default_db
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]

    return {
        "PORTAL_ENV": "production" if production else "development",
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "PORTAL_BASE_URL": env.get("PORTAL_BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
        "PORTAL_TRUST_PROXY": _flag(env.get("PORTAL_TRUST_PROXY")),
        "PORTAL_ENCRYPTION_KEYS": keys,
        "PORTAL_ALLOW_INSECURE_HTTP": _flag(env.get("PORTAL_ALLOW_INSECURE_HTTP")),
        "PORTAL_HTTP_CONNECT_TIMEOUT": _float(env, "PORTAL_HTTP_CONNECT_TIMEOUT", 5.0),
        "PORTAL_HTTP_READ_TIMEOUT": _float(env, "PORTAL_HTTP_READ_TIMEOUT", 10.0),
        "PORTAL_HTTP_MAX_BYTES": int(_float(env, "PORTAL_HTTP_MAX_BYTES", 1_048_576)),
        #: Seconds a whole outbound call (connect, send, headers and body) may take.
        "PORTAL_HTTP_TOTAL_TIMEOUT": _float(env, "PORTAL_HTTP_TOTAL_TIMEOUT", 15.0),
        #: Networks outbound calls may reach although private (an on-premises AMS, say).
        "PORTAL_ALLOWED_PRIVATE_NETWORKS": _networks(env, "PORTAL_ALLOWED_PRIVATE_NETWORKS"),
        #: Days the audit log keeps events; 0 keeps them forever.
        "PORTAL_AUDIT_RETENTION_DAYS": _days(env, "PORTAL_AUDIT_RETENTION_DAYS", 365),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "WTF_CSRF_TIME_LIMIT": None,
    }
