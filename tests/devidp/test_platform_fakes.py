"""The YourMembership and iMIS fakes answer in their documented shapes, and only for the member."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest

from portal.devidp import IMISProvider, YourMembershipProvider, demo_members
from portal.devidp.yourmembership import SITE_CLIENT_ID
from portal.sso.paths import parse_date

from .helpers import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, query_of


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
