"""What the OpenID Connect provider issues and remembers: codes, tokens, signing keys, ID tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from flask import has_request_context, request
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from portal.devidp.members import Member
from portal.devidp.provider import BaseProvider


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


def now() -> int:
    """Current Unix time in seconds."""
    return int(time.time())


def _new_key(kid: str | None = None) -> RSAKey:
    kid = kid or f"key-{secrets.token_hex(4)}"
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


class OIDCAuthority(BaseProvider):
    """The OpenID provider's state: issuer, keys, claims, codes and tokens (no endpoints).

    :class:`~portal.devidp.oidc.OIDCProvider` serves it; ``make_id_token`` takes the faults
    armed on its ``id_token`` pseudo-endpoint.
    """

    def __init__(
        self, *, issuer: str | None = None, id_token_ttl: int = 300, **options: Any
    ) -> None:
        """Take the options of :class:`BaseProvider`, plus the issuer and ID-token lifetime."""
        self._issuer = issuer.rstrip("/") if issuer else None
        self.id_token_ttl = id_token_ttl
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        #: A refresh token redeems once: its answer carries the next one (rotation, as the
        #: OAuth 2.0 Security BCP advises); False keeps it valid until revoked.
        self.rotate_refresh_tokens = True
        #: RFC 7009 revocation requests received (their form fields), newest last.
        self.revocations: list[dict[str, str]] = []
        self._key = _new_key("key-1")
        self._impostor_key: RSAKey | None = None
        self._key_generation = 1
        #: The provider session (``sid``) of each ID token issued, by username, oldest first.
        self.session_ids: dict[str, list[str]] = {}
        super().__init__(**options)

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
        self.expire_grants(self._codes)

    def expire_tokens(self) -> None:
        """Make every issued access token expired."""
        self.expire_grants(self._tokens)

    def clear_grants(self) -> None:
        """Forget codes and tokens."""
        self._codes.clear()
        self._tokens.clear()
        self._refresh.clear()
        self.revocations.clear()

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

    def use_refresh(self, token: str) -> _Token | None:
        """Redeem a refresh token: its grant, or ``None``; with rotation it is used up."""
        with self._lock:
            if self.rotate_refresh_tokens:
                return self._refresh.pop(token, None)
            return self._refresh.get(token)

    def revoke(self, token: str) -> None:
        """Forget an access or refresh token (RFC 7009: unknown tokens are no error)."""
        with self._lock:
            self._tokens.pop(token, None)
            self._refresh.pop(token, None)

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
        # Each ID token names a new provider session, as back-channel logout expects.
        sid = self.new_secret("sid")
        claims["sid"] = sid
        with self._lock:
            self.session_ids.setdefault(member.username, []).append(sid)
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

    def make_logout_token(
        self,
        client_id: str,
        *,
        sub: str | None = None,
        sid: str | None = None,
        claims: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        header: dict[str, Any] | None = None,
        key: RSAKey | None = None,
    ) -> str:
        """Sign a back-channel logout token (OpenID Connect Back-Channel Logout 1.0, 2.4).

        ``claims`` override or add claims, ``drop`` removes some, ``header`` overrides the
        JOSE header (``{"alg": "none"}`` gives an unsigned token), ``key`` signs with another
        key than the provider's (an impostor).
        """
        issued = now()
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": issued,
            "exp": issued + 120,
            "jti": secrets.token_urlsafe(16),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }
        if sub is not None:
            body["sub"] = sub
        if sid is not None:
            body["sid"] = sid
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        signing_key = key or self._key
        head = {"alg": "RS256", "kid": str(signing_key.kid), "typ": "logout+jwt", **(header or {})}
        if head["alg"] == "none":
            return ".".join(
                [_b64url(json.dumps(head).encode()), _b64url(json.dumps(body).encode()), ""]
            )
        return jwt.encode(head, body, signing_key)
