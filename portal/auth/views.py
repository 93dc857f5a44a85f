"""Sign-in and sign-out views: local accounts, the SSO flow and *Complete your profile*."""

from __future__ import annotations

import logging
import secrets

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from portal.auth import bp
from portal.auth.forms import LoginForm
from portal.auth.sessions import stamp_new_session
from portal.errors import AccountDisabled, render_error
from portal.models import User
from portal.services import audit, throttle
from portal.services.accounts import authenticate_local, record_login
from portal.services.auth_systems import (
    get_auth_system,
    get_system_by_slug,
    list_enabled_systems,
)
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
    BROWSER_SESSION_KEY,
    LinkConfirmationRequired,
    SignIn,
    SystemUnavailable,
    complete_sso_login,
    confirm_pending_link,
    get_login_system,
    is_test_state,
    logout_redirect_url,
    new_browser_key,
    pending_link_account,
    public_login_systems,
    remote_only_in_force,
    seal_id_token,
    seal_pending_link,
    start_sso_login,
    unseal_id_token,
    unseal_pending_link,
)
from portal.services.sso_testing import complete_test_login, record_failed_test_run
from portal.services.users import end_sessions
from portal.sso.engine import FIELD_LABEL
from portal.sso.errors import SSOError
from portal.urls import absolute_url, safe_next

log = logging.getLogger(__name__)

#: Session keys of the SSO flow.
BROWSER_KEY = BROWSER_SESSION_KEY  # random key; login attempts store its hash
ID_TOKEN = "sso_id_token"  # the ID token, encrypted, kept only for the logout redirect
SYSTEM_ID = "sso_system"  # the system the user signed in with
AFTER_PROFILE = "after_profile"  # where to go once the profile is complete
PENDING_LINK = "sso_pending_link"  # an upgrade waiting for the account's password, encrypted

#: HTTP status and page title of each SSO failure code.
FAILURES: dict[str, tuple[int, str]] = {
    "state_invalid": (400, "Sign-in link expired"),
    "provider_error": (400, "Sign-in not completed"),
    "issuer_mismatch": (400, "Sign-in failed"),
    "account_conflict": (409, "Account already exists"),
    "email_not_verified": (403, "Email address not verified"),
    "username_not_trusted": (403, "Username not trusted"),
    "link_not_allowed": (403, "Account cannot be connected"),
    "link_expired": (400, "Connection request expired"),
    "membership_denied": (403, "Sign-in not allowed"),
    "required_field_missing": (400, "Missing profile information"),
    "provider_timeout": (504, "Identity provider unavailable"),
    "provider_unreachable": (502, "Identity provider unavailable"),
    "provider_address_refused": (502, "Identity provider unavailable"),
}
#: Endpoints a member with an incomplete profile may still reach.
OPEN_ENDPOINTS = {"auth.complete_profile", "auth.logout", "auth.confirm_email", "static"}


def start_session(user: User, remember: bool = False) -> None:
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
    record_login(user)


def _is_manager() -> bool:
    return bool(current_user.is_authenticated and current_user.is_manager)


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
        return _sign_in_paused(lockout.retry_after)
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


def _sign_in_paused(retry_after: int):
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
    form = LoginForm()
    next_path = safe_next(request.values.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(next_path)
    systems = list_enabled_systems()
    links = public_login_systems(systems)
    remote_only = remote_only_in_force(systems)
    if remote_only and request.method == "GET" and len(links) == 1:
        # A single Remote Login Only system: signing in goes straight to it.
        target = links[0]
        return redirect(url_for("auth.sso_login", slug=target.slug, next=_next_arg(next_path)))
    if form.validate_on_submit():
        # Managers keep local sign-in even when remote-only is in force (break-glass).
        done = _local_sign_in(form, members_allowed=not remote_only)
        if done is not None:
            return done
    form.next.data = next_path if next_path != "/" else (form.next.data or "")
    return render_template(
        "auth/login.html",
        form=form,
        links=links,
        show_form=not remote_only or request.method == "POST",
        next_arg=_next_arg(next_path),
        form_action=url_for("auth.login"),
    )


@bp.route("/login/local", methods=["GET", "POST"])
@throttle.local_sign_in_per_ip
def login_local():
    """Break-glass local sign-in: always shown; members refused while remote-only is in force."""
    form = LoginForm()
    next_path = safe_next(request.values.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(next_path)
    remote_only = remote_only_in_force(list_enabled_systems())
    if form.validate_on_submit():
        done = _local_sign_in(form, members_allowed=not remote_only)
        if done is not None:
            return done
    form.next.data = next_path if next_path != "/" else (form.next.data or "")
    return render_template(
        "auth/login.html",
        form=form,
        links=[],
        show_form=True,
        break_glass=True,
        next_arg=None,
        form_action=url_for("auth.login_local"),
    )


def _next_arg(next_path: str) -> str | None:
    return next_path if next_path and next_path != "/" else None


@bp.route("/logout", methods=["POST"])
def logout():
    """End the user's sessions everywhere, then sign out at the provider if it has a logout URL."""
    sealed = session.get(ID_TOKEN)
    system_id = session.get(SYSTEM_ID)
    user = current_user._get_current_object() if current_user.is_authenticated else None
    logout_user()
    session.clear()
    if user is not None:
        # Signing out ends the session everywhere: a copy of this cookie opens nothing now.
        end_sessions(user)
    system = get_auth_system(system_id) if isinstance(system_id, int) else None
    target = logout_redirect_url(
        system,
        return_to=absolute_url(url_for("site.home")),
        id_token=unseal_id_token(sealed),
    )
    if target:
        return redirect(target)
    flash("You are signed out.", "info")
    return redirect(url_for("site.home"))


@bp.route("/sso/<slug>/login")
def sso_login(slug: str):
    """Start an SSO sign-in: record the attempt and send the browser to the provider."""
    try:
        system = get_login_system(slug, is_manager=_is_manager())
    except SystemUnavailable:
        return _system_not_found()
    wait = throttle.start_sso_sign_in()
    if wait is not None:
        return render_error(429, retry_after=wait)
    key = session.get(BROWSER_KEY)
    if not isinstance(key, str) or not key:
        key = session[BROWSER_KEY] = new_browser_key()
    try:
        url = start_sso_login(system, browser_key=key, next_path=request.args.get("next", ""))
    except SSOError as exc:
        return _sso_failure(exc, slug)
    return redirect(url)


@bp.route("/sso/<slug>/callback")
@throttle.sso_callback_per_ip
def sso_callback(slug: str):
    """Finish an SSO sign-in at the Redirect URL."""
    params = request.args.to_dict(flat=True)
    if is_test_state(params.get("state")):
        return _test_callback(slug, params)
    try:
        system = get_login_system(slug, is_manager=_is_manager())
    except SystemUnavailable:
        return _system_not_found()
    try:
        signed_in = complete_sso_login(system, params, browser_key=session.get(BROWSER_KEY))
    except LinkConfirmationRequired as pending:
        # Nobody is signed in: the matched account's owner confirms with its password first.
        throttle.finish_sso_sign_in()
        session[PENDING_LINK] = seal_pending_link(pending.link)
        return redirect(url_for("auth.confirm_link"))
    except SSOError as exc:
        return _sso_failure(exc, slug)
    throttle.finish_sso_sign_in()
    return _finish_sso_sign_in(signed_in)


def _finish_sso_sign_in(signed_in: SignIn):
    """Start the session of a finished SSO sign-in and send the member on."""
    system = signed_in.system
    audit.record_event(audit.SIGN_IN, actor=signed_in.user, system=system)
    start_session(signed_in.user)
    session[SYSTEM_ID] = system.id
    sealed = seal_id_token(signed_in.id_token)
    if sealed:
        session[ID_TOKEN] = sealed
    if pending_fields_for(signed_in.user):
        session[AFTER_PROFILE] = signed_in.next_path
        return redirect(url_for("auth.complete_profile"))
    return redirect(safe_next(signed_in.next_path))


@bp.route("/sso/link/confirm", methods=["GET", "POST"])
@throttle.local_sign_in_per_ip
def confirm_link():
    """Ask for the matched account's password before linking it to the provider's identity."""
    link = unseal_pending_link(session.get(PENDING_LINK))
    if link is None:
        session.pop(PENDING_LINK, None)
        return _link_expired()
    try:
        system, target = pending_link_account(link)
    except SSOError as exc:
        session.pop(PENDING_LINK, None)
        return _sso_failure(exc, "-")
    error = None
    if request.method == "POST":
        # The same guard as the sign-in form: this page checks the account's password too.
        lockout = throttle.account_lockout(target.email or "")
        if lockout is not None:
            return _sign_in_paused(lockout.retry_after)
        try:
            signed_in = confirm_pending_link(link, request.form.get("password", ""))
        except SSOError as exc:
            session.pop(PENDING_LINK, None)
            return _sso_failure(exc, system.slug)
        if signed_in is not None:
            return _finish_sso_sign_in(signed_in)
        audit.record_failed_local_sign_in(
            target.email or "",
            target,
            reason="wrong_password",
            lockout=throttle.note_failed_sign_in(target.email or ""),
            link_confirmation=True,
        )
        error = "The password is not correct. Nothing was connected."
    return render_template(
        "auth/confirm_link.html",
        system=system,
        email=target.email,
        matched_on=FIELD_LABEL[link.matched_on],
        error=error,
    ), (200 if error is None else 401)


@bp.route("/sso/link/cancel", methods=["POST"])
def cancel_link():
    """Forget a pending link: nothing is connected and nobody is signed in."""
    session.pop(PENDING_LINK, None)
    flash("Nothing was connected, and you are not signed in.", "info")
    return redirect(url_for("auth.login"))


def _link_expired():
    return render_error(
        400,
        "Connection request expired",
        "This request to connect your account has expired or was already used. Please sign "
        "in again; nothing was connected.",
        retry_url=url_for("auth.login"),
    )


def _test_callback(slug: str, params: dict[str, str]):
    """Finish a manager's *Test this configuration* run: trace it, sign nobody in."""
    system = get_system_by_slug(slug)
    if system is None or not _is_manager():
        return _system_not_found()
    manager = current_user._get_current_object()
    try:
        attempt = complete_test_login(
            system, params, browser_key=session.get(BROWSER_KEY), actor=manager
        )
    except SSOError as exc:
        # A refused test run is audited as the manager's test run, not as a failed sign-in.
        reference = record_failed_test_run(system, exc, actor=manager)
        status, title = FAILURES.get(exc.code, (502, "Sign-in failed"))
        return render_error(status, title, exc.user_message, reference=reference)
    return redirect(
        url_for("admin.auth_system_test_result", system_id=system.id, attempt_id=attempt.id)
    )


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


def _system_not_found():
    return render_error(
        404,
        "Sign-in method not available",
        "This sign-in method does not exist or is not enabled. Go back to the Sign in page "
        "and choose another.",
    )


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _sso_failure(exc: SSOError, slug: str):
    """Log the failure once under a short reference and show the member-facing page."""
    reference = secrets.token_hex(4)
    log.warning(
        "SSO sign-in failed ref=%s system=%s code=%s detail=%s",
        reference,
        slug,
        exc.code,
        _one_line(exc.log_detail or "-"),
    )
    status, title = FAILURES.get(exc.code, (502, "Sign-in failed"))
    # The audit log keeps the code and our own words, never log_detail (it can quote the IdP).
    audit.record_failed_sign_in(
        slug,
        reference=reference,
        code=exc.code,
        summary=title,
        source=request.remote_addr,
        provider_error=getattr(exc, "error", None),
        http_status=getattr(exc, "status", None),
        field=getattr(exc, "field_label", None),
    )
    retry = exc.code in {
        "state_invalid",
        "provider_error",
        "provider_timeout",
        "provider_unreachable",
    }
    return render_error(
        status,
        title,
        exc.user_message,
        reference=reference,
        retry_url=url_for("auth.login") if retry else None,
    )
