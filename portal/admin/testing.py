"""Admin: *Test this configuration*, a traced sign-in that signs nobody in."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from portal.admin import bp
from portal.admin.forms import ConfirmForm
from portal.lookups import found_or_404
from portal.models import AuthSystem
from portal.services import throttle
from portal.services.auth_system_validation import param_error_key
from portal.services.auth_systems import (
    AuthSystemInvalid,
    auth_system_data,
    get_auth_system,
    update_auth_system,
)
from portal.services.login_attempts import ensure_browser_key, session_browser_key
from portal.services.sso_testing import document_trees, get_test_result, start_test_login
from portal.sso.errors import SSOError
from portal.sso.profile_fields import PROFILE_FIELDS

#: The path inputs of the result page, in order: (input name, label).
PATH_INPUTS: tuple[tuple[str, str], ...] = (
    ("access_token_path", "Access Token Path"),
    *PROFILE_FIELDS,
)


@bp.route("/auth-systems/<int:system_id>/test", methods=["POST"])
@throttle.per_manager
def test_auth_system(system_id: int):
    """Start a traced sign-in at the provider (any Alternate Login mode, even disabled)."""
    system = found_or_404(get_auth_system(system_id))
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        url = start_test_login(system, browser_key=ensure_browser_key())
    except SSOError as exc:
        flash(f"The test could not start: {exc.user_message}", "error")
        return redirect(url_for("admin.edit_auth_system", system_id=system.id))
    return redirect(url)


def _current_paths(system: AuthSystem) -> dict[str, str]:
    data = auth_system_data(system)
    paths = {key: data["params"][key]["path"] for key, _label in PROFILE_FIELDS}
    return {"access_token_path": data["access_token_path"], **paths}


def _render_result(system: AuthSystem, attempt_id: int, report: dict, paths, errors, status=200):
    return (
        render_template(
            "admin/auth_system_test.html",
            system=system,
            attempt_id=attempt_id,
            report=report,
            trees=document_trees(report),
            path_inputs=PATH_INPUTS,
            paths=paths,
            errors=errors,
            form=FlaskForm(),
            confirm=ConfirmForm(),
        ),
        status,
    )


def _report_or_404(system: AuthSystem, attempt_id: int) -> dict:
    """Return the report of a test started from this browser, or answer 404."""
    return found_or_404(get_test_result(system, attempt_id, session_browser_key()))


@bp.route("/auth-systems/<int:system_id>/test/<int:attempt_id>")
def auth_system_test_result(system_id: int, attempt_id: int):
    """Show the trace of a test sign-in started from this browser."""
    system = found_or_404(get_auth_system(system_id))
    report = _report_or_404(system, attempt_id)
    return _render_result(system, attempt_id, report, _current_paths(system), {})


@bp.route("/auth-systems/<int:system_id>/test/<int:attempt_id>/paths", methods=["POST"])
def save_test_paths(system_id: int, attempt_id: int):
    """Save the Access Token Path and profile parameter paths edited on the result page."""
    system = found_or_404(get_auth_system(system_id))
    report = _report_or_404(system, attempt_id)
    form = FlaskForm()
    paths = {key: request.form.get(key, "").strip() for key, _label in PATH_INPUTS}
    if not form.validate_on_submit():
        abort(400)
    data = auth_system_data(system)
    data["access_token_path"] = paths["access_token_path"]
    for key, _label in PROFILE_FIELDS:
        data["params"][key]["path"] = paths[key]
    try:
        update_auth_system(system, data, actor=current_user._get_current_object())
    except AuthSystemInvalid as exc:
        errors = {
            key: exc.errors.get(key if key == "access_token_path" else param_error_key(key), [])
            for key, _label in PATH_INPUTS
        }
        others = [
            message
            for key, messages in exc.errors.items()
            if key != "access_token_path" and not key.startswith("params.")
            for message in messages
        ]
        for message in others:
            flash(
                f"The saved configuration has a problem to fix on its edit page: {message}", "error"
            )
        return _render_result(system, attempt_id, report, paths, errors, status=400)
    flash("The paths are saved. Run the test again to see them at work.", "info")
    return redirect(
        url_for("admin.auth_system_test_result", system_id=system.id, attempt_id=attempt_id)
    )
