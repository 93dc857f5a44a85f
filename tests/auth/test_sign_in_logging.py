"""The log of a sign-in: one line per sign-in by default, per-call detail only at DEBUG."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuditEvent
from portal.services import audit


def app_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    """Return what Portal and its HTTP client logged at ``level`` or above (not the provider's)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= level
        and (r.name.startswith(("portal", "httpx", "httpcore")))
        and not r.name.startswith("portal.devidp")
    ]


def test_a_sign_in_logs_one_line_with_its_reference_system_and_outcome(oidc, sso, caplog):
    """At INFO a whole sign-in (start, token and profile calls, callback) is one line."""
    caplog.set_level(logging.INFO)
    callback = sso.authorize(oidc)
    caplog.clear()
    resp = sso.callback(callback)
    assert resp.status_code == 302
    lines = app_lines(caplog)
    assert len(lines) == 1, lines
    line = lines[0]
    assert f"system={oidc.slug}" in line and "outcome=success" in line
    code = dict(p.split("=", 1) for p in callback.split("?", 1)[1].split("&"))["code"]
    assert code not in line
    # The reference in the line is the sign-in's audit event's: a manager finds one from the other.
    reference = line.split("ref=", 1)[1].split()[0]
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.kind == audit.SIGN_IN))
    assert event.reference == reference


def test_each_call_to_the_provider_is_logged_only_at_debug(oidc, sso, caplog):
    """DEBUG shows each outbound call (method, host, status, time), never its query or secret."""
    caplog.set_level(logging.DEBUG, logger="portal.sso.http")
    sso.sign_in(oidc)
    calls = [
        m
        for m in app_lines(caplog, logging.DEBUG)
        if m.startswith("SSO POST") or m.startswith("SSO GET")
    ]
    assert calls, "the token and profile calls are logged at DEBUG"
    assert all("?" not in m and "secret" not in m.lower() for m in calls)
