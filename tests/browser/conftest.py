"""Browser-test fixtures: a live Portal server on loopback and Debian's Chromium via Playwright.

- ``live_server``: the suite's ``app`` (clean tables, CSRF on, ``PORTAL_BASE_URL`` = the real
  ``http://127.0.0.1:<port>``) served by werkzeug in a background thread; stopped, with every
  request thread joined, before the tables are emptied.
- ``browser``: one headless Chromium per session (``/usr/bin/chromium``; Playwright cannot
  download browsers here). Missing Chromium skips the browser tests, except with ``CI=true``.
- ``page``: a fresh context per test, whose relative URLs go to the live server and whose
  requests never leave loopback; a failed test leaves a screenshot in ``test-results/``.

Helpers (``LiveServer``, ``sign_in``, ``running_oidc_provider``) are in tests/support/browser.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from portal.extensions import db
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DEFAULT_TIMEOUT_MS,
    LOOPBACK_HOSTS,
    RESULTS_DIR,
    LiveServer,
    require_chromium,
    screenshot_name,
)


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
        path = RESULTS_DIR / screenshot_name(request.node.nodeid)
        try:
            pg.screenshot(path=str(path), full_page=True)
        except Exception as exc:  # noqa: BLE001 - never mask the test's own failure
            print(f"screenshot failed: {exc}")
        else:
            print(f"screenshot of the failing page: {path} (at {pg.url})")
