"""*Start from* on the Add page: every preset fills the form a manager sees."""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem
from portal.presets import get_preset, list_presets, marker_messages
from portal.sso.fields import DEFAULT_LOGIN_URL, DEFAULT_TOKEN_BODY, PRESET_FIELDS
from tests.presets.test_presets_form import SAMPLES
from tests.support.pages import as_post, errors_beside, form_values, parse_page

NEW = "/admin/auth-systems/new"
SUPPORTED = [p for p in list_presets() if p.supported]


def count_systems() -> int:
    """Return how many authentication systems are saved."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem)) or 0


def test_start_from_lists_every_preset_by_name_generic_first(manager_client):
    """The Add page lists all fourteen presets under "Start from", with "Use this preset"."""
    page = manager_client.get(NEW).get_data(as_text=True)
    control = parse_page(page).control_for("Start from")
    assert control["_tag"] == "select" and control["id"] == "preset"
    select = page.split('id="preset"')[1].split("</select>")[0]
    names = [html.unescape(n) for n in re.findall(r"<option [^>]*>([^<]+)</option>", select)]
    assert names == [p.name for p in list_presets()]
    assert names[0] == "Generic OpenID Connect" and "Personify360" in names
    assert '<button type="submit" class="button">Use this preset</button>' in page


@pytest.mark.parametrize("preset", SUPPORTED, ids=[p.key for p in SUPPORTED])
def test_each_preset_fills_the_add_form_with_its_values(manager_client, preset):
    """?preset=<key> shows the preset's URLs, headers, body, token path and profile paths."""
    page = manager_client.get(f"{NEW}?preset={preset.key}").get_data(as_text=True)
    shown = form_values(page)
    for name in PRESET_FIELDS:
        expected = preset.form_values()[name]
        if name == "access_token_path":
            expected = expected or "access_token"
        if name == "token_method":
            expected = expected or "POST"
        assert shown[name] == expected, name
    for key, values in preset.param_values().items():
        assert shown[f"param_{key}_path"] == values["path"], key
        for option in ("can_upgrade", "must_supply"):
            if f"param_{key}_{option}" in shown:
                assert shown[f"param_{key}_{option}"] is values[option], (key, option)
    assert f"Started from {html.escape(preset.name)}" in page
    assert f'href="{html.escape(preset.documentation_url)}"' in page
    for note in preset.notes:
        assert note in html.unescape(page)
    assert shown["client_secret"] == "" and shown["name"] == ""


@pytest.mark.parametrize("preset", [p for p in SUPPORTED if p.markers()], ids=lambda p: p.key)
def test_markers_to_replace_are_highlighted_beside_their_fields(manager_client, preset):
    """The page lists the {markers} to replace and names them beside each field holding one."""
    page = manager_client.get(f"{NEW}?preset={preset.key}").get_data(as_text=True)
    assert "Replace every part written <code>{like-this}</code> with your value" in page
    for marker in preset.markers():
        assert f"<code>{marker}</code>" in page
    for name, value in preset.form.items():
        hint = re.search(rf'<p class="marker-hint" id="{name}-marker">(.*?)</p>', page)
        for message in marker_messages(value):
            assert hint and message in hint.group(1), (name, message)


def test_google_needs_nothing_but_client_id_and_secret(manager_client):
    """A preset without markers shows no "replace" warning and no marker hints."""
    page = manager_client.get(f"{NEW}?preset=google").get_data(as_text=True)
    assert "Replace every part written" not in page
    assert "marker-hint" not in page


def test_personify360_starts_a_personify_sso_form(manager_client):
    """Personify360 starts the form with Type Personify SSO and its addresses to complete."""
    page = manager_client.get(f"{NEW}?preset=personify360").get_data(as_text=True)
    preset = get_preset("personify360")
    shown = form_values(page)
    assert shown["type"] == "personify"
    assert shown["sso_login_url"] == preset.form["sso_login_url"]
    assert shown["param_user_id_path"] == "CustomerIdentifier"
    assert shown["param_groups_path"] == "Roles"
    assert "cannot be configured here" not in page
    assert 'class="card auth-system-form"' in page


def test_an_unknown_preset_says_so_and_shows_the_defaults(manager_client):
    """An unknown key gives a clear message and the default form."""
    page = manager_client.get(f"{NEW}?preset=no-such-idp").get_data(as_text=True)
    assert "There is no such preset; the form starts from the defaults." in page
    shown = form_values(page)
    assert shown["login_url"] == DEFAULT_LOGIN_URL
    assert shown["token_body"] == DEFAULT_TOKEN_BODY
    assert "Started from" not in page


def _preset_post(manager_client, key: str) -> dict[str, str]:
    data = as_post(form_values(manager_client.get(f"{NEW}?preset={key}").get_data(as_text=True)))
    data.pop("preset", None)
    data.update(name="Our Okta", client_id="client-1", client_secret="s3cret-value")
    return data


def test_saving_a_preset_with_markers_left_is_refused_beside_each_field(manager_client):
    """Save without replacing {your-okta-domain}: each field holding it says so; nothing saved."""
    data = _preset_post(manager_client, "okta")
    response = manager_client.post(f"{NEW}?preset=okta", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Nothing was saved" in page
    for field in ("login_url", "token_url", "profile_url", "issuer", "jwks_url", "logout_url"):
        assert errors_beside(page, field) == ["Replace {your-okta-domain} with your value."]
    assert count_systems() == 0
    # What the manager had is shown again, preset notes included.
    assert form_values(page)["name"] == "Our Okta" and "Started from Okta" in page


def test_a_preset_with_its_markers_replaced_saves(manager_client):
    """Replace the markers the page names, keep the rest of the preset: the system is saved."""
    data = _preset_post(manager_client, "okta")
    for name, value in list(data.items()):
        for marker, sample in SAMPLES.items():
            value = value.replace(marker, sample)
        data[name] = value
    response = manager_client.post(f"{NEW}?preset=okta", data=data)
    assert response.status_code == 302, errors_beside(response.get_data(as_text=True), "name")
    system = db.session.scalar(sa.select(AuthSystem))
    assert system.issuer == "https://example.okta.com/oauth2/default"
    assert system.token_headers == "Authorization: Basic %BasicAuth%"
    assert system.param("username").path == "preferred_username"
