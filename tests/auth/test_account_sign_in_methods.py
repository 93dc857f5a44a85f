"""Sign-in methods on the account page: a member links another provider while signed in, and
unlinks one that is not their only way to sign in. Each refusal is written as the attack or
mistake it stops, and checks that nothing was written and who is still signed in."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import GroupMembership, Identity, User
from portal.services import audit
from portal.services.account_linking import LINK_INTENT
from portal.services.group_mapping import add_rule, save_mapping_settings
from portal.services.groups import create_group
from tests.support.providers import SSO, add_member
from tests.support.rows import count, events

LINKED = "is now linked to your account"


def _rules(system, **rules) -> None:
    save_mapping_settings(
        system,
        default_group_id=None,
        restrict_sign_in=rules.pop("restrict_sign_in", False),
        allowed_statuses=rules.pop("allowed_statuses", ""),
        deny_message=rules.pop("deny_message", ""),
        group_object_key="",
        **rules,
    )


def start_link(client, provider):
    """Press *Link <system>* on the account page; return the response (a redirect to the IdP)."""
    return client.post(f"/sso/{provider.slug}/link")


def link(client, provider, username: str = "jdoe"):
    """Link ``provider`` as ``username`` at the IdP; return the callback's response."""
    resp = start_link(client, provider)
    assert resp.status_code == 302, resp.status_code
    back = provider.idp.authorize_redirect(resp.headers["Location"], username)
    parts = urlsplit(back)
    return client.get(f"{parts.path}?{parts.query}")


def signed_in_email(client) -> str | None:
    """Return the email address the account page shows in its form (None: not signed in)."""
    resp = client.get("/account")
    if resp.status_code != 200:
        return None
    page = resp.get_data(as_text=True)
    for email in ("member@example.com", "jane.doe@example.org", "other@example.com"):
        if f'value="{email}"' in page:
            return email
    return "?"


def identities_of(user: User) -> list[tuple[int, str]]:
    db.session.expire_all()
    return [
        (i.auth_system_id, i.subject)
        for i in db.session.scalars(sa.select(Identity).where(Identity.user_id == user.id))
    ]


def assert_no_secret(provider, *texts: str) -> None:
    for secret in provider.issued_secrets():
        for text in texts:
            assert secret not in text, "an issued code, token or secret leaked"


@pytest.fixture
def webinars(provider):
    """A member group that the provider's WEBINARS group maps onto."""
    group = create_group("Webinars")
    add_rule(provider.system, "groups_contains", "WEBINARS", group.id)
    return group


# -- the account page --------------------------------------------------------------------------


def test_the_account_page_lists_the_password_and_offers_each_login_page_system(
    client, auth, member, oidc, create_auth_system
):
    """A local member sees "Password" and a Link button per system /login offers, no others."""
    create_auth_system(name="Switched Off", enabled=False)
    create_auth_system(name="Hidden Local", login_mode="local_only")
    auth.login_member()

    page = client.get("/account").get_data(as_text=True)

    assert "Sign-in methods" in page and "<td>Password</td>" in page
    assert "Link Loopback OIDC" in page
    assert "Switched Off" not in page and "Hidden Local" not in page


@pytest.mark.parametrize("login_mode", ["disabled", "local_only"])
def test_starting_a_link_with_a_system_the_login_page_does_not_offer_is_refused(
    client, auth, member, oidc, login_mode
):
    """A crafted POST for a disabled or Local Login Only system starts nothing."""
    if login_mode == "disabled":
        oidc.system.enabled = False
    else:
        oidc.system.login_mode = "local_only"
    db.session.commit()
    auth.login_member()

    resp = start_link(client, oidc)

    assert resp.status_code == 302 and resp.headers["Location"] == "/account"
    assert "not available" in client.get("/account").get_data(as_text=True)
    assert identities_of(member) == []


def test_starting_a_link_needs_a_signed_in_member(client, oidc):
    """Anonymous: the link start sends to the sign-in page and opens no session intent."""
    resp = start_link(client, oidc)

    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    with client.session_transaction() as sess:
        assert LINK_INTENT not in sess


# -- linking -----------------------------------------------------------------------------------


def test_a_member_links_a_provider_and_stays_signed_in_as_themself(
    client, auth, member, provider, webinars, logs
):
    """Jane's provider account binds to the local member: groups synced, audited, no switch."""
    auth.login_member()

    resp = link(client, provider)

    assert resp.status_code == 302 and resp.headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    assert f"{provider.system.name} {LINKED}" in page
    assert signed_in_email(client) == "member@example.com"
    assert [system for system, _ in identities_of(member)] == [provider.system.id]
    assert count(User) == 1  # the member, and nobody new
    db.session.expire_all()
    groups = db.session.scalars(
        sa.select(GroupMembership).where(GroupMembership.user_id == member.id)
    ).all()
    assert [(m.group_id, m.auth_system_id) for m in groups] == [(webinars.id, provider.system.id)]
    (event,) = events(audit.IDENTITY_LINKED)
    assert event.actor_id == member.id and event.auth_system_id == provider.system.id
    # The page now lists the system with an Unlink button, and offers it no more.
    assert f"<td>{provider.system.name}</td>" in page and "Unlink" in page
    assert f"Link {provider.system.name}" not in page
    assert_no_secret(provider, page, logs.text)
    with client.session_transaction() as sess:
        assert LINK_INTENT not in sess


def test_linking_the_identity_already_bound_to_this_account_just_says_so(
    client, auth, member, oidc
):
    """A second link of the same identity: "already linked", one row."""
    auth.login_member()
    link(client, oidc)

    link(client, oidc)

    assert "was already linked to your account" in client.get("/account").get_data(as_text=True)
    assert len(identities_of(member)) == 1


# -- attacks on linking ------------------------------------------------------------------------


def test_a_callback_without_a_link_intent_never_links_the_signed_in_account(
    client, auth, member, oidc, sso
):
    """Signed in, an ordinary sign-in's callback is a sign-in: the account gains nothing."""
    auth.login_member()

    sso.sign_in(oidc)

    assert identities_of(member) == []
    assert events(audit.IDENTITY_LINKED) == []


def test_a_callback_of_another_attempt_than_the_links_is_refused(client, auth, member, oidc, sso):
    """The intent names its own attempt: an ordinary attempt's callback in the same browser
    (e.g. one an attacker's page started) does not ride on it."""
    auth.login_member()
    assert start_link(client, oidc).status_code == 302
    other = sso.authorize(oidc)  # another attempt of the same browser

    resp = client.get(other)

    assert resp.headers["Location"] == "/account"
    assert "Link request expired" in client.get("/account").get_data(as_text=True)
    assert identities_of(member) == []
    assert signed_in_email(client) == "member@example.com"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda i, other: {**i, "expires": time.time() - 1}, id="expired"),
        pytest.param(lambda i, other: {**i, "user": f"{other.id}:0"}, id="another-user"),
        pytest.param(lambda i, other: {**i, "system": i["system"] + 1}, id="another-system"),
        pytest.param(lambda i, other: {**i, "attempt": i["attempt"] + 1}, id="another-attempt"),
        pytest.param(lambda i, other: {**i, "attempt": None}, id="no-attempt"),
    ],
)
def test_a_link_intent_that_does_not_match_the_callback_links_nothing(
    client, auth, member, create_user, oidc, tamper
):
    """The intent binds member, system and time: any mismatch refuses, writing nothing."""
    other = create_user(email="other@example.com")
    auth.login_member()
    resp = start_link(client, oidc)
    with client.session_transaction() as sess:
        sess[LINK_INTENT] = tamper(sess[LINK_INTENT], other)
    back = urlsplit(oidc.idp.authorize_redirect(resp.headers["Location"], "jdoe"))

    client.get(f"{back.path}?{back.query}")

    assert "Link request expired" in client.get("/account").get_data(as_text=True)
    assert identities_of(member) == [] and identities_of(other) == []
    assert signed_in_email(client) == "member@example.com"


def test_a_link_intent_is_consumed_once(client, auth, member, oidc):
    """Replaying the link's callback finds no intent and no attempt: nothing more happens."""
    auth.login_member()
    resp = start_link(client, oidc)
    back = urlsplit(oidc.idp.authorize_redirect(resp.headers["Location"], "jdoe"))
    client.get(f"{back.path}?{back.query}")

    replay = client.get(f"{back.path}?{back.query}")

    assert replay.status_code in (302, 400)
    assert len(identities_of(member)) == 1
    assert signed_in_email(client) in ("member@example.com", None)


def test_linking_an_identity_another_account_owns_is_refused_without_a_move(
    app, client, auth, member, provider
):
    """Jane's identity is bound to Jane's account: the member can't take it over or move it."""
    SSO(app.test_client()).sign_in(provider)  # Jane signs in, in her own browser
    jane = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    auth.login_member()

    link(client, provider)

    page = client.get("/account").get_data(as_text=True)
    assert "already linked to a different account on this site" in page
    assert identities_of(member) == []
    assert [s for s, _ in identities_of(jane)] == [provider.system.id]
    assert events(audit.IDENTITY_LINKED) == []
    assert signed_in_email(client) == "member@example.com"


def test_a_second_identity_at_the_same_system_is_refused(client, auth, member, oidc):
    """Linked as jdoe, the member can't also link bob's account at the same system."""
    add_member(oidc.idp, "bob")
    auth.login_member()
    link(client, oidc)
    before = identities_of(member)

    link(client, oidc, "bob")

    assert "already linked to a different account at this identity provider" in (
        client.get("/account").get_data(as_text=True)
    )
    assert identities_of(member) == before and len(before) == 1


@pytest.mark.parametrize(
    "rules, message",
    [
        (
            {
                "restrict_sign_in": True,
                "allowed_statuses": "Gold",
                "deny_message": "Only Gold members here.",
            },
            "Only Gold members here.",
        ),
        (
            {"allowed_email_domains": "staff.example.org", "deny_message": "Staff only."},
            "Staff only.",
        ),
        (
            {"required_claim": "board.voting", "required_claim_message": "Voting members only."},
            "Voting members only.",
        ),
    ],
    ids=["sign-in restriction", "allowed email domains", "required claim"],
)
def test_the_systems_access_rules_refuse_a_link_with_the_managers_message(
    client, auth, member, oidc, rules, message
):
    """A member the system would refuse at sign-in is refused the link too: nothing written."""
    _rules(oidc.system, **rules)
    auth.login_member()

    link(client, oidc)

    assert message in client.get("/account").get_data(as_text=True)
    assert identities_of(member) == []
    assert count(GroupMembership) == 0
    assert signed_in_email(client) == "member@example.com"


def test_existing_accounts_only_does_not_refuse_linking_an_existing_account(
    client, auth, member, oidc
):
    """*Existing Accounts Only* stops new accounts; the member's account exists: it links."""
    _rules(oidc.system, existing_accounts_only=True, existing_accounts_message="Members only.")
    auth.login_member()

    link(client, oidc)

    assert LINKED in client.get("/account").get_data(as_text=True)
    assert len(identities_of(member)) == 1


def test_a_manager_links_their_own_account(client, auth, manager, oidc):
    """Signed in, a manager links their own account (no password confirmation: it is theirs)."""
    auth.login_manager()

    link(client, oidc)

    assert len(identities_of(manager)) == 1
    assert client.get("/admin/auth-systems").status_code == 200


# -- unlinking ---------------------------------------------------------------------------------


def _linked_identity(member: User) -> Identity:
    db.session.expire_all()
    return db.session.scalar(sa.select(Identity).where(Identity.user_id == member.id))


def test_a_member_with_a_password_unlinks_a_system_and_loses_its_groups(
    client, auth, member, provider, webinars
):
    """Unlink removes the binding and the groups from that system; audited as the member."""
    auth.login_member()
    link(client, provider)
    identity = _linked_identity(member)

    resp = client.post(f"/account/sign-in-methods/{identity.id}/unlink")

    assert resp.headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    assert "is no longer linked to your account" in page
    assert identities_of(member) == [] and count(GroupMembership) == 0
    (event,) = events(audit.IDENTITY_UNLINKED)
    assert event.actor_id == member.id and event.details["by"] == "member"
    assert f"Link {provider.system.name}" in page


def test_the_only_way_to_sign_in_cannot_be_unlinked(client, oidc, sso):
    """An SSO-only account: no Unlink button, and a crafted POST is refused, nothing written."""
    sso.sign_in(oidc)
    jane = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    identity = _linked_identity(jane)
    page = client.get("/account").get_data(as_text=True)
    assert "Your only way to sign in" in page
    assert f"/account/sign-in-methods/{identity.id}/unlink" not in page

    client.post(f"/account/sign-in-methods/{identity.id}/unlink")

    assert "is your only way to sign in" in client.get("/account").get_data(as_text=True)
    assert len(identities_of(jane)) == 1
    assert events(audit.IDENTITY_UNLINKED) == []


def test_a_password_unusable_under_remote_login_only_does_not_count(client, auth, member, oidc):
    """Remote Login Only: a member's password signs nobody in, so the last system stays."""
    auth.login_member()
    link(client, oidc)
    oidc.system.login_mode = "remote_only"
    db.session.commit()
    identity = _linked_identity(member)

    client.post(f"/account/sign-in-methods/{identity.id}/unlink")

    assert len(identities_of(member)) == 1


def test_a_member_cannot_unlink_someone_elses_identity(client, auth, member, create_user, oidc):
    """Another account's binding id: refused, the binding stays."""
    other = create_user(email="other@example.com")
    db.session.add(Identity(user_id=other.id, auth_system_id=oidc.system.id, subject="x-1"))
    db.session.commit()
    identity = _linked_identity(other)
    auth.login_member()

    client.post(f"/account/sign-in-methods/{identity.id}/unlink")

    assert "not linked to your account" in client.get("/account").get_data(as_text=True)
    assert len(identities_of(other)) == 1


def test_unlinking_the_system_that_gave_the_manager_role_takes_the_role_back(
    client, auth, member, manager, oidc
):
    """A role from the provider's groups does not outlive the binding that gave it."""
    auth.login_member()
    link(client, oidc)
    member = db.session.get(User, member.id)
    member.role, member.manager_role_system_id = "manager", oidc.system.id
    db.session.commit()
    identity = _linked_identity(member)

    client.post(f"/account/sign-in-methods/{identity.id}/unlink")

    db.session.expire_all()
    assert db.session.get(User, member.id).role == "member"
    assert identities_of(member) == []


def test_a_refused_link_names_a_reference_and_leaks_no_code_or_token(
    app, client, auth, member, provider, logs
):
    """The refusal's page text carries a reference found in the log, and no issued secret."""
    SSO(app.test_client()).sign_in(provider)
    auth.login_member()

    link(client, provider)

    page = client.get("/account").get_data(as_text=True)
    reference = re.search(r"reference ([0-9a-f]{8})", page).group(1)
    assert f"SSO link failed ref={reference}" in logs.text
    assert_no_secret(provider, page, logs.text)


def test_a_managers_unlink_on_the_users_page_is_audited_with_the_manager_as_actor(
    manager_client, manager, create_user, oidc
):
    """The admin's unlink (reused by the member's) now leaves an audit event too."""
    person = create_user(email="other@example.com")
    db.session.add(Identity(user_id=person.id, auth_system_id=oidc.system.id, subject="x-1"))
    db.session.commit()
    identity = _linked_identity(person)

    manager_client.post(f"/admin/users/{person.id}/identities/{identity.id}/unlink")

    assert identities_of(person) == []
    (event,) = events(audit.IDENTITY_UNLINKED)
    assert event.actor_id == manager.id and event.details == {"user_id": person.id, "by": "manager"}
