"""Outbound calls as an attacker would aim them: internal addresses, DNS rebinding, slow drips.

Issue 12, findings 4 (connection half) and 9c. Every server here is a real loopback server;
only name resolution is faked (``socket.getaddrinfo``), because rebinding is a DNS attack.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time

import pytest
from werkzeug.wrappers import Response

from portal.sso.errors import ProviderAddressRefused, ProviderTimeout, ProviderUnreachable
from portal.sso.http import HttpClient, HttpSettings
from portal.sso.netpolicy import AddressPolicy
from tests.support.servers import App, LoopbackServer, read_request_head

PRODUCTION = AddressPolicy()
#: In these tests 127.0.0.1 stands for "the public internet": the only address allowed.
ONLY_127_0_0_1 = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))


def settings(policy: AddressPolicy, **kw) -> HttpSettings:
    return HttpSettings(connect_timeout=0.5, read_timeout=0.5, policy=policy, **kw)


@pytest.fixture
def client_for():
    clients: list[HttpClient] = []

    def make(policy: AddressPolicy, **kw) -> HttpClient:
        client = HttpClient(settings(policy, **kw))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def app() -> App:
    app = App()
    app.routes["/token"] = lambda r: Response(
        json.dumps({"access_token": "x"}), content_type="application/json"
    )
    return app


@pytest.fixture
def fake_dns(monkeypatch):
    """Answer ``*.test`` names from a script: each lookup pops the next list of addresses."""
    real = socket.getaddrinfo
    answers: dict[str, list[list[str]]] = {}
    lookups: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(".test"):
            return real(host, port, *args, **kwargs)
        lookups.append(name)
        script = answers[name]
        addresses = script.pop(0) if len(script) > 1 else script[0]
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (ip, int(port)) if ":" not in ip else (ip, int(port), 0, 0),
            )
            for ip in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, lookups


def test_production_policy_refuses_loopback_before_any_byte(client_for, serve, app):
    """A token URL on 127.0.0.1 with the production policy: refused, the server hears nothing."""
    server = serve(app)
    http = client_for(PRODUCTION)
    with pytest.raises(ProviderAddressRefused) as caught:
        http.request("POST", server.url + "/token", body=b"client_secret=s3cr3t")
    assert caught.value.code == "provider_address_refused"
    assert "identity provider is unavailable" in caught.value.user_message
    assert "127.0.0.1" in caught.value.log_detail
    assert "loopback" in caught.value.log_detail
    assert app.requests == []


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("fd00::1", "unique-local"),
        ("::ffff:127.0.0.1", "loopback"),
    ],
)
def test_a_name_resolving_to_an_internal_address_is_refused(client_for, fake_dns, address, why):
    """Whatever the URL says, the address the name resolves to is what is checked."""
    answers, _ = fake_dns
    answers["metadata-proxy.test"] = [[address]]
    http = client_for(PRODUCTION)
    with pytest.raises(ProviderAddressRefused) as caught:
        http.request("GET", "http://metadata-proxy.test/latest/meta-data/")
    assert why in caught.value.log_detail
    assert "metadata-proxy.test" in caught.value.log_detail


def test_dns_rebinding_is_refused_at_connect_time(client_for, serve, app, fake_dns):
    """The name first resolves to the allowed address, then rebinds to another one.

    The request is sent to the address that was checked (one lookup per connection, no
    second resolution), and after the rebinding the new address is refused: the server
    listening there hears nothing.
    """
    server = serve(app)
    port = server.port
    inside = App()
    inside.routes["/token"] = app.routes["/token"]
    internal = LoopbackServer(inside, host="127.0.0.2", port=port).start()
    try:
        answers, lookups = fake_dns
        answers["idp.rebind.test"] = [["127.0.0.1"], ["127.0.0.2"]]
        http = client_for(ONLY_127_0_0_1)
        resp = http.request("GET", f"http://idp.rebind.test:{port}/token")
        assert resp.status == 200
        assert lookups == ["idp.rebind.test"]
        assert app.requests[0]["headers"]["Host"] == f"idp.rebind.test:{port}"

        http.close()  # no pooled connection: the next request resolves again
        http = client_for(ONLY_127_0_0_1)
        with pytest.raises(ProviderAddressRefused):
            http.request("GET", f"http://idp.rebind.test:{port}/token")
        assert inside.requests == []
        assert len(app.requests) == 1
    finally:
        internal.stop(wait=False)


def test_a_name_resolving_to_an_allowed_and_an_internal_address_is_refused(
    client_for, serve, app, fake_dns
):
    """Every resolved address is checked: one good address does not let the bad one in."""
    server = serve(app)
    answers, _ = fake_dns
    answers["both.test"] = [["127.0.0.1", "10.0.0.5"]]
    http = client_for(ONLY_127_0_0_1)
    with pytest.raises(ProviderAddressRefused) as caught:
        http.request("GET", f"http://both.test:{server.port}/token")
    assert "private network" in caught.value.log_detail
    assert app.requests == []


def test_allowed_private_networks_let_an_on_premises_provider_through(client_for, serve, app):
    """PORTAL_ALLOWED_PRIVATE_NETWORKS: a listed network is reachable in production."""
    server = serve(app)
    policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    assert client_for(policy).request("GET", server.url + "/token").status == 200
    assert app.hits("/token") == 1


def test_development_policy_reaches_loopback(client_for, serve, app):
    """Loopback stays allowed in development."""
    server = serve(app)
    http = client_for(AddressPolicy(allow_loopback=True))
    assert http.request("GET", server.url + "/token").status == 200


def test_tls_uses_the_host_name_while_connecting_to_the_checked_address(
    client_for, serve, app, fake_dns, tmp_path
):
    """SNI (and so the certificate check) names the host, not the pinned IP address."""
    from .test_http import _self_signed

    cert, key = _self_signed(tmp_path)
    seen: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen.append(name)
    server = serve(app, ssl_context=context)
    answers, _ = fake_dns
    answers["idp.pinned.test"] = [["127.0.0.1"]]
    http = client_for(ONLY_127_0_0_1)
    with pytest.raises(ProviderUnreachable):  # self-signed: the certificate is verified
        http.request("GET", f"https://idp.pinned.test:{server.port}/token")
    assert seen == ["idp.pinned.test"]
    assert app.requests == []


# -- the total deadline (finding 9c) -----------------------------------------------------------


def test_slow_drip_body_fails_at_the_total_deadline(client_for, raw_server):
    """A byte every 0.2 s never trips the read timeout, but the total deadline stops it."""

    def drip(conn):
        read_request_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):
            conn.sendall(b" ")
            time.sleep(0.2)

    url = raw_server(drip)
    http = client_for(AddressPolicy(allow_loopback=True), total_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        http.request("GET", url + "/token")
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.8
    assert "total deadline" in caught.value.log_detail
    assert caught.value.code == "provider_timeout"


def test_slow_drip_headers_fail_at_the_total_deadline(client_for, raw_server):
    """Dripping the status line and headers is stopped by the deadline as well."""

    def drip(conn):
        read_request_head(conn)
        for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 100:
            conn.sendall(bytes([byte]))
            time.sleep(0.2)

    url = raw_server(drip)
    http = client_for(AddressPolicy(allow_loopback=True), total_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        http.request("GET", url + "/token")
    assert time.monotonic() - started < 1.8


def test_the_deadline_is_per_request(client_for, serve, app):
    """A pooled connection is reused by later requests, each with a fresh deadline."""
    server = serve(app)
    http = client_for(AddressPolicy(allow_loopback=True), total_timeout=1.0)
    for _ in range(3):
        assert http.request("GET", server.url + "/token").status == 200
        time.sleep(0.6)


# -- the trace redacts by value (finding 4) ----------------------------------------------------


def test_trace_redacts_registered_secrets_wherever_they_appear():
    """Values under any key, inside strings, as keys and as numbers; in requests too."""
    from portal.sso.trace import Trace

    trace = Trace()
    trace.add_secrets(["s3cr3t-value", "tok-123", "987654321"])
    doc = {
        "note": "s3cr3t-value",
        "data": {"x": ["prefix tok-123 suffix"], "tok-123": 1},
        "n": 987654321,
        "token_type": "Bearer",
        "fine": "hello",
    }
    shown = repr(trace.redact_doc(doc))
    for secret in ("s3cr3t-value", "tok-123", "987654321"):
        assert secret not in shown
    assert "Bearer" in shown and "hello" in shown
    trace.record_request(
        "POST",
        "https://idp.example/token?x=tok-123",
        [("Authorization", "Bearer tok-123")],
        b"client_secret=s3cr3t-value",
        status=200,
        elapsed_ms=1.0,
    )
    assert "tok-123" not in repr(trace.entries) and "s3cr3t-value" not in repr(trace.entries)


def test_settings_come_from_the_config(tmp_path):
    """PORTAL_HTTP_TOTAL_TIMEOUT is read from the environment (15 s by default)."""
    from portal.config import load_config

    assert load_config(str(tmp_path), env={})["PORTAL_HTTP_TOTAL_TIMEOUT"] == 15.0
    env = {"PORTAL_HTTP_TOTAL_TIMEOUT": "7.5"}
    assert load_config(str(tmp_path), env=env)["PORTAL_HTTP_TOTAL_TIMEOUT"] == 7.5
