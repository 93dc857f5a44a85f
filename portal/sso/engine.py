"""The sign-in flow: login URL, callback, token request, ID token, profile and field mapping."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from jmespath.exceptions import JMESPathError

from portal.sso.errors import (
    REDACTED,
    IDTokenInvalid,
    IssuerMismatch,
    ProviderBadResponse,
    ProviderError,
    RequiredFieldMissing,
    SSOError,
    SubjectMismatch,
    TemplateError,
    TokenMissing,
)
from portal.sso.http import FORM_TYPE, HttpClient, parse_json_or_form
from portal.sso.idtoken import JWKSCache, validate_id_token
from portal.sso.paths import PathTooCostly, search_path
from portal.sso.placeholders import Context, basic_auth, body_context, render, render_headers
from portal.sso.profile_fields import (
    ACCOUNT_FIELDS,
    FIELD_LABEL,
    OPTION_FIELDS,
    PROFILE_FIELDS,
    ProfileParam,
)

log = logging.getLogger(__name__)

#: Placeholders whose values are secret: redacted in traces and error messages.
SECRET_PLACEHOLDERS: tuple[str, ...] = (
    "ClientSecret",
    "Code",
    "CodeVerifier",
    "Token",
    "IDToken",
    "RefreshToken",
    "BasicAuth",
)
#: Keys of the token response whose values are always redacted in a trace.
TOKEN_KEYS: frozenset[str] = frozenset({"access_token", "refresh_token", "id_token"})


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
    access_token_path: str = "access_token"
    profile_url: str = ""
    profile_headers: str = ""
    issuer: str = ""
    jwks_url: str = ""
    scope: str = ""
    params: Mapping[str, ProfileParam] = field(default_factory=dict)


@dataclass
class LoginAttempt:
    """What a login attempt must remember until the callback, and where to send the browser."""

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


def _secret_variants(value: str) -> set[str]:
    """Return a secret and the forms it takes once encoded for a context."""
    if not value:
        return set()
    b64 = base64.b64encode(value.encode("utf-8")).decode("ascii")
    variants = {value, b64}
    for v in (value, b64):
        variants |= {quote(v, safe=""), quote_plus(v), json.dumps(v, ensure_ascii=False)[1:-1]}
    return {v for v in variants if v}


def _last_key(path: str) -> str | None:
    """Return the last member name of a simple JMESPath (`a.b."c-d"` gives `c-d`)."""
    names = re.findall(r'"((?:[^"\\]|\\.)*)"|([A-Za-z_][A-Za-z0-9_]*)', path or "")
    if not names:
        return None
    quoted, bare = names[-1]
    return quoted or bare


def _looks_secret(key: Any) -> bool:
    """Tell whether a document key probably holds a token or secret (`token`, `x_secret`...)."""
    if not isinstance(key, str):
        return False
    name = key.lower()
    return name not in ("token_type", "tokentype") and ("token" in name or "secret" in name)


@dataclass
class TraceEntry:
    """One outbound request as the admin test screen shows it (secrets redacted)."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: str | None
    status: int | None
    elapsed_ms: float
    content_type: str | None = None
    error: str | None = None


@dataclass
class Trace:
    """A recorder of the requests and documents of one sign-in, with secrets redacted."""

    entries: list[TraceEntry] = field(default_factory=list)
    token_response: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    id_claims: dict[str, Any] | None = None
    error_code: str | None = None
    error_detail: str | None = None

    def __post_init__(self) -> None:
        # Not a dataclass field, so that asdict() or a template never sees the secrets.
        self._secrets: set[str] = set()

    def add_secrets(self, values: Iterable[str | None]) -> None:
        """Register secret values (and their encoded forms) to redact."""
        for value in values:
            if isinstance(value, str):
                self._secrets |= _secret_variants(value)

    def redact_text(self, text: str) -> str:
        """Replace every registered secret in a text with a marker."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def redact_doc(self, doc: Any, keys: Iterable[str] = ()) -> Any:
        """Return a copy of a JSON document with secrets redacted by key and by value.

        Values under ``keys`` or keys named like a token or secret are replaced whole; every
        registered secret is replaced wherever else it appears: inside any string value,
        inside a key, or as a number, so a provider that echoes the Client Secret or a token
        under an innocuous key shows neither.
        """
        keys = frozenset(keys)
        if isinstance(doc, dict):
            return {
                self.redact_doc(k): (
                    REDACTED if k in keys or _looks_secret(k) else self.redact_doc(v, keys)
                )
                for k, v in doc.items()
            }
        if isinstance(doc, list):
            return [self.redact_doc(v, keys) for v in doc]
        if isinstance(doc, str):
            return self.redact_text(doc)
        if isinstance(doc, int | float) and not isinstance(doc, bool) and str(doc) in self._secrets:
            return REDACTED
        return doc

    def record_request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        *,
        status: int | None,
        elapsed_ms: float,
        content_type: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record one outbound request, redacted."""
        self.entries.append(
            TraceEntry(
                method=method,
                url=self.redact_text(url),
                headers=[(name, self.redact_text(value)) for name, value in headers],
                body=None if body is None else self.redact_text(body.decode("utf-8", "replace")),
                status=status,
                elapsed_ms=elapsed_ms,
                content_type=content_type,
                error=error,
            )
        )


def begin_login(config: SSOConfig) -> LoginAttempt:
    """Start a login attempt: fresh state, nonce and PKCE verifier, and the login URL."""
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
    }
    url = render(config.login_url, Context.URL, values)
    return LoginAttempt(state=state, nonce=nonce, code_verifier=code_verifier, url=url)


def _search(expr: str, doc: Any, what: str) -> Any:
    try:
        return search_path(expr, doc)
    except PathTooCostly as exc:
        raise TemplateError(f"the {what} path was stopped: {exc}") from None
    except JMESPathError:
        raise TemplateError(f"the {what} path is not a usable JMESPath expression") from None


def _with_default(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    if not any(h.lower() == name.lower() for h, _ in headers):
        headers.append((name, value))
    return headers


def _unverified_claims(id_token: str) -> dict[str, Any] | None:
    """Read an ID token's payload without verification (it came straight from the token API)."""
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def _text_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


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

    With ``enforce_required`` off (the admin's test screen), a missing User ID or
    must-supply field does not raise: ``SSOResult.violations`` lists them instead.
    """
    secret_values: list[str] = []
    try:
        result = _finish(
            config, params, nonce, code_verifier, http, jwks_cache, trace, secret_values
        )
        if enforce_required and result.violations:
            raise RequiredFieldMissing(result.violations[0])
        return result
    except SSOError as exc:
        exc.redact(set().union(*(_secret_variants(v) for v in secret_values)))
        if trace is not None:
            trace.error_code, trace.error_detail = exc.code, exc.log_detail
        log.warning("SSO %s: sign-in failed: %s", config.slug, exc)
        raise


def _finish(
    config: SSOConfig,
    params: Mapping[str, str],
    nonce: str,
    code_verifier: str,
    http: HttpClient,
    jwks_cache: JWKSCache,
    trace: Trace | None,
    secret_values: list[str],
) -> SSOResult:
    def keep_secret(*values: str | None) -> None:
        clean = [v for v in values if isinstance(v, str) and v]
        secret_values.extend(clean)
        if trace is not None:
            trace.add_secrets(clean)

    code = params.get("code") or ""
    basic = basic_auth(config.client_id, config.client_secret or "")
    keep_secret(config.client_secret, code, code_verifier, basic)

    if params.get("error"):
        raise ProviderError(params["error"], params.get("error_description"))
    if config.issuer and params.get("iss") and params["iss"] != config.issuer:
        raise IssuerMismatch(f"callback iss {params['iss']!r}, expected {config.issuer!r}")
    if not code:
        raise ProviderBadResponse("the callback carried no authorization code")

    # Token request.
    values = {
        "ClientID": config.client_id,
        "ClientSecret": config.client_secret or "",
        "BasicAuth": basic,
        "RedirectURL": config.redirect_url,
        "Code": code,
        "CodeVerifier": code_verifier,
        "Nonce": nonce,
        "State": params.get("state") or "",
    }
    url = render(config.token_url, Context.URL, values)
    headers = render_headers(config.token_headers, values)
    method = "GET" if (config.token_method or "POST").upper() == "GET" else "POST"
    body: bytes | None = None
    if method == "POST":
        # The body is rendered for the Content-Type the admin set (form when none).
        body = render(config.token_body, body_context(headers), values).encode("utf-8")
        _with_default(headers, "Content-Type", FORM_TYPE)
    _with_default(headers, "Accept", "application/json")
    resp = http.request(method, url, headers=headers, body=body, trace=trace)
    token_doc = parse_json_or_form(resp, allow_form=True)
    keep_secret(*(v for k, v in token_doc.items() if k in TOKEN_KEYS and isinstance(v, str)))

    token_path = config.access_token_path or "access_token"
    access_token = _search(token_path, token_doc, "access token")
    if isinstance(access_token, str):
        keep_secret(access_token)
    if trace is not None:
        hidden = TOKEN_KEYS | {k for k in [_last_key(token_path)] if k}
        trace.token_response = trace.redact_doc(token_doc, hidden)
    if not isinstance(access_token, str) or not access_token.strip():
        raise TokenMissing(f"nothing usable at {token_path!r} in the token response")

    # ID token.
    id_token = token_doc.get("id_token")
    id_token = id_token if isinstance(id_token, str) and id_token else None
    refresh_token = token_doc.get("refresh_token")
    refresh_token = refresh_token if isinstance(refresh_token, str) else ""
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
        id_claims = _unverified_claims(id_token)
    elif config.issuer and config.jwks_url and "openid" in (config.scope or "").split():
        raise IDTokenInvalid("the token response holds no id_token")
    if trace is not None:
        trace.id_claims = id_claims

    # Profile.
    if config.profile_url:
        profile_values = {
            "ClientID": config.client_id,
            "Token": access_token,
            "IDToken": id_token or "",
            "RefreshToken": refresh_token,
        }
        profile_url = render(config.profile_url, Context.URL, profile_values)
        profile_headers = render_headers(config.profile_headers, profile_values)
        _with_default(profile_headers, "Accept", "application/json")
        resp = http.request("GET", profile_url, headers=profile_headers, trace=trace)
        profile = parse_json_or_form(resp, allow_form=False)
        if trace is not None:
            trace.profile = trace.redact_doc(profile, TOKEN_KEYS)
        if id_claims is not None and "sub" in profile and "sub" in id_claims:
            if str(profile["sub"]) != str(id_claims["sub"]):
                raise SubjectMismatch("profile sub differs from the ID token's sub")
    else:
        profile = dict(token_doc)
        profile.update(id_claims or {})
        if trace is not None:
            trace.profile = trace.redact_doc(profile, TOKEN_KEYS)

    # Field mapping.
    fields = map_fields(profile, config.params)
    violations = [FIELD_LABEL["user_id"]] if fields["user_id"] is None else []
    for key in OPTION_FIELDS:
        param = config.params.get(key)
        if param is not None and param.must_supply and fields[key] is None:
            if FIELD_LABEL[key] not in violations:
                violations.append(FIELD_LABEL[key])
    missing = [FIELD_LABEL[key] for key in ACCOUNT_FIELDS if fields[key] is None]
    return SSOResult(
        subject=fields["user_id"] or "",
        violations=violations,
        fields=fields,
        missing_required=missing,
        token_response=token_doc,
        profile=profile,
        id_token=id_token,
        id_claims=id_claims,
    )
