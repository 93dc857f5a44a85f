"""The AMS-style loopback provider and its quirks, over real loopback HTTP."""

from __future__ import annotations

import httpx
import pytest

from portal.devidp import AMSProvider, OIDCProvider

from .helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    ams_code,
    ams_login,
    ams_token_request,
    query_of,
)


def test_authorize_form_and_redirect_without_iss(ams: AMSProvider, http: httpx.Client) -> None:
    login = ams_login(ams)
    page = http.get(login.url)
    assert page.status_code == 200
    assert '<label for="username">' in page.text and '<label for="password">' in page.text
    assert ">Sign in</button>" in page.text
    params = query_of(ams.authorize_redirect(login.url, "jdoe"))
    assert params["state"] == login.state and params["code"]
    assert "iss" not in params


def test_full_flow(ams: AMSProvider, http: httpx.Client) -> None:
    _, code = ams_code(ams)
    resp = ams_token_request(http, ams, code)
    assert resp.status_code == 200, resp.text
    result = resp.json()["result"]
    assert result["Expires"] == 3600
    key = result["AccessKey"]
    assert ams.requests.last("token").json()["client_secret"] == CLIENT_SECRET

    profile = http.get(ams.member_url, headers={"X-Api-Key": key})
    assert profile.status_code == 200
    member = profile.json()["Member"]
    assert member["Id"] == ams.members["jdoe"].id
    assert member["Login"] == "jdoe"
    assert member["Emails"] == [
        {"Address": "jane@home.example", "Primary": False},
        {"Address": "jane.doe@example.org", "Primary": True},
    ]
    assert member["Name"] == {"First": "Jane", "Last": "Doe"}
    assert member["Membership"] == {"Status": "Active", "Type": "Professional"}
    assert member["Groups"] == [
        {"Code": "WEBINARS", "Name": "Webinars"},
        {"Code": "LIBRARY", "Name": "Library"},
    ]


def test_member_without_last_name(ams: AMSProvider, http: httpx.Client) -> None:
    _, code = ams_code(ams, "mo")
    key = ams_token_request(http, ams, code).json()["result"]["AccessKey"]
    member = http.get(ams.member_url, headers={"X-Api-Key": key}).json()["Member"]
    assert member["Name"] == {"First": "Mo"}
    assert member["Groups"] == []


def test_token_endpoint_accepts_only_json(ams: AMSProvider, http: httpx.Client) -> None:
    _, code = ams_code(ams)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
    }
    resp = http.post(ams.token_url, data=form)
    assert resp.status_code == 415
    # The code was not spent by the refused request.
    assert ams_token_request(http, ams, code).status_code == 200


def test_code_single_use_and_wrong_secret(ams: AMSProvider, http: httpx.Client) -> None:
    _, code = ams_code(ams)
    assert ams_token_request(http, ams, code).status_code == 200
    again = ams_token_request(http, ams, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    _, code = ams_code(ams)
    assert ams_token_request(http, ams, code, secret="nope").status_code == 401


def test_profile_wants_x_api_key_not_bearer(ams: AMSProvider, http: httpx.Client) -> None:
    _, code = ams_code(ams)
    key = ams_token_request(http, ams, code).json()["result"]["AccessKey"]
    assert http.get(ams.member_url, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert http.get(ams.member_url).status_code == 401
    ams.expire_tokens()
    assert http.get(ams.member_url, headers={"X-Api-Key": key}).status_code == 401


def test_no_token_fault(ams: AMSProvider, http: httpx.Client) -> None:
    ams.faults.set("token", "no_token")
    _, code = ams_code(ams)
    assert ams_token_request(http, ams, code).json() == {"result": {"Expires": 3600}}


def test_logout_return_url(ams: AMSProvider, http: httpx.Client) -> None:
    resp = http.get(ams.logout_url, params={"returnUrl": "http://127.0.0.1:9/bye"})
    assert resp.status_code == 302 and resp.headers["location"] == "http://127.0.0.1:9/bye"
    assert ams.logouts == [{"returnUrl": "http://127.0.0.1:9/bye"}]


def test_authorize_error_fault(ams: AMSProvider) -> None:
    ams.faults.set("authorize", "error")
    login = ams_login(ams)
    params = query_of(ams.authorize_redirect(login.url, "jdoe"))
    assert params == {
        "error": "access_denied",
        "error_description": "Simulated error.",
        "state": login.state,
        "x": "1",
    }


def test_unregistered_redirect_is_refused(ams: AMSProvider, http: httpx.Client) -> None:
    resp = http.get(
        ams.authorize_url,
        params={"client_id": CLIENT_ID, "redirect_uri": "https://evil.example/cb", "state": "s"},
    )
    assert resp.status_code == 400
    with pytest.raises(Exception, match="400"):
        ams.authorize_redirect(str(resp.request.url), "jdoe")


def test_profile_edit_pages_link_back(
    ams: AMSProvider, oidc: OIDCProvider, http: httpx.Client
) -> None:
    page = http.get(ams.url + "/profile", params={"returnUrl": "http://127.0.0.1:9/me"})
    assert page.status_code == 200 and 'href="http://127.0.0.1:9/me"' in page.text
    page = http.get(oidc.url + "/account", params={"return": "http://127.0.0.1:9/me"})
    assert page.status_code == 200 and 'href="http://127.0.0.1:9/me"' in page.text
