"""Provider URLs on internal addresses are refused at save time (issue 12, finding 4).

The attack: a manager points the Token, Profile, JWKS or discovery URL at loopback, a private
network or a cloud metadata service, so that Portal fetches an internal answer and shows it on
the trace page. In production such an address is refused when the form is saved (the
connection-time check is the other half), beside the field, and nothing is saved.
"""

from __future__ import annotations

import ipaddress

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem
from portal.services.auth_systems import auth_system_data, validate_auth_system_data
from tests.support.pages import errors_beside

NEW = "/admin/auth-systems/new"
POLICY_HINT = (
    "Portal only calls identity providers on public addresses. An operator can allow a "
    "private network with PORTAL_ALLOWED_PRIVATE_NETWORKS."
)

REFUSED_HOSTS = [
    ("http://127.0.0.1:8080", "a loopback address"),
    ("https://127.0.0.1", "a loopback address"),
    ("https://[::1]", "a loopback address"),
    ("http://localhost:5000", "a loopback address"),
    ("https://10.0.0.5", "a private network address"),
    ("https://192.168.1.20", "a private network address"),
    ("https://169.254.169.254", "a link-local address (cloud metadata services live there)"),
    ("https://100.64.0.1", "a carrier-grade NAT (CGNAT) address"),
    ("https://[fd00::1]", "a unique-local IPv6 address"),
    ("https://[::ffff:10.0.0.5]", "a private network address"),
    ("https://metadata.google.internal", "an internal or cloud metadata host"),
    ("https://2130706433", "a loopback address"),
    ("https://127.1", "a loopback address"),
]


@pytest.fixture
def production(app):
    """Run the app under the production address policy (loopback refused).

    Set on the running app rather than at creation, so the production start-up checks
    (secret key, https base URL), which are not what this file tests, stay out of the way.
    """
    app.config["PORTAL_ENV"] = "production"
    return app


def _systems() -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem))


@pytest.mark.parametrize(("origin", "why"), REFUSED_HOSTS, ids=[h[0] for h in REFUSED_HOSTS])
def test_token_url_on_an_internal_address_is_refused_in_production(
    manager_client, form_data, production, origin, why
):
    """The form answers the reason beside Token API URL and saves nothing."""
    response = manager_client.post(NEW, data={**form_data, "token_url": f"{origin}/token"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert errors_beside(page, "token_url") == [f"The Token API URL points to {why}; {POLICY_HINT}"]
    assert "Nothing was saved" in page
    assert _systems() == 0


@pytest.mark.parametrize(
    ("field", "label", "value"),
    [
        ("login_url", "Identity Provider Login URL", "https://10.0.0.5/authorize?state=%State%"),
        ("profile_url", "Profile API URL", "https://169.254.169.254/latest/meta-data/"),
        ("issuer", "Issuer", "https://[fd00::1]"),
        ("jwks_url", "JWKS URL", "http://127.0.0.1:9/jwks"),
    ],
)
def test_every_url_portal_calls_is_held_to_the_policy(
    manager_client, form_data, production, field, label, value
):
    """Login, profile, issuer and JWKS URLs are refused the same way."""
    data = {**form_data, field: value}
    if field == "jwks_url":
        data["issuer"] = "https://idp.acme.test"
    page = manager_client.post(NEW, data=data).get_data(as_text=True)
    [message] = errors_beside(page, field)
    assert message.startswith(f"The {label} points to ")
    assert message.endswith(POLICY_HINT)
    assert _systems() == 0


def test_browser_only_links_may_name_an_intranet_page(manager_client, form_data, production):
    """The Alternate Logout and Profile Edit URLs are links members follow; Portal never
    fetches them, so an intranet address is accepted there."""
    data = {
        **form_data,
        "logout_url": "https://10.0.0.5/logout?return=%ReturnToURL%",
        "profile_edit_url": "https://10.0.0.5/profile",
    }
    assert manager_client.post(NEW, data=data).status_code == 302
    assert _systems() == 1


def test_loopback_is_allowed_in_development(manager_client, form_data):
    """Outside production a provider on this machine can be configured (development)."""
    data = {**form_data, "token_url": "http://127.0.0.1:8080/token"}
    assert manager_client.post(NEW, data=data).status_code == 302


def test_an_allowed_private_network_is_accepted(manager_client, form_data, production):
    """PORTAL_ALLOWED_PRIVATE_NETWORKS=10.0.0.0/8 lets an on-premises provider be saved,
    and only that network."""
    production.config["PORTAL_ALLOWED_PRIVATE_NETWORKS"] = (ipaddress.ip_network("10.0.0.0/8"),)
    refused = manager_client.post(
        NEW, data={**form_data, "token_url": "https://192.168.1.20/token"}
    )
    assert errors_beside(refused.get_data(as_text=True), "token_url")
    accepted = manager_client.post(NEW, data={**form_data, "token_url": "https://10.0.0.5/token"})
    assert accepted.status_code == 302
    assert _systems() == 1


def test_an_import_is_held_to_the_same_policy(app, production, create_auth_system):
    """Import goes through the same validation: an internal token URL is refused."""
    from portal.services.transfer import ImportInvalid, export_auth_system, import_auth_system

    system = create_auth_system()
    doc = export_auth_system(system)
    doc["auth_system"]["name"] = "Copied"
    doc["auth_system"]["token_url"] = "https://169.254.169.254/token"
    with pytest.raises(ImportInvalid) as caught:
        import_auth_system(doc, client_secret="s")
    assert any(
        p.startswith("Token API URL: The Token API URL points to a link-local address")
        for p in caught.value.problems
    )
    assert _systems() == 1


def test_an_edit_is_held_to_the_policy(app, production, create_auth_system):
    """A saved system cannot be edited to an internal address either."""
    system = create_auth_system()
    data = {**auth_system_data(system), "profile_url": "https://10.1.2.3/me", "client_secret": "s"}
    errors = validate_auth_system_data(data, system=system)
    assert errors["profile_url"][0].startswith("The Profile API URL points to a private network")


# --- Import from issuer --------------------------------------------------------------------


@pytest.fixture
def idp():
    """A running loopback OpenID Connect provider."""
    from portal.devidp import OIDCProvider

    with OIDCProvider(client_id="acme-client", client_secret="x") as provider:
        yield provider


def test_import_from_an_internal_issuer_is_refused_without_fetching(
    manager_client, form_data, production, idp
):
    """In production an issuer on loopback is refused beside Issuer URL, before any request."""
    data = {**form_data, "issuer_url": idp.url, "import_issuer": "Import from issuer"}
    page = manager_client.post(NEW, data=data).get_data(as_text=True)
    assert errors_beside(page, "issuer_url") == [
        f"The Issuer URL points to a loopback address; {POLICY_HINT}"
    ]
    assert idp.requests.all() == [], "the discovery document was fetched"
    assert _systems() == 0


def test_a_discovered_endpoint_on_an_internal_address_is_refused(
    manager_client, form_data, production, idp, monkeypatch
):
    """An allowed issuer whose document points an endpoint at a metadata address is refused,
    and the form keeps what was typed."""
    import dataclasses

    from portal.services import presets

    production.config["PORTAL_ALLOWED_PRIVATE_NETWORKS"] = (ipaddress.ip_network("127.0.0.0/8"),)
    real = presets.discover_issuer

    def discover_with_a_metadata_userinfo(*args, **kwargs):
        found = real(*args, **kwargs)
        return dataclasses.replace(found, profile_url="https://169.254.169.254/latest/meta-data/")

    monkeypatch.setattr(presets, "discover_issuer", discover_with_a_metadata_userinfo)
    data = {**form_data, "issuer_url": idp.url, "import_issuer": "Import from issuer"}
    page = manager_client.post(NEW, data=data).get_data(as_text=True)
    assert errors_beside(page, "issuer_url") == [
        "The Profile API URL the discovery document gives points to a link-local address "
        f"(cloud metadata services live there); {POLICY_HINT}"
    ]
    assert "169.254.169.254" not in page.split('name="profile_url"')[1].split(">")[0]
