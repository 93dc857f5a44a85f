"""Logs an operator can ship: JSON lines with a request id, never a query string."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

import pytest

from portal import create_app
from portal.config import ConfigError, load_config
from portal.request_log import JsonFormatter

SECRET_CODE = "SECRETCODE-77a1"
SECRET_STATE = "STATEVALUE-0c3d"
PROXY_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture
def json_lines():
    """Return a function that points the JSON log handlers at a buffer; restore the root
    logger's handlers after the test.

    The suite's earlier migrations left alembic's console handler on the root logger: it is
    set aside, so the app adds its own JSON handler, which the test then reads.
    """
    root = logging.getLogger()
    handlers = list(root.handlers)
    for handler in handlers:
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    buffer = io.StringIO()

    def capture() -> io.StringIO:
        for handler in root.handlers:
            if isinstance(handler.formatter, JsonFormatter):
                handler.setStream(buffer)
        return buffer

    yield capture
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)


def parsed(stderr: str) -> list[dict[str, Any]]:
    """Every line the JSON handler wrote, each parsed (a line that is not JSON fails)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_json_logs_give_one_object_per_line_with_the_request_id_and_no_query(
    app_config, json_lines, create_auth_system
):
    """Attack: a forged callback carrying a code and state is refused; the log line is JSON,
    names the failure's reference, system and code, carries the id sent back in X-Request-ID,
    and holds neither the code nor the state."""
    app = create_app({**app_config, "PORTAL_LOG_FORMAT": "json"})
    with app.app_context():
        system = create_auth_system(name="Example IdP", login_mode="local_and_remote")
        slug = system.slug
    buffer = json_lines()
    resp = app.test_client().get(f"/sso/{slug}/callback?code={SECRET_CODE}&state={SECRET_STATE}")
    assert resp.status_code == 400
    out = buffer.getvalue()
    assert SECRET_CODE not in out and SECRET_STATE not in out
    (failure,) = [d for d in parsed(out) if d["message"].startswith("SSO sign-in failed")]
    reference = re.search(r"Reference: <code>([0-9a-f]{8})</code>", resp.text).group(1)
    assert failure["level"] == "WARNING"
    assert failure["logger"] == "portal.auth.sso_views"
    assert failure["request_id"] == resp.headers["X-Request-ID"]
    assert (failure["ref"], failure["system"], failure["code"]) == (
        reference,
        slug,
        "state_invalid",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", failure["time"])


def test_a_traceback_in_json_logs_keeps_no_query():
    """An exception logged with a callback URL in its message stays one line, query cut."""
    try:
        raise RuntimeError(f"failed at /sso/x/callback?code={SECRET_CODE}")
    except RuntimeError:
        record = logging.LogRecord(
            "portal", logging.ERROR, __file__, 1, "boom at %s", ("/sso/x/callback?state=1",), True
        )
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    document = json.loads(line)
    assert document["message"] == "boom at /sso/x/callback"
    assert "RuntimeError" in document["exception"]
    assert SECRET_CODE not in line and "state=1" not in line


def test_every_response_carries_a_fresh_request_id(client):
    """Two requests, two different random ids."""
    first = client.get("/login").headers["X-Request-ID"]
    second = client.get("/nowhere").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second


def test_a_browser_cannot_choose_its_request_id(client):
    """Without a trusted proxy, an X-Request-ID sent by the client is ignored."""
    resp = client.get("/login", headers={"X-Request-ID": PROXY_ID})
    assert resp.headers["X-Request-ID"] != PROXY_ID


def test_a_trusted_proxy_passes_its_request_id_on(app_config):
    """Behind the proxy (PORTAL_TRUST_PROXY), nginx's $request_id is kept end to end."""
    app = create_app({**app_config, "PORTAL_TRUST_PROXY": True})
    resp = app.test_client().get("/login", headers={"X-Request-ID": PROXY_ID})
    assert resp.headers["X-Request-ID"] == PROXY_ID


@pytest.mark.parametrize(
    "hostile",
    [
        "short",
        "x" * 129,
        "abc def ghi jkl",
        'abcdefgh" level="CRITICAL',
        "abcdefgh\\u000aforged",
        "-leading-dash-id",
        "abcdefgh/../../etc",
        "abcdefgh?code=123",
    ],
)
def test_a_hostile_request_id_is_replaced_even_from_the_proxy(app_config, hostile):
    """An id that is not a plain token is never echoed nor logged: a fresh one is used."""
    app = create_app({**app_config, "PORTAL_TRUST_PROXY": True})
    sent = app.test_client().get("/login", headers={"X-Request-ID": hostile})
    assert re.fullmatch(r"[0-9a-f]{32}", sent.headers["X-Request-ID"])


def test_an_unknown_log_format_is_refused(tmp_path):
    """PORTAL_LOG_FORMAT=xml stops the start with a message naming the choices."""
    with pytest.raises(ConfigError, match="PORTAL_LOG_FORMAT must be text or json"):
        load_config(str(tmp_path), {"PORTAL_LOG_FORMAT": "xml"})
