"""The fault switch: which faults an endpoint takes, which are armed, and the generic answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Response, request

from portal.devidp.responses import html_page, json_response

GENERIC_FAULTS = frozenset(
    {"slow", "status", "html", "garbage", "oversized", "oversized_chunked", "oauth_error", "drop"}
)
"""Faults any HTTP endpoint can take (answered before the endpoint does its work)."""

_DEFAULTS: dict[str, Any] = {
    "slow": 3.0,
    "status": 500,
    "oversized": 2 * 1024 * 1024,
    "oversized_chunked": 2 * 1024 * 1024,
    "oauth_error": "invalid_grant",
    "error": "access_denied",
}


@dataclass
class Fault:
    """One armed fault; ``remaining`` is how many more requests it hits (``None``: all)."""

    endpoint: str
    kind: str
    value: Any
    remaining: int | None = None


class Faults:
    """The fault switch: ``set(endpoint, kind, value)``, ``clear()``.

    ``allowed`` maps endpoint names to the kinds they accept; ``aliases`` maps extra names
    (e.g. ``profile``) to endpoints. Unknown names raise ``ValueError`` so typos fail loudly.
    """

    def __init__(self, allowed: dict[str, frozenset[str]], aliases: dict[str, str]) -> None:
        self.allowed = allowed
        self.aliases = aliases
        self._lock = threading.Lock()
        self._faults: dict[str, dict[str, Fault]] = {}

    def _endpoint(self, endpoint: str) -> str:
        name = self.aliases.get(endpoint, endpoint)
        if name not in self.allowed:
            known = ", ".join(sorted([*self.allowed, *self.aliases]))
            raise ValueError(f"unknown endpoint {endpoint!r} (known: {known})")
        return name

    def set(self, endpoint: str, kind: str, value: Any = None, *, times: int | None = None) -> None:
        """Arm ``kind`` on ``endpoint`` (replacing the same kind); ``times`` limits the hits."""
        name = self._endpoint(endpoint)
        if kind not in self.allowed[name]:
            known = ", ".join(sorted(self.allowed[name]))
            raise ValueError(f"endpoint {name!r} has no fault {kind!r} (known: {known})")
        if value is None:
            value = _DEFAULTS.get(kind)
        with self._lock:
            self._faults.setdefault(name, {})[kind] = Fault(name, kind, value, times)

    def clear(self, endpoint: str | None = None, kind: str | None = None) -> None:
        """Disarm everything, everything on one endpoint, or one kind on one endpoint."""
        with self._lock:
            if endpoint is None:
                self._faults.clear()
                return
            name = self._endpoint(endpoint)
            if kind is None:
                self._faults.pop(name, None)
            else:
                self._faults.get(name, {}).pop(kind, None)

    def active(self, endpoint: str) -> dict[str, Fault]:
        """The faults armed on ``endpoint`` (a copy)."""
        with self._lock:
            return dict(self._faults.get(self._endpoint(endpoint), {}))

    def take(self, endpoint: str, kind: str) -> Fault | None:
        """Consume one hit of ``kind`` on ``endpoint``; ``None`` when it is not armed."""
        name = self._endpoint(endpoint)
        with self._lock:
            fault = self._faults.get(name, {}).get(kind)
            if fault is None:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[name][kind]
            return fault


def _oversized(size: int, chunked: bool) -> Response:
    head = b'{"padding": "'
    tail = b'"}'
    filler = max(0, int(size) - len(head) - len(tail))
    if not chunked:
        return Response(head + b"x" * filler + tail, mimetype="application/json")

    def generate() -> Iterator[bytes]:
        yield head
        left = filler
        while left > 0:
            step = min(left, 65536)
            yield b"x" * step
            left -= step
        yield tail

    return Response(generate(), mimetype="application/json")


def _drop(_: Any) -> Response:
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return Response(b"", status=500)


def _status(code: Any) -> Response:
    code = int(code)
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if code == 401 else {}
    return Response(
        f"Simulated HTTP {code} from the loopback provider.\n",
        status=code,
        mimetype="text/plain",
        headers=headers,
    )


def _html(_: Any) -> Response:
    return html_page(
        "Service unavailable",
        "<h1>We'll be right back</h1><p>The member center is undergoing maintenance.</p>",
        200,
    )


def _garbage(_: Any) -> Response:
    body = b'{"access_token": "abc", "token_type": <<not json'
    return Response(body, mimetype="application/json")


def _oauth_error(error: Any) -> Response:
    return json_response(
        {"error": str(error), "error_description": "Simulated error from the loopback provider."},
        400,
    )


# The first armed one answers, in this order.
_FAULT_RESPONSES: dict[str, Callable[[Any], Response]] = {
    "drop": _drop,
    "status": _status,
    "html": _html,
    "garbage": _garbage,
    "oversized": lambda size: _oversized(size, chunked=False),
    "oversized_chunked": lambda size: _oversized(size, chunked=True),
    "oauth_error": _oauth_error,
}


def answer_generic_fault(
    faults: Faults, endpoint: str, sleep: Callable[[float], None]
) -> Response | None:
    """Apply the generic faults armed on ``endpoint``; a response short-circuits the view."""
    armed = faults.active(endpoint)
    if not armed:
        return None
    if "slow" in armed and (fault := faults.take(endpoint, "slow")):
        sleep(fault.value)
    for kind, answer in _FAULT_RESPONSES.items():
        if kind in armed and (fault := faults.take(endpoint, kind)):
            return answer(fault.value)
    return None
