"""Issue 9, item 7: a member signed in with a password links a provider from the account page
through the loopback OIDC provider, sees it listed, and unlinks it, in a real browser."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.devidp import Member, OIDCProvider
from portal.extensions import db
from portal.models import AuthSystem, Identity
from tests.support.accounts import MEMBER_PASSWORD
from tests.support.browser import running_oidc_provider, sign_in
from tests.support.providers import oidc_connection

CLIENT_ID = "portal-browser"
CLIENT_SECRET = 'a+b/c=&d"e é'
SYSTEM = "Loopback OIDC"
SLUG = "loopback-oidc"


@pytest.fixture
def idp(live_server) -> Iterator[OIDCProvider]:
    """A loopback OIDC provider with the member's provider account."""
    mo = Member(
        username="mo",
        password="mo-password-1",
        email="mo@example.org",
        given_name="Mo",
        family_name="Moreau",
        membership_status="Active",
    )
    with running_oidc_provider(live_server, SLUG, CLIENT_ID, CLIENT_SECRET, [mo]) as provider:
        yield provider


@pytest.fixture
def oidc_system(idp: OIDCProvider, create_auth_system) -> AuthSystem:
    return create_auth_system(
        name=SYSTEM,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        **oidc_connection(idp),
        login_label="Sign in with Loopback OIDC",
        login_mode="local_and_remote",
        enabled=True,
        params={"user_id": {"path": "sub"}, "email": {"path": "email"}},
    )


@pytest.mark.browser
def test_member_links_a_provider_on_the_account_page_and_unlinks_it(
    page: Page, live_server, idp: OIDCProvider, oidc_system: AuthSystem, member
) -> None:
    sign_in(page, "member@example.com", MEMBER_PASSWORD)
    page.goto("/account")
    methods = page.locator("#sign-in-methods")
    expect(methods.get_by_role("cell", name="Password", exact=True)).to_be_visible()

    methods.get_by_role("button", name=f"Link {SYSTEM}", exact=True).click()
    expect(page).to_have_url(re.compile("^" + re.escape(idp.authorize_url) + r"\?"))
    page.get_by_label("Username").fill("mo")
    page.get_by_label("Password").fill("mo-password-1")
    page.get_by_role("button", name="Sign in").click()

    # Back on the account page, still the member, with the system listed.
    expect(page).to_have_url(live_server.url_for("/account"))
    expect(page.get_by_text(f"{SYSTEM} is now linked to your account.")).to_be_visible()
    expect(page.get_by_label("Email Address")).to_have_value("member@example.com")
    expect(methods.get_by_role("cell", name=SYSTEM, exact=True)).to_be_visible()
    expect(methods.get_by_role("button", name=f"Link {SYSTEM}", exact=True)).to_have_count(0)

    page.once("dialog", lambda dialog: dialog.accept())
    methods.get_by_role("button", name=f"Unlink {SYSTEM}").click()

    expect(page.get_by_text(f"{SYSTEM} is no longer linked to your account.")).to_be_visible()
    expect(methods.get_by_role("cell", name=SYSTEM, exact=True)).to_have_count(0)
    expect(methods.get_by_role("button", name=f"Link {SYSTEM}", exact=True)).to_be_visible()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Identity)) == 0
    db.session.remove()
