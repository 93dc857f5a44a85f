"""The trust settings: "This provider verifies email addresses / usernames" (issue 12).

Both are off by default, explain the risk on the form, are saved, exported and audited. The
sign-in flow reads them (tested with the linking rules).
"""

from __future__ import annotations

import html

import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuditEvent
from portal.services import audit
from portal.services.auth_systems import default_auth_system_data, get_system_by_slug
from tests.support.pages import form_values, parse_page

NEW = "/admin/auth-systems/new"
EMAIL_RISK = (
    "Turn on only if the provider checks that a member owns the address before using it: "
    "otherwise anyone who registers someone else's address at the provider can take over "
    "that person's account here."
)


def test_both_are_off_by_default():
    """A new system trusts neither the provider's emails nor its usernames."""
    data = default_auth_system_data()
    assert data["trusts_email"] is False and data["trusts_username"] is False


def test_the_form_has_both_labelled_checkboxes_with_the_risk(manager_client):
    """Each is a labelled, unchecked checkbox whose help text states the takeover risk."""
    page = html.unescape(manager_client.get(NEW).get_data(as_text=True))
    parser = parse_page(page)
    email = parser.control_for("This provider verifies email addresses")
    username = parser.control_for("This provider verifies usernames")
    for control in (email, username):
        assert control["type"] == "checkbox" and "checked" not in control
        help_id = control["aria-describedby"]
        assert help_id in parser.ids
    assert EMAIL_RISK in page
    assert "take over that person's account here" in page.split('id="trusts_username-help"')[1]


def test_checked_boxes_are_saved_and_shown_again(manager_client, form_data):
    """Saving with both checked stores them; the edit form shows them checked."""
    data = {**form_data, "trusts_email": "y", "trusts_username": "y"}
    assert manager_client.post(NEW, data=data).status_code == 302
    system = get_system_by_slug("acme-sso")
    assert system.trusts_email is True and system.trusts_username is True
    shown = form_values(manager_client.get(f"/admin/auth-systems/{system.id}/edit").get_data(True))
    assert shown["trusts_email"] is True and shown["trusts_username"] is True


def test_turning_trust_on_is_in_the_audit_log(manager_client, form_data):
    """The audit log records the change with the setting's label, Yes/No."""
    manager_client.post(NEW, data=form_data)
    system = get_system_by_slug("acme-sso")
    edit = {**form_data, "client_secret": "", "trusts_email": "y"}
    assert (
        manager_client.post(f"/admin/auth-systems/{system.id}/edit", data=edit).status_code == 302
    )
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.kind == audit.SYSTEM_UPDATED))
    assert event.details["changes"] == [
        {
            "field": "trusts_email",
            "label": "This provider verifies email addresses",
            "old": "No",
            "new": "Yes",
        }
    ]
