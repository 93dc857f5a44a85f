"""Helpers about addresses: safe redirects and absolute site URLs."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app


def safe_next(target: str | None, default: str = "/") -> str:
    """Return ``target`` when it is a same-site path, else ``default``."""
    if not target:
        return default
    target = target.strip()
    if any(ch in target for ch in ("\\", "\r", "\n", "\t", "\x00")):
        return default
    if not target.startswith("/") or target.startswith("//"):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def site_path(target: str | None) -> str:
    """Return ``target`` as a path when it is an absolute URL on this site, else as given.

    The result still goes through `safe_next`, which accepts only same-site paths.
    """
    target = (target or "").strip()
    base = current_app.config["PORTAL_BASE_URL"].rstrip("/")
    if target.startswith(base + "/"):
        return target[len(base) :]
    return target


def absolute_url(path: str) -> str:
    """Return ``path`` on the site's public base URL (``PORTAL_BASE_URL``)."""
    return current_app.config["PORTAL_BASE_URL"] + path


def redirect_url_for(slug: str) -> str:
    """Return the Redirect URL of the authentication system with this slug."""
    return absolute_url(f"/sso/{slug}/callback")


def initiate_url_for(slug: str) -> str:
    """Return the Sign-in Initiation URL of the system with this slug (a provider starts there)."""
    return absolute_url(f"/sso/{slug}/initiate")


def backchannel_logout_url_for(slug: str) -> str:
    """Return the Back-Channel Logout URL of the system with this slug (the provider POSTs)."""
    return absolute_url(f"/sso/{slug}/backchannel-logout")


def webhook_url_for(slug: str) -> str:
    """Return the Deprovisioning Webhook URL of the system with this slug."""
    return absolute_url(f"/sso/{slug}/webhook")
