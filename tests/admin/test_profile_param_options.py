"""The profile parameters' options are offered, saved and read only where they do something."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuditEvent, AuthSystem
from portal.services.auth_systems import auth_system_data, create_auth_system
from portal.services.transfer import export_auth_system
from portal.sso.profile_fields import FIELD_OPTIONS, PARAM_OPTIONS, PROFILE_FIELDS
from tests.support.auth_system_form import secret_bound_fields
from tests.support.pages import parse_page
from tests.support.providers import reconfigure
from tests.support.rows import users_and_identities

NEW = "/admin/auth-systems/new"
UPGRADE = PARAM_OPTIONS["can_upgrade"]
MUST = PARAM_OPTIONS["must_supply"]

#: Options the form must not offer: upgrade matches an account only on a unique value (Email
#: Address, Username), and User ID is always required whatever the box says.
NOT_OFFERED = [
    (UPGRADE, "User ID"),
    (UPGRADE, "First Name"),
    (UPGRADE, "Last Name"),
    (MUST, "User ID"),
    (UPGRADE, "Membership Status"),
    (MUST, "Membership Type"),
    (UPGRADE, "Groups"),
]
OFFERED = [
    (UPGRADE, "Username"),
    (UPGRADE, "Email Address"),
    (MUST, "Username"),
    (MUST, "Email Address"),
    (MUST, "First Name"),
    (MUST, "Last Name"),
]
#: A crafted POST ticking every option no row offers.
CRAFTED = {
    f"param_{key}_{option}": "y"
    for key, _label in PROFILE_FIELDS
    for option in PARAM_OPTIONS
    if option not in FIELD_OPTIONS[key]
}


def flags(system: AuthSystem) -> dict[str, tuple[bool, bool]]:
    """Return each saved row's (can_upgrade, must_supply), as stored."""
    db.session.refresh(system)
    return {row.field: (row.can_upgrade, row.must_supply) for row in system.params}


def audited_fields() -> list[str]:
    """Return every field named by the audit log's configuration changes."""
    fields = []
    for event in db.session.scalars(sa.select(AuditEvent)):
        for change in (event.details or {}).get("changes", []):
            fields.append(change["field"])
    return fields


@pytest.mark.parametrize("page", [NEW, f"{NEW}?preset=generic-oidc"])
def test_form_offers_each_option_only_on_the_rows_where_it_does_something(manager_client, page):
    """No "User can upgrade" on User ID or the names, no "must supply" box on User ID."""
    parser = parse_page(manager_client.get(page).get_data(as_text=True))
    labels = parser.label_texts()
    for option, row in NOT_OFFERED:
        assert f"{option} ({row})" not in labels
    for option, row in OFFERED:
        assert parser.control_for(f"{option} ({row})")["type"] == "checkbox"


def test_help_says_where_upgrade_applies_and_that_user_id_is_always_required(manager_client):
    """The Profile parameters' help names the rows that offer upgrading, from the table."""
    page = manager_client.get(NEW).get_data(as_text=True)
    assert f"<em>{UPGRADE}</em> is offered on Username and Email Address only" in page
    assert "User ID is the provider's stable unique identifier and is always required." in page


def test_crafted_post_of_options_no_row_offers_saves_none_of_them(manager_client, form_data):
    """Ticks the form never shows are not read: the system saves with those options off."""
    response = manager_client.post(NEW, data={**form_data, **CRAFTED})
    assert response.status_code == 302
    system = db.session.scalar(sa.select(AuthSystem))
    saved = flags(system)
    assert saved["user_id"] == (False, False)
    assert saved["first_name"] == (False, False) and saved["last_name"] == (False, False)
    assert saved["membership_status"] == (False, False) and saved["groups"] == (False, False)
    assert saved["email"] == (True, True)  # what form_data ticks, where it is offered
    assert not any(
        "user_id.can_upgrade" in f or "first_name.can_upgrade" in f for f in audited_fields()
    )


def test_crafted_post_on_edit_leaves_the_saved_options_unchanged(
    manager_client, create_auth_system, form_data
):
    """Editing with crafted ticks changes nothing and audits nothing about them."""
    system = create_auth_system("Acme SSO", **secret_bound_fields(form_data))
    post = {**form_data, **CRAFTED, "client_secret": ""}
    response = manager_client.post(f"/admin/auth-systems/{system.id}/edit", data=post)
    assert response.status_code == 302
    saved = flags(system)
    assert saved["user_id"] == (False, False) and saved["first_name"] == (False, False)
    assert not [f for f in audited_fields() if f.startswith("params.user_id.")]
    assert not [f for f in audited_fields() if f == "params.first_name.can_upgrade"]


def test_service_and_import_never_store_an_option_a_field_does_not_offer(app):
    """The same rule holds below the form: the service drops options no row offers."""
    data = {
        "name": "Service Made",
        "client_id": "c",
        "client_secret": "s",
        "token_url": "https://idp.example.com/token",
        "params": {
            "user_id": {"path": "sub", "can_upgrade": True, "must_supply": True},
            "first_name": {"path": "given_name", "can_upgrade": True, "must_supply": True},
            "groups": {"path": "groups", "must_supply": True},
        },
    }
    system = create_auth_system(data)
    saved = flags(system)
    assert saved["user_id"] == (False, False)
    assert saved["first_name"] == (False, True)
    assert saved["groups"] == (False, False)


def test_an_old_export_with_options_now_not_offered_still_imports(manager_client, create_team):
    """Files exported before carry user_id.must_supply and names' can_upgrade: read, ignored."""
    from portal.services.transfer import import_auth_system, parse_export

    params = {key: {"path": key} for key, _ in PROFILE_FIELDS}
    for key in ("user_id", "username", "email", "first_name", "last_name"):
        params[key].update(can_upgrade=True, must_supply=True)
    document = {
        "portal_export": 1,
        "auth_system": {
            "type": "oauth2",
            "name": "Old Export",
            "client_id": "c",
            "login_url": "https://idp.example.com/authorize?state=%State%",
            "token_url": "https://idp.example.com/token",
            "params": params,
        },
    }
    system = import_auth_system(parse_export(json.dumps(document).encode()), client_secret="s")
    saved = flags(system)
    assert saved["user_id"] == (False, False)
    assert saved["first_name"] == (False, True) and saved["last_name"] == (False, True)
    assert saved["email"] == (True, True) and saved["username"] == (True, True)


# -- rows saved before the options were narrowed ----------------------------------------------


@pytest.fixture
def stale_system(create_auth_system, form_data):
    """A system whose rows still hold options their fields no longer offer."""
    return create_auth_system(
        "Acme SSO",
        **secret_bound_fields(form_data),
        params={
            "user_id": {"path": "sub", "can_upgrade": True, "must_supply": True},
            "email": {"path": "email", "must_supply": True},
            "first_name": {"path": "given_name", "can_upgrade": True},
            "last_name": {"path": "family_name", "can_upgrade": True, "must_supply": True},
        },
    )


def test_stale_options_read_as_off_in_the_form_and_the_export(manager_client, stale_system):
    """A stale flag shows nowhere: not on the edit form, not in the export."""
    page = manager_client.get(f"/admin/auth-systems/{stale_system.id}/edit").get_data(as_text=True)
    labels = parse_page(page).label_texts()
    assert f"{UPGRADE} (First Name)" not in labels and f"{UPGRADE} (User ID)" not in labels
    assert "checked" in parse_page(page).control_for(f"{MUST} (Last Name)")
    data = auth_system_data(stale_system)["params"]
    assert data["first_name"]["can_upgrade"] is False and data["user_id"]["must_supply"] is False
    exported = export_auth_system(stale_system)["auth_system"]["params"]
    assert exported["user_id"] == {"path": "sub"}
    assert exported["first_name"] == {"path": "given_name", "must_supply": False}
    assert exported["last_name"] == {"path": "family_name", "must_supply": True}


def test_saving_a_stale_system_clears_the_flags_without_an_audited_change(
    manager_client, stale_system, form_data
):
    """The next save writes them off; the audit log records no change the manager didn't make."""
    page = manager_client.get(f"/admin/auth-systems/{stale_system.id}/edit").get_data(as_text=True)
    assert "checked" in parse_page(page).control_for(f"{MUST} (Last Name)")
    post = {
        **form_data,
        "client_secret": "",
        "param_email_can_upgrade": "",
        "param_last_name_must_supply": "y",
    }
    post = {k: v for k, v in post.items() if v != ""}
    response = manager_client.post(f"/admin/auth-systems/{stale_system.id}/edit", data=post)
    assert response.status_code == 302
    saved = flags(stale_system)
    assert saved["user_id"] == (False, False)
    assert saved["first_name"] == (False, False)
    assert saved["last_name"] == (False, True)
    changed = audited_fields()
    assert not [f for f in changed if f.startswith(("params.user_id.", "params.first_name.can"))]


def test_stale_options_on_user_id_and_names_do_nothing_at_sign_in(
    oidc, sso, create_user, fresh_provider_caches
):
    """Rows saved with "upgrade" on User ID and the names never link an account by name."""
    local = create_user(
        email="someone@example.org", username="someone", first_name="Jane", last_name="Doe"
    )
    reconfigure(
        oidc,
        params={
            "user_id": {"can_upgrade": True, "must_supply": True},
            "first_name": {"can_upgrade": True},
            "last_name": {"can_upgrade": True},
        },
    )
    response = sso.sign_in(oidc)
    assert response.status_code == 302
    assert users_and_identities() == (2, 1)
    db.session.refresh(local)
    assert local.identities == []
