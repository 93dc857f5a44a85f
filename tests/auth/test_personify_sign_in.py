"""Personify SSO end to end: the Personify360 preset, the loopback Personify, the real flow.

A system is saved through the form's service from the preset (the manager completes what it
marks), a member signs in at the fake's login page and comes back with ``ct``; the callback
claims the attempt by its state and browser, runs the Personify engine and resolves the
account as for OAuth 2.0. Every failure ends on the failure page with a reference, and
nothing about users is written.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from portal.devidp import PersonifyProvider
from portal.devidp.personify import DEFAULT_DATA_SERVICES_PASSWORD, DEFAULT_VENDOR_PASSWORD
from portal.extensions import db
from portal.models import GroupMembership, Identity, LoginAttempt, MemberGroup, User
from portal.presets import get_preset
from portal.services.auth_systems import create_auth_system
from portal.services.group_mapping import add_rule
from portal.sso.fields import TYPE_PERSONIFY
from tests.support.failures import assert_failure_page
from tests.support.providers import jane
from tests.support.rows import users_and_identities

VENDOR_BLOCK = "A39321266122A223EB1B3A23669721B2"


def personify_form(idp: PersonifyProvider, **changes: object) -> dict[str, object]:
    """Return the Personify360 preset as a manager completes it for the loopback Personify.

    The preset's addresses are ``https://{marker}/...``; the fake listens on plain http on
    loopback, so each marked origin is replaced by the fake's.
    """
    preset = get_preset("personify360")
    assert preset is not None and preset.type == TYPE_PERSONIFY
    data = preset.form_data()
    for name, value in list(data.items()):
        if isinstance(value, str):
            data[name] = re.sub(r"https://\{[a-z-]+\}", idp.url, value)
    data.update(
        type=preset.type,
        name="Personify",
        vendor_id=idp.vendor_id,
        vendor_username=idp.vendor_username,
        vendor_password=idp.vendor_password,
        vendor_block=idp.vendor_block,
        data_services_username=idp.data_services_username,
        data_services_password=idp.data_services_password,
        login_label="Sign in with Personify",
        login_mode="local_and_remote",
        enabled=True,
    )
    data.update(changes)
    return data


@pytest.fixture
def personify(app) -> Iterator[PersonifyProvider]:
    """A running loopback Personify with Jane (roles: WEBINARS), and a system from the preset."""
    member = jane()
    with PersonifyProvider(
        members=[member], vendor_password=DEFAULT_VENDOR_PASSWORD, vendor_block=VENDOR_BLOCK
    ) as idp:
        idp.system = create_auth_system(personify_form(idp))
        yield idp


def start(client, idp) -> str:
    """Start the sign-in; return where Portal sends the browser (the SSO Login URL)."""
    resp = client.get(f"/sso/{idp.system.slug}/login")
    assert resp.status_code == 302, resp.status_code
    return resp.headers["Location"]


def come_back(idp, login_url: str, username: str = "jdoe") -> str:
    """Sign in at the fake's login page; return the callback path Personify sends back to."""
    back = urlsplit(idp.authorize_redirect(login_url, username))
    return f"{back.path}?{back.query}"


def issued(idp: PersonifyProvider, *paths: str) -> list[str]:
    """Every secret of the flow: vendor and Data Services passwords, tokens, the ct values."""
    found = [DEFAULT_VENDOR_PASSWORD, VENDOR_BLOCK, DEFAULT_DATA_SERVICES_PASSWORD]
    found += list(idp._tokens)
    for path in paths:
        found += parse_qs(urlsplit(path).query).get("ct", [])
    return found


def user_groups(email: str) -> set[str]:
    user = db.session.scalar(sa.select(User).where(User.email == email))
    names = db.session.scalars(
        sa.select(MemberGroup.name)
        .join(GroupMembership, GroupMembership.group_id == MemberGroup.id)
        .where(GroupMembership.user_id == user.id)
    )
    return set(names)


def test_the_login_link_sends_the_member_to_personify_with_vi_and_a_vendor_token(client, personify):
    """The SSO Login URL gets vi and a vt that carries the Redirect URL and the attempt's state."""
    login_url = start(client, personify)
    parts = urlsplit(login_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == personify.login_url
    query = parse_qs(parts.query)
    assert query["vi"] == [personify.vendor_id]
    return_url, problem = personify.read_vendor_token(query["vt"][0])
    assert problem == ""
    back = urlsplit(return_url)
    assert back.path == f"/sso/{personify.system.slug}/callback"
    state = parse_qs(back.query)["state"][0]
    assert len(state) >= 40
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LoginAttempt)) == 1


def test_a_member_signs_in_through_the_preset_with_roles_mapped_to_groups(client, personify):
    """Jane signs in: her account is created with Personify's names and email, bound to her
    customer number, and her WEBINARS role puts her in the mapped member group."""
    webinars = MemberGroup(name="Webinars", name_key="webinars", description="")
    db.session.add(webinars)
    db.session.commit()
    add_rule(personify.system, "groups_contains", "WEBINARS", webinars.id)

    path = come_back(personify, start(client, personify))
    resp = client.get(path)

    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    user = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    assert user is not None
    assert (user.first_name, user.last_name, user.username) == ("Jane", "Doe", "jdoe")
    identity = db.session.scalar(sa.select(Identity).where(Identity.user_id == user.id))
    master = personify.master_id(personify.members.get("jdoe"))
    assert identity.auth_system_id == personify.system.id
    assert identity.subject == f"{master}|0"
    assert user_groups("jane.doe@example.org") == {"Webinars"}
    home = client.get("/")
    assert "Sign out" in home.get_data(as_text=True)


def test_a_returning_member_signs_in_to_the_same_account(app, client, personify):
    """A second sign-in (another browser) finds the bound customer number: no new account."""
    assert client.get(come_back(personify, start(client, personify))).status_code == 302
    other = app.test_client()
    resp = other.get(come_back(personify, start(other, personify)))
    assert resp.status_code == 302
    assert users_and_identities() == (1, 1)


def _fail(client, logs, personify, path, message, code, *extra_secrets):
    resp = client.get(path)
    assert_failure_page(resp, logs, message, code, issued(personify, path, *extra_secrets))
    assert users_and_identities() == (0, 0)
    return resp


def _with_ct(path: str, ct: str) -> str:
    parts = urlsplit(path)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query["ct"] = ct
    return f"{parts.path}?{urlencode(query)}"


def test_a_tampered_ct_ends_on_the_failure_page(client, logs, personify):
    """A ct changed on the way does not decrypt: the failure page, nothing written."""
    path = come_back(personify, start(client, personify))
    ct = parse_qs(urlsplit(path).query)["ct"][0]
    tampered = ct[:-2] + ("00" if ct[-2:] != "00" else "11")
    _fail(
        client,
        logs,
        personify,
        _with_ct(path, tampered),
        "could not be read",
        "customer_token_unreadable",
        path,
    )


def test_a_replayed_return_ends_on_the_failure_page(client, logs, personify):
    """The same return twice: the attempt is spent, the second one fails and writes nothing."""
    path = come_back(personify, start(client, personify))
    assert client.get(path).status_code == 302
    before = users_and_identities()
    resp = client.get(path)
    assert_failure_page(
        resp, logs, "expired or was already used", "state_invalid", issued(personify, path)
    )
    assert users_and_identities() == before == (1, 1)


def test_a_ct_personify_says_is_invalid_ends_on_the_failure_page(client, logs, personify):
    """SSOCustomerTokenIsValid answers Valid=false: the failure page, nothing written."""
    path = come_back(personify, start(client, personify))
    personify.faults.set("sso_service", "invalid_token")
    _fail(client, logs, personify, path, "expired or was already used", "customer_token_invalid")


def test_a_return_to_another_browser_ends_on_the_failure_page(app, client, logs, personify):
    """The return carried to a browser that did not start the sign-in is refused (login CSRF)."""
    path = come_back(personify, start(client, personify))
    other = app.test_client()
    resp = other.get(path)
    assert_failure_page(
        resp, logs, "expired or was already used", "state_invalid", issued(personify, path)
    )
    assert users_and_identities() == (0, 0)


def test_a_return_without_ct_ends_on_the_failure_page(client, logs, personify):
    """The member cancelled at Personify (back without ct): the failure page."""
    path = come_back(personify, start(client, personify))
    parts = urlsplit(path)
    state = parse_qs(parts.query)["state"][0]
    _fail(
        client,
        logs,
        personify,
        f"{parts.path}?{urlencode({'state': state})}",
        "could not be read",
        "customer_token_unreadable",
        path,
    )


# -- Test this configuration -------------------------------------------------------------------


def test_test_this_configuration_traces_each_soap_call_redacted_and_signs_nobody_in(
    manager_client, personify
):
    """The manager's test run lists every call (SSO, IMS, Data Services) with the vendor
    password, the customer tokens and the Data Services credentials redacted, the mapped
    fields, and what would happen; nobody is signed in and no account is written."""
    resp = manager_client.post(f"/admin/auth-systems/{personify.system.id}/test")
    assert resp.status_code == 302, resp.status_code
    path = come_back(personify, resp.headers["Location"])
    resp = manager_client.get(path)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    page = html.unescape(manager_client.get(resp.headers["Location"]).get_data(as_text=True))

    assert "The sign-in works" in page
    assert page.count(personify.sso_service_url) >= 3
    assert personify.ims_service_url in page
    assert f"{personify.data_services_url}/CustomerInfos(" in page
    assert "Personify SSO web services" in page
    assert "jane.doe@example.org" in page and "WEBINARS" in page
    assert "Would create a new account." in page
    assert "[redacted]" in page
    basic = base64.b64encode(
        f"{personify.data_services_username}:{DEFAULT_DATA_SERVICES_PASSWORD}".encode()
    ).decode()
    for secret in [*issued(personify, path), basic]:
        assert secret not in page, f"secret {secret[:6]}... on the test page"
    assert users_and_identities() == (1, 0)  # the manager only
    account = manager_client.get("/account").get_data(as_text=True)
    assert "manager@example.com" in account


def test_test_this_configuration_reports_vendor_credentials_personify_refuses(
    manager_client, personify
):
    """The web services refuse the vendor's credentials: the report names the call and the
    service's error, and shows no secret; nobody is signed in."""
    resp = manager_client.post(f"/admin/auth-systems/{personify.system.id}/test")
    path = come_back(personify, resp.headers["Location"])
    personify.vendor_username = "someone-else"  # Personify no longer knows Portal's username
    resp = manager_client.get(path)
    page = html.unescape(manager_client.get(resp.headers["Location"]).get_data(as_text=True))
    assert "The sign-in works" not in page
    assert "SSOCustomerTokenIsValid answered errors: Invalid vendor credentials." in page
    for secret in issued(personify, path):
        assert secret not in page
    assert users_and_identities() == (1, 0)


def test_a_ct_appended_after_a_second_question_mark_still_signs_in(client, personify):
    """Personify appending ``?ct=`` to a return URL that already has ``?state=`` still works."""
    path = come_back(personify, start(client, personify))
    parts = urlsplit(path)
    query = parse_qs(parts.query)
    appended = f"{parts.path}?state={query['state'][0]}?ct={query['ct'][0]}"
    resp = client.get(appended)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    assert users_and_identities() == (1, 1)
