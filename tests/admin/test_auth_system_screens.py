"""The User Authentication screen: list, add, edit, enable/disable, delete."""

from __future__ import annotations

import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem, Identity, User
from portal.services.auth_systems import get_system_by_slug, read_client_secret
from portal.sso.fields import DEFAULT_TOKEN_BODY, LABELS, TEMPLATE_FIELDS
from portal.sso.placeholders import PLACEHOLDERS
from portal.sso.profile_fields import FIELD_OPTIONS, PARAM_OPTIONS, PROFILE_FIELDS
from tests.support.auth_system_form import SECRET, secret_bound_fields
from tests.support.pages import parse_page


def count_systems() -> int:
    """Return how many authentication systems are saved."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem)) or 0


def test_list_shows_each_system_with_type_state_mode_and_redirect_url(
    manager_client, create_auth_system
):
    """The list names each system with its type, enabled state, login mode and Redirect URL."""
    create_auth_system("Acme SSO", login_mode="remote_only", enabled=True)
    create_auth_system("Beta IdP", enabled=False)
    page = manager_client.get("/admin/auth-systems").get_data(as_text=True)
    assert "Add a New Authentication System" in page
    assert "Acme SSO" in page and "Beta IdP" in page
    assert "OAuth 2.0" in page
    assert "Remote Login Only" in page and "Local Login Only" in page
    assert "http://localhost/sso/acme-sso/callback" in page
    assert "http://localhost/sso/beta-idp/callback" in page
    assert ">Yes<" in page and ">No<" in page


def test_list_links_to_the_add_form(manager_client):
    """The list offers "Add a New Authentication System", which opens the empty form."""
    page = manager_client.get("/admin/auth-systems").get_data(as_text=True)
    assert 'href="/admin/auth-systems/new">Add a New Authentication System</a>' in page
    response = manager_client.get("/admin/auth-systems/new")
    assert "<h1>Add a New Authentication System</h1>" in response.get_data(as_text=True)


def test_new_form_is_prefilled_with_defaults(manager_client):
    """A new system starts from the documented defaults."""
    parser = parse_page(manager_client.get("/admin/auth-systems/new").get_data(as_text=True))
    page = manager_client.get("/admin/auth-systems/new").get_data(as_text=True)
    assert "grant_type=authorization_code&amp;code=%Code%&amp;redirect_uri=%RedirectURL%" in page
    assert DEFAULT_TOKEN_BODY.replace("&", "&amp;") in page
    assert parser.control_for("Access Token Path")["value"] == "access_token"
    assert parser.control_for("User ID")["value"] == "sub"
    assert parser.control_for("Email Address")["value"] == "email"
    assert parser.control_for("First Name")["value"] == "given_name"
    assert parser.control_for("Last Name")["value"] == "family_name"
    assert "%State%" in parser.control_for("Identity Provider Login URL")["value"]
    assert '<option selected value="local_only">Local Login Only</option>' in page
    assert '<option selected value="POST">POST</option>' in page
    assert '<option selected value="">None</option>' in page
    assert "checked" not in str(parser.control_for("Enabled"))


def test_every_field_has_a_visible_label_pointing_at_its_control(manager_client, create_team):
    """Each DESIGN.md label is a <label for> whose id exists, exactly once."""
    create_team("Staff")
    parser = parse_page(manager_client.get("/admin/auth-systems/new").get_data(as_text=True))
    for label in [*LABELS.values(), "Redirect URL", *(label for _, label in PROFILE_FIELDS)]:
        control = parser.control_for(label)
        assert control["_tag"] in ("input", "select", "textarea"), label
    assert parser.control_for("Client Secret")["type"] == "password"
    assert "readonly" in parser.control_for("Redirect URL")
    assert parser.control_for("Token API Method")["_tag"] == "select"
    assert parser.control_for("Type")["_tag"] == "select"
    for label in parser.labels:
        assert label["for"] in parser.ids, f"label {label['text']!r} points at nothing"


def test_each_profile_row_has_its_own_labelled_options(manager_client):
    """Each row carries the options it offers, each labelled and inside the row's group."""
    parser = parse_page(manager_client.get("/admin/auth-systems/new").get_data(as_text=True))
    labels = parser.label_texts()
    for key, row_label in PROFILE_FIELDS:
        for option, option_label in PARAM_OPTIONS.items():
            text = f"{option_label} ({row_label})"
            if option in FIELD_OPTIONS[key]:
                control = parser.control_for(text)
                assert control["type"] == "checkbox"
                assert control["_groups"][-1] == row_label
            else:
                assert text not in labels
        path = parser.control_for(row_label)
        assert path["_groups"][-1] == row_label


def test_type_offers_oauth_2(manager_client):
    """Type is a select whose only option is OAuth 2.0."""
    page = manager_client.get("/admin/auth-systems/new").get_data(as_text=True)
    assert '<option selected value="oauth2">OAuth 2.0</option>' in page


def test_alternate_login_offers_the_three_modes(manager_client):
    """Alternate Login offers Local Login Only, Local and Remote Logins, Remote Login Only."""
    page = manager_client.get("/admin/auth-systems/new").get_data(as_text=True)
    for mode in ("Local Login Only", "Local and Remote Logins", "Remote Login Only"):
        assert f">{mode}</option>" in page


def test_onboarding_team_offers_teams_and_none(manager_client, create_team):
    """Onboarding Team lists None and every team."""
    team = create_team("Staff")
    page = manager_client.get("/admin/auth-systems/new").get_data(as_text=True)
    assert '<option selected value="">None</option>' in page
    assert f'<option value="{team.id}">Staff</option>' in page


def test_each_template_field_lists_the_placeholders_it_accepts(manager_client):
    """Beside each template field, the help names exactly the placeholders it offers."""
    parser = parse_page(manager_client.get("/admin/auth-systems/new").get_data(as_text=True))
    page = manager_client.get("/admin/auth-systems/new").get_data(as_text=True)
    for field, offered in TEMPLATE_FIELDS.items():
        assert field in parser.ids
        start = page.index(f'<p class="help" id="{field}-help">')
        help_text = page[start : page.index("</p>", start)]
        assert "Placeholders it accepts" in help_text
        for name in PLACEHOLDERS:
            assert (f"<code>%{name}%</code>" in help_text) == (name in offered), (field, name)


def test_issuer_and_jwks_url_explain_id_token_validation(manager_client):
    """The optional Issuer and JWKS URL say they turn on ID token validation."""
    page = manager_client.get("/admin/auth-systems/new").get_data(as_text=True)
    assert "turn on ID token validation" in page


def test_redirect_url_has_a_copy_button_and_live_update_script(manager_client, client):
    """The Redirect URL is read-only with a Copy button, kept in step with the Name by static JS."""
    page = manager_client.get("/admin/auth-systems/new").get_data(as_text=True)
    assert '<button type="button" data-copy-target="redirect_url">Copy</button>' in page
    assert 'data-redirect-pattern="http://localhost/sso/__SLUG__/callback"' in page
    assert '<script src="/static/auth_system_form.js">' in page
    script = client.get("/static/auth_system_form.js")
    assert script.status_code == 200
    assert b"data-redirect-pattern" in script.data
    assert "//cdn" not in page and "https://cdn" not in page


def test_redirect_url_is_computed_from_the_name_on_re_render(manager_client, form_data):
    """After a failed save, the Redirect URL shows the typed Name's slug."""
    form_data.update(name="Acme Corp Login", client_id="")
    page = manager_client.post("/admin/auth-systems/new", data=form_data).get_data(as_text=True)
    parser = parse_page(page)
    assert (
        parser.control_for("Redirect URL")["value"]
        == "http://localhost/sso/acme-corp-login/callback"
    )


def test_create_saves_every_field_and_flashes(manager_client, form_data, create_team):
    """A valid submission saves the system, its profile rows and options, then flashes."""
    team = create_team("Staff")
    form_data["onboarding_team_id"] = str(team.id)
    response = manager_client.post("/admin/auth-systems/new", data=form_data, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Authentication system Acme SSO added." in page
    system = get_system_by_slug("acme-sso")
    assert system is not None
    assert system.name == "Acme SSO" and system.name_key == "acme sso"
    assert system.client_id == "acme-client"
    assert read_client_secret(system) == SECRET
    assert system.token_headers == "Accept: application/json"
    assert system.profile_headers == "Authorization: Bearer %Token%"
    assert system.login_mode == "local_and_remote"
    assert system.onboarding_team_id == team.id
    assert system.enabled is True
    assert system.param("user_id").path == "sub"
    email = system.param("email")
    assert (email.path, email.can_upgrade, email.must_supply) == ("email", True, True)
    assert system.param("first_name").can_upgrade is False
    assert system.param("groups").path == "groups"
    assert {p.field for p in system.params} == {key for key, _ in PROFILE_FIELDS}


def test_edit_form_shows_saved_values(manager_client, create_auth_system):
    """The edit form is filled with the saved configuration."""
    system = create_auth_system(
        "Acme SSO",
        params={"user_id": {"path": "id"}, "email": {"path": "mail", "can_upgrade": True}},
    )
    page = manager_client.get(f"/admin/auth-systems/{system.id}/edit").get_data(as_text=True)
    parser = parse_page(page)
    assert parser.control_for("Name")["value"] == "Acme SSO"
    assert parser.control_for("User ID")["value"] == "id"
    assert parser.control_for("Email Address")["value"] == "mail"
    assert "checked" in parser.control_for("User can upgrade from this field (Email Address)")
    assert "checked" not in parser.control_for("Provider must supply this value (Email Address)")
    assert parser.control_for("Redirect URL")["value"] == "http://localhost/sso/acme-sso/callback"


def test_edit_saves_changes_and_flashes(manager_client, create_auth_system, form_data):
    """Editing replaces the configuration, including the slug, and flashes."""
    system = create_auth_system("Old Name", **secret_bound_fields(form_data))
    form_data.update(name="New Name", client_secret="", param_email_path="emails[0]")
    response = manager_client.post(
        f"/admin/auth-systems/{system.id}/edit", data=form_data, follow_redirects=True
    )
    assert "Authentication system New Name saved." in response.get_data(as_text=True)
    db.session.refresh(system)
    assert (system.name, system.slug) == ("New Name", "new-name")
    assert system.param("email").path == "emails[0]"
    assert system.login_label == "Sign in with Acme"


def test_edit_unchecking_an_option_clears_it(manager_client, create_auth_system, form_data):
    """An option left unchecked on edit is saved as off."""
    system = create_auth_system(params={"email": {"path": "email", "must_supply": True}})
    form_data.pop("param_email_must_supply")
    form_data["name"] = system.name
    manager_client.post(f"/admin/auth-systems/{system.id}/edit", data=form_data)
    db.session.refresh(system)
    assert system.param("email").must_supply is False


def test_unknown_system_is_404(manager_client):
    """Editing, toggling or deleting a system that does not exist gives the 404 page."""
    assert manager_client.get("/admin/auth-systems/999/edit").status_code == 404
    assert manager_client.post("/admin/auth-systems/999/enable").status_code == 404
    assert manager_client.get("/admin/auth-systems/999/delete").status_code == 404


def test_disable_and_enable_flip_the_system_and_flash(manager_client, create_auth_system):
    """Disable turns a system off and Enable turns it back on, each with a message."""
    system = create_auth_system("Acme SSO", enabled=True)
    page = manager_client.post(
        f"/admin/auth-systems/{system.id}/disable", follow_redirects=True
    ).get_data(as_text=True)
    assert "Authentication system Acme SSO disabled." in page
    db.session.refresh(system)
    assert system.enabled is False
    page = manager_client.post(
        f"/admin/auth-systems/{system.id}/enable", follow_redirects=True
    ).get_data(as_text=True)
    assert "Authentication system Acme SSO enabled." in page
    db.session.refresh(system)
    assert system.enabled is True


def test_enable_and_disable_are_not_reachable_by_get(manager_client, create_auth_system):
    """Enabling or disabling needs a POST; a GET changes nothing."""
    system = create_auth_system(enabled=False)
    assert manager_client.get(f"/admin/auth-systems/{system.id}/enable").status_code == 405
    db.session.refresh(system)
    assert system.enabled is False


def test_delete_asks_for_confirmation_naming_the_system_and_its_bindings(
    manager_client, create_auth_system, create_user
):
    """The confirm page names the system, says member bindings are removed, and deletes nothing."""
    system = create_auth_system("Acme SSO")
    user = create_user()
    db.session.add(Identity(user_id=user.id, auth_system_id=system.id, subject="abc"))
    db.session.commit()
    page = manager_client.get(f"/admin/auth-systems/{system.id}/delete").get_data(as_text=True)
    assert "Delete the authentication system Acme SSO?" in page
    assert "member bindings" in page and "1 member bound to it" in page
    assert 'method="post"' in page
    assert count_systems() == 1


def test_confirmed_delete_removes_the_system_and_bindings_but_keeps_users(
    manager_client, create_auth_system, create_user
):
    """Deleting removes the system, its profile rows and bindings; the member account stays."""
    system = create_auth_system("Acme SSO")
    user = create_user()
    db.session.add(Identity(user_id=user.id, auth_system_id=system.id, subject="abc"))
    db.session.commit()
    response = manager_client.post(f"/admin/auth-systems/{system.id}/delete", follow_redirects=True)
    assert "Authentication system Acme SSO deleted." in response.get_data(as_text=True)
    db.session.expire_all()
    assert count_systems() == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Identity)) == 0
    assert db.session.get(User, user.id) is not None


def test_delete_requires_csrf_token(app, client, auth, manager, create_auth_system):
    """With CSRF on, a delete POST without the token is refused and nothing is deleted."""
    system = create_auth_system()
    auth.login_manager()
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post(f"/admin/auth-systems/{system.id}/delete")
    assert response.status_code == 400
    assert count_systems() == 1
    page = client.get(f"/admin/auth-systems/{system.id}/delete").get_data(as_text=True)
    assert 'name="csrf_token"' in page


def test_service_creates_a_system_from_plain_data(app):
    """create_auth_system takes plain data (as a JSON import would), defaults filling the rest."""
    from portal.services.auth_systems import create_auth_system

    system = create_auth_system(
        {
            "name": "Imported",
            "client_id": "cid",
            "client_secret": "sec",
            "login_url": "https://idp.example.com/auth?state=%State%",
            "token_url": "https://idp.example.com/token",
        }
    )
    assert system.slug == "imported"
    assert system.access_token_path == "access_token"
    assert system.param("user_id").path == "sub"
    assert system.enabled is False
    assert read_client_secret(system) == "sec"
