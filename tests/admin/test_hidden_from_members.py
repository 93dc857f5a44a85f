"""A system its Alternate Login offers to members, but not Enabled, says that members can't see it.

DESIGN.md: the login page shows "the enabled systems' Alternate Login settings", so Enabled
decides; the manager is warned on save and on the list, in the form's own words.
"""

from __future__ import annotations

import io
import json

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem
from tests.support.accounts import AuthActions
from tests.support.auth_system_form import secret_bound_fields

NEW = "/admin/auth-systems/new"
LIST = "/admin/auth-systems"
HIDDEN = "Not shown to members on the sign-in page until Enabled is ticked"


def warning(mode_label: str) -> str:
    """Return the warning for a system in ``mode_label`` that is not Enabled."""
    return f"{HIDDEN} (Alternate Login is {mode_label}, but Enabled is not)."


def login_page_offers(client, auth: AuthActions, label: str) -> bool:
    """Tell whether an anonymous visitor sees the sign-in link labelled ``label``."""
    auth.logout()
    return label in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize(
    ("mode", "mode_label"),
    [("local_and_remote", "Local and Remote Logins"), ("remote_only", "Remote Login Only")],
)
def test_saving_a_public_mode_without_enabled_warns_on_save_and_on_the_list(
    manager_client, auth, form_data, mode, mode_label
):
    """Added with Alternate Login offering it but Enabled unticked: the warning, in those words."""
    form_data.update(login_mode=mode)
    form_data.pop("enabled")
    response = manager_client.post(NEW, data=form_data, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Authentication system Acme SSO added." in page
    assert (
        f'<p class="flash flash-warning" role="status">Acme SSO: {warning(mode_label)}</p>' in page
    )
    assert f'role="note" id="hidden-{db.session.scalar(sa.select(AuthSystem.id))}"' in page
    # The warning tells the truth: the public login page has no link until Enabled is ticked.
    assert not login_page_offers(manager_client, auth, "Sign in with Acme")


def test_no_warning_once_enabled_and_the_link_is_then_shown(manager_client, auth, form_data):
    """Enabled ticked: no warning, and members see the link."""
    response = manager_client.post(NEW, data=form_data, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Authentication system Acme SSO added." in page
    assert HIDDEN not in page
    assert login_page_offers(manager_client, auth, "Sign in with Acme")


def test_local_login_only_and_not_enabled_gives_no_warning(manager_client, form_data):
    """Local Login Only hides the link by choice: nothing to warn about."""
    form_data.update(login_mode="local_only")
    form_data.pop("enabled")
    page = manager_client.post(NEW, data=form_data, follow_redirects=True).get_data(as_text=True)
    assert "Authentication system Acme SSO added." in page
    assert HIDDEN not in page


def test_editing_warns_too(manager_client, create_auth_system, form_data):
    """Saving the edit form of a disabled Local and Remote Logins system warns."""
    system = create_auth_system("Acme SSO", enabled=False, **secret_bound_fields(form_data))
    form_data.pop("enabled")
    form_data["client_secret"] = ""
    response = manager_client.post(
        f"/admin/auth-systems/{system.id}/edit", data=form_data, follow_redirects=True
    )
    page = response.get_data(as_text=True)
    assert "Authentication system Acme SSO saved." in page
    assert f"Acme SSO: {warning('Local and Remote Logins')}" in page


def test_the_list_marks_only_the_hidden_systems(manager_client, create_auth_system):
    """On the list, the note sits on the row of each hidden system, and on no other."""
    hidden = create_auth_system("Hidden IdP", login_mode="local_and_remote", enabled=False)
    shown = create_auth_system("Shown IdP", login_mode="local_and_remote", enabled=True)
    managers_only = create_auth_system("Trial IdP", login_mode="local_only", enabled=False)
    page = manager_client.get(LIST).get_data(as_text=True)
    assert f'id="hidden-{hidden.id}">{warning("Local and Remote Logins")}</p>' in page
    assert f'id="hidden-{shown.id}"' not in page and f'id="hidden-{managers_only.id}"' not in page


def test_disabling_from_the_list_shows_the_note(manager_client, create_auth_system):
    """Disable on the list: the row then says members no longer see the system."""
    system = create_auth_system("Acme SSO", login_mode="remote_only", enabled=True)
    page = manager_client.post(
        f"/admin/auth-systems/{system.id}/disable", follow_redirects=True
    ).get_data(as_text=True)
    assert "Authentication system Acme SSO disabled." in page
    assert f'id="hidden-{system.id}">{warning("Remote Login Only")}</p>' in page


def test_importing_a_hidden_system_warns(manager_client):
    """An imported system that members won't see says so on the page the import lands on."""
    document = {
        "portal_export": 1,
        "auth_system": {
            "type": "oauth2",
            "name": "Imported IdP",
            "client_id": "c",
            "login_url": "https://idp.example.com/authorize?state=%State%",
            "token_url": "https://idp.example.com/token",
            "login_label": "Sign in with Imported",
            "login_mode": "local_and_remote",
            "enabled": False,
        },
    }
    upload = (io.BytesIO(json.dumps(document).encode()), "imported.json")
    response = manager_client.post(
        "/admin/auth-systems/import",
        data={"file": upload, "client_secret": "s3cret"},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "Authentication system Imported IdP imported." in page
    assert f"Imported IdP: {warning('Local and Remote Logins')}" in page
