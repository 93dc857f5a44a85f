"""Import from issuer: OpenID Connect discovery against a real loopback provider fills the form."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from portal.devidp import OIDCProvider
from portal.extensions import db
from portal.models import AuthSystem
from portal.services.auth_systems import read_client_secret
from tests.support.auth_system_form import SECRET, secret_in
from tests.support.pages import as_post, errors_beside, form_values

NEW = "/admin/auth-systems/new"
IMPORT = {"import_issuer": "Import from issuer"}


def count_systems() -> int:
    """Return how many authentication systems are saved."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem)) or 0


@pytest.fixture
def app_config(app_config):
    """Keep outbound HTTP short: a refused connection or a stuck provider fails fast."""
    return {**app_config, "PORTAL_HTTP_CONNECT_TIMEOUT": 1.0, "PORTAL_HTTP_READ_TIMEOUT": 1.0}


@pytest.fixture
def idp() -> Iterator[OIDCProvider]:
    """A running loopback OpenID Connect provider on 127.0.0.1."""
    with OIDCProvider(client_id="acme-client", client_secret=SECRET) as provider:
        yield provider


@pytest.fixture
def closed_port_url() -> str:
    """Return a loopback URL nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def import_issuer(client, url: str, data: dict, issuer_url: str):
    """Press Import from issuer on a form holding ``data``; return the page (never a redirect)."""
    response = client.post(url, data={**data, "issuer_url": issuer_url, **IMPORT})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_import_fills_the_five_fields_and_keeps_what_was_typed(manager_client, form_data, idp):
    """Login URL, Token API URL, Profile API URL, Issuer and JWKS URL come from discovery."""
    page = import_issuer(manager_client, NEW, form_data, idp.url)
    shown = form_values(page)
    assert shown["login_url"].startswith(f"{idp.authorize_url}?response_type=code")
    assert "state=%State%" in shown["login_url"] and "nonce=%Nonce%" in shown["login_url"]
    assert shown["token_url"] == idp.token_url
    assert shown["profile_url"] == idp.userinfo_url
    assert shown["issuer"] == idp.issuer
    assert shown["jwks_url"] == idp.jwks_url
    assert shown["profile_headers"] == "Authorization: Bearer %Token%"
    assert shown["logout_url"].startswith(idp.logout_url)
    # What the manager typed is kept, and the secret is not rendered back.
    assert shown["name"] == "Acme SSO" and shown["client_id"] == "acme-client"
    assert shown["login_label"] == "Sign in with Acme"
    assert shown["param_groups_path"] == "groups" and shown["param_email_can_upgrade"] is True
    assert shown["client_secret"] == "" and not secret_in(page)
    assert f"Filled from {idp.discovery_url}" in page and "nothing is saved" in page
    assert count_systems() == 0


def test_basic_client_authentication_goes_into_the_headers(manager_client, form_data, idp):
    """When the provider takes client_secret_basic, the secret moves into a Basic header."""
    shown = form_values(import_issuer(manager_client, NEW, form_data, idp.url))
    assert shown["token_headers"] == "Authorization: Basic %BasicAuth%"
    assert "%ClientSecret%" not in shown["token_body"]
    assert shown["token_body"].startswith("grant_type=authorization_code&code=%Code%")
    assert "code_verifier=%CodeVerifier%" in shown["token_body"]


def test_post_client_authentication_goes_into_the_body(manager_client, form_data, idp):
    """A provider that only takes client_secret_post gets the id and secret in the body."""
    idp.client.auth_methods = {"client_secret_post"}
    page = import_issuer(manager_client, NEW, form_data, idp.url)
    shown = form_values(page)
    assert shown["token_headers"] == ""
    assert "client_id=%ClientID%&client_secret=%ClientSecret%" in shown["token_body"]
    assert "client_secret_post" in page


def test_an_imported_form_saves_as_shown(manager_client, form_data, idp):
    """Import, then Save: the system holds the discovered values and the typed secret."""
    shown = form_values(import_issuer(manager_client, NEW, form_data, idp.url))
    response = manager_client.post(NEW, data={**as_post(shown), "client_secret": SECRET})
    assert response.status_code == 302, errors_beside(response.get_data(as_text=True), "name")
    system = db.session.scalar(sa.select(AuthSystem))
    assert system.issuer == idp.issuer and system.jwks_url == idp.jwks_url
    assert system.token_url == idp.token_url and system.profile_url == idp.userinfo_url
    assert read_client_secret(system) == SECRET


def test_a_preset_then_import_replaces_every_marker(manager_client, idp):
    """Start from Generic OpenID Connect, import: no {marker} is left to replace."""
    start = form_values(manager_client.get(f"{NEW}?preset=generic-oidc").get_data(as_text=True))
    assert "{token-endpoint}" in start["token_url"]
    page = import_issuer(manager_client, f"{NEW}?preset=generic-oidc", as_post(start), idp.url)
    assert "marker-hint" not in page
    assert form_values(page)["token_url"] == idp.token_url


def test_a_mismatched_issuer_is_refused_and_nothing_changes(manager_client, form_data):
    """A document naming another issuer is refused beside Issuer URL; the form is as typed."""
    with OIDCProvider(issuer="https://login.other.example") as other:
        page = import_issuer(manager_client, NEW, form_data, other.url)
    message = " ".join(errors_beside(page, "issuer_url"))
    assert f"belongs to issuer https://login.other.example, not to {other.url}" in message
    shown = form_values(page)
    for field in ("login_url", "token_url", "profile_url", "issuer", "jwks_url", "token_body"):
        assert shown[field] == form_data[field], field
    assert shown["issuer_url"] == other.url
    assert "Filled from" not in page
    assert count_systems() == 0


def test_an_unreachable_issuer_gives_a_clear_message_and_logs_no_secret(
    manager_client, form_data, closed_port_url, caplog
):
    """Nothing listening: the page says the provider could not be reached; nothing saved."""
    caplog.set_level(logging.INFO)
    page = import_issuer(manager_client, NEW, form_data, closed_port_url)
    message = " ".join(errors_beside(page, "issuer_url"))
    assert f"Could not read {closed_port_url}/.well-known/openid-configuration" in message
    assert "could not be reached" in message
    assert form_values(page)["token_url"] == form_data["token_url"]
    assert count_systems() == 0
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert "Import from issuer 127.0.0.1 failed: provider_unreachable" in logs
    assert not secret_in(logs)


def test_a_server_that_is_not_a_provider_is_refused(manager_client, form_data, idp):
    """A URL without a discovery document answers 404: the message says where it looked."""
    page = import_issuer(manager_client, NEW, form_data, f"{idp.url}/nothing-here")
    message = " ".join(errors_beside(page, "issuer_url"))
    assert "There is no OpenID Connect discovery document at" in message
    assert count_systems() == 0


@pytest.mark.parametrize(
    ("issuer_url", "message"),
    [
        ("", "Enter the provider's issuer URL"),
        (
            "https://{your-okta-domain}/oauth2/default",
            "Replace {your-okta-domain} with your value.",
        ),
        ("http://idp.example.com", "The issuer must be an absolute https:// URL"),
    ],
)
def test_an_unusable_issuer_url_is_refused_before_any_request(
    manager_client, form_data, idp, issuer_url, message
):
    """Blank, a preset's marker or plain http: a message beside Issuer URL, no request sent."""
    page = import_issuer(manager_client, NEW, form_data, issuer_url)
    assert message in " ".join(errors_beside(page, "issuer_url"))
    assert idp.requests.all("discovery") == []


def test_import_on_the_edit_form_fills_it_without_saving(
    manager_client, form_data, idp, create_auth_system
):
    """On Edit, Import from issuer fills the form; the stored system is unchanged until Save."""
    system = create_auth_system("Acme SSO")
    url = f"/admin/auth-systems/{system.id}/edit"
    shown = form_values(manager_client.get(url).get_data(as_text=True))
    page = import_issuer(manager_client, url, as_post(shown), idp.url)
    assert form_values(page)["token_url"] == idp.token_url
    db.session.expire_all()
    assert db.session.get(AuthSystem, system.id).token_url == "https://idp.example.com/token"
    # The token endpoint moved to another host: a blank secret is refused, and says why.
    refused = manager_client.post(url, data=as_post(form_values(page))).get_data(as_text=True)
    assert errors_beside(refused, "client_secret")[0].startswith("Type the Client Secret again")
    db.session.expire_all()
    assert db.session.get(AuthSystem, system.id).token_url == "https://idp.example.com/token"
    # Typed again, it saves the discovered values with the secret.
    response = manager_client.post(
        url, data={**as_post(form_values(page)), "client_secret": 's3cr3t+/=&"value'}
    )
    assert response.status_code == 302
    db.session.expire_all()
    saved = db.session.get(AuthSystem, system.id)
    assert saved.token_url == idp.token_url
    assert read_client_secret(saved) == 's3cr3t+/=&"value'


def test_the_labels_and_buttons_the_browser_test_uses(manager_client):
    """Issuer URL is a labelled text field and Import from issuer a button inside the form."""
    page = manager_client.get(NEW).get_data(as_text=True)
    assert '<label for="issuer_url">Issuer URL</label>' in page
    form = page.split('class="card auth-system-form"')[1].split("</form>")[0]
    assert 'name="import_issuer" type="submit" value="Import from issuer"' in form
    assert 'id="issuer_url" name="issuer_url" type="text"' in form


def test_endpoints_the_provider_lacks_keep_typed_values_and_clear_markers(
    manager_client, form_data, idp, monkeypatch
):
    """No end-session endpoint: a typed logout URL stays; a preset's {marker} there is cleared."""
    from portal.services import presets
    from portal.sso.discovery import discover_issuer

    def without_optional_endpoints(issuer_url, http, **kwargs):
        found = discover_issuer(issuer_url, http, **kwargs)
        return dataclasses.replace(found, logout_url="", profile_url="", profile_headers="")

    monkeypatch.setattr(presets, "discover_issuer", without_optional_endpoints)
    typed = {**form_data, "profile_url": "https://{your-site}/me"}
    shown = form_values(import_issuer(manager_client, NEW, typed, idp.url))
    assert shown["logout_url"] == form_data["logout_url"]
    assert shown["profile_url"] == ""
    assert shown["profile_headers"] == form_data["profile_headers"]
    assert shown["token_url"] == idp.token_url
