"""Admin: the audit log screen."""

from __future__ import annotations

from flask import render_template, request
from wtforms import DateField, Form, SelectChoice, SelectField, StringField
from wtforms.validators import Length, Optional

from portal.admin import bp
from portal.services import audit as svc
from portal.services import audit_screen

#: Query-string arguments of the filters (kept on the pager's links).
FILTER_ARGS: tuple[str, ...] = ("system", "user", "kind", "date_from", "date_to")


class AuditFilterForm(Form):
    """Filters of the audit log, read from the query string (a GET form: no CSRF token)."""

    system = SelectField("System", validate_choice=False)
    user = StringField("User (email or name)", validators=[Optional(), Length(max=255)])
    kind = SelectField("Kind", validate_choice=False)
    date_from = DateField("From (UTC)", validators=[Optional()])
    date_to = DateField("To (UTC)", validators=[Optional()])


def _filters(form: AuditFilterForm) -> audit_screen.AuditFilters:
    """Return the filters the form asks for; a field with an error does not filter."""
    system = form.system.data or ""
    return audit_screen.AuditFilters(
        system_id=int(system) if system.isdigit() else None,
        user=(form.user.data or "").strip() if not form.user.errors else "",
        kind=form.kind.data if form.kind.data in svc.KIND_LABELS else "",
        date_from=form.date_from.data if not form.date_from.errors else None,
        date_to=form.date_to.data if not form.date_to.errors else None,
    )


@bp.route("/audit")
def audit_log():
    """List audit events, newest first, filtered by system, user, kind and dates, paginated."""
    form = AuditFilterForm(request.args)
    form.system.choices = [SelectChoice("", "All systems")] + [
        SelectChoice(str(system_id), name) for system_id, name in audit_screen.list_audit_systems()
    ]
    form.kind.choices = [SelectChoice("", "All kinds")] + [
        SelectChoice(kind, label) for kind, label in svc.KINDS
    ]
    form.validate()
    page = audit_screen.list_audit_events(_filters(form), request.args.get("page", 1, type=int))
    args = {key: request.args[key] for key in FILTER_ARGS if request.args.get(key)}
    return render_template(
        "admin/audit.html",
        form=form,
        page=page,
        args=args,
        kind_labels=svc.KIND_LABELS,
        retention_days=svc.retention_days(),
    )
