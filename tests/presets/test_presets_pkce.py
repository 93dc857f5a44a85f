"""Every preset that sends a PKCE challenge also sends the verifier (issue 12, finding 7)."""

from __future__ import annotations

import pytest

from portal.presets import list_presets
from portal.sso.fields import TYPE_OAUTH2
from portal.sso.placeholders import find_placeholders

# Personify SSO has no authorization code, hence no PKCE.
SUPPORTED = [p for p in list_presets() if p.supported and p.type == TYPE_OAUTH2]
IDS = [p.key for p in SUPPORTED]
#: Providers whose documentation gives PKCE and a nonce (docs/presets.md, "PKCE and nonce").
PKCE_AND_NONCE = {"generic-oidc", "okta", "auth0", "entra-id", "google", "salesforce"}
#: Providers documenting PKCE without OpenID Connect's nonce.
PKCE_ONLY = {"wordpress-wp-oauth-server"}


def _token_request(preset) -> list[str]:
    form = preset.form
    text = " ".join(form.get(k, "") for k in ("token_url", "token_headers", "token_body"))
    return find_placeholders(text)


@pytest.mark.parametrize("preset", SUPPORTED, ids=IDS)
def test_a_challenge_always_comes_with_its_verifier(preset):
    """A login URL with %CodeChallenge% (S256) has %CodeVerifier% in the token request."""
    login = preset.form["login_url"]
    if "CodeChallenge" in find_placeholders(login):
        assert "code_challenge_method=S256" in login
        assert "CodeVerifier" in _token_request(preset)
    else:
        assert "CodeVerifier" not in _token_request(preset)


@pytest.mark.parametrize("preset", SUPPORTED, ids=IDS)
def test_pkce_and_nonce_where_the_provider_documents_them(preset):
    """The OpenID Connect platforms send both; WP OAuth Server sends PKCE; the others, whose
    documentation gives neither, are listed in docs/presets.md with the reason."""
    login = find_placeholders(preset.form["login_url"])
    expects_pkce = preset.key in PKCE_AND_NONCE | PKCE_ONLY
    assert ("CodeChallenge" in login) == expects_pkce
    if preset.key in PKCE_AND_NONCE:
        assert "Nonce" in login
