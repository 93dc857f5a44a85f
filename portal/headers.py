"""Security headers on every response, through Flask-Talisman.

- A Content-Security-Policy without ``'unsafe-inline'``: every script and style is a file
  under ``static/`` (no inline ``<script>``, ``style=`` or ``on*=`` in the templates), so an
  injected tag or attribute runs nothing. ``frame-src`` admits the content items a manager
  chose to embed (https; http too outside production, where the page itself is http).
  ``form-action`` is left out on purpose: sign-out and *Test this configuration* are forms
  whose answer redirects to the provider's own address, which browsers check against it.
- ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``: no page can be framed
  (clickjacking the admin or the sign-in form).
- ``X-Content-Type-Options: nosniff``.
- ``Referrer-Policy: strict-origin-when-cross-origin``, and ``no-referrer`` on the SSO start
  and callback, whose addresses carry ``state`` and ``code``.
- The CSP is joined once per app and set by Portal; Talisman sends the rest (joining its policy
  on every response cost more than the header is worth).
- In production only: https is forced, HSTS is sent for a year, and the session and remember
  cookies are Secure (``__Host-`` names come from ``portal/config.py``). Development and
  tests serve plain http on loopback.
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_talisman import Talisman

#: Endpoints whose address carries ``state`` or ``code``: no Referer leaves them.
NO_REFERRER_ENDPOINTS = frozenset({"auth.sso_login", "auth.sso_callback"})
REFERRER_POLICY = "strict-origin-when-cross-origin"
HSTS_SECONDS = 365 * 24 * 3600


def content_security_policy(production: bool) -> dict[str, str]:
    """Return the CSP, as Talisman takes it."""
    return {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "font-src": "'self'",
        "connect-src": "'self'",
        "frame-src": "https:" if production else "https: http:",
        "object-src": "'none'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
    }


def policy_header(policy: dict[str, str]) -> str:
    """Return the Content-Security-Policy header value of a policy."""
    return "; ".join(f"{directive} {sources}" for directive, sources in policy.items())


def _no_referrer_on_sso(response: Response) -> Response:
    if request.endpoint in NO_REFERRER_ENDPOINTS:
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def init_app(app: Flask) -> None:
    """Send the security headers on every response."""
    production = app.config["PORTAL_ENV"] == "production"
    # Flask runs after-request functions in the reverse order of registration: registered
    # before Talisman's, this one runs after it and overrides its Referrer-Policy.
    app.after_request(_no_referrer_on_sso)
    csp = policy_header(content_security_policy(production))

    @app.after_request
    def _content_security_policy(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = csp
        return response

    # One Talisman per app: it keeps its settings on itself.
    app.extensions["talisman"] = Talisman(
        app,
        force_https=production,
        strict_transport_security=production,
        strict_transport_security_max_age=HSTS_SECONDS,
        strict_transport_security_include_subdomains=False,
        session_cookie_secure=production,
        session_cookie_http_only=True,
        session_cookie_samesite="Lax",
        frame_options="DENY",
        content_security_policy=None,  # set above, joined once
        referrer_policy=REFERRER_POLICY,
        x_content_type_options=True,
    )
