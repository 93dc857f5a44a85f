"""The form's membership-during-a-session settings: re-check, grace period, Logoff API.

They live in the one field table, so the form, validation, audit, export and import treat
them as every other setting; these tests check what a manager sees of each.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem
from portal.services.settings_snapshot import compile_system
from portal.services.transfer import ImportInvalid, export_auth_system, import_auth_system
from tests.support.auth_system_form import SECRET
from tests.support.pages import as_post, errors_beside, form_values
from tests.support.rows import events

NEW = "/admin/auth-systems/new"


def _count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem)) or 0


def _refused(client, data: dict[str, Any], field_id: str, **changes: str) -> list[str]:
    resp = client.post(NEW, data={**data, **changes})
    assert resp.status_code == 200, "the form should have been refused"
    assert _count() == 0
    return errors_beside(resp.get_data(as_text=True), field_id)


@pytest.mark.parametrize("value", ["abc", "-5", "1.5", "10081", "99999999999"])
@pytest.mark.parametrize("field", ["recheck_minutes", "grace_minutes"])
def test_minutes_that_are_not_a_whole_number_in_range_are_refused(
    manager_client, form_data, field, value
):
    """Each minutes field takes a whole number from 0 to a week; anything else is named."""
    errors = _refused(manager_client, form_data, field, **{field: value})

    label = (
        "Re-check Membership Every (minutes)"
        if field == "recheck_minutes"
        else "Grace Period (minutes)"
    )
    assert errors == [f"{label} must be a whole number from 0 to 10080."]


@pytest.mark.parametrize(
    ("field", "template", "message"),
    [
        ("logoff_body", "token=%Code%", "%Code% is not available in the Logoff API Post Body."),
        ("logoff_url", "https://idp.acme.test/revoke?s=%State%", "%State% is not available"),
        ("logoff_headers", "Authorization Bearer x", "Name: value"),
        ("logoff_url", "ftp://idp.acme.test/revoke", "Logoff API URL"),
    ],
)
def test_a_logoff_api_the_engine_cannot_send_is_refused(
    manager_client, form_data, field, template, message
):
    """Placeholders the sign-out does not offer, bad header lines and non-http(s) addresses
    are named beside the Logoff API field; nothing is saved."""
    errors = _refused(manager_client, form_data, field, **{field: template})

    assert any(message in e for e in errors), errors


def test_saved_settings_reach_the_sign_in_and_show_again_on_edit(manager_client, form_data):
    """The minutes and the Logoff API are saved, shown back on the edit form, and read by
    the sign-in from its settings."""
    assert manager_client.post(NEW, data=form_data).status_code == 302
    system = db.session.scalar(sa.select(AuthSystem))
    settings = compile_system(system)

    assert (settings.recheck_minutes, settings.grace_minutes) == (15, 30)
    assert settings.sso_config.logoff_url == "https://idp.acme.test/revoke"
    shown = form_values(manager_client.get(f"/admin/auth-systems/{system.id}/edit").text)
    assert shown["recheck_minutes"] == "15"
    assert shown["grace_minutes"] == "30"
    assert shown["logoff_body"] == form_data["logoff_body"]


def test_a_logoff_api_that_sends_the_secret_elsewhere_needs_it_typed_again(
    manager_client, form_data
):
    """Pointing a Logoff API that carries %BasicAuth% at another host is refused unless the
    Client Secret is typed again: the stored secret only goes where it was saved for."""
    data = {**form_data, "logoff_headers": "Authorization: Basic %BasicAuth%"}
    assert manager_client.post(NEW, data=data).status_code == 302
    system = db.session.scalar(sa.select(AuthSystem))
    url = f"/admin/auth-systems/{system.id}/edit"
    values = as_post(form_values(manager_client.get(url).text))
    values["logoff_url"] = "https://attacker.example/collect"

    resp = manager_client.post(url, data=values)

    assert resp.status_code == 200
    assert any("Logoff API URL" in e for e in errors_beside(resp.text, "client_secret"))
    db.session.expire_all()
    assert db.session.get(AuthSystem, system.id).logoff_url == "https://idp.acme.test/revoke"


def test_a_change_is_audited_with_its_label(manager_client, form_data):
    """Turning re-checking from 15 to 5 minutes is one audited change, named by its label."""
    assert manager_client.post(NEW, data=form_data).status_code == 302
    system = db.session.scalar(sa.select(AuthSystem))
    url = f"/admin/auth-systems/{system.id}/edit"
    values = as_post(form_values(manager_client.get(url).text))
    values["recheck_minutes"] = "5"

    assert manager_client.post(url, data=values).status_code == 302

    (event,) = events("system.updated")
    assert event.details["changes"] == [
        {
            "field": "recheck_minutes",
            "label": "Re-check Membership Every (minutes)",
            "old": "15",
            "new": "5",
        }
    ]


def test_export_writes_numbers_and_import_refuses_text(manager_client, form_data):
    """The export holds the minutes as JSON numbers and the Logoff API as text; an import
    with minutes given as text is refused with the field's label, writing nothing."""
    assert manager_client.post(NEW, data=form_data).status_code == 302
    system = db.session.scalar(sa.select(AuthSystem))
    doc = export_auth_system(system)
    assert doc["auth_system"]["recheck_minutes"] == 15
    assert doc["auth_system"]["grace_minutes"] == 30
    assert doc["auth_system"]["logoff_url"] == "https://idp.acme.test/revoke"
    assert SECRET not in json.dumps(doc)

    doc["auth_system"]["name"] = "Copy"
    doc["auth_system"]["recheck_minutes"] = "15"
    with pytest.raises(ImportInvalid) as caught:
        import_auth_system(doc, client_secret=SECRET)

    assert any("Re-check Membership Every (minutes)" in p for p in caught.value.problems)
    assert _count() == 1
