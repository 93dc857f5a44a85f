"""The SQL statement budget of a member's whole SSO sign-in: start, callback, landing page.

A keynote sends thousands of members through the callback in a minute; every statement is a
round trip and, on SQLite, a turn at the write lock. The budget counts what the database sees
for one sign-in (the loopback provider's own work is a separate app and is not counted); a
failure lists the SQL of each phase, never its parameters, so the regression is in sight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import AuditEvent, GroupMembership, Identity, MemberGroup, User
from portal.services import audit
from portal.services.group_mapping import add_rule
from tests.support.providers import Provider, add_member

#: Statements a first sign-in (account created, groups granted) may take, all phases together.
FIRST_SIGN_IN_BUDGET = 16
#: Statements a returning member's sign-in (already linked, same profile) may take.
RETURNING_SIGN_IN_BUDGET = 10
PHASES = ("start", "callback", "landing page")


@dataclass
class StatementLog:
    """The SQL text of the statements each phase of one sign-in ran (never the parameters)."""

    phases: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in PHASES})
    current: str | None = None
    #: Whether the landing page sent the session cookie again (signed and compressed anew).
    landing_wrote_cookie: bool = False

    def record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.current is not None:
            self.phases[self.current].append(" ".join(statement.split()))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.current = name
        try:
            yield
        finally:
            self.current = None

    @property
    def total(self) -> int:
        return sum(len(statements) for statements in self.phases.values())

    def counts(self) -> str:
        per_phase = ", ".join(f"{name} {len(self.phases[name])}" for name in PHASES)
        return f"{self.total} statements ({per_phase})"

    def report(self) -> str:
        lines = [self.counts()]
        for name in PHASES:
            lines.append(f"-- {name}: {len(self.phases[name])}")
            lines.extend(f"   {i}. {sql[:160]}" for i, sql in enumerate(self.phases[name], 1))
        return "\n".join(lines)


def counted_sign_in(app: Flask, provider: Provider, username: str) -> StatementLog:
    """Sign ``username`` in from a fresh browser, counting the statements of each phase."""
    client: FlaskClient = app.test_client()
    log = StatementLog()
    engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", log.record)
    try:
        # Each request in an application context of its own, as on a live server (a fresh g
        # and database session), not in the test's long-lived one.
        with log.phase("start"), app.app_context():
            start = client.get(f"/sso/{provider.slug}/login")
        assert start.status_code == 302, f"starting the sign-in answered {start.status_code}"
        # The provider round trip: the loopback provider is its own app, with no Portal SQL.
        back = urlsplit(provider.idp.authorize_redirect(start.headers["Location"], username))
        with log.phase("callback"), app.app_context():
            callback = client.get(f"{back.path}?{back.query}")
        assert callback.status_code == 302, f"the callback answered {callback.status_code}"
        with log.phase("landing page"), app.app_context():
            landing = client.get(callback.headers["Location"])
    finally:
        sa.event.remove(engine, "before_cursor_execute", log.record)
    log.landing_wrote_cookie = "Set-Cookie" in landing.headers
    page = landing.get_data(as_text=True)
    assert landing.status_code == 200 and "You are signed in as" in page, (
        f"the landing page {callback.headers['Location']} answered {landing.status_code} "
        "without the member signed in"
    )
    return log


def _group(name: str) -> MemberGroup:
    group = MemberGroup(name=name, name_key=name.casefold(), description="")
    db.session.add(group)
    db.session.commit()
    return group


def groups_of(username: str) -> set[str]:
    """Return the names of the member groups the user holds."""
    db.session.expire_all()
    user = db.session.scalar(sa.select(User).where(User.username_key == username))
    assert user is not None, f"no account for {username}"
    return set(
        db.session.scalars(
            sa.select(MemberGroup.name)
            .join(GroupMembership, GroupMembership.group_id == MemberGroup.id)
            .where(GroupMembership.user_id == user.id)
        )
    )


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """CSRF protection on, as on a live site (its token lives in the session cookie)."""
    return {**app_config, "WTF_CSRF_ENABLED": True}


@pytest.fixture
def production_like(app: Flask, oidc: Provider) -> Provider:
    """The loopback OIDC system as sites run it: code + PKCE + nonce, ID token, profile
    request, and the provider's groups and status mapped to member groups; members ready."""
    add_rule(oidc.system, "groups_contains", "webinars", _group("Webinar viewers").id)
    add_rule(oidc.system, "status_in", "active", _group("Active members").id)
    for name in ("warmup", "newcomer", "regular"):
        add_member(oidc.idp, name, membership_type="Professional", groups=["WEBINARS", "LIBRARY"])
    # A sign-in before the counted one: the process is warm, as it is on a live site.
    counted_sign_in(app, oidc, "warmup")
    return oidc


def test_a_first_sign_in_stays_within_its_statement_budget(app, production_like):
    """A new member's whole sign-in (account created, groups granted) runs at most 16 statements."""
    log = counted_sign_in(app, production_like, "newcomer")

    assert groups_of("newcomer") == {"Webinar viewers", "Active members"}
    total = log.total
    assert total <= FIRST_SIGN_IN_BUDGET, (
        f"a first sign-in ran {log.counts()}, over the budget of {FIRST_SIGN_IN_BUDGET}:\n"
        + log.report()
    )


def test_a_returning_member_signs_in_within_its_statement_budget(app, production_like):
    """A linked member with an unchanged profile signs in again in at most 10 statements."""
    counted_sign_in(app, production_like, "regular")

    log = counted_sign_in(app, production_like, "regular")

    assert groups_of("regular") == {"Webinar viewers", "Active members"}
    total = log.total
    assert total <= RETURNING_SIGN_IN_BUDGET, (
        f"a returning member's sign-in ran {log.counts()}, over the budget of "
        f"{RETURNING_SIGN_IN_BUDGET}:\n" + log.report()
    )


def test_the_page_after_a_sign_in_leaves_the_session_cookie_alone(app, production_like):
    """The callback writes the signed-in session with its CSRF token; the landing page reuses it.

    Re-signing the cookie on the first page (to add the sign-out form's token) cost every
    sign-in a third serialization of the session.
    """
    log = counted_sign_in(app, production_like, "newcomer")

    assert not log.landing_wrote_cookie


def _callback_counting_transactions(app: Flask, provider: Provider, username: str):
    """Sign ``username`` in; return the statement log and the transactions the engine began."""
    began: list[str] = []

    def record(conn) -> None:
        began.append("BEGIN")

    sa.event.listen(db.engine, "begin", record)
    try:
        log = counted_sign_in(app, provider, username)
    finally:
        sa.event.remove(db.engine, "begin", record)
    return log, began


def _sign_in_events(user: User) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.kind == audit.SIGN_IN, AuditEvent.actor_id == user.id)
            .order_by(AuditEvent.id)
        )
    )


def test_a_first_sign_in_with_nothing_to_grant_reads_once_and_writes_once(app, oidc):
    """A new member of a system without group rules: the account, its binding and the sign-in's
    audit event are all written, after one read. On PostgreSQL they are one statement outside
    any transaction (no BEGIN, no COMMIT); on SQLite, three INSERTs in one transaction."""
    for name in ("warmup", "newcomer"):
        add_member(oidc.idp, name)
    counted_sign_in(app, oidc, "warmup")

    log, transactions = _callback_counting_transactions(app, oidc, "newcomer")

    db.session.expire_all()
    user = db.session.scalar(sa.select(User).where(User.email == "newcomer@example.org"))
    assert user is not None and user.is_active, "the new member has no account"
    binding = db.session.scalar(sa.select(Identity).where(Identity.user_id == user.id))
    assert binding is not None and binding.auth_system_id == oidc.system.id
    events = _sign_in_events(user)
    assert [(e.actor_label, e.auth_system_id) for e in events] == [
        ("newcomer@example.org", oidc.system.id)
    ]
    assert events[0].reference, "the sign-in's audit event names no reference"
    callback = log.phases["callback"]
    reads = [sql for sql in callback if sql.startswith("SELECT") and "identities" in sql]
    assert len(reads) == 1, "the binding and its holders took several reads:\n" + log.report()
    if db.engine.dialect.name == "postgresql":
        writes = [sql for sql in callback if sql.startswith("WITH new_user AS")]
        assert len(writes) == 1, log.report()
        assert transactions == [], f"the callback began {len(transactions)} transaction(s)"
    else:
        inserts = [sql.split()[2] for sql in callback if sql.startswith("INSERT")]
        # (then the provider's session id, which back-channel logout names)
        assert inserts[:3] == ["users", "identities", "audit_events"], log.report()


def test_a_returning_sign_in_with_nothing_changed_writes_once(app, oidc):
    """A linked member signing in again with an unchanged profile: the binding's and the
    account's sign-in times move and the sign-in is audited. On PostgreSQL the two UPDATEs and
    the event are one statement outside any transaction, also when the provider owns the email
    address (a must-supply field, refreshed at every sign-in)."""
    oidc.system.param("email").must_supply = True
    db.session.commit()
    for name in ("warmup", "regular"):
        add_member(oidc.idp, name)
    counted_sign_in(app, oidc, "warmup")
    counted_sign_in(app, oidc, "regular")
    user = db.session.scalar(sa.select(User).where(User.email == "regular@example.org"))
    first_seen = db.session.scalar(sa.select(Identity).where(Identity.user_id == user.id))
    before = (first_seen.last_login_at, user.last_login_at, user.membership_synced_at)

    log, transactions = _callback_counting_transactions(app, oidc, "regular")

    db.session.expire_all()
    user = db.session.get(User, user.id)
    binding = db.session.get(Identity, first_seen.id)
    after = (binding.last_login_at, user.last_login_at, user.membership_synced_at)
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    assert len(_sign_in_events(user)) == 2, "the second sign-in was not audited"
    callback = log.phases["callback"]
    if db.engine.dialect.name == "postgresql":
        writes = [sql for sql in callback if sql.startswith("WITH touched_binding AS")]
        assert len(writes) == 1, log.report()
        assert transactions == [], f"the callback began {len(transactions)} transaction(s)"
    else:
        writes = [" ".join(sql.split()[:3]) for sql in callback if not sql.startswith("SELECT")]
        assert writes[1:4] == [
            "UPDATE identities SET",
            "UPDATE users SET",
            "INSERT INTO audit_events",
        ], log.report()
