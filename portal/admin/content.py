"""Admin: content items (recordings, libraries, subscriptions) and who may open them."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from wtforms import SelectChoice

from portal.admin import bp
from portal.admin.forms import ConfirmForm
from portal.admin.group_forms import ContentForm
from portal.admin.saving import saved
from portal.lookups import found_or_404
from portal.models.content import CONTENT_KINDS, KIND_LABELS
from portal.services import content as svc
from portal.services.groups import list_groups


def _content_form(item=None) -> ContentForm:
    form = ContentForm(obj=item)
    form.groups.choices = [SelectChoice(g.id, g.name) for g in list_groups()]
    if item is not None and not form.is_submitted():
        form.groups.data = [g.id for g in item.groups]
    return form


def _data(form: ContentForm) -> svc.ContentData:
    return svc.ContentData(
        title=form.title.data or "",
        kind=form.kind.data or "",
        url=form.url.data or "",
        description=form.description.data or "",
        embed=bool(form.embed.data),
        visibility=form.visibility.data or "",
        group_ids=[int(g) for g in form.groups.data or []],
    )


@bp.route("/content")
def content():
    """List content items, searchable by title and filtered by kind, paginated."""
    search = request.args.get("q", "")
    kind = request.args.get("kind", "")
    page = svc.list_content(search, kind, request.args.get("page", 1, type=int))
    return render_template(
        "admin/content.html",
        page=page,
        search=search,
        kind=kind,
        kinds=[(k, KIND_LABELS[k]) for k in CONTENT_KINDS],
        confirm=ConfirmForm(),
    )


@bp.route("/content/new", methods=["GET", "POST"])
def new_content():
    """Create a content item."""
    form = _content_form()
    if form.validate_on_submit():
        item = saved(form.title, svc.ContentError, lambda: svc.create_content(_data(form)))
        if item:
            flash(f"{item.kind_label} {item.title} created.", "success")
            return redirect(url_for("admin.content"))
    return render_template("admin/content_edit.html", form=form, item=None)


@bp.route("/content/<int:content_id>/edit", methods=["GET", "POST"])
def edit_content(content_id: int):
    """Edit a content item."""
    item = found_or_404(svc.get_content(content_id))
    form = _content_form(item)
    if form.validate_on_submit():
        if saved(form.title, svc.ContentError, lambda: svc.update_content(item, _data(form))):
            flash(f"{item.kind_label} {item.title} saved.", "success")
            return redirect(url_for("admin.content"))
    return render_template("admin/content_edit.html", form=form, item=item)


@bp.route("/content/<int:content_id>/delete", methods=["POST"])
def delete_content(content_id: int):
    """Delete a content item."""
    item = found_or_404(svc.get_content(content_id))
    if ConfirmForm().validate_on_submit():
        title = item.title
        svc.delete_content(item)
        flash(f"{title} deleted.", "success")
    return redirect(url_for("admin.content"))
