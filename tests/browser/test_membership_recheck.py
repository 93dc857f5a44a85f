"""Issue 9, item 1: the lapsed member's story, in a browser.

Gil signs in through the loopback OpenID provider and sees the gold recording; the provider
marks him Lapsed and drops GOLD; once the system's re-check interval has passed, his next
page no longer shows it, although he never signed out. The sessions' clock is moved instead
of waiting a quarter of an hour.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from portal.auth import sessions
from portal.devidp import OIDCProvider
from portal.extensions import db
from portal.models import AuthSystem

# The Member Center provider and system of the groups story (fixtures ``idp``, ``system``).
from tests.browser.test_groups_content import idp, sign_in_with_sso, system  # noqa: F401

START = 1_800_000_000


@pytest.mark.browser
def test_a_lapsed_member_loses_the_recording_without_signing_out(
    page: Page, live_server, monkeypatch, request
) -> None:
    """Signed in, Gil sees the gold recording; after the provider marks him Lapsed and the
    15-minute re-check passes, reloading the Library no longer shows it, and he is still in."""
    provider: OIDCProvider = request.getfixturevalue("idp")
    saved: AuthSystem = request.getfixturevalue("system")
    clock = {"now": float(START)}
    monkeypatch.setattr(sessions, "now", lambda: clock["now"])
    saved.recheck_minutes = 15
    db.session.commit()
    sign_in_with_sso(page, provider)
    expect(page).to_have_url(live_server.url_for("/library"))
    recordings = page.locator("section#recording")
    expect(recordings.get_by_role("link", name="Gold masterclass")).to_be_visible()

    provider.members.update("gil", membership_status="Lapsed", groups=[])
    clock["now"] += 10 * 60
    page.reload()
    expect(recordings.get_by_role("link", name="Gold masterclass")).to_be_visible()
    clock["now"] += 6 * 60
    page.reload()

    expect(page).to_have_url(re.compile(r"/library$"))
    expect(recordings.get_by_role("link", name="Gold masterclass")).to_have_count(0)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
