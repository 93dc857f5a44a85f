"""Issue 2, item 11: a community manager adds an authentication system in a real browser.

Every field is found by its visible label, as DESIGN.md names it. ``exact=True`` where a
label is contained in another one ("Name" in "Username", "Alternate Login" in
"Alternate Login Label", "Email Address" in its row's option labels).
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.extensions import db
from portal.models import AuthSystem
from tests.support.accounts import MANAGER_PASSWORD
from tests.support.browser import ROOT, save_screenshot

SCREENSHOT = ROOT / "docs" / "screenshots" / "admin-form.png"
SECRET = 'a+b/c=&d"e'
LOGIN_URL = (
    "https://idp.example.com/authorize?response_type=code&client_id=%ClientID%"
    "&redirect_uri=%RedirectURL%&scope=%Scope%&state=%State%&nonce=%Nonce%"
)


def open_new_system_form(page: Page) -> None:
    """Sign in as the manager through the real form and open the empty system form."""
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email address").fill("manager@example.com")
    page.get_by_label("Password").fill(MANAGER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Administration").get_by_role(
        "link", name="User Authentication"
    ).click()
    expect(page.get_by_role("heading", name="User Authentication", level=1)).to_be_visible()
    page.get_by_role("link", name="Add a New Authentication System").click()
    expect(
        page.get_by_role("heading", name="Add a New Authentication System", level=1)
    ).to_be_visible()


def take_form_screenshot(page: Page, copy_button) -> None:
    """Screenshot the filled form for the README (docs/screenshots/admin-form.png)."""
    expect(copy_button).to_have_text("Copy")  # back from "Copied"
    page.evaluate("document.activeElement && document.activeElement.blur()")
    save_screenshot(page, SCREENSHOT)


def profile_row(page: Page, label: str):
    """The fieldset (role group) of one profile parameter row."""
    return page.get_by_role("group", name=label, exact=True)


@pytest.mark.browser
def test_manager_adds_an_authentication_system_by_its_labels(
    page: Page, context, live_server, manager, create_team
) -> None:
    create_team("New Members")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    open_new_system_form(page)

    expect(page.get_by_label("Type", exact=True)).to_have_value("oauth2")
    expect(page.get_by_label("Type", exact=True).locator("option:checked")).to_have_text(
        "OAuth 2.0"
    )
    page.get_by_label("Name", exact=True).fill("Acme Members")

    # The Redirect URL is generated from the Name, read-only, on the server's real base URL.
    redirect = page.get_by_label("Redirect URL")
    expected_redirect = f"{live_server.url}/sso/acme-members/callback"
    expect(redirect).to_have_value(expected_redirect)
    expect(redirect).to_have_value(re.compile(r"/sso/acme-members/callback$"))
    expect(redirect).not_to_be_editable()
    # Each generated address has its own Copy button (the button beside the address).
    copy = page.locator('button[data-copy-target="redirect_url"]')
    expect(copy).to_be_visible()
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == expected_redirect
    # Beside it, the Sign-in Initiation URL, generated and copied the same way.
    initiate = page.get_by_label("Sign-in Initiation URL")
    expected_initiate = f"{live_server.url}/sso/acme-members/initiate"
    expect(initiate).to_have_value(expected_initiate)
    expect(initiate).not_to_be_editable()
    copy_initiate = page.locator('button[data-copy-target="initiate_url"]')
    copy_initiate.click()
    expect(copy_initiate).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == expected_initiate

    page.get_by_label("Client ID").fill("acme-portal")
    page.get_by_label("Client Secret").fill(SECRET)
    page.get_by_label("Identity Provider Login URL").fill(LOGIN_URL)
    page.get_by_label("Token API URL").fill("https://idp.example.com/oauth/token")
    page.get_by_label("Token API Headers").fill("Accept: application/json")
    page.get_by_label("Token API Post Body").fill(
        "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
        "&client_id=%ClientID%&client_secret=%ClientSecret%"
    )
    expect(page.get_by_label("Access Token Path")).to_have_value("access_token")
    page.get_by_label("Profile API URL").fill("https://idp.example.com/api/me")
    page.get_by_label("Profile API Headers").fill("Authorization: Bearer %Token%")
    page.get_by_label("Alternate Logout URL").fill(
        "https://idp.example.com/logout?return_to=%ReturnToURL%"
    )
    page.get_by_label("Alternate Profile Edit URL").fill(
        "https://idp.example.com/profile?return_to=%ReturnToURL%"
    )
    page.get_by_label("Alternate Login Label").fill("Sign in with Acme")
    page.get_by_label("Alternate Login", exact=True).select_option(label="Local and Remote Logins")
    page.get_by_label("Onboarding Team").select_option(label="New Members")
    page.get_by_label("Enabled").check()

    profile_row(page, "User ID").get_by_label("User ID", exact=True).fill("id")
    profile_row(page, "Username").get_by_label("Username", exact=True).fill("login")
    email = profile_row(page, "Email Address")
    email.get_by_label("Email Address", exact=True).fill("emails[?primary].value | [0]")
    email.get_by_label("User can upgrade from this field").check()
    email.get_by_label("Provider must supply this value").check()
    profile_row(page, "First Name").get_by_label("First Name", exact=True).fill("name.given")
    profile_row(page, "Last Name").get_by_label("Last Name", exact=True).fill("name.family")
    profile_row(page, "Membership Status").get_by_label("Membership Status").fill("status")
    profile_row(page, "Membership Type").get_by_label("Membership Type").fill("type")
    profile_row(page, "Groups").get_by_label("Groups").fill("groups[].name")
    # Only the first five rows take the options.
    expect(
        profile_row(page, "Groups").get_by_label("User can upgrade from this field")
    ).to_have_count(0)

    take_form_screenshot(page, copy)

    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("heading", name="User Authentication", level=1)).to_be_visible()
    expect(page.get_by_text("Authentication system Acme Members added.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Acme Members")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("OAuth 2.0")
    expect(row).to_contain_text("Yes")
    expect(row).to_contain_text("Local and Remote Logins")
    expect(row).to_contain_text(expected_redirect)

    system = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == "acme-members"))
    assert system is not None
    assert system.client_id == "acme-portal" and system.enabled
    assert system.onboarding_team is not None and system.onboarding_team.name == "New Members"
    assert SECRET not in system.client_secret_encrypted
    params = {p.field: p for p in system.params}
    assert params["user_id"].path == "id"
    assert params["email"].path == "emails[?primary].value | [0]"
    assert params["email"].can_upgrade and params["email"].must_supply
    assert params["groups"].path == "groups[].name"
    db.session.remove()

    # Edit page: the secret is write-only, never rendered back.
    row.get_by_role("link", name="Edit Acme Members").click()
    expect(page.get_by_label("Name", exact=True)).to_have_value("Acme Members")
    expect(page.get_by_label("Client Secret")).to_have_value("")
    assert SECRET not in page.content()
    assert "a+b/c=&amp;d" not in page.content()


@pytest.mark.browser
def test_invalid_values_are_shown_beside_their_fields(page: Page, live_server, manager) -> None:
    open_new_system_form(page)
    page.get_by_label("Name", exact=True).fill("Broken IdP")
    page.get_by_label("Client ID").fill("broken")
    page.get_by_label("Client Secret").fill(SECRET)
    # %State% is required in the login URL, and this JMESPath does not parse.
    page.get_by_label("Identity Provider Login URL").fill(
        "https://idp.example.com/authorize?client_id=%ClientID%"
    )
    page.get_by_label("Token API URL").fill("https://idp.example.com/token")
    profile_row(page, "User ID").get_by_label("User ID", exact=True).fill("sub")
    email_path = profile_row(page, "Email Address").get_by_label("Email Address", exact=True)
    email_path.fill("emails[?primary")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    # Each message is beside its field and is the field's accessible description.
    login_url = page.get_by_label("Identity Provider Login URL")
    expect(login_url).to_have_attribute("aria-invalid", "true")
    expect(login_url).to_have_accessible_description(re.compile(r"%State%"))
    error_id = login_url.get_attribute("aria-describedby").split()[-1]
    login_error = page.locator(f"[id='{error_id}']")
    expect(login_error).to_be_visible()
    expect(login_error).to_contain_text("%State%")
    _assert_beside(login_url.bounding_box(), login_error.bounding_box())

    expect(email_path).to_have_attribute("aria-invalid", "true")
    email_error = page.locator(f"[id='{email_path.get_attribute('aria-describedby')}']")
    expect(email_error).to_be_visible()
    expect(email_error).not_to_be_empty()
    expect(email_path).to_have_accessible_description(email_error.inner_text())
    _assert_beside(email_path.bounding_box(), email_error.bounding_box())

    # What was typed is kept, except the write-only secret; nothing was saved.
    expect(page.get_by_label("Name", exact=True)).to_have_value("Broken IdP")
    expect(email_path).to_have_value("emails[?primary")
    expect(page.get_by_label("Client Secret")).to_have_value("")
    assert SECRET not in page.content()
    expect(page.get_by_label("Redirect URL")).to_have_value(
        f"{live_server.url}/sso/broken-idp/callback"
    )
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem)) == 0
    db.session.remove()


def _assert_beside(field_box, error_box, max_gap: float = 80) -> None:
    """The error is right under (or beside) its field, not somewhere else on the page."""
    assert field_box and error_box
    vertical_gap = error_box["y"] - (field_box["y"] + field_box["height"])
    horizontal_gap = error_box["x"] - (field_box["x"] + field_box["width"])
    below = -1 <= vertical_gap <= max_gap and abs(error_box["x"] - field_box["x"]) <= max_gap
    right = -1 <= horizontal_gap <= max_gap and abs(error_box["y"] - field_box["y"]) <= max_gap
    assert below or right, f"error at {error_box} is not beside its field at {field_box}"
