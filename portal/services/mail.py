"""Outgoing mail: one plain-text message at a time, through Flask-Mailman.

Production (or any instance with ``MAIL_SERVER``) sends through SMTP with the ``MAIL_*``
settings. Elsewhere `OutboxEmailBackend` prints each message to the console and saves it
under ``instance/outbox/`` as an ``.eml`` file, so a developer can open the links in it.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from pathlib import Path

from flask import current_app
from flask_mailman import EmailMessage
from flask_mailman.backends.console import EmailBackend as ConsoleEmailBackend

from portal.models.base import utcnow

log = logging.getLogger(__name__)


def outbox_path() -> Path:
    """Return the folder where development mail is saved."""
    return Path(current_app.instance_path) / "outbox"


class OutboxEmailBackend(ConsoleEmailBackend):
    """Development mail: print each message to the console and save it in the outbox."""

    def write_message(self, message) -> None:
        super().write_message(message)
        folder = outbox_path()
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}.eml"
        (folder / name).write_bytes(message.message().as_bytes())


def send_message(to: str, subject: str, body: str) -> bool:
    """Send one plain-text message to ``to``; False (logged, body left out) when it fails."""
    try:
        sent = EmailMessage(subject=subject, body=body, to=[to]).send()
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail %r not sent: %s", subject, exc.__class__.__name__)
        return False
    return bool(sent)
