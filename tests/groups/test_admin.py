"""Admin screens of member groups, content, mapping rules and users."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import ContentItem, GroupRule, Identity, MemberGroup, User
from portal.services import group_mapping as group_svc


@pytest.fixture
def world(create_auth_system, create_group, create_item, member):
    """A system, a group, an item and a member with an SSO binding."""
    system = create_auth_system(name="Membes AMS")
    group = create_group("Gold")
    item = create_item("Gold library", kind="library", groups=[group])
    identity = Identity(
        user_id=member.id, auth_system_id=system.id, subject="abc-123", locked_fields=["email"]
    )
    db.session.add(identity)
    db.session.commit()
    return {"system": system, "group": group, "item": item, "identity": identity}


def routes(w, member):
    """Every new admin route, with a method."""
    s, g, i, ident = w["system"].id, w["group"].id, w["item"].id, w["identity"].id
    u = member.id
    return [
        ("GET", "/admin/groups"),
        ("POST", "/admin/groups"),
        ("GET", f"/admin/groups/{g}/edit"),
        ("POST", f"/admin/groups/{g}/edit"),
        ("GET", f"/admin/groups/{g}/delete"),
        ("POST", f"/admin/groups/{g}/delete"),
        ("GET", f"/admin/auth-systems/{s}/groups"),
        ("POST", f"/admin/auth-systems/{s}/groups/rules"),
        ("POST", f"/admin/auth-systems/{s}/groups/rules/1/delete"),
        ("POST", f"/admin/auth-systems/{s}/groups/settings"),
        ("GET", "/admin/content"),
        ("GET", "/admin/content/new"),
        ("POST", "/admin/content/new"),
        ("GET", f"/admin/content/{i}/edit"),
        ("POST", f"/admin/content/{i}/edit"),
        ("POST", f"/admin/content/{i}/delete"),
        ("GET", "/admin/users"),
        ("GET", f"/admin/users/{u}"),
        ("POST", f"/admin/users/{u}/identities/{ident}/unlink"),
        ("POST", f"/admin/users/{u}/groups"),
        ("POST", f"/admin/users/{u}/groups/{g}/remove"),
        ("POST", f"/admin/users/{u}/role"),
    ]


def test_admin_routes_send_anonymous_visitors_to_login(client, world, member):
    """Every new admin route redirects an anonymous visitor to the login page, with next."""
    for method, url in routes(world, member):
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert "/login?next=" in response.headers["Location"], (method, url)


def test_admin_routes_refuse_members(client, auth, world, member):
    """Every new admin route answers 403 to a signed-in member, and changes nothing."""
    auth.login_member()
    for method, url in routes(world, member):
        response = client.open(url, method=method, data={"role": "manager", "name": "X"})
        assert response.status_code == 403, (method, url)
    db.session.expire_all()
    assert db.session.get(User, member.id).role == "member"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MemberGroup)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Identity)) == 1


# --- groups --------------------------------------------------------------------------------


def test_manager_creates_renames_and_refuses_duplicate_groups(client, auth, manager):
    """A manager creates a group, renames it, and duplicates (any case) are refused."""
    auth.login_manager()
    response = client.post("/admin/groups", data={"name": "Gold", "description": "Top tier"})
    assert response.status_code == 302
    group = db.session.scalar(sa.select(MemberGroup))
    assert (group.name, group.description) == ("Gold", "Top tier")
    page = client.post("/admin/groups", data={"name": " gold "}).get_data(as_text=True)
    assert "A member group named gold already exists." in page
    client.post(f"/admin/groups/{group.id}/edit", data={"name": "Platinum", "description": ""})
    db.session.refresh(group)
    assert group.name == "Platinum"


def test_deleting_a_used_group_asks_first_and_says_what_it_touches(
    client, auth, manager, world, member, add_membership
):
    """The delete page lists content, rules, default-for systems and members before deleting."""
    system, group, item = world["system"], world["group"], world["item"]
    group_svc.add_rule(system, "groups_contains", "GOLD", group.id)
    group_svc.save_mapping_settings(
        system,
        default_group_id=group.id,
        restrict_sign_in=False,
        allowed_statuses="",
        deny_message="",
        group_object_key="",
    )
    add_membership(member, group)
    auth.login_manager()
    page = client.get(f"/admin/groups/{group.id}/delete").get_data(as_text=True)
    assert "Delete the member group Gold?" in page
    assert "1 content item" in page and "Gold library" in page
    assert "1 mapping rule" in page and "Membes AMS: Groups contains GOLD" in page
    assert "Membes AMS no longer has a default group." in page
    assert "1 member" in page
    assert db.session.get(MemberGroup, group.id) is not None  # nothing deleted by asking

    response = client.post(f"/admin/groups/{group.id}/delete")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(MemberGroup, group.id) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(GroupRule)) == 0
    assert group_svc.get_mapping_settings(system).default_group_id is None
    kept = db.session.get(ContentItem, item.id)
    assert kept is not None and kept.groups == [] and kept.visibility == "groups"


def test_deleting_an_unused_group_says_nothing_uses_it(client, auth, manager, create_group):
    """An unused group's delete page says so."""
    group = create_group("Lonely")
    auth.login_manager()
    page = client.get(f"/admin/groups/{group.id}/delete").get_data(as_text=True)
    assert "No content, rule or member uses this group." in page


# --- mapping rules page --------------------------------------------------------------------


def test_mapping_page_adds_and_deletes_rules(client, auth, manager, world):
    """A manager adds rules of each kind and deletes one, on the system's groups page."""
    system, group = world["system"], world["group"]
    auth.login_manager()
    url = f"/admin/auth-systems/{system.id}/groups"
    assert "Member groups for Membes AMS" in client.get(url).get_data(as_text=True)
    for kind, values in (
        ("groups_contains", "GOLD"),
        ("status_in", "Active, Grace"),
        ("type_in", "Student"),
    ):
        response = client.post(
            url + "/rules",
            data={"rule-kind": kind, "rule-values": values, "rule-group": group.id},
        )
        assert response.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "Groups contains" in page and "Active, Grace" in page and "Student" in page
    rule = group_svc.list_rules(system)[0]
    client.post(f"{url}/rules/{rule.id}/delete")
    assert [r.kind for r in group_svc.list_rules(system)] == ["status_in", "type_in"]


def test_mapping_page_shows_rule_errors(client, auth, manager, world):
    """An empty value list is refused with a message beside the field."""
    auth.login_manager()
    response = client.post(
        f"/admin/auth-systems/{world['system'].id}/groups/rules",
        data={"rule-kind": "status_in", "rule-values": " , ", "rule-group": world["group"].id},
    )
    assert response.status_code == 400
    assert "Type at least one value." in response.get_data(as_text=True)


def test_mapping_page_saves_default_group_and_restriction(client, auth, manager, world):
    """The settings form saves the default group, the restriction, message and object key."""
    system, group = world["system"], world["group"]
    auth.login_manager()
    response = client.post(
        f"/admin/auth-systems/{system.id}/groups/settings",
        data={
            "settings-default_group": group.id,
            "settings-restrict_sign_in": "y",
            "settings-allowed_statuses": "Active\nGrace",
            "settings-deny_message": "Renew your membership to sign in.",
            "settings-group_object_key": "Code",
        },
    )
    assert response.status_code == 302
    settings = group_svc.get_mapping_settings(system)
    assert settings.default_group_id == group.id
    assert settings.allowed_statuses == ["active", "grace"]
    assert settings.group_object_key == "Code"
    assert group_svc.check_sign_in_allowed(system, {"membership_status": "Expired"}) == (
        "Renew your membership to sign in."
    )
    page = client.get(f"/admin/auth-systems/{system.id}/groups").get_data(as_text=True)
    assert "Renew your membership to sign in." in page


def test_mapping_settings_refuse_a_restriction_without_statuses(client, auth, manager, world):
    """Restricting sign-in to no status is refused with a message."""
    auth.login_manager()
    response = client.post(
        f"/admin/auth-systems/{world['system'].id}/groups/settings",
        data={"settings-default_group": 0, "settings-restrict_sign_in": "y"},
    )
    assert response.status_code == 400
    assert "List at least one Membership Status" in response.get_data(as_text=True)
    assert group_svc.get_mapping_settings(world["system"]).restrict_sign_in is False


def test_mapping_page_of_unknown_system_is_404(client, auth, manager):
    """An unknown system id answers 404."""
    auth.login_manager()
    assert client.get("/admin/auth-systems/999/groups").status_code == 404


# --- content -------------------------------------------------------------------------------


def test_manager_creates_edits_and_deletes_content(client, auth, manager, create_group):
    """Content CRUD with group visibility."""
    gold = create_group("Gold")
    auth.login_manager()
    response = client.post(
        "/admin/content/new",
        data={
            "title": "Annual congress 2026",
            "kind": "recording",
            "url": "https://video.example.com/embed/9",
            "embed": "y",
            "visibility": "groups",
            "groups": [str(gold.id)],
        },
    )
    assert response.status_code == 302
    item = db.session.scalar(sa.select(ContentItem))
    assert item.embed and [g.name for g in item.groups] == ["Gold"]
    listing = client.get("/admin/content?q=congress").get_data(as_text=True)
    assert "Annual congress 2026" in listing and "Gold" in listing
    client.post(
        f"/admin/content/{item.id}/edit",
        data={
            "title": "Congress",
            "kind": "library",
            "url": "https://video.example.com/9",
            "visibility": "signed_in",
        },
    )
    db.session.refresh(item)
    assert (item.title, item.kind, item.visibility, item.groups) == (
        "Congress",
        "library",
        "signed_in",
        [],
    )
    client.post(f"/admin/content/{item.id}/delete")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContentItem)) == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"url": "javascript:alert(1)"}, "full http:// or https:// address"),
        ({"visibility": "groups"}, "Choose at least one member group"),
    ],
)
def test_content_form_rejects_bad_input(client, auth, manager, data, message):
    """Unsafe links and group visibility without groups are refused; nothing is saved."""
    auth.login_manager()
    form = {
        "title": "T",
        "kind": "recording",
        "url": "https://x.example.com",
        "visibility": "signed_in",
    }
    form.update(data)
    page = client.post("/admin/content/new", data=form).get_data(as_text=True)
    assert message in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContentItem)) == 0


# --- users ---------------------------------------------------------------------------------


def test_users_screen_searches_by_name_or_email_and_paginates(client, auth, manager, create_user):
    """Search matches first/last name and email, case-insensitively; pages hold 50."""
    create_user(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    db.session.execute(
        sa.insert(User),
        [
            {
                "email": f"bulk{n:02d}@example.org",
                "username": f"bulk{n:02d}",
                "username_key": f"bulk{n:02d}",
                "role": "member",
                "first_name": "",
                "last_name": "",
            }
            for n in range(60)
        ],
    )
    db.session.commit()
    auth.login_manager()
    page = client.get("/admin/users?q=LOVELACE").get_data(as_text=True)
    assert "Ada Lovelace" in page and "bulk00" not in page
    page = client.get("/admin/users?q=ada lovelace").get_data(as_text=True)
    assert "Ada Lovelace" in page
    page = client.get("/admin/users?q=example.org").get_data(as_text=True)
    assert "60 users" in page and "Page 1 of 2" in page
    page2 = client.get("/admin/users?q=example.org&page=2").get_data(as_text=True)
    assert "bulk59@example.org" in page2 and "bulk00@example.org" not in page2
    assert "No users found." in client.get("/admin/users?q=%25").get_data(as_text=True)


def test_user_page_shows_bindings_locked_fields_groups_and_membership(
    client, auth, manager, world, member, add_membership
):
    """The user page shows SSO bindings, locked fields, groups with source, membership."""
    system, group = world["system"], world["group"]
    group_svc.add_rule(system, "status_in", "active", group.id)
    group_svc.sync_member_groups(
        member, system, {"membership_status": "Active", "membership_type": "Professional"}
    )
    db.session.commit()
    add_membership(member, group)
    auth.login_manager()
    page = client.get(f"/admin/users/{member.id}").get_data(as_text=True)
    assert "Membes AMS" in page and "abc-123" in page and "email" in page
    assert "Assigned by a manager" in page
    assert "Active" in page and "Professional" in page


def test_manager_assigns_and_removes_manual_groups(
    client, auth, manager, world, member, memberships_of
):
    """Assigning adds a manual membership; removing takes only the manual one."""
    system, group = world["system"], world["group"]
    group_svc.add_rule(system, "groups_contains", "gold", group.id)
    group_svc.sync_member_groups(member, system, {"groups": ["gold"]})
    db.session.commit()
    auth.login_manager()
    client.post(f"/admin/users/{member.id}/groups", data={"group": group.id})
    assert memberships_of(member) == {("Gold", None), ("Gold", system.id)}
    client.post(f"/admin/users/{member.id}/groups/{group.id}/remove")
    assert memberships_of(member) == {("Gold", system.id)}


def test_unlinking_a_binding_removes_its_groups(
    client, auth, manager, world, member, memberships_of, add_membership
):
    """Unlinking removes the Identity and that system's groups; manual groups stay."""
    system, group = world["system"], world["group"]
    add_membership(member, group, system)
    add_membership(member, group)
    auth.login_manager()
    response = client.post(f"/admin/users/{member.id}/identities/{world['identity'].id}/unlink")
    assert response.status_code == 302
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Identity)) == 0
    assert memberships_of(member) == {("Gold", None)}


def test_promote_and_demote_but_never_the_last_manager(client, auth, manager, member):
    """A member is promoted and demoted; the last manager cannot be demoted."""
    auth.login_manager()
    client.post(f"/admin/users/{member.id}/role", data={"role": "manager"})
    db.session.refresh(member)
    assert member.is_manager
    client.post(f"/admin/users/{member.id}/role", data={"role": "member"})
    db.session.refresh(member)
    assert not member.is_manager
    response = client.post(
        f"/admin/users/{manager.id}/role", data={"role": "member"}, follow_redirects=True
    )
    assert "This is the last community manager" in response.get_data(as_text=True)
    db.session.refresh(manager)
    assert manager.is_manager


def test_system_page_and_list_link_to_its_member_groups_tab(client, auth, manager, world):
    """The system's page and the list both lead to its Member groups tab, and back."""
    auth.login_manager()
    system_id = world["system"].id
    mapping_url = f"/admin/auth-systems/{system_id}/groups"
    edit_page = client.get(f"/admin/auth-systems/{system_id}/edit").get_data(as_text=True)
    assert f'href="{mapping_url}"' in edit_page
    assert f'href="{mapping_url}"' in client.get("/admin/auth-systems").get_data(as_text=True)
    mapping = client.get(mapping_url).get_data(as_text=True)
    assert f'href="/admin/auth-systems/{system_id}/edit"' in mapping
