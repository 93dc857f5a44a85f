"""Home and account pages."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from portal.services.account_linking import (
    UnlinkRefused,
    get_own_identity,
    linkable_systems,
    list_sign_in_methods,
    unlink_own_identity,
)
from portal.services.profiles import (
    cancel_email_change,
    locked_fields_for,
    send_email_confirmation,
    update_profile,
)
from portal.services.sso_login import profile_edit_url
from portal.services.users import REVOKE_SIGN_OUT_EVERYWHERE, revoke_sessions
from portal.site import bp
from portal.sso.profile_fields import ACCOUNT_FIELDS, FIELD_LABEL
from portal.urls import absolute_url


@bp.route("/")
def home():
    """Show the home page."""
    return render_template("site/home.html", user=current_user)


def flash_email_confirmation(user, sent: bool) -> None:
    """Tell the member where the confirmation link went, or that it could not be sent."""
    if sent:
        flash(
            f"We sent a confirmation link to {user.email_pending}. Your email address changes "
            "once you open it.",
            "info",
        )
    else:
        flash(
            "We could not send the confirmation email right now. Try again with Resend on "
            "your account page.",
            "error",
        )


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
        pending_before = user.email_pending
        errors = update_profile(user, submitted)
        if not errors:
            flash("Your profile is saved.", "info")
            if user.email_pending and user.email_pending != pending_before:
                flash_email_confirmation(user, send_email_confirmation(user))
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
        methods=list_sign_in_methods(user),
        linkable=linkable_systems(user),
    )


@bp.route("/account/sign-in-methods/<int:identity_id>/unlink", methods=["POST"])
@login_required
def unlink_sign_in_method(identity_id: int):
    """Unlink one of the member's own systems, unless it is their only way to sign in."""
    user = current_user._get_current_object()
    identity = get_own_identity(user, identity_id)
    if identity is None:
        flash("That sign-in method is not linked to your account. Nothing was changed.", "error")
        return redirect(url_for("site.account"))
    try:
        name = unlink_own_identity(user, identity)
    except UnlinkRefused as exc:
        flash(f"{exc} Nothing was changed.", "error")
    else:
        flash(f"{name} is no longer linked to your account.", "success")
    return redirect(url_for("site.account"))


@bp.route("/account/email/resend", methods=["POST"])
@login_required
def resend_email_confirmation():
    """Mail the confirmation link of the pending email address again."""
    user = current_user._get_current_object()
    if user.email_pending:
        flash_email_confirmation(user, send_email_confirmation(user))
    return redirect(url_for("site.account"))


@bp.route("/account/email/cancel", methods=["POST"])
@login_required
def cancel_email_confirmation():
    """Forget the pending email address."""
    user = current_user._get_current_object()
    if user.email_pending:
        cancel_email_change(user)
        flash("The email address change is cancelled.", "info")
    return redirect(url_for("site.account"))


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
