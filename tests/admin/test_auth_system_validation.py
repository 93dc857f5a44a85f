"""Every rule of the authentication-system form: message beside the field, nothing saved."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem
from portal.services.auth_systems import validate_auth_system_data
from portal.sso.paths import validate_path
from tests.support.auth_system_form import secret_bound_fields
from tests.support.pages import errors_beside, parse_page

NEW = "/admin/auth-systems/new"


def count_systems() -> int:
    """Return how many authentication systems are saved."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem)) or 0


def submit(client, data: dict[str, Any], **changes: str) -> str:
    """Post the add form with some fields changed; return the page, which must not redirect."""
    response = client.post(NEW, data={**data, **changes})
    assert response.status_code == 200, "the form should have been refused"
    return response.get_data(as_text=True)


def assert_refused(client, data, field_id: str, message: str, **changes: str) -> str:
    """Assert the add form shows ``message`` beside ``field_id`` and saved nothing."""
    page = submit(client, data, **changes)
    assert message in " ".join(errors_beside(page, field_id)), errors_beside(page, field_id)
    assert "Nothing was saved" in page
    assert count_systems() == 0
    return page


def test_valid_form_is_saved(manager_client, form_data):
    """The baseline submission used by the tests below is accepted."""
    response = manager_client.post(NEW, data=form_data)
    assert response.status_code == 302
    assert count_systems() == 1


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("name", "Name is required."),
        ("client_id", "Client ID is required."),
        ("client_secret", "Client Secret is required."),
        ("login_url", "Identity Provider Login URL is required."),
        ("token_url", "Token API URL is required."),
        ("access_token_path", "Access Token Path is required."),
    ],
)
def test_required_field_left_blank_is_refused(manager_client, form_data, field, message):
    """A required field left blank is named beside it."""
    assert_refused(manager_client, form_data, field, message, **{field: "  "})


def test_user_id_path_is_required(manager_client, form_data):
    """The User ID row needs a path."""
    assert_refused(
        manager_client,
        form_data,
        "param_user_id_path",
        "User ID path is required.",
        param_user_id_path="",
    )


@pytest.mark.parametrize("mode", ["local_and_remote", "remote_only"])
def test_alternate_login_label_is_required_when_remote_login_is_offered(
    manager_client, form_data, mode
):
    """Without Local Login Only, the SSO link needs its Alternate Login Label."""
    assert_refused(
        manager_client,
        form_data,
        "login_label",
        "Alternate Login Label is required.",
        login_mode=mode,
        login_label="",
    )


def test_alternate_login_label_is_optional_with_local_login_only(manager_client, form_data):
    """With Local Login Only, the label may stay blank."""
    response = manager_client.post(
        NEW, data={**form_data, "login_mode": "local_only", "login_label": ""}
    )
    assert response.status_code == 302
    assert count_systems() == 1


@pytest.mark.parametrize(
    "field",
    [
        "login_url",
        "token_url",
        "profile_url",
        "logout_url",
        "profile_edit_url",
        "jwks_url",
        "issuer",
    ],
)
def test_url_must_be_absolute(manager_client, form_data, field):
    """A relative address is refused in every URL field."""
    value = "/path?state=%State%" if field == "login_url" else "idp.example.com/path"
    extra = {"issuer": "https://idp.acme.test"} if field == "jwks_url" else {}
    assert_refused(
        manager_client,
        form_data,
        field,
        "must be an absolute http:// or https:// address.",
        **extra,
        **{field: value},
    )


def test_url_with_another_scheme_is_refused(manager_client, form_data):
    """Only http(s) addresses are accepted."""
    assert_refused(
        manager_client,
        form_data,
        "token_url",
        "The Token API URL must be an absolute http:// or https:// address.",
        token_url="ftp://idp.acme.test/token",
    )


def test_plain_http_is_refused_for_a_remote_host(manager_client, form_data):
    """http:// to a host other than localhost is refused."""
    assert_refused(
        manager_client,
        form_data,
        "token_url",
        "The Token API URL must use https:// (plain http:// is only allowed for localhost",
        token_url="http://idp.acme.test/token",
    )


@pytest.mark.parametrize("host", ["localhost:8080", "127.0.0.1:5001"])
def test_plain_http_is_accepted_for_localhost(manager_client, form_data, host):
    """http:// is fine for a provider on this machine."""
    response = manager_client.post(NEW, data={**form_data, "token_url": f"http://{host}/token"})
    assert response.status_code == 302
    assert count_systems() == 1


def test_plain_http_is_accepted_when_insecure_http_is_allowed(app, manager_client, form_data):
    """PORTAL_ALLOW_INSECURE_HTTP lets a test provider use http:// anywhere."""
    app.config["PORTAL_ALLOW_INSECURE_HTTP"] = True
    response = manager_client.post(
        NEW, data={**form_data, "token_url": "http://idp.acme.test/token"}
    )
    assert response.status_code == 302
    assert count_systems() == 1


def test_login_url_must_contain_state(manager_client, form_data):
    """The Identity Provider Login URL without %State% is refused."""
    assert_refused(
        manager_client,
        form_data,
        "login_url",
        "The Identity Provider Login URL must contain %State%.",
        login_url="https://idp.acme.test/authorize?client_id=%ClientID%",
    )


def test_unknown_placeholder_is_refused_by_name(manager_client, form_data):
    """A placeholder that does not exist is named."""
    assert_refused(
        manager_client,
        form_data,
        "token_body",
        "Unknown placeholder %ClientSecert% in the Token API Post Body.",
        token_body="client_secret=%ClientSecert%",
    )


def test_code_in_login_url_is_refused(manager_client, form_data):
    """%Code% is not offered in the Identity Provider Login URL."""
    assert_refused(
        manager_client,
        form_data,
        "login_url",
        "%Code% is not available in the Identity Provider Login URL.",
        login_url="https://idp.acme.test/authorize?state=%State%&code=%Code%",
    )


def test_token_in_token_body_is_refused(manager_client, form_data):
    """%Token% is not offered in the Token API Post Body."""
    assert_refused(
        manager_client,
        form_data,
        "token_body",
        "%Token% is not available in the Token API Post Body.",
        token_body="code=%Code%&token=%Token%",
    )


def test_placeholder_not_offered_in_a_header_is_refused(manager_client, form_data):
    """%ClientSecret% is not offered in the Profile API Headers."""
    assert_refused(
        manager_client,
        form_data,
        "profile_headers",
        "%ClientSecret% is not available in the Profile API Headers.",
        profile_headers="X-Secret: %ClientSecret%",
    )


def test_url_template_is_checked_after_placeholders_are_substituted(manager_client, form_data):
    """A template that is a URL once its placeholders hold values is accepted."""
    response = manager_client.post(
        NEW, data={**form_data, "login_url": "https://idp/authorize?state=%State%"}
    )
    assert response.status_code == 302
    assert count_systems() == 1


def test_template_made_only_of_a_placeholder_is_not_a_url(manager_client, form_data):
    """A placeholder cannot stand in for the scheme and host."""
    assert_refused(
        manager_client,
        form_data,
        "logout_url",
        "The Alternate Logout URL must be an absolute http:// or https:// address.",
        logout_url="%ReturnToURL%",
    )


def test_an_unfinished_marker_is_refused_beside_its_field(manager_client, form_data):
    """A `{tenant}` marker still to be filled in is named beside the field; nothing is saved."""
    page = assert_refused(
        manager_client,
        form_data,
        "token_url",
        "Replace {tenant} with your value.",
        token_url="https://login.example.com/{tenant}/oauth2/token",
    )
    # Only the marker message: the address check waits until the marker is replaced.
    assert errors_beside(page, "token_url") == ["Replace {tenant} with your value."]


def test_an_unfinished_marker_in_a_profile_path_is_refused_beside_its_row(
    manager_client, form_data
):
    """A profile path still holding `{member-id-path}` is refused beside its row, not parsed."""
    assert_refused(
        manager_client,
        form_data,
        "param_user_id_path",
        "Replace {member-id-path} with your value.",
        param_user_id_path="{member-id-path}",
    )


def test_json_bodies_and_jmespath_hashes_are_not_taken_for_markers(manager_client, form_data):
    """A JSON Token API Post Body and a `{a: b}` multiselect hash path save as typed."""
    body = '{"grant_type": "authorization_code", "code": "%Code%", "extra": {"k": 1}}'
    response = manager_client.post(
        NEW,
        data={
            **form_data,
            "token_headers": "Content-Type: application/json",
            "token_body": body,
            "access_token_path": "{token: access_token}.token",
            "param_groups_path": "{names: groups[].name}.names",
        },
    )
    assert response.status_code == 302, errors_beside(response.get_data(as_text=True), "name")
    system = db.session.scalar(sa.select(AuthSystem))
    assert system.token_body == body
    assert system.param("groups").path == "{names: groups[].name}.names"


def test_braces_in_the_name_label_or_secret_are_not_markers(manager_client, form_data):
    """Only the fields presets fill are checked: a Name or label with braces still saves."""
    response = manager_client.post(
        NEW,
        data={
            **form_data,
            "name": "Acme {staff}",
            "login_label": "Sign in {Acme}",
            "client_secret": "s{ecret}",
        },
    )
    assert response.status_code == 302


def test_invalid_profile_path_shows_the_parser_message(manager_client, form_data):
    """A JMESPath syntax error is shown beside its row with the parser's own words."""
    parser_message = validate_path("emails[?primary")
    assert parser_message
    assert_refused(
        manager_client,
        form_data,
        "param_email_path",
        f"Email Address: not a valid path: {parser_message}",
        param_email_path="emails[?primary",
    )


def test_invalid_access_token_path_shows_the_parser_message(manager_client, form_data):
    """The Access Token Path is JMESPath too."""
    parser_message = validate_path("data.[")
    assert_refused(
        manager_client,
        form_data,
        "access_token_path",
        f"Not a valid path: {parser_message}",
        access_token_path="data.[",
    )


@pytest.mark.parametrize("field", ["token_headers", "profile_headers"])
def test_header_line_without_colon_is_refused(manager_client, form_data, field):
    """Each header line must be `Name: value`."""
    assert_refused(
        manager_client,
        form_data,
        field,
        'Line 2 is not of the form "Name: value".',
        **{field: "Accept: application/json\nBearer abc"},
    )


def test_header_with_an_invalid_name_is_refused(manager_client, form_data):
    """A header name must be a valid HTTP token."""
    assert_refused(
        manager_client,
        form_data,
        "token_headers",
        'Line 1: "Bad Name" is not a valid header name.',
        token_headers="Bad Name: x",
    )


def test_name_must_be_unique_ignoring_case(manager_client, form_data, create_auth_system):
    """A second system named like an existing one, in any case, is refused."""
    create_auth_system("Acme SSO")
    page = submit(manager_client, form_data, name="ACME sso")
    assert "An authentication system named Acme SSO already exists." in errors_beside(page, "name")
    assert count_systems() == 1


def test_name_slug_must_be_unique(manager_client, form_data, create_auth_system):
    """A Name whose Redirect URL identifier is already used is refused."""
    create_auth_system("Acme SSO")
    page = submit(manager_client, form_data, name="Acme-SSO!")
    assert 'This Name gives the Redirect URL identifier "acme-sso", already used by Acme SSO' in (
        " ".join(errors_beside(page, "name"))
    )
    assert count_systems() == 1


def test_name_must_give_a_non_empty_slug(manager_client, form_data):
    """A Name without letters or digits cannot make a Redirect URL."""
    assert_refused(
        manager_client,
        form_data,
        "name",
        "Name needs at least one letter or digit (it makes the Redirect URL).",
        name="!!!",
    )


def test_jwks_url_needs_an_issuer(manager_client, form_data):
    """The JWKS URL alone cannot validate ID tokens; the Issuer is asked for."""
    assert_refused(
        manager_client,
        form_data,
        "issuer",
        "Issuer is required with a JWKS URL",
        jwks_url="https://idp.acme.test/jwks.json",
    )


def test_too_long_name_is_refused(manager_client, form_data):
    """A Name longer than the column is refused, not cut."""
    assert_refused(
        manager_client, form_data, "name", "Name must be at most 120 characters.", name="A" * 121
    )


def test_unknown_onboarding_team_is_refused(manager_client, form_data):
    """An Onboarding Team that is not offered is refused."""
    page = submit(manager_client, form_data, onboarding_team_id="999")
    assert errors_beside(page, "onboarding_team_id")
    assert count_systems() == 0


def test_refused_form_keeps_what_was_typed_except_the_secret(manager_client, form_data):
    """After an error the typed values come back; the Client Secret does not."""
    page = submit(manager_client, form_data, client_id="", param_groups_path="roles[*].name")
    parser = parse_page(page)
    assert parser.control_for("Name")["value"] == "Acme SSO"
    assert parser.control_for("Groups")["value"] == "roles[*].name"
    assert "checked" in parser.control_for("User can upgrade from this field (Email Address)")
    assert parser.control_for("Client Secret")["value"] == ""
    assert "Authorization: Bearer %Token%" in page


def test_edit_with_an_error_saves_nothing(manager_client, form_data, create_auth_system):
    """A refused edit leaves the stored configuration as it was."""
    system = create_auth_system("Acme SSO", token_url="https://idp.acme.test/token")
    form_data.update(name="Acme SSO", token_url="https://idp.acme.test/new-token", login_url="x")
    response = manager_client.post(f"/admin/auth-systems/{system.id}/edit", data=form_data)
    assert response.status_code == 200
    assert errors_beside(response.get_data(as_text=True), "login_url")
    db.session.expire_all()
    assert db.session.get(AuthSystem, system.id).token_url == "https://idp.acme.test/token"


def test_edit_may_keep_its_own_name(manager_client, form_data, create_auth_system):
    """Saving a system under its own Name is not a duplicate."""
    system = create_auth_system("Acme SSO", **secret_bound_fields(form_data))
    form_data.update(name="ACME SSO", client_secret="")
    response = manager_client.post(f"/admin/auth-systems/{system.id}/edit", data=form_data)
    assert response.status_code == 302


def test_service_reports_every_problem_by_field(app):
    """validate_auth_system_data returns messages keyed by field, for the JSON import too."""
    errors = validate_auth_system_data(
        {"name": "", "login_url": "https://idp/x", "params": {"email": {"path": "a["}}}
    )
    assert errors["name"] == ["Name is required."]
    assert errors["client_secret"] == ["Client Secret is required."]
    assert errors["login_url"] == ["The Identity Provider Login URL must contain %State%."]
    assert errors["params.user_id"] == ["User ID path is required."]
    assert errors["params.email"][0].startswith("Email Address: not a valid path:")


def test_malformed_address_is_refused_not_an_error_page(manager_client, form_data):
    """An address the URL parser cannot read is a validation message, not a crash."""
    assert_refused(
        manager_client,
        form_data,
        "token_url",
        "The Token API URL must be an absolute http:// or https:// address.",
        token_url="https://[::1/token",
    )


def test_address_with_a_space_is_refused(manager_client, form_data):
    """Spaces inside an address are refused."""
    assert_refused(
        manager_client,
        form_data,
        "profile_url",
        "The Profile API URL must not contain spaces or line breaks.",
        profile_url="https://idp.acme.test/user info",
    )
