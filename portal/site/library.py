"""The member's Library: what they may open, grouped by kind, and each item's page."""

from __future__ import annotations

from flask import abort, render_template, request
from flask_login import current_user, login_required

from portal.errors import render_error
from portal.lookups import found_or_404
from portal.models.content import CONTENT_KINDS
from portal.services import content as svc
from portal.site import bp


@bp.route("/library")
@login_required
def library():
    """List what the member may open, grouped by kind (one kind, paginated, with ?kind=)."""
    kind = request.args.get("kind", "")
    if kind:
        if kind not in CONTENT_KINDS:
            abort(404)
        page = svc.list_library_kind(current_user, kind, request.args.get("page", 1, type=int))
        return render_template(
            "site/library.html", kind=kind, heading=CONTENT_KINDS[kind], page=page
        )
    return render_template("site/library.html", sections=svc.list_library(current_user))


@bp.route("/library/<int:content_id>")
@login_required
def library_item(content_id: int):
    """Show an item, or a friendly 403 page when the member may not open it."""
    item = found_or_404(svc.get_content(content_id))
    if not svc.can_open_item(current_user, item):
        # Neither the title nor the groups: walking the ids must not list the catalogue.
        return render_error(
            403,
            title="This content is for other members",
            message=(
                "Your membership does not include this item at the moment. Changes your "
                "association makes to your membership reach this site while you are signed "
                "in, within the minutes it is set to re-check them; if you think your "
                "membership should include this item, contact the community team."
            ),
        )
    return render_template("site/item.html", item=item)
