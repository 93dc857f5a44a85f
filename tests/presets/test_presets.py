"""The provider presets: data files, markers, and placeholders / paths the engine accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portal.presets import (
    ORDER,
    PRESETS_DIR,
    PresetError,
    _load,
    get_preset,
    list_presets,
    marker_messages,
    unfinished_markers,
)
from portal.sso.fields import PRESET_FIELDS, TEMPLATE_FIELDS, TYPE_OAUTH2, TYPE_PERSONIFY
from portal.sso.paths import validate_path
from portal.sso.placeholders import (
    find_placeholders,
    validate_header_lines,
    validate_template,
)
from portal.sso.profile_fields import FIELD_LABEL

SUPPORTED = [p for p in list_presets() if p.supported]
IDS = [p.key for p in SUPPORTED]
#: The OAuth 2.0 presets (Personify360 is a Personify SSO one).
OAUTH2 = [p for p in SUPPORTED if p.type == TYPE_OAUTH2]


def test_every_listed_provider_has_exactly_one_data_file():
    """The fourteen providers of issue 5 each have one JSON file, and nothing else is there."""
    files = sorted(path.stem for path in PRESETS_DIR.glob("*.json"))
    assert files == sorted(ORDER)
    assert [p.key for p in list_presets()] == list(ORDER)
    assert len({p.name for p in list_presets()}) == len(ORDER)


def test_get_preset_returns_the_preset_or_none():
    """get_preset finds a preset by key and answers None for an unknown key."""
    okta = get_preset("okta")
    assert okta is not None and okta.name == "Okta"
    assert get_preset("no-such-provider") is None


def test_personify360_is_a_personify_sso_preset_with_the_engine_s_profile_keys():
    """Personify360 sets the Type to Personify SSO, fills its addresses and reads the keys of
    the profile the Personify engine returns (customer number as User ID, roles as Groups)."""
    personify = get_preset("personify360")
    assert personify.supported and personify.type == TYPE_PERSONIFY
    assert [p.key for p in list_presets() if not p.supported] == []
    assert set(personify.form) == {
        "sso_login_url",
        "sso_web_service_url",
        "ims_web_service_url",
        "data_services_url",
    }
    paths = {key: param.path for key, param in personify.params.items()}
    assert paths["user_id"] == "CustomerIdentifier" and paths["groups"] == "Roles"
    assert {paths["username"], paths["email"], paths["first_name"], paths["last_name"]} == {
        "UserName",
        "Email",
        "FirstName",
        "LastName",
    }
    notes = " ".join(personify.notes)
    assert "loopback fake" in notes and "not against a live Personify service" in notes


@pytest.mark.parametrize("preset", OAUTH2, ids=[p.key for p in OAUTH2])
def test_templates_use_only_placeholders_their_field_offers(preset):
    """Every template of a preset passes the engine's placeholder check."""
    for field, value in preset.form.items():
        if field in TEMPLATE_FIELDS:
            assert validate_template(value, field) == [], (field, value)
    assert "State" in find_placeholders(preset.form["login_url"])


@pytest.mark.parametrize("preset", SUPPORTED, ids=IDS)
def test_headers_and_paths_are_well_formed(preset):
    """Header lists parse, and every path (token and profile) is valid JMESPath."""
    for field in ("token_headers", "profile_headers"):
        assert validate_header_lines(preset.form.get(field, "")) == []
    assert validate_path(preset.form.get("access_token_path") or "access_token") is None
    for key, param in preset.params.items():
        if param.path:
            assert validate_path(param.path) is None, (key, param.path)
    assert preset.params["user_id"].path
    assert preset.form.get("token_method", "POST") in ("POST", "GET")


@pytest.mark.parametrize("preset", SUPPORTED, ids=IDS)
def test_every_marker_is_explained_in_the_notes(preset):
    """A manager is told what each {marker} stands for."""
    notes = " ".join(preset.notes)
    for marker in preset.markers():
        assert marker in notes, marker


@pytest.mark.parametrize("preset", list_presets(), ids=[p.key for p in list_presets()])
def test_unverified_presets_say_so(preset):
    """A preset not fully checked against documentation tells the manager to verify it."""
    notes = " ".join(preset.notes)
    assert preset.documentation_url.startswith("https://")
    if preset.verification != "documented":
        assert "Verify with the provider" in notes or "Needs more than the form" in notes


def test_presets_never_turn_on_upgrade_by_default():
    """Binding existing accounts is a site decision: no preset enables it."""
    for preset in SUPPORTED:
        assert not any(p.can_upgrade for p in preset.params.values()), preset.key


def test_form_data_has_every_form_field_and_parameter():
    """form_data() gives the admin form a value for each field and each profile parameter."""
    data = get_preset("memberclicks").form_data()
    assert set(PRESET_FIELDS) <= set(data)
    assert list(data["params"]) == list(FIELD_LABEL)
    assert data["params"]["email"] == {
        "path": '"[Email | Primary]"',
        "can_upgrade": False,
        "must_supply": False,
    }
    assert data["params"]["groups"]["path"] == ""


def test_membes_takes_the_code_in_the_query_with_get():
    """Membes documents a GET token request carrying code and client_secret in the query."""
    membes = get_preset("membes")
    assert membes.form["token_method"] == "GET"
    assert "code=%Code%" in membes.form["token_url"]


def test_with_markers_replaced_fills_every_marker():
    """Replacing markers leaves none behind and keeps placeholders untouched."""
    okta = get_preset("okta")
    filled = okta.with_markers_replaced({"{your-okta-domain}": "example.okta.com"})
    assert filled.markers() == []
    assert filled.form["issuer"] == "https://example.okta.com/oauth2/default"
    assert "%State%" in filled.form["login_url"]
    assert okta.markers() == ["{your-okta-domain}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://{tenant}.example.com/{your-site}/x", ["{tenant}", "{your-site}"]),
        ("https://{org-id}.memberclicks.net/{org-id}", ["{org-id}"]),
        ("{your_domain}/{v1.2}", ["{your_domain}", "{v1.2}"]),
        ('{"GrantType": "Code", "Code": "%Code%"}', []),
        ("{a: b, c: d}", []),
        ("https://idp.example.com/authorize?state=%State%", []),
        ("{}", []),
        ("{1abc}", []),
        ("", []),
        (None, []),
    ],
)
def test_unfinished_markers_finds_brace_names_only(text, expected):
    """Markers are {name}; JSON bodies, JMESPath hashes and placeholders are not markers."""
    assert unfinished_markers(text) == expected


def test_marker_messages_tell_what_to_replace():
    """Each marker gives one message in the form's words."""
    assert marker_messages("https://{tenant}/{tenant}/{your-site}") == [
        "Replace {tenant} with your value.",
        "Replace {your-site} with your value.",
    ]


def _write(tmp_path: Path, key: str, **overrides) -> Path:
    data = json.loads((PRESETS_DIR / "google.json").read_text())
    data.update(key=key, **overrides)
    path = tmp_path / f"{key}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "overrides",
    [
        {"verification": "guessed"},
        {"notes": []},
        {"documentation_url": "http://example.com"},
        {"form": {"login_url": "x", "token_url": "y", "colour": "red"}},
        {"supported": False},
    ],
)
def test_a_malformed_data_file_is_refused(tmp_path, overrides):
    """Loading refuses unknown fields, a missing doc link or notes, and half-unsupported files."""
    with pytest.raises(PresetError):
        _load(_write(tmp_path, "broken", **overrides))


def test_the_file_name_must_match_the_key(tmp_path):
    """A data file's key is its file name, so get_preset(key) finds what the file says."""
    path = _write(tmp_path, "google-copy")
    path.rename(tmp_path / "other.json")
    with pytest.raises(PresetError):
        _load(tmp_path / "other.json")


def test_docs_list_every_preset_with_its_documentation_link():
    """docs/presets.md (quoted by the README) names each preset and links its documentation."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "presets.md").read_text()
    for preset in list_presets():
        assert f"| {preset.name} |" in text, preset.name
        assert preset.documentation_url in text, preset.key
        for marker in preset.markers():
            assert f"`{marker}`" in text, marker
