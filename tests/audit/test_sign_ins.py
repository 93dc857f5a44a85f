"""Sign-ins and failed sign-ins in the audit log."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from portal.extensions import db
from portal.models import User
from tests.support.accounts import MANAGER_PASSWORD, MEMBER_PASSWORD
from tests.support.failures import assert_failure_page
from tests.support.pages import screen_rows
from tests.support.rows import events, raw_audit_rows


def test_sso_sign_in_records_the_member_and_the_system(oidc, sso, audit_page):
    """Jane signing in through the provider appears as an SSO sign-in through that system."""
    resp = sso.sign_in(oidc)
    assert resp.status_code == 302
    jane = db.session.query(User).filter_by(email="jane.doe@example.org").one()
    (event,) = events("sign_in")
    assert (event.actor_id, event.actor_label) == (jane.id, "jane.doe@example.org")
    assert (event.auth_system_id, event.auth_system_name) == (oidc.system.id, "Loopback OIDC")
    (row,) = screen_rows(audit_page(kind="sign_in"))
    assert "SSO sign-in jane.doe@example.org Loopback OIDC" in row
    for secret in oidc.issued_secrets():
        assert secret not in raw_audit_rows()


def test_failed_sign_in_records_the_reference_shown_to_the_member(oidc, sso, logs, audit_page):
    """The reference on the member's failure page finds the failure on the audit screen."""
    oidc.idp.faults.set("token", "oauth_error", "invalid_grant")
    path = sso.authorize(oidc)
    resp = sso.callback(path)
    code = parse_qs(urlsplit(path).query)["code"][0]
    reference = assert_failure_page(
        resp, logs, "refused the sign-in request", "oauth_error", oidc.issued_secrets() + [code]
    )
    (event,) = events("sign_in_failed")
    assert event.reference == reference
    assert event.auth_system_name == "Loopback OIDC"
    assert event.details == {
        "code": "oauth_error",
        "summary": "Sign-in failed",
        "slug": "loopback-oidc",
        "provider_error": "invalid_grant",
        "http_status": 400,
    }
    raw = raw_audit_rows()
    assert "Simulated error" not in raw, "the provider's own text reached the audit log"
    for secret in oidc.issued_secrets() + [code]:
        assert secret not in raw
    (row,) = screen_rows(audit_page(kind="sign_in_failed"))
    assert f"Failed SSO sign-in not signed in Loopback OIDC {reference}" in row
    assert "error code oauth_error" in row


def test_hostile_error_parameter_is_not_stored(oidc, sso, logs):
    """An error= value that is not an OAuth error code is left out of the audit row."""
    path = sso.authorize(oidc)
    parts = urlsplit(path)
    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    params.update(error="<script>alert(1)</script> call 555-0100", error_description="x")
    resp = sso.callback(f"{parts.path}?{urlencode(params)}")
    assert resp.status_code == 400
    (event,) = events("sign_in_failed")
    assert event.details["code"] == "provider_error"
    assert "provider_error" not in event.details
    assert "script" not in raw_audit_rows()


def test_local_sign_in_is_recorded(client, auth, member, audit_page):
    """A member signing in with a password appears as a local sign-in on the Sign in page."""
    auth.login("member@example.com", MEMBER_PASSWORD)
    rows = [r for r in screen_rows(audit_page(kind="sign_in_local")) if "member@" in r]
    assert len(rows) == 1
    assert "Local sign-in member@example.com" in rows[0]
    assert "On the Sign in page." in rows[0]


def test_wrong_password_records_no_sign_in(client, auth, member):
    """A refused password is not a sign-in."""
    auth.login("member@example.com", "wrong-password")
    assert [e for e in events("sign_in_local") if e.actor_id == member.id] == []


def test_break_glass_sign_in_is_labelled(client, manager, oidc, audit_page):
    """A manager using the break-glass page while Remote Login Only is in force is marked so."""
    oidc.system.login_mode = "remote_only"
    db.session.commit()
    resp = client.post(
        "/login/local", data={"email": "manager@example.com", "password": MANAGER_PASSWORD}
    )
    assert resp.status_code == 302
    event = events("sign_in_local")[-1]
    assert event.details == {"break_glass_page": True, "remote_only": True}
    rows = screen_rows(audit_page(kind="sign_in_local"))
    assert any(
        "On the break-glass sign-in page, while Remote Login Only is in force" in r for r in rows
    )
