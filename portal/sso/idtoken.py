"""ID token verification: JWKS from the provider, signature, iss, aud, exp, iat and nonce."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from portal.sso.errors import IDTokenInvalid, ProviderBadResponse
from portal.sso.http import HttpClient
from portal.sso.responses import cache_ttl, parse_json_or_form
from portal.sso.trace import Trace

log = logging.getLogger(__name__)

DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "PS256")


def _import_keys(doc: dict[str, Any]) -> KeySet:
    """Import the signing keys of a JWKS document, skipping keys we cannot use."""
    keys = []
    raw_keys = doc.get("keys")
    for raw in raw_keys if isinstance(raw_keys, list) else []:
        if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
            continue
        try:
            keys.extend(KeySet.import_key_set({"keys": [raw]}).keys)
        except (JoseError, ValueError, TypeError, KeyError):
            log.info("JWKS key of type %r skipped", raw.get("kty"))
    if not keys:
        raise ProviderBadResponse("JWKS holds no usable signing keys")
    return KeySet(keys)


#: At most one forced refetch (unknown kid, bad signature) per JWKS URL in this many seconds.
REFETCH_INTERVAL = 60.0


@dataclass
class _Entry:
    key_set: KeySet
    expires_at: float


class JWKSCache:
    """The provider key sets of this process, keyed by JWKS URL, kept for their TTL.

    A forced refetch (the token names an unknown ``kid``, or its signature fails with the
    cached keys: the provider may have re-keyed, even under the same ``kid``) happens at most
    once per ``refetch_interval`` per URL, so a flood of bad tokens cannot hammer the provider.
    """

    def __init__(
        self,
        *,
        refetch_interval: float = REFETCH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: dict[str, _Entry] = {}
        self._last_forced: dict[str, float] = {}
        self._lock = threading.Lock()
        self.refetch_interval = refetch_interval
        self.clock = clock

    def get(
        self,
        url: str,
        http: HttpClient,
        *,
        refresh: bool = False,
        trace: Trace | None = None,
    ) -> KeySet:
        """Return the key set at a URL, fetching it when absent, expired or asked to refresh.

        A ``refresh`` inside the refetch interval of the previous one returns the cached set.
        """
        now = self.clock()
        with self._lock:
            entry = self._entries.get(url)
            fresh = entry is not None and entry.expires_at > now
            if entry is not None and refresh:
                last = self._last_forced.get(url)
                if last is not None and now - last < self.refetch_interval:
                    log.info("JWKS refetch of %s skipped: one ran %.0f s ago", url, now - last)
                    return entry.key_set
                self._last_forced[url] = now
            elif fresh and entry is not None:
                return entry.key_set
        resp = http.request(
            "GET", url, headers=[("Accept", "application/json")], trace=trace, step="jwks"
        )
        key_set = _import_keys(parse_json_or_form(resp, allow_form=False))
        ttl = cache_ttl(resp.headers.get("cache-control"))
        with self._lock:
            self._entries[url] = _Entry(key_set, self.clock() + ttl)
        return key_set

    def refetch_allowed(self, url: str) -> bool:
        """Tell whether a forced refetch of ``url`` would run now."""
        with self._lock:
            last = self._last_forced.get(url)
        return last is None or self.clock() - last >= self.refetch_interval

    def clear(self) -> None:
        """Forget every cached key set."""
        with self._lock:
            self._entries.clear()
            self._last_forced.clear()


_process_cache = JWKSCache()


def get_jwks_cache() -> JWKSCache:
    """Return this process's JWKS cache."""
    return _process_cache


def _key_ids(key_set: KeySet) -> set[str | None]:
    return {key.kid for key in key_set.keys}


def _decode(id_token: str, key_set: KeySet, kid: str | None, algorithms: list[str]) -> jwt.Token:
    if kid is not None:
        return jwt.decode(id_token, key_set, algorithms=algorithms)
    # No kid in the header: accept a signature from any of the provider's keys.
    last_error: JoseError = BadSignatureError()
    for key in key_set.keys:
        try:
            return jwt.decode(id_token, key, algorithms=algorithms)
        except JoseError as exc:
            last_error = exc
    raise last_error


def validate_id_token(
    id_token: str,
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    jwks_url: str,
    http: HttpClient,
    jwks_cache: JWKSCache | None = None,
    algorithms: Collection[str] = DEFAULT_ALGORITHMS,
    leeway: int = 60,
    trace: Trace | None = None,
) -> dict[str, Any]:
    """Verify an ID token and return its claims, or raise IDTokenInvalid.

    ``nonce`` None is a token redeemed from a refresh token the platform POSTed: no
    authorization request sent a nonce, so there is none to check (every other claim is).
    An empty nonce is refused.
    """
    cache = jwks_cache or _process_cache
    allowed = [alg for alg in algorithms if alg.lower() != "none"]
    if nonce is not None and not nonce:
        raise IDTokenInvalid("no nonce to check the token against")
    kid = check_token_header(id_token, allowed).get("kid")
    token = check_token_signature(id_token, kid, allowed, jwks_url, http, cache, trace)
    claims = dict(token.claims)
    _check_claims(claims, issuer=issuer, client_id=client_id, nonce=nonce, leeway=leeway)
    return claims


def check_token_header(id_token: str, allowed: list[str]) -> dict[str, Any]:
    """Check that a token is a compact JWS with an allowed algorithm; return its header.

    Shared with the back-channel logout token (``portal.sso.logout_token``).
    """
    try:
        header = jws.extract_compact(id_token.encode("ascii")).protected
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise IDTokenInvalid("malformed token") from None
    alg = header.get("alg")
    if alg not in allowed:
        raise IDTokenInvalid(f"algorithm {alg!r} is not allowed")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise IDTokenInvalid("malformed key id")
    return dict(header)


def _signing_keys(
    kid: str | None, jwks_url: str, http: HttpClient, cache: JWKSCache, trace: Trace | None
) -> tuple[KeySet, bool]:
    """Return the provider's key set that holds ``kid``, and whether it was refetched for it."""
    key_set = cache.get(jwks_url, http, trace=trace)
    if kid is None or kid in _key_ids(key_set):
        return key_set, False
    # The provider may have rotated its keys: fetch them again (rate-limited).
    key_set = cache.get(jwks_url, http, refresh=True, trace=trace)
    if kid not in _key_ids(key_set):
        raise IDTokenInvalid(f"unknown key id {kid!r}")
    return key_set, True


def check_token_signature(
    id_token: str,
    kid: str | None,
    allowed: list[str],
    jwks_url: str,
    http: HttpClient,
    cache: JWKSCache,
    trace: Trace | None = None,
) -> jwt.Token:
    """Verify a token's signature with the provider's keys and return the decoded token.

    Shared with the back-channel logout token (``portal.sso.logout_token``).
    """
    key_set, refetched = _signing_keys(kid, jwks_url, http, cache, trace)
    try:
        try:
            return _decode(id_token, key_set, kid, allowed)
        except BadSignatureError:
            if refetched or not cache.refetch_allowed(jwks_url):
                raise
            # The provider may have re-keyed under the same kid: fetch the keys again, once.
            key_set = cache.get(jwks_url, http, refresh=True, trace=trace)
            if kid is not None and kid not in _key_ids(key_set):
                raise IDTokenInvalid(f"unknown key id {kid!r}") from None
            return _decode(id_token, key_set, kid, allowed)
    except BadSignatureError:
        raise IDTokenInvalid("bad signature") from None
    except JoseError as exc:
        raise IDTokenInvalid(f"undecodable token ({exc.error})") from None


def _check_claims(
    claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str | None, leeway: int
) -> None:
    """Check iss, aud, nonce, sub, exp, iat and azp; an error names a claim, never its value."""
    checks: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
    }
    if nonce is not None:
        checks["nonce"] = {"essential": True, "value": nonce}
    registry = jwt.JWTClaimsRegistry(leeway=leeway, **checks)
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise IDTokenInvalid("token expired") from None
    except MissingClaimError as exc:
        raise IDTokenInvalid(f"missing claim ({exc.claim})") from None
    except ClaimError as exc:
        raise IDTokenInvalid(f"invalid claim ({exc.claim})") from None
    # azp, when present, names the party the token was issued to: it must be us, whatever
    # the number of audiences (OpenID Connect Core 3.1.3.7, items 4 and 5).
    if "azp" in claims and claims["azp"] != client_id:
        raise IDTokenInvalid("invalid claim (azp)")


def unverified_claims(id_token: str) -> dict[str, Any] | None:
    """Read an ID token's payload without verification (it came straight from the token API)."""
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None
