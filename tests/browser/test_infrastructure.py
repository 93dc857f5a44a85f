"""The browser-test infrastructure itself: the live server stops cleanly, CI never skips."""

from __future__ import annotations

import http.client
import socket
import time

import pytest
from flask import Flask

from tests.support import browser as browser_support
from tests.support.browser import LiveServer, require_chromium


def _tiny_app() -> Flask:
    app = Flask("tiny")

    @app.route("/")
    def index() -> str:
        return "ok"

    return app


@pytest.mark.browser
def test_live_server_stops_idle_connections_threads_and_frees_the_port() -> None:
    server = LiveServer()
    server.start(_tiny_app())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"ok"
    # An idle connection, like Chromium's speculative preconnects: its handler thread
    # blocks reading a request line that never comes, until stop() cuts the socket.
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    deadline = time.monotonic() + 5
    while len(server.server.handler_threads) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(t.is_alive() for t in server.server.handler_threads)

    started = time.monotonic()
    server.stop(timeout=5)
    assert time.monotonic() - started < 2

    assert server.thread is not None and not server.thread.is_alive()
    assert all(not t.is_alive() for t in server.server.handler_threads)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    idle.close()
    conn.close()


@pytest.mark.browser
def test_live_server_reports_the_apps_error_log() -> None:
    app = _tiny_app()

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    server = LiveServer()
    server.start(app)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/boom")
        assert conn.getresponse().status == 500
        conn.close()
    finally:
        server.stop()
    assert any("Exception on /boom" in r.getMessage() for r in server.errors)


@pytest.mark.browser
def test_live_server_serves_portal_with_its_real_base_url_and_csrf(live_server) -> None:
    assert live_server.url.startswith("http://127.0.0.1:")
    assert live_server.app.config["PORTAL_BASE_URL"] == live_server.url
    assert live_server.app.config["WTF_CSRF_ENABLED"] is True
    conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=5)
    conn.request(
        "POST",
        "/login",
        body="email=a%40b.c&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = conn.getresponse()
    assert response.status == 400  # no CSRF token: refused
    assert b"Form expired" in response.read()
    conn.close()


@pytest.mark.browser
def test_missing_chromium_skips_outside_ci(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_chromium(str(tmp_path / "no-chromium"))


@pytest.mark.browser
def test_missing_chromium_fails_in_ci(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_chromium(str(tmp_path / "no-chromium"))


@pytest.mark.browser
def test_installed_chromium_is_accepted(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    if not browser_support.os.path.exists(browser_support.CHROMIUM):
        pytest.skip("Chromium is not installed here")  # the `browser` fixture fails in CI
    require_chromium()
