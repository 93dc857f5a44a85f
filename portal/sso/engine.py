"""The sign-in flow in its named steps: login URL, callback, token, ID token, profile, fields."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from jmespath.exceptions import JMESPathError

from portal.sso.errors import (
    IDTokenInvalid,
    IssuerMismatch,
    ProviderBadResponse,
    ProviderError,
    ProviderHTTPError,
    RequiredFieldMissing,
    SubjectMismatch,
    TemplateError,
    TokenMissing,
)
from portal.sso.fields import DEFAULT_REFRESH_TOKEN_BODY, TOKEN_RESPONSE_SOURCE, response_source
from portal.sso.http import HttpClient
from portal.sso.idtoken import JWKSCache, unverified_claims, validate_id_token
from portal.sso.paths import PathTooCostly, search_path
from portal.sso.placeholders import (
    Context,
    basic_auth,
    body_context,
    document_value,
    find_document_values,
    render,
    render_headers,
)
from portal.sso.profile_fields import (
    ACCOUNT_FIELDS,
    FIELD_LABEL,
    MUST_SUPPLY_FIELDS,
    PROFILE_FIELDS,
    ProfileParam,
)
from portal.sso.responses import FORM_TYPE, parse_json_or_form
from portal.sso.trace import TOKEN_KEYS, SignInSecrets, Trace, hidden_token_keys, looks_secret_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileRequest:
    """One profile request of the chain after the token request: its four templates."""

    url: str
    method: str = "GET"
    headers: str = ""
    body: str = ""


@dataclass(frozen=True)
class SSOConfig:
    """One identity provider's saved configuration, secret decrypted."""

    slug: str
    client_id: str
    client_secret: str
    redirect_url: str
    login_url: str
    token_url: str
    token_method: str = "POST"
    token_headers: str = ""
    token_body: str = ""
    #: The token request body that redeems a refresh token the platform POSTed.
    refresh_token_body: str = DEFAULT_REFRESH_TOKEN_BODY
    access_token_path: str = "access_token"
    #: The profile requests, in order (none: the profile is the token response).
    profile_requests: tuple[ProfileRequest, ...] = ()
    issuer: str = ""
    jwks_url: str = ""
    scope: str = ""
    #: The Logoff API call made at sign-out, server to server (no URL: none).
    logoff_url: str = ""
    logoff_method: str = "POST"
    logoff_headers: str = ""
    logoff_body: str = ""
    params: Mapping[str, ProfileParam] = field(default_factory=dict)


@dataclass
class AuthorizationRequest:
    """The authorization request of a sign-in: what to remember until the callback, and its URL.

    Named apart from the model `portal.models.LoginAttempt`, which stores it.
    """

    state: str
    nonce: str
    code_verifier: str
    url: str


@dataclass
class SSOResult:
    """The outcome of a successful callback."""

    subject: str
    fields: dict[str, Any]
    missing_required: list[str]
    token_response: dict[str, Any]
    profile: dict[str, Any]
    id_token: str | None = None
    id_claims: dict[str, Any] | None = None
    #: Labels of required fields the provider did not supply (User ID, must-supply fields).
    violations: list[str] = field(default_factory=list)
    #: The access token read at the Access Token Path (kept for a membership re-check).
    access_token: str = ""

    @property
    def refresh_token(self) -> str:
        """Return the refresh token of the token response ("" when the provider gave none)."""
        value = self.token_response.get("refresh_token")
        return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class TokenRequest:
    """The token endpoint request of one callback, rendered from the configuration."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None


def begin_login(config: SSOConfig, *, login_hint: str = "") -> AuthorizationRequest:
    """Start a sign-in: fresh state, nonce and PKCE verifier, and the login URL.

    ``login_hint`` (a third-party-initiated login's) fills ``%LoginHint%`` (empty when none).
    """
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    code_verifier = secrets.token_urlsafe(48)
    values = {
        "ClientID": config.client_id,
        "RedirectURL": config.redirect_url,
        "State": state,
        "Nonce": nonce,
        "Scope": config.scope or "",
        "CodeChallenge": create_s256_code_challenge(code_verifier),
        "LoginHint": login_hint,
    }
    url = render(config.login_url, Context.URL, values)
    return AuthorizationRequest(state=state, nonce=nonce, code_verifier=code_verifier, url=url)


@dataclass(frozen=True)
class Initiation:
    """A third-party-initiated login (OpenID Connect Core 1.0 §4), its issuer checked."""

    login_hint: str
    #: Where the member asked to go; the caller honours it only when it is a path of the site.
    target_link_uri: str


def read_initiation(config: SSOConfig, params: Mapping[str, str]) -> Initiation:
    """Check a third-party-initiated login's ``iss`` and return its hints.

    ``iss`` is required, and must be the configured Issuer when one is set.
    """
    iss = (params.get("iss") or "").strip()
    if not iss:
        raise IssuerMismatch("third-party-initiated login without iss")
    if config.issuer and iss != config.issuer:
        raise IssuerMismatch(f"initiation iss {iss[:200]!r}, expected {config.issuer!r}")
    return Initiation(
        login_hint=(params.get("login_hint") or "")[:255],
        target_link_uri=params.get("target_link_uri") or "",
    )


def finish_login(
    config: SSOConfig,
    *,
    params: Mapping[str, str],
    nonce: str,
    code_verifier: str,
    http: HttpClient,
    jwks_cache: JWKSCache,
    trace: Trace | None = None,
    enforce_required: bool = True,
) -> SSOResult:
    """Complete a login from the callback's parameters (state already checked).

    The steps: check the callback, build and send the token request, read the access token,
    validate the ID token, fetch the profile, map the fields. Each secret met on the way is
    redacted from the trace and from the error raised.

    With ``enforce_required`` off (the admin's test screen), a missing User ID or
    must-supply field does not raise: ``SSOResult.violations`` lists them instead.
    """
    seen = SignInSecrets(trace)
    with seen.failures_reported(log, config.slug, "sign-in"):
        values = _token_request_values(config, params, nonce=nonce, code_verifier=code_verifier)
        seen.keep_placeholders(values)
        check_callback(config, params)
        token_doc = fetch_token_response(build_token_request(config, values), http, trace)
        return _result_from_token_response(
            config,
            token_doc,
            nonce=nonce,
            http=http,
            jwks_cache=jwks_cache,
            trace=trace,
            seen=seen,
            enforce_required=enforce_required,
        )


def finish_refresh_login(
    config: SSOConfig,
    refresh_token: str,
    http: HttpClient,
    jwks_cache: JWKSCache,
    trace: Trace | None = None,
    *,
    what: str = "platform-started sign-in",
) -> SSOResult:
    """Complete a sign-in the platform started by POSTing a refresh token (the iMIS shape).

    The token is redeemed server to server at the Token API URL with the Refresh Token Post
    Body; from the token response on, the steps are `finish_login`'s. An ID token in the
    answer is checked as there, except its nonce: nobody sent one. The refresh token is
    redacted from the trace and from any error raised.
    """
    seen = SignInSecrets(trace)
    seen.keep(refresh_token)
    with seen.failures_reported(log, config.slug, what):
        if not refresh_token.strip():
            raise ProviderBadResponse("the platform's POST carried no refresh_token")
        values = {
            "RefreshToken": refresh_token,
            "ClientID": config.client_id,
            "ClientSecret": config.client_secret or "",
            "BasicAuth": basic_auth(config.client_id, config.client_secret or ""),
        }
        seen.keep_placeholders(values)
        request = build_token_request(
            dataclasses.replace(config, token_method="POST", token_body=config.refresh_token_body),
            values,
        )
        token_doc = fetch_token_response(request, http, trace)
        return _result_from_token_response(
            config, token_doc, nonce=None, http=http, jwks_cache=jwks_cache, trace=trace, seen=seen
        )


def _result_from_token_response(
    config: SSOConfig,
    token_doc: dict[str, Any],
    *,
    nonce: str | None,
    http: HttpClient,
    jwks_cache: JWKSCache,
    trace: Trace | None,
    seen: SignInSecrets,
    enforce_required: bool = True,
) -> SSOResult:
    """Run the steps after the token request: access token, ID token, profile, fields."""
    access_token = read_access_token(config, token_doc, seen, trace)
    id_token, id_claims = read_id_token(
        config, token_doc, nonce=nonce, http=http, jwks_cache=jwks_cache, trace=trace
    )
    profile = fetch_profile(
        config, token_doc, access_token, id_token, id_claims, http=http, trace=trace, seen=seen
    )
    return _mapped_result(
        config, token_doc, access_token, profile, id_token, id_claims, enforce_required
    )


def _mapped_result(
    config: SSOConfig,
    token_doc: dict[str, Any],
    access_token: str,
    profile: dict[str, Any],
    id_token: str | None,
    id_claims: dict[str, Any] | None,
    enforce_required: bool = True,
) -> SSOResult:
    """Map the profile's fields and return the result; a missing required field raises."""
    fields = map_fields(profile, config.params)
    result = SSOResult(
        subject=fields["user_id"] or "",
        violations=required_violations(fields, config.params),
        fields=fields,
        missing_required=[FIELD_LABEL[key] for key in ACCOUNT_FIELDS if fields[key] is None],
        token_response=token_doc,
        profile=profile,
        id_token=id_token,
        id_claims=id_claims,
        access_token=access_token,
    )
    if enforce_required and result.violations:
        raise RequiredFieldMissing(result.violations[0])
    return result


# -- during a session: the membership re-check and the Logoff API ------------------------------


def recheck_with_access_token(
    config: SSOConfig, token_doc: dict[str, Any], http: HttpClient
) -> SSOResult:
    """Re-read a signed-in member's profile with the access token of their sign-in.

    ``token_doc`` is the sign-in's token response (the profile requests may read it). Only
    a system with profile requests can re-read anything this way: without them the profile
    *is* the token response, which says nothing new. The ID token is not checked again (it
    was at sign-in, and has usually expired since); its claims are read for the profile's
    ``sub`` check. Tokens are redacted from any error raised.
    """
    seen = SignInSecrets(None)
    with seen.failures_reported(log, config.slug, "membership re-check"):
        if not config.profile_requests:
            raise TokenMissing("no profile request to re-read the profile with an access token")
        access_token = read_access_token(config, token_doc, seen, None)
        id_token = token_doc.get("id_token")
        id_token = id_token if isinstance(id_token, str) and id_token else None
        seen.keep(id_token)
        id_claims = unverified_claims(id_token) if id_token else None
        profile = fetch_profile(
            config, token_doc, access_token, id_token, id_claims, http=http, trace=None, seen=seen
        )
        return _mapped_result(config, token_doc, access_token, profile, id_token, id_claims)


@dataclass(frozen=True)
class LogoffTokens:
    """The tokens of the session that ends, for the Logoff API's placeholders."""

    access_token: str = ""
    refresh_token: str = ""
    id_token: str = ""


def call_logoff_api(config: SSOConfig, tokens: LogoffTokens, http: HttpClient) -> int:
    """Send the Logoff API request (server to server, at sign-out); return its HTTP status.

    A status outside 2xx raises ProviderHTTPError; every secret and token is redacted from
    any error raised. The call goes through the policy-checked ``http`` client (address
    pinning, deadlines, size cap) like every other provider call.
    """
    values = {
        "Token": tokens.access_token,
        "RefreshToken": tokens.refresh_token,
        "IDToken": tokens.id_token,
        "ClientID": config.client_id,
        "ClientSecret": config.client_secret or "",
        "BasicAuth": basic_auth(config.client_id, config.client_secret or ""),
    }
    seen = SignInSecrets(None)
    seen.keep_placeholders(values)
    with seen.failures_reported(log, config.slug, "Logoff API call"):
        url = render(config.logoff_url, Context.URL, values)
        headers = render_headers(config.logoff_headers, values)
        method = (config.logoff_method or "POST").upper()
        method = method if method in ("POST", "GET", "DELETE") else "POST"
        body: bytes | None = None
        if method != "GET" and config.logoff_body:
            body = render(config.logoff_body, body_context(headers), values).encode("utf-8")
            _with_default(headers, "Content-Type", FORM_TYPE)
        resp = http.request(method, url, headers=headers, body=body)
        if not 200 <= resp.status < 300:
            raise ProviderHTTPError(resp.status, "the Logoff API answered with an error")
        return resp.status


def check_callback(config: SSOConfig, params: Mapping[str, str]) -> None:
    """Refuse a callback that reports an error, names another issuer or carries no code."""
    if params.get("error"):
        raise ProviderError(params["error"], params.get("error_description"))
    if config.issuer and params.get("iss") and params["iss"] != config.issuer:
        raise IssuerMismatch(f"callback iss {params['iss']!r}, expected {config.issuer!r}")
    if not params.get("code"):
        raise ProviderBadResponse("the callback carried no authorization code")


def _token_request_values(
    config: SSOConfig, params: Mapping[str, str], *, nonce: str, code_verifier: str
) -> dict[str, str]:
    """Return the placeholder values of the token request."""
    return {
        "ClientID": config.client_id,
        "ClientSecret": config.client_secret or "",
        "BasicAuth": basic_auth(config.client_id, config.client_secret or ""),
        "RedirectURL": config.redirect_url,
        "Code": params.get("code") or "",
        "CodeVerifier": code_verifier,
        "Nonce": nonce,
        "State": params.get("state") or "",
    }


def build_token_request(config: SSOConfig, values: Mapping[str, str]) -> TokenRequest:
    """Render the token request from its templates, adding the default headers."""
    url = render(config.token_url, Context.URL, values)
    headers = render_headers(config.token_headers, values)
    method = "GET" if (config.token_method or "POST").upper() == "GET" else "POST"
    body: bytes | None = None
    if method == "POST":
        # The body is rendered for the Content-Type the admin set (form when none).
        body = render(config.token_body, body_context(headers), values).encode("utf-8")
        _with_default(headers, "Content-Type", FORM_TYPE)
    _with_default(headers, "Accept", "application/json")
    return TokenRequest(method=method, url=url, headers=headers, body=body)


def fetch_token_response(
    request: TokenRequest, http: HttpClient, trace: Trace | None
) -> dict[str, Any]:
    """Send the token request and return the token response; an OAuth error body raises."""
    resp = http.request(
        request.method,
        request.url,
        headers=request.headers,
        body=request.body,
        trace=trace,
        step="token",
    )
    return parse_json_or_form(resp, allow_form=True)


def read_access_token(
    config: SSOConfig, token_doc: dict[str, Any], seen: SignInSecrets, trace: Trace | None
) -> str:
    """Return the access token at the configured path, and trace the redacted token response."""
    seen.keep(*(v for k, v in token_doc.items() if k in TOKEN_KEYS and isinstance(v, str)))
    token_path = config.access_token_path or "access_token"
    access_token = _search(token_path, token_doc, "access token")
    if isinstance(access_token, str):
        seen.keep(access_token)
    if trace is not None:
        trace.token_response = trace.redact_doc(token_doc, hidden_token_keys(token_path))
    if not isinstance(access_token, str) or not access_token.strip():
        raise TokenMissing(f"nothing usable at {token_path!r} in the token response")
    return access_token


def read_id_token(
    config: SSOConfig,
    token_doc: dict[str, Any],
    *,
    nonce: str | None,
    http: HttpClient,
    jwks_cache: JWKSCache,
    trace: Trace | None,
) -> tuple[str | None, dict[str, Any] | None]:
    """Return the ID token and its claims, validated when the issuer and JWKS URL are set.

    Without them the claims are read unverified (the token came straight from the token API);
    an OpenID sign-in whose provider is fully configured must return an ID token. A ``nonce``
    of None (a platform-started sign-in: none was sent) skips the nonce check only.
    """
    id_token = token_doc.get("id_token")
    id_token = id_token if isinstance(id_token, str) and id_token else None
    id_claims: dict[str, Any] | None = None
    if id_token and config.issuer and config.jwks_url:
        id_claims = validate_id_token(
            id_token,
            issuer=config.issuer,
            client_id=config.client_id,
            nonce=nonce,
            jwks_url=config.jwks_url,
            http=http,
            jwks_cache=jwks_cache,
            trace=trace,
        )
    elif id_token:
        id_claims = unverified_claims(id_token)
    elif config.issuer and config.jwks_url and "openid" in (config.scope or "").split():
        raise IDTokenInvalid("the token response holds no id_token")
    if trace is not None:
        trace.id_claims = id_claims
    return id_token, id_claims


def fetch_profile(
    config: SSOConfig,
    token_doc: dict[str, Any],
    access_token: str,
    id_token: str | None,
    id_claims: dict[str, Any] | None,
    *,
    http: HttpClient,
    trace: Trace | None,
    seen: SignInSecrets | None = None,
) -> dict[str, Any]:
    """Return the profile: the profile requests' merged answers, else the token response and
    ID token claims.

    The profile's ``sub``, when it has one, must be the ID token's.
    """
    if config.profile_requests:
        values = _profile_request_values(config, token_doc, access_token, id_token)
        answers = request_profiles(
            config.profile_requests, values, token_doc, http, trace, seen or SignInSecrets(trace)
        )
        profile = merge_responses(answers)
    else:
        profile = {**token_doc, **(id_claims or {})}
    if trace is not None:
        trace.profile = trace.redact_doc(profile, TOKEN_KEYS)
    if id_claims is not None and "sub" in profile and "sub" in id_claims:
        if str(profile["sub"]) != str(id_claims["sub"]):
            raise SubjectMismatch("profile sub differs from the ID token's sub")
    return profile


def _profile_request_values(
    config: SSOConfig, token_doc: dict[str, Any], access_token: str, id_token: str | None
) -> dict[str, str]:
    """Return the placeholder values every profile request offers."""
    refresh_token = token_doc.get("refresh_token")
    return {
        "ClientID": config.client_id,
        "Token": access_token,
        "IDToken": id_token or "",
        "RefreshToken": refresh_token if isinstance(refresh_token, str) else "",
    }


def request_profiles(
    requests: tuple[ProfileRequest, ...],
    values: Mapping[str, str],
    token_doc: dict[str, Any],
    http: HttpClient,
    trace: Trace | None,
    seen: SignInSecrets,
) -> list[dict[str, Any]]:
    """Send the profile requests in order; each may read the token response and earlier answers.

    Return each request's answer (a JSON object), in order.
    """
    documents: dict[str, Any] = {TOKEN_RESPONSE_SOURCE: token_doc}
    answers: list[dict[str, Any]] = []
    for position, request in enumerate(requests, start=1):
        answer = _request_profile(request, values, documents, http, trace, seen)
        documents[response_source(position)] = answer
        answers.append(answer)
    return answers


def merge_responses(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the document the profile parameters read from the profile requests' answers.

    One answer is the profile as it is. Several are merged shallowly in order (a later
    answer's key wins), and each is also kept whole under ``Response1``, ``Response2``...,
    so a path can name the answer it reads (``Response3.Items."$values"[].GroupName``).
    The token response is never part of it.
    """
    if len(answers) == 1:
        return answers[0]
    merged: dict[str, Any] = {}
    for answer in answers:
        merged.update(answer)
    for position, answer in enumerate(answers, start=1):
        merged[response_source(position)] = answer
    return merged


def _request_profile(
    request: ProfileRequest,
    values: Mapping[str, str],
    documents: Mapping[str, Any],
    http: HttpClient,
    trace: Trace | None,
    seen: SignInSecrets,
) -> dict[str, Any]:
    """Render one profile request, send it and return its answer (a JSON object)."""
    templates = (request.url, request.headers, request.body)
    for source, path in {pair for t in templates for pair in find_document_values(t)}:
        # A value read at a key named like a token or secret is one: never shown in the trace.
        if looks_secret_path(path):
            seen.keep(document_value(source, path, documents))
    url = render(request.url, Context.URL, values, documents)
    headers = render_headers(request.headers, values, documents)
    method = "POST" if (request.method or "GET").upper() == "POST" else "GET"
    body: bytes | None = None
    if method == "POST":
        body = render(request.body, body_context(headers), values, documents).encode("utf-8")
        _with_default(headers, "Content-Type", FORM_TYPE)
    _with_default(headers, "Accept", "application/json")
    resp = http.request(method, url, headers=headers, body=body, trace=trace, step="profile")
    return parse_json_or_form(resp, allow_form=False)


def map_fields(profile: Any, params: Mapping[str, ProfileParam]) -> dict[str, Any]:
    """Map a profile document onto the profile fields with the configured JMESPaths."""
    fields: dict[str, Any] = {}
    for key, label in PROFILE_FIELDS:
        param = params.get(key)
        raw = _search(param.path, profile, label) if param and param.path else None
        if key == "groups":
            items = raw if isinstance(raw, list) else ([] if raw is None else [raw])
            fields[key] = [v for v in (_text_value(item) for item in items) if v is not None]
        else:
            fields[key] = _text_value(raw)
    return fields


def required_violations(fields: Mapping[str, Any], params: Mapping[str, ProfileParam]) -> list[str]:
    """Return the labels of required fields left empty: the User ID, then must-supply fields."""
    violations = [FIELD_LABEL["user_id"]] if fields["user_id"] is None else []
    for key in MUST_SUPPLY_FIELDS:
        param = params.get(key)
        if param is not None and param.must_supply and fields[key] is None:
            if FIELD_LABEL[key] not in violations:
                violations.append(FIELD_LABEL[key])
    return violations


def _search(expr: str, doc: Any, what: str) -> Any:
    """Search a document with a configured path; a path that cannot run is a TemplateError."""
    try:
        return search_path(expr, doc)
    except PathTooCostly as exc:
        raise TemplateError(f"the {what} path was stopped: {exc}") from None
    except JMESPathError:
        raise TemplateError(f"the {what} path is not a usable JMESPath expression") from None


def _with_default(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    """Add a header unless the configuration already sets it (names compared case-blind)."""
    if not any(h.lower() == name.lower() for h, _ in headers):
        headers.append((name, value))
    return headers


def _text_value(value: Any) -> str | None:
    """Return a scalar as field text (booleans as true/false); blanks and structures give None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None
