"""Sign-in and sign-out views."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from portal.auth import bp
from portal.auth.forms import LoginForm
from portal.services.accounts import authenticate_local, record_login
from portal.urls import safe_next


def start_session(user, remember: bool = False) -> None:
    """Sign ``user`` in on a fresh session (no fixation)."""
    session.clear()
    login_user(user, remember=remember, fresh=True)
    record_login(user)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the local sign-in form and sign in on success."""
    form = LoginForm()
    next_path = safe_next(request.values.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(next_path)
    if form.validate_on_submit():
        user = authenticate_local(form.email.data or "", form.password.data or "")
        if user is None:
            form.password.errors.append("The email address or password is not correct.")
        else:
            start_session(user)
            return redirect(safe_next(form.next.data))
    form.next.data = next_path if next_path != "/" else (form.next.data or "")
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    """End the local session."""
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("site.home"))
