"""The form with Type *Personify SSO*: its own fields, write-only secrets, hex checks by label."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from portal.extensions import db
from portal.models import AuthSystem
from portal.services.auth_systems import get_system_by_slug, read_secret
from portal.services.secrets import decrypt_secret
from portal.services.sso_login import build_personify_config
from portal.sso.fields import PERSONIFY_FIELDS
from portal.sso.personify import PersonifyConfig
from tests.support.keys import TEST_KEY
from tests.support.pages import errors_beside
from tests.support.rows import events, raw_audit_rows

NEW = "/admin/auth-systems/new"
VENDOR_PASSWORD = "c0ffee11" * 8
VENDOR_BLOCK = "A39321266122A223EB1B3A23669721B2"
DATA_PASSWORD = 'Data-Pass-3Kq+/=&"end'
SECRETS = {
    "vendor_password": VENDOR_PASSWORD,
    "vendor_block": VENDOR_BLOCK,
    "data_services_password": DATA_PASSWORD,
}


def personify_form() -> dict[str, Any]:
    """A valid Add submission with Type Personify SSO and none of the OAuth 2.0 fields."""
    return {
        "type": "personify",
        "name": "Personify",
        "client_id": "",
        "login_url": "",
        "token_url": "",
        "access_token_path": "",
        "sso_login_url": "https://sso.example.org/SSO/Login.aspx",
        "vendor_id": "7",
        "vendor_username": "portal-vendor",
        "sso_web_service_url": "https://sso.example.org/SSO/webservice/service.asmx",
        "ims_web_service_url": "https://sso.example.org/IMS/IMService.asmx",
        "data_services_url": "https://api.example.org/PersonifyDataServices/PersonifyData.svc",
        "data_services_username": "portal-data",
        "login_label": "Sign in with Personify",
        "login_mode": "local_and_remote",
        "onboarding_team_id": "",
        "param_user_id_path": "CustomerIdentifier",
        "param_email_path": "Email",
        "param_groups_path": "Roles",
        **SECRETS,
    }


def page_of(response) -> str:
    return response.get_data(as_text=True)


def count_systems() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem)) or 0


@pytest.fixture
def saved(manager_client) -> AuthSystem:
    response = manager_client.post(NEW, data=personify_form(), follow_redirects=True)
    assert "Authentication system Personify added." in page_of(response)
    return get_system_by_slug("personify")


def test_type_offers_personify_sso_beside_oauth2(manager_client):
    """The Type select has both choices, and the Personify fields carry their labels."""
    page = page_of(manager_client.get(NEW))
    assert ">OAuth 2.0</option>" in page and ">Personify SSO</option>" in page
    for label in (
        "SSO Login URL",
        "Vendor ID",
        "Vendor Username",
        "Vendor Password",
        "Vendor Block",
        "SSO Web Service URL",
        "IMS Web Service URL",
        "Data Services URL",
        "Data Services Username",
        "Data Services Password",
    ):
        assert f">{label}</label>" in page, label


def test_a_personify_system_saves_without_any_oauth_field(saved):
    """Client ID, login and token URLs are not asked of a Personify system; its own are kept,
    and the three secrets are stored encrypted, each decrypting to what was typed."""
    assert saved.type == "personify"
    assert saved.sso_web_service_url.endswith("/service.asmx")
    for name, value in SECRETS.items():
        stored = getattr(saved, f"{name}_encrypted")
        assert stored and value not in stored
        assert decrypt_secret(stored) == value


def test_the_secrets_appear_on_no_admin_page_and_in_no_audit_row(manager_client, saved):
    """List, edit, edit with errors and the audit log never show a secret; the audit event
    of the creation says each secret changed, nothing more."""
    pages = [
        manager_client.get("/admin/auth-systems"),
        manager_client.get(f"/admin/auth-systems/{saved.id}/edit"),
        manager_client.post(
            f"/admin/auth-systems/{saved.id}/edit",
            data={**personify_form(), "sso_login_url": "nope"},
        ),
        manager_client.get("/admin/audit"),
    ]
    rows = raw_audit_rows()
    for response in pages:
        for value in SECRETS.values():
            assert value not in page_of(response)
    for value in SECRETS.values():
        assert value not in rows
    created = events("system.created")[-1]
    changed = {c["field"]: c for c in created.details["changes"]}
    for name in SECRETS:
        assert changed[name] == {"field": name, "label": changed[name]["label"], "changed": True}


def test_blank_secrets_on_edit_keep_the_stored_ones(manager_client, saved):
    """Saving the edit form with the three secrets blank keeps them (and changes the label)."""
    blank = {name: "" for name in SECRETS}
    response = manager_client.post(
        f"/admin/auth-systems/{saved.id}/edit",
        data={**personify_form(), **blank, "login_label": "Personify sign-in"},
    )
    assert response.status_code == 302, page_of(response)[:500]
    db.session.expire_all()
    system = get_system_by_slug("personify")
    assert system.login_label == "Personify sign-in"
    for name, value in SECRETS.items():
        assert read_secret(system, name) == value


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "vendor_password",
            "not hex at all",
            "Vendor Password must be the hexadecimal string Personify gave you (32 or 48 or 64 "
            "hex digits): the Vendor Password is not a hexadecimal string.",
        ),
        (
            "vendor_password",
            "00112233",
            "Vendor Password must be the hexadecimal string Personify gave you (32 or 48 or 64 "
            "hex digits): the Vendor Password is 4 bytes long, expected 16 or 24 or 32.",
        ),
        (
            "vendor_block",
            "00" * 15,
            "Vendor Block must be the hexadecimal string Personify gave you (32 hex digits): "
            "the Vendor Block is 15 bytes long, expected 16.",
        ),
        ("sso_login_url", "", "SSO Login URL is required."),
        ("vendor_id", "", "Vendor ID is required."),
        ("vendor_block", "", "Vendor Block is required."),
        ("ims_web_service_url", "ftp://x", "The IMS Web Service URL must be an absolute"),
        ("data_services_password", "", "Data Services Password is required."),
        ("sso_web_service_url", "https://10.0.0.5/service.asmx", "public addresses"),
    ],
)
def test_a_bad_personify_value_is_refused_beside_its_field(manager_client, field, value, message):
    """Each check names the field's label beside it, and nothing is saved."""
    response = manager_client.post(NEW, data={**personify_form(), field: value})
    page = page_of(response)
    assert response.status_code == 200 and "Nothing was saved" in page
    assert any(message in error for error in errors_beside(page, field)), errors_beside(page, field)
    assert count_systems() == 0
    for secret in SECRETS.values():
        if secret != value:
            assert secret not in page


def test_data_services_credentials_are_only_required_with_its_url(manager_client):
    """Without a Data Services URL, its username and password may stay empty."""
    data = {
        **personify_form(),
        "data_services_url": "",
        "data_services_username": "",
        "data_services_password": "",
    }
    response = manager_client.post(NEW, data=data)
    assert response.status_code == 302, page_of(response)[:500]


def test_moving_a_web_service_needs_the_vendor_password_again(manager_client, saved):
    """The stored Vendor Password goes in every SOAP call: another host needs it typed again."""
    data = {
        **personify_form(),
        "vendor_password": "",
        "vendor_block": "",
        "data_services_password": "",
        "ims_web_service_url": "https://elsewhere.example.net/IMS/IMService.asmx",
    }
    response = manager_client.post(f"/admin/auth-systems/{saved.id}/edit", data=data)
    page = page_of(response)
    assert response.status_code == 200
    (error,) = errors_beside(page, "vendor_password")
    assert error.startswith("Type the Vendor Password again: the IMS Web Service URL now goes to")
    db.session.expire_all()
    assert get_system_by_slug("personify").ims_web_service_url.startswith("https://sso.")
    # Typed again, the move is saved.
    response = manager_client.post(
        f"/admin/auth-systems/{saved.id}/edit", data={**data, "vendor_password": VENDOR_PASSWORD}
    )
    assert response.status_code == 302


def test_an_oauth2_system_ignores_the_personify_fields(manager_client, form_data):
    """An OAuth 2.0 system is not asked for the Personify fields, whatever they hold."""
    response = manager_client.post(NEW, data={**form_data, "vendor_password": "zz"})
    assert response.status_code == 302, page_of(response)[:500]


def test_rotate_secrets_re_encrypts_the_personify_secrets_too(app, runner, saved):
    """`flask rotate-secrets` moves the three Personify secrets to the newest key."""
    new_key = Fernet.generate_key().decode()
    app.config["PORTAL_ENCRYPTION_KEYS"] = [new_key, TEST_KEY]
    result = runner.invoke(args=["rotate-secrets"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 3 secret(s)" in result.output
    db.session.expire_all()
    system = get_system_by_slug("personify")
    for name, value in SECRETS.items():
        assert decrypt_secret(getattr(system, f"{name}_encrypted"), keys=[new_key]) == value


def test_every_personify_setting_is_one_entry_of_the_field_table():
    """The Personify fields of the table and PersonifyConfig name the same settings."""
    settings = {f.name for f in dataclasses.fields(PersonifyConfig)} - {"slug"}
    assert set(PERSONIFY_FIELDS) == settings


def test_a_saved_personify_system_reaches_the_engine_as_the_manager_typed_it(saved):
    """Each Personify setting, secrets decrypted, is what the form was given."""
    config = build_personify_config(saved)
    form = personify_form()
    for name in PERSONIFY_FIELDS:
        assert getattr(config, name) == form[name], name


def test_an_oauth2_system_never_stores_a_personify_secret(manager_client, form_data):
    """A Vendor Password posted with Type OAuth 2.0 (a hidden field) is neither checked nor kept."""
    response = manager_client.post(NEW, data={**form_data, "vendor_password": VENDOR_PASSWORD})
    assert response.status_code == 302
    system = get_system_by_slug("acme-sso")
    assert system.vendor_password_encrypted == ""
    assert "vendor_password" not in {
        c["field"] for c in events("system.created")[-1].details["changes"]
    }
