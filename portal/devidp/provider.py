"""What both loopback providers share: settings, lifecycle, request hooks, browserless sign-in."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Self
from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.datastructures import Headers

from portal.devidp.client import DEFAULT_CLIENT_SECRET, RegisteredClient
from portal.devidp.faults import Faults, answer_generic_fault
from portal.devidp.members import Member, Members
from portal.devidp.request_log import RecordedRequest, RequestLog
from portal.devidp.server import LOOPBACK, LiveServer, Startable


class AuthorizeFailed(Exception):
    """The authorize step answered with a page instead of a redirect back to the client."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"authorize answered {status} instead of a redirect: {text[:300]}")
        self.status = status
        self.text = text


@dataclass(frozen=True)
class Route:
    """One endpoint of a provider; ``endpoint`` is also its name in faults and the request log."""

    rule: str
    endpoint: str
    view: Callable[..., Any]
    methods: tuple[str, ...] = ("GET",)


def endpoint_url(path: str, doc: str) -> property:
    """A read-only property: the running provider's base URL followed by ``path``."""
    return property(lambda provider: f"{provider.url}{path}", doc=doc)


class BaseProvider(Startable):
    """State and lifecycle shared by the providers; subclasses build ``self.app``.

    Subclasses set ``FAULT_KINDS`` (endpoint -> kinds), ``FAULT_ALIASES`` and
    ``AUTHORIZE_PATH``, and build their app with :meth:`build_app`.
    """

    FAULT_KINDS: dict[str, frozenset[str]] = {}
    FAULT_ALIASES: dict[str, str] = {}
    AUTHORIZE_PATH = "/authorize"

    def __init__(
        self,
        *,
        client_id: str = "portal",
        client_secret: str = DEFAULT_CLIENT_SECRET,
        redirect_uris: Iterable[str] = (),
        members: Iterable[Member] = (),
        code_ttl: float = 60.0,
        token_ttl: int = 3600,
        login_hint: str | None = None,
    ) -> None:
        self.client = RegisteredClient(client_id, client_secret, list(redirect_uris))
        self.members = Members(members)
        self.faults = Faults(self.FAULT_KINDS, self.FAULT_ALIASES)
        self.requests = RequestLog()
        self.logouts: list[dict[str, str]] = []
        self.code_ttl = code_ttl
        self.token_ttl = token_ttl
        self.login_hint = login_hint
        self.server: LiveServer | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.app: Flask = self.create_app()

    def create_app(self) -> Flask:
        """Build the Flask app (subclasses)."""
        raise NotImplementedError

    # ---- lifecycle

    def start(self, port: int = 0, host: str = LOOPBACK) -> Self:
        """Serve on a loopback port (0 = a free one) in a background thread."""
        if self.server is None:
            self.server = LiveServer(self.app, host=host, port=port)
        self._wake.clear()
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving (connections are refused); ``start()`` again reuses the port."""
        self._wake.set()
        if self.server is not None:
            self.server.stop()

    @property
    def running(self) -> bool:
        """True while the provider is being served."""
        return self.server is not None and self.server.running

    @property
    def url(self) -> str:
        """Base URL of the running provider, e.g. ``http://127.0.0.1:54321``."""
        if self.server is None:
            raise RuntimeError("provider was never started; call start() or use `with`")
        return self.server.url

    def reset(self) -> None:
        """Clear faults, recorded requests, logouts, codes and tokens (members stay)."""
        self.faults.clear()
        self.requests.clear()
        self.logouts.clear()
        with self._lock:
            self.clear_grants()

    def clear_grants(self) -> None:
        """Forget issued codes and tokens (subclasses; called with the lock held)."""

    # ---- authorize without a browser

    def authorize_redirect(
        self,
        authorize_url: str,
        username: str,
        password: str | None = None,
        *,
        cancel: bool = False,
    ) -> str:
        """Submit the sign-in form for ``username`` and return the redirect back to the client.

        Runs the same code path as a browser's POST (faults, request log included), in
        process, so the provider need not be running. ``password`` defaults to the member's.
        Raises :class:`AuthorizeFailed` when the provider answers with a page (bad client,
        unregistered redirect URI, wrong password).
        """
        parts = urlsplit(authorize_url)
        if password is None:
            member = self.members.get(username)
            password = member.password if member else ""
        data = {"username": username, "password": password}
        data["action"] = "cancel" if cancel else "login"
        path = parts.path or self.AUTHORIZE_PATH
        target = f"{path}?{parts.query}" if parts.query else path
        with self.app.test_client() as client:
            resp = client.post(target, data=data, base_url=self._base_url_for_test())
        if resp.status_code not in (301, 302, 303, 307) or "Location" not in resp.headers:
            raise AuthorizeFailed(resp.status_code, resp.get_data(as_text=True))
        return resp.headers["Location"]

    def _base_url_for_test(self) -> str:
        return (
            self.server.url if self.server is not None and self.server.port else "http://localhost"
        )

    # ---- helpers for subclasses

    def new_secret(self, prefix: str) -> str:
        """A random opaque value (codes, tokens)."""
        return f"{prefix}_{secrets.token_urlsafe(24)}"

    def expire_grants(self, store: Mapping[str, Any]) -> None:
        """Make every code, token or key in ``store`` expired (each has ``expires_at``)."""
        with self._lock:
            for grant in store.values():
                grant.expires_at = 0

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early when the provider stops."""
        self._wake.wait(float(seconds))

    def build_app(self, import_name: str, routes: Iterable[Route]) -> Flask:
        """A Flask app serving ``routes`` (each view called with this provider), hooks installed."""
        app = Flask(import_name)
        app.extensions["devidp"] = self
        self.install_hooks(app)
        for route in routes:
            view = partial(route.view, self)
            app.add_url_rule(route.rule, route.endpoint, view, methods=list(route.methods))
        return app

    def install_hooks(self, app: Flask) -> None:
        """Record every request and answer generic faults before the view runs."""

        @app.before_request
        def _record_and_fault() -> Response | None:
            name = request.endpoint or "?"
            self.requests.append(
                RecordedRequest(
                    endpoint=name,
                    method=request.method,
                    path=request.path,
                    query=dict(request.args.items()),
                    headers=Headers(list(request.headers.items())),
                    body=request.get_data(cache=True),
                )
            )
            if name not in self.FAULT_KINDS:
                return None
            return self.generic_fault(name)

    def generic_fault(self, endpoint: str) -> Response | None:
        """Apply the generic faults armed on ``endpoint``; a response short-circuits the view."""
        return answer_generic_fault(self.faults, endpoint, self.sleep)
