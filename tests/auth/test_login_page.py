"""The login page's modes, the break-glass local sign-in, and managers trying local-only systems."""

from __future__ import annotations

import sqlalchemy as sa

from portal.extensions import db
from portal.models import LoginAttempt
from tests.support.accounts import MANAGER_PASSWORD, MEMBER_PASSWORD


def system(create_auth_system, mode: str, name: str = "Example IdP", **fields):
    return create_auth_system(
        name=name, login_mode=mode, login_label=f"Continue with {name}", **fields
    )


def test_local_login_only_hides_the_sso_link(client, create_auth_system):
    """Local Login Only: the form, and no SSO link for the public."""
    system(create_auth_system, "local_only")
    page = client.get("/login").get_data(as_text=True)
    assert 'name="password"' in page
    assert "Continue with Example IdP" not in page
    assert "/sso/example-idp/login" not in page


def test_local_and_remote_shows_form_and_labelled_link(client, create_auth_system):
    """Local and Remote Logins: the form plus a link labelled with the Alternate Login Label."""
    system(create_auth_system, "local_and_remote")
    page = client.get("/login").get_data(as_text=True)
    assert 'name="password"' in page
    assert "Continue with Example IdP" in page
    assert 'href="/sso/example-idp/login"' in page


def test_disabled_systems_are_not_offered(client, create_auth_system):
    """A disabled system's link is not shown."""
    system(create_auth_system, "local_and_remote", enabled=False)
    assert "Continue with" not in client.get("/login").get_data(as_text=True)


def test_remote_only_with_a_single_system_goes_straight_to_it(client, create_auth_system):
    """Remote Login Only with one such system: /login redirects to its start, keeping next."""
    system(create_auth_system, "remote_only")
    resp = client.get("/login?next=/account")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/sso/example-idp/login?next=/account"


def test_remote_only_with_several_systems_shows_links_and_no_form(client, create_auth_system):
    """Remote Login Only with two linkable systems: both links, no local form."""
    system(create_auth_system, "remote_only", name="First IdP")
    system(create_auth_system, "local_and_remote", name="Second IdP")
    page = client.get("/login").get_data(as_text=True)
    assert "Continue with First IdP" in page and "Continue with Second IdP" in page
    assert 'name="password"' not in page


def test_members_cannot_sign_in_locally_while_remote_only(client, create_auth_system, member):
    """A member's password is refused on /login and /login/local under Remote Login Only."""
    system(create_auth_system, "remote_only")
    data = {"email": "member@example.com", "password": MEMBER_PASSWORD}
    for url in ("/login", "/login/local"):
        resp = client.post(url, data=data)
        assert resp.status_code == 200
        assert "Members sign in with the identity provider" in resp.get_data(as_text=True)
    with client.session_transaction() as sess:
        assert "_user_id" not in sess


def test_break_glass_lets_a_manager_in_while_remote_only(client, create_auth_system, manager):
    """/login/local always shows the form and signs a community manager in."""
    system(create_auth_system, "remote_only")
    page = client.get("/login/local").get_data(as_text=True)
    assert 'name="password"' in page and "Community manager sign-in" in page
    resp = client.post(
        "/login/local",
        data={"email": "manager@example.com", "password": MANAGER_PASSWORD, "next": "/account"},
    )
    assert resp.status_code == 302 and resp.headers["Location"] == "/account"
    assert client.get("/account").status_code == 200


def test_members_sign_in_locally_when_no_remote_only_system(client, create_auth_system, member):
    """Without Remote Login Only, members keep local sign-in."""
    system(create_auth_system, "local_and_remote")
    resp = client.post("/login", data={"email": "member@example.com", "password": MEMBER_PASSWORD})
    assert resp.status_code == 302


def test_local_only_system_cannot_be_started_by_the_public(
    client, create_auth_system, auth, member
):
    """A Local Login Only system is a 404 for anonymous visitors and members."""
    system(create_auth_system, "local_only")
    assert client.get("/sso/example-idp/login").status_code == 404
    auth.login_member()
    assert client.get("/sso/example-idp/login").status_code == 404
    assert db.session.scalar(sa.select(LoginAttempt)) is None


def test_a_manager_may_try_a_local_only_system(client, create_auth_system, auth, manager):
    """Community managers can start the flow of a Local Login Only system."""
    system(create_auth_system, "local_only")
    auth.login_manager()
    resp = client.get("/sso/example-idp/login")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("https://idp.example.com/authorize?")
    assert db.session.scalar(sa.select(LoginAttempt)) is not None


def test_open_redirects_are_refused_as_next(client, create_auth_system):
    """A `next` pointing off-site is dropped at start."""
    system(create_auth_system, "local_and_remote")
    client.get("/sso/example-idp/login?next=//evil.example/")
    assert db.session.scalar(sa.select(LoginAttempt)).next_path == ""
