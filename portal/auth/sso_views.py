"""SSO sign-in views: start, callback, confirming a pending link, and the failure page."""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from portal import metrics
from portal.auth import bp, sessions
from portal.auth.failures import record_sso_failure
from portal.auth.link_views import finish_link, wants_link
from portal.auth.sessions import (
    AFTER_PROFILE,
    ID_TOKEN,
    PENDING_LINK,
    PROVIDER_SID,
    PROVIDER_SINCE,
    RECHECK_DUE,
    SSO_SESSION,
    SYSTEM_ID,
)
from portal.auth.views import sign_in_paused, start_session
from portal.errors import render_error
from portal.extensions import csrf
from portal.services import audit, membership_recheck, provider_logout, throttle
from portal.services.account_resolution import LinkConfirmationRequired
from portal.services.login_attempts import (
    StateOfTestRun,
    ensure_browser_key,
    is_test_state,
    session_browser_key,
)
from portal.services.profiles import pending_fields_for
from portal.services.settings_snapshot import SystemSettings, system_by_slug
from portal.services.sso_login import (
    SignIn,
    SystemUnavailable,
    complete_platform_login,
    complete_sso_login,
    confirm_pending_link,
    get_login_system,
    peek_login_system,
    pending_link_account,
    read_appended_ct,
    read_initiation_request,
    seal_id_token,
    seal_pending_link,
    start_current_login,
    start_sso_login,
    unseal_pending_link,
)
from portal.services.sso_testing import complete_test_login, record_failed_test_run
from portal.sso.errors import SSOError
from portal.sso.fields import TYPE_OAUTH2
from portal.sso.logout_token import provider_sid
from portal.sso.profile_fields import FIELD_LABEL
from portal.urls import safe_next, site_path

log = logging.getLogger(__name__)


def _is_manager() -> bool:
    return bool(current_user.is_authenticated and current_user.is_manager)


@bp.route("/sso/<slug>/login")
def sso_login(slug: str):
    """Start an SSO sign-in: record the attempt and send the browser to the provider."""
    is_manager = _is_manager()
    try:
        system = peek_login_system(slug, is_manager=is_manager)
    except SystemUnavailable:
        return _system_not_found()
    wait = throttle.start_sso_sign_in()
    if wait is not None:
        return render_error(429, retry_after=wait)
    key = ensure_browser_key()
    try:
        url = start_current_login(
            system, is_manager=is_manager, browser_key=key, next_path=request.args.get("next", "")
        )
    except SystemUnavailable:
        # Settings saved elsewhere since this process looked no longer offer it: not counted.
        throttle.finish_sso_sign_in()
        return _system_not_found()
    except SSOError as exc:
        return _sso_failure(exc, slug)
    return redirect(url)


@bp.route("/sso/<slug>/initiate", methods=["GET", "POST"])
@csrf.exempt
@throttle.sso_initiate_per_ip
def sso_initiate(slug: str):
    """The Sign-in Initiation URL: a sign-in the provider starts.

    A POST with ``refresh_token`` is the iMIS shape (redeemed at once, when the system opts
    in); anything else is an OpenID Connect third-party-initiated login (``iss``, optional
    ``login_hint`` and ``target_link_uri``), which starts a normal sign-in as
    `sso_login` does. Exempt from CSRF: the platform posts it from its own site.
    """
    try:
        system = get_login_system(slug, is_manager=_is_manager())
    except SystemUnavailable:
        return _system_not_found()
    if system.type != TYPE_OAUTH2:
        return _system_not_found()
    if request.method == "POST" and "refresh_token" in request.form:
        return _platform_token_sign_in(system, request.form.get("refresh_token", ""))
    try:
        initiation = read_initiation_request(system, request.values.to_dict(flat=True))
    except SSOError as exc:
        return _sso_failure(exc, slug)
    wait = throttle.start_sso_sign_in()
    if wait is not None:
        return render_error(429, retry_after=wait)
    key = ensure_browser_key()
    try:
        url = start_sso_login(
            system,
            browser_key=key,
            next_path=safe_next(site_path(initiation.target_link_uri), ""),
            login_hint=initiation.login_hint,
        )
    except SSOError as exc:
        return _sso_failure(exc, slug)
    return redirect(url)


def _platform_token_sign_in(system: SystemSettings, refresh_token: str):
    """Sign the member in with the refresh token the platform POSTed (the system opted in)."""
    try:
        signed_in = complete_platform_login(system, refresh_token)
    except LinkConfirmationRequired as pending:
        session[PENDING_LINK] = seal_pending_link(pending.link)
        return redirect(url_for("auth.confirm_link"))
    except SSOError as exc:
        return _sso_failure(exc, system.slug)
    return _finish_sso_sign_in(signed_in, platform_started=True)


@bp.route("/sso/<slug>/callback")
@throttle.sso_callback_per_ip
def sso_callback(slug: str):
    """Finish an SSO sign-in at the Redirect URL (or a manager's test run's)."""
    params = read_appended_ct(request.args.to_dict(flat=True))
    if wants_link(slug):
        # A signed-in member linking another sign-in method (account page): link_views.py.
        return finish_link(slug, params)
    is_manager = _is_manager()
    try:
        system = peek_login_system(slug, is_manager=is_manager)
    except SystemUnavailable:
        # A test run works while the system is disabled or Local Login Only.
        if is_test_state(params.get("state")):
            return _test_callback(slug, params)
        return _system_not_found()
    try:
        signed_in = complete_sso_login(
            system, params, browser_key=session_browser_key(), is_manager=is_manager
        )
    except SystemUnavailable:
        # Disabled (or made Local Login Only) since this process last read the settings.
        return _system_not_found()
    except StateOfTestRun:
        return _test_callback(slug, params)
    except LinkConfirmationRequired as pending:
        # Nobody is signed in: the matched account's owner confirms with its password first.
        throttle.finish_sso_sign_in()
        session[PENDING_LINK] = seal_pending_link(pending.link)
        return redirect(url_for("auth.confirm_link"))
    except SSOError as exc:
        return _sso_failure(exc, slug)
    throttle.finish_sso_sign_in()
    return _finish_sso_sign_in(signed_in)


def _finish_sso_sign_in(signed_in: SignIn, *, platform_started: bool = False):
    """Start the session of a finished SSO sign-in and send the member on.

    A sign-in the platform started may come from a page the member never chose (login
    CSRF): the landing page says whose session this is, and that it replaced another.
    """
    system = signed_in.system
    # Who this browser was signed in as (the session names "<id>:<generation>").
    previous = current_user.get_id().partition(":")[0] if current_user.is_authenticated else None
    # The account and the sign-in's audit event are committed: now the session.
    start_session(signed_in.user, stamp=False)
    if platform_started:
        replaced = previous is not None and previous != str(signed_in.user.id)
        flash(
            f"You are now signed in as {signed_in.user.display_name}."
            + (" The earlier session in this browser has ended." if replaced else ""),
            "info",
        )
    metrics.count_sign_in(system.slug, metrics.SUCCESS)
    log.info(
        "SSO sign-in ref=%s system=%s outcome=success user=%s%s",
        signed_in.reference,
        system.slug,
        signed_in.user.id,
        " created" if signed_in.created else "",
    )
    session[SYSTEM_ID] = system.id
    # Back-channel logout may name this session by the provider's sid (provider_logout.py).
    session[PROVIDER_SINCE] = provider_logout.now()
    sid = provider_sid(signed_in.id_token)
    if sid:
        session[PROVIDER_SID] = sid
        provider_logout.record_provider_session(signed_in.user, system.id, sid)
    if signed_in.result is not None:
        # Tokens stay on the server; the cookie names them and says when to re-check.
        moment = sessions.now()
        key = membership_recheck.record_sso_session(
            system, signed_in.user, signed_in.result, moment
        )
        if key:
            session[SSO_SESSION] = key
        due = membership_recheck.first_due(system, moment)
        if due is not None:
            session[RECHECK_DUE] = due
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
            return sign_in_paused(lockout.retry_after)
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
    system = system_by_slug(slug)
    if system is None or not _is_manager():
        return _system_not_found()
    manager = current_user._get_current_object()
    try:
        attempt = complete_test_login(
            system, params, browser_key=session_browser_key(), actor=manager
        )
    except SSOError as exc:
        # A refused test run is audited as the manager's test run, not as a failed sign-in.
        reference = record_failed_test_run(system, exc, actor=manager)
        return _failure_page(exc, reference, offer_retry=False)
    return redirect(
        url_for("admin.auth_system_test_result", system_id=system.id, attempt_id=attempt.id)
    )


def _system_not_found():
    return render_error(
        404,
        "Sign-in method not available",
        "This sign-in method does not exist or is not enabled. Go back to the Sign in page "
        "and choose another.",
    )


def _sso_failure(exc: SSOError, slug: str):
    """Log and audit the failure once under a short reference, then show its page."""
    reference = record_sso_failure(exc, slug)
    return _failure_page(exc, reference, offer_retry=exc.retryable)


def _failure_page(exc: SSOError, reference: str, *, offer_retry: bool):
    """Render the failure page the error's class describes, under its reference."""
    return render_error(
        exc.page_status,
        exc.title,
        exc.user_message,
        reference=reference,
        retry_url=url_for("auth.login") if offer_retry else None,
    )
