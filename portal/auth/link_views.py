"""Link another sign-in method while signed in: its start, and its branch of the callback."""

from __future__ import annotations

import logging
import secrets

from flask import flash, redirect, session, url_for
from flask_login import current_user, login_required

from portal import metrics
from portal.auth import bp
from portal.auth.failures import record_sso_failure
from portal.errors import render_error
from portal.services import throttle
from portal.services.account_linking import (
    LINK_INTENT,
    complete_link,
    make_link_intent,
    offered_for_link,
)
from portal.services.login_attempts import ensure_browser_key, session_browser_key
from portal.services.settings_snapshot import system_by_slug
from portal.services.sso_login import SystemUnavailable, start_sso_login
from portal.sso.errors import SSOError

log = logging.getLogger(__name__)


@bp.route("/sso/<slug>/link", methods=["POST"])
@login_required
def sso_link(slug: str):
    """Start an SSO sign-in that links the system to the signed-in account (POST, CSRF)."""
    user = current_user._get_current_object()
    try:
        system = offered_for_link(system_by_slug(slug), slug)
    except SystemUnavailable:
        flash("This sign-in method is not available. Nothing was linked.", "error")
        return redirect(url_for("site.account"))
    wait = throttle.start_sso_sign_in()
    if wait is not None:
        return render_error(429, retry_after=wait)
    try:
        url = start_sso_login(system, browser_key=ensure_browser_key(), next_path="/account")
    except SSOError as exc:
        return link_failed(exc, slug)
    # Bound to this session, this member and this very attempt; consumed by the callback.
    session[LINK_INTENT] = make_link_intent(user, system, session)
    return redirect(url)


def wants_link(slug: str) -> bool:
    """Tell whether this callback belongs to a link flow (read from the session: no SQL).

    Only a callback of the system the member chose to link: any other callback (a manager's
    test run of another system, say) goes on as it would without the link.
    """
    intent = session.get(LINK_INTENT)
    return isinstance(intent, dict) and intent.get("slug") == slug and current_user.is_authenticated


def finish_link(slug: str, params: dict[str, str]):
    """Finish a link flow's callback: bind the identity to the signed-in account, or refuse.

    Whatever happens, the member stays signed in as themself and lands on the account page.
    """
    intent = session.pop(LINK_INTENT, None)
    user = current_user._get_current_object()
    reference = secrets.token_hex(4)
    try:
        system = offered_for_link(system_by_slug(slug), slug)
        linked = complete_link(
            user,
            system,
            params,
            intent=intent,
            browser_key=session_browser_key(),
            reference=reference,
        )
    except SystemUnavailable:
        flash("This sign-in method is not available. Nothing was linked.", "error")
        return redirect(url_for("site.account"))
    except SSOError as exc:
        return link_failed(exc, slug, reference)
    throttle.finish_sso_sign_in()
    metrics.count_sign_in(system.slug, metrics.SUCCESS)
    log.info(
        "SSO link ref=%s system=%s outcome=%s user=%s",
        reference,
        system.slug,
        "linked" if linked else "already_linked",
        user.id,
    )
    if linked:
        flash(f"{system.name} is now linked to your account.", "success")
    else:
        flash(f"{system.name} was already linked to your account.", "info")
    return redirect(url_for("site.account"))


def link_failed(exc: SSOError, slug: str, reference: str | None = None):
    """Log and audit a refused link under a reference; tell the member on the account page."""
    reference = record_sso_failure(exc, slug, action="link", reference=reference)
    flash(f"{exc.title}: {exc.user_message} (reference {reference})", "error")
    return redirect(url_for("site.account"))
