"""The background runner, provider down/restart and the standalone command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from flask import Flask

from portal.devidp import LiveServer, OIDCProvider, closed_port_url, serve
from portal.devidp.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def test_serve_a_plain_app() -> None:
    app = Flask(__name__)
    app.add_url_rule("/", "hello", lambda: "hello")
    with serve(app) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/").text == "hello"
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/")


def test_live_server_needs_start() -> None:
    server = LiveServer(Flask(__name__))
    with pytest.raises(RuntimeError):
        _ = server.url
    assert not server.running


def test_down_and_back_on_the_same_port(oidc: OIDCProvider) -> None:
    url = oidc.discovery_url
    with httpx.Client() as http:
        assert http.get(url).status_code == 200  # pooled keep-alive connection
        oidc.stop()
        assert not oidc.running
        with pytest.raises(httpx.TransportError):
            http.get(url)
        oidc.start()
        assert oidc.discovery_url == url
        assert http.get(url).json()["issuer"] == oidc.url


def test_restart_keeps_state(oidc: OIDCProvider) -> None:
    oidc.faults.set("jwks", "status", 500)
    port = oidc.server.port
    oidc.restart()
    assert oidc.server.port == port
    assert httpx.get(oidc.jwks_url).status_code == 500


def test_closed_port_url_refuses_connections() -> None:
    url = closed_port_url()
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/token")


def test_cli_refuses_non_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--host", "0.0.0.0", "--redirect-uri", "http://127.0.0.1:9/cb"])
    assert code == 2
    assert "loopback" in capsys.readouterr().err


def test_cli_serves_the_demo_provider() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portal.devidp",
            "--port",
            "0",
            "--client-id",
            "demo",
            "--client-secret",
            "s3cret",
            "--redirect-uri",
            "http://127.0.0.1:9/cb",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in first, first
        base = first.rsplit(" ", 1)[-1].strip()
        doc = httpx.get(base + "/.well-known/openid-configuration", timeout=5).json()
        assert doc["issuer"] == base
        page = httpx.get(
            base + "/authorize",
            params={
                "response_type": "code",
                "client_id": "demo",
                "scope": "openid",
                "redirect_uri": "http://127.0.0.1:9/cb",
                "state": "s",
            },
            timeout=5,
        )
        assert page.status_code == 200 and "jdoe / demo" in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
