"""A refused SSO sign-in or link: logged and audited once, under the reference the member sees."""

from __future__ import annotations

import logging
import secrets

from flask import request

from portal import metrics
from portal.services import audit
from portal.sso.errors import SSOError

log = logging.getLogger("portal.auth.sso_views")


def one_line(text: str) -> str:
    """Return ``text`` with line breaks escaped, so a log line stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def record_sso_failure(
    exc: SSOError, slug: str, *, action: str = "sign-in", reference: str | None = None
) -> str:
    """Count, log and audit a failed SSO ``action``; return its reference."""
    reference = reference or secrets.token_hex(4)
    metrics.count_sign_in(slug, exc.code)
    log.warning(
        "SSO %s failed ref=%s system=%s code=%s detail=%s",
        action,
        reference,
        slug,
        exc.code,
        one_line(exc.log_detail or "-"),
    )
    # The audit log keeps the code and our own words, never log_detail (it can quote the IdP).
    audit.record_failed_sign_in(
        slug,
        reference=reference,
        code=exc.code,
        summary=exc.title,
        source=request.remote_addr,
        provider_error=getattr(exc, "error", None),
        http_status=getattr(exc, "status", None),
        field=getattr(exc, "field_label", None),
    )
    return reference
