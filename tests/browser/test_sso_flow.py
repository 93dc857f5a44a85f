"""Issue 3, item 7: a member signs in with SSO in a real browser, and out through the provider.

The loopback OIDC provider (portal.devidp) and Portal both run on 127.0.0.1; the system is
configured in the database with *Local and Remote Logins* and ID token validation on
(Issuer + JWKS URL); the member has no last name at the provider.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.devidp import Member, OIDCProvider
from portal.extensions import db
from portal.models import AuthSystem, Identity, User
from tests.support.browser import running_oidc_provider
from tests.support.providers import oidc_connection, oidc_logout_url

CLIENT_ID = "portal-browser"
CLIENT_SECRET = 'a+b/c=&d"e é'
SYSTEM = "Loopback OIDC"
SLUG = "loopback-oidc"
LABEL = "Sign in with Loopback OIDC"
MEMBER_PASSWORD = "mo-password-1"
JWT = re.compile(r"^[\w-]+\.[\w-]+\.[\w-]+$")


@pytest.fixture
def idp(live_server) -> Iterator[OIDCProvider]:
    """A loopback OIDC provider that knows Portal's real Redirect URL and home page."""
    mo = Member(
        username="mo",
        password=MEMBER_PASSWORD,
        email="mo@example.org",
        given_name="Mo",
        family_name=None,  # missing: asked on "Complete your profile"
        membership_status="Active",
        membership_type="Student",
    )
    with running_oidc_provider(live_server, SLUG, CLIENT_ID, CLIENT_SECRET, [mo]) as provider:
        yield provider


@pytest.fixture
def oidc_system(idp: OIDCProvider, create_auth_system) -> AuthSystem:
    """The authentication system for the provider, saved in the database."""
    return create_auth_system(
        name=SYSTEM,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        # ID token validation on: signature from the JWKS, iss, aud, exp, nonce.
        **oidc_connection(idp),
        logout_url=oidc_logout_url(idp),
        login_label=LABEL,
        login_mode="local_and_remote",
        enabled=True,
        params={
            "user_id": {"path": "sub"},
            "username": {"path": "preferred_username"},
            "email": {"path": "email", "must_supply": True},
            "first_name": {"path": "given_name"},
            "last_name": {"path": "family_name"},
            "membership_status": {"path": "membership_status"},
            "membership_type": {"path": "membership_type"},
        },
    )


def sign_in_at_provider(page: Page, idp: OIDCProvider) -> None:
    """From Portal's /login, follow the SSO link and sign in at the provider's own form."""
    page.goto("/login")
    # Local and Remote Logins: the local form is there too.
    expect(page.get_by_label("Email address")).to_be_visible()
    page.get_by_role("link", name=LABEL).click()
    expect(page).to_have_url(re.compile("^" + re.escape(idp.authorize_url) + r"\?"))
    page.get_by_label("Username").fill("mo")
    page.get_by_label("Password").fill(MEMBER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.browser
def test_member_signs_in_with_sso_completes_profile_and_logs_out_at_the_provider(
    page: Page, live_server, idp: OIDCProvider, oidc_system: AuthSystem
) -> None:
    home = live_server.url_for("/")
    sign_in_at_provider(page, idp)

    # Back on Portal, signed in, but the provider gave no last name: asked once.
    expect(page).to_have_url(live_server.url_for("/complete-profile"))
    expect(page.get_by_role("heading", name="Complete your profile")).to_be_visible()
    expect(page.get_by_label("First Name")).to_have_count(0)
    page.get_by_role("link", name="Portal").click()  # the site waits until it is complete
    expect(page).to_have_url(live_server.url_for("/complete-profile"))
    page.get_by_label("Last Name").fill("Moreau")
    page.get_by_role("button", name="Save and continue").click()

    expect(page).to_have_url(home)
    expect(page.get_by_text("Thank you: your profile is complete.")).to_be_visible()
    expect(page.get_by_text("You are signed in as Mo Moreau.")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    # The ID token was checked against the provider's keys, and the code with PKCE.
    assert idp.requests.all("jwks"), "Portal never fetched the JWKS: no ID token validation"
    token_request = idp.requests.last("token")
    assert token_request.form.get("code_verifier")
    user = db.session.scalar(sa.select(User).where(User.email == "mo@example.org"))
    assert user is not None and user.last_name == "Moreau" and not user.pending_fields
    assert user.password_hash is None
    identity = db.session.scalar(sa.select(Identity).where(Identity.user_id == user.id))
    assert identity is not None and identity.auth_system_id == oidc_system.id
    db.session.remove()

    # Sign out: Portal ends its session, then the provider's logout brings the browser home.
    with page.expect_response(re.compile("^" + re.escape(idp.logout_url))) as logout:
        page.get_by_role("button", name="Sign out").click()
    assert logout.value.status in (302, 303)
    expect(page).to_have_url(re.compile("^" + re.escape(home) + r"(\?.*)?$"))
    expect(page.get_by_role("heading", name="Welcome to Portal")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    expect(page.get_by_role("banner").get_by_role("link", name="Sign in")).to_be_visible()
    assert len(idp.logouts) == 1
    assert idp.logouts[0]["post_logout_redirect_uri"] == home
    assert JWT.match(idp.logouts[0].get("id_token_hint", ""))
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Faccount$|/login\?next=/account$"))

    # Signing in again skips the profile page: the answer was kept.
    sign_in_at_provider(page, idp)
    expect(page).to_have_url(home)
    expect(page.get_by_text("You are signed in as Mo Moreau.")).to_be_visible()
    users = db.session.scalar(sa.select(sa.func.count()).select_from(User))
    assert users == 1
    db.session.remove()


@pytest.mark.browser
def test_callback_opened_in_another_browser_is_refused(
    page: Page, browser, live_server, idp: OIDCProvider, oidc_system: AuthSystem
) -> None:
    """The state is bound to the browser that started the sign-in: a stolen callback fails."""
    # Let the provider's answer to the sign-in form reach us instead of the browser
    # (routes do not see redirected requests, so catch the redirect itself).
    captured: list[str] = []

    def hold_redirect(route) -> None:
        if route.request.method != "POST":
            route.fallback()  # on to the context's loopback-only guard
            return
        response = route.fetch(max_redirects=0)
        captured.append(response.headers.get("location", ""))
        route.fulfill(status=200, content_type="text/html", body="<p>held</p>")

    authorize = re.compile("^" + re.escape(idp.authorize_url))
    page.route(authorize, hold_redirect)
    sign_in_at_provider(page, idp)
    expect(page.get_by_text("held")).to_be_visible()
    page.unroute(authorize)
    assert captured and captured[0].startswith(live_server.url_for(f"/sso/{SLUG}/callback?"))

    other = browser.new_context(base_url=live_server.url)
    try:
        thief = other.new_page()
        response = thief.goto(captured[0])
        assert response is not None and response.status == 400
        expect(thief.get_by_role("heading", name="Sign-in link expired")).to_be_visible()
        expect(thief.get_by_text(re.compile(r"Reference: [0-9a-f]{8}"))).to_be_visible()
        expect(thief.get_by_role("link", name="Try again")).to_be_visible()
        expect(thief.get_by_role("button", name="Sign out")).to_have_count(0)
    finally:
        other.close()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
    db.session.remove()

    # The browser that started the sign-in can still finish it.
    page.goto(captured[0])
    expect(page.get_by_role("heading", name="Complete your profile")).to_be_visible()
