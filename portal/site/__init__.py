"""The member-facing site: home, account."""

from flask import Blueprint

bp = Blueprint("site", __name__)

from portal.site import views  # noqa: E402,F401

# Area modules register their routes on the same blueprint.
# isort: split
from portal.site import library  # noqa: E402,F401
