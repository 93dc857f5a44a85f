"""Loopback servers, keys and ID tokens for the SSO engine tests."""

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from portal.sso.http import HttpClient, HttpSettings
from portal.sso.netpolicy import AddressPolicy

#: Loopback test servers are reached as in development: the policy allows loopback.
DEV_POLICY = AddressPolicy(allow_loopback=True)
FAST = HttpSettings(connect_timeout=0.5, read_timeout=0.4, max_bytes=64 * 1024, policy=DEV_POLICY)


class App:
    """A tiny WSGI app: path -> handler(request) -> Response; records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[Request], Response]] = {}
        self.requests: list[dict] = []

    def route(self, path: str):
        """Register a handler for a path (decorator)."""

        def register(handler):
            self.routes[path] = handler
            return handler

        return register

    def hits(self, path: str) -> int:
        """Return how many requests reached a path."""
        return sum(1 for r in self.requests if r["path"] == path)

    def __call__(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "args": request.args.to_dict(flat=False),
                "headers": dict(request.headers),
                "body": body,
                "raw_query": request.query_string,
            }
        )
        handler = self.routes.get(request.path)
        response = handler(request) if handler else Response("not found", 404)
        return response(environ, start_response)


class Server:
    """A threaded werkzeug server on 127.0.0.1 with an ephemeral port."""

    def __init__(self, app, ssl_context=None) -> None:
        self.app = app
        self.httpd = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ssl_context)
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Start loopback WSGI servers; stop them after the test."""
    servers: list[Server] = []

    def start(app=None, ssl_context=None) -> Server:
        server = Server(app or App(), ssl_context=ssl_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """Start raw TCP servers whose handler(conn) misbehaves as a test needs; return base URL."""
    listeners: list[socket.socket] = []
    stop = threading.Event()

    def start(handler: Callable[[socket.socket], None]) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.1)
        listeners.append(listener)

        def loop():
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except (TimeoutError, OSError):
                    continue
                threading.Thread(target=_run, args=(handler, conn), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    for listener in listeners:
        listener.close()


def _run(handler, conn: socket.socket) -> None:
    try:
        conn.settimeout(5)
        handler(conn)
    except OSError:
        pass
    finally:
        conn.close()


def read_request_head(conn: socket.socket) -> bytes:
    """Read a request up to the end of its headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def http() -> Iterator[HttpClient]:
    """A fresh client with short timeouts and a 64 KiB cap."""
    client = HttpClient(FAST)
    yield client
    client.close()


@pytest.fixture
def closed_port_url() -> str:
    """Return a loopback URL nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def rsa_keys() -> dict[str, RSAKey]:
    """Three RSA signing keys, by kid."""
    return {
        kid: RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})
        for kid in ("k1", "k2", "k3")
    }


def jwks_of(*keys: RSAKey) -> dict:
    """Return the public JWKS document of keys."""
    return {"keys": [key.as_dict(private=False) for key in keys]}


def jwks_response(doc: dict) -> Response:
    """Return a JSON response for a JWKS document."""
    return Response(json.dumps(doc), content_type="application/json")


@pytest.fixture
def make_id_token(rsa_keys) -> Callable[..., str]:
    """Return a minting function: claims overrides, key, header overrides."""

    def mint(
        *,
        key: RSAKey | None = None,
        header: dict | None = None,
        iss: str = "https://idp.example",
        aud: str | list[str] = "client-1",
        nonce: str = "nonce-1",
        sub: str = "user-42",
        exp_in: int = 300,
        **extra,
    ) -> str:
        key = key or rsa_keys["k1"]
        now = int(time.time())
        claims = {
            "iss": iss,
            "aud": aud,
            "nonce": nonce,
            "sub": sub,
            "iat": now,
            "exp": now + exp_in,
            "jti": uuid.uuid4().hex,
            **extra,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode({"alg": "RS256", "kid": key.kid, **(header or {})}, claims, key)

    return mint
