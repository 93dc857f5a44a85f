"""Codes and tokens a loopback platform issues: one store, single-use codes, expiring tokens."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Grant:
    """What a code or token stands for: whose it is, to which client, until when."""

    username: str
    expires_at: float
    client_id: str = ""
    redirect_uri: str = ""
    used: bool = False


class Grants:
    """Thread-safe opaque values (``<prefix>_<random>``) mapped to their :class:`Grant`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Grant] = {}

    def issue(self, prefix: str, grant: Grant) -> str:
        """Store ``grant`` under a new random value and return the value."""
        value = f"{prefix}_{secrets.token_urlsafe(24)}"
        with self._lock:
            self._values[value] = grant
        return value

    def live(self, value: str) -> Grant | None:
        """The unexpired grant of ``value``, else ``None``."""
        with self._lock:
            grant = self._values.get(value)
        return grant if grant is not None and grant.expires_at >= time.time() else None

    def redeem(self, value: str) -> tuple[Grant | None, str]:
        """Use a single-use code: (grant, "") or (None, why not). A second use always fails."""
        with self._lock:
            grant = self._values.get(value)
            if grant is None:
                return None, "Unknown code."
            if grant.used:
                return None, "Code was already used."
            grant.used = True
        if grant.expires_at < time.time():
            return None, "Code has expired."
        return grant, ""

    def expire(self) -> None:
        """Make every value expired."""
        with self._lock:
            for grant in self._values.values():
                grant.expires_at = 0

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()

    def keys(self) -> list[str]:
        """The issued values (as a dict of them would list them)."""
        return list(self)

    def __iter__(self) -> Iterator[str]:
        """The issued values (tests search pages and logs for them)."""
        with self._lock:
            return iter(list(self._values))
