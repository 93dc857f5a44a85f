"""Issue 5, item 7: a manager starts from a preset, imports from an issuer, tests the
configuration and copies a path from the trace's tree into a field, in a real browser.

Portal and the loopback OpenID Connect provider (portal.devidp) both run on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.devidp import Member, OIDCProvider
from portal.extensions import db
from portal.models import AuthSystem, User
from tests.browser.test_admin_form import open_new_system_form
from tests.support.browser import ROOT, running_oidc_provider, save_screenshot

SCREENSHOT = ROOT / "docs" / "screenshots" / "test-screen.png"
CLIENT_ID = "portal-setup"
CLIENT_SECRET = "setup+secret/=&value"
NAME = "Loopback IdP"
SLUG = "loopback-idp"
PASSWORD = "ada-password-1"


@pytest.fixture
def idp(live_server) -> Iterator[OIDCProvider]:
    """A loopback OpenID Connect provider that knows Portal's Redirect URL for the new system."""
    ada = Member(
        username="ada",
        password=PASSWORD,
        email="ada@example.org",
        given_name="Ada",
        family_name="Lovelace",
        membership_status="Active",
        membership_type="Fellow",
        groups=["ANALYSTS"],
    )
    with running_oidc_provider(live_server, SLUG, CLIENT_ID, CLIENT_SECRET, [ada]) as provider:
        yield provider


@pytest.mark.browser
def test_preset_issuer_import_test_screen_and_path_copy(
    page: Page, live_server, manager, idp: OIDCProvider
) -> None:
    """From "Start from" to a saved path picked in the trace, nobody signed in on the way."""
    open_new_system_form(page)

    # Start from a preset: its notes appear and the form holds its values and {markers}.
    page.get_by_label("Start from").select_option(label="Generic OpenID Connect")
    page.get_by_role("button", name="Use this preset").click()
    expect(page.get_by_role("heading", name="Started from Generic OpenID Connect")).to_be_visible()
    expect(page.get_by_label("Token API URL")).to_have_value("{token-endpoint}")

    # Import from issuer replaces the endpoints with the discovery document's.
    page.get_by_label("Name", exact=True).fill(NAME)
    page.get_by_label("Issuer URL").fill(idp.issuer)
    page.get_by_role("button", name="Import from issuer").click()
    expect(page.get_by_label("Token API URL")).to_have_value(idp.token_url)
    expect(page.get_by_label("JWKS URL")).to_have_value(idp.jwks_url)
    expect(page.get_by_label("Name", exact=True)).to_have_value(NAME)

    page.get_by_label("Client ID").fill(CLIENT_ID)
    page.get_by_label("Client Secret").fill(CLIENT_SECRET)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="User Authentication", level=1)).to_be_visible()
    expect(page.get_by_role("link", name=NAME, exact=True)).to_be_visible()

    # Test this configuration: sign in at the provider, come back to the trace.
    page.get_by_role("link", name=NAME, exact=True).click()
    page.get_by_role("button", name="Test this configuration").click()
    expect(page).to_have_url(re.compile("^" + re.escape(idp.authorize_url) + r"\?"))
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name=f"Test of {NAME}")).to_be_visible()
    expect(page.get_by_role("heading", name="The sign-in works")).to_be_visible()
    expect(page.get_by_text("Would create a new account.").first).to_be_visible()
    requests = page.locator("ol.trace > li")
    expect(requests.filter(has_text=idp.token_url)).to_contain_text("Status 200")
    expect(requests.filter(has_text=idp.userinfo_url)).to_contain_text("Status 200")
    assert CLIENT_SECRET not in page.content(), "the client secret is on the test page"

    # Click a value in the profile tree: its path shows; put it into Membership Status.
    profile = page.locator(".json-document").filter(
        has=page.get_by_role("heading", name="Profile", exact=True)
    )
    profile.get_by_role("button", name='"Fellow"').click()
    expect(page.locator("#selected-path")).to_have_text("membership_type")
    page.get_by_label("Use the selected path for").select_option(label="Membership Type")
    page.get_by_role("button", name="Use this path").click()
    expect(page.get_by_label("Membership Type", exact=True)).to_have_value("membership_type")
    save_screenshot(page, SCREENSHOT)
    page.get_by_role("button", name="Save these paths").click()
    expect(page.get_by_text("The paths are saved.")).to_be_visible()

    system = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == SLUG))
    db.session.refresh(system)
    assert system.param("membership_type").path == "membership_type"
    # Nobody was signed in or created: the only account is still the manager's.
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1
