"""No codes in logs: request lines reach the logs without their query string."""

from __future__ import annotations

import http.client
import logging

import pytest

from portal.request_log import QueryStringFilter, strip_query
from tests.support.servers import LoopbackServer

SECRET_CODE = "SECRETCODE-4f1c"
SECRET_STATE = "STATEVALUE-9a2e"


@pytest.fixture
def served(app):
    """Serve the app with werkzeug's own server and request handler on loopback."""
    server = LoopbackServer(app, threaded=False).start()
    yield server
    server.stop()


def fetch(server, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_a_callback_through_a_real_server_logs_no_code_nor_state(
    served, caplog, create_auth_system
):
    """Attack: a callback carrying code and state is served by werkzeug; the access log line
    names the path and the status, never the code or the state."""
    system = create_auth_system(name="Example IdP", login_mode="local_and_remote")
    caplog.set_level(logging.INFO)
    path = f"/sso/{system.slug}/callback"
    status = fetch(served, f"{path}?code={SECRET_CODE}&state={SECRET_STATE}")
    assert status == 400  # a state nobody issued
    access = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any(f"GET {path} HTTP/1.1" in line and " 400 " in line for line in access)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET_CODE not in everything
    assert SECRET_STATE not in everything


def test_a_bad_request_line_loses_its_query_too():
    """werkzeug's error line quoting a malformed request keeps no query either."""
    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        __file__,
        1,
        "%s - - [%s] code 400, message Bad request syntax (%r)",
        ("127.0.0.1", "now", f"GET /sso/x/callback?code={SECRET_CODE} HTTP/1.1 junk"),
        None,
    )
    assert QueryStringFilter().filter(record) is True
    assert SECRET_CODE not in record.getMessage()
    assert "/sso/x/callback" in record.getMessage()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"GET /a/b?code=1&state=2 HTTP/1.1" 302 -', '"GET /a/b HTTP/1.1" 302 -'),
        ('"GET http://h/p?x=1 HTTP/1.1" 200 5', '"GET http://h/p HTTP/1.1" 200 5'),
        (
            '"\x1b[32mGET /cb?code=1 HTTP/1.1\x1b[0m" 302 -',
            '"\x1b[32mGET /cb HTTP/1.1\x1b[0m" 302 -',
        ),
        ("no query here? none", "no query here? none"),
    ],
)
def test_strip_query(line, expected):
    """Only the query of a path goes; the rest of the line stays as it was."""
    assert strip_query(line) == expected
