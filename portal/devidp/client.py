"""The one client (Portal) registered at a provider, and how it authenticates."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

DEFAULT_CLIENT_SECRET = "portal-secret"
"""Client secret used when a test does not choose one."""


@dataclass
class RegisteredClient:
    """The one client (Portal) registered at a provider."""

    client_id: str = "portal"
    client_secret: str = DEFAULT_CLIENT_SECRET
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    auth_methods: set[str] = field(
        default_factory=lambda: {"client_secret_basic", "client_secret_post"}
    )
    require_pkce: bool = False

    def check_secret(self, client_id: str, client_secret: str) -> bool:
        """True when id and secret are this client's (constant-time compare)."""
        return secrets.compare_digest(
            client_id.encode(), self.client_id.encode()
        ) & secrets.compare_digest(client_secret.encode(), self.client_secret.encode())


def decode_basic_auth(header: str | None) -> tuple[str, str] | None:
    """Decode ``Basic base64(urlenc(id):urlenc(secret))`` (RFC 6749 2.3.1), else ``None``."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if ":" not in raw:
        return None
    client_id, _, secret = raw.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)
