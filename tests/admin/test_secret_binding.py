"""The stored Client Secret is bound to where it goes (issue 12, finding 3).

The attack: a manager (or whoever holds a manager's session) edits the Token API URL to a host
they control and leaves Client Secret blank, so *Test this configuration* or the next sign-in
sends the stored secret there. The edit is refused, and the attacker's endpoint never hears
from Portal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from portal.devidp import OIDCProvider
from portal.extensions import db
from portal.models import AuditEvent, AuthSystem
from portal.services.auth_system_validation import secret_binding_changes
from portal.services.auth_systems import (
    auth_system_data,
    read_client_secret,
    validate_auth_system_data,
)
from portal.sso.idtoken import get_jwks_cache
from tests.auth.test_test_screen import run_test
from tests.support.auth_system_form import secret_in
from tests.support.pages import as_post, errors_beside, form_values
from tests.support.providers import CLIENT_ID, CLIENT_SECRET, Provider, jane, oidc_system


@pytest.fixture
def provider(app, create_auth_system) -> Iterator[Provider]:
    """The provider the system was saved for, with the secret it was saved with."""
    get_jwks_cache().clear()
    idp = OIDCProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=["http://localhost/sso/loopback-oidc/callback"],
        members=[jane()],
    )
    with idp:
        provider = Provider("oidc", idp, lambda **o: oidc_system(create_auth_system, idp, **o))
        provider.configure()
        yield provider
    get_jwks_cache().clear()


@pytest.fixture
def attacker() -> Iterator[OIDCProvider]:
    """A token endpoint on another host (another loopback port) that records what it gets."""
    with OIDCProvider(client_id=CLIENT_ID, client_secret="x", members=[jane()]) as idp:
        yield idp


def _edit_page_values(client, system: AuthSystem) -> dict[str, str]:
    page = client.get(f"/admin/auth-systems/{system.id}/edit").get_data(as_text=True)
    return as_post(form_values(page))


def _secret_reached(idp: OIDCProvider) -> bool:
    """Tell whether any request the provider received carried the client secret."""
    for request in idp.requests.all():
        raw = request.body.decode("utf-8", "replace") + repr(request.headers)
        if "secret" in raw.lower() or "basic " in raw.lower() or CLIENT_SECRET in raw:
            return True
    return False


def test_token_url_to_another_host_with_a_blank_secret_is_refused_and_nothing_reaches_it(
    manager_client, provider, attacker
):
    """The edit is refused beside Client Secret, the row keeps the old host, and a test run
    afterwards talks to the provider the secret was saved for, never to the attacker."""
    system = provider.system
    url = f"/admin/auth-systems/{system.id}/edit"
    values = {**_edit_page_values(manager_client, system), "token_url": attacker.token_url}

    response = manager_client.post(url, data=values)

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    [message] = errors_beside(page, "client_secret")
    assert message.startswith("Type the Client Secret again: the Token API URL now goes to ")
    assert attacker.token_url.rsplit("/", 1)[0].split("//")[1] in message
    assert "only sent to the host, Client ID and token request it was saved for" in message
    assert not secret_in(page, CLIENT_SECRET)
    db.session.expire_all()
    stored = db.session.get(AuthSystem, system.id)
    assert stored.token_url == provider.idp.token_url
    assert read_client_secret(stored) == CLIENT_SECRET

    _result, trace = run_test(manager_client, provider)

    assert "The sign-in works" in trace
    assert attacker.requests.all() == [], "the attacker's endpoint received a request"
    assert not _secret_reached(attacker)
    assert provider.idp.requests.all("token"), "the saved provider got no token request"


def test_typing_the_secret_again_saves_the_new_token_url(manager_client, provider, attacker):
    """With the Client Secret typed again the same change is saved (the manager chose it)."""
    system = provider.system
    values = {
        **_edit_page_values(manager_client, system),
        "token_url": attacker.token_url,
        "client_secret": "typed-again",
    }
    response = manager_client.post(f"/admin/auth-systems/{system.id}/edit", data=values)
    assert response.status_code == 302
    db.session.expire_all()
    stored = db.session.get(AuthSystem, system.id)
    assert stored.token_url == attacker.token_url
    assert read_client_secret(stored) == "typed-again"


def test_a_refused_edit_writes_no_audit_event(manager_client, provider, attacker):
    """Nothing about the refused change is recorded as saved."""
    system = provider.system
    before = db.session.query(AuditEvent).count()
    values = {**_edit_page_values(manager_client, system), "client_id": "someone-else"}
    manager_client.post(f"/admin/auth-systems/{system.id}/edit", data=values)
    db.session.expire_all()
    assert db.session.query(AuditEvent).count() == before
    assert db.session.get(AuthSystem, system.id).client_id == CLIENT_ID


BOUND_CHANGES = [
    ("another host", {"token_url": "https://evil.example.net/token"}, "Token API URL now goes"),
    ("another port", {"token_url": "https://idp.example.com:8443/token"}, "Token API URL now"),
    ("another Client ID", {"client_id": "other-client"}, "the Client ID changed"),
    ("token headers", {"token_headers": "Authorization: Basic %BasicAuth%"}, "Headers changed"),
    ("token body", {"token_body": "code=%Code%&client_secret=%ClientSecret%"}, "Body changed"),
]


@pytest.mark.parametrize(
    ("what", "change", "says"), BOUND_CHANGES, ids=[c[0] for c in BOUND_CHANGES]
)
def test_a_change_the_secret_is_bound_to_needs_it_typed_again(
    app, create_auth_system, what, change, says
):
    """Each change to where or how the secret is sent is refused with a blank secret."""
    system = create_auth_system()
    data = {**auth_system_data(system), **change}
    errors = validate_auth_system_data(data, system=system)
    assert list(errors) == ["client_secret"], what
    assert says in errors["client_secret"][0]
    assert validate_auth_system_data({**data, "client_secret": "again"}, system=system) == {}


FREE_CHANGES = [
    ("path on the same host", {"token_url": "https://idp.example.com/oauth/token"}),
    ("default port spelled out", {"token_url": "https://idp.example.com:443/token"}),
    ("login label", {"login_label": "Another label"}),
    ("scope", {"scope": "openid"}),
    ("profile URL without the secret", {"profile_url": "https://other.example.org/me"}),
    ("trust settings", {"trusts_email": True, "trusts_username": True}),
]


@pytest.mark.parametrize(("what", "change"), FREE_CHANGES, ids=[c[0] for c in FREE_CHANGES])
def test_other_changes_keep_the_stored_secret(app, create_auth_system, what, change):
    """Changes that do not move the secret save with Client Secret left blank."""
    system = create_auth_system()
    data = {**auth_system_data(system), **change}
    assert validate_auth_system_data(data, system=system) == {}, what


def _config(**over: Any) -> dict[str, Any]:
    return {
        "client_id": "c",
        "token_url": "https://idp.example.com/token",
        "token_headers": "",
        "token_body": "code=%Code%",
        "profile_url": "https://api.example.com/me",
        "profile_headers": "Authorization: Bearer %Token%",
        **over,
    }


def test_a_profile_request_that_starts_sending_the_secret_needs_it_again():
    """Adding %ClientSecret% or %BasicAuth% to the profile request, or moving a profile
    request that carries it, counts as a change of where the secret goes."""
    sends = "X-Client: %BasicAuth%"
    added = secret_binding_changes(_config(), _config(profile_headers=sends))
    assert added == ["the Profile API URL or Headers now send the secret"]
    moved = secret_binding_changes(
        _config(profile_headers=sends),
        _config(profile_headers=sends, profile_url="https://evil.example.net/me"),
    )
    assert len(moved) == 1 and "evil.example.net" in moved[0]
    in_url = _config(profile_url="https://api.example.com/me?s=%ClientSecret%")
    assert secret_binding_changes(_config(), in_url) != []
    assert (
        secret_binding_changes(_config(profile_headers=sends), _config(profile_headers=sends)) == []
    )


def test_a_system_without_a_stored_secret_has_nothing_to_protect(app, create_auth_system):
    """A system whose secret was never stored may change its token endpoint freely."""
    system = create_auth_system()
    system.client_secret_encrypted = ""
    db.session.commit()
    data = {**auth_system_data(system), "token_url": "https://other.example.net/token"}
    assert "client_secret" not in validate_auth_system_data(data, system=system)
