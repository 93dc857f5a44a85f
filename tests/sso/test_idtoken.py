"""ID token validation against a JWKS served from a loopback server."""

import base64
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from werkzeug.wrappers import Response

from portal.sso.errors import IDTokenInvalid, ProviderUnreachable
from portal.sso.idtoken import JWKSCache, validate_id_token
from tests.support.keys import jwks_of, jwks_response
from tests.support.servers import App

ISSUER = "https://idp.example"


class Provider:
    """A JWKS endpoint whose key set a test can rotate."""

    def __init__(self, serve, keys):
        self.keys = list(keys)
        self.app = App()
        self.app.routes["/jwks"] = lambda r: jwks_response(jwks_of(*self.keys))
        self.url = serve(self.app).url + "/jwks"

    @property
    def fetches(self) -> int:
        return self.app.hits("/jwks")


@pytest.fixture
def provider(serve, rsa_keys):
    return Provider(serve, [rsa_keys["k1"]])


@pytest.fixture
def check(provider, http):
    cache = JWKSCache()

    def run(token, **overrides):
        kwargs = {
            "issuer": ISSUER,
            "client_id": "client-1",
            "nonce": "nonce-1",
            "jwks_url": provider.url,
            "http": http,
            "jwks_cache": cache,
            **overrides,
        }
        return validate_id_token(token, **kwargs)

    run.cache = cache
    return run


def b64(doc) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def test_valid_token_passes(check, make_id_token):
    """A token signed by a published key, with the expected claims, gives its claims."""
    claims = check(make_id_token(email="a@example.org"))
    assert claims["sub"] == "user-42"
    assert claims["email"] == "a@example.org"


def test_audience_list_containing_client_passes(check, make_id_token):
    """aud may be a list that contains the client id (azp naming it)."""
    claims = check(make_id_token(aud=["other", "client-1"], azp="client-1"))
    assert claims["aud"] == ["other", "client-1"]


def test_jwks_is_fetched_once(check, make_id_token, provider):
    """Two validations share one JWKS fetch."""
    check(make_id_token())
    check(make_id_token())
    assert provider.fetches == 1


def test_bad_signature_is_refused(check, make_id_token, rsa_keys):
    """A token signed by another key with a published kid is refused."""
    forged = make_id_token(key=rsa_keys["k2"], header={"kid": "k1"})
    with pytest.raises(IDTokenInvalid, match="bad signature"):
        check(forged)


def test_tampered_payload_is_refused(check, make_id_token):
    """Changing the payload breaks the signature."""
    header, _, signature = make_id_token().split(".")
    payload = b64({"iss": ISSUER, "aud": "client-1", "nonce": "nonce-1", "sub": "admin"})
    with pytest.raises(IDTokenInvalid):
        check(f"{header}.{payload}.{signature}")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "someone-else"}, "aud"),
        ({"aud": ["a", "b"]}, "aud"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"nonce": "replayed"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"exp_in": -3600}, "expired"),
        ({"sub": None}, "sub"),
        ({"aud": ["client-1", "b"], "azp": "b"}, "azp"),
    ],
)
def test_bad_claims_are_refused(check, make_id_token, claims, reason):
    """Wrong aud, iss, nonce, an expired token or a missing sub is refused."""
    with pytest.raises(IDTokenInvalid) as info:
        check(make_id_token(**claims))
    assert reason in info.value.reason


def test_leeway_tolerates_small_clock_skew(check, make_id_token):
    """A token expired less than the leeway ago passes."""
    assert check(make_id_token(exp_in=-10), leeway=60)["sub"] == "user-42"


def test_alg_none_is_refused(check):
    """An unsigned token is never accepted, even if none is in the allow-list."""
    token = f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64({'iss': ISSUER, 'sub': 'x'})}."
    with pytest.raises(IDTokenInvalid, match="not allowed"):
        check(token)
    with pytest.raises(IDTokenInvalid, match="not allowed"):
        check(token, algorithms=("none", "RS256"))


def test_algorithm_outside_allow_list_is_refused(check, make_id_token):
    """An RS256 token is refused when only ES256 is allowed; HS256 is never in the default."""
    with pytest.raises(IDTokenInvalid, match="not allowed"):
        check(make_id_token(), algorithms=("ES256",))
    hs = jwt.encode(
        {"alg": "HS256", "kid": "k1"},
        {"sub": "x"},
        OctKey.import_key("s" * 32),
        algorithms=["HS256"],
    )
    with pytest.raises(IDTokenInvalid, match="not allowed"):
        check(hs)


def test_malformed_token_is_refused(check):
    """Garbage is IDTokenInvalid, not a crash."""
    for garbage in ("", "abc", "a.b.c", "é.é.é"):
        with pytest.raises(IDTokenInvalid):
            check(garbage)


def test_unknown_kid_refetches_once_then_refuses(check, make_id_token, provider, rsa_keys):
    """A kid absent even after one refetch is refused."""
    check(make_id_token())
    with pytest.raises(IDTokenInvalid, match="unknown key id"):
        check(make_id_token(key=rsa_keys["k3"]))
    assert provider.fetches == 2


def test_key_rotation_triggers_exactly_one_refetch(check, make_id_token, provider, rsa_keys):
    """A new kid after rotation is fetched once, then served from the cache."""
    check(make_id_token())
    provider.keys = [rsa_keys["k1"], rsa_keys["k2"]]
    check(make_id_token(key=rsa_keys["k2"]))
    check(make_id_token(key=rsa_keys["k2"]))
    check(make_id_token(key=rsa_keys["k1"]))
    assert provider.fetches == 2


def test_token_without_kid_uses_any_published_key(check, provider, rsa_keys):
    """Without a kid, a signature by any published key is accepted."""
    provider.keys = [rsa_keys["k2"], rsa_keys["k1"]]
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "client-1",
        "nonce": "nonce-1",
        "sub": "s",
        "iat": now,
        "exp": now + 60,
    }
    token = jwt.encode({"alg": "RS256"}, claims, rsa_keys["k1"])
    assert check(token)["sub"] == "s"
    forged = jwt.encode({"alg": "RS256"}, claims, rsa_keys["k3"])
    with pytest.raises(IDTokenInvalid, match="bad signature"):
        check(forged)


def test_jwks_cache_is_keyed_by_url(serve, http, rsa_keys):
    """Two JWKS URLs are fetched and cached separately."""
    a = Provider(serve, [rsa_keys["k1"]])
    b = Provider(serve, [rsa_keys["k2"]])
    cache = JWKSCache()
    assert [k.kid for k in cache.get(a.url, http).keys] == ["k1"]
    assert [k.kid for k in cache.get(b.url, http).keys] == ["k2"]
    cache.get(a.url, http)
    assert (a.fetches, b.fetches) == (1, 1)


def test_unreachable_jwks_is_provider_unreachable(check, make_id_token, closed_port_url):
    """A JWKS that cannot be fetched is reported as such, not as a bad token."""
    with pytest.raises(ProviderUnreachable):
        check(make_id_token(), jwks_url=closed_port_url + "/jwks")


def test_encryption_keys_in_jwks_are_ignored(serve, http, rsa_keys):
    """Keys with use=enc are not used to verify signatures."""
    enc = RSAKey.generate_key(2048, parameters={"kid": "e1", "use": "enc"})
    p = Provider(serve, [rsa_keys["k1"], enc])
    assert [k.kid for k in JWKSCache().get(p.url, http).keys] == ["k1"]


# -- issue 12: keys that expire and change (finding 11), azp (finding 15a) --------------------


class Clock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rekey_under_the_same_kid_is_picked_up_by_one_refetch(
    check, make_id_token, provider, rsa_keys
):
    """The provider replaces key k1 by another key still called k1: the first token signed
    by the new key fails with the cached key, triggers one refetch, and passes."""
    check(make_id_token())
    new_k1 = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
    provider.keys = [new_k1]
    assert check(make_id_token(key=new_k1))["sub"] == "user-42"
    assert check(make_id_token(key=new_k1))["sub"] == "user-42"
    assert provider.fetches == 2


def test_a_flood_of_unknown_kids_refetches_once_per_interval(serve, http, make_id_token, rsa_keys):
    """Thirty tokens naming unknown kids: one refetch in the interval, the rest refused from
    the cache; once the interval has passed, one more refetch is allowed."""
    provider = Provider(serve, [rsa_keys["k1"]])
    clock = Clock()
    cache = JWKSCache(clock=clock)

    def check(token):
        return validate_id_token(
            token,
            issuer=ISSUER,
            client_id="client-1",
            nonce="nonce-1",
            jwks_url=provider.url,
            http=http,
            jwks_cache=cache,
        )

    check(make_id_token())
    for n in range(30):
        with pytest.raises(IDTokenInvalid, match="unknown key id"):
            check(make_id_token(header={"kid": f"attacker-{n}"}))
        clock.now += 1
    assert provider.fetches == 2
    clock.now += 60
    with pytest.raises(IDTokenInvalid):
        check(make_id_token(header={"kid": "attacker-late"}))
    assert provider.fetches == 3


def test_a_flood_of_bad_signatures_refetches_once(check, make_id_token, provider, rsa_keys):
    """Tokens signed by an impostor under the provider's kid: one refetch, then refused."""
    check(make_id_token())
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
    for _ in range(10):
        with pytest.raises(IDTokenInvalid, match="bad signature"):
            check(make_id_token(key=impostor))
    assert provider.fetches == 2


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        (None, 3600),
        ("public, max-age=7200", 7200),
        ("max-age=5", 300),
        ("no-store", 300),
        ("max-age=999999", 86400),
    ],
)
def test_key_sets_expire_after_their_cache_control_max_age(
    serve, http, rsa_keys, cache_control, ttl
):
    """A key set is kept for its max-age, bounded to [5 min, 24 h], 1 h by default."""
    app = App()
    headers = {"Cache-Control": cache_control} if cache_control else {}
    app.routes["/jwks"] = lambda r: Response(
        json.dumps(jwks_of(rsa_keys["k1"])), content_type="application/json", headers=headers
    )
    url = serve(app).url + "/jwks"
    clock = Clock()
    cache = JWKSCache(clock=clock)
    cache.get(url, http)
    clock.now += ttl - 1
    cache.get(url, http)
    assert app.hits("/jwks") == 1
    clock.now += 2
    cache.get(url, http)
    assert app.hits("/jwks") == 2


def test_azp_naming_another_client_is_refused_even_with_one_audience(check, make_id_token):
    """finding 15a: aud is us, but azp says the token was issued to another client."""
    with pytest.raises(IDTokenInvalid, match=r"invalid claim \(azp\)"):
        check(make_id_token(aud="client-1", azp="other-client"))
    with pytest.raises(IDTokenInvalid, match=r"invalid claim \(azp\)"):
        check(make_id_token(aud=["client-1", "other-client"], azp="other-client"))


def test_azp_naming_us_passes(check, make_id_token):
    """azp equal to the client id is fine, with one audience or several."""
    assert check(make_id_token(aud="client-1", azp="client-1"))["azp"] == "client-1"
    assert check(make_id_token(aud=["client-1", "x"], azp="client-1"))["sub"] == "user-42"


def test_a_token_redeemed_from_a_platform_refresh_token_is_checked_without_a_nonce(
    check, make_id_token
):
    """nonce=None (no authorization request sent one) skips the nonce only: a token without
    one passes, and a wrong issuer is still refused."""
    assert check(make_id_token(nonce=None), nonce=None)["sub"] == "user-42"
    with pytest.raises(IDTokenInvalid) as info:
        check(make_id_token(nonce=None, iss="https://evil.example"), nonce=None)
    assert "iss" in info.value.reason


def test_an_empty_nonce_is_still_refused(check, make_id_token):
    """Only None skips the nonce check: an empty expected nonce refuses every token."""
    with pytest.raises(IDTokenInvalid):
        check(make_id_token(), nonce="")
