"""Sign-in and sign-out views: local accounts, the SSO flow and *Complete your profile*."""

from __future__ import annotations

import logging
import secrets

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from portal.auth import bp
from portal.auth.forms import LoginForm
from portal.errors import render_error
from portal.models import User
from portal.services import audit
from portal.services.accounts import authenticate_local, record_login
from portal.services.auth_systems import (
    get_auth_system,
    get_system_by_slug,
    list_enabled_systems,
)
from portal.services.profiles import complete_profile as save_completed_profile
from portal.services.profiles import pending_fields_for
from portal.services.sso_login import (
    BROWSER_SESSION_KEY,
    SystemUnavailable,
    complete_sso_login,
    get_login_system,
    is_test_state,
    logout_redirect_url,
    new_browser_key,
    public_login_systems,
    remote_only_in_force,
    seal_id_token,
    start_sso_login,
    unseal_id_token,
)
from portal.services.sso_testing import complete_test_login, record_failed_test_run
from portal.sso.engine import FIELD_LABEL
from portal.sso.errors import SSOError
from portal.urls import absolute_url, safe_next

log = logging.getLogger(__name__)

#: Session keys of the SSO flow.
BROWSER_KEY = BROWSER_SESSION_KEY  # random key; login attempts store its hash
ID_TOKEN = "sso_id_token"  # the ID token, encrypted, kept only for the logout redirect
SYSTEM_ID = "sso_system"  # the system the user signed in with
AFTER_PROFILE = "after_profile"  # where to go once the profile is complete

#: HTTP status and page title of each SSO failure code.
FAILURES: dict[str, tuple[int, str]] = {
    "state_invalid": (400, "Sign-in link expired"),
    "provider_error": (400, "Sign-in not completed"),
    "issuer_mismatch": (400, "Sign-in failed"),
    "account_conflict": (409, "Account already exists"),
    "email_not_verified": (403, "Email address not verified"),
    "membership_denied": (403, "Sign-in not allowed"),
    "required_field_missing": (400, "Missing profile information"),
    "provider_timeout": (504, "Identity provider unavailable"),
    "provider_unreachable": (502, "Identity provider unavailable"),
    "provider_address_refused": (502, "Identity provider unavailable"),
}
#: Endpoints a member with an incomplete profile may still reach.
OPEN_ENDPOINTS = {"auth.complete_profile", "auth.logout", "static"}


def start_session(user: User, remember: bool = False) -> None:
    """Sign ``user`` in on a fresh session (no fixation)."""
    session.clear()
    login_user(user, remember=remember, fresh=True)
    record_login(user)


def _is_manager() -> bool:
    return bool(current_user.is_authenticated and current_user.is_manager)


def _local_sign_in(form: LoginForm, members_allowed: bool):
    """Check the local form; return a redirect on success, else ``None`` (errors on the form)."""
    user = authenticate_local(form.email.data or "", form.password.data or "")
    if user is None:
        form.password.errors.append("The email address or password is not correct.")
        return None
    if not members_allowed and not user.is_manager:
        form.password.errors.append(
            "Members sign in through the identity provider: use the sign-in link on the "
            "Sign in page."
        )
        return None
    # Recorded before start_session, whose commit (last sign-in time) saves it too.
    audit.record_event(
        audit.SIGN_IN_LOCAL,
        actor=user,
        details={
            "break_glass_page": request.endpoint == "auth.login_local",
            "remote_only": not members_allowed,
        },
    )
    start_session(user)
    return redirect(safe_next(form.next.data))


@bp.route("/login", methods=["GET", "POST"])
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
    """End the local session, then sign out at the provider when it has a logout URL."""
    sealed = session.get(ID_TOKEN)
    system_id = session.get(SYSTEM_ID)
    logout_user()
    session.clear()
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
    key = session.get(BROWSER_KEY)
    if not isinstance(key, str) or not key:
        key = session[BROWSER_KEY] = new_browser_key()
    try:
        url = start_sso_login(system, browser_key=key, next_path=request.args.get("next", ""))
    except SSOError as exc:
        return _sso_failure(exc, slug)
    return redirect(url)


@bp.route("/sso/<slug>/callback")
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
    except SSOError as exc:
        return _sso_failure(exc, slug)
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
        errors = save_completed_profile(user, values)
        if not errors:
            session.pop(AFTER_PROFILE, None)
            flash("Thank you: your profile is complete.", "info")
            return redirect(after)
    fields = [(key, FIELD_LABEL[key]) for key in pending]
    return render_template(
        "auth/complete_profile.html", fields=fields, values=values, errors=errors
    )


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
