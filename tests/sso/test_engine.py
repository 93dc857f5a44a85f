"""The sign-in flow against a minimal loopback identity provider."""

import base64
import dataclasses
import hashlib
import json
import logging
import time
from urllib.parse import parse_qs, quote, quote_plus, unquote_plus, urlsplit

import pytest
from werkzeug.wrappers import Response

from portal.sso.engine import ProfileRequest, SSOConfig, begin_login, finish_login, map_fields
from portal.sso.errors import (
    IDTokenInvalid,
    IssuerMismatch,
    OAuthErrorResponse,
    ProviderBadResponse,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    ProviderUnreachable,
    RequiredFieldMissing,
    ResponseTooLarge,
    SSOError,
    SubjectMismatch,
    TemplateError,
    TokenMissing,
)
from portal.sso.idtoken import JWKSCache
from portal.sso.placeholders import basic_auth
from portal.sso.profile_fields import PROFILE_FIELDS, ProfileParam
from portal.sso.trace import Trace
from tests.support.keys import jwks_of, jwks_response
from tests.support.servers import App, read_request_head

ISSUER = "https://idp.example"
CLIENT_ID = "client-1"
SECRET = 'a+b/c=&d"e sécret'
CODE = "c0de/with+odd=chars&x"
VERIFIER = "verifier-" + "v" * 50
NONCE = "nonce-1"
ACCESS = "at-XYZ.s3cret+token/="
REFRESH = "rt-refresh-s3cret"

PARAMS = {
    "user_id": ProfileParam("sub", can_upgrade=False, must_supply=True),
    "username": ProfileParam("data.login"),
    "email": ProfileParam("data.email", can_upgrade=True),
    "first_name": ProfileParam("data.first"),
    "last_name": ProfileParam("data.last"),
    "membership_status": ProfileParam("data.status"),
    "membership_type": ProfileParam("data.type"),
    "groups": ProfileParam("data.groups"),
}


def json_response(doc, status=200):
    return Response(json.dumps(doc), status=status, content_type="application/json")


class Provider:
    """A minimal identity provider: /token, /profile and /jwks."""

    def __init__(self, serve, key, make_id_token):
        self.key = key
        self.id_token = make_id_token(key=key)
        self.profile = {
            "sub": "user-42",
            "data": {
                "login": "  ada  ",
                "email": "ada@example.org",
                "first": "Ada",
                "last": "",
                "status": "Active",
                "type": 3,
                "groups": ["Gold", "Board"],
            },
        }
        self.token_doc = {
            "access_token": ACCESS,
            "token_type": "Bearer",
            "refresh_token": REFRESH,
            "id_token": self.id_token,
        }
        self.app = App()
        self.app.routes["/token"] = lambda r: json_response(self.token_doc)
        self.app.routes["/profile"] = self._profile
        self.app.routes["/jwks"] = lambda r: jwks_response(jwks_of(self.key))
        self.url = serve(self.app).url

    def _profile(self, request):
        if request.headers.get("Authorization") != f"Bearer {ACCESS}":
            return json_response({"error": "invalid_token"}, 401)
        return json_response(self.profile)

    def request(self, path):
        (req,) = [r for r in self.app.requests if r["path"] == path]
        return req

    def config(self, **overrides) -> SSOConfig:
        values = {
            "slug": "idp",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "redirect_url": "https://portal.example/sso/idp/callback",
            "login_url": self.url
            + "/authorize?response_type=code&client_id=%ClientID%&redirect_uri=%RedirectURL%"
            "&state=%State%&nonce=%Nonce%&scope=%Scope%&code_challenge=%CodeChallenge%"
            "&code_challenge_method=S256",
            "token_url": self.url + "/token",
            "token_headers": "Authorization: Basic %BasicAuth%",
            "token_body": "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
            "&code_verifier=%CodeVerifier%&client_secret=%ClientSecret%",
            "profile_url": self.url + "/profile",
            "profile_headers": "Authorization: Bearer %Token%",
            "issuer": ISSUER,
            "jwks_url": self.url + "/jwks",
            "scope": "openid email profile",
            "params": PARAMS,
        }
        values.update(overrides)
        # The single Profile API of these tests is the chain's one request.
        url, headers = values.pop("profile_url"), values.pop("profile_headers")
        if "profile_requests" not in values:
            values["profile_requests"] = (ProfileRequest(url, headers=headers),) if url else ()
        return SSOConfig(**values)


@pytest.fixture
def provider(serve, rsa_keys, make_id_token):
    return Provider(serve, rsa_keys["k1"], make_id_token)


@pytest.fixture
def finish(http):
    cache = JWKSCache()

    def run(config, params=None, **kwargs):
        params = {"code": CODE, "state": "st"} if params is None else params
        return finish_login(
            config,
            params=params,
            nonce=kwargs.pop("nonce", NONCE),
            code_verifier=VERIFIER,
            http=kwargs.pop("http", http),
            jwks_cache=cache,
            **kwargs,
        )

    return run


# --- begin_login ---


def test_begin_login_renders_login_url_with_fresh_values(provider):
    """The login URL carries client id, redirect, state, nonce, scope and the S256 challenge."""
    config = provider.config()
    attempt = begin_login(config)
    query = parse_qs(urlsplit(attempt.url).query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [config.redirect_url]
    assert query["state"] == [attempt.state]
    assert query["nonce"] == [attempt.nonce]
    assert query["scope"] == ["openid email profile"]
    digest = hashlib.sha256(attempt.code_verifier.encode()).digest()
    assert query["code_challenge"] == [base64.urlsafe_b64encode(digest).rstrip(b"=").decode()]
    assert len(attempt.state) >= 43 and len(attempt.code_verifier) >= 43
    other = begin_login(config)
    assert {other.state, other.nonce, other.code_verifier}.isdisjoint(
        {attempt.state, attempt.nonce, attempt.code_verifier}
    )


# --- the happy path ---


def test_finish_login_maps_profile(provider, finish):
    """The full flow: token, ID token, profile and mapped, normalised fields."""
    result = finish(provider.config())
    assert result.subject == "user-42"
    assert result.fields == {
        "user_id": "user-42",
        "username": "ada",
        "email": "ada@example.org",
        "first_name": "Ada",
        "last_name": None,
        "membership_status": "Active",
        "membership_type": "3",
        "groups": ["Gold", "Board"],
    }
    assert result.missing_required == ["Last Name"]
    assert result.id_token == provider.id_token
    assert result.id_claims["sub"] == "user-42"
    assert result.token_response["access_token"] == ACCESS
    assert result.profile == provider.profile


def test_token_request_sends_form_body_and_basic_auth_intact(provider, finish):
    """The form body and Basic header carry the odd secret and code intact."""
    finish(provider.config())
    req = provider.request("/token")
    assert req["method"] == "POST"
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert req["headers"]["Accept"] == "application/json"
    form = parse_qs(req["body"].decode())
    assert form["code"] == [CODE]
    assert form["client_secret"] == [SECRET]
    assert form["code_verifier"] == [VERIFIER]
    scheme, encoded = req["headers"]["Authorization"].split(" ")
    raw_id, _, raw_secret = base64.b64decode(encoded).decode().partition(":")
    assert (scheme, unquote_plus(raw_id), unquote_plus(raw_secret)) == ("Basic", CLIENT_ID, SECRET)
    assert provider.request("/profile")["method"] == "GET"


def test_token_request_with_json_body(provider, finish):
    """A JSON Content-Type renders the body in the JSON context."""
    config = provider.config(
        token_headers="Content-Type: application/json",
        token_body='{"code": "%Code%", "secret": "%ClientSecret%", "verifier": "%CodeVerifier%"}',
    )
    finish(config)
    req = provider.request("/token")
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {"code": CODE, "secret": SECRET, "verifier": VERIFIER}


def test_token_request_with_get(provider, finish):
    """With GET the token URL carries the parameters and no body is sent."""
    config = provider.config(
        token_method="GET",
        token_url=provider.url + "/token?code=%Code%&client_secret=%ClientSecret%",
        token_body="ignored=%Code%",
    )
    finish(config)
    req = provider.request("/token")
    assert req["method"] == "GET"
    assert req["body"] == b""
    assert req["args"] == {"code": [CODE], "client_secret": [SECRET]}
    assert "Content-Type" not in req["headers"]


def test_form_encoded_token_response_and_nested_path(provider, finish):
    """A form-encoded token response and a nested access_token_path both work."""
    provider.app.routes["/token"] = lambda r: Response(
        "token=" + quote_plus(ACCESS) + "&scope=user",
        content_type="application/x-www-form-urlencoded",
    )
    result = finish(provider.config(access_token_path="token", issuer="", jwks_url=""))
    assert result.token_response == {"token": ACCESS, "scope": "user"}
    assert result.id_token is None and result.id_claims is None
    provider.app.routes["/token"] = lambda r: json_response({"data": {"tok": ACCESS}})
    config = provider.config(access_token_path="data.tok", issuer="", jwks_url="")
    assert finish(config).subject == "user-42"


def test_profile_request_offers_tokens(provider, finish):
    """%Token%, %IDToken% and %RefreshToken% reach the profile request."""
    config = provider.config(
        profile_url=provider.url + "/profile?id_token=%IDToken%&rt=%RefreshToken%",
    )
    finish(config)
    assert provider.request("/profile")["args"] == {
        "id_token": [provider.id_token],
        "rt": [REFRESH],
    }


def test_without_profile_url_token_response_and_id_claims_are_merged(
    provider, finish, make_id_token
):
    """No profile URL: fields come from the token response updated with the ID token's claims."""
    provider.token_doc["id_token"] = make_id_token(
        key=provider.key, email="claims@example.org", groups="Staff"
    )
    provider.token_doc["user"] = {"login": "tok"}
    params = {
        "user_id": ProfileParam("sub"),
        "email": ProfileParam("email"),
        "username": ProfileParam("user.login"),
        "groups": ProfileParam("groups"),
    }
    result = finish(provider.config(profile_url="", params=params))
    assert provider.app.hits("/profile") == 0
    assert result.subject == "user-42"
    assert result.fields["email"] == "claims@example.org"
    assert result.fields["username"] == "tok"
    assert result.fields["groups"] == ["Staff"]
    assert result.profile["token_type"] == "Bearer"


def test_id_token_is_read_but_not_verified_without_issuer(provider, finish, make_id_token):
    """Without issuer/JWKS the ID token's claims are read (TLS vouches for them), no JWKS fetch."""
    provider.token_doc["id_token"] = make_id_token(key=provider.key, nonce="other")
    result = finish(provider.config(issuer="", jwks_url="", profile_url=""))
    assert result.id_claims["nonce"] == "other"
    assert provider.app.hits("/jwks") == 0


# --- callback and token failures ---


def test_callback_error_is_provider_error(provider, finish):
    """error= on the callback stops the flow before any request."""
    with pytest.raises(ProviderError) as info:
        finish(provider.config(), {"error": "access_denied", "error_description": "User said no"})
    assert info.value.error == "access_denied"
    assert "cancelled" in info.value.user_message
    assert provider.app.requests == []


def test_iss_mismatch_is_refused(provider, finish):
    """An iss on the callback that is not the configured issuer is refused."""
    with pytest.raises(IssuerMismatch):
        finish(provider.config(), {"code": CODE, "iss": "https://evil.example"})
    assert provider.app.requests == []
    assert finish(provider.config(), {"code": CODE, "iss": ISSUER}).subject == "user-42"


def test_missing_code_is_bad_response(provider, finish):
    """A callback without a code is refused."""
    with pytest.raises(ProviderBadResponse):
        finish(provider.config(), {"state": "x"})


def test_missing_access_token_is_token_missing(provider, finish):
    """A token response without the configured path is TokenMissing."""
    provider.token_doc.pop("access_token")
    with pytest.raises(TokenMissing):
        finish(provider.config())


def test_oauth_error_from_token_api(provider, finish):
    """An OAuth error from the token API surfaces as OAuthErrorResponse."""
    provider.app.routes["/token"] = lambda r: json_response({"error": "invalid_grant"}, 400)
    with pytest.raises(OAuthErrorResponse):
        finish(provider.config())


def test_invalid_id_token_is_refused(provider, finish):
    """An ID token whose nonce differs from the attempt's is refused."""
    with pytest.raises(IDTokenInvalid):
        finish(provider.config(), nonce="another-nonce")
    assert provider.app.hits("/profile") == 0


def test_missing_id_token_with_openid_configuration_is_refused(provider, finish):
    """With issuer, JWKS and the openid scope, a token response without id_token is refused."""
    provider.token_doc.pop("id_token")
    with pytest.raises(IDTokenInvalid):
        finish(provider.config())
    assert finish(provider.config(scope="email")).id_claims is None


def test_subject_mismatch(provider, finish):
    """A profile whose sub is not the ID token's sub is refused."""
    provider.profile["sub"] = "someone-else"
    with pytest.raises(SubjectMismatch):
        finish(provider.config())


def test_missing_user_id_is_required_field_missing(provider, finish):
    """A missing User ID fails the login, even without must-supply."""
    params = dict(PARAMS, user_id=ProfileParam("data.nope"))
    with pytest.raises(RequiredFieldMissing) as info:
        finish(provider.config(params=params))
    assert info.value.field_label == "User ID"
    assert "User ID" in info.value.user_message


def test_missing_must_supply_field_names_the_field(provider, finish):
    """A must-supply field that is missing (or blank) fails with its label."""
    params = dict(PARAMS, last_name=ProfileParam("data.last", must_supply=True))
    with pytest.raises(RequiredFieldMissing) as info:
        finish(provider.config(params=params))
    assert info.value.field_label == "Last Name"


# --- mapping ---


def test_map_fields_normalises_values():
    """Strings stripped, blanks None, numbers text, groups always a list."""
    profile = {"id": 1234, "name": "  ", "mail": " a@b.c ", "g": "Solo", "t": 2.5, "obj": {"x": 1}}
    params = {
        "user_id": ProfileParam("id"),
        "username": ProfileParam("name"),
        "email": ProfileParam("mail"),
        "first_name": ProfileParam("obj"),
        "membership_type": ProfileParam("t"),
        "groups": ProfileParam("g"),
    }
    fields = map_fields(profile, params)
    assert fields == {
        "user_id": "1234",
        "username": None,
        "email": "a@b.c",
        "first_name": None,
        "last_name": None,
        "membership_status": None,
        "membership_type": "2.5",
        "groups": ["Solo"],
    }
    assert map_fields({}, {"groups": ProfileParam("g")})["groups"] == []
    assert map_fields({"g": ["a", " ", None, 3]}, {"groups": ProfileParam("g")})["groups"] == [
        "a",
        "3",
    ]
    assert [key for key, _ in PROFILE_FIELDS] == list(fields)


# --- trace ---


SECRETS = (SECRET, CODE, VERIFIER, ACCESS, REFRESH, basic_auth(CLIENT_ID, SECRET))


def leaks(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Return the secrets (in any encoding) found in a text."""
    found = []
    for secret in SECRETS + extra:
        for form in {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}:
            if form in text:
                found.append(form)
    return found


def test_trace_records_requests_with_secrets_redacted(provider, finish):
    """The trace has every request and the documents, without any secret or token."""
    trace = Trace()
    config = provider.config(
        token_url=provider.url + "/token?secret=%ClientSecret%",
        profile_url=provider.url + "/profile?t=%Token%&rt=%RefreshToken%",
    )
    finish(config, trace=trace)
    assert [(e.method, urlsplit(e.url).path, e.status) for e in trace.entries] == [
        ("POST", "/token", 200),
        ("GET", "/jwks", 200),
        ("GET", "/profile", 200),
    ]
    token_entry = trace.entries[0]
    assert "[redacted]" in token_entry.url
    assert dict(token_entry.headers)["Authorization"] == "Basic [redacted]"
    assert "code=[redacted]" in token_entry.body
    assert "grant_type=authorization_code" in token_entry.body
    assert dict(trace.entries[2].headers)["Authorization"] == "Bearer [redacted]"
    assert trace.token_response["access_token"] == "[redacted]"
    assert trace.token_response["id_token"] == "[redacted]"
    assert trace.token_response["refresh_token"] == "[redacted]"
    assert trace.token_response["token_type"] == "Bearer"
    assert trace.profile["data"]["email"] == "ada@example.org"
    assert trace.id_claims["sub"] == "user-42"
    dumped = json.dumps(dataclasses.asdict(trace), default=str)
    assert leaks(dumped, (provider.id_token,)) == []


def test_trace_redacts_key_named_by_access_token_path(provider, finish):
    """The key access_token_path names is redacted in the traced token response."""
    provider.token_doc = {"data": {"bearer": ACCESS}, "sub_id": "x"}
    trace = Trace()
    finish(provider.config(access_token_path='data."bearer"', issuer="", jwks_url=""), trace=trace)
    assert trace.token_response == {"data": {"bearer": "[redacted]"}, "sub_id": "x"}


def test_trace_records_failure(provider, finish, closed_port_url):
    """A failing request is recorded with its error code."""
    trace = Trace()
    with pytest.raises(ProviderUnreachable):
        finish(provider.config(token_url=closed_port_url + "/token?c=%Code%"), trace=trace)
    (entry,) = trace.entries
    assert entry.status is None and entry.error == "provider_unreachable"
    assert trace.error_code == "provider_unreachable"
    assert leaks(entry.url) == []


# --- no secret ever leaks ---


def echo_all(extra=""):
    """Return a provider message echoing everything the client sent it."""
    basic = basic_auth(CLIENT_ID, SECRET)
    return f"code={CODE} secret={SECRET} verifier={VERIFIER} basic={basic} {extra}"


def _hang(conn):
    read_request_head(conn)
    time.sleep(2)


SCENARIOS = {
    "provider_error": (
        ProviderError,
        lambda p: ({"error": "server_error", "error_description": echo_all(), "code": CODE}, {}),
    ),
    "issuer_mismatch": (
        IssuerMismatch,
        lambda p: ({"code": CODE, "iss": "https://evil.example/" + CODE}, {}),
    ),
    "unreachable": (
        ProviderUnreachable,
        lambda p: (
            None,
            {"token_method": "GET", "token_url": p.closed + "/t?c=%Code%&s=%ClientSecret%"},
        ),
    ),
    "timeout": (
        ProviderTimeout,
        lambda p: (
            None,
            {"token_method": "GET", "token_url": p.hang + "/t?c=%Code%&s=%ClientSecret%"},
        ),
    ),
    "http_error": (
        ProviderHTTPError,
        lambda p: p.set_token(Response(echo_all(), 500, content_type="text/html")),
    ),
    "redirect": (
        ProviderHTTPError,
        lambda p: p.set_token(Response("", 302, headers={"Location": "/x?" + echo_all()})),
    ),
    "bad_html": (
        ProviderBadResponse,
        lambda p: p.set_token(Response("<html>" + echo_all(), content_type="text/html")),
    ),
    "bad_json": (
        ProviderBadResponse,
        lambda p: p.set_token(
            Response('{"access_token": "' + ACCESS, content_type="application/json")
        ),
    ),
    "too_large": (
        ResponseTooLarge,
        lambda p: p.set_token(Response(echo_all() * 5000, content_type="application/json")),
    ),
    "oauth_error": (
        OAuthErrorResponse,
        lambda p: p.set_token(
            json_response({"error": "invalid_grant", "error_description": echo_all()}, 400)
        ),
    ),
    "token_missing": (
        TokenMissing,
        lambda p: p.set_token(json_response({"refresh_token": REFRESH, "token": ACCESS})),
    ),
    "id_token_invalid": (IDTokenInvalid, lambda p: (None, {"client_id": "other-client"})),
    "subject_mismatch": (SubjectMismatch, lambda p: p.set_profile({"sub": "evil"})),
    "required_field": (
        RequiredFieldMissing,
        lambda p: p.set_profile({"nothing": echo_all(f"at={ACCESS} rt={REFRESH} id={p.id_token}")}),
    ),
    "profile_oauth_error": (
        OAuthErrorResponse,
        lambda p: p.set_profile(
            {"error": "invalid_token", "error_description": echo_all(f"at={ACCESS} rt={REFRESH}")},
            401,
        ),
    ),
    "profile_html": (
        ProviderBadResponse,
        lambda p: p.set_token_response_and_html_profile(),
    ),
    "template_error": (
        TemplateError,
        lambda p: ({"code": CODE + "\r\nX-Injected: 1"}, {"token_headers": "X-Code: %Code%"}),
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_errors_never_reveal_secrets(
    scenario, provider, finish, caplog, closed_port_url, raw_server, hasty_http
):
    """Each error type, provoked with a provider echoing secrets, reveals none of them."""
    error_type, arrange = SCENARIOS[scenario]
    provider.closed = closed_port_url
    provider.hang = raw_server(_hang)

    def set_token(response):
        provider.app.routes["/token"] = lambda r: response
        return None, {}

    def set_profile(doc, status=200):
        provider.app.routes["/profile"] = lambda r: json_response(doc, status)
        return None, {}

    def set_token_response_and_html_profile():
        body = "<html>" + echo_all(f"at={ACCESS} rt={REFRESH} id={provider.id_token}")
        provider.app.routes["/profile"] = lambda r: Response(body, content_type="text/html")
        return None, {}

    provider.set_token, provider.set_profile = set_token, set_profile
    provider.set_token_response_and_html_profile = set_token_response_and_html_profile
    params, overrides = arrange(provider)
    trace = Trace()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SSOError) as info:
        finish(provider.config(**overrides), params, trace=trace, http=hasty_http)
    exc = info.value
    assert type(exc) is error_type
    assert exc.code and exc.user_message
    extra = (provider.id_token,)
    # The loopback server's own access log (werkzeug) is the provider's side, not ours.
    our_logs = "\n".join(
        f"{r.name} {r.getMessage()}" for r in caplog.records if r.name != "werkzeug"
    )
    for text in (str(exc), repr(exc), exc.log_detail, exc.user_message, our_logs):
        assert leaks(text, extra) == [], text
    assert leaks(json.dumps(dataclasses.asdict(trace), default=str), extra) == []
    assert "sign-in failed" in our_logs
