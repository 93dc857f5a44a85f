"""What a provider received: each request as recorded, oldest first."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import Headers

from portal.devidp.client import decode_basic_auth


@dataclass
class RecordedRequest:
    """One request as the provider received it."""

    endpoint: str
    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """(client id, secret) decoded from ``Authorization: Basic``, else ``None``."""
        return decode_basic_auth(self.headers.get("Authorization"))

    @property
    def client_auth_method(self) -> str | None:
        """``client_secret_basic``, ``client_secret_post`` or ``None``."""
        if self.basic_auth is not None:
            return "client_secret_basic"
        if "client_secret" in self.form:
            return "client_secret_post"
        return None


class RequestLog:
    """Requests received, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def append(self, item: RecordedRequest) -> None:
        """Record a request."""
        with self._lock:
            self._items.append(item)

    def all(self, endpoint: str | None = None) -> list[RecordedRequest]:
        """Every recorded request, or those of one endpoint."""
        with self._lock:
            return [r for r in self._items if endpoint is None or r.endpoint == endpoint]

    def last(self, endpoint: str | None = None) -> RecordedRequest:
        """The most recent request (of one endpoint); ``LookupError`` when there is none."""
        items = self.all(endpoint)
        if not items:
            raise LookupError(f"no request recorded for {endpoint or 'any endpoint'}")
        return items[-1]

    def clear(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.all())
