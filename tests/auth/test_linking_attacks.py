"""Attacks on account linking: each sends the attacker's requests and checks nothing was written.

Findings 1 (manager takeover through "User can upgrade"), 2 (account pre-hijack) and 15c
(identifiers compared with ``lower()`` only).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuditEvent, GroupMembership, Identity, MemberGroup, User
from portal.services import account_resolution, audit
from portal.services.account_resolution import LinkConfirmationRequired, resolve_account
from portal.services.accounts import AccountError, NewUser, identifier_key
from portal.services.accounts import create_user as create_account
from portal.services.group_mapping import add_rule
from portal.sso.engine import SSOResult
from portal.sso.errors import AccountConflict, EmailNotVerified
from tests.support.accounts import MANAGER_PASSWORD, MEMBER_PASSWORD
from tests.support.providers import reconfigure
from tests.support.rows import users_and_identities

KELVIN = "\u212a"  # KELVIN SIGN: lower() keeps it, NFKC makes it the letter K


def identities() -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(Identity))


def linked_events() -> int:
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.kind == audit.ACCOUNT_LINKED)
    )


def assert_not_signed_in(client) -> None:
    assert client.get("/admin/auth-systems").status_code != 200
    assert client.get("/account").status_code != 200


# -- finding 1: manager takeover --------------------------------------------------------------


def test_manager_takeover_by_an_email_nobody_verified_is_refused(oidc, sso, client, manager):
    """Provider returns Manager@Example.com without email_verified: refused page, no link."""
    oidc.idp.members.update("jdoe", email="Manager@Example.com", email_verified=None)
    reconfigure(oidc, params={"email": {"can_upgrade": True}})

    resp = sso.sign_in(oidc)

    assert resp.status_code == 403
    assert "has not verified your email address" in resp.get_data(as_text=True)
    assert users_and_identities() == (1, 0)
    assert_not_signed_in(client)


@pytest.mark.parametrize("trusted_by", ["email_verified claim", "system setting"])
def test_manager_takeover_by_a_vouched_email_needs_the_managers_password(
    oidc, sso, client, manager, trusted_by
):
    """A vouched email matching a manager: a confirmation page; only the password links."""
    if trusted_by == "email_verified claim":
        oidc.idp.members.update("jdoe", email="Manager@Example.com", email_verified=True)
        reconfigure(oidc, params={"email": {"can_upgrade": True}})
    else:
        oidc.idp.members.update("jdoe", email="Manager@Example.com", email_verified=None)
        reconfigure(oidc, params={"email": {"can_upgrade": True}}, trusts_email=True)

    resp = sso.sign_in(oidc)

    assert resp.status_code == 302 and resp.headers["Location"] == "/sso/link/confirm"
    page = client.get("/sso/link/confirm").get_data(as_text=True)
    assert "Connect your account" in page and "manager@example.com" in page
    assert 'name="email"' not in page  # the account is fixed, not chosen by the visitor
    assert identities() == 0
    assert_not_signed_in(client)

    resp = client.post("/sso/link/confirm", data={"password": "guessed-password"})
    assert resp.status_code == 401
    assert "The password is not correct. Nothing was connected." in resp.get_data(as_text=True)
    assert identities() == 0 and linked_events() == 0
    assert_not_signed_in(client)

    resp = client.post("/sso/link/confirm", data={"password": MANAGER_PASSWORD})
    assert resp.status_code == 302
    identity = db.session.scalar(sa.select(Identity))
    assert identity.user_id == manager.id and identity.auth_system_id == oidc.system.id
    assert linked_events() == 1
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.kind == audit.ACCOUNT_LINKED))
    assert event.actor_id == manager.id and event.details["confirmed_with_password"] is True
    assert client.get("/admin/auth-systems").status_code == 200


def test_guessing_the_managers_password_on_the_confirmation_page_locks_the_account(
    oidc, sso, client, manager
):
    """The confirmation page is no password oracle: failures count, audit and lock like /login."""
    oidc.idp.members.update("jdoe", email="Manager@Example.com", email_verified=True)
    reconfigure(oidc, params={"email": {"can_upgrade": True}})
    assert sso.sign_in(oidc).headers["Location"] == "/sso/link/confirm"

    statuses = [
        client.post("/sso/link/confirm", data={"password": f"guess-{n}"}).status_code
        for n in range(7)
    ]
    # Even the right password is refused while the account is locked.
    locked = client.post("/sso/link/confirm", data={"password": MANAGER_PASSWORD})

    assert statuses == [401] * 5 + [429] * 2
    assert locked.status_code == 429
    assert identities() == 0 and linked_events() == 0
    assert_not_signed_in(client)
    failed = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.kind == audit.SIGN_IN_LOCAL_FAILED)
    ).all()
    assert len(failed) == 5 and all(e.actor_id == manager.id for e in failed)
    assert all(MANAGER_PASSWORD not in repr(e.details) for e in failed)


def test_cancelled_link_leaves_nothing_behind(oidc, sso, client, member):
    """Cancel: no link, no session, and the pending link can't be confirmed afterwards."""
    oidc.idp.members.update("jdoe", email="member@example.com")
    reconfigure(oidc, params={"email": {"can_upgrade": True}})
    assert sso.sign_in(oidc).headers["Location"] == "/sso/link/confirm"

    resp = client.post("/sso/link/cancel")
    assert resp.status_code == 302 and resp.headers["Location"] == "/login"
    resp = client.post("/sso/link/confirm", data={"password": MEMBER_PASSWORD})
    assert resp.status_code == 400
    assert identities() == 0
    assert_not_signed_in(client)


def test_expired_pending_link_cannot_be_confirmed(oidc, sso, client, member, monkeypatch):
    """A pending link older than its lifetime links nothing, even with the right password."""
    monkeypatch.setattr(account_resolution, "PENDING_LINK_LIFETIME", timedelta(seconds=-1))
    oidc.idp.members.update("jdoe", email="member@example.com")
    reconfigure(oidc, params={"email": {"can_upgrade": True}})
    sso.sign_in(oidc)

    resp = client.post("/sso/link/confirm", data={"password": MEMBER_PASSWORD})

    assert resp.status_code == 400
    assert "expired" in resp.get_data(as_text=True)
    assert identities() == 0
    assert_not_signed_in(client)


def test_pending_link_is_not_readable_in_the_session_cookie(app, oidc, sso, client, member):
    """The pending link rides in the (signed, not secret) session cookie encrypted."""
    oidc.idp.members.update("jdoe", email="member@example.com")
    reconfigure(oidc, params={"email": {"can_upgrade": True}})
    sso.sign_in(oidc)
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    data = app.session_interface.get_signing_serializer(app).loads(cookie.value)
    sealed = data["sso_pending_link"]
    subject = oidc.idp.members["jdoe"].sub
    assert subject not in sealed and "member@example.com" not in sealed


def test_manager_without_password_is_never_linked(oidc, sso, client, manager):
    """A vouched email matching a password-less manager: refused, nothing linked."""
    manager.password_hash = None
    db.session.commit()
    oidc.idp.members.update("jdoe", email="manager@example.com", email_verified=True)
    reconfigure(oidc, params={"email": {"can_upgrade": True}})

    resp = sso.sign_in(oidc)

    assert resp.status_code == 403
    assert "can only be connected by signing in to it" in resp.get_data(as_text=True)
    assert identities() == 0
    assert_not_signed_in(client)


def test_username_upgrade_without_trusted_usernames_is_refused(provider, sso, client, create_user):
    """A provider username matching a local account links only if the system trusts usernames."""
    local = create_user(email="someone@example.org", username="jdoe")
    local.password_hash = None
    db.session.commit()
    reconfigure(provider, params={"username": {"can_upgrade": True}})

    resp = sso.sign_in(provider)

    assert resp.status_code == 403
    assert "vouches for usernames" in resp.get_data(as_text=True)
    assert users_and_identities() == (1, 0)
    assert_not_signed_in(client)


def test_test_screen_shows_refused_and_confirmation_outcomes(oidc, client, auth, manager):
    """The test screen says 'refused' or 'needs confirmation' instead of linking or crashing."""
    from tests.auth.test_test_screen import run_test

    auth.login_manager()
    oidc.idp.members.update("jdoe", email="manager@example.com", email_verified=None)
    reconfigure(oidc, params={"email": {"can_upgrade": True}})
    _url, page = run_test(client, oidc)
    assert "The sign-in would fail" in page and "has not verified your email address" in page

    oidc.idp.members.update("jdoe", email_verified=True)
    _url, page = run_test(client, oidc)
    assert "only once the member confirms by signing in to that account" in page
    assert identities() == 0


# -- finding 2: account pre-hijack ------------------------------------------------------------


def test_pre_hijack_by_typing_the_victims_email_gets_the_attacker_nothing(
    provider, sso, client, auth, member
):
    """Attacker types the victim's email: only pending; the victim's sign-in gets a new account."""
    webinars = MemberGroup(name="Webinars", name_key="webinars", description="")
    db.session.add(webinars)
    db.session.commit()
    reconfigure(provider, params={"email": {"can_upgrade": True}}, trusts_email=True)
    add_rule(provider.system, "groups_contains", "webinars", webinars.id)

    auth.login_member()
    resp = client.post("/account", data={"email": "Jane.Doe@example.org", "first_name": "Evil"})
    assert resp.status_code == 302
    db.session.expire_all()
    attacker = db.session.get(User, member.id)
    assert attacker.email == "member@example.com"
    assert attacker.email_pending == "jane.doe@example.org"
    auth.logout()

    resp = sso.sign_in(provider)

    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    db.session.expire_all()
    victim = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    assert victim is not None and victim.id != member.id
    assert db.session.scalar(sa.select(Identity)).user_id == victim.id
    attacker = db.session.get(User, member.id)
    assert attacker.identities == [] and attacker.email == "member@example.com"
    rows = db.session.scalars(
        sa.select(GroupMembership.user_id).where(GroupMembership.group_id == webinars.id)
    ).all()
    assert rows == [victim.id]  # the gated group went to the victim only


def test_pre_hijack_by_squatting_the_victims_username_does_not_block_the_victim(
    provider, sso, client, auth, member
):
    """A member-typed username yields to a provider's: the victim gets it, the squatter repicks."""
    auth.login_member()
    assert client.post("/account", data={"username": "JDoe"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(User, member.id).username_source == "member"
    auth.logout()

    resp = sso.sign_in(provider)

    assert resp.status_code == 302  # not 409
    db.session.expire_all()
    victim = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    assert victim.username == "jdoe" and victim.username_source == "provider"
    squatter = db.session.get(User, member.id)
    assert squatter.username is None and squatter.pending_fields == ["username"]
    assert squatter.identities == []
    client.post("/logout")
    auth.login_member()
    assert client.get("/account").headers["Location"] == "/complete-profile"


def test_member_typed_username_is_never_a_link_even_when_usernames_are_trusted(
    provider, sso, client, auth, member
):
    """Trusted usernames still never link onto one a member typed: a new account is made."""
    auth.login_member()
    client.post("/account", data={"username": "jdoe"})
    auth.logout()
    reconfigure(provider, params={"username": {"can_upgrade": True}}, trusts_username=True)

    resp = sso.sign_in(provider)

    assert resp.status_code == 302
    identity = db.session.scalar(sa.select(Identity))
    assert identity.user_id != member.id
    assert users_and_identities() == (2, 1)


# -- finding 15c: KELVIN SIGN and other look-alikes --------------------------------------------


def test_identifier_key_folds_compatibility_and_case():
    """NFKC plus casefold: KELVIN SIGN, full-width letters and ß compare like their plain forms."""
    assert identifier_key(f"{KELVIN}ate") == "kate"
    assert identifier_key("\uff2bate") == "kate"
    assert identifier_key("Stra\u00dfe") == "strasse"
    assert identifier_key("  Kate ") == "kate"


def test_kelvin_sign_username_is_refused_as_taken(client, auth, member, create_user):
    """A local 'kate' exists: typing '\u212aate' on the account page is refused as taken."""
    create_user(email="kate@example.org", username="kate")
    auth.login_member()

    resp = client.post("/account", data={"username": f"{KELVIN}ate"})

    assert "That username is already taken." in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, member.id).username == "member"


def test_kelvin_sign_username_is_refused_when_creating_an_account(app, create_user):
    """create_user (the CLI's create-admin) refuses a look-alike of an existing username."""
    create_user(email="kate@example.org", username="kate")
    with pytest.raises(AccountError, match="already taken"):
        create_account(
            NewUser(email="new@example.org", password="long-enough-1", username=f"{KELVIN}ate")
        )
    with pytest.raises(AccountError, match="already exists"):
        create_account(
            NewUser(email=f"{KELVIN}ate@example.org", password="long-enough-1", username="other")
        )


def _result(email: str) -> SSOResult:
    return SSOResult(
        subject="sub-k",
        fields={"user_id": "sub-k", "email": email, "first_name": "K", "username": None},
        missing_required=[],
        token_response={},
        profile={},
    )


def test_kelvin_sign_provider_email_matches_the_local_account(create_auth_system, create_user):
    """A provider email with a KELVIN SIGN is the local kate@...: it matches, trust rules apply."""
    local = create_user(email="kate@example.org", username="kate")
    system = create_auth_system()
    with pytest.raises(AccountConflict):
        resolve_account(system, _result(f"{KELVIN}ate@example.org"))
    system.param("email").can_upgrade = True
    db.session.commit()
    with pytest.raises(EmailNotVerified):
        resolve_account(system, _result(f"{KELVIN}ate@Example.org"))
    system.trusts_email = True
    db.session.commit()
    with pytest.raises(LinkConfirmationRequired) as info:
        resolve_account(system, _result(f"{KELVIN}ATE@example.org"))
    assert info.value.link.user_id == local.id
    assert users_and_identities() == (1, 0)
