"""Groups and the sign-in restriction applied by the real SSO flow, on both loopback providers."""

from __future__ import annotations

import sqlalchemy as sa

from portal.extensions import db
from portal.models import GroupMembership, MemberGroup, User
from portal.services.group_mapping import add_rule, save_mapping_settings
from portal.services.groups import assign_manual_group
from tests.support.failures import REFERENCE
from tests.support.rows import users_and_identities


def _group(name: str) -> MemberGroup:
    group = MemberGroup(name=name, name_key=name.casefold(), description="")
    db.session.add(group)
    db.session.commit()
    return group


def _restrict(system, statuses: str, message: str = "") -> None:
    save_mapping_settings(
        system,
        default_group_id=None,
        restrict_sign_in=True,
        allowed_statuses=statuses,
        deny_message=message,
        group_object_key="",
    )


def _groups_of(email: str) -> dict[str, int | None]:
    """Return {group name: source system id (None when assigned by hand)} for a user."""
    db.session.expire_all()
    user = db.session.scalar(sa.select(User).where(User.email == email))
    rows = db.session.execute(
        sa.select(MemberGroup.name, GroupMembership.auth_system_id)
        .join(GroupMembership, GroupMembership.group_id == MemberGroup.id)
        .where(GroupMembership.user_id == user.id)
    )
    return dict(rows.all())


def test_first_sign_in_grants_the_groups_the_rules_map(provider, sso):
    """Jane's provider says WEBINARS and Active: she lands in both mapped groups from it."""
    webinars, active = _group("Webinars"), _group("Active members")
    add_rule(provider.system, "groups_contains", "webinars", webinars.id)
    add_rule(provider.system, "status_in", "active", active.id)

    resp = sso.sign_in(provider)

    assert resp.status_code == 302, resp.status_code
    assert _groups_of("jane.doe@example.org") == {
        "Webinars": provider.system.id,
        "Active members": provider.system.id,
    }
    user = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    assert (user.membership_status, user.membership_type) == ("Active", "Professional")
    assert user.membership_synced_at is not None


def test_next_sign_in_removes_a_dropped_group_and_keeps_manual_ones(provider, sso, client):
    """When the provider stops saying WEBINARS, the group goes; a manager's own group stays."""
    webinars, vip = _group("Webinars"), _group("VIP")
    add_rule(provider.system, "groups_contains", "WEBINARS", webinars.id)
    sso.sign_in(provider)
    user = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    assign_manual_group(user, vip)
    client.get("/logout")

    provider.idp.members.update("jdoe", groups=["OTHER"])
    resp = sso.sign_in(provider)

    assert resp.status_code == 302, resp.status_code
    assert _groups_of("jane.doe@example.org") == {"VIP": None}


def test_restriction_refuses_a_status_with_the_managers_message(provider, sso, caplog):
    """Sign-in only for Active members: a Lapsed member sees the message, nothing is written."""
    _restrict(
        provider.system, "Active", "Your membership has lapsed: renew it at the member center."
    )
    provider.idp.members.update("jdoe", membership_status="Lapsed")

    resp = sso.sign_in(provider)

    page = resp.get_data(as_text=True)
    assert resp.status_code == 403
    assert "Your membership has lapsed: renew it at the member center." in page
    reference = REFERENCE.search(page).group(1)
    assert any(f"ref={reference}" in r.getMessage() for r in caplog.records)
    assert users_and_identities() == (0, 0)


def test_restriction_lets_an_allowed_status_in(provider, sso):
    """Sign-in only for Active members: Jane (Active, compared case-insensitively) gets in."""
    _restrict(provider.system, " active ")

    resp = sso.sign_in(provider)

    assert resp.status_code == 302
    assert users_and_identities() == (1, 1)
