"""The pages work under the Content-Security-Policy: no violation, the scripts still run."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.accounts import MANAGER_PASSWORD, MEMBER_PASSWORD
from tests.support.browser import sign_in

#: Installed by Playwright outside the page's CSP: records every violation the page reports.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def watch(page: Page) -> list[str]:
    """Collect CSP violations reported by the page and console errors that mention the CSP."""
    found: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda msg: (
            found.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    return found


def violations(page: Page, console: list[str]) -> list[str]:
    return [*page.evaluate("window.__cspViolations || []"), *console]


@pytest.mark.browser
def test_manager_pages_raise_no_csp_violation(
    page: Page, live_server, manager, member, create_auth_system
) -> None:
    """Every admin page a manager opens loads its scripts and styles without a violation."""
    console = watch(page)
    system = create_auth_system(name="Example IdP", login_mode="local_and_remote")
    sign_in(page, "manager@example.com", MANAGER_PASSWORD)
    for path in [
        "/",
        "/admin/auth-systems",
        "/admin/auth-systems/new",
        f"/admin/auth-systems/{system.id}/edit",
        f"/admin/auth-systems/{system.id}/groups",
        "/admin/users",
        f"/admin/users/{member.id}",
        "/admin/groups",
        "/admin/content",
        "/admin/audit",
        "/account",
        "/library",
    ]:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert violations(page, console) == [], path
    # The stylesheet applied (a style-src violation would leave the page unstyled).
    assert page.evaluate("getComputedStyle(document.querySelector('.topbar')).display") in (
        "flex",
        "grid",
        "block",
    )


@pytest.mark.browser
def test_confirmation_script_runs_under_the_csp(page: Page, live_server, manager, member) -> None:
    """portal.js (a static file) still asks before disabling a user: dismissing keeps them."""
    console = watch(page)
    sign_in(page, "manager@example.com", MANAGER_PASSWORD)
    page.goto(f"/admin/users/{member.id}")
    questions: list[str] = []

    def dismiss(dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Disable sign-in").click()
    expect(page.get_by_role("button", name="Disable sign-in")).to_be_visible()
    assert questions and questions[0].startswith("Disable")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Disable sign-in").click()
    expect(page.get_by_text("is disabled and signed out everywhere")).to_be_visible()
    expect(page.get_by_role("button", name="Enable sign-in")).to_be_visible()
    assert violations(page, console) == []


@pytest.mark.browser
def test_member_signs_out_everywhere(page: Page, live_server, member, browser) -> None:
    """A member's second browser is signed out when they choose Sign out everywhere."""
    other = browser.new_context(base_url=live_server.url)
    try:
        laptop = other.new_page()
        sign_in(laptop, "member@example.com", MEMBER_PASSWORD)
        sign_in(page, "member@example.com", MEMBER_PASSWORD)
        page.goto("/account")
        page.get_by_role("button", name="Sign out everywhere").click()
        expect(page.get_by_text("You are signed out on every device and browser.")).to_be_visible()
        laptop.goto("/account")
        expect(laptop).to_have_url(re.compile(r"/login"))
    finally:
        other.close()
