"""The membership re-check of a signed-in member's request, once it is due.

The session cookie says when the next re-check is due (``RECHECK_DUE``); a request before
then, a static file, or the sign-out itself never triggers it and costs no SQL for it.
The work is `services.membership_recheck.recheck_membership`'s; this hook applies its
outcome to the session: a new due time, or the member signed out with the reason.
"""

from __future__ import annotations

from flask import flash, request, session
from flask_login import current_user, logout_user

from portal.auth import sessions
from portal.services import membership_recheck

#: Endpoints that never trigger a re-check: files, and signing out (which ends it anyway).
SKIPPED_ENDPOINTS = frozenset({"static", "auth.logout"})


def recheck_membership_when_due() -> None:
    """Re-check the signed-in member's membership when it is due; sign them out if it ends."""
    due = session.get(sessions.RECHECK_DUE)
    if not isinstance(due, int) or request.endpoint in SKIPPED_ENDPOINTS:
        return
    moment = sessions.now()
    if moment < due or not current_user.is_authenticated:
        return
    user = current_user._get_current_object()
    outcome = membership_recheck.recheck_membership(
        session.get(sessions.SSO_SESSION), user, session.get(sessions.SYSTEM_ID), moment
    )
    if outcome.kind != membership_recheck.SIGNED_OUT:
        if outcome.next_due is None:
            session.pop(sessions.RECHECK_DUE, None)
        else:
            session[sessions.RECHECK_DUE] = outcome.next_due
        return
    logout_user()
    session.clear()
    flash(f"{outcome.message} (Reference: {outcome.reference})", "info")
