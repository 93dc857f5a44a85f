"""Mapping rules, the sign-in restriction and the sync of a member's groups at each SSO login."""

from __future__ import annotations

import pytest

from portal.extensions import db
from portal.services import group_mapping as svc
from portal.services.groups import GroupError, normalize_value, parse_values


@pytest.fixture
def system(create_auth_system):
    return create_auth_system(name="Membes AMS")


@pytest.fixture
def gold(create_group):
    return create_group("Gold members")


def test_normalize_value_trims_and_ignores_case():
    """Values compare after trimming and case-folding; numbers and booleans by their text."""
    assert normalize_value("  GoLD ") == "gold"
    assert normalize_value(42) == "42"
    assert normalize_value(True) == "true"
    assert normalize_value("   ") is None
    assert normalize_value(None) is None


def test_group_values_reads_objects_through_key_or_json():
    """An object is read through the configured key (any case), else as its sorted JSON text."""
    raw = ["Gold ", {"Code": "VIP", "Name": "Very"}, {"name": "Other"}, 7, None]
    assert svc.group_values(raw, "code") == {"gold", "vip", '{"name":"other"}', "7"}
    assert svc.group_values(raw) == {
        "gold",
        '{"code":"vip","name":"very"}',
        '{"name":"other"}',
        "7",
    }
    assert svc.group_values("Solo") == {"solo"}
    assert svc.group_values(None) == set()


def test_parse_values_splits_lines_and_commas_and_dedupes():
    """What a manager types becomes distinct trimmed values."""
    assert parse_values("Active, Grace\n active \n\n,Lapsed") == ["Active", "Grace", "Lapsed"]


def test_groups_contains_rule_maps_matching_value(system, gold, member):
    """'Groups contains V -> G' gives G when any groups value equals V, whatever its case."""
    svc.add_rule(system, "groups_contains", "GOLD", gold.id)
    assert svc.resolve_member_groups(system, {"groups": [" gold", "silver"]}) == {gold.id}
    assert svc.resolve_member_groups(system, {"groups": ["goldish"]}) == set()
    assert svc.resolve_member_groups(system, {"groups": None}) == set()


def test_groups_contains_rule_matches_objects_through_object_key(system, gold):
    """With a group object key, objects in Groups match on that key's value."""
    svc.add_rule(system, "groups_contains", "gld", gold.id)
    svc.save_mapping_settings(
        system,
        default_group_id=None,
        restrict_sign_in=False,
        allowed_statuses="",
        deny_message="",
        group_object_key="Code",
    )
    assert svc.resolve_member_groups(system, {"groups": [{"Code": "GLD", "Name": "Gold"}]}) == {
        gold.id
    }


def test_several_groups_contains_values_make_one_rule_each(system, gold):
    """Typing several values for 'Groups contains' makes one rule per value."""
    rules = svc.add_rule(system, "groups_contains", "A, B\nC", gold.id)
    assert [r.values for r in rules] == [["a"], ["b"], ["c"]]
    assert [r.values_display for r in svc.list_rules(system)] == [["A"], ["B"], ["C"]]


def test_status_rule_maps_any_listed_status(system, gold, create_group):
    """'Membership Status is one of [..] -> G' matches any listed status, case-insensitively."""
    lapsed = create_group("Lapsed")
    svc.add_rule(system, "status_in", "Active, Grace", gold.id)
    svc.add_rule(system, "status_in", "Lapsed", lapsed.id)
    assert svc.resolve_member_groups(system, {"membership_status": " grace "}) == {gold.id}
    assert svc.resolve_member_groups(system, {"membership_status": "LAPSED"}) == {lapsed.id}
    assert svc.resolve_member_groups(system, {"membership_status": None}) == set()


def test_type_rule_maps_any_listed_type(system, gold):
    """'Membership Type is one of [..] -> G' matches the membership type."""
    svc.add_rule(system, "type_in", "Professional\nAssociate", gold.id)
    assert svc.resolve_member_groups(system, {"membership_type": "associate"}) == {gold.id}
    assert svc.resolve_member_groups(system, {"membership_type": "Student"}) == set()
    # A status rule's values don't leak into type matching.
    assert svc.resolve_member_groups(system, {"membership_status": "Professional"}) == set()


def test_default_group_is_given_to_everyone(system, gold):
    """The default group is given whatever the profile says."""
    svc.save_mapping_settings(
        system,
        default_group_id=gold.id,
        restrict_sign_in=False,
        allowed_statuses="",
        deny_message="",
        group_object_key="",
    )
    assert svc.resolve_member_groups(system, {}) == {gold.id}


def test_rules_of_another_system_are_ignored(system, gold, create_auth_system):
    """A system's rules only apply to sign-ins through that system."""
    other = create_auth_system(name="Other IdP")
    svc.add_rule(other, "groups_contains", "gold", gold.id)
    assert svc.resolve_member_groups(system, {"groups": ["gold"]}) == set()


def test_add_rule_rejects_bad_input(system, gold):
    """A rule needs a kind, a group and at least one value; nothing is saved otherwise."""
    with pytest.raises(GroupError, match="at least one value"):
        svc.add_rule(system, "status_in", " , \n", gold.id)
    with pytest.raises(GroupError, match="member group"):
        svc.add_rule(system, "status_in", "Active", 9999)
    with pytest.raises(GroupError, match="looks at"):
        svc.add_rule(system, "email_is", "x", gold.id)
    assert svc.list_rules(system) == []


# --- the sign-in restriction --------------------------------------------------------------


def _restrict(system, statuses="Active, Grace", message="Your membership has lapsed."):
    return svc.save_mapping_settings(
        system,
        default_group_id=None,
        restrict_sign_in=True,
        allowed_statuses=statuses,
        deny_message=message,
        group_object_key="",
    )


def test_sign_in_allowed_without_restriction(system):
    """Without the restriction, any status (or none) may sign in."""
    assert svc.check_sign_in_allowed(system, {"membership_status": "Expired"}) is None
    assert svc.check_sign_in_allowed(system, {}) is None


def test_deny_rule_returns_the_configured_message(system):
    """A status outside the allowed list is denied with the manager's message."""
    _restrict(system)
    assert svc.check_sign_in_allowed(system, {"membership_status": " ACTIVE"}) is None
    assert svc.check_sign_in_allowed(system, {"membership_status": "grace"}) is None
    assert (
        svc.check_sign_in_allowed(system, {"membership_status": "Expired"})
        == "Your membership has lapsed."
    )


def test_deny_rule_denies_a_missing_status_with_default_message(system):
    """No status at all is denied too; a blank message falls back to a generic one."""
    _restrict(system, message="")
    assert svc.check_sign_in_allowed(system, {"membership_status": None}) == (
        svc.DEFAULT_DENY_MESSAGE
    )
    assert svc.check_sign_in_allowed(system, {}) == svc.DEFAULT_DENY_MESSAGE


def test_restriction_needs_at_least_one_status(system):
    """Turning the restriction on with no status would lock everyone out: refused."""
    with pytest.raises(GroupError, match="at least one Membership Status"):
        _restrict(system, statuses=" ")


# --- sync ----------------------------------------------------------------------------------


def test_sync_adds_groups_and_records_membership(system, gold, member, memberships_of):
    """A sync adds the mapped groups with the system as source and stores status and type."""
    svc.add_rule(system, "groups_contains", "gold", gold.id)
    svc.sync_member_groups(
        member,
        system,
        {"groups": ["Gold"], "membership_status": " Active ", "membership_type": "Student"},
    )
    db.session.commit()
    assert memberships_of(member) == {("Gold members", system.id)}
    assert member.membership_status == "Active"
    assert member.membership_type == "Student"
    assert member.membership_synced_at is not None


def test_sync_removes_groups_the_provider_no_longer_gives(
    system, gold, create_group, member, memberships_of
):
    """When the provider drops a value, the next sync removes that group."""
    silver = create_group("Silver members")
    svc.add_rule(system, "groups_contains", "gold", gold.id)
    svc.add_rule(system, "groups_contains", "silver", silver.id)
    svc.sync_member_groups(member, system, {"groups": ["gold", "silver"]})
    db.session.commit()
    svc.sync_member_groups(member, system, {"groups": ["silver"]})
    db.session.commit()
    assert memberships_of(member) == {("Silver members", system.id)}


def test_manual_groups_survive_a_sync(system, gold, member, add_membership, memberships_of):
    """A group a manager assigned by hand stays even when the provider stops giving it."""
    svc.add_rule(system, "groups_contains", "gold", gold.id)
    add_membership(member, gold)
    svc.sync_member_groups(member, system, {"groups": ["gold"]})
    db.session.commit()
    assert memberships_of(member) == {("Gold members", None), ("Gold members", system.id)}
    svc.sync_member_groups(member, system, {"groups": []})
    db.session.commit()
    assert memberships_of(member) == {("Gold members", None)}


def test_sync_leaves_other_systems_groups_alone(
    system, gold, create_auth_system, member, add_membership, memberships_of
):
    """A sync through one system never touches groups that came from another."""
    other = create_auth_system(name="Other IdP")
    add_membership(member, gold, other)
    svc.sync_member_groups(member, system, {"groups": []})
    db.session.commit()
    assert memberships_of(member) == {("Gold members", other.id)}


def test_sync_does_not_commit(system, gold, member, memberships_of):
    """The flow commits; a rollback after the sync leaves nothing behind."""
    svc.add_rule(system, "groups_contains", "gold", gold.id)
    svc.sync_member_groups(member, system, {"groups": ["gold"], "membership_status": "Active"})
    db.session.rollback()
    assert memberships_of(member) == set()
    assert member.membership_status is None


def test_sync_works_for_a_user_created_in_the_same_transaction(system, gold, memberships_of):
    """A user not yet flushed (created by the same sign-in) is synced too."""
    from portal.models import User

    svc.add_rule(system, "type_in", "student", gold.id)
    user = User(email="new@example.com", username="new", username_key="new")
    db.session.add(user)
    svc.sync_member_groups(user, system, {"membership_type": "Student"})
    db.session.commit()
    assert memberships_of(user) == {("Gold members", system.id)}


def test_sync_keeps_status_when_profile_has_no_such_key(system, member):
    """Keys absent from the fields leave the stored status and type unchanged."""
    member.membership_status = "Active"
    db.session.commit()
    svc.sync_member_groups(member, system, {"groups": []})
    db.session.commit()
    assert member.membership_status == "Active"
    svc.sync_member_groups(member, system, {"membership_status": None})
    db.session.commit()
    assert member.membership_status is None


def test_sync_is_idempotent(system, gold, member, memberships_of):
    """Syncing the same profile twice leaves one membership."""
    svc.add_rule(system, "status_in", "active", gold.id)
    for _ in range(2):
        svc.sync_member_groups(member, system, {"membership_status": "Active"})
        db.session.commit()
    assert memberships_of(member) == {("Gold members", system.id)}


def test_deleting_the_system_removes_its_rules_and_memberships(
    system, gold, member, memberships_of
):
    """Deleting an authentication system takes its rules, settings and memberships with it."""
    from portal.models import GroupMappingSettings, GroupRule

    svc.add_rule(system, "groups_contains", "gold", gold.id)
    _restrict(system)
    svc.sync_member_groups(member, system, {"groups": ["gold"]})
    db.session.commit()
    db.session.delete(system)
    db.session.commit()
    assert memberships_of(member) == set()
    assert db.session.query(GroupRule).count() == 0
    assert db.session.query(GroupMappingSettings).count() == 0
