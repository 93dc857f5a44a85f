"""Admin screens, for community managers only."""

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user

bp = Blueprint("admin", __name__)


@bp.before_request
def require_manager():
    """Guard every admin screen: anonymous to the login page, members get 403."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if not current_user.is_manager:
        abort(403)
    return None


from portal.admin import views  # noqa: E402,F401

# Area modules register their routes on the same blueprint (and its guard).
# isort: split
from portal.admin import audit, content, groups, testing, transfer, users  # noqa: E402,F401
