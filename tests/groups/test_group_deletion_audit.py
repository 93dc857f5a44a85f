"""Deleting a member group is audited with the mapping rules it took with it."""

from __future__ import annotations

import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuditEvent, GroupRule, MemberGroup
from portal.models.group import RULE_GROUPS_CONTAINS, RULE_STATUS_IN
from portal.services import audit
from portal.services import group_mapping as group_svc


def test_deleting_a_group_records_its_rules_in_words(
    client, auth, manager, member, create_auth_system, create_group, add_membership
):
    """A manager deletes Gold; the audit row names Gold and each rule removed, per system."""
    ams = create_auth_system(name="Member Center")
    oidc = create_auth_system(name="Staff OIDC")
    gold = create_group("Gold")
    keep = create_group("Silver")
    group_svc.add_rule(ams, RULE_STATUS_IN, "Active, Grace", gold.id)
    group_svc.add_rule(oidc, RULE_GROUPS_CONTAINS, "gold-members", gold.id)
    group_svc.add_rule(ams, RULE_GROUPS_CONTAINS, "silver", keep.id)
    group_svc.save_mapping_settings(
        ams,
        default_group_id=gold.id,
        restrict_sign_in=False,
        allowed_statuses="",
        deny_message="",
        group_object_key="",
    )
    add_membership(member, gold)
    gold_id = gold.id

    auth.login_manager()
    response = client.post(f"/admin/groups/{gold_id}/delete")
    assert response.status_code == 302

    db.session.expire_all()
    assert db.session.get(MemberGroup, gold_id) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(GroupRule)) == 1
    [event] = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.kind == audit.GROUP_DELETED)
    ).all()
    assert event.actor_id == manager.id
    assert event.details["group"] == "Gold"
    rules = {(r["system"], r["rule"]) for r in event.details["rules"]}
    assert rules == {
        ("Member Center", "Membership Status is one of Active, Grace → Gold"),
        ("Staff OIDC", "Groups contains gold-members → Gold"),
    }
    assert event.details["default_for"] == ["Member Center"]
    assert event.details["members"] == 1

    page = client.get("/admin/audit").get_data(as_text=True)
    assert "Member group deleted" in page
    assert "Member Center: Membership Status is one of Active, Grace → Gold" in page


def test_deleting_an_unused_group_says_it_had_no_rules(client, auth, manager, create_group):
    """A group without rules is audited too, with an empty list of rules."""
    group = create_group("Unused")
    auth.login_manager()
    client.post(f"/admin/groups/{group.id}/delete")
    [event] = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.kind == audit.GROUP_DELETED)
    ).all()
    assert event.details["group"] == "Unused" and event.details["rules"] == []
