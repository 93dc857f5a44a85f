"""Local sign-in and sign-out views, *Complete your profile* and email confirmation."""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from portal.auth import bp
from portal.auth.forms import LoginForm
from portal.auth.sessions import (
    AFTER_PROFILE,
    ID_TOKEN,
    SSO_SESSION,
    SYSTEM_ID,
    renew_csrf_secret,
    stamp_new_session,
)
from portal.errors import AccountDisabled, render_error
from portal.models import User
from portal.services import audit, membership_recheck, throttle
from portal.services.accounts import authenticate_local, record_login
from portal.services.auth_systems import get_auth_system, list_enabled_systems
from portal.services.profiles import (
    EmailConfirmationError,
    pending_fields_for,
    read_email_confirmation,
    send_email_confirmation,
)
from portal.services.profiles import complete_profile as save_completed_profile
from portal.services.profiles import (
    confirm_email as save_confirmed_email,
)
from portal.services.sso_login import (
    logout_redirect_url,
    public_login_systems,
    remote_only_in_force,
    unseal_id_token,
)
from portal.services.users import end_sessions
from portal.sso.profile_fields import FIELD_LABEL
from portal.urls import absolute_url, safe_next

log = logging.getLogger(__name__)

#: Endpoints a member with an incomplete profile may still reach.
OPEN_ENDPOINTS = {"auth.complete_profile", "auth.logout", "auth.confirm_email", "static"}


def start_session(user: User, remember: bool = False, *, stamp: bool = True) -> None:
    """Sign ``user`` in on a fresh session (no fixation); refuse a disabled account.

    Every sign-in, local or SSO, goes through here, so a disabled account is refused on
    both paths: ``AccountDisabled`` renders its page and nothing is signed in.
    """
    if not user.is_active:
        log.warning("Sign-in refused: account %s is disabled", user.id)
        raise AccountDisabled()
    session.clear()
    login_user(user, remember=remember, fresh=True)
    stamp_new_session()
    # The new session's CSRF secret, minted now while the cookie is written anyway: the first
    # page (its sign-out form) then leaves the session as it is, and sends no new cookie.
    renew_csrf_secret()
    if stamp:  # an SSO sign-in stamped it with the account, in the same transaction
        record_login(user)


#: The one answer to every refused local sign-in (the role is not told apart from the password).
WRONG_PASSWORD = "The email address or password is not correct."
WRONG_PASSWORD_REMOTE_ONLY = (
    "The email address or password is not correct. Members sign in with the identity "
    "provider's link on the Sign in page."
)


def _local_sign_in(form: LoginForm, members_allowed: bool):
    """Check the local form; return a response when done, else ``None`` (errors on the form)."""
    email = form.email.data or ""
    lockout = throttle.account_lockout(email)
    if lockout is not None:
        return sign_in_paused(lockout.retry_after)
    checked = authenticate_local(email, form.password.data or "", members_allowed=members_allowed)
    details = {
        "break_glass_page": request.endpoint == "auth.login_local",
        "remote_only": not members_allowed,
    }
    if not checked.ok or checked.user is None:
        audit.record_failed_local_sign_in(
            email,
            checked.user,
            reason=checked.reason,
            lockout=throttle.note_failed_sign_in(email),
            **details,
        )
        form.password.errors.append(
            WRONG_PASSWORD if members_allowed else WRONG_PASSWORD_REMOTE_ONLY
        )
        return None
    user = checked.user
    # Recorded before start_session, whose commit (last sign-in time) saves it too.
    audit.record_event(audit.SIGN_IN_LOCAL, actor=user, details=details)
    start_session(user)
    return redirect(safe_next(form.next.data))


def sign_in_paused(retry_after: int):
    """Render the page of a sign-in refused while the account's sign-in is paused."""
    return render_error(
        429,
        "Sign-in paused",
        "There were too many failed sign-in attempts for this account, so signing in to it is "
        "paused for a while to protect it. Wait, then try again. If you have forgotten your "
        "password, contact the community team.",
        retry_after=retry_after,
    )


@bp.route("/login", methods=["GET", "POST"])
@throttle.local_sign_in_per_ip
def login():
    """Show the local form and/or the SSO links, as the enabled systems' Alternate Login says."""
    next_path = safe_next(request.values.get("next"))
    systems = list_enabled_systems()
    links = public_login_systems(systems)
    remote_only = remote_only_in_force(systems)
    if remote_only and len(links) == 1 and _anonymous_visit():
        # A single Remote Login Only system: signing in goes straight to it.
        target = links[0]
        return redirect(url_for("auth.sso_login", slug=target.slug, next=_next_arg(next_path)))
    return _login_page(
        next_path,
        remote_only,
        links=links,
        show_form=not remote_only or request.method == "POST",
        next_arg=_next_arg(next_path),
        form_action=url_for("auth.login"),
    )


@bp.route("/login/local", methods=["GET", "POST"])
@throttle.local_sign_in_per_ip
def login_local():
    """Break-glass local sign-in: always shown; members refused while remote-only is in force."""
    return _login_page(
        safe_next(request.values.get("next")),
        remote_only_in_force(list_enabled_systems()),
        links=[],
        show_form=True,
        break_glass=True,
        next_arg=None,
        form_action=url_for("auth.login_local"),
    )


def _login_page(next_path: str, remote_only: bool, **page):
    """Sign in with the posted local form, or show the Sign in page (with its errors)."""
    if current_user.is_authenticated and request.method == "GET":
        return redirect(next_path)
    form = LoginForm()
    if form.validate_on_submit():
        # Managers keep local sign-in even when remote-only is in force (break-glass).
        done = _local_sign_in(form, members_allowed=not remote_only)
        if done is not None:
            return done
    form.next.data = next_path if next_path != "/" else (form.next.data or "")
    return render_template("auth/login.html", form=form, **page)


def _anonymous_visit() -> bool:
    """Tell whether this is a GET by someone not signed in."""
    return request.method == "GET" and not current_user.is_authenticated


def _next_arg(next_path: str) -> str | None:
    return next_path if next_path and next_path != "/" else None


@bp.route("/logout", methods=["POST"])
def logout():
    """End the user's sessions everywhere, then sign out at the provider if it has a logout URL."""
    sealed = session.get(ID_TOKEN)
    system_id = session.get(SYSTEM_ID)
    key = session.get(SSO_SESSION)
    user = current_user._get_current_object() if current_user.is_authenticated else None
    logout_user()
    session.clear()
    logoff = None
    if user is not None:
        logoff = membership_recheck.take_logoff_tokens(key, user, system_id)
        # Signing out ends the session everywhere: a copy of this cookie opens nothing now.
        end_sessions(user)
    id_token = unseal_id_token(sealed)
    if logoff is not None:
        # Server to server, after the sign-out is committed; a failure is only logged.
        membership_recheck.call_logoff(system_id, logoff, id_token=id_token)
    system = get_auth_system(system_id) if isinstance(system_id, int) else None
    target = logout_redirect_url(
        system,
        return_to=absolute_url(url_for("site.home")),
        id_token=id_token,
    )
    if target:
        return redirect(target)
    flash("You are signed out.", "info")
    return redirect(url_for("site.home"))


@bp.route("/complete-profile", methods=["GET", "POST"])
def complete_profile():
    """Ask, once, for the profile fields the identity provider did not supply."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    user = current_user._get_current_object()
    pending = pending_fields_for(user)
    after = safe_next(session.get(AFTER_PROFILE))
    if not pending:
        return redirect(after)
    errors: dict[str, str] = {}
    values = {key: (getattr(user, key) or "") for key in pending}
    if request.method == "POST":
        values = {key: request.form.get(key, "") for key in pending}
        pending_before = user.email_pending
        errors = save_completed_profile(user, values)
        if not errors:
            session.pop(AFTER_PROFILE, None)
            flash("Thank you: your profile is complete.", "info")
            if user.email_pending and user.email_pending != pending_before:
                if send_email_confirmation(user):
                    flash(
                        f"We sent a confirmation link to {user.email_pending}: your email "
                        "address counts once you open it.",
                        "info",
                    )
                else:
                    flash(
                        "We could not send the confirmation email right now. Resend it from "
                        "your account page.",
                        "error",
                    )
            return redirect(after)
    fields = [(key, FIELD_LABEL[key]) for key in pending]
    return render_template(
        "auth/complete_profile.html", fields=fields, values=values, errors=errors
    )


@bp.route("/email/confirm/<token>", methods=["GET", "POST"])
def confirm_email(token: str):
    """Confirm a pending email address: a button (POST), so a mail scanner's visit does nothing."""
    try:
        user, address = read_email_confirmation(token)
        if request.method == "POST":
            save_confirmed_email(token)
            flash(f"Your email address is now {address}.", "info")
            return redirect(url_for("site.account") if current_user.is_authenticated else "/")
    except EmailConfirmationError as exc:
        return render_error(400, "Email address not confirmed", str(exc))
    return render_template("auth/confirm_email.html", address=address, token=token)


@bp.before_app_request
def require_complete_profile():
    """Send a member whose profile is incomplete to *Complete your profile* first."""
    if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
        return None
    if not current_user.is_authenticated or not current_user.pending_fields:
        return None
    if request.method == "GET" and request.endpoint != "auth.complete_profile":
        session.setdefault(AFTER_PROFILE, safe_next(request.full_path.rstrip("?")))
    return redirect(url_for("auth.complete_profile"))
