"""Admin: export and import of an authentication system's configuration."""

from flask import current_app, redirect, render_template, url_for
from flask_login import current_user

from portal.admin import bp
from portal.admin.saving import flash_saved
from portal.admin.transfer_forms import ImportForm
from portal.lookups import found_or_404
from portal.services import throttle
from portal.services.auth_systems import get_auth_system
from portal.services.transfer import (
    MAX_DOCUMENT_BYTES,
    ImportInvalid,
    dump_export,
    export_auth_system,
    import_auth_system,
    parse_export,
)


@bp.route("/auth-systems/<int:system_id>/export")
def export_auth_system_file(system_id: int):
    """Download a system's configuration as JSON (never with its client secret)."""
    system = found_or_404(get_auth_system(system_id))
    response = current_app.response_class(
        dump_export(export_auth_system(system)), mimetype="application/json"
    )
    response.headers["Content-Disposition"] = f'attachment; filename="{system.slug}.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/auth-systems/import", methods=["GET", "POST"])
@throttle.per_manager
def import_auth_system_file():
    """Upload an exported configuration; show every problem, or save it all."""
    form = ImportForm()
    problems: list[str] = []
    if form.validate_on_submit():
        # One byte more than the limit tells "too large" apart without reading it all.
        raw = form.file.data.read(MAX_DOCUMENT_BYTES + 1)
        try:
            system = import_auth_system(
                parse_export(raw),
                client_secret=form.client_secret.data or "",
                replace=bool(form.replace.data),
                actor=current_user._get_current_object(),
            )
        except ImportInvalid as exc:
            problems = exc.problems
        else:
            flash_saved(system, "imported")
            return redirect(url_for("admin.edit_auth_system", system_id=system.id))
    return render_template("admin/auth_system_import.html", form=form, problems=problems)
