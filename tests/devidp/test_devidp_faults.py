"""The fault switch's HTTP faults, on the token and profile endpoints of both providers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from portal.devidp import AMSProvider, OIDCProvider

from .helpers import ams_code, ams_token_request, oidc_code, oidc_token_request

TWO_MIB = 2 * 1024 * 1024

Call = Callable[[float | None], httpx.Response]


def _calls(idp: OIDCProvider | AMSProvider, http: httpx.Client, endpoint: str) -> Call:
    """A function that calls ``endpoint`` of ``idp`` once (fresh code or token prepared)."""
    if isinstance(idp, OIDCProvider):
        login, code = oidc_code(idp)
        if endpoint == "token":
            return lambda t: oidc_token_request(http, idp, code, verifier=login.verifier, timeout=t)
        token = oidc_token_request(http, idp, code, verifier=login.verifier).json()["access_token"]
        return lambda t: http.get(
            idp.userinfo_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=t if t is not None else 10,
        )
    _, code = ams_code(idp)
    if endpoint == "token":
        return lambda t: ams_token_request(http, idp, code, timeout=t)
    key = ams_token_request(http, idp, code).json()["result"]["AccessKey"]
    return lambda t: http.get(
        idp.member_url, headers={"X-Api-Key": key}, timeout=t if t is not None else 10
    )


@pytest.fixture(params=["oidc", "ams"])
def idp(request: pytest.FixtureRequest) -> OIDCProvider | AMSProvider:
    """Each provider in turn."""
    return request.getfixturevalue(request.param)


ENDPOINTS = ["token", "profile"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("code", [500, 401])
def test_status(idp, http: httpx.Client, endpoint: str, code: int) -> None:
    call = _calls(idp, http, endpoint)
    idp.faults.set(endpoint, "status", code)
    resp = call(None)
    assert resp.status_code == code
    assert resp.headers["content-type"].startswith("text/plain")
    idp.faults.clear()
    assert call(None).status_code == 200  # the fault answered before the code was spent


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_html(idp, http: httpx.Client, endpoint: str) -> None:
    call = _calls(idp, http, endpoint)
    idp.faults.set(endpoint, "html")
    resp = call(None)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.text.lstrip().startswith("<!doctype html>")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_garbage(idp, http: httpx.Client, endpoint: str) -> None:
    call = _calls(idp, http, endpoint)
    idp.faults.set(endpoint, "garbage")
    resp = call(None)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        resp.json()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", ["oversized", "oversized_chunked"])
def test_oversized(idp, http: httpx.Client, endpoint: str, kind: str) -> None:
    call = _calls(idp, http, endpoint)
    idp.faults.set(endpoint, kind)
    resp = call(None)
    assert resp.status_code == 200
    assert len(resp.content) == TWO_MIB
    if kind == "oversized":
        assert resp.headers["content-length"] == str(TWO_MIB)
    else:
        assert "content-length" not in resp.headers
        assert resp.headers["transfer-encoding"] == "chunked"
    assert resp.json()["padding"].startswith("xxx")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_oauth_error(idp, http: httpx.Client, endpoint: str) -> None:
    call = _calls(idp, http, endpoint)
    idp.faults.set(endpoint, "oauth_error")
    resp = call(None)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"
    assert resp.json()["error_description"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_drop(idp, http: httpx.Client, endpoint: str) -> None:
    call = _calls(idp, http, endpoint)
    idp.faults.set(endpoint, "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        call(None)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_slow(idp, http: httpx.Client, endpoint: str) -> None:
    call = _calls(idp, http, endpoint)
    idp.faults.set(endpoint, "slow", 0.3, times=1)
    started = time.monotonic()
    assert call(None).status_code == 200
    assert time.monotonic() - started >= 0.3
    if endpoint == "token":
        call = _calls(idp, http, endpoint)
    idp.faults.set(endpoint, "slow", 30)
    with pytest.raises(httpx.ReadTimeout):
        call(0.3)
    # stop() wakes the sleeping request, so teardown is quick.


def test_no_token_oidc(oidc: OIDCProvider, http: httpx.Client) -> None:
    oidc.faults.set("token", "no_token")
    body = _calls(oidc, http, "token")(None).json()
    assert "access_token" not in body
    assert body["token_type"] == "Bearer" and body["id_token"]


def test_times_limits_hits(idp, http: httpx.Client) -> None:
    call = _calls(idp, http, "profile")
    idp.faults.set("profile", "status", 503, times=2)
    assert [call(None).status_code for _ in range(3)] == [503, 503, 200]
    assert idp.faults.active("profile") == {}


def test_clear_one_kind(idp) -> None:
    idp.faults.set("token", "slow", 1)
    idp.faults.set("token", "status", 500)
    idp.faults.clear("token", "slow")
    assert list(idp.faults.active("token")) == ["status"]
    idp.faults.clear()
    assert idp.faults.active("token") == {}


def test_requests_are_recorded(idp, http: httpx.Client) -> None:
    call = _calls(idp, http, "profile")
    idp.requests.clear()
    call(None)
    recorded = idp.requests.last("member" if isinstance(idp, AMSProvider) else "userinfo")
    assert recorded.method == "GET"
    header = "X-Api-Key" if isinstance(idp, AMSProvider) else "Authorization"
    assert recorded.headers[header]
    assert len(idp.requests) == 1
