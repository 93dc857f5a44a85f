"""Membership stays true during a session: Re-check Membership Every (minutes), Grace Period.

Jane signs in through the loopback OpenID provider (refresh tokens, rotated on every use);
the provider then changes her membership, and her next request after the interval shows it.
The clock the session checks read is moved instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from portal.auth import sessions
from portal.extensions import db
from portal.models import ContentItem, MemberGroup, SSOSession, User
from portal.models.content import VISIBILITY_GROUPS
from portal.services.group_mapping import add_rule, save_mapping_settings
from portal.services.membership_recheck import PROVIDER_UNREACHABLE, SIGN_IN_AGAIN
from portal.services.secrets import decrypt_secret
from portal.services.users import end_sessions
from tests.support.providers import SSO, Provider, reconfigure
from tests.support.rows import events

START = 1_800_000_000
RECORDING = "Keynote recording"
DENIED = "Your membership has lapsed: renew it at the association to watch again."


class Clock:
    """A clock the session checks read; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * 60


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(sessions, "now", clock)
    return clock


@pytest.fixture
def rechecking(oidc: Provider, clock: Clock) -> Provider:
    """The OIDC system re-checking every 15 minutes (grace 30), a recording for WEBINARS."""
    system = reconfigure(oidc, recheck_minutes=15, grace_minutes=30)
    group = MemberGroup(name="Webinar viewers", name_key="webinar viewers", description="")
    db.session.add(group)
    db.session.commit()
    add_rule(system, "groups_contains", "webinars", group.id)
    item = ContentItem(
        title=RECORDING,
        kind="recording",
        url="https://video.example.com/watch/1",
        visibility=VISIBILITY_GROUPS,
        groups=[group],
    )
    db.session.add(item)
    db.session.commit()
    return oidc


def _jane() -> User:
    db.session.expire_all()
    user = db.session.scalar(sa.select(User).where(User.username_key == "jdoe"))
    assert user is not None
    return user


def _row() -> SSOSession:
    db.session.expire_all()
    rows = list(db.session.scalars(sa.select(SSOSession)))
    assert len(rows) == 1, f"expected one server-side session, found {len(rows)}"
    return rows[0]


def _token_calls(provider: Provider) -> int:
    return len(provider.idp.requests.all("token"))


def _signed_in(sso, provider: Provider) -> None:
    resp = sso.sign_in(provider)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]


def _library(client) -> str:
    resp = client.get("/library")
    assert resp.status_code == 200, f"the Library answered {resp.status_code}"
    return resp.get_data(as_text=True)


def _followed(client, resp) -> str:
    assert resp.status_code == 302
    return client.get(resp.headers["Location"]).get_data(as_text=True)


def test_a_lapsed_member_loses_gated_content_at_the_next_request_after_the_interval(
    rechecking, sso, client, clock
):
    """Jane sees the recording; the provider marks her Lapsed and drops her group; within the
    interval nothing is asked, and her first request after it no longer lists the recording,
    while she stays signed in."""
    _signed_in(sso, rechecking)
    assert RECORDING in _library(client)
    rechecking.idp.members.update("jdoe", membership_status="Lapsed", groups=[])
    calls = _token_calls(rechecking)

    clock.advance(14)
    assert RECORDING in _library(client)
    assert _token_calls(rechecking) == calls  # not due yet: the provider is not asked

    clock.advance(2)
    page = _library(client)

    assert RECORDING not in page
    assert _token_calls(rechecking) == calls + 1
    assert "jdoe" in page or "Jane" in page  # still signed in
    assert _jane().membership_status == "Lapsed"


def test_a_member_the_restriction_now_refuses_is_signed_out_with_the_managers_message(
    rechecking, sso, client, clock, logs
):
    """With "Sign in only when Membership Status is one of: Active", a re-check that reads
    Lapsed signs Jane out everywhere, showing the manager's message and a reference."""
    save_mapping_settings(
        rechecking.system,
        default_group_id=None,
        restrict_sign_in=True,
        allowed_statuses="Active",
        deny_message=DENIED,
        group_object_key="",
    )
    _signed_in(sso, rechecking)
    generation = _jane().session_generation
    rechecking.idp.members.update("jdoe", membership_status="Lapsed")
    clock.advance(16)

    resp = client.get("/library")

    page = _followed(client, resp)
    assert DENIED in page
    assert "Reference:" in page
    assert client.get("/library").status_code == 302  # signed out
    assert _jane().session_generation != generation  # every copy of the cookie is dead
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SSOSession)) == 0
    (event,) = events("membership.recheck_ended")
    assert event.reference and event.reference in page
    assert event.details == {"outcome": "membership_denied"}
    text = logs.text + page
    assert f"ref={event.reference}" in logs.text
    assert "outcome=membership_denied" in logs.text
    assert not [s for s in rechecking.issued_secrets() if s in text]


def test_provider_down_keeps_access_during_the_grace_period_then_signs_out(
    rechecking, sso, client, clock, logs
):
    """The provider stops answering: Jane keeps her recording for the Grace Period (30 min),
    never sees an error page, and is then signed out with a message that says why."""
    _signed_in(sso, rechecking)
    rechecking.idp.stop()
    try:
        clock.advance(16)
        assert RECORDING in _library(client)
        clock.advance(20)
        assert RECORDING in _library(client)
        clock.advance(15)
        resp = client.get("/library")
        page = _followed(client, resp)
    finally:
        rechecking.idp.start()

    assert PROVIDER_UNREACHABLE in page
    assert client.get("/library").status_code == 302
    assert "outcome=grace " in logs.text or "outcome=grace" in logs.text
    assert "outcome=grace_period_over" in logs.text
    assert not [s for s in rechecking.issued_secrets() if s in logs.text + page]


def test_the_refresh_token_is_kept_encrypted_and_replaced_when_the_provider_rotates_it(
    rechecking, sso, client, clock
):
    """The refresh token is stored encrypted (never in the cookie); the provider rotates it at
    each re-check and the new one is stored, so the next re-check succeeds too."""
    _signed_in(sso, rechecking)
    first = decrypt_secret(_row().refresh_token_encrypted)
    assert first and first not in _row().refresh_token_encrypted
    with client.session_transaction() as cookie:
        assert first not in repr(dict(cookie))

    clock.advance(16)
    assert RECORDING in _library(client)
    second = decrypt_secret(_row().refresh_token_encrypted)
    assert second != first
    assert rechecking.idp.lookup_refresh(first) is None  # used up by the rotation

    rechecking.idp.members.update("jdoe", groups=[])
    clock.advance(16)
    assert RECORDING not in _library(client)
    assert decrypt_secret(_row().refresh_token_encrypted) not in (first, second)


def test_without_a_refresh_token_the_access_token_rechecks_while_it_is_valid(
    rechecking, sso, client, clock
):
    """A provider that gave no refresh token: the profile is re-read with the access token
    while it is valid; once it has expired the member is asked to sign in again."""
    _signed_in(sso, rechecking)
    row = _row()
    row.refresh_token_encrypted = ""
    db.session.commit()
    rechecking.idp.members.update("jdoe", groups=[])
    calls = len(rechecking.idp.requests.all("userinfo"))

    clock.advance(16)
    assert RECORDING not in _library(client)
    assert len(rechecking.idp.requests.all("userinfo")) == calls + 1

    clock.advance(60 + 16)  # the loopback access token lives an hour
    page = _followed(client, client.get("/library"))
    assert SIGN_IN_AGAIN in page
    assert client.get("/library").status_code == 302


def test_a_refresh_token_the_provider_no_longer_accepts_asks_to_sign_in_again(
    rechecking, sso, client, clock
):
    """The provider revoked the refresh token: the member is signed out of this session and
    asked to sign in again; no error page."""
    _signed_in(sso, rechecking)
    rechecking.idp.revoke(decrypt_secret(_row().refresh_token_encrypted))
    clock.advance(16)

    page = _followed(client, client.get("/library"))

    assert SIGN_IN_AGAIN in page
    assert client.get("/library").status_code == 302


def test_only_one_request_rechecks_a_session_at_a_time(rechecking, sso, client, clock):
    """While another request holds the session's re-check, a due request neither calls the
    provider nor loses access."""
    _signed_in(sso, rechecking)
    clock.advance(16)
    db.session.execute(
        sa.update(SSOSession).values(checking_since=datetime.fromtimestamp(clock.now - 30, UTC))
    )
    db.session.commit()
    calls = _token_calls(rechecking)

    assert RECORDING in _library(client)

    assert _token_calls(rechecking) == calls

    clock.advance(3)  # a claim left by a request that died expires after two minutes
    assert RECORDING in _library(client)
    assert _token_calls(rechecking) == calls + 1


def test_static_files_never_trigger_a_recheck(rechecking, sso, client, clock):
    """A stylesheet request when the re-check is due asks the provider nothing."""
    _signed_in(sso, rechecking)
    clock.advance(16)
    calls = _token_calls(rechecking)

    resp = client.get("/static/style.css")

    assert resp.status_code in (200, 304)
    assert _token_calls(rechecking) == calls


@pytest.fixture
def statements(app) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(db.engine, "before_cursor_execute", record)


def test_a_signed_in_request_before_the_recheck_is_due_adds_no_sql(
    rechecking, sso, client, clock, statements
):
    """Before the re-check is due, nothing reads the settings or the server-side session."""
    _signed_in(sso, rechecking)
    clock.advance(5)
    statements.clear()

    assert RECORDING in _library(client)

    touched = [s for s in statements if "sso_sessions" in s or "settings_version" in s]
    assert touched == []


def test_a_system_that_does_not_recheck_keeps_no_tokens(oidc, sso, client):
    """Re-check off and no Logoff API (an existing system's settings): nothing is stored."""
    _signed_in(sso, oidc)

    assert db.session.scalar(sa.select(sa.func.count()).select_from(SSOSession)) == 0
    with client.session_transaction() as cookie:
        assert sessions.RECHECK_DUE not in cookie
        assert sessions.SSO_SESSION not in cookie


def test_the_tokens_of_dead_sessions_are_deleted_at_the_next_sign_in(
    rechecking, sso, client, app, clock
):
    """Signed out everywhere from another place (the generation moved), the first session's
    tokens are gone once Jane signs in again; only the live session keeps tokens."""
    _signed_in(sso, rechecking)
    first = _row().id
    end_sessions(_jane())

    _signed_in(SSO(app.test_client()), rechecking)

    assert _row().id != first
    assert _row().session_generation == _jane().session_generation
