"""The OIDC loopback provider, driven over real loopback HTTP."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from portal.devidp import AuthorizeFailed, OIDCProvider

from .helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    oidc_code,
    oidc_login,
    oidc_token_request,
    query_of,
)


def verify_id_token(http: httpx.Client, idp: OIDCProvider, id_token: str, nonce: str) -> dict:
    """Verify signature (JWKS fetched over HTTP), iss, aud, exp and nonce; return the claims."""
    keys = KeySet.import_key_set(http.get(idp.jwks_url).json())
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    JWTClaimsRegistry(
        iss={"essential": True, "value": idp.url},
        aud={"essential": True, "value": CLIENT_ID},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
    ).validate(token.claims)
    return token.claims


def test_discovery_names_its_own_endpoints(oidc: OIDCProvider, http: httpx.Client) -> None:
    doc = http.get(oidc.discovery_url).json()
    assert doc["issuer"] == oidc.url
    assert doc["authorization_endpoint"] == oidc.authorize_url
    assert doc["token_endpoint"] == oidc.token_url
    assert doc["jwks_uri"] == oidc.jwks_url
    assert doc["userinfo_endpoint"] == oidc.userinfo_url
    assert doc["end_session_endpoint"] == oidc.logout_url
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert doc["code_challenge_methods_supported"] == ["S256"]


def test_authorize_shows_a_labelled_sign_in_form(oidc: OIDCProvider, http: httpx.Client) -> None:
    resp = http.get(oidc_login(oidc).url)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert '<label for="username">Username</label>' in resp.text
    assert '<label for="password">Password</label>' in resp.text
    assert 'id="username"' in resp.text and 'id="password"' in resp.text
    assert ">Sign in</button>" in resp.text


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_full_code_flow_with_pkce(oidc: OIDCProvider, http: httpx.Client, method: str) -> None:
    login = oidc_login(oidc)
    back = oidc.authorize_redirect(login.url, "jdoe")
    assert back.startswith("http://127.0.0.1:9/sso/test/callback?")
    params = query_of(back)
    assert params["x"] == "1"  # the redirect URI's own query survives
    assert params["state"] == login.state
    assert params["iss"] == oidc.url

    resp = oidc_token_request(http, oidc, params["code"], verifier=login.verifier, method=method)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"] and body["refresh_token"] and body["id_token"]

    claims = verify_id_token(http, oidc, body["id_token"], login.nonce)
    jdoe = oidc.members["jdoe"]
    assert claims["sub"] == jdoe.sub
    assert claims["email"] == "jane.doe@example.org"
    assert claims["groups"] == ["WEBINARS", "LIBRARY"]

    info = http.get(oidc.userinfo_url, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.json() == {
        "sub": jdoe.sub,
        "preferred_username": "jdoe",
        "email": "jane.doe@example.org",
        "email_verified": True,
        "given_name": "Jane",
        "family_name": "Doe",
        "name": "Jane Doe",
        "membership_status": "Active",
        "membership_type": "Professional",
        "groups": ["WEBINARS", "LIBRARY"],
    }

    recorded = oidc.requests.last("token")
    assert recorded.client_auth_method == method
    if method == "client_secret_basic":
        assert recorded.basic_auth == (CLIENT_ID, CLIENT_SECRET)
        assert "client_secret" not in recorded.form
    else:
        assert recorded.form["client_secret"] == CLIENT_SECRET
        assert recorded.form["client_id"] == CLIENT_ID
    assert recorded.form["code_verifier"] == login.verifier


def test_browser_style_form_post_over_http(oidc: OIDCProvider, http: httpx.Client) -> None:
    login = oidc_login(oidc)
    page = http.get(login.url)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action is not None
    target = oidc.url + action.group(1).replace("&amp;", "&")
    bad = http.post(target, data={"username": "jdoe", "password": "nope", "action": "login"})
    assert bad.status_code == 401 and "Wrong username or password" in bad.text
    good = http.post(target, data={"username": "jdoe", "password": "demo", "action": "login"})
    assert good.status_code == 302
    assert query_of(good.headers["location"])["state"] == login.state
    cancel = http.post(target, data={"username": "", "password": "", "action": "cancel"})
    assert query_of(cancel.headers["location"])["error"] == "access_denied"


def test_code_is_single_use_and_reuse_revokes_tokens(
    oidc: OIDCProvider, http: httpx.Client
) -> None:
    login, code = oidc_code(oidc)
    first = oidc_token_request(http, oidc, code, verifier=login.verifier)
    assert first.status_code == 200
    again = oidc_token_request(http, oidc, code, verifier=login.verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    token = first.json()["access_token"]
    info = http.get(oidc.userinfo_url, headers={"Authorization": f"Bearer {token}"})
    assert info.status_code == 401


def test_codes_expire(http: httpx.Client) -> None:
    from portal.devidp import demo_members

    with OIDCProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
        members=demo_members(),
        code_ttl=0.2,
    ) as idp:
        login, code = oidc_code(idp)
        time.sleep(0.3)
        resp = oidc_token_request(http, idp, code, verifier=login.verifier)
        assert resp.json() == {
            "error": "invalid_grant",
            "error_description": "Authorization code has expired.",
        }
        login, code = oidc_code(idp)
        idp.expire_codes()
        assert oidc_token_request(http, idp, code, verifier=login.verifier).status_code == 400


def test_pkce_is_enforced_when_a_challenge_was_sent(oidc: OIDCProvider, http: httpx.Client) -> None:
    login, code = oidc_code(oidc)
    assert oidc_token_request(http, oidc, code, verifier=None).json()["error"] == "invalid_grant"
    login, code = oidc_code(oidc)
    wrong = oidc_token_request(http, oidc, code, verifier=login.verifier + "x")
    assert wrong.json()["error"] == "invalid_grant"
    # Without a challenge, no verifier is needed, unless the client requires PKCE.
    login, code = oidc_code(oidc, pkce=False)
    assert oidc_token_request(http, oidc, code, verifier=None).status_code == 200
    oidc.client.require_pkce = True
    back = oidc.authorize_redirect(oidc_login(oidc, pkce=False).url, "jdoe")
    assert query_of(back)["error"] == "invalid_request"


def test_plain_pkce_method_is_refused(oidc: OIDCProvider) -> None:
    login = oidc_login(oidc, code_challenge_method="plain")
    params = query_of(oidc.authorize_redirect(login.url, "jdoe"))
    assert params["error"] == "invalid_request"
    assert params["state"] == login.state
    assert "code" not in params


def test_client_authentication_failures(oidc: OIDCProvider, http: httpx.Client) -> None:
    login, code = oidc_code(oidc)
    resp = oidc_token_request(http, oidc, code, verifier=login.verifier, secret="wrong")
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert resp.headers["www-authenticate"].startswith("Basic")
    # Both methods at once is refused.
    login, code = oidc_code(oidc)
    from .helpers import basic_auth

    both = http.post(
        oidc.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": login.verifier,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        headers={"Authorization": basic_auth(CLIENT_ID, CLIENT_SECRET)},
    )
    assert both.json()["error"] == "invalid_request"
    # A provider configured for Basic only refuses client_secret_post.
    oidc.client.auth_methods = {"client_secret_basic"}
    login, code = oidc_code(oidc)
    post = oidc_token_request(
        http, oidc, code, verifier=login.verifier, method="client_secret_post"
    )
    assert post.status_code == 401


def test_basic_auth_without_form_urlencoding_is_refused(
    oidc: OIDCProvider, http: httpx.Client
) -> None:
    """A client that skips RFC 6749 2.3.1's form-encoding garbles this secret."""
    login, code = oidc_code(oidc)
    resp = http.post(
        oidc.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": login.verifier,
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert resp.status_code == 401


def test_token_request_checks_redirect_uri_and_body_type(
    oidc: OIDCProvider, http: httpx.Client
) -> None:
    login, code = oidc_code(oidc)
    resp = http.post(
        oidc.token_url,
        json={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    from .helpers import basic_auth

    resp = http.post(
        oidc.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:9/other",
            "code_verifier": login.verifier,
        },
        headers={"Authorization": basic_auth(CLIENT_ID, CLIENT_SECRET)},
    )
    assert resp.json()["error"] == "invalid_grant"


def test_authorize_refuses_unknown_client_or_redirect(oidc: OIDCProvider) -> None:
    login = oidc_login(oidc, redirect_uri="https://attacker.example/cb")
    with pytest.raises(AuthorizeFailed) as err:
        oidc.authorize_redirect(login.url, "jdoe")
    assert err.value.status == 400
    with pytest.raises(AuthorizeFailed):
        oidc.authorize_redirect(oidc_login(oidc, client_id="nobody").url, "jdoe")
    with pytest.raises(AuthorizeFailed) as err:
        oidc.authorize_redirect(oidc_login(oidc).url, "jdoe", password="wrong")
    assert err.value.status == 401


def test_refresh_token_grant(oidc: OIDCProvider, http: httpx.Client) -> None:
    from .helpers import basic_auth

    login, code = oidc_code(oidc)
    refresh = oidc_token_request(http, oidc, code, verifier=login.verifier).json()["refresh_token"]
    resp = http.post(
        oidc.token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh},
        headers={"Authorization": basic_auth(CLIENT_ID, CLIENT_SECRET)},
    )
    assert resp.status_code == 200 and resp.json()["access_token"]


def test_member_changes_show_up_at_the_next_login(oidc: OIDCProvider, http: httpx.Client) -> None:
    mo = oidc.members["mo"]
    login, code = oidc_code(oidc, "mo")
    body = oidc_token_request(http, oidc, code, verifier=login.verifier).json()
    claims = verify_id_token(http, oidc, body["id_token"], login.nonce)
    assert "family_name" not in claims and claims["groups"] == []

    oidc.members.update("mo", groups=["WEBINARS"], family_name="Okafor", chapter="North")
    login, code = oidc_code(oidc, "mo")
    body = oidc_token_request(http, oidc, code, verifier=login.verifier).json()
    info = http.get(
        oidc.userinfo_url, headers={"Authorization": f"Bearer {body['access_token']}"}
    ).json()
    assert info["sub"] == mo.sub
    assert info["groups"] == ["WEBINARS"]
    assert info["family_name"] == "Okafor"
    assert info["chapter"] == "North"

    oidc.members.update("mo", email=None)
    assert "email" not in oidc.claims_for(mo) and "email_verified" not in oidc.claims_for(mo)

    oidc.members.add("new", password="pw", email="new@example.org")
    assert "code" in query_of(oidc.authorize_redirect(oidc_login(oidc).url, "new"))
    oidc.members.remove("mo")
    info = http.get(oidc.userinfo_url, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 401


def test_logout_is_recorded_and_redirects(oidc: OIDCProvider, http: httpx.Client) -> None:
    resp = http.get(
        oidc.logout_url,
        params={
            "post_logout_redirect_uri": "http://127.0.0.1:9/",
            "id_token_hint": "abc",
            "state": "s1",
        },
    )
    assert resp.status_code == 302
    assert resp.headers["location"] == "http://127.0.0.1:9/?state=s1"
    assert oidc.logouts == [
        {"post_logout_redirect_uri": "http://127.0.0.1:9/", "id_token_hint": "abc", "state": "s1"}
    ]
    page = http.get(oidc.logout_url)
    assert page.status_code == 200 and "signed out" in page.text


# ----------------------------------------------------------------------------- id_token faults


def _id_token(oidc: OIDCProvider, http: httpx.Client) -> tuple[str, str]:
    login, code = oidc_code(oidc)
    body = oidc_token_request(http, oidc, code, verifier=login.verifier).json()
    return body.get("id_token", ""), login.nonce


def test_bad_signature_uses_the_same_kid(oidc: OIDCProvider, http: httpx.Client) -> None:
    oidc.faults.set("id_token", "bad_signature")
    token, nonce = _id_token(oidc, http)
    from joserfc import jws

    assert jws.extract_compact(token.encode()).protected["kid"] == oidc.kid
    with pytest.raises(BadSignatureError):
        verify_id_token(http, oidc, token, nonce)


@pytest.mark.parametrize(
    ("kind", "claim"),
    [("wrong_aud", "aud"), ("wrong_iss", "iss"), ("wrong_nonce", "nonce"), ("expired", "exp")],
)
def test_id_token_claim_faults(
    oidc: OIDCProvider, http: httpx.Client, kind: str, claim: str
) -> None:
    token, nonce = _id_token(oidc, http)
    verify_id_token(http, oidc, token, nonce)  # fine before
    oidc.faults.set("id_token", kind)
    token, nonce = _id_token(oidc, http)
    with pytest.raises(JoseError) as err:
        verify_id_token(http, oidc, token, nonce)
    assert claim in str(err.value) or err.value.error in ("expired_token", "invalid_claim")


def test_id_token_missing_alg_none_and_unknown_kid(oidc: OIDCProvider, http: httpx.Client) -> None:
    oidc.faults.set("id_token", "missing", times=1)
    assert _id_token(oidc, http)[0] == ""
    oidc.faults.set("id_token", "alg_none", times=1)
    token, nonce = _id_token(oidc, http)
    assert token.endswith(".")
    with pytest.raises(JoseError):
        verify_id_token(http, oidc, token, nonce)
    oidc.faults.set("id_token", "unknown_kid", times=1)
    token, nonce = _id_token(oidc, http)
    with pytest.raises(JoseError):
        verify_id_token(http, oidc, token, nonce)
    token, nonce = _id_token(oidc, http)
    verify_id_token(http, oidc, token, nonce)  # all used up


def test_rotate_key(oidc: OIDCProvider, http: httpx.Client) -> None:
    old_token, old_nonce = _id_token(oidc, http)
    old_kid = oidc.kid
    new_kid = oidc.rotate_key()
    assert new_kid != old_kid
    assert [k["kid"] for k in http.get(oidc.jwks_url).json()["keys"]] == [new_kid]
    with pytest.raises(JoseError):
        verify_id_token(http, oidc, old_token, old_nonce)
    token, nonce = _id_token(oidc, http)
    verify_id_token(http, oidc, token, nonce)


def test_userinfo_sub_mismatch(oidc: OIDCProvider, http: httpx.Client) -> None:
    oidc.faults.set("profile", "sub_mismatch")
    login, code = oidc_code(oidc)
    body = oidc_token_request(http, oidc, code, verifier=login.verifier).json()
    claims = verify_id_token(http, oidc, body["id_token"], login.nonce)
    info = http.get(
        oidc.userinfo_url, headers={"Authorization": f"Bearer {body['access_token']}"}
    ).json()
    assert info["sub"] != claims["sub"]


@pytest.mark.parametrize(
    ("kind", "value", "check"),
    [
        ("error", None, lambda p, idp: p["error"] == "access_denied" and "code" not in p),
        (
            "error",
            "temporarily_unavailable",
            lambda p, idp: p["error"] == "temporarily_unavailable",
        ),
        ("wrong_iss", None, lambda p, idp: p["iss"] != idp.url and "code" in p),
        ("no_iss", None, lambda p, idp: "iss" not in p and "code" in p),
    ],
)
def test_authorize_faults(oidc: OIDCProvider, kind: str, value: str | None, check) -> None:
    oidc.faults.set("authorize", kind, value)
    login = oidc_login(oidc)
    params = query_of(oidc.authorize_redirect(login.url, "jdoe"))
    assert check(params, oidc)


def test_wrong_state_fault(oidc: OIDCProvider) -> None:
    oidc.faults.set("authorize", "wrong_state")
    login = oidc_login(oidc)
    assert query_of(oidc.authorize_redirect(login.url, "jdoe"))["state"] != login.state


def test_unknown_fault_names_fail_loudly(oidc: OIDCProvider) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        oidc.faults.set("tokn", "status", 500)
    with pytest.raises(ValueError, match="no fault"):
        oidc.faults.set("userinfo", "bad_signature")


def test_reset_and_cancel(oidc: OIDCProvider, http: httpx.Client) -> None:
    oidc.faults.set("token", "status", 500)
    login, code = oidc_code(oidc)
    params = query_of(oidc.authorize_redirect(oidc_login(oidc).url, "jdoe", cancel=True))
    assert params["error"] == "access_denied"
    oidc.reset()
    assert oidc.faults.active("token") == {} and len(oidc.requests) == 0
    assert oidc_token_request(http, oidc, code, verifier=login.verifier).status_code == 400
    assert "jdoe" in oidc.members


def test_issuer_can_be_fixed() -> None:
    idp = OIDCProvider(issuer="http://idp.test/", redirect_uris=[REDIRECT_URI])
    assert idp.issuer == "http://idp.test"
    with idp:
        assert httpx.get(idp.discovery_url).json()["token_endpoint"] == "http://idp.test/token"
