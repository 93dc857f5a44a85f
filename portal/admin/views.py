"""Admin views: dashboard and teams."""

from flask import abort, flash, redirect, render_template, url_for

from portal.admin import bp
from portal.admin.forms import ConfirmForm, TeamForm
from portal.extensions import db
from portal.models import Team
from portal.services.accounts import AccountError, create_team, delete_team, list_teams, rename_team


@bp.route("/")
def index():
    """Show the admin home."""
    return redirect(url_for("admin.auth_systems"))


@bp.route("/teams", methods=["GET", "POST"])
def teams():
    """List teams and create one."""
    form = TeamForm()
    if form.validate_on_submit():
        try:
            team = create_team(form.name.data or "")
        except AccountError as exc:
            form.name.errors.append(str(exc))
        else:
            flash(f"Team {team.name} created.", "success")
            return redirect(url_for("admin.teams"))
    return render_template("admin/teams.html", form=form, teams=list_teams(), confirm=ConfirmForm())


@bp.route("/teams/<int:team_id>/edit", methods=["GET", "POST"])
def edit_team(team_id: int):
    """Rename a team."""
    team = db.session.get(Team, team_id) or abort(404)
    form = TeamForm(obj=team)
    if form.validate_on_submit():
        try:
            rename_team(team, form.name.data or "")
        except AccountError as exc:
            form.name.errors.append(str(exc))
        else:
            flash(f"Team renamed to {team.name}.", "success")
            return redirect(url_for("admin.teams"))
    return render_template("admin/team_edit.html", form=form, team=team)


@bp.route("/teams/<int:team_id>/delete", methods=["POST"])
def remove_team(team_id: int):
    """Delete a team."""
    team = db.session.get(Team, team_id) or abort(404)
    if ConfirmForm().validate_on_submit():
        name = team.name
        delete_team(team)
        flash(f"Team {name} deleted.", "success")
    return redirect(url_for("admin.teams"))


@bp.route("/auth-systems")
def auth_systems():
    """List the authentication systems (placeholder until the form lands)."""
    from portal.services.auth_systems import list_auth_systems

    return render_template("admin/auth_systems.html", systems=list_auth_systems(), confirm=ConfirmForm())
