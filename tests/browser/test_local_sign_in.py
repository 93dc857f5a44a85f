"""Local sign-in through the real form, and the managers' User Authentication list."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.accounts import MANAGER_PASSWORD, MEMBER_PASSWORD
from tests.support.browser import sign_in


@pytest.mark.browser
def test_manager_signs_in_and_sees_user_authentication(page: Page, live_server, manager) -> None:
    page.goto("/admin/")
    # Anonymous: the admin sends the browser to the sign-in form, remembering where it was going.
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email address").fill("manager@example.com")
    page.get_by_label("Password").fill(MANAGER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="User Authentication", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    nav = page.get_by_role("navigation", name="Administration")
    expect(nav.get_by_role("link", name="User Authentication")).to_be_visible()


@pytest.mark.browser
def test_admin_list_shows_saved_systems(page: Page, live_server, manager, create_auth_system):
    create_auth_system(name="Example IdP", login_mode="local_and_remote")
    sign_in(page, "manager@example.com", MANAGER_PASSWORD)
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="User Authentication", level=1)).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Example IdP")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("OAuth 2.0")
    expect(row).to_contain_text("Local and Remote Logins")


@pytest.mark.browser
def test_wrong_password_is_refused_beside_the_field(page: Page, live_server, manager) -> None:
    sign_in(page, "manager@example.com", "not-the-password")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_text("The email address or password is not correct.")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


@pytest.mark.browser
def test_member_cannot_open_the_admin(page: Page, live_server, member) -> None:
    sign_in(page, "member@example.com", MEMBER_PASSWORD)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    response = page.goto("/admin/auth-systems")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


@pytest.mark.browser
def test_sign_out_ends_the_session(page: Page, live_server, member) -> None:
    sign_in(page, "member@example.com", MEMBER_PASSWORD)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in").first).to_be_visible()
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login"))
