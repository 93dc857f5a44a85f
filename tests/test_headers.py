"""Security headers on real responses: CSP, framing, nosniff, referrers; HSTS in production."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from portal import create_app
from tests.support.accounts import MEMBER_PASSWORD

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["/", "/login", "/login/local", "/nowhere"]


def csp_of(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    parts = (part.strip().split(None, 1) for part in policy.split(";") if part.strip())
    return {p[0]: p[1] if len(p) > 1 else "" for p in parts}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_the_security_headers(client, path):
    """Pages (and error pages) forbid framing, sniffing, inline code and leaky referrers."""
    response = client.get(path)
    csp = csp_of(response)
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert "unsafe-eval" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_signed_in_pages_send_them_too(client, auth, member):
    """The account page of a signed-in member carries the same headers."""
    auth.login("member@example.com", MEMBER_PASSWORD)
    response = client.get("/account")
    assert response.status_code == 200
    assert csp_of(response)["frame-ancestors"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_sso_start_and_callback_send_no_referrer(client, create_auth_system):
    """The SSO start and callback (whose addresses carry state and code) send no Referer on."""
    system = create_auth_system(name="Example IdP", login_mode="local_and_remote")
    start = client.get(f"/sso/{system.slug}/login")
    assert start.status_code == 302
    assert start.headers["Referrer-Policy"] == "no-referrer"
    callback = client.get(f"/sso/{system.slug}/callback?code=SECRETCODE&state=bogus")
    assert callback.status_code == 400  # a state nobody issued
    assert callback.headers["Referrer-Policy"] == "no-referrer"
    assert "SECRETCODE" not in callback.get_data(as_text=True)
    unknown = client.get("/sso/nobody/callback?code=x&state=y")
    assert unknown.headers["Referrer-Policy"] == "no-referrer"


def test_development_sends_no_hsts_and_keeps_plain_cookie_names(client, member):
    """Outside production: plain http works, no HSTS, the cookie is named ``session``."""
    response = client.post(
        "/login", data={"email": "member@example.com", "password": MEMBER_PASSWORD}
    )
    assert response.status_code == 302
    assert "Strict-Transport-Security" not in response.headers
    assert response.headers["Set-Cookie"].startswith("session=")


def test_templates_hold_no_inline_script_style_or_handler():
    """Every script and style lives in static files, so the CSP needs no 'unsafe-inline'."""
    inline = re.compile(
        r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle\s*=|\son[a-z]+\s*=|javascript:", re.I
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if inline.search(line)
    ]
    assert found == []


# --- production -------------------------------------------------------------------------


@pytest.fixture
def production_app(app_config, monkeypatch, tmp_path):
    """An app configured as in production (https base URL, strong keys), on the test DB."""
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 48)
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_BASE_URL", "https://portal.example.org")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    config = {k: v for k, v in app_config.items() if k not in ("PORTAL_BASE_URL",)}
    return create_app(config)


def test_production_forces_https_and_sends_hsts(production_app):
    """In production, http is redirected to https and https answers carry HSTS."""
    client = production_app.test_client()
    plain = client.get("/login")
    assert plain.status_code in (301, 302)
    assert plain.headers["Location"].startswith("https://")
    secure = client.get("/login", base_url="https://portal.example.org")
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert csp_of(secure)["frame-src"] == "https:"


def test_production_cookies_are_host_only_and_secure(production_app, member):
    """In production the session cookie is ``__Host-session``: Secure, Path=/, no Domain."""
    client = production_app.test_client()
    response = client.post(
        "/login",
        data={"email": "member@example.com", "password": MEMBER_PASSWORD},
        base_url="https://portal.example.org",
    )
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-session=")
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attributes and "domain" not in attributes
    assert "Path=/" in cookie
    assert production_app.config["REMEMBER_COOKIE_NAME"].startswith("__Host-")
    assert production_app.config["REMEMBER_COOKIE_SECURE"]
