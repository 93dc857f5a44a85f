"""Fixtures of the audit-log tests: the loopback providers of tests/auth, admin helpers."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuditEvent
from tests.admin.conftest import form_data, signed_in  # noqa: F401
from tests.auth.conftest import (  # noqa: F401
    _fresh_jwks_cache,
    app_config,
    logs,
    oidc,
    sso,
)
from tests.conftest import MANAGER_PASSWORD


def events(kind: str | None = None) -> list[AuditEvent]:
    """Return the recorded events (of one kind), oldest first."""
    db.session.expire_all()
    query = sa.select(AuditEvent).order_by(AuditEvent.id)
    if kind:
        query = query.where(AuditEvent.kind == kind)
    return list(db.session.scalars(query))


def raw_audit_rows() -> str:
    """Return every column of every audit row as one text (to search for secrets)."""
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM audit_events")).all()
    return "\n".join(repr(tuple(row)) for row in rows)


def screen_rows(page: str) -> list[str]:
    """Return the text of each event row of the audit screen (tags removed), newest first."""
    body = page.split('<table class="list audit">', 1)[1].split("<tbody>", 1)[1]
    rows: list[str] = []
    depth = 0
    current: list[str] = []
    for token in re.split(r"(<tr>|</tr>|<table[^>]*>|</table>)", body):
        if token.startswith("<table"):
            depth += 1
        elif token == "</table>":
            depth -= 1
            if depth < 0:
                break
        elif token == "<tr>" and depth == 0:
            current = []
            continue
        elif token == "</tr>" and depth == 0:
            text = html.unescape(re.sub(r"<[^>]+>", " ", "".join(current)))
            rows.append(" ".join(text.split()))
            continue
        current.append(token)
    return [r for r in rows if not r.startswith("No events")]


@pytest.fixture
def manager_client(app, manager):
    """Return a second client, signed in as the community manager."""
    client = app.test_client()
    with app.app_context():
        client.post("/login", data={"email": manager.email, "password": MANAGER_PASSWORD})
    return client


@pytest.fixture
def audit_page(app, manager_client) -> Callable[..., str]:
    """Return a function that opens the audit screen (as the manager) with filters.

    Each request runs in its own app context: the tests' long-lived one would hand it the
    ``g`` (and so the signed-in user) of the last request made with another client.
    """

    def open_page(**filters: Any) -> str:
        with app.app_context():
            resp = manager_client.get("/admin/audit", query_string=filters)
        assert resp.status_code == 200
        return resp.get_data(as_text=True)

    return open_page
