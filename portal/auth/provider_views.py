"""What a provider POSTs server to server: back-channel logout and the deprovisioning webhook.

Both are exempt from CSRF (the provider has no form of ours) and limited per address like
the other public POSTs; both answer JSON, never cached, and log one line with a reference
that a manager finds in the log (no token, signature or secret is ever logged).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from portal.auth import bp
from portal.extensions import csrf
from portal.services import throttle
from portal.services.provider_logout import WebhookRefused, apply_backchannel_logout, apply_webhook
from portal.services.settings_snapshot import system_by_slug
from portal.sso.errors import LogoutTokenInvalid, SSOError
from portal.sso.fields import TYPE_OAUTH2

log = logging.getLogger(__name__)


def _answer(status: int, **doc: Any) -> ResponseReturnValue:
    response = jsonify(doc)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _form_post() -> bool:
    return request.mimetype == "application/x-www-form-urlencoded"


@bp.route("/sso/<slug>/backchannel-logout", methods=["POST"])
@csrf.exempt
@throttle.provider_notice_per_ip
def backchannel_logout(slug: str) -> ResponseReturnValue:
    """The Back-Channel Logout URL: a ``logout_token`` ends a member's sessions (spec 2.5-2.8).

    200 with an empty body when the token is valid (whether or not Portal knew the member),
    400 with a JSON ``error`` otherwise.
    """
    reference = secrets.token_hex(6)
    system = system_by_slug(slug)
    if system is None or system.type != TYPE_OAUTH2:
        log.info("Back-channel logout ref=%s system=%s outcome=unknown_system", reference, slug)
        return _answer(400, error="invalid_request", error_description="Unknown system.")
    if not _form_post():
        return _answer(
            400,
            error="invalid_request",
            error_description="POST logout_token as application/x-www-form-urlencoded.",
        )
    try:
        ended = apply_backchannel_logout(system, request.form.get("logout_token", ""))
    except LogoutTokenInvalid as exc:
        log.warning(
            "Back-channel logout ref=%s system=%s outcome=refused reason=%s",
            reference,
            slug,
            exc.reason,
        )
        return _answer(
            400,
            error=exc.error,
            error_description=f"The logout token was refused (reference {reference}).",
        )
    except SSOError as exc:
        # The provider's JWKS could not be read: the token cannot be checked now.
        log.warning(
            "Back-channel logout ref=%s system=%s outcome=unverifiable code=%s",
            reference,
            slug,
            exc.code,
        )
        return _answer(
            400,
            error="temporarily_unavailable",
            error_description=f"The provider's keys could not be read (reference {reference}).",
        )
    log.info(
        "Back-channel logout ref=%s system=%s outcome=success members=%d", reference, slug, ended
    )
    response = _answer(200)
    response.set_data(b"")
    return response


@bp.route("/sso/<slug>/webhook", methods=["POST"])
@csrf.exempt
@throttle.provider_notice_per_ip
def deprovisioning_webhook(slug: str) -> ResponseReturnValue:
    """The Deprovisioning Webhook URL: a signed ``member.updated`` / ``member.deleted`` event."""
    reference = secrets.token_hex(6)
    body = request.get_data(cache=False)
    try:
        outcome = apply_webhook(slug, request.headers, body)
    except WebhookRefused as exc:
        log.warning(
            "Deprovisioning webhook ref=%s system=%s outcome=refused error=%s",
            reference,
            slug,
            exc.error,
        )
        return _answer(
            exc.status,
            error=exc.error,
            error_description=f"{exc.description} (reference {reference})",
        )
    log.info("Deprovisioning webhook ref=%s system=%s outcome=%s", reference, slug, outcome)
    return _answer(200, result=outcome, reference=reference)
