"""Issue 11: Membes in a real browser, from the Membes preset to a member signed in through the
loopback Membes (its SSO login form, its GET token call, the member-details call).

The manager picks *Membes* in *Start from*, fills in what the preset marks (the website host,
the API host, the member-details path Membes gives out) and the credentials, and saves; a
member then signs in with the button on the sign-in page and lands back on Portal signed in,
with her Membes group mapped to a member group (Membes documents no username, so Portal asks
her for one on *Complete your profile*).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.devidp import MembesProvider
from portal.devidp.membes import MEMBER_DETAILS_PATH
from portal.extensions import db
from portal.models import AuthSystem, GroupMembership, MemberGroup, User
from portal.services.group_mapping import add_rule
from tests.browser.test_admin_form import open_new_system_form
from tests.support.providers import CLIENT_ID, CLIENT_SECRET, jane

LABEL = "Sign in with Membes"


@pytest.fixture
def membes(live_server) -> Iterator[MembesProvider]:
    """A loopback Membes with Jane (password pw-jane, group Webinars) that knows Portal."""
    with MembesProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[live_server.url_for("/sso/membes/callback")],
        members=[jane()],
    ) as idp:
        yield idp


def fill_from_preset(page: Page, idp: MembesProvider) -> None:
    """Start from Membes and complete what the preset marks, as a manager would."""
    page.get_by_label("Start from").select_option(label="Membes")
    page.get_by_role("button", name="Use this preset").click()
    expect(page.get_by_label("Token API Method")).to_have_value("GET")
    replacements = {
        "https://{your-membes-site}": idp.url,
        "https://api.membes.com.au": idp.url,
        "{member-details-path}": MEMBER_DETAILS_PATH,
    }
    for label in ("Identity Provider Login URL", "Token API URL", "Profile API URL"):
        field = page.get_by_label(label, exact=True)
        value = field.input_value()
        for marker, replacement in replacements.items():
            value = value.replace(marker, replacement)
        assert not re.search(r"\{[a-z-]+\}", value), value
        field.fill(value)
    page.get_by_label("Name", exact=True).fill("Membes")
    page.get_by_label("Client ID", exact=True).fill(CLIENT_ID)
    page.get_by_label("Client Secret", exact=True).fill(CLIENT_SECRET)
    page.get_by_label("Alternate Login Label").fill(LABEL)
    page.get_by_label("Alternate Login", exact=True).select_option(label="Local and Remote Logins")
    page.get_by_label("Enabled").check()


@pytest.mark.browser
def test_manager_sets_up_membes_and_a_member_signs_in_through_it(
    page: Page, browser, live_server, manager, membes: MembesProvider
) -> None:
    open_new_system_form(page)
    fill_from_preset(page, membes)
    page.get_by_role("button", name="Save").last.click()
    expect(page.get_by_text("Authentication system Membes added.")).to_be_visible()
    system = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == "membes"))
    assert system is not None
    webinars = MemberGroup(name="Webinars", name_key="webinars", description="")
    db.session.add(webinars)
    db.session.commit()
    add_rule(system, "groups_contains", "Webinars", webinars.id)
    db.session.remove()

    member = browser.new_context(base_url=live_server.url)
    try:
        tab = member.new_page()
        tab.goto("/login")
        tab.get_by_role("link", name=LABEL).click()
        expect(tab).to_have_url(re.compile("^" + re.escape(membes.authorize_url) + r"\?"))
        tab.get_by_label("Username").fill("jdoe")
        tab.get_by_label("Password").fill("pw-jane")
        tab.get_by_role("button", name="Sign in").click()
        # Membes documents no username: Portal asks for one, once.
        expect(tab.get_by_role("heading", name="Complete your profile")).to_be_visible()
        tab.get_by_label("Username").fill("jane.doe")
        tab.get_by_role("button", name="Save and continue").click()
        expect(tab).to_have_url(live_server.url_for("/"))
        expect(tab.get_by_text("You are signed in as Jane Doe.")).to_be_visible()
    finally:
        member.close()

    (token_call,) = membes.requests.all("token")
    assert token_call.method == "GET" and set(token_call.query) == {"code", "client_secret"}
    user = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    assert user is not None and user.password_hash is None and user.username == "jane.doe"
    groups = db.session.scalars(
        sa.select(MemberGroup.name)
        .join(GroupMembership, GroupMembership.group_id == MemberGroup.id)
        .where(GroupMembership.user_id == user.id)
    )
    assert list(groups) == ["Webinars"]
    db.session.remove()
