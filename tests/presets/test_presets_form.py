"""Every preset through the admin form's own validation (portal.services.auth_systems)."""

from __future__ import annotations

import pytest

from portal.presets import list_presets, marker_messages
from portal.services.auth_system_validation import param_error_key
from portal.services.auth_systems import (
    auth_system_data,
    create_auth_system,
    validate_auth_system_data,
)
from portal.sso.fields import TYPE_PERSONIFY

SUPPORTED = [p for p in list_presets() if p.supported]
IDS = [p.key for p in SUPPORTED]

#: What a manager types for each marker (a new marker in a preset needs a sample here).
SAMPLES: dict[str, str] = {
    "{authorization-endpoint}": "https://idp.example.com/oauth2/authorize",
    "{token-endpoint}": "https://idp.example.com/oauth2/token",
    "{userinfo-endpoint}": "https://idp.example.com/oauth2/userinfo",
    "{issuer}": "https://idp.example.com",
    "{jwks-uri}": "https://idp.example.com/oauth2/keys",
    "{your-okta-domain}": "example.okta.com",
    "{your-auth0-domain}": "example.us.auth0.com",
    "{tenant-id}": "6f1c2f4e-0000-4000-8000-1234567890ab",
    "{your-domain}": "example",
    "{your-site}": "members.example.org",
    "{your-novi-site}": "www.example.org",
    "{org-id}": "example",
    "{your-ym-site}": "members.example.org",
    "{ym-client-id}": "28051",
    "{your-imis-site}": "imis.example.org/iMIS",
    "{sso-login-page}": "SSO/Start",
    "{your-membes-site}": "members.example.org.au",
    "{member-details-path}": "v2/member/current",
    "{your-personify-sso-host}": "sso.example.org",
    "{your-personify-ims-host}": "ims.example.org",
    "{your-personify-data-host}": "api.example.org",
}

#: What a manager types beside a Personify SSO preset (Personify hands these out).
PERSONIFY_VENDOR = {
    "vendor_id": "7",
    "vendor_username": "portal-vendor",
    "vendor_password": "3f" * 32,
    "vendor_block": "A39321266122A223EB1B3A23669721B2",
    "data_services_username": "portal-data",
    "data_services_password": "data-secret",
}


def _form(preset, **extra) -> dict:
    data = {**preset.form_data(), "type": preset.type}
    if preset.type == TYPE_PERSONIFY:
        data.update(PERSONIFY_VENDOR)
    data.update(name=f"{preset.name} test", client_id="client-1", client_secret="s3cret", **extra)
    return data


def test_every_marker_has_a_sample_value():
    """The samples below cover every marker the presets use."""
    used = {marker for preset in SUPPORTED for marker in preset.markers()}
    assert used <= set(SAMPLES)


@pytest.mark.parametrize("preset", SUPPORTED, ids=IDS)
def test_a_completed_preset_validates_clean(app, preset):
    """With every marker replaced, a preset passes the form's validation unchanged."""
    data = _form(preset.with_markers_replaced(SAMPLES))
    assert validate_auth_system_data(data) == {}


@pytest.mark.parametrize("preset", SUPPORTED, ids=IDS)
def test_a_completed_preset_saves_and_reads_back(app, preset):
    """A completed preset is stored as given: what the form shows next time is the preset."""
    filled = preset.with_markers_replaced(SAMPLES)
    system = create_auth_system(_form(filled))
    data = auth_system_data(system)
    for field, value in filled.form_values().items():
        # An empty choice falls back to its default; the Access Token Path only for OAuth 2.0.
        defaults = {"token_method": "POST"}
        if preset.type != TYPE_PERSONIFY:
            defaults["access_token_path"] = "access_token"
        if isinstance(value, bool):  # a flag (Accept sign-ins started by the platform)
            assert data[field] is value, field
        else:
            assert data[field] == (value or defaults.get(field, "")), field
    assert data["params"] == filled.param_values()


@pytest.mark.parametrize("preset", [p for p in SUPPORTED if p.markers()], ids=lambda p: p.key)
def test_a_preset_with_markers_left_is_refused_naming_them(app, preset):
    """Each field still holding a {marker} is refused with "Replace {marker} with your value."."""
    errors = validate_auth_system_data(_form(preset))
    for field, value in preset.form.items():
        for message in marker_messages(value):
            assert message in errors.get(field, []), (field, message)
    for key, param in preset.params.items():
        for message in marker_messages(param.path):
            assert message in errors.get(param_error_key(key), []), (key, message)
