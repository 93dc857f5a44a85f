"""YourMembership and iMIS: a member signs in through each preset against its loopback fake."""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from portal.devidp import IMISProvider, YourMembershipProvider
from portal.devidp.yourmembership import SITE_CLIENT_ID
from portal.extensions import db
from portal.models import GroupMembership, MemberGroup, User
from portal.presets import get_preset
from portal.services.auth_systems import create_auth_system
from portal.services.group_mapping import add_rule, save_mapping_settings
from tests.support.failures import REFERENCE
from tests.support.providers import CLIENT_ID, CLIENT_SECRET, Provider, jane
from tests.support.rows import users_and_identities

LAPSED = "Your membership has lapsed: renew it at the member center."


def _system_from_preset(key: str, replacements: dict[str, str], name: str) -> Any:
    """Save a system as a manager would: the preset, its markers replaced, the credentials."""
    data = get_preset(key).form_data()
    for field, value in list(data.items()):
        if isinstance(value, str):
            for marker, replacement in replacements.items():
                value = value.replace(marker, replacement)
            data[field] = value
    data.update(
        name=name,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        login_label=f"Sign in with {name}",
        login_mode="local_and_remote",
        enabled=True,
    )
    return create_auth_system(data)


@pytest.fixture
def ym(app) -> Iterator[Provider]:
    """A running YourMembership fake with Jane, and a system saved from the preset."""
    idp = YourMembershipProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=["http://localhost/sso/yourmembership/callback"],
        members=[jane()],
    )
    with idp:
        replacements = {
            "https://{your-ym-site}": idp.url,
            "https://ws.yourmembership.com": idp.url,
            "{ym-client-id}": str(SITE_CLIENT_ID),
        }
        provider = Provider(
            "yourmembership",
            idp,
            lambda: _system_from_preset("yourmembership", replacements, "YourMembership"),
        )
        provider.configure()
        yield provider


@pytest.fixture
def imis(app) -> Iterator[Provider]:
    """A running iMIS fake with Jane, and a system saved from the preset."""
    idp = IMISProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=["http://localhost/sso/imis/callback"],
        members=[jane()],
    )
    with idp:
        replacements = {"https://{your-imis-site}": idp.url, "{sso-login-page}": "sso-login"}
        provider = Provider("imis", idp, lambda: _system_from_preset("imis", replacements, "iMIS"))
        provider.configure()
        yield provider


@pytest.fixture(params=["ym", "imis"])
def platform(request) -> Provider:
    return request.getfixturevalue(request.param)


def _group(name: str) -> MemberGroup:
    group = MemberGroup(name=name, name_key=name.casefold(), description="")
    db.session.add(group)
    db.session.commit()
    return group


def _jane() -> User:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))


def test_a_member_signs_in_through_the_preset_with_groups_mapped(platform, sso):
    """Jane signs in; names, email, membership come from the chained answers; her provider
    group maps onto a member group."""
    webinars = _group("Webinars")
    add_rule(platform.system, "groups_contains", "Webinars", webinars.id)

    resp = sso.sign_in(platform)

    assert resp.status_code == 302, resp.get_data(as_text=True)[:3000]
    user = _jane()
    assert (user.first_name, user.last_name, user.username) == ("Jane", "Doe", "jdoe")
    assert user.membership_status == "Active"
    groups = db.session.scalars(
        sa.select(GroupMembership.group_id).where(GroupMembership.user_id == user.id)
    ).all()
    assert groups == [webinars.id]
    assert users_and_identities() == (1, 1)


def test_each_chained_call_went_to_its_documented_endpoint(platform, sso):
    """The fake saw the profile calls in order, each carrying what the earlier one returned."""
    sso.sign_in(platform)

    endpoints = [r.endpoint for r in platform.idp.requests.all()]
    if platform.kind == "imis":
        assert endpoints[-4:] == ["token", "user", "party", "group_member"]
        (user_call,) = platform.idp.requests.all("user")
        assert user_call.query == {"UserName": "jdoe"}
        (groups_call,) = platform.idp.requests.all("group_member")
        assert groups_call.query == {"PartyId": str(platform.idp.members["jdoe"].id)}
    else:
        assert endpoints[-3:] == ["token", "authenticate", "member_profile"]
        (profile_call,) = platform.idp.requests.all("member_profile")
        member_id = platform.idp.members["jdoe"].id
        assert profile_call.path == f"/Ams/{SITE_CLIENT_ID}/Member/{member_id}/MemberProfile"
        assert profile_call.headers["X-SS-ID"].startswith("ymss")


def test_a_lapsed_yourmembership_member_is_refused_with_the_managers_message(ym, sso, caplog):
    """MembershipExpiresDate in the past reads as Lapsed: the restriction refuses her."""
    save_mapping_settings(
        ym.system,
        default_group_id=None,
        restrict_sign_in=True,
        allowed_statuses="Active",
        deny_message=LAPSED,
        group_object_key="",
    )
    ym.idp.members.update("jdoe", MembershipExpiresDate="2020-06-30T00:00:00")

    resp = sso.sign_in(ym)

    page = resp.get_data(as_text=True)
    assert resp.status_code == 403
    assert LAPSED in page
    reference = REFERENCE.search(page).group(1)
    assert any(f"ref={reference}" in r.getMessage() for r in caplog.records)
    assert users_and_identities() == (0, 0)


def test_a_yourmembership_member_whose_membership_runs_on_gets_in(ym, sso):
    """An expiry date in the future reads as Active: the same restriction lets her in."""
    save_mapping_settings(
        ym.system,
        default_group_id=None,
        restrict_sign_in=True,
        allowed_statuses="Active",
        deny_message=LAPSED,
        group_object_key="",
    )
    ym.idp.members.update("jdoe", MembershipExpiresDate="2999-06-30T00:00:00")

    assert sso.sign_in(ym).status_code == 302
    assert _jane().membership_status == "Active"


def test_an_imis_user_the_api_does_not_find_fails_with_a_reference_and_writes_nothing(imis, sso):
    """/api/user finds no such user: the PartyId is missing, the sign-in fails cleanly."""
    original = imis.idp.user_for
    imis.idp.user_for = lambda member: {**original(member), "Party": None}

    resp = sso.sign_in(imis)

    page = resp.get_data(as_text=True)
    assert resp.status_code >= 400
    assert REFERENCE.search(page)
    assert CLIENT_SECRET not in page
    assert users_and_identities() == (0, 0)


def test_test_this_configuration_shows_every_chained_request_redacted(platform, manager_client):
    """The test screen lists the token request and each profile request; no token, code or
    session id shows."""
    resp = manager_client.post(f"/admin/auth-systems/{platform.system.id}/test")
    back = platform.idp.authorize_redirect(resp.headers["Location"], "jdoe")
    parts = urlsplit(back)
    result = manager_client.get(f"{parts.path}?{parts.query}").headers["Location"]
    page = unescape(manager_client.get(result).get_data(as_text=True))

    assert "The sign-in works" in page
    idp = platform.idp
    member = idp.members["jdoe"].id
    if platform.kind == "imis":
        expected = [f"{idp.url}/api/user?UserName=jdoe", f"{idp.url}/api/party/{member}"]
        expected.append(f"{idp.url}/api/GroupMember?PartyId={member}")
    else:
        expected = [
            idp.authenticate_url,
            f"{idp.url}/Ams/{SITE_CLIENT_ID}/Member/{member}/MemberProfile",
        ]
    for url in [idp.token_url, *expected]:
        assert url in page, url
    issued = [*idp._codes, *idp._tokens, *getattr(idp, "_sessions", {})]
    assert issued and not [value for value in issued if value in page]
    assert CLIENT_SECRET not in page
    assert users_and_identities() == (1, 0)  # the manager only: nobody signed in
