"""A new system requires what the webcast platform's document calls the minimum fields.

The document (seeds/000_...txt, "Minimum Required Fields") names userId, firstName, lastName
and email; a system added from the defaults marks Email Address, First Name and Last Name
"Provider must supply this value" (User ID is always required). Systems already saved keep
their options.
"""

from __future__ import annotations

import pytest

from portal.extensions import db
from portal.models import AuthSystem, Identity, User
from portal.services.auth_systems import get_system_by_slug
from tests.support.pages import as_post, form_values, parse_page
from tests.support.providers import CLIENT_ID, CLIENT_SECRET, oidc_connection
from tests.support.rows import users_and_identities

NEW = "/admin/auth-systems/new"
MUST = "Provider must supply this value"
UPGRADE = "User can upgrade from this field"


def add_through_the_form(manager_client, auth, oidc) -> AuthSystem:
    """Add the loopback provider's system on the Add form, keeping every default it shows."""
    db.session.delete(oidc.system)
    db.session.commit()
    shown = form_values(manager_client.get(NEW).get_data(as_text=True))
    shown.update(
        name="Loopback OIDC",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        login_label="Sign in with Loopback OIDC",
        login_mode="local_and_remote",
        enabled=True,
        **oidc_connection(oidc.idp),
    )
    response = manager_client.post(NEW, data=as_post(shown))
    assert response.status_code == 302, response.get_data(as_text=True)
    auth.logout()
    oidc.system = get_system_by_slug("loopback-oidc")
    return oidc.system


def test_the_add_form_ticks_must_supply_on_email_and_names(manager_client):
    """Email Address, First Name and Last Name start as "must supply"; nothing else does."""
    parser = parse_page(manager_client.get(NEW).get_data(as_text=True))
    for row in ("Email Address", "First Name", "Last Name"):
        assert "checked" in parser.control_for(f"{MUST} ({row})"), row
    assert "checked" not in parser.control_for(f"{MUST} (Username)")
    for row in ("Email Address", "Username"):
        assert "checked" not in parser.control_for(f"{UPGRADE} ({row})"), row


def test_the_add_form_explains_the_defaults(manager_client):
    """The help names the fields ticked by default and what unticking one does."""
    page = manager_client.get(NEW).get_data(as_text=True)
    assert f"<em>{MUST}</em> ticked on Email Address, First Name and Last Name" in page
    assert "Untick one to let members fill it in once" in page


@pytest.mark.parametrize(
    ("claim", "label"),
    [("email", "Email Address"), ("given_name", "First Name"), ("family_name", "Last Name")],
)
def test_a_new_system_refuses_a_sign_in_missing_a_minimum_field(
    manager_client, auth, oidc, sso, claim, label
):
    """The provider leaves one out: the failure page names it, with a reference; nothing saved."""
    add_through_the_form(manager_client, auth, oidc)
    users_before = users_and_identities()
    oidc.idp.members.update("jdoe", **{claim: None})
    response = sso.sign_in(oidc)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f"did not supply your {label}" in page
    assert "Reference" in page
    assert users_and_identities() == users_before  # the manager only: no member, no binding


def test_a_new_system_signs_in_a_full_profile_and_owns_those_fields(
    manager_client, auth, oidc, sso, client
):
    """All four supplied: only the unmapped Username is asked; names and email are read-only."""
    add_through_the_form(manager_client, auth, oidc)
    response = sso.sign_in(oidc)
    assert response.status_code == 302 and response.headers["Location"] == "/complete-profile"
    page = client.get("/complete-profile").get_data(as_text=True)
    assert 'name="username"' in page
    for name in ("email", "first_name", "last_name"):
        assert f'name="{name}"' not in page, name
    assert client.post("/complete-profile", data={"username": "jane"}).status_code == 302
    identity = db.session.scalar(db.select(Identity))
    user = db.session.get(User, identity.user_id)
    assert (user.email, user.first_name, user.last_name) == ("jane.doe@example.org", "Jane", "Doe")
    page = client.get("/account").get_data(as_text=True)
    assert "Managed by your identity provider." in page
    for name in ("email", "first_name", "last_name"):
        assert f'name="{name}"' not in page, name


def test_a_saved_system_keeps_its_options(manager_client, oidc, sso, auth):
    """Saved without "must supply": still so on its edit form, and a gap is asked for later."""
    page = manager_client.get(f"/admin/auth-systems/{oidc.system.id}/edit").get_data(as_text=True)
    parser = parse_page(page)
    for row in ("Email Address", "First Name", "Last Name"):
        assert "checked" not in parser.control_for(f"{MUST} ({row})"), row
    auth.logout()
    oidc.idp.members.update("jdoe", family_name=None)
    response = sso.sign_in(oidc)
    assert response.headers["Location"] == "/complete-profile"
