"""A standards-shaped OpenID Connect provider on loopback, for development and tests."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, has_request_context, redirect, request
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from markupsafe import escape

from portal.devidp.base import (
    DEFAULT_CLIENT_SECRET,
    GENERIC_FAULTS,
    BaseProvider,
    Member,
    account_page,
    add_query,
    decode_basic_auth,
    html_page,
    json_response,
    login_form,
    now,
)

SCOPES = ("openid", "email", "profile", "groups", "membership")


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    username: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    expires_at: float
    used: bool = False


@dataclass
class _Token:
    username: str
    client_id: str
    scope: str
    expires_at: float
    code: str | None = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier``."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _new_key(kid: str | None = None) -> RSAKey:
    kid = kid or f"key-{secrets.token_hex(4)}"
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


class OIDCProvider(BaseProvider):
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
    }
    FAULT_ALIASES = {"profile": "userinfo"}
    AUTHORIZE_PATH = "/authorize"

    def __init__(
        self,
        *,
        client_id: str = "portal",
        client_secret: str = DEFAULT_CLIENT_SECRET,
        redirect_uris: Iterable[str] = (),
        members: Iterable[Member] = (),
        issuer: str | None = None,
        code_ttl: float = 60.0,
        token_ttl: int = 3600,
        id_token_ttl: int = 300,
        login_hint: str | None = None,
    ) -> None:
        self._issuer = issuer.rstrip("/") if issuer else None
        self.id_token_ttl = id_token_ttl
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._key = _new_key("key-1")
        self._impostor_key: RSAKey | None = None
        self._key_generation = 1
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=redirect_uris,
            members=members,
            code_ttl=code_ttl,
            token_ttl=token_ttl,
            login_hint=login_hint,
        )

    def create_app(self) -> Flask:
        """Build the provider's Flask app."""
        return create_oidc_app(self)

    # ---- public helpers

    @property
    def issuer(self) -> str:
        """The issuer: configured, else the running server's URL."""
        if self._issuer:
            return self._issuer
        if self.server is not None and self.server.port:
            return self.server.url
        if not has_request_context():
            raise RuntimeError("no issuer yet: pass issuer= or start the provider")
        return request.url_root.rstrip("/")

    @issuer.setter
    def issuer(self, value: str | None) -> None:
        self._issuer = value.rstrip("/") if value else None

    @property
    def discovery_url(self) -> str:
        """``<issuer>/.well-known/openid-configuration`` of the running server."""
        return f"{self.url}/.well-known/openid-configuration"

    @property
    def authorize_url(self) -> str:
        """Authorization endpoint of the running server."""
        return f"{self.url}/authorize"

    @property
    def token_url(self) -> str:
        """Token endpoint of the running server."""
        return f"{self.url}/token"

    @property
    def jwks_url(self) -> str:
        """JWKS endpoint of the running server."""
        return f"{self.url}/jwks"

    @property
    def userinfo_url(self) -> str:
        """Userinfo endpoint of the running server."""
        return f"{self.url}/userinfo"

    @property
    def logout_url(self) -> str:
        """End-session endpoint of the running server."""
        return f"{self.url}/logout"

    @property
    def kid(self) -> str:
        """Key id currently signing ID tokens."""
        return str(self._key.kid)

    def rotate_key(self) -> str:
        """Sign with a new key under a new kid; the old key leaves the JWKS. Returns the kid."""
        with self._lock:
            self._key_generation += 1
            self._key = _new_key(f"key-{self._key_generation}-{secrets.token_hex(2)}")
            return str(self._key.kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWKS document."""
        return KeySet([self._key]).as_dict(private=False)

    def expire_codes(self) -> None:
        """Make every issued authorization code expired."""
        with self._lock:
            for code in self._codes.values():
                code.expires_at = 0

    def expire_tokens(self) -> None:
        """Make every issued access token expired."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = 0

    def clear_grants(self) -> None:
        """Forget codes and tokens."""
        self._codes.clear()
        self._tokens.clear()
        self._refresh.clear()

    def claims_for(self, member: Member) -> dict[str, Any]:
        """The member's userinfo claims (``None`` values left out, ``extra`` merged)."""
        name = " ".join(p for p in (member.given_name, member.family_name) if p) or None
        claims: dict[str, Any] = {
            "sub": member.sub,
            "preferred_username": member.username,
            "email": member.email,
            "email_verified": member.email_verified if member.email else None,
            "given_name": member.given_name,
            "family_name": member.family_name,
            "name": name,
            "membership_status": member.membership_status,
            "membership_type": member.membership_type,
            "groups": list(member.groups),
        }
        claims.update(member.extra)
        return {k: v for k, v in claims.items() if v is not None}

    # ---- internals used by the views

    def issue_code(self, member: Member, args: dict[str, str]) -> str:
        """Store and return a single-use authorization code."""
        code = self.new_secret("code")
        with self._lock:
            self._codes[code] = _Code(
                client_id=args["client_id"],
                redirect_uri=args["redirect_uri"],
                username=member.username,
                scope=args.get("scope", ""),
                nonce=args.get("nonce"),
                code_challenge=args.get("code_challenge"),
                expires_at=time.time() + self.code_ttl,
            )
        return code

    def redeem_code(self, code: str) -> tuple[_Code | None, str]:
        """Mark ``code`` used; on reuse revoke what it issued. Returns (grant, error text)."""
        with self._lock:
            grant = self._codes.get(code)
            if grant is None:
                return None, "Unknown authorization code."
            if grant.used:
                for store in (self._tokens, self._refresh):
                    for key in [k for k, t in store.items() if t.code == code]:
                        del store[key]
                return None, "Authorization code was already used."
            grant.used = True
            if grant.expires_at < time.time():
                return None, "Authorization code has expired."
            return grant, ""

    def issue_tokens(
        self, username: str, client_id: str, scope: str, code: str | None
    ) -> tuple[str, str]:
        """Store and return (access token, refresh token)."""
        access, refresh = self.new_secret("at"), self.new_secret("rt")
        with self._lock:
            self._tokens[access] = _Token(
                username, client_id, scope, time.time() + self.token_ttl, code
            )
            self._refresh[refresh] = _Token(username, client_id, scope, float("inf"), code)
        return access, refresh

    def lookup_token(self, token: str) -> _Token | None:
        """The live access token, or ``None``."""
        with self._lock:
            found = self._tokens.get(token)
        if found is None or found.expires_at < time.time():
            return None
        return found

    def lookup_refresh(self, token: str) -> _Token | None:
        """The refresh token's grant, or ``None``."""
        with self._lock:
            return self._refresh.get(token)

    def make_id_token(self, member: Member, client_id: str, nonce: str | None) -> str | None:
        """Sign an ID token for ``member``, applying the armed ``id_token`` faults."""
        faults = {k: self.faults.take("id_token", k) for k in self.faults.active("id_token")}
        faults = {k: v for k, v in faults.items() if v is not None}
        if "missing" in faults:
            return None
        issued = now()
        claims = self.claims_for(member)
        claims.update(
            iss=self.issuer,
            aud=client_id,
            azp=client_id,
            iat=issued,
            auth_time=issued,
            exp=issued + self.id_token_ttl,
        )
        if nonce is not None:
            claims["nonce"] = nonce
        if "wrong_aud" in faults:
            claims["aud"] = "someone-else"
            claims["azp"] = "someone-else"
        if "wrong_iss" in faults:
            claims["iss"] = "https://evil.example"
        if "wrong_nonce" in faults:
            claims["nonce"] = "not-" + (nonce or "the-nonce")
        if "expired" in faults:
            claims["iat"] = claims["auth_time"] = issued - 7200
            claims["exp"] = issued - 3600
        if "alg_none" in faults:
            header = {"alg": "none", "typ": "JWT", "kid": self.kid}
            return ".".join(
                [_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()), ""]
            )
        key = self._key
        kid = self.kid
        if "bad_signature" in faults:
            if self._impostor_key is None:
                self._impostor_key = _new_key("impostor")
            key = self._impostor_key
        if "unknown_kid" in faults:
            kid = "unknown-" + secrets.token_hex(4)
        return jwt.encode({"alg": "RS256", "kid": kid, "typ": "JWT"}, claims, key)


def _oauth_error(
    error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> Response:
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
    idp = provider
    app = Flask(__name__)
    app.extensions["devidp"] = idp
    idp.install_hooks(
        app,
        {
            "discovery": "discovery",
            "authorize": "authorize",
            "token": "token",
            "jwks": "jwks",
            "userinfo": "userinfo",
            "logout": "logout",
        },
    )

    @app.get("/.well-known/openid-configuration", endpoint="discovery")
    def discovery() -> Response:
        base = idp.issuer
        return json_response(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/userinfo",
                "jwks_uri": f"{base}/jwks",
                "end_session_endpoint": f"{base}/logout",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": list(SCOPES),
                "token_endpoint_auth_methods_supported": sorted(idp.client.auth_methods),
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": True,
                "claims_supported": [
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
                ],
            }
        )

    @app.get("/jwks", endpoint="jwks")
    def jwks() -> Response:
        return json_response(idp.jwks())

    @app.route("/authorize", methods=["GET", "POST"], endpoint="authorize")
    def authorize() -> Any:
        args = {k: v for k, v in request.args.items()}
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
        state = args.get("state")

        def back(**params: str | None) -> Response:
            iss: str | None = idp.issuer
            if idp.faults.take("authorize", "no_iss"):
                iss = None
            elif idp.faults.take("authorize", "wrong_iss"):
                iss = "https://evil.example"
            out_state = state
            if idp.faults.take("authorize", "wrong_state"):
                out_state = "tampered-" + (state or "")
            return redirect(add_query(redirect_uri, {**params, "state": out_state, "iss": iss}))

        def error(code: str, description: str) -> Response:
            return back(error=code, error_description=description)

        if args.get("response_type") != "code":
            return error("unsupported_response_type", "Only response_type=code is supported.")
        challenge = args.get("code_challenge")
        if challenge and args.get("code_challenge_method") != "S256":
            return error("invalid_request", "code_challenge_method must be S256.")
        if not challenge and idp.client.require_pkce:
            return error("invalid_request", "PKCE (code_challenge) is required.")
        if "openid" not in args.get("scope", "").split():
            return error("invalid_scope", "The openid scope is required.")
        fault = idp.faults.take("authorize", "error")
        if fault:
            return error(str(fault.value), "Simulated error from the loopback provider.")
        if request.method == "GET":
            return login_form(
                brand="Loopback OpenID Provider",
                action=request.full_path,
                username=args.get("login_hint", ""),
                hint=idp.login_hint,
            )
        if request.form.get("action") == "cancel":
            return error("access_denied", "The member cancelled the sign-in.")
        username = request.form.get("username", "")
        member = idp.members.check_password(username, request.form.get("password", ""))
        if member is None:
            return login_form(
                brand="Loopback OpenID Provider",
                action=request.full_path,
                username=username,
                error="Wrong username or password.",
                hint=idp.login_hint,
                status=401,
            )
        return back(code=idp.issue_code(member, args))

    @app.post("/token", endpoint="token")
    def token() -> Response:
        if request.mimetype != "application/x-www-form-urlencoded":
            return _oauth_error(
                "invalid_request", "The token request must be application/x-www-form-urlencoded."
            )
        form = request.form
        basic = decode_basic_auth(request.headers.get("Authorization"))
        posted = "client_secret" in form
        if basic and posted:
            return _oauth_error("invalid_request", "Use one client authentication method only.")
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
            return _oauth_error("invalid_client", "Client authentication failed.", 401, headers)
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            grant = idp.lookup_refresh(form.get("refresh_token", ""))
            if grant is None or grant.client_id != client_id:
                return _oauth_error("invalid_grant", "Unknown refresh token.")
            member = idp.members.get(grant.username)
            if member is None:
                return _oauth_error("invalid_grant", "The member no longer exists.")
            return _token_response(idp, member, client_id, grant.scope, None, None)
        if grant_type != "authorization_code":
            return _oauth_error("unsupported_grant_type", f"Unsupported grant_type {grant_type}.")
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

    @app.route("/userinfo", methods=["GET", "POST"], endpoint="userinfo")
    def userinfo() -> Response:
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

    @app.get("/account", endpoint="account")
    def account() -> Response:
        return account_page("Loopback OpenID Provider")

    @app.get("/logout", endpoint="logout")
    def logout() -> Response:
        target = request.args.get("post_logout_redirect_uri")
        idp.logouts.append(dict(request.args.items()))
        allowed = idp.client.post_logout_redirect_uris
        if target and (not allowed or target in allowed):
            return redirect(add_query(target, {"state": request.args.get("state")}))
        return html_page("Signed out", "<h1>You have been signed out</h1>")

    return app


def _token_response(
    idp: OIDCProvider,
    member: Member,
    client_id: str,
    scope: str,
    nonce: str | None,
    code: str | None,
) -> Response:
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
