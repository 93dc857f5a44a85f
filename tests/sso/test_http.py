"""Outbound HTTP: real loopback servers, never mocks."""

import datetime
import json
import socket
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.wrappers import Response

from portal.sso.errors import (
    OAuthErrorResponse,
    ProviderBadResponse,
    ProviderHTTPError,
    ProviderTimeout,
    ProviderUnreachable,
    ResponseTooLarge,
)
from portal.sso.http import (
    HttpClient,
    HttpResponse,
    HttpSettings,
    get_http_client,
)
from portal.sso.responses import parse_json_or_form
from tests.support.servers import App, read_request_head


def json_response(doc, status=200, **kwargs):
    return Response(json.dumps(doc), status=status, content_type="application/json", **kwargs)


def fetch(http, server, path, *, allow_form=True):
    return parse_json_or_form(http.request("GET", server.url + path), allow_form=allow_form)


@pytest.fixture
def app():
    return App()


def test_request_returns_status_headers_content_and_time(http, serve, app):
    """A JSON answer comes back whole, with its status and elapsed time."""
    app.routes["/doc"] = lambda r: json_response({"a": 1}, status=201)
    server = serve(app)
    resp = http.request("GET", server.url + "/doc", headers=[("Accept", "application/json")])
    assert resp.status == 201
    assert resp.content == b'{"a": 1}'
    assert resp.content_type == "application/json"
    assert resp.elapsed_ms > 0
    assert parse_json_or_form(resp, allow_form=False) == {"a": 1}


def test_request_sends_method_headers_and_body(http, serve, app):
    """Method, body and headers (UTF-8 values included) reach the server."""
    app.routes["/echo"] = lambda r: json_response({})
    server = serve(app)
    http.request("post", server.url + "/echo", headers=[("X-Name", "Zoë")], body=b"a=1&b=%2B")
    (seen,) = app.requests
    assert seen["method"] == "POST"
    assert seen["body"] == b"a=1&b=%2B"
    assert seen["headers"]["X-Name"].encode("latin-1").decode("utf-8") == "Zoë"


def test_request_asks_for_plain_content_and_names_itself(http, serve, app):
    """Without a template's own headers, a call asks for no content coding and says who it is."""
    app.routes["/echo"] = lambda r: json_response({})
    server = serve(app)
    http.request("GET", server.url + "/echo")
    (seen,) = app.requests
    assert seen["headers"]["Accept-Encoding"] == "identity"
    assert seen["headers"]["User-Agent"] == "Portal"
    assert seen["headers"]["Host"] == server.url.split("://", 1)[1]


def test_template_headers_replace_the_defaults(http, serve, app):
    """A header the template sets (any case) is sent once, with the template's value."""
    app.routes["/echo"] = lambda r: json_response({})
    server = serve(app)
    http.request("GET", server.url + "/echo", headers=[("user-agent", "AMS-Client/2")])
    (seen,) = app.requests
    assert seen["headers"]["User-Agent"] == "AMS-Client/2"


def test_compressed_answer_is_not_inflated(http, serve, app):
    """A provider that gzips anyway gets no decompression: a small bomb stays small."""
    import gzip

    bomb = gzip.compress(b"0" * 5_000_000)
    app.routes["/bomb"] = lambda r: Response(
        bomb, content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    server = serve(app)
    resp = http.request("GET", server.url + "/bomb")
    assert resp.content == bomb
    with pytest.raises(ProviderBadResponse):
        parse_json_or_form(resp, allow_form=False)


def test_form_encoded_token_response_is_accepted_when_allowed(http, serve, app):
    """A form-encoded answer parses when allowed and is refused otherwise."""
    app.routes["/form"] = lambda r: Response(
        "access_token=abc%2Bd&token_type=bearer&scope=",
        content_type="application/x-www-form-urlencoded",
    )
    server = serve(app)
    assert fetch(http, server, "/form") == {
        "access_token": "abc+d",
        "token_type": "bearer",
        "scope": "",
    }
    with pytest.raises(ProviderBadResponse):
        fetch(http, server, "/form", allow_form=False)


@pytest.mark.parametrize("status", [200, 400, 401])
def test_oauth_error_body_is_oauth_error_response(http, serve, app, status):
    """An OAuth error document wins over the HTTP status."""
    app.routes["/err"] = lambda r: json_response(
        {"error": "invalid_grant", "error_description": "Code expired"}, status=status
    )
    server = serve(app)
    with pytest.raises(OAuthErrorResponse) as info:
        fetch(http, server, "/err")
    assert info.value.error == "invalid_grant"
    assert info.value.description == "Code expired"
    assert "invalid_grant" in info.value.log_detail


def test_form_encoded_oauth_error(http, serve, app):
    """A form-encoded error is an OAuthErrorResponse too."""
    app.routes["/err"] = lambda r: Response(
        "error=invalid_client", 401, content_type="application/x-www-form-urlencoded"
    )
    server = serve(app)
    with pytest.raises(OAuthErrorResponse) as info:
        fetch(http, server, "/err")
    assert info.value.error == "invalid_client"


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_error_status_is_provider_http_error(http, serve, app, status):
    """4xx/5xx without an OAuth error document is a ProviderHTTPError."""
    app.routes["/fail"] = lambda r: Response("<html>Oops</html>", status, content_type="text/html")
    server = serve(app)
    with pytest.raises(ProviderHTTPError) as info:
        fetch(http, server, "/fail")
    assert info.value.status == status
    assert str(status) in info.value.log_detail


def test_redirect_is_not_followed(http, serve, app):
    """A 302 is returned as is, never followed, and is a ProviderHTTPError when parsed."""
    app.routes["/moved"] = lambda r: Response("", 302, headers={"Location": "/target"})
    app.routes["/target"] = lambda r: json_response({"followed": True})
    server = serve(app)
    resp = http.request("GET", server.url + "/moved")
    assert resp.status == 302
    with pytest.raises(ProviderHTTPError) as info:
        parse_json_or_form(resp, allow_form=True)
    assert info.value.status == 302
    assert app.hits("/target") == 0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<!DOCTYPE html><html><title>Login</title></html>", "text/html"),
        ("<html>not json</html>", "application/json"),
        ("  <html>", "text/plain"),
    ],
)
def test_html_is_bad_response_named_html(http, serve, app, body, content_type):
    """HTML where JSON was expected is a ProviderBadResponse that says HTML."""
    app.routes["/html"] = lambda r: Response(body, content_type=content_type)
    server = serve(app)
    with pytest.raises(ProviderBadResponse) as info:
        fetch(http, server, "/html")
    assert "HTML" in info.value.log_detail
    assert "invalid JSON" not in info.value.log_detail


@pytest.mark.parametrize("body", ['{"access_token": "x"', "{'a': 1}", "garbage", '{"a": NaN'])
def test_invalid_json_is_bad_response_named_invalid_json(http, serve, app, body):
    """Invalid JSON is a ProviderBadResponse distinguished from HTML."""
    app.routes["/bad"] = lambda r: Response(body, content_type="application/json")
    server = serve(app)
    with pytest.raises(ProviderBadResponse) as info:
        fetch(http, server, "/bad")
    assert "JSON" in info.value.log_detail and "HTML" not in info.value.log_detail


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', ""])
def test_non_object_json_is_bad_response(http, serve, app, body):
    """A JSON array, string or empty body is not a usable document."""
    app.routes["/arr"] = lambda r: Response(body, content_type="application/json")
    server = serve(app)
    with pytest.raises(ProviderBadResponse):
        fetch(http, server, "/arr")


def test_declared_oversized_response_is_refused(http, serve, app):
    """A Content-Length beyond the cap is refused before reading."""
    app.routes["/big"] = lambda r: Response(b"x" * (http.settings.max_bytes + 1))
    server = serve(app)
    with pytest.raises(ResponseTooLarge):
        http.request("GET", server.url + "/big")


def test_streamed_oversized_response_stops_at_cap(http, serve, app):
    """A chunked answer is read only up to the cap."""

    def endless():
        for _ in range(100):
            yield b"y" * 8192

    app.routes["/stream"] = lambda r: Response(endless(), content_type="application/json")
    server = serve(app)
    with pytest.raises(ResponseTooLarge):
        http.request("GET", server.url + "/stream")


def test_endless_body_without_length_stops_at_cap(http, raw_server):
    """A server that never stops sending is cut off at the cap, quickly."""

    def flood(conn):
        read_request_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        while True:
            conn.sendall(b"z" * 65536)

    url = raw_server(flood)
    started = time.monotonic()
    with pytest.raises(ResponseTooLarge):
        http.request("GET", url + "/")
    assert time.monotonic() - started < 2


def test_small_response_under_cap_passes(http, serve, app):
    """A response exactly at the cap is accepted."""
    app.routes["/edge"] = lambda r: Response(b"x" * http.settings.max_bytes)
    server = serve(app)
    assert len(http.request("GET", server.url + "/edge").content) == http.settings.max_bytes


def test_connection_refused_is_unreachable(http, closed_port_url):
    """Nobody listening is ProviderUnreachable."""
    with pytest.raises(ProviderUnreachable):
        http.request("GET", closed_port_url + "/token")


def test_unsupported_scheme_is_unreachable(http):
    """A URL that is not http(s) is ProviderUnreachable, not a crash."""
    with pytest.raises(ProviderUnreachable):
        http.request("GET", "ftp://127.0.0.1/x")


def test_accept_then_hang_times_out(hasty_http, raw_server):
    """A server that accepts and never answers is ProviderTimeout after the read timeout."""
    url = raw_server(lambda conn: (read_request_head(conn), time.sleep(3)))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        hasty_http.request("GET", url + "/token")
    assert time.monotonic() - started < 2


def test_slow_body_times_out(hasty_http, raw_server):
    """A server that stalls mid-body is ProviderTimeout."""

    def slow(conn):
        read_request_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(3)

    url = raw_server(slow)
    with pytest.raises(ProviderTimeout):
        hasty_http.request("GET", url + "/")


def test_connection_closed_without_answer_is_unreachable(http, raw_server):
    """A server that closes the connection at once is ProviderUnreachable."""
    url = raw_server(lambda conn: read_request_head(conn))
    with pytest.raises(ProviderUnreachable):
        http.request("GET", url + "/")


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def test_tls_certificate_is_verified(http, serve, app, tmp_path):
    """A self-signed certificate is refused: TLS is verified."""
    app.routes["/token"] = lambda r: json_response({"access_token": "x"})
    server = serve(app, ssl_context=_self_signed(tmp_path))
    with pytest.raises(ProviderUnreachable):
        http.request("GET", server.url + "/token")
    assert app.hits("/token") == 0


def test_get_http_client_pools_per_settings():
    """The same settings give the same client; other settings another."""
    a = get_http_client(HttpSettings(read_timeout=1.5))
    assert get_http_client(HttpSettings(read_timeout=1.5)) is a
    assert get_http_client(HttpSettings(read_timeout=2.5)) is not a
    assert isinstance(a, HttpClient)


def test_trace_recorder_receives_each_request(http, serve, app, closed_port_url):
    """A trace hears about successes and failures."""
    app.routes["/ok"] = lambda r: json_response({})
    server = serve(app)
    calls = []

    class Recorder:
        def record_request(self, method, url, headers, body, **kw):
            calls.append((method, url, kw["status"], kw.get("error")))

    http.request("GET", server.url + "/ok", trace=Recorder())
    with pytest.raises(ProviderUnreachable):
        http.request("POST", closed_port_url + "/x", body=b"", trace=Recorder())
    assert calls == [
        ("GET", server.url + "/ok", 200, None),
        ("POST", closed_port_url + "/x", None, "provider_unreachable"),
    ]


def test_parse_accepts_json_with_bom_and_charset():
    """A BOM and a charset parameter do not get in the way."""
    resp = HttpResponse(
        200,
        __import__("httpx").Headers({"content-type": "application/json; charset=utf-8"}),
        '\ufeff{"a": "é"}'.encode(),
        1.0,
    )
    assert parse_json_or_form(resp, allow_form=False) == {"a": "é"}


# -- keep-alive: one connection for a sign-in's calls, a dropped one replaced ------------------

_KEEP_ALIVE_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


def test_calls_to_one_provider_share_a_kept_alive_connection(http, raw_server):
    """A sign-in's token and profile calls reuse one connection: the server sees one accept."""
    accepted: list[int] = []

    def keep_alive(conn):
        accepted.append(1)
        while read_request_head(conn):
            conn.sendall(_KEEP_ALIVE_ANSWER)

    url = raw_server(keep_alive)
    for _ in range(3):
        assert http.request("POST", url + "/token", body=b"code=x").content == b"{}"
    assert len(accepted) == 1


def test_a_connection_the_provider_closed_while_idle_is_replaced(http, raw_server):
    """A provider that closes idle connections costs a new connection, never a failed sign-in."""
    accepted: list[int] = []

    def one_answer_then_close(conn):
        accepted.append(1)
        read_request_head(conn)
        conn.sendall(_KEEP_ALIVE_ANSWER)
        conn.close()

    url = raw_server(one_answer_then_close)
    assert http.request("GET", url + "/userinfo").status == 200
    time.sleep(0.2)  # the server's close reaches this side
    assert http.request("GET", url + "/userinfo").status == 200
    assert len(accepted) == 2


def test_a_token_request_goes_out_in_one_write(http, raw_server, monkeypatch):
    """Head and form body leave in one write: one segment and one wake-up of the provider."""
    received: list[bytes] = []

    def keep_alive(conn):
        while head := read_request_head(conn):
            received.append(head)
            conn.sendall(_KEEP_ALIVE_ANSWER)

    url = raw_server(keep_alive)
    writes: list[int] = []
    real_sendall = socket.socket.sendall

    port = int(url.rsplit(":", 1)[1])

    def counting_sendall(sock, data, *args):
        if sock.getpeername()[1] == port:  # Portal's side, not the server's answer
            writes.append(len(data))
        return real_sendall(sock, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", counting_sendall)
    body = b"grant_type=authorization_code&code=abc"
    http.request("POST", url + "/token", body=body)

    assert len(writes) == 1
    assert received[0].endswith(b"\r\n\r\n" + body)
