"""OpenID Connect discovery: a real openid-configuration served on loopback."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from werkzeug.wrappers import Response

from portal.devidp import OIDCProvider, demo_members
from portal.sso.discovery import (
    FAILURE_TTL,
    DiscoveryCache,
    DiscoveryInvalid,
    discover_issuer,
    discovery_url_for,
    issuer_matches,
    requires_iss_parameter,
)
from portal.sso.engine import ProfileRequest, SSOConfig, begin_login, finish_login
from portal.sso.errors import (
    IssuerMismatch,
    ProviderBadResponse,
    ProviderHTTPError,
    ProviderUnreachable,
)
from portal.sso.idtoken import JWKSCache
from portal.sso.profile_fields import ProfileParam

WELL_KNOWN = "/.well-known/openid-configuration"


def metadata(base: str, **overrides) -> dict:
    """A discovery document for issuer ``base`` (endpoints below it), with overrides."""
    doc = {
        "issuer": base,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "userinfo_endpoint": f"{base}/userinfo",
        "jwks_uri": f"{base}/jwks",
        "end_session_endpoint": f"{base}/logout",
        "response_types_supported": ["code", "id_token"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.fixture
def provider(serve):
    """A loopback server; ``publish(doc, path=...)`` serves a discovery document on it."""
    server = serve()

    def publish(doc=None, *, prefix: str = "", body=None, status=200, content_type=None):
        issuer = server.url + prefix
        payload = json.dumps(metadata(issuer) if doc is None else doc) if body is None else body

        @server.app.route(prefix + WELL_KNOWN)
        def _(request):
            return Response(payload, status=status, content_type=content_type or "application/json")

        return issuer

    server.publish = publish
    return server


def query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def test_discovery_fills_the_form_from_the_document(provider, http):
    """Endpoints, issuer, JWKS, PKCE, Basic client auth and the bearer header are filled."""
    issuer = provider.publish()
    config = discover_issuer(issuer, http)

    assert config.issuer == issuer
    assert config.discovery_url == issuer + WELL_KNOWN
    assert config.token_url == f"{issuer}/token"
    assert config.profile_url == f"{issuer}/userinfo"
    assert config.profile_headers == "Authorization: Bearer %Token%"
    assert config.jwks_url == f"{issuer}/jwks"
    assert config.scope == "openid email profile"
    assert config.token_method == "POST"
    assert config.login_url.startswith(f"{issuer}/authorize?")
    assert query(config.login_url) == {
        "response_type": "code",
        "client_id": "%ClientID%",
        "redirect_uri": "%RedirectURL%",
        "scope": "%Scope%",
        "state": "%State%",
        "nonce": "%Nonce%",
        "code_challenge": "%CodeChallenge%",
        "code_challenge_method": "S256",
    }
    assert config.token_auth_method == "client_secret_basic" and config.pkce
    assert config.token_headers == "Authorization: Basic %BasicAuth%"
    assert "%ClientSecret%" not in config.token_body
    assert config.token_body == (
        "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
        "&code_verifier=%CodeVerifier%"
    )
    assert config.logout_url.startswith(f"{issuer}/logout?")
    assert "%ReturnToURL%" in config.logout_url
    assert provider.app.hits(WELL_KNOWN) == 1
    assert provider.app.requests[0]["headers"]["Accept"] == "application/json"


def test_form_values_are_the_form_fields_only(provider, http):
    """form_values() holds exactly the fields the form has, ready to fill it."""
    values = discover_issuer(provider.publish(), http).form_values()
    assert set(values) == {
        "issuer",
        "login_url",
        "token_url",
        "token_method",
        "token_headers",
        "token_body",
        "profile_url",
        "profile_headers",
        "jwks_url",
        "scope",
        "logout_url",
    }


def test_client_secret_post_when_the_provider_takes_only_that(provider, http):
    """Without client_secret_basic, the secret goes in the body and no Basic header is sent."""
    issuer = provider.url
    provider.publish(metadata(issuer, token_endpoint_auth_methods_supported=["client_secret_post"]))
    config = discover_issuer(issuer, http)
    assert config.token_auth_method == "client_secret_post"
    assert config.token_headers == ""
    assert "&client_id=%ClientID%&client_secret=%ClientSecret%" in config.token_body


def test_basic_is_the_default_when_auth_methods_are_not_listed(provider, http):
    """No token_endpoint_auth_methods_supported means client_secret_basic (the spec default)."""
    issuer = provider.url
    provider.publish(metadata(issuer, token_endpoint_auth_methods_supported=None))
    assert discover_issuer(issuer, http).token_auth_method == "client_secret_basic"


def test_a_provider_without_client_secret_methods_is_refused(provider, http):
    """Only private_key_jwt: a clear error, since the form authenticates with a secret."""
    issuer = provider.url
    provider.publish(metadata(issuer, token_endpoint_auth_methods_supported=["private_key_jwt"]))
    with pytest.raises(DiscoveryInvalid) as caught:
        discover_issuer(issuer, http)
    assert "private_key_jwt" in caught.value.user_message


def test_no_pkce_and_no_userinfo_when_not_advertised(provider, http):
    """No S256: no challenge or verifier; no userinfo: profile fields come from the ID token."""
    issuer = provider.url
    provider.publish(
        metadata(
            issuer,
            code_challenge_methods_supported=["plain"],
            userinfo_endpoint=None,
            end_session_endpoint=None,
            scopes_supported=["openid", "profile"],
        )
    )
    config = discover_issuer(issuer, http)
    assert not config.pkce
    assert "code_challenge" not in config.login_url
    assert "%CodeVerifier%" not in config.token_body
    assert config.profile_url == "" and config.profile_headers == ""
    assert config.logout_url == ""
    assert config.scope == "openid profile"


def test_an_issuer_with_a_path_is_discovered_under_that_path(provider, http):
    """https://host/tenant reads https://host/tenant/.well-known/openid-configuration."""
    issuer = provider.publish(prefix="/oauth2/default")
    config = discover_issuer(issuer + "/", http)
    assert config.issuer == issuer
    assert provider.app.requests[0]["path"] == "/oauth2/default" + WELL_KNOWN


@pytest.mark.parametrize(
    "document_issuer",
    [
        "https://evil.example",
        "{url}/other",
        "{url}/tenant/",
        "{url}//",
        "{url_upper}",
        "{url}/?x",
    ],
)
def test_a_document_for_another_issuer_is_rejected(provider, http, document_issuer):
    """The document's issuer must be the URL given (one terminating slash aside)."""
    url = provider.url
    doc_issuer = document_issuer.format(url=url, url_upper=url.upper())
    provider.publish(metadata(url, issuer=doc_issuer))
    with pytest.raises(IssuerMismatch) as caught:
        discover_issuer(url, http)
    assert doc_issuer in caught.value.user_message
    assert caught.value.code == "issuer_mismatch"


def test_a_missing_issuer_is_rejected(provider, http):
    """A document without an issuer cannot prove whose it is."""
    provider.publish(metadata(provider.url, issuer=None))
    with pytest.raises(DiscoveryInvalid):
        discover_issuer(provider.url, http)


def test_a_terminating_slash_is_the_only_leniency():
    """Auth0's issuer ends in '/', Google's does not: both match what a manager types."""
    assert issuer_matches("https://t.auth0.com", "https://t.auth0.com/")
    assert issuer_matches("https://t.auth0.com/", "https://t.auth0.com/")
    assert issuer_matches("https://accounts.google.com/", "https://accounts.google.com")
    assert not issuer_matches("https://accounts.google.com", "https://Accounts.google.com")
    assert not issuer_matches("https://x.example", "https://x.example:443")
    assert not issuer_matches("https://x.example/a", "https://x.example/a//")
    assert discovery_url_for("https://x.example/a/") == "https://x.example/a" + WELL_KNOWN


def test_a_404_is_a_clear_http_error(provider, http):
    """No discovery document: ProviderHTTPError 404 naming the URL that was tried."""
    with pytest.raises(ProviderHTTPError) as caught:
        discover_issuer(provider.url, http)
    assert caught.value.status == 404
    assert provider.url + WELL_KNOWN in caught.value.user_message
    assert "issuer URL" in caught.value.user_message


def test_an_html_page_is_a_bad_response(provider, http):
    """A login page instead of JSON: ProviderBadResponse, saying JSON was expected."""
    provider.publish(
        body="<!doctype html><html><body>Sign in</body></html>", content_type="text/html"
    )
    with pytest.raises(ProviderBadResponse) as caught:
        discover_issuer(provider.url, http)
    assert "HTML" in caught.value.user_message


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("{not json", "application/json"), ('["a list"]', "application/json"), ("", "text/plain")],
)
def test_garbage_is_a_bad_response(provider, http, body, content_type):
    """Invalid JSON, a JSON list or an empty body: ProviderBadResponse."""
    provider.publish(body=body, content_type=content_type)
    with pytest.raises(ProviderBadResponse):
        discover_issuer(provider.url, http)


def test_a_server_error_is_an_http_error(provider, http):
    """A 500 is ProviderHTTPError with its status."""
    provider.publish(body="oops", status=500, content_type="text/plain")
    with pytest.raises(ProviderHTTPError) as caught:
        discover_issuer(provider.url, http)
    assert caught.value.status == 500


@pytest.mark.parametrize(
    "overrides",
    [
        {"token_endpoint": None},
        {"authorization_endpoint": None},
        {"token_endpoint": "http://evil.example/token"},
        {"jwks_uri": "javascript:alert(1)"},
        {"userinfo_endpoint": 42},
        {"response_types_supported": ["token", "id_token"]},
    ],
)
def test_missing_or_unsafe_endpoints_are_refused(provider, http, overrides):
    """Required endpoints must be there; every endpoint must be https (loopback http aside)."""
    provider.publish(metadata(provider.url, **overrides))
    with pytest.raises(DiscoveryInvalid) as caught:
        discover_issuer(provider.url, http)
    assert caught.value.user_message.startswith("The provider")


@pytest.mark.parametrize(
    "issuer",
    ["http://idp.example.com", "ftp://idp.example.com", "idp.example.com", "", "https://x/?a=b"],
)
def test_an_unsafe_issuer_url_is_refused_before_any_request(provider, http, issuer):
    """Plain http (off loopback), no scheme, a query: refused without fetching anything."""
    with pytest.raises(DiscoveryInvalid):
        discover_issuer(issuer, http)
    assert provider.app.requests == []


def test_an_unreachable_issuer_is_reported(http, closed_port_url):
    """Nothing listening: ProviderUnreachable, with the URL in the message."""
    with pytest.raises(ProviderUnreachable) as caught:
        discover_issuer(closed_port_url, http)
    assert closed_port_url in caught.value.user_message


def test_a_discovered_configuration_signs_a_member_in_at_the_demo_provider(http):
    """Discover the loopback OIDC provider, then run the engine's whole flow with the result."""
    redirect_url = "http://127.0.0.1:9/sso/demo/callback"
    with OIDCProvider(
        client_id="portal",
        client_secret="a+b/c=&d",
        redirect_uris=[redirect_url],
        members=demo_members(),
    ) as idp:
        found = discover_issuer(idp.url, http)
        assert found.issuer == idp.issuer and found.pkce
        values = found.form_values()
        userinfo = ProfileRequest(values.pop("profile_url"), headers=values.pop("profile_headers"))
        config = SSOConfig(
            slug="demo",
            client_id="portal",
            client_secret="a+b/c=&d",
            redirect_url=redirect_url,
            params={
                "user_id": ProfileParam("sub", must_supply=True),
                "email": ProfileParam("email"),
                "groups": ProfileParam("groups"),
            },
            profile_requests=(userinfo,),
            **{k: v for k, v in values.items() if k != "logout_url"},
        )
        attempt = begin_login(config)
        with httpx.Client(follow_redirects=False) as browser:
            assert browser.get(attempt.url).status_code == 200
            answer = browser.post(attempt.url, data={"username": "jdoe", "password": "demo"})
        assert answer.status_code in (302, 303)
        callback = query(answer.headers["location"])
        assert callback["state"] == attempt.state and callback["iss"] == config.issuer
        result = finish_login(
            config,
            params=callback,
            nonce=attempt.nonce,
            code_verifier=attempt.code_verifier,
            http=http,
            jwks_cache=JWKSCache(),
        )
    assert result.fields["email"] == "jane.doe@example.org"
    assert result.id_claims is not None and result.id_claims["iss"] == config.issuer


def test_discovered_values_pass_the_form_validation(app, provider, http):
    """What discovery fills is accepted by the admin form as is."""
    from portal.services.auth_systems import default_auth_system_data, validate_auth_system_data

    data = default_auth_system_data()
    data.update(discover_issuer(provider.publish(), http).form_values())
    data.update(name="Discovered", client_id="client-1", client_secret="s3cret")
    assert validate_auth_system_data(data) == {}


# -- issue 12: the discovery cache and the iss parameter (findings 11 and 15b) ----------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hits(server) -> int:
    return sum(1 for r in server.app.requests if r["path"].endswith(WELL_KNOWN))


def test_iss_is_required_when_the_provider_advertises_it(provider, http):
    """authorization_response_iss_parameter_supported: true means the callback must carry iss;
    the document is fetched once and then served from the cache."""
    issuer = provider.publish(
        metadata(provider.url, authorization_response_iss_parameter_supported=True)
    )
    cache = DiscoveryCache()
    assert requires_iss_parameter(issuer, http, cache) is True
    assert requires_iss_parameter(issuer, http, cache) is True
    assert hits(provider) == 1


@pytest.mark.parametrize("flag", [None, False, "true", 1])
def test_iss_is_not_required_unless_advertised_as_true(provider, http, flag):
    """Absent, false or not the JSON true: not required."""
    issuer = provider.publish(
        metadata(provider.url, authorization_response_iss_parameter_supported=flag)
    )
    assert requires_iss_parameter(issuer, http, DiscoveryCache()) is False


def test_a_failed_discovery_requires_nothing_and_is_remembered_briefly(provider, http):
    """A 404: nothing required, no request per sign-in, asked again after the failure TTL."""
    issuer = provider.publish(status=404, body="not found")
    clock = Clock()
    cache = DiscoveryCache(clock=clock)
    for _ in range(3):
        assert requires_iss_parameter(issuer, http, cache) is False
    assert hits(provider) == 1
    clock.now += FAILURE_TTL + 1
    assert requires_iss_parameter(issuer, http, cache) is False
    assert hits(provider) == 2


def test_another_issuers_document_counts_as_none(provider, http):
    """A document naming another issuer is not trusted to require anything."""
    issuer = provider.publish(
        metadata("https://other.example", authorization_response_iss_parameter_supported=True)
    )
    assert requires_iss_parameter(issuer, http, DiscoveryCache()) is False


def test_discovery_documents_follow_cache_control(serve, http):
    """A document is kept for its max-age (bounded), then fetched again."""
    server = serve()
    issuer = server.url
    body = json.dumps(metadata(issuer, authorization_response_iss_parameter_supported=True))

    @server.app.route(WELL_KNOWN)
    def _(request):
        return Response(
            body, content_type="application/json", headers={"Cache-Control": "max-age=600"}
        )

    clock = Clock()
    cache = DiscoveryCache(clock=clock)
    cache.get(issuer, http)
    clock.now += 599
    cache.get(issuer, http)
    assert hits(server) == 1
    clock.now += 2
    assert cache.get(issuer, http)["issuer"] == issuer
    assert hits(server) == 2
