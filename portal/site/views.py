"""Home and account pages."""

from flask import render_template
from flask_login import current_user, login_required

from portal.site import bp


@bp.route("/")
def home():
    """Show the home page."""
    return render_template("site/home.html", user=current_user)


@bp.route("/account")
@login_required
def account():
    """Show the signed-in member's account."""
    return render_template("site/account.html", user=current_user)
