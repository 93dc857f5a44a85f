"""Manager role from the provider: the "Groups contains V → community manager" rule kind.

Jane signs in through the loopback providers; her Groups decide her role only when a manager
added the rule, the role goes when the group does, and never from the last local manager.
"""

from __future__ import annotations

import sqlalchemy as sa

from portal.auth import sessions
from portal.extensions import db
from portal.models import ROLE_MANAGER, ROLE_MEMBER, GroupRule, User
from portal.models.group import RULE_GROUPS_MANAGER
from portal.services.group_mapping import add_rule, delete_rule
from portal.services.users import promote_user
from tests.support.providers import reconfigure
from tests.support.rows import events

JANE = "jane.doe@example.org"


def _jane() -> User:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.email == JANE))


def _sign_in(sso, provider, client) -> None:
    client.get("/logout")
    resp = sso.sign_in(provider)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:400]


def test_a_provider_group_gives_no_role_without_the_rule(provider, sso, client, manager):
    """Jane's provider lists STAFF-ADMINS, but no manager added the rule: she stays a member
    and the admin stays closed to her."""
    provider.idp.members.update("jdoe", groups=["STAFF-ADMINS"])

    _sign_in(sso, provider, client)

    assert _jane().role == ROLE_MEMBER
    assert client.get("/admin/auth-systems").status_code in (302, 403)
    assert events("user.role_changed") == []


def test_the_rule_grants_the_role_at_sign_in_and_audits_it(provider, sso, client, manager):
    """With the rule, Jane in STAFF-ADMINS becomes a community manager and opens the admin."""
    add_rule(provider.system, RULE_GROUPS_MANAGER, "staff-admins", None, actor=manager)
    provider.idp.members.update("jdoe", groups=["WEBINARS", "Staff-Admins"])

    _sign_in(sso, provider, client)

    jane = _jane()
    assert jane.role == ROLE_MANAGER
    assert client.get("/admin/auth-systems").status_code == 200
    (event,) = events("user.role_changed")
    assert (event.details["user"], event.details["new_role"]) == (JANE, ROLE_MANAGER)
    (added,) = events("mapping.changed")
    assert "community manager" in added.details["changes"][0]["new"]


def test_the_role_goes_when_the_group_goes(provider, sso, client, manager):
    """The provider drops STAFF-ADMINS: at her next sign-in Jane is a member again."""
    add_rule(provider.system, RULE_GROUPS_MANAGER, "staff-admins", None)
    provider.idp.members.update("jdoe", groups=["STAFF-ADMINS"])
    _sign_in(sso, provider, client)
    assert _jane().role == ROLE_MANAGER

    provider.idp.members.update("jdoe", groups=["WEBINARS"])
    _sign_in(sso, provider, client)

    assert _jane().role == ROLE_MEMBER
    assert client.get("/admin/auth-systems").status_code in (302, 403)
    removed = events("user.role_changed")[-1]
    assert removed.details["new_role"] == ROLE_MEMBER


def test_the_role_goes_when_the_rule_is_deleted(provider, sso, client, manager):
    """A manager deletes the rule: the role it gave goes at the next sign-in."""
    (rule,) = add_rule(provider.system, RULE_GROUPS_MANAGER, "staff-admins", None)
    provider.idp.members.update("jdoe", groups=["STAFF-ADMINS"])
    _sign_in(sso, provider, client)
    delete_rule(db.session.get(GroupRule, rule.id))

    _sign_in(sso, provider, client)

    assert _jane().role == ROLE_MEMBER


def test_a_role_given_by_hand_is_never_taken_by_the_provider(provider, sso, client, manager):
    """A manager promoted Jane by hand: her provider's groups do not demote her."""
    add_rule(provider.system, RULE_GROUPS_MANAGER, "staff-admins", None)
    provider.idp.members.update("jdoe", groups=["STAFF-ADMINS"])
    _sign_in(sso, provider, client)
    jane = _jane()
    jane.role = ROLE_MEMBER
    db.session.commit()
    promote_user(_jane(), actor=manager)  # now given by hand

    provider.idp.members.update("jdoe", groups=[])
    _sign_in(sso, provider, client)

    assert _jane().role == ROLE_MANAGER


def test_the_last_local_manager_keeps_the_role(oidc, sso, client):
    """Jane, with a local password, is the only active manager who can sign in locally:
    the provider dropping her group does not lock the site out of its admin."""
    add_rule(oidc.system, RULE_GROUPS_MANAGER, "staff-admins", None)
    oidc.idp.members.update("jdoe", groups=["STAFF-ADMINS"])
    _sign_in(sso, oidc, client)
    jane = _jane()
    jane.set_password("a local password")
    # Another manager exists, but only through SSO (no local password).
    db.session.add(User(email="sso.only@example.org", role=ROLE_MANAGER))
    db.session.commit()

    oidc.idp.members.update("jdoe", groups=[])
    _sign_in(sso, oidc, client)

    assert _jane().role == ROLE_MANAGER


def test_the_role_is_removed_when_another_local_manager_remains(oidc, sso, client, manager):
    """With another active local manager, Jane (local password too) loses the role."""
    add_rule(oidc.system, RULE_GROUPS_MANAGER, "staff-admins", None)
    oidc.idp.members.update("jdoe", groups=["STAFF-ADMINS"])
    _sign_in(sso, oidc, client)
    _jane().set_password("a local password")
    db.session.commit()

    oidc.idp.members.update("jdoe", groups=[])
    _sign_in(sso, oidc, client)

    assert _jane().role == ROLE_MEMBER


def test_the_manager_rule_is_added_from_the_member_groups_tab(
    manager_client, create_auth_system, create_group
):
    """The rule kind is offered by its label; added without a group, shown as the role."""
    system = create_auth_system(name="Member Center")
    group = create_group("Gold")
    page = manager_client.get(f"/admin/auth-systems/{system.id}/groups").get_data(as_text=True)
    assert "Groups contains V → community manager" in page

    resp = manager_client.post(
        f"/admin/auth-systems/{system.id}/groups/rules",
        data={"rule-kind": RULE_GROUPS_MANAGER, "rule-values": "Board", "rule-group": group.id},
    )

    assert resp.status_code == 302
    (rule,) = db.session.scalars(sa.select(GroupRule)).all()
    assert (rule.kind, rule.group_id, rule.values) == (RULE_GROUPS_MANAGER, None, ["board"])
    page = manager_client.get(f"/admin/auth-systems/{system.id}/groups").get_data(as_text=True)
    assert "Community manager" in page


def test_the_recheck_grants_and_removes_the_role(oidc, sso, client, manager, monkeypatch):
    """Re-check every 15 minutes: the provider adds STAFF-ADMINS, Jane's next request after
    the interval makes her a manager; it drops the group, the next one takes the role back,
    without her signing out."""
    now = {"t": 1_800_000_000.0}
    monkeypatch.setattr(sessions, "now", lambda: now["t"])
    system = reconfigure(oidc, recheck_minutes=15)
    add_rule(system, RULE_GROUPS_MANAGER, "staff-admins", None)
    _sign_in(sso, oidc, client)
    assert _jane().role == ROLE_MEMBER

    oidc.idp.members.update("jdoe", groups=["STAFF-ADMINS"])
    now["t"] += 16 * 60
    assert client.get("/library").status_code == 200
    assert _jane().role == ROLE_MANAGER
    assert client.get("/admin/auth-systems").status_code == 200

    oidc.idp.members.update("jdoe", groups=[])
    now["t"] += 16 * 60
    assert client.get("/library").status_code == 200
    assert _jane().role == ROLE_MEMBER
    assert client.get("/admin/auth-systems").status_code == 403


def test_the_test_screen_says_the_role_would_be_given(oidc, manager_client, manager):
    """Test this configuration lists the role beside the groups, and gives it to nobody."""
    from tests.auth.test_test_screen import run_test

    add_rule(oidc.system, RULE_GROUPS_MANAGER, "staff-admins", None)
    oidc.idp.members.update("jdoe", groups=["STAFF-ADMINS"])

    _url, page = run_test(manager_client, oidc)

    assert "Community manager (role)" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1
