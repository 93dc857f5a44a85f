"""OpenID Connect Back-Channel Logout 1.0: validating a provider's ``logout_token`` (2.4, 2.6).

The signature, algorithm and key handling are the ID token's (``portal.sso.idtoken``: the same
JWKS cache and refetch rules); the claims differ: ``iss``, ``aud``, ``iat`` (and ``exp`` when
present), a ``jti`` for the caller to use once, the back-channel ``events`` member, no
``nonce``, and ``sub`` and/or ``sid``. Pure: the single use of ``jti`` and the ending of
sessions are the caller's (``portal/services/provider_logout.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, MissingClaimError

from portal.sso.errors import IDTokenInvalid, LogoutTokenInvalid
from portal.sso.http import HttpClient
from portal.sso.idtoken import (
    DEFAULT_ALGORITHMS,
    JWKSCache,
    check_token_header,
    check_token_signature,
    get_jwks_cache,
    unverified_claims,
)

#: The member of ``events`` that makes a JWT a back-channel logout token (2.4).
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: A token issued longer ago than this is refused (2.6 lets the RP bound ``iat``); it also
#: bounds how long a ``jti`` must be remembered when the token has no ``exp``.
MAX_TOKEN_AGE = 600
#: The ``typ`` headers a logout token may carry (2.4 recommends ``logout+jwt``).
ACCEPTED_TYPES = frozenset({"logout+jwt", "application/logout+jwt", "JWT"})
#: Longest ``sub``, ``sid`` and ``jti`` kept or compared.
MAX_CLAIM_LENGTH = 255


@dataclass(frozen=True)
class LogoutRequest:
    """A verified logout token: whose sessions end, and how long its ``jti`` stays used."""

    subject: str | None
    sid: str | None
    jti: str
    #: Epoch seconds after which the token is refused anyway (its ``jti`` may be forgotten).
    usable_until: float


def validate_logout_token(
    logout_token: str,
    *,
    issuer: str,
    client_id: str,
    jwks_url: str,
    http: HttpClient,
    jwks_cache: JWKSCache | None = None,
    algorithms: Collection[str] = DEFAULT_ALGORITHMS,
    leeway: int = 60,
    clock: Callable[[], float] = time.time,
) -> LogoutRequest:
    """Verify a back-channel logout token and return what it asks, or raise LogoutTokenInvalid."""
    if not logout_token or len(logout_token) > 16384:
        raise LogoutTokenInvalid("missing or oversized logout_token")
    if not issuer or not jwks_url:
        raise LogoutTokenInvalid("the system has no Issuer and JWKS URL to verify tokens with")
    allowed = [alg for alg in algorithms if alg.lower() != "none"]
    cache = jwks_cache or get_jwks_cache()
    try:
        header = check_token_header(logout_token, allowed)
        typ = header.get("typ")
        if typ is not None and typ not in ACCEPTED_TYPES:
            raise LogoutTokenInvalid("not a logout token (typ)")
        token = check_token_signature(
            logout_token, header.get("kid"), allowed, jwks_url, http, cache
        )
    except IDTokenInvalid as exc:
        raise LogoutTokenInvalid(exc.reason) from None
    return _check_claims(
        dict(token.claims), issuer=issuer, client_id=client_id, leeway=leeway, now=clock()
    )


def _text_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_LENGTH:
        raise LogoutTokenInvalid(f"invalid claim ({name})")
    return value


def _check_claims(
    claims: dict[str, Any], *, issuer: str, client_id: str, leeway: int, now: float
) -> LogoutRequest:
    """Check the claims of 2.4 and 2.6; an error names a claim, never its value."""
    checks: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "iat": {"essential": True},
        "jti": {"essential": True},
        "events": {"essential": True},
    }
    registry = jwt.JWTClaimsRegistry(now=int(now), leeway=leeway, **checks)
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise LogoutTokenInvalid("token expired") from None
    except MissingClaimError as exc:
        raise LogoutTokenInvalid(f"missing claim ({exc.claim})") from None
    except ClaimError as exc:
        raise LogoutTokenInvalid(f"invalid claim ({exc.claim})") from None
    if "nonce" in claims:
        # 2.4: a nonce is prohibited, so an ID token can never pass as a logout token.
        raise LogoutTokenInvalid("a logout token must not contain a nonce")
    events = claims["events"]
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
        raise LogoutTokenInvalid("invalid claim (events)")
    iat = claims["iat"]
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise LogoutTokenInvalid("invalid claim (iat)")
    if iat > now + leeway:
        raise LogoutTokenInvalid("invalid claim (iat): issued in the future")
    if iat < now - MAX_TOKEN_AGE - leeway:
        raise LogoutTokenInvalid("invalid claim (iat): issued too long ago")
    if "azp" in claims and claims["azp"] != client_id:
        raise LogoutTokenInvalid("invalid claim (azp)")
    jti = _text_claim(claims, "jti")
    subject = _text_claim(claims, "sub")
    sid = _text_claim(claims, "sid")
    if subject is None and sid is None:
        raise LogoutTokenInvalid("neither sub nor sid")
    usable_until = iat + MAX_TOKEN_AGE + leeway
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        usable_until = max(usable_until, exp + leeway)
    assert jti is not None  # essential, checked above
    return LogoutRequest(subject=subject, sid=sid, jti=jti, usable_until=float(usable_until))


def provider_sid(id_token: str | None) -> str | None:
    """Return the provider's session id (``sid``) of an ID token Portal just received, if any.

    The token came straight from the token API (and was verified when the system checks ID
    tokens); a logout token naming this ``sid`` ends that session.
    """
    claims = unverified_claims(id_token) if id_token else None
    sid = (claims or {}).get("sid")
    return sid if isinstance(sid, str) and 0 < len(sid) <= MAX_CLAIM_LENGTH else None
