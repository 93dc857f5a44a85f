"""*Test this configuration*: a manager's traced sign-in that signs nobody in (issue 5, item 3)."""

from __future__ import annotations

import base64
import re
from html import unescape
from urllib.parse import urlsplit

import sqlalchemy as sa
from werkzeug.wrappers import Response

from portal.extensions import db
from portal.models import (
    AuditEvent,
    AuthSystem,
    GroupMembership,
    Identity,
    LoginAttempt,
    MemberGroup,
    User,
)
from portal.services.group_mapping import add_rule
from tests.support.accounts import MANAGER_PASSWORD
from tests.support.providers import CLIENT_ID, CLIENT_SECRET, Provider, reconfigure
from tests.support.rows import count
from tests.support.servers import App, LoopbackServer

RESULT = re.compile(r"/admin/auth-systems/(\d+)/test/(\d+)$")


def run_test(client, provider: Provider, username: str = "jdoe"):
    """Start a test from the admin, sign in at the provider; return (result URL, page text)."""
    resp = client.post(f"/admin/auth-systems/{provider.system.id}/test")
    assert resp.status_code == 302, resp.status_code
    back = provider.idp.authorize_redirect(resp.headers["Location"], username)
    parts = urlsplit(back)
    resp = client.get(f"{parts.path}?{parts.query}")
    assert resp.status_code == 302, resp.status_code
    result_url = resp.headers["Location"]
    assert RESULT.search(result_url), result_url
    page = client.get(result_url)
    assert page.status_code == 200
    return result_url, unescape(page.get_data(as_text=True))


def assert_no_secrets(provider: Provider, text: str) -> None:
    for secret in provider.issued_secrets():
        assert secret not in text, f"secret {secret[:4]}... on the test page"


def rows() -> tuple[int, int, int]:
    """Return (users, identities, group memberships)."""
    db.session.expire_all()
    return count(User), count(Identity), count(GroupMembership)


def test_trace_shows_requests_documents_and_mapping_and_signs_nobody_in(provider, manager_client):
    """The page lists each request, the documents and each field's value; no account changes."""
    before = rows()
    _url, page = run_test(manager_client, provider)

    assert "The sign-in works" in page
    assert provider.idp.token_url in page
    assert "Status 200" in page
    profile_url = provider.idp.member_url if provider.kind == "ams" else provider.idp.userinfo_url
    assert profile_url in page
    assert "jane.doe@example.org" in page
    assert "Would create a new account." in page
    assert "[redacted]" in page
    assert_no_secrets(provider, page)
    assert rows() == before
    # The manager is still the one signed in.
    account = manager_client.get("/account").get_data(as_text=True)
    assert "manager@example.com" in account


def test_works_in_local_login_only_and_while_disabled(oidc, manager_client):
    """A system hidden from members, and even a disabled one, can still be tested."""
    reconfigure(oidc, login_mode="local_only", enabled=False, login_label="")
    _url, page = run_test(manager_client, oidc)
    assert "The sign-in works" in page


def test_tree_values_carry_their_jmespath(ams, manager_client):
    """Each value of the profile tree carries the JMESPath that picks it."""
    _url, page = run_test(manager_client, ams)
    assert 'data-path="Member.Emails[0].Address"' in page
    assert 'data-path="Member.Name.First"' in page


def test_existing_account_upgrade_and_conflict_are_previewed(oidc, manager_client, create_user):
    """A local account with Jane's email: an upgrade when allowed, else the conflict."""
    create_user(email="jane.doe@example.org", username="jane-local", password="pw-123456")
    _url, page = run_test(manager_client, oidc)
    assert "An account with the same Email Address already exists" in page

    reconfigure(oidc, params={"email": {"path": "email", "can_upgrade": True}})
    before = rows()
    _url, page = run_test(manager_client, oidc)
    assert "Would connect the existing account" in page
    assert "(matched on Email Address)" in page
    assert rows() == before


def test_missing_must_supply_field_is_reported(oidc, manager_client):
    """A must-supply field the provider lacks is named, and the outcome says it would fail."""
    reconfigure(oidc, params={"username": {"path": "nickname", "must_supply": True}})
    _url, page = run_test(manager_client, oidc)
    assert "The sign-in would fail" in page
    assert "the provider did not supply Username" in page
    assert "Provider must supply this value: sign-in would fail" in page


def test_groups_it_would_grant_are_listed_but_not_written(provider, manager_client):
    """The mapping rules' groups are named; no membership is created."""
    group = MemberGroup(name="Webinar viewers", name_key="webinar viewers", description="")
    db.session.add(group)
    db.session.commit()
    add_rule(provider.system, "groups_contains", "webinars", group.id)
    before = rows()
    _url, page = run_test(manager_client, provider)
    assert "Webinar viewers" in page
    assert rows() == before


def test_a_failing_token_endpoint_is_shown_in_the_trace(provider, manager_client):
    """A 500 from the token API: the failed request and the error code are on the page."""
    provider.idp.faults.set("token", "status", 500)
    _url, page = run_test(manager_client, provider)
    assert "The sign-in failed" in page
    assert "Status 500" in page
    assert "provider_http_error" in page
    assert_no_secrets(provider, page)


def test_saving_paths_from_the_result_page(ams, manager_client):
    """A path copied into a field is saved; an invalid one is refused beside its field."""
    url, _page = run_test(manager_client, ams)
    data = {
        "access_token_path": "result.AccessKey",
        "user_id": "Member.Id",
        "email": "Member.Emails[0].Address",
    }
    resp = manager_client.post(f"{url}/paths", data=data)
    assert resp.status_code == 302
    db.session.expire_all()
    system = db.session.get(AuthSystem, ams.system.id)
    assert system.param("email").path == "Member.Emails[0].Address"
    assert system.param("username").path == ""

    resp = manager_client.post(f"{url}/paths", data={**data, "email": "Member.["})
    assert resp.status_code == 400
    assert "Email Address: not a valid path" in unescape(resp.get_data(as_text=True))
    db.session.expire_all()
    assert db.session.get(AuthSystem, ams.system.id).param("email").path == data["email"]


def test_members_and_visitors_cannot_start_a_test(oidc, client, auth, member):
    """Anonymous visitors go to the login page; members get 403; no attempt is recorded."""
    url = f"/admin/auth-systems/{oidc.system.id}/test"
    assert "/login" in client.post(url).headers["Location"]
    auth.login_member()
    assert client.post(url).status_code == 403


def test_a_test_callback_needs_the_manager(oidc, manager_client, auth):
    """If the manager signed out meanwhile, the test callback signs nobody in."""
    resp = manager_client.post(f"/admin/auth-systems/{oidc.system.id}/test")
    back = oidc.idp.authorize_redirect(resp.headers["Location"], "jdoe")
    auth.logout()
    parts = urlsplit(back)
    before = rows()
    resp = manager_client.get(f"{parts.path}?{parts.query}")
    assert resp.status_code == 404
    assert "Sign-in method not available" in resp.get_data(as_text=True)
    assert rows() == before


def test_a_result_is_shown_only_to_the_browser_that_ran_it(oidc, manager_client, app):
    """Another manager's browser gets 404 for the result page."""
    url, _page = run_test(manager_client, oidc)
    other = app.test_client()
    resp = other.post("/login", data={"email": "manager@example.com", "password": MANAGER_PASSWORD})
    assert resp.status_code == 302
    assert other.get(url).status_code == 404


def test_a_test_that_cannot_start_says_why_and_records_nothing(oidc, manager_client):
    """An undecryptable client secret: back to the system's page with a message, no attempt."""
    oidc.system.client_secret_encrypted = "not-a-fernet-token"
    db.session.commit()
    resp = manager_client.post(f"/admin/auth-systems/{oidc.system.id}/test")
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith(f"/admin/auth-systems/{oidc.system.id}/edit")
    page = unescape(manager_client.get(resp.headers["Location"]).get_data(as_text=True))
    assert "The test could not start: Sign-in with this identity provider is not available" in page
    assert count(LoginAttempt) == 0


# -- issue 12: redaction by value, internal addresses, and the audit of every run -------------


def audit_events(kind: str) -> list[AuditEvent]:
    db.session.expire_all()
    query = sa.select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)
    return list(db.session.scalars(query))


def test_a_provider_echoing_the_secret_and_token_under_innocuous_keys_shows_neither(
    ams, manager_client
):
    """The profile repeats the Client Secret and the access key under keys that look harmless,
    inside longer strings, and even as a key: the result page shows none of them."""
    idp = ams.idp
    issued: list[str] = []
    lookup_key, profile_for = idp.lookup_key, idp.profile_for

    def recording_lookup(key):
        issued.append(key)
        return lookup_key(key)

    def echoing_profile(person):
        doc = profile_for(person)
        key = issued[-1]
        doc["note"] = CLIENT_SECRET
        doc["data"] = {"x": key, "said": f"your key is {key}!", key: "key as a key"}
        doc["basic"] = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        return doc

    idp.lookup_key, idp.profile_for = recording_lookup, echoing_profile
    _url, page = run_test(manager_client, ams)
    assert "The sign-in works" in page
    assert issued, "the provider's profile endpoint was not called"
    for secret in [*issued, CLIENT_SECRET, *ams.issued_secrets()]:
        assert secret not in page, f"secret {secret[:4]}... on the test page"
    assert 'data-path="note"' in page
    assert 'data-path="data.x"' in page


def test_an_internal_token_url_is_never_called_in_production(oidc, manager_client, app):
    """finding 4: in production, a token URL on an internal address (stored straight in the
    database, past the form's checks) is refused before any byte is sent, so the test page
    cannot show an internal service's answer."""
    internal = App()
    internal.routes["/admin/secrets"] = lambda r: Response(
        '{"internal": "do not show"}', content_type="application/json"
    )
    server = LoopbackServer(internal).start()
    try:
        oidc.system.token_url = server.url + "/admin/secrets"
        db.session.commit()
        app.config["PORTAL_ENV"] = "production"
        app.config["PORTAL_ALLOWED_PRIVATE_NETWORKS"] = ()
        _url, page = run_test(manager_client, oidc)
    finally:
        app.config["PORTAL_ENV"] = "development"
        server.stop()
    assert internal.requests == []
    assert "The sign-in failed" in page
    assert "provider_address_refused" in page
    assert "do not show" not in page
    assert_no_secrets(oidc, page)


def test_a_successful_run_is_audited_as_a_test_run(oidc, manager_client, manager):
    """Test this configuration, success: one test_run row with the manager, the system, the
    outcome and the reference the page shows; no sign-in row of any kind."""
    _url, page = run_test(manager_client, oidc)
    assert "The sign-in works" in page
    (event,) = audit_events("test_run")
    assert event.actor_id == manager.id
    assert event.auth_system_id == oidc.system.id
    assert event.details["outcome"] == "success"
    assert event.details["reference"] == event.reference
    assert f"reference <code>{event.reference}</code>" in page
    assert audit_events("sign_in_failed") == []
    assert audit_events("sign_in") == []
    rows_text = repr([(e.details, e.reference) for e in audit_events("test_run")])
    for secret in oidc.issued_secrets():
        assert secret not in rows_text


def test_a_failed_run_is_audited_with_its_error_code(provider, manager_client, manager):
    """A run that fails at the token API is a test_run with the error code, not a failed
    sign-in."""
    provider.idp.faults.set("token", "status", 500)
    _url, page = run_test(manager_client, provider)
    assert "The sign-in failed" in page
    (event,) = audit_events("test_run")
    assert (event.actor_id, event.details["outcome"]) == (manager.id, "provider_http_error")
    assert audit_events("sign_in_failed") == []
    screen = manager_client.get("/admin/audit", query_string={"kind": "test_run"})
    text = unescape(screen.get_data(as_text=True))
    assert "Test this configuration run" in text
    assert "The sign-in would fail (error code <code>provider_http_error</code>)" in text
    assert event.reference in text


def test_a_run_that_would_be_refused_is_audited_with_why(oidc, manager_client):
    """A must-supply field the provider lacks: the outcome names the refusal."""
    reconfigure(oidc, params={"username": {"path": "nickname", "must_supply": True}})
    run_test(manager_client, oidc)
    (event,) = audit_events("test_run")
    assert event.details["outcome"] == "required_field_missing"


def test_a_refused_test_callback_is_a_test_run_not_a_failed_sign_in(oidc, manager_client, manager):
    """The test callback replayed: the state is refused, the page says so with a reference,
    and the audit log has a test_run with outcome state_invalid, never a sign_in_failed."""
    resp = manager_client.post(f"/admin/auth-systems/{oidc.system.id}/test")
    back = oidc.idp.authorize_redirect(resp.headers["Location"], "jdoe")
    parts = urlsplit(back)
    callback = f"{parts.path}?{parts.query}"
    assert manager_client.get(callback).status_code == 302
    before = rows()
    resp = manager_client.get(callback)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert "expired or was already used" in page
    success, refused = audit_events("test_run")
    assert success.details["outcome"] == "success"
    assert refused.details["outcome"] == "state_invalid"
    assert refused.actor_id == manager.id
    assert f"<code>{refused.reference}</code>" in page
    assert audit_events("sign_in_failed") == []
    assert rows() == before
