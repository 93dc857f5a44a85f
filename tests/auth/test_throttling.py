"""Throttling, written as the attacks: password guessing, floods of SSO starts and callbacks,
telling accounts apart by the answer or the time, and managers' heavy actions in a loop.

Each test reads the limits from the app's settings, so it holds for any defaults.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import g
from limits import parse_many

from portal.extensions import db
from portal.models import ROLE_MANAGER, AuditEvent, LoginAttempt, User
from portal.services import accounts, audit
from portal.services.login_attempts import MAX_OPEN_ATTEMPTS_PER_BROWSER
from tests.support.accounts import MANAGER_PASSWORD, MEMBER_PASSWORD
from tests.support.rows import users_and_identities

WRONG = "Wrong-Guess-7731"
OTHER_IP = {"REMOTE_ADDR": "203.0.113.77"}
CSRF = re.compile(r'<input[^>]*name="csrf_token"[^>]*>|<meta[^>]*csrf[^>]*>')


def first_limit(app, setting: str) -> int:
    """Return the amount of the shortest window of a ``PORTAL_RATELIMIT_*`` setting."""
    return min(parse_many(app.config[setting]), key=lambda item: item.get_expiry()).amount


def events(kind: str) -> list[AuditEvent]:
    db.session.expire_all()
    query = sa.select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)
    return list(db.session.scalars(query))


def signed_in(client) -> bool:
    with client.session_transaction() as sess:
        return "_user_id" in sess


def assert_readable_429(resp, title: str) -> None:
    """A 429 in words: a title, what to do, when to retry, and the Retry-After header."""
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0
    page = resp.get_data(as_text=True)
    assert f"<h1>{title}</h1>" in page
    assert "try again" in page.lower()
    assert re.search(r"try again in about \d+ (second|minute|hour)", page)
    assert "per 1 minute" not in page  # not the limiter's own wording


# -- local sign-in: guessing one account's password ------------------------------------------


@pytest.mark.parametrize("url", ["/login", "/login/local"])
def test_twelve_wrong_passwords_lock_the_account_and_audit_one_lockout(app, client, member, url):
    """12 wrong passwords in a row: refused with the form until the limit, then 429s.

    Each checked guess is audited by account (never with the password typed), and the
    lockout once; the refused requests check no password and write nothing.
    """
    allowed = first_limit(app, "PORTAL_RATELIMIT_LOGIN_ACCOUNT")
    statuses = [
        client.post(url, data={"email": "member@example.com", "password": WRONG}).status_code
        for _ in range(12)
    ]
    assert statuses == [200] * allowed + [429] * (12 - allowed)

    failed = events(audit.SIGN_IN_LOCAL_FAILED)
    assert len(failed) == allowed
    assert {e.actor_id for e in failed} == {member.id}
    assert {e.details["reason"] for e in failed} == {"wrong_password"}
    lockouts = events(audit.LOCKOUT)
    assert len(lockouts) == 1
    assert lockouts[0].actor_id == member.id
    assert lockouts[0].details["retry_after"] > 0
    stored = json.dumps([[e.actor_label, e.details] for e in failed + lockouts])
    assert WRONG not in stored


def test_right_password_during_a_lockout_is_refused_and_starts_no_session(app, client, member):
    """Once locked, even the right password gets the readable 429 page and no session."""
    for _ in range(first_limit(app, "PORTAL_RATELIMIT_LOGIN_ACCOUNT")):
        client.post("/login", data={"email": "member@example.com", "password": WRONG})

    resp = client.post("/login", data={"email": "member@example.com", "password": MEMBER_PASSWORD})

    assert_readable_429(resp, "Sign-in paused")
    assert not signed_in(client)
    assert client.get("/account").status_code == 302
    assert events(audit.SIGN_IN_LOCAL) == []
    db.session.refresh(member)
    assert member.last_login_at is None


def test_the_lockout_follows_the_account_not_its_spelling_nor_the_address(app, client, member):
    """Guesses under other spellings of the email, from another address, lock the same account."""
    spellings = ["member@example.com", "MEMBER@Example.com", " Member@EXAMPLE.com "]
    for i in range(first_limit(app, "PORTAL_RATELIMIT_LOGIN_ACCOUNT")):
        email = spellings[i % len(spellings)]
        client.post("/login", data={"email": email, "password": WRONG})

    other = app.test_client()
    resp = other.post(
        "/login/local",
        data={"email": "member@example.com", "password": MEMBER_PASSWORD},
        environ_base=OTHER_IP,
    )
    assert resp.status_code == 429
    assert not signed_in(other)


def test_unknown_emails_are_audited_under_the_typed_email_and_lock_the_same(app, client):
    """An unknown email is audited under the email typed (normalized) and locks out alike."""
    allowed = first_limit(app, "PORTAL_RATELIMIT_LOGIN_ACCOUNT")
    for _ in range(allowed + 1):
        last = client.post("/login", data={"email": "Nobody@Example.COM", "password": WRONG})
    assert last.status_code == 429

    failed = events(audit.SIGN_IN_LOCAL_FAILED)
    assert len(failed) == allowed
    assert {(e.actor_id, e.actor_label, e.details["reason"]) for e in failed} == {
        (None, "nobody@example.com", "unknown_account")
    }
    assert [(e.actor_id, e.actor_label) for e in events(audit.LOCKOUT)] == [
        (None, "nobody@example.com")
    ]


def test_one_address_guessing_many_accounts_is_stopped(app, client, create_user):
    """Password spraying from one address: 429 once the per-address limit is reached.

    /login and /login/local share the budget; another address is not affected.
    """
    allowed = first_limit(app, "PORTAL_RATELIMIT_LOGIN_IP")
    statuses = []
    for i in range(allowed + 3):
        url = "/login" if i % 2 else "/login/local"
        resp = client.post(url, data={"email": f"victim{i}@example.com", "password": WRONG})
        statuses.append(resp.status_code)
    assert statuses == [200] * allowed + [429] * 3
    assert_readable_429(resp, "Too many requests")
    assert len(events(audit.SIGN_IN_LOCAL_FAILED)) == allowed

    create_user(email="elsewhere@example.com")
    resp = client.post(
        "/login",
        data={"email": "elsewhere@example.com", "password": MEMBER_PASSWORD},
        environ_base=OTHER_IP,
    )
    assert resp.status_code == 302


def test_a_members_own_successful_sign_ins_never_lock_them(app, client, auth, member):
    """Only failures count: a member signing in and out many times is never paused."""
    for _ in range(first_limit(app, "PORTAL_RATELIMIT_LOGIN_ACCOUNT") + 2):
        assert auth.login_member().status_code == 302
        auth.logout()
    assert events(audit.LOCKOUT) == []


# -- local sign-in: telling accounts apart --------------------------------------------------


def remote_only(create_auth_system):
    return create_auth_system(name="Example IdP", login_mode="remote_only")


def body_without_csrf(resp) -> bytes:
    return CSRF.sub("", resp.get_data(as_text=True)).encode()


@pytest.mark.parametrize("url", ["/login", "/login/local"])
def test_remote_only_member_gets_the_same_page_for_right_and_wrong_password(
    client, create_auth_system, member, url
):
    """Remote Login Only: a member's right and wrong passwords give byte-identical pages.

    The page is the one an unknown email gets too, and no session starts.
    """
    remote_only(create_auth_system)
    right = client.post(url, data={"email": "member@example.com", "password": MEMBER_PASSWORD})
    wrong = client.post(url, data={"email": "member@example.com", "password": WRONG})

    assert right.status_code == wrong.status_code == 200
    assert body_without_csrf(right) == body_without_csrf(wrong)
    assert "Members sign in with the identity provider" in right.get_data(as_text=True)
    assert not signed_in(client)
    assert {e.details["reason"] for e in events(audit.SIGN_IN_LOCAL_FAILED)} == {
        "members_not_allowed"
    }


def test_remote_only_still_lets_a_manager_break_glass(client, create_auth_system, manager):
    """Remote Login Only: the manager's right password on /login/local signs in."""
    remote_only(create_auth_system)
    resp = client.post(
        "/login/local", data={"email": "manager@example.com", "password": MANAGER_PASSWORD}
    )
    assert resp.status_code == 302
    assert signed_in(client)


@pytest.fixture
def hash_checks(monkeypatch) -> list[str]:
    """Record the hash of every password check local sign-in makes."""
    checked: list[str] = []
    real = accounts.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        checked.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(accounts, "check_password_hash", counting)
    return checked


def test_unknown_email_costs_one_dummy_password_check(client, hash_checks):
    """An unknown email is checked against the dummy hash, as long as a real account takes."""
    client.post("/login", data={"email": "nobody@example.com", "password": WRONG})
    assert hash_checks == [accounts.dummy_password_hash()]


def test_account_without_password_costs_one_dummy_password_check(client, create_user, hash_checks):
    """An SSO-only account (no local password) is checked against the dummy hash too."""
    user = create_user(email="sso-only@example.com")
    user.password_hash = None
    db.session.commit()
    client.post("/login", data={"email": "sso-only@example.com", "password": WRONG})
    assert hash_checks == [accounts.dummy_password_hash()]


def test_remote_only_checks_the_role_before_the_password(
    client, create_auth_system, member, manager, hash_checks
):
    """Remote Login Only: a member's real hash is never checked; a manager's is."""
    remote_only(create_auth_system)
    client.post("/login", data={"email": "member@example.com", "password": MEMBER_PASSWORD})
    assert hash_checks == [accounts.dummy_password_hash()]
    hash_checks.clear()
    client.post("/login", data={"email": "manager@example.com", "password": MANAGER_PASSWORD})
    assert hash_checks == [manager.password_hash]


def test_the_dummy_hash_is_made_like_real_ones(member):
    """Same method and cost as a stored password, so the check takes as long."""
    method = member.password_hash.split("$", 1)[0]
    assert accounts.dummy_password_hash().split("$", 1)[0] == method


# -- SSO: floods of starts and callbacks ----------------------------------------------------


@pytest.fixture
def system(create_auth_system):
    return create_auth_system(name="Example IdP", login_mode="local_and_remote")


@pytest.fixture
def small_start_limit(app):
    """Hold unfinished SSO sign-ins per address to 10 (the default is sized for a venue)."""
    app.config["PORTAL_RATELIMIT_SSO_START"] = "10/10 minutes"
    return 10


def test_a_flood_of_bogus_callbacks_is_throttled_and_audited_once(app, client, system, caplog):
    """50 bogus callbacks from one address: failure pages up to the limit, then 429s.

    Every failure page still has its reference in the log; the audit log gets one row.
    """
    caplog.set_level(logging.INFO)
    allowed = first_limit(app, "PORTAL_RATELIMIT_SSO_CALLBACK")
    responses = [
        client.get(f"/sso/{system.slug}/callback?state=bogus{i}&code=stolen{i}") for i in range(50)
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [400] * allowed + [429] * (50 - allowed)
    assert_readable_429(responses[-1], "Too many requests")

    assert len(events(audit.SIGN_IN_FAILED)) == 1
    logged = [r.getMessage() for r in caplog.records if "SSO sign-in failed ref=" in r.getMessage()]
    assert len(logged) == allowed


def test_failed_callbacks_are_audited_once_a_minute_per_address(client, system):
    """The one-row-a-minute budget is per source address: another address gets its own row."""
    for _ in range(3):
        client.get(f"/sso/{system.slug}/callback?state=bogus")
        client.get(f"/sso/{system.slug}/callback?state=bogus", environ_base=OTHER_IP)
    assert len(events(audit.SIGN_IN_FAILED)) == 2


def open_attempts() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(LoginAttempt))


def test_fifty_sso_starts_from_one_browser_keep_a_few_attempts_then_429(
    client, system, small_start_limit
):
    """50 SSO starts from one browser: at most the cap of open attempts, then 429s."""
    responses = [client.get(f"/sso/{system.slug}/login") for _ in range(50)]
    statuses = [r.status_code for r in responses]
    assert statuses == [302] * small_start_limit + [429] * (50 - small_start_limit)
    assert_readable_429(responses[-1], "Too many requests")
    assert open_attempts() == MAX_OPEN_ATTEMPTS_PER_BROWSER


def state_hash(resp) -> str:
    state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
    return hashlib.sha256(state.encode()).hexdigest()


def test_a_new_tab_drops_only_the_oldest_open_attempt(client, system):
    """A member with tabs: starting one more attempt than the cap drops the oldest only."""
    started = [
        state_hash(client.get(f"/sso/{system.slug}/login"))
        for _ in range(MAX_OPEN_ATTEMPTS_PER_BROWSER + 1)
    ]
    kept = set(db.session.scalars(sa.select(LoginAttempt.state_hash)))
    assert kept == set(started[1:])


def test_cookieless_sso_starts_are_bounded_by_the_address_limit(app, system, small_start_limit):
    """Without a cookie every start is a new browser: the per-address limit bounds the rows."""
    statuses = [app.test_client().get(f"/sso/{system.slug}/login").status_code for _ in range(40)]
    assert statuses.count(302) == small_start_limit
    assert open_attempts() == small_start_limit
    # Another address is not held back by this one's flood.
    other = app.test_client().get(f"/sso/{system.slug}/login", environ_base=OTHER_IP)
    assert other.status_code == 302


def test_a_crowd_behind_one_address_signs_in_past_the_start_limit(oidc, sso, small_start_limit):
    """A keynote behind one NAT: finished sign-ins leave the count, so none is refused."""
    for _ in range(2 * small_start_limit + 1):
        resp = sso.sign_in(oidc)
        assert resp.status_code == 302 and resp.headers["Location"] == "/"
        sso.client.post("/logout")
    assert users_and_identities() == (1, 1)


def test_successful_callbacks_never_count_toward_the_callback_limit(app, oidc, sso):
    """Only failed callbacks fill the callback window: members signing in are never slowed."""
    allowed = first_limit(app, "PORTAL_RATELIMIT_SSO_CALLBACK")
    for _ in range(allowed + 1):
        assert sso.sign_in(oidc).headers["Location"] == "/"
        sso.client.post("/logout")
    assert sso.client.get(f"/sso/{oidc.system.slug}/callback?state=bogus").status_code == 400


# -- managers' heavy actions ----------------------------------------------------------------


def post_as(client, url: str, **kwargs):
    """POST from ``client``: its own user, not the one Flask-Login cached in the shared ``g``.

    The ``app`` fixture keeps one app context (and so one ``g``) around every request.
    """
    g.pop("_login_user", None)
    return client.post(url, **kwargs)


@pytest.fixture
def managers(app, client, auth, manager, create_user):
    """Return two clients, each signed in as a different community manager."""
    create_user(email="second@example.com", password=MANAGER_PASSWORD, role=ROLE_MANAGER)
    auth.login_manager()
    second = app.test_client()
    second.post("/login", data={"email": "second@example.com", "password": MANAGER_PASSWORD})
    return client, second


def test_test_runs_are_limited_per_manager(app, managers, system):
    """A manager starting test runs in a loop gets 429; another manager still can."""
    first, second = managers
    allowed = first_limit(app, "PORTAL_RATELIMIT_MANAGER")
    url = f"/admin/auth-systems/{system.id}/test"
    statuses = [post_as(first, url).status_code for _ in range(allowed + 2)]
    assert statuses == [302] * allowed + [429] * 2
    assert post_as(second, url).status_code == 302
    test_attempts = sa.select(sa.func.count()).where(LoginAttempt.is_test.is_(True))
    assert db.session.scalar(test_attempts) <= MAX_OPEN_ATTEMPTS_PER_BROWSER * 2


def test_imports_are_limited_per_manager(app, managers):
    """A manager posting imports in a loop gets 429; another manager still can."""
    first, second = managers
    allowed = first_limit(app, "PORTAL_RATELIMIT_MANAGER")

    def post(client):
        data = {"file": (io.BytesIO(b'{"not": "an export"}'), "x.json")}
        return post_as(
            client, "/admin/auth-systems/import", data=data, content_type="multipart/form-data"
        )

    statuses = [post(first).status_code for _ in range(allowed + 2)]
    assert statuses == [200] * allowed + [429] * 2
    assert post(second).status_code == 200
    g.pop("_login_user", None)
    assert first.get("/admin/auth-systems/import").status_code == 200


def test_lockouts_show_on_the_audit_screen(app, client, member, manager, auth):
    """The audit screen says what a wrong password and a lockout were, by account."""
    for _ in range(first_limit(app, "PORTAL_RATELIMIT_LOGIN_ACCOUNT")):
        client.post("/login", data={"email": "member@example.com", "password": WRONG})
    auth.login_manager()
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "Wrong local password" in page and "Sign-in locked out" in page
    assert "Local sign-in paused for" in page
    assert WRONG not in page


def test_users_table_untouched_by_guessing(app, client, member):
    """Guessing changes nothing on the account itself."""
    before = member.password_hash
    for _ in range(8):
        client.post("/login", data={"email": "member@example.com", "password": WRONG})
    db.session.expire_all()
    assert db.session.get(User, member.id).password_hash == before
