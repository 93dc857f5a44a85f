"""Member-typed email addresses count only once confirmed through a link mailed to them.

The mail goes through a real SMTP conversation with a local aiosmtpd server.
"""

from __future__ import annotations

import re
import socket
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from portal.extensions import db
from portal.models import AuditEvent, User
from portal.services import audit, profiles

LINK = re.compile(r"http://localhost(/email/confirm/[\w.\-]+)")


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's name)
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        return [msg for rcpts, msg in self.messages if address in rcpts]

    def link_to(self, address: str) -> str:
        """Return the path of the confirmation link in the last message to ``address``."""
        messages = self.to(address)
        assert messages, "no mail arrived for the address"
        body = messages[-1].get_payload(decode=True).decode()
        match = LINK.search(body)
        assert match, "the mail carries no confirmation link"
        return match.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1 (free port) whose messages the test can read."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def app_config(app_config: dict[str, Any], smtp_server) -> dict[str, Any]:
    """Send mail through the local SMTP server."""
    return {
        **app_config,
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_server.port,
        "MAIL_DEFAULT_SENDER": "portal@example.org",
    }


def fresh(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


def confirmed_events() -> int:
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.kind == audit.EMAIL_CONFIRMED)
    )


def test_a_typed_email_waits_for_the_mailed_link_and_a_prefetch_confirms_nothing(
    client, auth, member, smtp_server
):
    """Changed on /account: pending; the mailed link shows a button; only its POST confirms."""
    auth.login_member()
    resp = client.post("/account", data={"email": "New.Address@Example.org"})
    assert resp.status_code == 302
    assert fresh(member).email == "member@example.com"
    assert fresh(member).email_pending == "new.address@example.org"
    page = client.get("/account").get_data(as_text=True)
    assert "waiting for confirmation, check your inbox" in page

    path = smtp_server.link_to("new.address@example.org")
    auth.logout()
    page = client.get(path)  # a mail scanner's prefetch, signed out
    assert page.status_code == 200 and "Confirm" in page.get_data(as_text=True)
    assert fresh(member).email == "member@example.com"

    resp = client.post(path)

    assert resp.status_code == 302
    user = fresh(member)
    assert user.email == "new.address@example.org" and user.email_pending is None
    assert confirmed_events() == 1


def test_an_old_link_cannot_confirm_a_newer_address(client, auth, member, smtp_server):
    """Two changes in a row: the first link no longer confirms anything."""
    auth.login_member()
    client.post("/account", data={"email": "first@example.org"})
    client.post("/account", data={"email": "second@example.org"})
    old = smtp_server.link_to("first@example.org")

    resp = client.post(old)

    assert resp.status_code == 400
    assert "no longer waiting for confirmation" in resp.get_data(as_text=True)
    user = fresh(member)
    assert user.email == "member@example.com" and user.email_pending == "second@example.org"
    assert confirmed_events() == 0


def test_confirming_an_address_another_account_now_holds_is_refused(
    client, auth, member, create_user, smtp_server
):
    """A pending address blocks nobody; if someone holds it at confirmation time, refused."""
    auth.login_member()
    client.post("/account", data={"email": "shared@example.org"})
    create_user(email="shared@example.org", username="holder")  # not blocked by the pending one
    path = smtp_server.link_to("shared@example.org")

    resp = client.post(path)

    assert resp.status_code == 400
    assert "already used by another account" in resp.get_data(as_text=True)
    assert fresh(member).email == "member@example.com"
    assert confirmed_events() == 0


def test_a_tampered_or_expired_link_confirms_nothing(
    client, auth, member, smtp_server, monkeypatch
):
    """A link with a changed signature, or older than 24 hours, is refused."""
    auth.login_member()
    client.post("/account", data={"email": "late@example.org"})
    path = smtp_server.link_to("late@example.org")
    assert client.post(path[:-2] + "xx").status_code == 400
    monkeypatch.setattr(profiles, "EMAIL_CONFIRMATION_MAX_AGE", -1)
    resp = client.post(path)
    assert resp.status_code == 400 and "expired" in resp.get_data(as_text=True)
    assert fresh(member).email == "member@example.com"


def test_resend_mails_the_link_again(client, auth, member, smtp_server):
    """Resend on the account page sends another message whose link confirms."""
    auth.login_member()
    client.post("/account", data={"email": "again@example.org"})
    client.post("/account/email/resend")
    assert len(smtp_server.to("again@example.org")) == 2
    assert client.post(smtp_server.link_to("again@example.org")).status_code == 302
    assert fresh(member).email == "again@example.org"


def test_cancel_forgets_the_pending_address(client, auth, member, smtp_server):
    """Cancel the change: nothing pending, the old link confirms nothing."""
    auth.login_member()
    client.post("/account", data={"email": "oops@example.org"})
    client.post("/account/email/cancel")
    assert fresh(member).email_pending is None
    assert client.post(smtp_server.link_to("oops@example.org")).status_code == 400
    assert fresh(member).email == "member@example.com"


def test_email_typed_on_complete_your_profile_is_pending_until_confirmed(
    oidc, sso, client, smtp_server
):
    """A provider without email: the typed address is mailed a link and counts once opened."""
    from tests.support.providers import reconfigure

    reconfigure(oidc, params={"email": {"path": "nothing_here"}})
    assert sso.sign_in(oidc).headers["Location"] == "/complete-profile"

    resp = client.post("/complete-profile", data={"email": "jane@example.net"})

    assert resp.status_code == 302
    user = db.session.scalar(sa.select(User))
    db.session.refresh(user)
    assert user.email is None and user.email_pending == "jane@example.net"
    assert not user.pending_fields
    assert client.post(smtp_server.link_to("jane@example.net")).status_code == 302
    db.session.refresh(user)
    assert user.email == "jane@example.net"


def test_development_mail_goes_to_the_outbox(app, client, auth, member, tmp_path):
    """Without MAIL_SERVER outside production, mail lands in instance/outbox/ as .eml."""
    app.config["MAIL_BACKEND"] = "portal.services.mail.OutboxEmailBackend"
    app.extensions["mailman"].backend = app.config["MAIL_BACKEND"]
    auth.login_member()
    client.post("/account", data={"email": "dev@example.org"})
    files = list((tmp_path / "instance" / "outbox").glob("*.eml"))
    assert len(files) == 1
    assert b"/email/confirm/" in files[0].read_bytes()


def test_mail_settings_come_from_the_environment(tmp_path):
    """MAIL_* from the environment; without MAIL_SERVER, development mail goes to the outbox."""
    from portal.config import load_config

    env = {
        "MAIL_SERVER": "smtp.example.org",
        "MAIL_PORT": "587",
        "MAIL_USERNAME": "portal",
        "MAIL_PASSWORD": "pw",
        "MAIL_USE_TLS": "true",
        "MAIL_DEFAULT_SENDER": "Portal <portal@example.org>",
    }
    config = load_config(str(tmp_path), env)
    assert (config["MAIL_BACKEND"], config["MAIL_SERVER"], config["MAIL_PORT"]) == (
        "smtp",
        "smtp.example.org",
        587,
    )
    assert config["MAIL_USE_TLS"] and not config["MAIL_USE_SSL"]
    assert config["MAIL_DEFAULT_SENDER"] == "Portal <portal@example.org>"
    assert load_config(str(tmp_path), {})["MAIL_BACKEND"].endswith("OutboxEmailBackend")
