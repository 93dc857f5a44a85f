"""Every way the SSO callback can fail: a member-facing page, a logged reference, nothing written.

Each test checks the page text, that the reference on the page is in exactly one log line
with the error code, that no secret, code or token is in the page or the logs, and that no
user or identity was written.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import LoginAttempt
from portal.models.base import utcnow
from tests.support.failures import assert_failure_page
from tests.support.rows import users_and_identities


def replace_param(path: str, **changes: str | None) -> str:
    """Return a callback path with query parameters changed (``None`` removes one)."""
    parts = urlsplit(path)
    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return f"{parts.path}?{urlencode(params)}"


def code_of(path: str) -> str:
    return parse_qs(urlsplit(path).query).get("code", [""])[-1]


def fail(provider, sso, logs, message, code, *, path=None, client=None, status=None):
    """Run the callback and check the failure page; return the response."""
    path = path or sso.authorize(provider)
    resp = sso.callback(path, client=client)
    if status is not None:
        assert resp.status_code == status
    secrets = provider.issued_secrets() + [code_of(path)]
    assert_failure_page(resp, logs, message, code, secrets)
    assert users_and_identities() == (0, 0)
    return resp


# -- the provider misbehaves at the token endpoint ------------------------------------------

TOKEN_FAULTS = [
    ("status", 500, "answered with an error", "provider_http_error"),
    ("garbage", None, "could not understand", "provider_bad_response"),
    ("html", None, "could not understand", "provider_bad_response"),
    ("oversized", None, "too large", "response_too_large"),
    ("oversized_chunked", None, "too large", "response_too_large"),
    ("oauth_error", "invalid_grant", "refused the sign-in request", "oauth_error"),
    ("no_token", None, "did not send an access token", "token_missing"),
    ("drop", None, "could not be reached", "provider_unreachable"),
]


@pytest.mark.parametrize(("kind", "value", "message", "code"), TOKEN_FAULTS)
def test_token_endpoint_faults_end_on_a_friendly_page(
    provider, sso, logs, kind, value, message, code
):
    """A misbehaving token endpoint gives a typed error page and writes nothing."""
    provider.idp.faults.set("token", kind, value)
    fail(provider, sso, logs, message, code)


@pytest.mark.parametrize(
    ("kind", "value", "message", "code"),
    [
        ("status", 500, "answered with an error", "provider_http_error"),
        ("html", None, "could not understand", "provider_bad_response"),
        ("garbage", None, "could not understand", "provider_bad_response"),
        ("oversized", None, "too large", "response_too_large"),
    ],
)
def test_profile_endpoint_faults_end_on_a_friendly_page(
    provider, sso, logs, kind, value, message, code
):
    """A misbehaving profile API gives a typed error page and writes nothing."""
    provider.idp.faults.set("profile", kind, value)
    fail(provider, sso, logs, message, code)


def test_provider_down(provider, sso, logs):
    """The provider is down when the callback calls it: 'could not be reached'."""
    path = sso.authorize(provider)
    provider.idp.stop()
    fail(provider, sso, logs, "could not be reached", "provider_unreachable", path=path, status=502)


def test_provider_timeout(provider, sso, logs):
    """The token endpoint is slower than PORTAL_HTTP_READ_TIMEOUT: 'took too long'."""
    provider.idp.faults.set("token", "slow", 3.0)
    fail(provider, sso, logs, "took too long", "provider_timeout", status=504)


def test_provider_error_parameter(provider, sso, logs):
    """error=access_denied on the callback: a friendly 'cancelled or refused' page."""
    provider.idp.faults.set("authorize", "error", "access_denied")
    fail(provider, sso, logs, "cancelled or refused", "provider_error", status=400)


def test_member_cancels_at_the_provider(provider, sso, logs):
    """The member presses Cancel at the provider."""
    path = sso.authorize(provider, cancel=True)
    fail(provider, sso, logs, "cancelled or refused", "provider_error", path=path)


# -- state ------------------------------------------------------------------------------------

STATE_MESSAGE = "expired or was already used"


def test_missing_state_is_rejected(provider, sso, logs):
    """No state on the callback: rejected."""
    path = replace_param(sso.authorize(provider), state=None)
    fail(provider, sso, logs, STATE_MESSAGE, "state_invalid", path=path, status=400)
    assert provider.idp.requests.all("token") == []


def test_wrong_state_is_rejected(provider, sso, logs):
    """A state the site never issued: rejected, the code never exchanged."""
    provider.idp.faults.set("authorize", "wrong_state")
    fail(provider, sso, logs, STATE_MESSAGE, "state_invalid", status=400)
    assert provider.idp.requests.all("token") == []


def test_replayed_state_is_rejected(provider, sso, logs, client):
    """The same callback twice: the second is rejected and writes nothing more."""
    path = sso.authorize(provider)
    assert sso.callback(path).status_code == 302
    client.post("/logout")
    before = users_and_identities()
    resp = sso.callback(path)
    assert resp.status_code == 400
    assert STATE_MESSAGE in resp.get_data(as_text=True)
    assert users_and_identities() == before
    assert len(provider.idp.requests.all("token")) == 1


def test_expired_state_is_rejected(provider, sso, logs):
    """A state older than 10 minutes: rejected, not marked used."""
    path = sso.authorize(provider)
    attempt = db.session.scalar(sa.select(LoginAttempt))
    attempt.created_at = utcnow() - timedelta(minutes=11)
    db.session.commit()
    fail(provider, sso, logs, STATE_MESSAGE, "state_invalid", path=path)
    db.session.refresh(attempt)
    assert attempt.used_at is None


def test_state_from_another_browser_is_rejected(provider, sso, logs, app):
    """A callback replayed in another browser (another session) is rejected."""
    path = sso.authorize(provider)
    other = app.test_client()
    fail(provider, sso, logs, STATE_MESSAGE, "state_invalid", path=path, client=other)
    assert db.session.scalar(sa.select(LoginAttempt)).used_at is None


def test_state_of_another_system_is_rejected(oidc, ams, sso, logs):
    """A state issued for one system cannot complete another's callback."""
    path = sso.authorize(oidc)
    query = urlsplit(path).query
    fail(ams, sso, logs, STATE_MESSAGE, "state_invalid", path=f"/sso/{ams.slug}/callback?{query}")


# -- OpenID Connect checks --------------------------------------------------------------------

ID_TOKEN_MESSAGE = "sign-in token could not be verified"


@pytest.mark.parametrize(
    "fault", ["bad_signature", "wrong_aud", "wrong_iss", "wrong_nonce", "expired", "alg_none"]
)
def test_invalid_id_token_is_rejected(oidc, sso, logs, fault):
    """Bad signature, wrong aud/iss/nonce, expired, alg none: rejected, nothing written."""
    oidc.idp.faults.set("id_token", fault)
    fail(oidc, sso, logs, ID_TOKEN_MESSAGE, "id_token_invalid", status=502)


def test_missing_id_token_is_rejected_when_openid_was_asked(oidc, sso, logs):
    """With an issuer and JWKS configured and scope openid, the id_token is required."""
    oidc.idp.faults.set("id_token", "missing")
    fail(oidc, sso, logs, ID_TOKEN_MESSAGE, "id_token_invalid")


def test_userinfo_sub_mismatch_is_rejected(oidc, sso, logs):
    """userinfo's sub differs from the id_token's: rejected."""
    oidc.idp.faults.set("userinfo", "sub_mismatch")
    fail(oidc, sso, logs, "inconsistent account details", "subject_mismatch")


def test_iss_parameter_mismatch_is_rejected(oidc, sso, logs):
    """RFC 9207: an iss parameter other than the recorded issuer is rejected before any call."""
    oidc.idp.faults.set("authorize", "wrong_iss")
    fail(oidc, sso, logs, "unexpected identity provider", "issuer_mismatch", status=400)
    assert oidc.idp.requests.all("token") == []


def test_missing_iss_parameter_is_rejected_when_advertised(oidc, sso, logs):
    """RFC 9207: the provider's discovery says it sends iss, so a callback without it is
    refused before any call to the token endpoint (issue 12, finding 15b)."""
    oidc.idp.faults.set("authorize", "no_iss")
    fail(oidc, sso, logs, "unexpected identity provider", "issuer_mismatch", status=400)
    assert oidc.idp.requests.all("token") == []


# -- systems ----------------------------------------------------------------------------------


def test_unknown_system_is_a_clear_404(client):
    """/sso/<unknown>/login: a 404 page that says the sign-in method is not available."""
    resp = client.get("/sso/nope/login")
    assert resp.status_code == 404
    assert "Sign-in method not available" in resp.get_data(as_text=True)
    assert client.get("/sso/nope/callback?state=x&code=y").status_code == 404


def test_disabled_system_is_a_clear_404(provider, client):
    """A disabled system cannot be started."""
    provider.system.enabled = False
    db.session.commit()
    resp = client.get(f"/sso/{provider.slug}/login")
    assert resp.status_code == 404
    assert "not enabled" in resp.get_data(as_text=True)
    assert db.session.scalar(sa.select(LoginAttempt)) is None


def test_unreadable_client_secret_ends_on_the_error_page(provider, client, logs):
    """A secret encrypted under a key no longer configured: a clear page, not a 500."""
    from cryptography.fernet import Fernet

    from portal.services.secrets import encrypt_secret

    provider.system.client_secret_encrypted = encrypt_secret(
        "x", keys=[Fernet.generate_key().decode()]
    )
    db.session.commit()
    resp = client.get(f"/sso/{provider.slug}/login")
    assert resp.status_code == 502
    assert_failure_page(resp, logs, "not available right now", "settings_unreadable", [])


def test_secret_replaced_by_an_unreadable_one_is_refused_at_the_next_start(provider, client, logs):
    """The start remembers which stored secrets decrypt: a new, unreadable one is not among them."""
    from cryptography.fernet import Fernet

    from portal.services.secrets import encrypt_secret

    assert client.get(f"/sso/{provider.slug}/login").status_code == 302
    provider.system.client_secret_encrypted = encrypt_secret(
        "x", keys=[Fernet.generate_key().decode()]
    )
    db.session.commit()
    resp = client.get(f"/sso/{provider.slug}/login")
    assert resp.status_code == 502
    assert_failure_page(resp, logs, "not available right now", "settings_unreadable", [])
