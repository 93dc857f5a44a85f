"""Group mapping changes of a system in the audit log."""

from __future__ import annotations

from portal.extensions import db
from portal.models import GroupRule
from portal.services.groups import create_group
from tests.support.pages import screen_rows
from tests.support.rows import events


def test_rule_added_and_removed_are_recorded(manager_client, create_auth_system, audit_page):
    """Adding then deleting a mapping rule shows both, in the manager's words."""
    system = create_auth_system(name="Member Center")
    group = create_group("Webinars")
    url = f"/admin/auth-systems/{system.id}/groups"
    resp = manager_client.post(
        f"{url}/rules",
        data={"rule-kind": "groups_contains", "rule-values": "WEBINARS", "rule-group": group.id},
    )
    assert resp.status_code == 302
    rule = db.session.query(GroupRule).one()
    manager_client.post(f"{url}/rules/{rule.id}/delete")
    added, removed = events("mapping.changed")
    assert added.actor_label == removed.actor_label == "manager@example.com"
    assert added.auth_system_name == "Member Center"
    assert added.details["changes"] == [
        {
            "field": "rule",
            "label": "Rule added",
            "old": "",
            "new": "Groups contains WEBINARS → Webinars",
        }
    ]
    assert removed.details["changes"][0]["label"] == "Rule removed"
    assert removed.details["changes"][0]["old"] == "Groups contains WEBINARS → Webinars"
    rows = screen_rows(audit_page(kind="mapping.changed"))
    assert len(rows) == 2
    assert "Rule removed Groups contains WEBINARS → Webinars" in rows[0]


def test_mapping_settings_change_lists_each_setting(manager_client, create_auth_system):
    """Saving the default group and the restriction records those settings, before and after."""
    system = create_auth_system(name="Member Center")
    group = create_group("Members")
    resp = manager_client.post(
        f"/admin/auth-systems/{system.id}/groups/settings",
        data={
            "settings-default_group": group.id,
            "settings-restrict_sign_in": "y",
            "settings-allowed_statuses": "Active\nGrace",
            "settings-deny_message": "",
            "settings-group_object_key": "",
        },
    )
    assert resp.status_code == 302
    (event,) = events("mapping.changed")
    assert event.details["changes"] == [
        {
            "field": "default_group",
            "label": "Default group",
            "old": "No default group",
            "new": "Members",
        },
        {
            "field": "restrict_sign_in",
            "label": "Allow sign-in only when Membership Status is one of",
            "old": "No",
            "new": "Yes",
        },
        {
            "field": "allowed_statuses",
            "label": "Allowed Membership Status values",
            "old": "",
            "new": "Active, Grace",
        },
    ]
