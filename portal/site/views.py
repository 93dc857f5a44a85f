"""Home and account pages."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from portal.services.profiles import locked_fields_for, update_profile
from portal.services.sso_login import profile_edit_url
from portal.services.users import REVOKE_SIGN_OUT_EVERYWHERE, revoke_sessions
from portal.site import bp
from portal.sso.engine import ACCOUNT_FIELDS, FIELD_LABEL
from portal.urls import absolute_url


@bp.route("/")
def home():
    """Show the home page."""
    return render_template("site/home.html", user=current_user)


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    """Show the signed-in member's account and save edits of the fields they own."""
    user = current_user._get_current_object()
    locked = locked_fields_for(user)
    errors: dict[str, str] = {}
    values = {key: getattr(user, key) or "" for key in ACCOUNT_FIELDS}
    if request.method == "POST":
        submitted = {key: request.form[key] for key in ACCOUNT_FIELDS if key in request.form}
        errors = update_profile(user, submitted)
        if not errors:
            flash("Your profile is saved.", "info")
            return redirect(url_for("site.account"))
        values.update({k: v for k, v in submitted.items() if k not in locked})
    return_to = absolute_url(url_for("site.account"))
    edit_links = [
        (identity.auth_system, url)
        for identity in user.identities
        if (url := profile_edit_url(identity.auth_system, return_to=return_to))
    ]
    fields = [(key, FIELD_LABEL[key], key in locked) for key in ACCOUNT_FIELDS]
    return render_template(
        "site/account.html",
        user=user,
        fields=fields,
        values=values,
        errors=errors,
        edit_links=edit_links,
    )


@bp.route("/account/sign-out-everywhere", methods=["POST"])
@login_required
def sign_out_everywhere():
    """End every session of the signed-in user, on every device, this one included."""
    user = current_user._get_current_object()
    revoke_sessions(user, actor=user, reason=REVOKE_SIGN_OUT_EVERYWHERE)
    logout_user()
    session.clear()
    flash("You are signed out on every device and browser.", "info")
    return redirect(url_for("site.home"))
