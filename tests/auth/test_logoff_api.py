"""The Logoff API: at sign-out Portal ends the provider's session server to server.

The loopback OpenID provider serves RFC 7009 token revocation at ``/revoke``; the system is
set up as a manager would from the documented example.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import SSOSession
from portal.services.secrets import decrypt_secret
from tests.support.providers import CLIENT_ID, Provider, reconfigure

#: The RFC 7009 revocation of the session's refresh token, client authenticated by Basic.
REVOCATION = {
    "logoff_method": "POST",
    "logoff_headers": "Authorization: Basic %BasicAuth%",
    "logoff_body": "token=%RefreshToken%&token_type_hint=refresh_token",
}


@pytest.fixture
def revoking(oidc: Provider) -> Provider:
    reconfigure(oidc, logoff_url=oidc.idp.revocation_url, **REVOCATION)
    return oidc


def _sign_in(sso, provider: Provider) -> str:
    """Sign Jane in; return the refresh token Portal keeps for her session."""
    assert sso.sign_in(provider).status_code == 302
    row = db.session.scalar(sa.select(SSOSession))
    assert row is not None
    return decrypt_secret(row.refresh_token_encrypted)


def test_sign_out_revokes_the_sessions_refresh_token_at_the_provider(revoking, sso, client):
    """Signing out POSTs token=<the refresh token> to the revocation endpoint with the client's
    Basic credentials; the provider forgets the token; the browser still goes to the
    Alternate Logout URL; no token is left on the server."""
    refresh_token = _sign_in(sso, revoking)

    resp = client.post("/logout")

    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(revoking.idp.logout_url)
    assert revoking.idp.revocations == [
        {"token": refresh_token, "token_type_hint": "refresh_token"}
    ]
    (request,) = revoking.idp.requests.all("revoke")
    assert request.headers["Authorization"].startswith("Basic ")
    assert parse_qs(request.body.decode())["token"] == [refresh_token]
    assert revoking.idp.lookup_refresh(refresh_token) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SSOSession)) == 0
    assert client.get("/library").status_code == 302


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(("status", 503), id="answers-503"),
        pytest.param(("drop", None), id="drops-the-connection"),
    ],
)
def test_a_failing_logoff_api_never_blocks_the_sign_out(revoking, sso, client, logs, fault):
    """The provider's revocation fails: the member is signed out and sent on all the same, and
    the failure is logged with a reference and no secret."""
    _sign_in(sso, revoking)
    revoking.idp.faults.set("revoke", *fault)

    resp = client.post("/logout")

    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(revoking.idp.logout_url)
    assert client.get("/library").status_code == 302
    assert "Logoff API failed ref=" in logs.text
    assert not [s for s in revoking.issued_secrets() if s in logs.text]


def test_the_logoff_api_can_revoke_the_access_token_with_the_secret_in_the_body(oidc, sso, client):
    """The access token (%Token%), the client id and the client secret in a form body."""
    reconfigure(
        oidc,
        logoff_url=oidc.idp.revocation_url,
        logoff_headers="Content-Type: application/x-www-form-urlencoded",
        logoff_body="token=%Token%&client_id=%ClientID%&client_secret=%ClientSecret%",
    )
    assert sso.sign_in(oidc).status_code == 302
    access_tokens = list(oidc.idp._tokens)

    client.post("/logout")

    (revocation,) = oidc.idp.revocations
    assert revocation["token"] in access_tokens
    assert revocation["client_id"] == CLIENT_ID


def test_without_a_logoff_api_no_call_is_made(oidc, sso, client):
    """An existing system (no Logoff API URL) signs out as before, calling nothing."""
    assert sso.sign_in(oidc).status_code == 302

    assert client.post("/logout").status_code == 302

    assert oidc.idp.requests.all("revoke") == []
