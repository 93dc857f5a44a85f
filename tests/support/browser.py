"""Browser-test helpers: Debian's Chromium, the live Portal server, signing in, screenshots."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.support.servers import ErrorLog, LoopbackServer

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
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "test-results"
#: Playwright's default timeout (ms) for actions and expectations: a page here answers in
#: milliseconds, so a wait this long means a broken selector, not a slow server.
DEFAULT_TIMEOUT_MS = 5_000


def in_ci() -> bool:
    """Tell whether we run in CI, where browser tests must run and never skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


class LiveServer(LoopbackServer):
    """A Portal app served on 127.0.0.1 by a background thread.

    The socket is bound before the app is created, so the app knows its real base URL.
    ``errors`` collects the app's ERROR log records (unhandled exceptions): a test that
    expects some sets ``expect_errors = True``, otherwise teardown fails on them.
    """

    def __init__(self) -> None:
        self._app: Flask | None = None
        super().__init__(access_log=False)
        self.errors: list[logging.LogRecord] = []
        self.expect_errors = False
        self._log_handler = ErrorLog(self.errors)

    @property
    def app(self) -> Flask:
        """The Flask app being served."""
        assert self._app is not None, "live server has no app yet"
        return self._app

    @app.setter
    def app(self, app: Flask | None) -> None:
        self._app = app

    def start(self, app: Flask) -> LiveServer:  # type: ignore[override]
        """Serve ``app`` until :meth:`stop`."""
        self._app = app
        app.logger.addHandler(self._log_handler)
        super().start(poll_interval=0.05)
        return self

    def stop(self, timeout: float = 5.0, wait: bool = True) -> None:
        """Stop serving, cut keep-alive connections and join every thread; close the socket."""
        try:
            super().stop(timeout, wait)
        finally:
            if self._app is not None:
                self._app.logger.removeHandler(self._log_handler)


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


def screenshot_name(nodeid: str) -> str:
    """Return the file name of a failing test's screenshot."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150] + ".png"


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
