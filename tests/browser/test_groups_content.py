"""Issue 4, item 7: the provider's groups decide what a member sees in the Library.

A member whose provider says GOLD sees the gold-only recording and not the silver one; once
the provider drops GOLD, the next sign-in hides it. Portal and the loopback OpenID Connect
provider both run on 127.0.0.1; rules and content are saved through the services.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from portal.devidp import Member, OIDCProvider
from portal.extensions import db
from portal.models import AuthSystem, ContentItem, MemberGroup
from portal.models.content import VISIBILITY_GROUPS
from portal.services.group_mapping import add_rule
from tests.support.browser import running_oidc_provider
from tests.support.providers import oidc_connection

CLIENT_ID = "portal-groups"
CLIENT_SECRET = "groups-secret+/="
SLUG = "member-center"
LABEL = "Sign in with the Member Center"
PASSWORD = "gil-password-1"


@pytest.fixture
def idp(live_server) -> Iterator[OIDCProvider]:
    """A loopback provider with Gil, a Gold member with a complete profile."""
    gil = Member(
        username="gil",
        password=PASSWORD,
        email="gil@example.org",
        given_name="Gil",
        family_name="Grant",
        membership_status="Active",
        membership_type="Professional",
        groups=["GOLD"],
    )
    with running_oidc_provider(live_server, SLUG, CLIENT_ID, CLIENT_SECRET, [gil]) as provider:
        yield provider


@pytest.fixture
def system(idp: OIDCProvider, create_auth_system) -> AuthSystem:
    """The Member Center system, with its Groups path and a GOLD -> Gold members rule."""
    system = create_auth_system(
        name="Member Center",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        **oidc_connection(idp),
        login_label=LABEL,
        login_mode="local_and_remote",
        enabled=True,
        params={
            "user_id": {"path": "sub"},
            "username": {"path": "preferred_username"},
            "email": {"path": "email"},
            "first_name": {"path": "given_name"},
            "last_name": {"path": "family_name"},
            "groups": {"path": "groups"},
        },
    )
    gold = MemberGroup(name="Gold members", name_key="gold members", description="")
    silver = MemberGroup(name="Silver members", name_key="silver members", description="")
    db.session.add_all([gold, silver])
    db.session.commit()
    add_rule(system, "groups_contains", "gold", gold.id)
    for title, group in (("Gold masterclass", gold), ("Silver workshop", silver)):
        db.session.add(
            ContentItem(
                title=title,
                kind="recording",
                url="https://video.example.com/watch/1",
                visibility=VISIBILITY_GROUPS,
                groups=[group],
            )
        )
    db.session.commit()
    return system


def sign_in_with_sso(page: Page, idp: OIDCProvider) -> None:
    """Open the Library anonymously, sign in at the provider, and come back to it."""
    page.goto("/library")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_role("link", name=LABEL).click()
    expect(page).to_have_url(re.compile("^" + re.escape(idp.authorize_url) + r"\?"))
    page.get_by_label("Username").fill("gil")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.browser
def test_groups_from_the_provider_show_and_then_hide_library_items(
    page: Page, live_server, idp: OIDCProvider, system: AuthSystem
) -> None:
    """GOLD shows the gold recording only; once the provider drops GOLD, sign-in hides it."""
    sign_in_with_sso(page, idp)
    expect(page).to_have_url(live_server.url_for("/library"))
    recordings = page.locator("section#recording")
    expect(recordings.get_by_role("link", name="Gold masterclass")).to_be_visible()
    expect(recordings.get_by_role("link", name="Silver workshop")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    idp.members.update("gil", groups=["SILVER-PENDING"])
    sign_in_with_sso(page, idp)

    expect(page).to_have_url(live_server.url_for("/library"))
    expect(page.get_by_role("heading", name="Library")).to_be_visible()
    expect(page.get_by_role("link", name="Gold masterclass")).to_have_count(0)
    expect(recordings.get_by_text("Nothing here for you yet.")).to_be_visible()
