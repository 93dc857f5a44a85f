"""The platform fakes (YourMembership, iMIS, Novi, MemberClicks, Membes) answer in their
documented shapes, and only for the member."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest

from portal.devidp import (
    IMISProvider,
    MemberClicksProvider,
    MembesProvider,
    NoviProvider,
    YourMembershipProvider,
    demo_members,
)
from portal.devidp.yourmembership import SITE_CLIENT_ID
from portal.sso.paths import parse_date

from .helpers import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, basic_auth, query_of


@pytest.fixture
def ym() -> Iterator[YourMembershipProvider]:
    with YourMembershipProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
        members=demo_members(),
    ) as idp:
        yield idp


@pytest.fixture
def imis() -> Iterator[IMISProvider]:
    with IMISProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
        members=demo_members(),
    ) as idp:
        yield idp


def _ym_session(ym: YourMembershipProvider, http: httpx.Client, username: str) -> dict:
    query = urlencode({"app_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "s1"})
    back = ym.authorize_redirect(f"{ym.authorize_url}?{query}", username)
    assert query_of(back)["state"] == "s1"
    code = query_of(back)["code"]
    token = http.post(
        ym.token_url,
        json={"GrantType": "Code", "AppId": CLIENT_ID, "AppSecret": CLIENT_SECRET, "Code": code},
    ).json()
    return http.post(
        ym.authenticate_url,
        json={
            "provider": "OAuth",
            "ClientID": SITE_CLIENT_ID,
            "UserType": "Member",
            "AccessToken": token["AccessToken"],
        },
    ).json()


def test_yourmembership_gives_the_memberid_then_a_pascalcase_profile(ym, http):
    """Authenticate answers ClientID, MemberID and SessionId; MemberProfile reads with X-SS-ID."""
    session = _ym_session(ym, http, "jdoe")
    assert set(session) >= {"ClientID", "MemberID", "SessionId"}

    url = f"{ym.url}/Ams/{session['ClientID']}/Member/{session['MemberID']}/MemberProfile"
    profile = http.get(url, headers={"X-SS-ID": session["SessionId"]}).json()

    assert profile["MemberID"] == session["MemberID"]
    assert profile["PersonalInformation"]["Email"] == "jane.doe@example.org"
    assert profile["AccountInformation"]["UserName"] == "jdoe"
    expires = profile["AccountInformation"]["MembershipExpiresDate"]
    assert expires.startswith("/Date(") and parse_date(expires) is not None


def test_a_yourmembership_session_reads_only_its_own_member(ym, http):
    """Another MemberID, or no session, is refused."""
    session = _ym_session(ym, http, "jdoe")
    other = ym.members["mo"].id
    url = f"{ym.url}/Ams/{SITE_CLIENT_ID}/Member/{other}/MemberProfile"

    assert http.get(url, headers={"X-SS-ID": session["SessionId"]}).status_code == 403
    assert http.get(url).status_code == 401


def test_imis_answers_with_type_and_values_and_only_for_the_tokens_member(imis, http):
    """/api/user, /api/party and /api/GroupMember: $type everywhere, $values collections."""
    query = urlencode({"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "s1"})
    code = query_of(imis.authorize_redirect(f"{imis.authorize_url}?{query}", "jdoe"))["code"]
    token = http.post(
        imis.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    ).json()
    assert token["userName"] == "jdoe"
    bearer = {"Authorization": f"Bearer {token['access_token']}"}

    users = http.get(f"{imis.url}/api/user", params={"UserName": "jdoe"}, headers=bearer).json()
    (user,) = users["Items"]["$values"]
    party_id = user["Party"]["Id"]
    party = http.get(f"{imis.url}/api/party/{party_id}", headers=bearer).json()
    groups = http.get(
        f"{imis.url}/api/GroupMember", params={"PartyId": party_id}, headers=bearer
    ).json()

    assert users["$type"].startswith("Asi.Soa.Core.DataContracts.PagedResult")
    assert party["$type"].startswith("Asi.Soa.Membership.DataContracts.PersonData")
    assert party["PersonName"]["FirstName"] == "Jane"
    assert [e["Address"] for e in party["Emails"]["$values"] if e["IsPrimary"]] == [
        "jane.doe@example.org"
    ]
    attributes = {a["Name"]: a["Value"] for a in party["AdditionalAttributes"]["$values"]}
    assert attributes == {"CustomerTypeCode": "Professional", "MemberStatus": "Active"}
    assert [g["Group"]["Name"] for g in groups["Items"]["$values"]] == ["Webinars", "Library"]
    other = imis.members["mo"].id
    assert http.get(f"{imis.url}/api/party/{other}", headers=bearer).status_code == 404
    assert (
        http.get(f"{imis.url}/api/user", params={"UserName": "mo"}, headers=bearer).json()["Items"][
            "$values"
        ]
        == []
    )
    assert http.get(f"{imis.url}/api/party/{party_id}").status_code == 401
    assert json.dumps(party).count("$type") >= 4


# ---- Novi AMS, MemberClicks, Membes


def _code(idp, query: dict[str, str], username: str = "jdoe") -> str:
    back = idp.authorize_redirect(f"{idp.authorize_url}?{urlencode(query)}", username)
    assert query_of(back)["state"] == "s1"
    return query_of(back)["code"]


def test_novi_serves_openid_connect_at_its_documented_paths(http):
    """Discovery names /oauth/authorize, /oauth/token, /oauth/userinfo and /log-out; userinfo
    carries only the documented claims, sub being the customer's unique id."""
    with NoviProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
        members=demo_members(),
    ) as novi:
        meta = http.get(f"{novi.url}/.well-known/openid-configuration").json()
        assert meta["authorization_endpoint"] == f"{novi.url}/oauth/authorize"
        assert meta["token_endpoint"] == f"{novi.url}/oauth/token"
        assert meta["userinfo_endpoint"] == f"{novi.url}/oauth/userinfo"
        assert meta["end_session_endpoint"] == f"{novi.url}/log-out"
        assert http.get(meta["jwks_uri"]).json()["keys"]
        code = _code(
            novi,
            {
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid email profile",
                "state": "s1",
            },
        )
        token = http.post(
            novi.token_url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        ).json()
        claims = http.get(
            novi.userinfo_url, headers={"Authorization": f"Bearer {token['access_token']}"}
        ).json()
        assert claims["sub"] == novi.customer_id(novi.members["jdoe"])
        assert set(claims) == {
            "sub",
            "email",
            "email_verified",
            "name",
            "given_name",
            "family_name",
        }


def test_novi_refuses_a_member_outside_the_permitted_groups():
    """Permitted Groups: a member in none goes back with access_denied and no code."""
    with NoviProvider(
        client_id=CLIENT_ID,
        redirect_uris=[REDIRECT_URI],
        members=demo_members(),
        permitted_groups=["WEBINARS"],
    ) as novi:
        query = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "s1",
        }
        back = query_of(novi.authorize_redirect(f"{novi.authorize_url}?{urlencode(query)}", "mo"))
        assert back["error"] == "access_denied" and "code" not in back


def test_memberclicks_wants_basic_auth_and_answers_bracketed_attributes(http):
    """The token call takes the client only in HTTP Basic; /api/v1/profile/me answers the
    token's own member with bracketed attribute names."""
    with MemberClicksProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
        members=demo_members(),
    ) as mc:
        query = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "scope": "read",
            "state": "s1",
            "redirect_uri": REDIRECT_URI,
        }
        form = {
            "grant_type": "authorization_code",
            "code": _code(mc, query),
            "scope": "read",
            "redirect_uri": REDIRECT_URI,
        }
        posted = {**form, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        assert http.post(mc.token_url, data=posted).status_code == 401
        form["code"] = _code(mc, query)
        basic = {"Authorization": basic_auth(CLIENT_ID, CLIENT_SECRET)}
        token = http.post(mc.token_url, data=form, headers=basic).json()
        assert token["token_type"] == "bearer" and token["userId"] == mc.members["jdoe"].id
        assert {"serviceId", "jti", "refresh_token", "expires_in", "scope"} <= set(token)
        bearer = {"Authorization": f"Bearer {token['access_token']}", "Accept": "application/json"}
        profile = http.get(mc.profile_url, headers=bearer).json()
        assert profile["[Profile ID]"] == token["userId"]
        assert profile["[Email | Primary]"] == "jane.doe@example.org"
        assert (profile["[Member Type]"], profile["[Member Status]"]) == ("Professional", "Active")
        assert http.get(mc.profile_url).status_code == 401


def test_membes_token_call_is_a_get_and_a_code_works_once(http):
    """GET /api/oauth2/?code=&client_secret= gives status/access_token/refresh_token; the same
    code again, or a wrong secret, gives status false; the refresh token gives a new token."""
    with MembesProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
        members=demo_members(),
    ) as membes:
        query = {"redirect_uri": REDIRECT_URI, "client_id": CLIENT_ID, "state": "s1"}
        code = _code(membes, query)
        wrong = http.get(membes.token_url, params={"code": code, "client_secret": "nope"})
        assert wrong.status_code == 401 and wrong.json()["status"] is False
        answer = http.get(membes.token_url, params={"code": code, "client_secret": CLIENT_SECRET})
        token = answer.json()
        assert token["status"] is True and set(token) == {
            "status",
            "access_token",
            "refresh_token",
        }
        again = http.get(membes.token_url, params={"code": code, "client_secret": CLIENT_SECRET})
        assert again.json()["status"] is False
        details = http.get(
            membes.member_url, headers={"Authorization": f"Bearer {token['access_token']}"}
        ).json()
        assert (details["id"], details["firstname"]) == (membes.members["jdoe"].id, "Jane")
        assert details["groups"] == ["Webinars", "Library"]
        refreshed = http.get(
            membes.token_url, params={"refresh_token": token["refresh_token"]}
        ).json()
        assert refreshed["status"] is True and refreshed["access_token"] != token["access_token"]
