"""A standards-shaped OpenID Connect provider on loopback: its endpoints and app factory."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from flask import Flask, Response, redirect, request
from markupsafe import escape

from portal.devidp.client import decode_basic_auth
from portal.devidp.faults import GENERIC_FAULTS
from portal.devidp.members import Member
from portal.devidp.oidc_authority import OIDCAuthority, s256
from portal.devidp.provider import Route, endpoint_url
from portal.devidp.responses import account_page, add_query, html_page, json_response
from portal.devidp.signin import sign_in

BRAND = "Loopback OpenID Provider"
SCOPES = ("openid", "email", "profile", "groups", "membership")
CLAIMS = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "nonce",
    "email",
    "email_verified",
    "given_name",
    "family_name",
    "name",
    "preferred_username",
    "membership_status",
    "membership_type",
    "groups",
)


class OIDCProvider(OIDCAuthority):
    """An OpenID Connect provider: discovery, authorize, token, JWKS, userinfo, logout.

    Configure it in code (``members``, ``client``, ``faults``), start it with ``start()`` or
    ``with``, and read ``requests`` / ``logouts`` afterwards. The issuer is ``issuer`` when
    given, else the running server's base URL.
    """

    FAULT_KINDS = {
        "discovery": GENERIC_FAULTS,
        "authorize": frozenset(
            {"slow", "status", "html", "error", "wrong_iss", "no_iss", "wrong_state"}
        ),
        "token": GENERIC_FAULTS | {"no_token"},
        "id_token": frozenset(
            {
                "bad_signature",
                "wrong_aud",
                "wrong_iss",
                "wrong_nonce",
                "expired",
                "missing",
                "alg_none",
                "unknown_kid",
            }
        ),
        "jwks": GENERIC_FAULTS,
        "userinfo": GENERIC_FAULTS | {"sub_mismatch"},
        "logout": frozenset({"slow", "status", "html"}),
        "revoke": GENERIC_FAULTS,
    }
    FAULT_ALIASES = {"profile": "userinfo"}
    AUTHORIZE_PATH = "/authorize"
    #: Where each endpoint (by its name in ``ROUTES``) is served; a look-alike of a platform
    #: with other paths (``NoviProvider``) changes these, discovery follows them.
    PATHS: dict[str, str] = {
        "discovery": "/.well-known/openid-configuration",
        "jwks": "/jwks",
        "authorize": "/authorize",
        "token": "/token",
        "userinfo": "/userinfo",
        "account": "/account",
        "logout": "/logout",
        "revoke": "/revoke",
    }
    BRAND = BRAND
    SCOPES: tuple[str, ...] = SCOPES
    CLAIMS: tuple[str, ...] = CLAIMS

    discovery_url = endpoint_url(
        "/.well-known/openid-configuration",
        "``<issuer>/.well-known/openid-configuration`` of the running server.",
    )
    authorize_url = endpoint_url("/authorize", "Authorization endpoint of the running server.")
    token_url = endpoint_url("/token", "Token endpoint of the running server.")
    jwks_url = endpoint_url("/jwks", "JWKS endpoint of the running server.")
    userinfo_url = endpoint_url("/userinfo", "Userinfo endpoint of the running server.")
    logout_url = endpoint_url("/logout", "End-session endpoint of the running server.")
    revocation_url = endpoint_url("/revoke", "RFC 7009 revocation endpoint of the running server.")

    def create_app(self) -> Flask:
        """Build the provider's Flask app."""
        return create_oidc_app(self)

    def refusal(self, member: Member) -> tuple[str, str] | None:
        """The OAuth error (code, description) a signed-in member is sent back with, or
        ``None`` to issue a code (this provider refuses nobody)."""
        return None


def _oauth_error(
    error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> Response:
    """An OAuth error body that no cache keeps."""
    resp = json_response({"error": error, "error_description": description}, status, headers)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def create_oidc_app(provider: OIDCProvider | None = None, **options: Any) -> Flask:
    """App factory: the OIDC provider's Flask app.

    Pass an :class:`OIDCProvider` (usual: ``OIDCProvider(...)`` calls this itself), or
    ``options`` to build one; either way ``app.extensions["devidp"]`` is the provider.
    """
    if provider is None:
        return OIDCProvider(**options).app
    routes = [replace(r, rule=provider.PATHS.get(r.endpoint, r.rule)) for r in ROUTES]
    return provider.build_app(__name__, routes)


def discovery(idp: OIDCProvider) -> Response:
    """The OpenID Provider metadata document."""
    base, paths = idp.issuer, idp.PATHS
    return json_response(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}{paths['authorize']}",
            "token_endpoint": f"{base}{paths['token']}",
            "userinfo_endpoint": f"{base}{paths['userinfo']}",
            "jwks_uri": f"{base}{paths['jwks']}",
            "end_session_endpoint": f"{base}{paths['logout']}",
            "revocation_endpoint": f"{base}{paths['revoke']}",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(idp.SCOPES),
            "token_endpoint_auth_methods_supported": sorted(idp.client.auth_methods),
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "claims_supported": list(idp.CLAIMS),
        }
    )


def jwks(idp: OIDCProvider) -> Response:
    """The public signing keys."""
    return json_response(idp.jwks())


def authorize(idp: OIDCProvider) -> Response:
    """Check the client and the request, then run the sign-in step; answers carry ``iss``."""
    args = dict(request.args.items())
    refused = _unregistered_client_page(idp, args)
    if refused is not None:
        return refused
    problem = _authorize_problem(idp, args)
    if problem is not None:
        return _back(idp, args, error=problem[0], error_description=problem[1])
    return sign_in(
        idp,
        idp.BRAND,
        cancelled=lambda: _back(
            idp, args, error="access_denied", error_description="The member cancelled the sign-in."
        ),
        signed_in=lambda member: _signed_in(idp, args, member),
    )


def _signed_in(idp: OIDCProvider, args: dict[str, str], member: Member) -> Response:
    """Back with a code, or with the error the provider refuses this member with."""
    refused = idp.refusal(member)
    if refused is not None:
        return _back(idp, args, error=refused[0], error_description=refused[1])
    return _back(idp, args, code=idp.issue_code(member, args))


def _unregistered_client_page(idp: OIDCProvider, args: dict[str, str]) -> Response | None:
    """The error page for an unknown client or redirect URI (never a redirect), else ``None``."""
    client_id = args.get("client_id", "")
    redirect_uri = args.get("redirect_uri", "")
    if client_id != idp.client.client_id:
        return html_page(
            "Sign-in error",
            f"<h1>Unknown client</h1><p>client_id {escape(client_id)!s} is not registered.</p>",
            400,
        )
    if redirect_uri not in idp.client.redirect_uris:
        return html_page(
            "Sign-in error",
            "<h1>Invalid redirect URI</h1>"
            f"<p>{escape(redirect_uri)!s} is not registered for this "
            "client.</p>",
            400,
        )
    return None


def _authorize_problem(idp: OIDCProvider, args: dict[str, str]) -> tuple[str, str] | None:
    """The OAuth error (code, description) the request earns before the form, else ``None``."""
    if args.get("response_type") != "code":
        return "unsupported_response_type", "Only response_type=code is supported."
    challenge = args.get("code_challenge")
    if challenge and args.get("code_challenge_method") != "S256":
        return "invalid_request", "code_challenge_method must be S256."
    if not challenge and idp.client.require_pkce:
        return "invalid_request", "PKCE (code_challenge) is required."
    if "openid" not in args.get("scope", "").split():
        return "invalid_scope", "The openid scope is required."
    fault = idp.faults.take("authorize", "error")
    if fault:
        return str(fault.value), "Simulated error from the loopback provider."
    return None


def _back(idp: OIDCProvider, args: dict[str, str], **params: str | None) -> Response:
    """Redirect to the client with ``params``, ``state`` and ``iss`` (faults may spoil them)."""
    iss: str | None = idp.issuer
    if idp.faults.take("authorize", "no_iss"):
        iss = None
    elif idp.faults.take("authorize", "wrong_iss"):
        iss = "https://evil.example"
    state = args.get("state")
    if idp.faults.take("authorize", "wrong_state"):
        state = "tampered-" + (state or "")
    redirect_uri = args.get("redirect_uri", "")
    return redirect(add_query(redirect_uri, {**params, "state": state, "iss": iss}))


def token(idp: OIDCProvider) -> Response:
    """Authenticate the client, then redeem an authorization code or a refresh token."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return _oauth_error(
            "invalid_request", "The token request must be application/x-www-form-urlencoded."
        )
    client_id, refused = _authenticate_client(idp)
    if refused is not None:
        return refused
    grant_type = request.form.get("grant_type")
    if grant_type == "refresh_token":
        return _refresh_grant(idp, client_id)
    if grant_type != "authorization_code":
        return _oauth_error("unsupported_grant_type", f"Unsupported grant_type {grant_type}.")
    return _code_grant(idp, client_id)


def _authenticate_client(idp: OIDCProvider) -> tuple[str, Response | None]:
    """The client id, and the error to answer when its authentication fails."""
    form = request.form
    basic = decode_basic_auth(request.headers.get("Authorization"))
    posted = "client_secret" in form
    if basic and posted:
        return "", _oauth_error("invalid_request", "Use one client authentication method only.")
    if basic:
        method, (client_id, secret) = "client_secret_basic", basic
    elif posted:
        method, client_id, secret = (
            "client_secret_post",
            form.get("client_id", ""),
            form["client_secret"],
        )
    else:
        method, client_id, secret = "none", form.get("client_id", ""), ""
    if method not in idp.client.auth_methods or not idp.client.check_secret(client_id, secret):
        headers = {"WWW-Authenticate": 'Basic realm="devidp"'} if basic else None
        return client_id, _oauth_error(
            "invalid_client", "Client authentication failed.", 401, headers
        )
    return client_id, None


def _refresh_grant(idp: OIDCProvider, client_id: str) -> Response:
    """New tokens for a refresh token issued to this client."""
    grant = idp.use_refresh(request.form.get("refresh_token", ""))
    if grant is None or grant.client_id != client_id:
        return _oauth_error("invalid_grant", "Unknown refresh token.")
    member = idp.members.get(grant.username)
    if member is None:
        return _oauth_error("invalid_grant", "The member no longer exists.")
    return _token_response(idp, member, client_id, grant.scope, None, None)


def _code_grant(idp: OIDCProvider, client_id: str) -> Response:
    """Tokens for an authorization code: same client and redirect URI, PKCE verified."""
    form = request.form
    code = form.get("code", "")
    grant, problem = idp.redeem_code(code)
    if grant is None:
        return _oauth_error("invalid_grant", problem)
    if grant.client_id != client_id:
        return _oauth_error("invalid_grant", "The code was issued to another client.")
    if form.get("redirect_uri") != grant.redirect_uri:
        return _oauth_error("invalid_grant", "redirect_uri does not match the authorize one.")
    if grant.code_challenge:
        verifier = form.get("code_verifier", "")
        if not verifier:
            return _oauth_error("invalid_grant", "code_verifier is required (PKCE).")
        if not secrets.compare_digest(s256(verifier), grant.code_challenge):
            return _oauth_error("invalid_grant", "code_verifier does not match (PKCE).")
    member = idp.members.get(grant.username)
    if member is None:
        return _oauth_error("invalid_grant", "The member no longer exists.")
    return _token_response(idp, member, client_id, grant.scope, grant.nonce, code)


def _token_response(
    idp: OIDCProvider,
    member: Member,
    client_id: str,
    scope: str,
    nonce: str | None,
    code: str | None,
) -> Response:
    """The token answer: access and refresh tokens, and an ID token for the openid scope."""
    access, refresh = idp.issue_tokens(member.username, client_id, scope, code)
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": idp.token_ttl,
        "refresh_token": refresh,
        "scope": scope,
    }
    if "openid" in scope.split():
        id_token = idp.make_id_token(member, client_id, nonce)
        if id_token is not None:
            body["id_token"] = id_token
    if idp.faults.take("token", "no_token"):
        body.pop("access_token")
    resp = json_response(body)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def userinfo(idp: OIDCProvider) -> Response:
    """The member's claims for a live bearer access token."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    found = idp.lookup_token(value.strip()) if scheme.lower() == "bearer" else None
    member = idp.members.get(found.username) if found else None
    if member is None:
        return _oauth_error(
            "invalid_token",
            "Missing, unknown or expired access token.",
            401,
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    claims = idp.claims_for(member)
    if idp.faults.take("userinfo", "sub_mismatch"):
        claims["sub"] = "someone-else-" + member.sub
    return json_response(claims)


def revoke(idp: OIDCProvider) -> Response:
    """RFC 7009 token revocation: authenticate the client, forget the token, answer 200."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return _oauth_error("invalid_request", "The request must be form-encoded.")
    _client_id, refused = _authenticate_client(idp)
    if refused is not None:
        return refused
    token = request.form.get("token", "")
    if not token:
        return _oauth_error("invalid_request", "token is required.")
    idp.revocations.append(dict(request.form.items()))
    idp.revoke(token)
    return Response(status=200)


def account(idp: OIDCProvider) -> Response:
    """The stand-in "edit your profile" page."""
    return account_page(idp.BRAND)


def logout(idp: OIDCProvider) -> Response:
    """Record the logout; go back to an allowed ``post_logout_redirect_uri`` (any when unset)."""
    target = request.args.get("post_logout_redirect_uri")
    idp.logouts.append(dict(request.args.items()))
    allowed = idp.client.post_logout_redirect_uris
    if target and (not allowed or target in allowed):
        return redirect(add_query(target, {"state": request.args.get("state")}))
    return html_page("Signed out", "<h1>You have been signed out</h1>")


ROUTES = (
    Route("/.well-known/openid-configuration", "discovery", discovery),
    Route("/jwks", "jwks", jwks),
    Route("/authorize", "authorize", authorize, ("GET", "POST")),
    Route("/token", "token", token, ("POST",)),
    Route("/userinfo", "userinfo", userinfo, ("GET", "POST")),
    Route("/account", "account", account),
    Route("/logout", "logout", logout),
    Route("/revoke", "revoke", revoke, ("POST",)),
)
