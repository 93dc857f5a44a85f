"""Issue 11, part 3: Personify SSO in a real browser, from the Personify360 preset to a member
signed in through the loopback Personify (its login page, SOAP services and Data Services).

The manager picks *Personify360* in *Start from*, sees only the Personify SSO fields, fills in
what the preset marks and the vendor's settings, and saves; a member then signs in with the
SSO link and lands back on Portal signed in, with the role Personify gives mapped to a group.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.devidp import PersonifyProvider
from portal.devidp.personify import DEFAULT_VENDOR_PASSWORD
from portal.extensions import db
from portal.models import AuthSystem, GroupMembership, Identity, MemberGroup, User
from portal.services.group_mapping import add_rule
from tests.browser.test_admin_form import open_new_system_form
from tests.support.providers import jane

VENDOR_BLOCK = "A39321266122A223EB1B3A23669721B2"
LABEL = "Sign in with Personify"


@pytest.fixture
def personify(live_server) -> Iterator[PersonifyProvider]:
    """A loopback Personify with Jane (password pw-jane, role WEBINARS)."""
    with PersonifyProvider(
        members=[jane()], vendor_password=DEFAULT_VENDOR_PASSWORD, vendor_block=VENDOR_BLOCK
    ) as idp:
        yield idp


def fill_from_preset(page: Page, idp: PersonifyProvider) -> None:
    """Start from Personify360 and complete the form as a manager would."""
    page.get_by_label("Start from").select_option(label="Personify360")
    page.get_by_role("button", name="Use this preset").click()
    expect(page.get_by_label("Type", exact=True)).to_have_value("personify")
    # Only the chosen Type's fields are shown.
    expect(page.get_by_label("Client ID", exact=True)).to_be_hidden()
    expect(page.get_by_label("Identity Provider Login URL")).to_be_hidden()
    expect(page.get_by_label("SSO Login URL", exact=True)).to_be_visible()
    for label in (
        "SSO Login URL",
        "SSO Web Service URL",
        "IMS Web Service URL",
        "Data Services URL",
    ):
        field = page.get_by_label(label, exact=True)
        field.fill(re.sub(r"https://\{[a-z-]+\}", idp.url, field.input_value()))
    page.get_by_label("Name", exact=True).fill("Personify")
    page.get_by_label("Vendor ID").fill(idp.vendor_id)
    page.get_by_label("Vendor Username").fill(idp.vendor_username)
    page.get_by_label("Vendor Password").fill(idp.vendor_password)
    page.get_by_label("Vendor Block").fill(idp.vendor_block)
    page.get_by_label("Data Services Username").fill(idp.data_services_username)
    page.get_by_label("Data Services Password").fill(idp.data_services_password)
    page.get_by_label("Alternate Login Label").fill(LABEL)
    page.get_by_label("Alternate Login", exact=True).select_option(label="Local and Remote Logins")
    page.get_by_label("Enabled").check()


@pytest.mark.browser
def test_manager_sets_up_personify_and_a_member_signs_in_through_it(
    page: Page, browser, live_server, manager, personify: PersonifyProvider
) -> None:
    open_new_system_form(page)
    fill_from_preset(page, personify)
    page.get_by_role("button", name="Save").last.click()
    expect(page.get_by_text("Authentication system Personify added.")).to_be_visible()
    system = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == "personify"))
    assert system is not None and system.type == "personify"
    assert personify.vendor_password not in (system.vendor_password_encrypted or "")
    webinars = MemberGroup(name="Webinars", name_key="webinars", description="")
    db.session.add(webinars)
    db.session.commit()
    add_rule(system, "groups_contains", "WEBINARS", webinars.id)
    db.session.remove()

    member = browser.new_context(base_url=live_server.url)
    try:
        tab = member.new_page()
        tab.goto("/login")
        tab.get_by_role("link", name=LABEL).click()
        expect(tab).to_have_url(re.compile("^" + re.escape(personify.login_url) + r"\?vi="))
        tab.get_by_label("Username").fill("jdoe")
        tab.get_by_label("Password").fill("pw-jane")
        tab.get_by_role("button", name="Sign in").click()
        expect(tab).to_have_url(live_server.url_for("/"))
        expect(tab.get_by_text("You are signed in as Jane Doe.")).to_be_visible()
        expect(tab.get_by_role("button", name="Sign out")).to_be_visible()
    finally:
        member.close()

    user = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    assert user is not None and user.password_hash is None
    identity = db.session.scalar(sa.select(Identity).where(Identity.user_id == user.id))
    assert identity.subject == f"{personify.master_id(personify.members.get('jdoe'))}|0"
    groups = db.session.scalars(
        sa.select(MemberGroup.name)
        .join(GroupMembership, GroupMembership.group_id == MemberGroup.id)
        .where(GroupMembership.user_id == user.id)
    )
    assert list(groups) == ["Webinars"]
    db.session.remove()
