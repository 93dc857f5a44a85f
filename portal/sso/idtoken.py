"""ID token verification: JWKS from the provider, signature, iss, aud, exp, iat and nonce."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
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
from portal.sso.http import HttpClient, TraceRecorder, parse_json_or_form

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


class JWKSCache:
    """The provider key sets of this process, keyed by JWKS URL."""

    def __init__(self) -> None:
        self._sets: dict[str, KeySet] = {}
        self._lock = threading.Lock()

    def get(
        self,
        url: str,
        http: HttpClient,
        *,
        refresh: bool = False,
        trace: TraceRecorder | None = None,
    ) -> KeySet:
        """Return the key set at a URL, fetching it when absent or when asked to refresh."""
        with self._lock:
            cached = self._sets.get(url)
        if cached is not None and not refresh:
            return cached
        resp = http.request("GET", url, headers=[("Accept", "application/json")], trace=trace)
        key_set = _import_keys(parse_json_or_form(resp, allow_form=False))
        with self._lock:
            self._sets[url] = key_set
        return key_set

    def clear(self) -> None:
        """Forget every cached key set."""
        with self._lock:
            self._sets.clear()


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
    nonce: str,
    jwks_url: str,
    http: HttpClient,
    jwks_cache: JWKSCache | None = None,
    algorithms: Collection[str] = DEFAULT_ALGORITHMS,
    leeway: int = 60,
    trace: TraceRecorder | None = None,
) -> dict[str, Any]:
    """Verify an ID token and return its claims, or raise IDTokenInvalid."""
    cache = jwks_cache or _process_cache
    allowed = [alg for alg in algorithms if alg.lower() != "none"]
    if not nonce:
        raise IDTokenInvalid("no nonce to check the token against")
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

    key_set = cache.get(jwks_url, http, trace=trace)
    if kid is not None and kid not in _key_ids(key_set):
        # The provider may have rotated its keys: fetch them again, once.
        key_set = cache.get(jwks_url, http, refresh=True, trace=trace)
        if kid not in _key_ids(key_set):
            raise IDTokenInvalid(f"unknown key id {kid!r}")

    try:
        token = _decode(id_token, key_set, kid, allowed)
    except BadSignatureError:
        raise IDTokenInvalid("bad signature") from None
    except JoseError as exc:
        raise IDTokenInvalid(f"undecodable token ({exc.error})") from None

    claims = dict(token.claims)
    registry = jwt.JWTClaimsRegistry(
        leeway=leeway,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        nonce={"essential": True, "value": nonce},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise IDTokenInvalid("token expired") from None
    except MissingClaimError as exc:
        raise IDTokenInvalid(f"missing claim ({exc.claim})") from None
    except ClaimError as exc:
        # Name the claim, never its value.
        raise IDTokenInvalid(f"invalid claim ({exc.claim})") from None
    aud = claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp", client_id) != client_id:
        raise IDTokenInvalid("invalid claim (azp)")
    return claims
