"""Export and import of a Personify SSO system: its settings travel, its three secrets never
travel in clear (only encrypted with the site's keys, when asked for)."""

from __future__ import annotations

import json

import pytest

from portal.services.auth_systems import (
    create_auth_system,
    delete_auth_system,
    read_secret,
    stored_secrets,
)
from portal.services.transfer import (
    dump_export,
    export_auth_system,
    import_auth_system,
    needs_client_secret,
    parse_export,
)
from portal.services.transfer_document import ImportInvalid

VENDOR_PASSWORD = "ab" * 32
VENDOR_BLOCK = "0123456789abcdef0123456789ABCDEF"
DATA_PASSWORD = 'Data-Secret-9+/=&"end'
SECRETS = {
    "vendor_password": VENDOR_PASSWORD,
    "vendor_block": VENDOR_BLOCK,
    "data_services_password": DATA_PASSWORD,
}


def personify_data() -> dict:
    return {
        "type": "personify",
        "name": "Personify",
        "sso_login_url": "https://sso.example.org/SSO/Login.aspx",
        "vendor_id": "7",
        "vendor_username": "portal-vendor",
        "sso_web_service_url": "https://sso.example.org/SSO/webservice/service.asmx",
        "ims_web_service_url": "https://sso.example.org/IMS/IMService.asmx",
        "data_services_url": "https://api.example.org/PersonifyDataServices/PersonifyData.svc",
        "data_services_username": "portal-data",
        "login_label": "Sign in with Personify",
        "login_mode": "local_and_remote",
        "params": {
            "user_id": {"path": "CustomerIdentifier"},
            "email": {"path": "Email"},
            "groups": {"path": "Roles"},
        },
        **SECRETS,
    }


@pytest.fixture
def personify_system(app):
    return create_auth_system(personify_data())


def test_the_export_holds_the_settings_and_no_secret_in_any_form(personify_system):
    """The download names every Personify setting and none of the three secrets."""
    doc = export_auth_system(personify_system)
    text = dump_export(doc)
    system = doc["auth_system"]
    assert system["type"] == "personify"
    assert system["sso_web_service_url"].endswith("/service.asmx")
    assert system["vendor_username"] == "portal-vendor"
    for name, value in SECRETS.items():
        assert value not in text, f"{name} is in the export"
        assert getattr(personify_system, f"{name}_encrypted") not in text
        assert name not in system and f"{name}_encrypted" not in system


def test_include_secret_round_trip_restores_every_secret(personify_system):
    """Exported with the secrets encrypted, deleted and imported: the same file, secrets intact."""
    plain = dump_export(export_auth_system(personify_system))
    text = dump_export(export_auth_system(personify_system, include_secret=True))
    for value in SECRETS.values():
        assert value not in text
    carried = {k for k in json.loads(text)["auth_system"] if k.endswith("_encrypted")}
    assert carried == {f"{name}_encrypted" for name in SECRETS}
    delete_auth_system(personify_system)
    doc = parse_export(text)
    assert not needs_client_secret(doc), "a Personify system has no Client Secret to ask for"

    system = import_auth_system(doc)

    assert dump_export(export_auth_system(system)) == plain
    assert stored_secrets(system) == set(SECRETS)
    for name, value in SECRETS.items():
        assert read_secret(system, name) == value


def test_a_new_import_without_the_secrets_names_them_and_writes_nothing(personify_system):
    """Without the encrypted secrets, a new Personify system is refused, naming each one."""
    text = dump_export(export_auth_system(personify_system))
    delete_auth_system(personify_system)
    with pytest.raises(ImportInvalid) as caught:
        import_auth_system(parse_export(text))
    problems = caught.value.problems
    assert "Vendor Password: Vendor Password is required." in problems
    assert "Vendor Block: Vendor Block is required." in problems
    assert "Data Services Password: Data Services Password is required." in problems


def test_a_replace_without_the_secrets_keeps_the_stored_ones(personify_system):
    """Importing over the same system without secrets keeps the stored three."""
    text = dump_export(export_auth_system(personify_system))
    system = import_auth_system(parse_export(text), replace=True)
    for name, value in SECRETS.items():
        assert read_secret(system, name) == value


def test_a_plaintext_secret_in_the_file_is_refused_without_echoing_it(personify_system):
    """A hand-edited file with vendor_password in clear is refused; the value is not quoted."""
    doc = export_auth_system(personify_system)
    doc["auth_system"]["vendor_password"] = VENDOR_PASSWORD
    with pytest.raises(ImportInvalid) as caught:
        import_auth_system(doc, replace=True)
    text = " ".join(caught.value.problems)
    assert "Vendor Password: a plaintext vendor_password is not accepted in a file" in text
    assert VENDOR_PASSWORD not in text
