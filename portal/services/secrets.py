"""Encryption at rest of client secrets and PKCE verifiers (MultiFernet, keys rotate)."""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app


class SecretUnreadable(RuntimeError):
    """No configured key can decrypt a stored secret."""


def _fernet(keys: list[str] | None = None) -> MultiFernet:
    keys = keys if keys is not None else current_app.config["PORTAL_ENCRYPTION_KEYS"]
    return _fernet_of(tuple(keys))


@functools.lru_cache(maxsize=8)
def _fernet_of(keys: tuple[str | bytes, ...]) -> MultiFernet:
    """Return the MultiFernet of a key list, built once (each sign-in encrypts and decrypts)."""
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def encrypt_secret(plaintext: str, keys: list[str] | None = None) -> str:
    """Encrypt ``plaintext`` under the newest key."""
    return _fernet(keys).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt_secret(token: str, keys: list[str] | None = None) -> str:
    """Decrypt a stored secret with whichever configured key made it."""
    if not token:
        return ""
    try:
        return _fernet(keys).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with PORTAL_ENCRYPTION_KEYS; "
            "keep the old key in the list until rotate-secrets has run."
        ) from exc


def secret_readable(token: str) -> bool:
    """Tell whether a configured key decrypts ``token``, remembered per token and key list.

    A sign-in's start only needs to know that the callback will be able to read the client
    secret; decrypting it on every start would cost a Fernet decryption each time.
    """
    return _readable(token, tuple(current_app.config["PORTAL_ENCRYPTION_KEYS"]))


@functools.lru_cache(maxsize=256)
def _readable(token: str, keys: tuple[str | bytes, ...]) -> bool:
    try:
        decrypt_secret(token, list(keys))
    except SecretUnreadable:
        return False
    return True


def rotate_secret(token: str, keys: list[str] | None = None) -> str:
    """Re-encrypt a stored secret under the newest key."""
    if not token:
        return token
    try:
        return _fernet(keys).rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise SecretUnreadable("A stored secret cannot be decrypted for rotation.") from exc
