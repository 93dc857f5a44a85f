"""PKCE (S256) and a nonce by default (issue 12, finding 7).

The default login URL sent a challenge while the default token body had no verifier: a
provider that enforces PKCE refused every sign-in, and one that does not was protected by
nothing. The defaults now send both, and the form refuses a challenge without its verifier.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from portal.devidp import OIDCProvider, s256
from portal.extensions import db
from portal.models import Identity
from portal.services.auth_systems import get_system_by_slug, validate_auth_system_data
from portal.sso.fields import DEFAULT_LOGIN_URL, DEFAULT_TOKEN_BODY
from portal.sso.idtoken import get_jwks_cache
from portal.sso.placeholders import find_placeholders
from tests.support.pages import as_post, errors_beside, form_values
from tests.support.providers import jane

NEW = "/admin/auth-systems/new"
PKCE_MESSAGE = (
    "The Identity Provider Login URL sends a PKCE challenge (%CodeChallenge%), but the token "
    "request never sends its verifier: add code_verifier=%CodeVerifier% to the Token API Post "
    "Body (or remove the challenge from the login URL)."
)


@pytest.fixture
def strict_idp() -> Iterator[OIDCProvider]:
    """A loopback provider that refuses an authorization request without a PKCE challenge and
    a token request without the matching verifier."""
    get_jwks_cache().clear()
    with OIDCProvider(
        client_id="acme-client",
        client_secret="acme-secret",
        redirect_uris=["http://localhost/sso/acme-sso/callback"],
        members=[jane()],
    ) as idp:
        idp.client.require_pkce = True
        yield idp
    get_jwks_cache().clear()


def test_the_defaults_send_a_challenge_a_verifier_and_a_nonce():
    """The default login URL carries %CodeChallenge% (S256) and %Nonce%; the body the verifier."""
    login = find_placeholders(DEFAULT_LOGIN_URL)
    assert "CodeChallenge" in login and "Nonce" in login
    assert "code_challenge_method=S256" in DEFAULT_LOGIN_URL
    assert "code_verifier=%CodeVerifier%" in DEFAULT_TOKEN_BODY


def test_the_default_form_signs_in_at_a_provider_that_enforces_pkce(
    manager_client, strict_idp, client
):
    """A system saved from the Add form's defaults (only the provider's addresses and the
    client typed) signs Jane in at a provider that requires PKCE; the verifier it received
    matches the challenge."""
    shown = form_values(manager_client.get(NEW).get_data(as_text=True))
    default_login = shown["login_url"]
    assert default_login == DEFAULT_LOGIN_URL and shown["token_body"] == DEFAULT_TOKEN_BODY
    data = {
        **as_post(shown),
        "name": "Acme SSO",
        "client_id": "acme-client",
        "client_secret": "acme-secret",
        "login_url": default_login.replace(
            "https://idp.example.com/oauth2/authorize", strict_idp.authorize_url
        ),
        "token_url": strict_idp.token_url,
        "profile_url": strict_idp.userinfo_url,
        "profile_headers": "Authorization: Bearer %Token%",
        "login_label": "Sign in with Acme",
        "login_mode": "local_and_remote",
        "enabled": "y",
        # The defaults map no username: Jane's comes from the provider, so no extra step.
        "param_username_path": "preferred_username",
    }
    assert manager_client.post(NEW, data=data).status_code == 302
    manager_client.post("/logout")

    start = client.get(f"/sso/{get_system_by_slug('acme-sso').slug}/login")
    assert start.status_code == 302
    query = parse_qs(urlsplit(start.headers["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0]
    back = urlsplit(strict_idp.authorize_redirect(start.headers["Location"], "jdoe"))
    done = client.get(f"{back.path}?{back.query}")

    assert done.status_code == 302 and done.headers["Location"] == "/"
    token_request = strict_idp.requests.last("token")
    assert s256(token_request.form["code_verifier"]) == query["code_challenge"][0]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Identity)) == 1


def test_a_challenge_without_a_verifier_is_refused_beside_the_token_body(manager_client, form_data):
    """Saving a login URL with %CodeChallenge% and a token request without %CodeVerifier% is
    refused, with the reason beside Token API Post Body, and nothing is saved."""
    data = {
        **form_data,
        "login_url": DEFAULT_LOGIN_URL,
        "token_body": "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
        "&client_id=%ClientID%&client_secret=%ClientSecret%",
    }
    page = manager_client.post(NEW, data=data).get_data(as_text=True)
    assert errors_beside(page, "token_body") == [PKCE_MESSAGE]
    assert get_system_by_slug("acme-sso") is None


@pytest.mark.parametrize(
    ("where", "fields"),
    [
        ("token body", {"token_body": "code=%Code%&code_verifier=%CodeVerifier%"}),
        ("token headers", {"token_headers": "X-Verifier: %CodeVerifier%", "token_body": "a=b"}),
        ("token URL", {"token_url": "https://idp.acme.test/token?v=%CodeVerifier%"}),
    ],
)
def test_a_verifier_anywhere_in_the_token_request_answers_the_challenge(app, where, fields):
    """The verifier may travel in the body, a header or the token URL's query."""
    data = {
        "name": "Acme",
        "client_id": "c",
        "client_secret": "s",
        "login_url": DEFAULT_LOGIN_URL,
        "token_url": "https://idp.acme.test/token",
        **fields,
    }
    assert "token_body" not in validate_auth_system_data(data), where


def test_no_challenge_needs_no_verifier(app):
    """A provider without PKCE (no %CodeChallenge% in the login URL) is not asked for one."""
    data = {
        "name": "Acme",
        "client_id": "c",
        "client_secret": "s",
        "login_url": "https://idp.acme.test/authorize?state=%State%",
        "token_url": "https://idp.acme.test/token",
        "token_body": "code=%Code%",
    }
    assert validate_auth_system_data(data) == {}
