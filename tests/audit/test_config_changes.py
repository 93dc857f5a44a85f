"""Configuration changes in the audit log: who changed which system, field by field."""

from __future__ import annotations

from portal.extensions import db
from portal.models import AuthSystem
from tests.support.auth_system_form import SECRET, secret_in
from tests.support.pages import as_post, form_values, screen_rows
from tests.support.rows import events, raw_audit_rows

NEW_SECRET = "Fresh-Secret-8Kp2+/=&'tail"


def _create(client, form_data) -> AuthSystem:
    resp = client.post("/admin/auth-systems/new", data=form_data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return db.session.query(AuthSystem).one()


def _edit(client, system: AuthSystem, **changes) -> None:
    url = f"/admin/auth-systems/{system.id}/edit"
    values = as_post(form_values(client.get(url).get_data(as_text=True)))
    for key, value in changes.items():
        if value is False:
            values.pop(key, None)
        else:
            values[key] = value
    resp = client.post(url, data=values)
    assert resp.status_code == 302, resp.get_data(as_text=True)


def test_update_records_exactly_the_changed_fields_with_before_and_after(
    manager_client, form_data, audit_page
):
    """Editing two fields and one profile option lists just those three, with labels."""
    system = _create(manager_client, form_data)
    _edit(
        manager_client,
        system,
        client_id="acme-client-2",
        # A new Client ID needs the secret typed again; the same secret is not a change.
        client_secret=SECRET,
        login_label="Sign in with Acme Corp",
        param_email_can_upgrade=False,
    )
    (event,) = events("system.updated")
    assert event.actor_label == "manager@example.com"
    assert event.auth_system_name == "Acme SSO"
    assert event.details["changes"] == [
        {"field": "client_id", "label": "Client ID", "old": "acme-client", "new": "acme-client-2"},
        {
            "field": "login_label",
            "label": "Alternate Login Label",
            "old": "Sign in with Acme",
            "new": "Sign in with Acme Corp",
        },
        {
            "field": "params.email.can_upgrade",
            "label": "Email Address: User can upgrade from this field",
            "old": "Yes",
            "new": "No",
        },
    ]
    (row,) = screen_rows(audit_page(kind="system.updated"))
    assert "System changed manager@example.com Acme SSO" in row
    assert "Client ID acme-client acme-client-2" in row
    assert "Email Address: User can upgrade from this field Yes No" in row


def test_profile_path_change_is_labelled_by_the_row(manager_client, form_data):
    """A changed profile path reads "<row> path" with the old and new paths."""
    system = _create(manager_client, form_data)
    _edit(manager_client, system, param_email_path="emails[0]")
    (event,) = events("system.updated")
    assert event.details["changes"] == [
        {
            "field": "params.email.path",
            "label": "Email Address path",
            "old": "email",
            "new": "emails[0]",
        }
    ]


def test_saving_without_changes_records_nothing(manager_client, form_data):
    """Saving the form untouched (blank secret) adds no "System changed" event."""
    system = _create(manager_client, form_data)
    _edit(manager_client, system)
    assert events("system.updated") == []


def test_new_secret_shows_as_changed_and_never_as_a_value(manager_client, form_data, audit_page):
    """A new Client Secret is "changed": no old/new values in the rows or on the screen."""
    system = _create(manager_client, form_data)
    _edit(manager_client, system, client_secret=NEW_SECRET)
    (event,) = events("system.updated")
    assert event.details["changes"] == [
        {"field": "client_secret", "label": "Client Secret", "changed": True}
    ]
    raw = raw_audit_rows()
    page = audit_page()
    for secret in (SECRET, NEW_SECRET):
        assert not secret_in(raw, secret), "a client secret is in the audit_events table"
        assert not secret_in(page, secret), "a client secret is on the audit screen"
    (row,) = screen_rows(audit_page(kind="system.updated"))
    assert "Client Secret changed" in row


def test_retyping_the_stored_secret_is_not_a_change(manager_client, form_data):
    """Typing the same Client Secret again records no change."""
    system = _create(manager_client, form_data)
    _edit(manager_client, system, client_secret=SECRET)
    assert events("system.updated") == []


def test_literal_credentials_in_headers_and_body_are_hidden(manager_client, form_data):
    """A credential typed into a header or the post body shows as [hidden]; placeholders stay."""
    system = _create(manager_client, form_data)
    _edit(
        manager_client,
        system,
        token_headers="Accept: application/json\nX-Api-Key: literal-key-123",
        token_body="grant_type=authorization_code&code=%Code%&client_secret=literal-pw-456",
        # A new token request needs the secret typed again; the same secret is not a change.
        client_secret=SECRET,
    )
    (event,) = events("system.updated")
    changes = {c["field"]: c for c in event.details["changes"]}
    assert changes["token_headers"]["new"] == "Accept: application/json\nX-Api-Key: [hidden]"
    assert changes["token_body"]["new"] == (
        "grant_type=authorization_code&code=%Code%&client_secret=[hidden]"
    )
    assert "literal-key-123" not in raw_audit_rows()
    assert "literal-pw-456" not in raw_audit_rows()


def test_creation_records_the_actor_and_settings_without_the_secret(
    manager_client, form_data, audit_page
):
    """Adding a system records who added it and its settings; the secret only as changed."""
    _create(manager_client, form_data)
    (event,) = events("system.created")
    assert event.actor_label == "manager@example.com"
    changes = {c["label"]: c for c in event.details["changes"]}
    assert changes["Name"]["new"] == "Acme SSO"
    assert changes["Client Secret"] == {
        "field": "client_secret",
        "label": "Client Secret",
        "changed": True,
    }
    assert not secret_in(raw_audit_rows())
    assert not secret_in(audit_page())
    (row,) = screen_rows(audit_page(kind="system.created"))
    assert row.startswith(row[:19]) and "System created manager@example.com Acme SSO" in row


def test_enable_disable_and_delete_are_recorded_with_the_actor(
    manager_client, form_data, audit_page
):
    """Disabling, enabling and deleting a system each appear with who did it."""
    system = _create(manager_client, form_data)
    system_id = system.id
    base = f"/admin/auth-systems/{system_id}"
    manager_client.post(f"{base}/disable")
    manager_client.post(f"{base}/disable")  # already off: not a change
    manager_client.post(f"{base}/enable")
    manager_client.post(f"{base}/delete")
    assert db.session.get(AuthSystem, system_id) is None
    kinds = [e.kind for e in events() if e.kind.startswith("system.")]
    assert kinds == ["system.created", "system.disabled", "system.enabled", "system.deleted"]
    assert {e.actor_label for e in events() if e.kind.startswith("system.")} == {
        "manager@example.com"
    }
    rows = screen_rows(audit_page(system=str(system_id)))
    assert [r.split(" manager@example.com")[0][20:] for r in rows] == [
        "System deleted",
        "System enabled",
        "System disabled",
        "System created",
    ]
    assert "0 member accounts were bound to it." in rows[0]
