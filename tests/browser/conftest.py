"""Browser-test fixtures: a live Portal server on loopback and Debian's Chromium via Playwright.

- ``live_server``: the suite's ``app`` (clean tables, CSRF on, ``PORTAL_BASE_URL`` = the real
  ``http://127.0.0.1:<port>``) served by werkzeug in a background thread; stopped, with every
  request thread joined, before the tables are emptied.
- ``browser``: one headless Chromium per session (``/usr/bin/chromium``; Playwright cannot
  download browsers here). Missing Chromium skips the browser tests, except with ``CI=true``.
- ``page``: a fresh context per test, whose relative URLs go to the live server and whose
  requests never leave loopback; a failed test leaves a screenshot in ``test-results/``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from portal.extensions import db

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "test-results"
#: Playwright's default timeout (ms) for actions and expectations: a page here answers in
#: milliseconds, so a wait this long means a broken selector, not a slow server.
DEFAULT_TIMEOUT_MS = 5_000


def in_ci() -> bool:
    """Tell whether we run in CI, where browser tests must run and never skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


# --------------------------------------------------------------------------- live server


class _Handler(WSGIRequestHandler):
    """Quiet request handler that registers its connection and thread with the server."""

    def setup(self) -> None:
        super().setup()
        server: _TrackedServer = self.server  # type: ignore[assignment]
        with server.tracking_lock:
            server.connections.add(self.connection)
            server.handler_threads.add(threading.current_thread())

    def finish(self) -> None:
        server: _TrackedServer = self.server  # type: ignore[assignment]
        with server.tracking_lock:
            server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Stay quiet: pytest shows the app's own log on failure."""


class _TrackedServer(BaseWSGIServer):
    """Attributes the handler fills in (set on the instance make_server returns)."""

    connections: set[socket.socket]
    handler_threads: set[threading.Thread]
    tracking_lock: threading.Lock


class LiveServer:
    """A Portal app served on 127.0.0.1 by a background thread.

    The socket is bound before the app is created, so the app knows its real base URL.
    ``errors`` collects the app's ERROR log records (unhandled exceptions): a test that
    expects some sets ``expect_errors = True``, otherwise teardown fails on them.
    """

    def __init__(self) -> None:
        self._app: Flask | None = None
        self.server: _TrackedServer = make_server(  # type: ignore[assignment]
            LOOPBACK, 0, self._dispatch, threaded=True, request_handler=_Handler
        )
        self.server.connections = set()
        self.server.handler_threads = set()
        self.server.tracking_lock = threading.Lock()
        self.port: int = self.server.server_port
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.thread: threading.Thread | None = None
        self.errors: list[logging.LogRecord] = []
        self.expect_errors = False
        self._log_handler = _ListHandler(self.errors)

    @property
    def app(self) -> Flask:
        """The Flask app being served."""
        assert self._app is not None, "live server has no app yet"
        return self._app

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.app.wsgi_app(environ, start_response)

    def start(self, app: Flask) -> None:
        """Serve ``app`` until :meth:`stop`."""
        self._app = app
        app.logger.addHandler(self._log_handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"portal-live-server-{self.port}",
            daemon=True,
        )
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, cut keep-alive connections and join every thread; close the socket."""
        try:
            if self.thread is not None:
                self.server.shutdown()
                self.thread.join(timeout)
            with self.server.tracking_lock:
                conns = list(self.server.connections)
                threads = list(self.server.handler_threads)
            for conn in conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            deadline = time.monotonic() + timeout
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        finally:
            self.server.server_close()
            if self._app is not None:
                self._app.logger.removeHandler(self._log_handler)
        leaked = [t.name for t in [self.thread, *threads] if t is not None and t.is_alive()]
        if leaked:
            raise RuntimeError(f"live server threads still running after stop: {leaked}")

    def url_for(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return self.url + (path if path.startswith("/") else "/" + path)


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(level=logging.ERROR)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.append(record)


@pytest.fixture
def _live_server_socket() -> Iterator[LiveServer]:
    """A bound (not yet serving) server, so that the app config can name its real port."""
    server = LiveServer()
    try:
        yield server
    finally:
        # live_server stops it normally; this closes the socket when the app failed to build.
        if server.thread is None:
            server.server.server_close()


@pytest.fixture
def app_config(app_config: dict[str, Any], _live_server_socket: LiveServer) -> dict[str, Any]:
    """The suite's config, made real: CSRF on, not TESTING, the server's own base URL."""
    return {
        **app_config,
        "TESTING": False,
        "WTF_CSRF_ENABLED": True,
        "PORTAL_BASE_URL": _live_server_socket.url,
        "SERVER_NAME": None,
    }


@pytest.fixture
def live_server(app: Flask, _live_server_socket: LiveServer) -> Iterator[LiveServer]:
    """Serve the suite's ``app`` (clean tables on teardown, like ``app``) on 127.0.0.1.

    Depends on ``app``, so the server is stopped before ``app`` empties the tables.
    """
    server = _live_server_socket
    server.start(app)
    try:
        yield server
    finally:
        # This thread's session may hold a read transaction or stale objects: release it.
        db.session.remove()
        server.stop()
    if server.errors and not server.expect_errors:
        details = "\n".join(logging.Formatter().format(record) for record in server.errors)
        pytest.fail(f"the live server logged errors:\n{details}")


# --------------------------------------------------------------------------- browser


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Remember each phase's report on the item, for the screenshot on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the whole session (sync Playwright API)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def require_chromium(path: str | None = None) -> None:
    """Skip when Chromium or Playwright is missing; with ``CI=true``, fail instead."""
    path = path or CHROMIUM
    missing = None
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        missing = f"Chromium is not installed at {path} (Debian package 'chromium')"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:  # pragma: no cover - the test extra is not installed
            missing = f"Playwright for Python is not installed ({exc})"
    if missing:
        if in_ci():
            pytest.fail(f"{missing}: CI=true requires the browser tests to run.", pytrace=False)
        pytest.skip(missing)


def _screenshot_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150] + ".png"


@pytest.fixture
def context(browser: Any, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) whose relative URLs go to the live server.

    Every request to a host other than loopback is aborted, so nothing leaves the machine.
    """
    ctx = browser.new_context(base_url=live_server.url, locale="en-US", service_workers="block")
    ctx.set_default_timeout(DEFAULT_TIMEOUT_MS)

    def only_loopback(route: Any) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in LOOPBACK_HOSTS or route.request.url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            route.abort("blockedbyclient")

    ctx.route(re.compile(r"^https?://"), only_loopback)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page in a fresh context; on failure a full-page screenshot goes to test-results/."""
    from playwright.sync_api import expect

    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    pg = context.new_page()
    yield pg
    failed = any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    if failed and not pg.is_closed():
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / _screenshot_name(request.node.nodeid)
        try:
            pg.screenshot(path=str(path), full_page=True)
        except Exception as exc:  # noqa: BLE001 - never mask the test's own failure
            print(f"screenshot failed: {exc}")
        else:
            print(f"screenshot of the failing page: {path} (at {pg.url})")


# --------------------------------------------------------------------------- helpers


def sign_in(page: Any, email: str, password: str) -> None:
    """Sign in through the real local form on /login (labels as the page shows them)."""
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@contextmanager
def running_oidc_provider(
    live_server: LiveServer, slug: str, client_id: str, client_secret: str, members: list[Any]
) -> Iterator[Any]:
    """Run a loopback OIDC provider that knows Portal's Redirect URL for ``slug`` and home page."""
    from portal.devidp import OIDCProvider
    from portal.sso.idtoken import get_jwks_cache

    get_jwks_cache().clear()
    provider = OIDCProvider(
        client_id=client_id,
        client_secret=client_secret,
        redirect_uris=[live_server.url_for(f"/sso/{slug}/callback")],
        members=members,
    )
    provider.client.post_logout_redirect_uris = [live_server.url_for("/")]
    with provider:
        yield provider
    get_jwks_cache().clear()


def save_screenshot(page: Any, target: Path) -> None:
    """Screenshot the page into test-results/, and into ``target`` (committed, for the README).

    ``target`` is written only when missing or with PORTAL_UPDATE_SCREENSHOTS=1, because ports
    differ on every run and the tree is shared: a test run must not dirty it.
    """
    RESULTS_DIR.mkdir(exist_ok=True)
    shot = RESULTS_DIR / target.name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("PORTAL_UPDATE_SCREENSHOTS") == "1" or not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
