"""Admin views: authentication systems and teams."""

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.admin import bp
from portal.admin.forms import AuthSystemForm, ConfirmForm, TeamForm
from portal.admin.saving import flash_saved, saved
from portal.extensions import db
from portal.lookups import found_or_404
from portal.models import AuthSystem, Team
from portal.services.accounts import AccountError, create_team, delete_team, list_teams, rename_team
from portal.services.auth_systems import (
    AuthSystemInvalid,
    auth_system_data,
    count_auth_system_bindings,
    create_auth_system,
    delete_auth_system,
    get_auth_system,
    hidden_from_members,
    list_auth_systems,
    set_auth_system_enabled,
    slugify,
    update_auth_system,
)
from portal.services.presets import (
    IssuerImportFailed,
    PresetStart,
    import_from_issuer,
    preset_choices,
    start_from_preset,
)
from portal.sso.fields import TEMPLATE_FIELDS
from portal.sso.profile_fields import (
    FIELD_LABEL,
    PARAM_OPTIONS,
    SUPPLIED_BY_DEFAULT,
    UPGRADE_FIELDS,
)
from portal.urls import (
    backchannel_logout_url_for,
    initiate_url_for,
    redirect_url_for,
    webhook_url_for,
)


@bp.route("/")
def index():
    """Show the admin home."""
    return redirect(url_for("admin.auth_systems"))


@bp.route("/teams", methods=["GET", "POST"])
def teams():
    """List teams and create one."""
    form = TeamForm()
    if form.validate_on_submit():
        team = saved(form.name, AccountError, lambda: create_team(form.name.data or ""))
        if team:
            flash(f"Team {team.name} created.", "success")
            return redirect(url_for("admin.teams"))
    return render_template("admin/teams.html", form=form, teams=list_teams(), confirm=ConfirmForm())


@bp.route("/teams/<int:team_id>/edit", methods=["GET", "POST"])
def edit_team(team_id: int):
    """Rename a team."""
    team = found_or_404(db.session.get(Team, team_id))
    form = TeamForm(obj=team)
    if form.validate_on_submit():
        if saved(form.name, AccountError, lambda: rename_team(team, form.name.data or "")):
            flash(f"Team renamed to {team.name}.", "success")
            return redirect(url_for("admin.teams"))
    return render_template("admin/team_edit.html", form=form, team=team)


@bp.route("/teams/<int:team_id>/delete", methods=["POST"])
def remove_team(team_id: int):
    """Delete a team."""
    team = found_or_404(db.session.get(Team, team_id))
    if ConfirmForm().validate_on_submit():
        name = team.name
        delete_team(team)
        flash(f"Team {name} deleted.", "success")
    return redirect(url_for("admin.teams"))


@bp.route("/auth-systems")
def auth_systems():
    """List the authentication systems."""
    return render_template(
        "admin/auth_systems.html",
        systems=list_auth_systems(),
        confirm=ConfirmForm(),
        redirect_url_for=redirect_url_for,
        hidden_from_members=hidden_from_members,
    )


def _render_auth_system_form(
    form: AuthSystemForm,
    system: AuthSystem | None,
    start: PresetStart | None = None,
    imported: str = "",
):
    """Render the add/edit form with its Redirect URL, placeholder help and preset notes."""
    slug = slugify(form.name.data or "")
    form.mark_unfinished()
    return render_template(
        "admin/auth_system_form.html",
        form=form,
        system=system,
        redirect_url=redirect_url_for(slug) if slug else "",
        redirect_url_pattern=redirect_url_for("__SLUG__"),
        initiate_url=initiate_url_for(slug) if slug else "",
        initiate_url_pattern=initiate_url_for("__SLUG__"),
        backchannel_logout_url=backchannel_logout_url_for(slug) if slug else "",
        backchannel_logout_url_pattern=backchannel_logout_url_for("__SLUG__"),
        webhook_url=webhook_url_for(slug) if slug else "",
        webhook_url_pattern=webhook_url_for("__SLUG__"),
        placeholders={key: sorted(names) for key, names in TEMPLATE_FIELDS.items()},
        presets=preset_choices(),
        start=start,
        # An unsupported preset (not OAuth 2.0) shows its explanation instead of the form.
        show_form=start is None or start.fills_form or form.is_submitted(),
        imported=imported,
        confirm=ConfirmForm(),
        param_help=_PARAM_HELP,
    )


def _and_list(labels: list[str]) -> str:
    """Return labels as prose: "A", "A and B", "A, B and C"."""
    return " and ".join([", ".join(labels[:-1]), labels[-1]] if len(labels) > 1 else labels)


#: What the Profile parameters' help says of the two options, from the field table.
_PARAM_HELP = {
    **PARAM_OPTIONS,
    "upgrade_fields": _and_list([FIELD_LABEL[key] for key in UPGRADE_FIELDS]),
    "supplied_fields": _and_list([FIELD_LABEL[key] for key in SUPPLIED_BY_DEFAULT]),
}


def _import_issuer(form: AuthSystemForm) -> str:
    """Fill the form from the Issuer URL's discovery document; return the notice (no save)."""
    try:
        found = import_from_issuer(form.issuer_url.data or "", form.to_data())
    except IssuerImportFailed as exc:
        form.issuer_url.errors = [*form.issuer_url.errors, exc.message]
        return ""
    form.fill(found.values)
    return found.notice


@bp.route("/auth-systems/new", methods=["GET", "POST"])
def new_auth_system():
    """Add a New Authentication System, from the defaults or a preset (``?preset=<key>``)."""
    start = start_from_preset(request.args.get("preset"))
    form = AuthSystemForm(data=AuthSystemForm.form_data(start.data))
    form.set_team_choices(list_teams())
    if form.validate_on_submit():
        if form.import_issuer.data:
            return _render_auth_system_form(form, None, start, _import_issuer(form))
        try:
            system = create_auth_system(form.to_data(), actor=current_user._get_current_object())
        except AuthSystemInvalid as exc:
            form.apply_errors(exc.errors)
        else:
            flash_saved(system, "added")
            return redirect(url_for("admin.auth_systems"))
    return _render_auth_system_form(form, None, start)


@bp.route("/auth-systems/<int:system_id>/edit", methods=["GET", "POST"])
def edit_auth_system(system_id: int):
    """Edit an authentication system; a blank Client Secret keeps the stored one."""
    system = found_or_404(get_auth_system(system_id))
    form = AuthSystemForm(data=AuthSystemForm.form_data(auth_system_data(system)))
    form.set_team_choices(list_teams())
    if form.validate_on_submit():
        if form.import_issuer.data:
            return _render_auth_system_form(form, system, imported=_import_issuer(form))
        try:
            update_auth_system(system, form.to_data(), actor=current_user._get_current_object())
        except AuthSystemInvalid as exc:
            form.apply_errors(exc.errors)
        else:
            flash_saved(system, "saved")
            return redirect(url_for("admin.auth_systems"))
    return _render_auth_system_form(form, system)


@bp.route("/auth-systems/<int:system_id>/enable", methods=["POST"])
def enable_auth_system(system_id: int):
    """Turn an authentication system on."""
    return _set_enabled(system_id, True)


@bp.route("/auth-systems/<int:system_id>/disable", methods=["POST"])
def disable_auth_system(system_id: int):
    """Turn an authentication system off."""
    return _set_enabled(system_id, False)


def _set_enabled(system_id: int, enabled: bool):
    system = found_or_404(get_auth_system(system_id))
    if ConfirmForm().validate_on_submit():
        set_auth_system_enabled(system, enabled, actor=current_user._get_current_object())
        state = "enabled" if enabled else "disabled"
        flash(f"Authentication system {system.name} {state}.", "success")
    return redirect(url_for("admin.auth_systems"))


@bp.route("/auth-systems/<int:system_id>/delete", methods=["GET", "POST"])
def delete_auth_system_view(system_id: int):
    """Ask for confirmation, then delete an authentication system and its member bindings."""
    system = found_or_404(get_auth_system(system_id))
    form = ConfirmForm()
    if form.validate_on_submit():
        name = system.name
        delete_auth_system(system, actor=current_user._get_current_object())
        flash(f"Authentication system {name} deleted.", "success")
        return redirect(url_for("admin.auth_systems"))
    return render_template(
        "admin/auth_system_delete.html",
        system=system,
        form=form,
        bindings=count_auth_system_bindings(system),
    )
