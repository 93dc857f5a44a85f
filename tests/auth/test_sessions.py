"""Sessions that end: copied cookies after sign-out, role changes and disabling; timeouts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from itsdangerous import BadSignature

from portal.auth import sessions
from portal.extensions import db
from portal.models import AuditEvent, User
from portal.services import audit
from portal.services.users import change_password
from tests.support.accounts import MANAGER_PASSWORD, MEMBER_PASSWORD
from tests.support.rows import users_and_identities

START = 1_800_000_000  # a fixed "now" (2027-01-15), moved by the tests


class Clock:
    """A clock the session checks read; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now

    def advance(self, *, minutes: float = 0, hours: float = 0) -> None:
        self.now += minutes * 60 + hours * 3600


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """Replace the sessions' clock with one the test moves."""
    clock = Clock()
    monkeypatch.setattr(sessions, "now", clock)
    return clock


def sign_in(client: FlaskClient, email: str, password: str) -> None:
    resp = client.post("/login", data={"email": email, "password": password})
    assert resp.status_code == 302, f"signing in as {email} answered {resp.status_code}"


def copy_session_cookie(source: FlaskClient, app: Flask) -> FlaskClient:
    """Return a new client (the attacker's) that holds a copy of ``source``'s session cookie."""
    cookie = source.get_cookie("session")
    assert cookie is not None, "the signed-in client holds no session cookie"
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    return thief


def is_signed_out(client: FlaskClient) -> bool:
    """Tell whether /account sends this client to the sign-in page."""
    resp = client.get("/account")
    return resp.status_code == 302 and "/login" in resp.headers["Location"]


def events(kind: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(sa.select(AuditEvent).where(AuditEvent.kind == kind).order_by("id"))
    )


def generation(user: User) -> int:
    db.session.expire_all()
    return db.session.get(User, user.id).session_generation


# --- copied cookies -----------------------------------------------------------------------


def test_a_cookie_copied_before_sign_out_opens_nothing_after_it(app, client, manager):
    """Attack: copy a manager's cookie, let them sign out, replay it: /admin is closed."""
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    thief = copy_session_cookie(client, app)
    # The copy works while the session lives.
    assert thief.get("/admin/auth-systems").status_code == 200
    client.post("/logout")
    resp = thief.get("/admin/auth-systems")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert is_signed_out(thief)
    assert is_signed_out(client)


def test_a_session_cookie_of_the_old_shape_opens_nothing(app, client, member):
    """A cookie naming the user by id alone (no generation) is refused."""
    with client.session_transaction() as sess:
        sess["_user_id"] = str(member.id)
        sess[sessions.SIGNED_IN_AT] = sess[sessions.SEEN_AT] = int(sessions.now())
    assert is_signed_out(client)


def test_demoting_a_manager_ends_their_sessions(app, client, manager, create_user):
    """Attack: a copied cookie of a demoted manager no longer opens /admin; audited."""
    other = create_user(email="second@example.com", password="second-password-1", role="manager")
    victim = app.test_client()
    sign_in(victim, "second@example.com", "second-password-1")
    thief = copy_session_cookie(victim, app)
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    resp = client.post(f"/admin/users/{other.id}/role", data={"role": "member"})
    assert resp.status_code == 302
    for holder in (victim, thief):
        resp = holder.get("/admin/auth-systems")
        assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    [changed] = events(audit.ROLE_CHANGED)
    assert changed.actor_id == manager.id
    assert changed.details["user_id"] == other.id
    assert (changed.details["old_role"], changed.details["new_role"]) == ("manager", "member")
    [revoked] = events(audit.SESSIONS_REVOKED)
    assert revoked.actor_id == manager.id and revoked.details["reason"] == "role_changed"
    assert revoked.details["user_id"] == other.id
    # The demoting manager's own session goes on.
    assert client.get("/admin/auth-systems").status_code == 200
    log = client.get("/admin/audit").get_data(as_text=True)
    assert "second@example.com: Community manager → Member" in log
    assert "Every session of second@example.com ended: Role changed" in log


def test_promoting_a_member_ends_their_sessions(app, client, manager, member):
    """A member's sessions opened before their promotion end; the change is audited."""
    before = generation(member)
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    client.post(f"/admin/users/{member.id}/role", data={"role": "manager"})
    assert generation(member) == before + 1
    [changed] = events(audit.ROLE_CHANGED)
    assert (changed.details["old_role"], changed.details["new_role"]) == ("member", "manager")


def test_a_manager_demoting_themselves_is_signed_out(app, client, manager, create_user):
    """Demoting yourself ends your own session too: you sign in again as a member."""
    create_user(email="second@example.com", password="second-password-1", role="manager")
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    resp = client.post(
        f"/admin/users/{manager.id}/role", data={"role": "member"}, follow_redirects=True
    )
    assert "Please sign in again" in resp.get_data(as_text=True)
    assert is_signed_out(client)


def test_a_disabled_managers_role_does_not_count_as_the_last_one(client, manager, create_user):
    """With the only other manager disabled, the last active manager cannot demote themselves."""
    other = create_user(email="second@example.com", password="second-password-1", role="manager")
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    client.post(f"/admin/users/{other.id}/disable")
    resp = client.post(
        f"/admin/users/{manager.id}/role", data={"role": "member"}, follow_redirects=True
    )
    assert "This is the last community manager" in resp.get_data(as_text=True)
    db.session.refresh(manager)
    assert manager.is_manager


# --- disabling ----------------------------------------------------------------------------


def test_disabling_a_user_ends_their_sessions_and_refuses_local_sign_in(
    app, client, manager, member
):
    """Attack: a disabled member's copied cookie opens nothing, and their password no longer
    signs in; the disabling and the revocation are audited with the manager's name."""
    victim = app.test_client()
    sign_in(victim, "member@example.com", MEMBER_PASSWORD)
    thief = copy_session_cookie(victim, app)
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    resp = client.post(f"/admin/users/{member.id}/disable", follow_redirects=True)
    assert "is disabled and signed out everywhere" in resp.get_data(as_text=True)
    assert is_signed_out(victim) and is_signed_out(thief)

    sign_ins = len(events(audit.SIGN_IN_LOCAL))
    again = app.test_client()
    resp = again.post("/login", data={"email": "member@example.com", "password": MEMBER_PASSWORD})
    assert resp.status_code == 403
    assert "This account is disabled" in resp.get_data(as_text=True)
    with again.session_transaction() as sess:
        assert "_user_id" not in sess
    assert is_signed_out(again)
    assert len(events(audit.SIGN_IN_LOCAL)) == sign_ins

    [disabled] = events(audit.USER_DISABLED)
    assert disabled.actor_id == manager.id and disabled.details["user_id"] == member.id
    [revoked] = events(audit.SESSIONS_REVOKED)
    assert revoked.details["reason"] == "disabled" and revoked.actor_id == manager.id


def test_an_enabled_user_signs_in_again(app, client, manager, member):
    """Enabling lets the member sign in again; it is audited."""
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    client.post(f"/admin/users/{member.id}/disable")
    client.post(f"/admin/users/{member.id}/enable")
    again = app.test_client()
    sign_in(again, "member@example.com", MEMBER_PASSWORD)
    assert not is_signed_out(again)
    [enabled] = events(audit.USER_ENABLED)
    assert enabled.actor_id == manager.id and enabled.details["user_id"] == member.id


def test_a_manager_cannot_disable_themselves(client, manager):
    """Disabling your own account is refused with a message; nothing changes."""
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    resp = client.post(f"/admin/users/{manager.id}/disable", follow_redirects=True)
    assert "You cannot disable your own account" in resp.get_data(as_text=True)
    db.session.refresh(manager)
    assert manager.disabled_at is None
    assert client.get("/admin/auth-systems").status_code == 200
    assert events(audit.USER_DISABLED) == []


def test_the_user_page_offers_disable_and_enable(client, manager, member):
    """The admin user page shows the sign-in state and the button that changes it."""
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    page = client.get(f"/admin/users/{member.id}").get_data(as_text=True)
    assert "Disable sign-in" in page and "Allowed" in page
    client.post(f"/admin/users/{member.id}/disable")
    page = client.get(f"/admin/users/{member.id}").get_data(as_text=True)
    assert "Enable sign-in" in page and "Disabled since" in page
    own = client.get(f"/admin/users/{manager.id}").get_data(as_text=True)
    assert "Disable sign-in" not in own


def test_a_disabled_member_cannot_sign_in_through_sso(app, client, oidc, sso, manager):
    """Attack: a disabled member completes the provider's sign-in; Portal refuses the session
    with a clear page, and no sign-in is recorded."""
    assert sso.sign_in(oidc).status_code == 302
    user = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    client.post("/logout")
    admin = app.test_client()
    sign_in(admin, "manager@example.com", MANAGER_PASSWORD)
    admin.post(f"/admin/users/{user.id}/disable")
    counts = users_and_identities()
    sign_ins = len(events(audit.SIGN_IN))

    resp = sso.sign_in(oidc)
    assert resp.status_code == 403
    assert "This account is disabled" in resp.get_data(as_text=True)
    assert is_signed_out(client)
    with client.session_transaction() as sess:
        assert "_user_id" not in sess
    assert users_and_identities() == counts
    assert len(events(audit.SIGN_IN)) == sign_ins


# --- sign out everywhere, password changes ------------------------------------------------


def test_sign_out_everywhere_ends_a_second_browsers_session(app, client, member):
    """*Sign out everywhere* on the account page ends the session of another browser; audited."""
    laptop = app.test_client()
    sign_in(laptop, "member@example.com", MEMBER_PASSWORD)
    sign_in(client, "member@example.com", MEMBER_PASSWORD)
    page = client.get("/account").get_data(as_text=True)
    assert "Sign out everywhere" in page and "/account/sign-out-everywhere" in page
    resp = client.post("/account/sign-out-everywhere", follow_redirects=True)
    assert "signed out on every device" in resp.get_data(as_text=True)
    assert is_signed_out(laptop) and is_signed_out(client)
    [revoked] = events(audit.SESSIONS_REVOKED)
    assert revoked.actor_id == member.id
    assert revoked.details["reason"] == "sign_out_everywhere"


def test_sign_out_everywhere_needs_the_csrf_token(app_config, database_url, member):
    """A cross-site form cannot sign a member out everywhere: without the token, 400."""
    client, _token = _signed_in_with_csrf_checked(app_config)
    before = generation(member)
    resp = client.post("/account/sign-out-everywhere")
    assert resp.status_code == 400
    assert generation(member) == before
    assert client.get("/account").status_code == 200


def test_the_first_page_after_sign_in_signs_out_with_the_token_the_sign_in_minted(
    app_config, database_url, member
):
    """The page after sign-in sends no new cookie, and its sign-out form's token works.

    The session's CSRF token is minted with the sign-in's own cookie (a fresh session gets a
    fresh token); the first page reuses it instead of writing the cookie again.
    """
    client, old_token = _signed_in_with_csrf_checked(app_config)
    page = client.get("/account")
    wrote_cookie = "Set-Cookie" in page.headers  # (never the header itself in a failure)
    assert page.status_code == 200 and not wrote_cookie
    html = page.get_data(as_text=True)
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html).group(1)
    before = generation(member)
    resp = client.post("/account/sign-out-everywhere", data={"csrf_token": token})
    assert resp.status_code == 302
    assert generation(member) == before + 1
    assert is_signed_out(client)


def test_a_password_change_ends_every_session(app, client, member):
    """Sessions signed in with the old password end when it changes; audited."""
    sign_in(client, "member@example.com", MEMBER_PASSWORD)
    change_password(member, "a-new-password-42")
    assert is_signed_out(client)
    [revoked] = events(audit.SESSIONS_REVOKED)
    assert revoked.details["reason"] == "password_changed" and revoked.actor_id is None
    sign_in(app.test_client(), "member@example.com", "a-new-password-42")


def test_the_set_password_command_ends_every_session(app, client, runner, manager):
    """`flask set-password` changes a password and ends the account's sessions."""
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    result = runner.invoke(
        args=["set-password", "--email", "MANAGER@example.com"],
        input="a-new-password-42\na-new-password-42\n",
    )
    assert result.exit_code == 0, result.output
    assert "a-new-password-42" not in result.output
    assert is_signed_out(client)
    sign_in(app.test_client(), "manager@example.com", "a-new-password-42")
    result = runner.invoke(
        args=["set-password", "--email", "nobody@example.com"],
        input="long-enough-1\nlong-enough-1\n",
    )
    assert result.exit_code != 0 and "No account" in result.output


# --- idle and absolute lifetimes ----------------------------------------------------------


def test_a_manager_is_signed_out_after_30_idle_minutes(clock, client, manager):
    """Idle for 30 minutes, a manager's next request finds them signed out, with a message."""
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    clock.advance(minutes=29)
    assert client.get("/admin/auth-systems").status_code == 200
    clock.advance(minutes=29)  # 58 minutes in, but active 29 minutes ago
    assert client.get("/admin/auth-systems").status_code == 200
    clock.advance(minutes=30)
    resp = client.get("/admin/auth-systems", follow_redirects=True)
    assert "signed out after 30 minutes without activity" in resp.get_data(as_text=True)
    assert is_signed_out(client)


def test_a_member_is_signed_out_after_4_idle_hours(clock, client, member):
    """A member's idle limit is 4 hours (a long recording plays without requests)."""
    sign_in(client, "member@example.com", MEMBER_PASSWORD)
    clock.advance(hours=3, minutes=59)
    assert client.get("/account").status_code == 200
    clock.advance(hours=4)
    resp = client.get("/account", follow_redirects=True)
    assert "signed out after 4 hours without activity" in resp.get_data(as_text=True)
    assert is_signed_out(client)


def test_an_active_managers_session_ends_after_12_hours(clock, client, manager):
    """Even while active, a manager signs in again after 12 hours."""
    sign_in(client, "manager@example.com", MANAGER_PASSWORD)
    for _ in range(11 * 3):  # a request every 20 minutes for 11 hours
        clock.advance(minutes=20)
        assert client.get("/admin/auth-systems").status_code == 200
    clock.advance(hours=1)
    resp = client.get("/admin/auth-systems", follow_redirects=True)
    assert "reached its limit of 12 hours" in resp.get_data(as_text=True)
    assert is_signed_out(client)


def test_an_active_members_session_ends_after_7_days(clock, client, member):
    """Even while active, a member signs in again after 7 days."""
    sign_in(client, "member@example.com", MEMBER_PASSWORD)
    for _ in range(6 * 8):  # a request every 3 hours for 6 days
        clock.advance(hours=3)
        assert client.get("/account").status_code == 200
    clock.advance(hours=24)
    resp = client.get("/account", follow_redirects=True)
    assert "reached its limit of 7 days" in resp.get_data(as_text=True)
    assert is_signed_out(client)


def test_lifetimes_are_settings(app, clock, client, member):
    """PORTAL_MEMBER_IDLE_MINUTES changes the member's idle limit."""
    app.config["PORTAL_MEMBER_IDLE_MINUTES"] = 5
    sign_in(client, "member@example.com", MEMBER_PASSWORD)
    clock.advance(minutes=6)
    assert is_signed_out(client)


def test_last_seen_is_written_at_most_once_a_minute(clock, client, member):
    """Requests within a minute leave the cookie alone; a later one refreshes last-seen."""
    sign_in(client, "member@example.com", MEMBER_PASSWORD)
    resp = client.get("/account")  # the first page: its form's CSRF token came with the sign-in
    wrote_cookie = "Set-Cookie" in resp.headers  # (never the header itself in a failure)
    assert resp.status_code == 200 and not wrote_cookie
    clock.advance(minutes=0.5)
    resp = client.get("/account")
    wrote_cookie = "Set-Cookie" in resp.headers
    assert resp.status_code == 200 and not wrote_cookie
    clock.advance(minutes=1)
    resp = client.get("/account")
    wrote_cookie = "Set-Cookie" in resp.headers
    assert wrote_cookie
    with client.session_transaction() as sess:
        assert sess[sessions.SEEN_AT] == int(clock.now)
        assert sess[sessions.SIGNED_IN_AT] == START


def test_a_session_without_sign_in_stamps_is_refused(client, member):
    """A session that names a valid user but never went through sign-in is signed out."""
    with client.session_transaction() as sess:
        sess["_user_id"] = member.get_id()
    assert is_signed_out(client)


# -- the session cookie's encoding: plain JSON, derived keys kept ------------------------------


def test_a_cookie_written_in_flasks_tagged_form_is_still_read(app: Flask):
    """Cookies issued before the plain-JSON encoding (tuples, tagged) open as they were."""
    contents = {"_user_id": "7:0", "_flashes": [("info", "Saved.")], "ids": [1, 2]}
    old = SecureCookieSessionInterface().get_signing_serializer(app)
    assert old is not None
    cookie = old.dumps(contents)

    read = sessions.CookieSessions().get_signing_serializer(app).loads(cookie)

    assert read == contents


def test_a_value_that_is_not_plain_json_keeps_its_type(app: Flask):
    """Should a library put bytes or a date in the session, it comes back as it went in."""
    contents = {"when": datetime(2026, 12, 3, 9, 0, tzinfo=UTC), "raw": b"\x00\xff"}
    serializer = sessions.CookieSessions().get_signing_serializer(app)

    assert serializer.loads(serializer.dumps(contents)) == contents


def test_a_cookie_signed_with_another_key_is_refused(app: Flask):
    """Keeping derived keys must not let a cookie signed with another secret key through."""
    forged = sessions.CookieSessions()
    app.secret_key, real_key = "an-attackers-guess-of-the-key-0123456789", app.secret_key
    try:
        cookie = forged.get_signing_serializer(app).dumps({"_user_id": "1:0"})
    finally:
        app.secret_key = real_key

    with pytest.raises(BadSignature):
        sessions.CookieSessions().get_signing_serializer(app).loads(cookie)


def test_a_csrf_token_of_before_the_sign_in_is_refused_after_it(app_config, database_url, member):
    """Sign-in gives the session a new CSRF secret: a token a page showed before it no longer works.

    An attacker who planted a session (and read its token) before the member signed in
    cannot post in the member's name afterwards.
    """
    client, old_token = _signed_in_with_csrf_checked(app_config)
    before = generation(member)
    resp = client.post("/account/sign-out-everywhere", data={"csrf_token": old_token})
    assert resp.status_code == 400
    assert generation(member) == before
    assert client.get("/account").status_code == 200


def test_the_csrf_token_templates_show_is_the_one_flask_wtf_checks(app):
    """Portal's ``csrf_token()`` signs as Flask-WTF does: its ``validate_csrf`` accepts the token,
    and refuses it under another secret key or for another session."""
    from flask import session
    from flask_wtf.csrf import generate_csrf, validate_csrf
    from wtforms.validators import ValidationError

    from portal.auth.sessions import csrf_token

    with app.test_request_context("/"):
        token = csrf_token()
        assert token == csrf_token() == generate_csrf()  # one token per request
        validate_csrf(token)
        with pytest.raises(ValidationError):
            validate_csrf(token, secret_key="another key")
        session["csrf_token"] = "0" * 40  # another session's secret
        with pytest.raises(ValidationError):
            validate_csrf(token)
    assert app.jinja_env.globals["csrf_token"] is csrf_token


def test_a_page_signs_its_csrf_token_without_deriving_a_key(app, monkeypatch):
    """The token a page shows comes from Portal's ``csrf_token()``, whose signing key is derived
    once per secret key; Flask-WTF's ``generate_csrf`` builds a serializer and derives its key
    for every page. Flask-WTF's template context (``csrf_token``) must not shadow Portal's."""
    from flask import g, render_template_string
    from itsdangerous import Signer

    derived = []
    original = Signer.derive_key

    def counting(self, secret_key=None):
        derived.append(self.salt)
        return original(self, secret_key)

    monkeypatch.setattr(Signer, "derive_key", counting)
    with app.test_request_context("/"):
        render_template_string("{{ csrf_token() }}")  # the key of this secret, derived once
    with app.test_request_context("/"):
        g.pop("csrf_token", None)  # a new page: g holds no token yet
        derived.clear()
        token = render_template_string("{{ csrf_token() }}")
        assert token == sessions.csrf_token()
    assert derived == []


def _signed_in_with_csrf_checked(app_config) -> tuple[FlaskClient, str]:
    """Sign the member in on an app that checks CSRF tokens; return the client and the token
    the sign-in page showed (before the sign-in)."""
    from portal import create_app

    app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    client = app.test_client()
    login_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page).group(1)
    client.post(
        "/login",
        data={"email": "member@example.com", "password": MEMBER_PASSWORD, "csrf_token": token},
    )
    return client, token
