"""Novi AMS, MemberClicks and Membes: a manager saves each preset from *Start from*, filling in
what it marks, and a member signs in through the platform's loopback fake."""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.devidp import MemberClicksProvider, MembesProvider, NoviProvider
from portal.devidp.client import decode_basic_auth
from portal.devidp.membes import MEMBER_DETAILS_PATH
from portal.extensions import db
from portal.models import AuthSystem, GroupMembership, MemberGroup, User
from portal.models.group import RULE_GROUPS_CONTAINS, RULE_TYPE_IN
from portal.services.group_mapping import add_rule, save_mapping_settings
from tests.support.failures import REFERENCE
from tests.support.pages import as_post, form_values
from tests.support.providers import CLIENT_ID, CLIENT_SECRET, SSO, Provider, jane
from tests.support.rows import users_and_identities

NEW = "/admin/auth-systems/new"
#: The client secret as it is, and as a URL carries it (Membes puts it in the token URL).
SECRET_FORMS = (CLIENT_SECRET, quote(CLIENT_SECRET, safe=""), quote_plus(CLIENT_SECRET))
LAPSED = "Your membership has lapsed: renew it at the member center."


def save_from_preset(
    manager_client: FlaskClient, key: str, name: str, replacements: dict[str, str]
) -> AuthSystem:
    """What a manager does: Start from the preset, replace each marker it shows, add the
    credentials and a button label, enable the system and save the form."""
    page = manager_client.get(f"{NEW}?preset={key}").get_data(as_text=True)
    values = form_values(page)
    for field, value in list(values.items()):
        if isinstance(value, str):
            for marker, replacement in replacements.items():
                value = value.replace(marker, replacement)
            values[field] = value
    values.update(
        name=name,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        login_label=f"Sign in with {name}",
        login_mode="local_and_remote",
        enabled=True,
    )
    resp = manager_client.post(NEW, data=as_post(values))
    assert resp.status_code == 302, unescape(resp.get_data(as_text=True))[:3000]
    system = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.name == name))
    assert system is not None
    return system


def _platform(kind: str, idp: Any, manager_client: FlaskClient, key: str, name: str, marks):
    """Start ``idp``, save the preset against it, register Portal's Redirect URL there."""
    idp.start()
    system = save_from_preset(manager_client, key, name, marks(idp))
    idp.client.redirect_uris.append(f"http://localhost/sso/{system.slug}/callback")
    return Provider(kind, idp, lambda: system, system)


@pytest.fixture
def novi(app, manager_client) -> Iterator[Provider]:
    """Novi with Jane; the SSO client's Permitted Groups are WEBINARS."""
    idp = NoviProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, members=[jane()])
    idp.permitted_groups = {"WEBINARS"}
    try:
        yield _platform(
            "novi",
            idp,
            manager_client,
            "novi-ams",
            "Novi AMS",
            lambda i: {"https://{your-novi-site}": i.url},
        )
    finally:
        idp.stop()


@pytest.fixture
def memberclicks(app, manager_client) -> Iterator[Provider]:
    """MemberClicks (MC Professional) with Jane."""
    idp = MemberClicksProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, members=[jane()])
    try:
        yield _platform(
            "memberclicks",
            idp,
            manager_client,
            "memberclicks",
            "MemberClicks",
            lambda i: {"https://{org-id}.memberclicks.net": i.url},
        )
    finally:
        idp.stop()


@pytest.fixture
def membes(app, manager_client) -> Iterator[Provider]:
    """Membes with Jane; the manager got the member-details path from Membes."""
    idp = MembesProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, members=[jane()])
    try:
        yield _platform(
            "membes",
            idp,
            manager_client,
            "membes",
            "Membes",
            lambda i: {
                "https://{your-membes-site}": i.url,
                "https://api.membes.com.au": i.url,
                "{member-details-path}": MEMBER_DETAILS_PATH,
            },
        )
    finally:
        idp.stop()


@pytest.fixture(params=["novi", "memberclicks", "membes"])
def platform(request) -> Provider:
    return request.getfixturevalue(request.param)


@pytest.fixture
def member(app: Flask) -> SSO:
    """The member's own browser (not the manager's)."""
    return SSO(app.test_client())


def _group(name: str) -> MemberGroup:
    group = MemberGroup(name=name, name_key=name.casefold(), description="")
    db.session.add(group)
    db.session.commit()
    return group


def _map_groups(platform: Provider) -> MemberGroup:
    """Map Jane's groups the way each platform's answer allows (its preset's notes say how)."""
    group = _group("Webinars")
    if platform.kind == "novi":  # no group claim: everyone Permitted Groups let in
        save_mapping_settings(
            platform.system,
            default_group_id=group.id,
            restrict_sign_in=False,
            allowed_statuses="",
            deny_message="",
            group_object_key="",
        )
    elif platform.kind == "memberclicks":  # no groups on the profile: by Member Type
        add_rule(platform.system, RULE_TYPE_IN, "Professional", group.id)
    else:
        add_rule(platform.system, RULE_GROUPS_CONTAINS, "Webinars", group.id)
    return group


def _jane() -> User | None:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))


def _issued(platform: Provider) -> list[str]:
    idp = platform.idp
    if platform.kind == "novi":
        return [*idp._codes, *idp._tokens, *idp._refresh]
    found = [*idp.codes, *idp.tokens]
    return found + [*getattr(idp, "refresh_tokens", [])]


def _assert_failure_page(resp, logs, platform: Provider) -> str:
    """The member's failure page: a reference found in the log, no secret anywhere."""
    page = resp.get_data(as_text=True)
    assert resp.status_code >= 400
    match = REFERENCE.search(page)
    assert match, page[:2000]
    assert any(f"ref={match.group(1)}" in r.getMessage() for r in logs.records)
    logged = "\n".join(r.getMessage() for r in logs.records)
    for secret in [*SECRET_FORMS, *_issued(platform)]:
        assert secret not in page
        assert secret not in logged
    return page


def test_a_member_signs_in_through_the_preset_with_groups_mapped(platform, member):
    """Jane signs in; name and email come from the platform's answer; she lands in the member
    group her platform data maps to."""
    webinars = _map_groups(platform)

    resp = member.sign_in(platform)

    assert resp.status_code == 302, resp.get_data(as_text=True)[:3000]
    user = _jane()
    assert user is not None
    assert (user.first_name, user.last_name) == ("Jane", "Doe")
    groups = db.session.scalars(
        sa.select(GroupMembership.group_id).where(GroupMembership.user_id == user.id)
    ).all()
    assert groups == [webinars.id]
    assert users_and_identities() == (2, 1)  # the manager, and Jane with her identity


def test_each_call_has_the_documented_shape(platform, member):
    """The fake saw the calls each platform documents: method, place of the credentials."""
    member.sign_in(platform)
    idp = platform.idp

    (token,) = idp.requests.all("token")
    if platform.kind == "memberclicks":
        assert token.method == "POST"
        assert decode_basic_auth(token.headers["Authorization"]) == (CLIENT_ID, CLIENT_SECRET)
        body = dict(parse_qsl(token.body.decode()))
        assert body["grant_type"] == "authorization_code" and body["scope"] == "read"
        assert "client_secret" not in body
        (profile,) = idp.requests.all("profile_me")
        assert profile.headers["Accept"] == "application/json"
        assert profile.headers["Authorization"].startswith("Bearer mcat_")
    elif platform.kind == "membes":
        assert token.method == "GET" and token.body == b""
        assert set(token.query) == {"code", "client_secret"}
        assert token.query["client_secret"] == CLIENT_SECRET
        (details,) = idp.requests.all("member")
        assert details.headers["Authorization"].startswith("Bearer mbat_")
    else:
        assert token.path == "/oauth/token"
        assert dict(parse_qsl(token.body.decode()))["client_secret"] == CLIENT_SECRET
        (userinfo,) = idp.requests.all("userinfo")
        assert userinfo.path == "/oauth/userinfo"
        assert _jane().identities[0].subject == idp.customer_id(idp.members["jdoe"])


def test_a_novi_member_outside_the_permitted_groups_is_refused(novi, member, logs):
    """Novi refuses a member outside the SSO client's Permitted Groups: she ends on Portal's
    failure page with a reference, and no account is made."""
    novi.idp.members.update("jdoe", groups=["NEWSLETTER"])

    resp = member.sign_in(novi)

    _assert_failure_page(resp, logs, novi)
    assert novi.idp.requests.all("token") == []
    assert users_and_identities() == (1, 0)


def test_a_lapsed_memberclicks_member_is_refused_with_the_managers_message(
    memberclicks, member, logs
):
    """[Member Status] Lapsed: the sign-in restriction refuses her with the manager's words."""
    save_mapping_settings(
        memberclicks.system,
        default_group_id=None,
        restrict_sign_in=True,
        allowed_statuses="Active",
        deny_message=LAPSED,
        group_object_key="",
    )
    memberclicks.idp.members.update("jdoe", membership_status="Lapsed")

    resp = member.sign_in(memberclicks)

    page = _assert_failure_page(resp, logs, memberclicks)
    assert resp.status_code == 403
    assert LAPSED in page
    assert users_and_identities() == (1, 0)


def test_memberclicks_down_at_the_token_call_ends_on_the_failure_page(memberclicks, member, logs):
    """The token request answers 500: a failure page with a reference, nothing written."""
    memberclicks.idp.faults.set("token", "status", 500)

    resp = member.sign_in(memberclicks)

    _assert_failure_page(resp, logs, memberclicks)
    assert users_and_identities() == (1, 0)


def test_membes_answering_status_false_ends_on_the_failure_page(membes, member, logs):
    """Membes answers its token call with ``{"status": false}`` and no token: the member sees
    the failure page with a reference; the member-details call is never made."""
    membes.idp.faults.set("token", "status_false")

    resp = member.sign_in(membes)

    _assert_failure_page(resp, logs, membes)
    assert membes.idp.requests.all("member") == []
    assert users_and_identities() == (1, 0)


def test_a_replayed_membes_callback_signs_nobody_in(membes, member, logs):
    """The callback URL replayed in another browser: the code was single-use at Membes and the
    state belongs to the first browser; nothing is written for the attacker."""
    path = member.authorize(membes)
    assert member.callback(path).status_code == 302

    attacker = member.client.application.test_client()
    resp = attacker.get(path)

    assert resp.status_code >= 400
    assert REFERENCE.search(resp.get_data(as_text=True))
    assert len(membes.idp.requests.all("token")) == 1
    assert users_and_identities() == (2, 1)


def test_test_this_configuration_traces_each_call_redacted(platform, manager_client):
    """The manager's test sign-in shows the token call and the profile call of the platform,
    with no code, token or secret, and signs nobody in."""
    resp = manager_client.post(f"/admin/auth-systems/{platform.system.id}/test")
    back = platform.idp.authorize_redirect(resp.headers["Location"], "jdoe")
    parts = urlsplit(back)
    result = manager_client.get(f"{parts.path}?{parts.query}").headers["Location"]
    page = unescape(manager_client.get(result).get_data(as_text=True))

    assert "The sign-in works" in page
    idp = platform.idp
    profile_url = {
        "novi": lambda: idp.userinfo_url,
        "memberclicks": lambda: idp.profile_url,
        "membes": lambda: idp.member_url,
    }[platform.kind]()
    assert idp.token_url in page and profile_url in page
    issued = _issued(platform)
    assert issued and not [value for value in issued if value in page]
    for secret in SECRET_FORMS:
        assert secret not in page
    assert users_and_identities() == (1, 0)
