"""Fixtures of the SSO engine tests: loopback servers, an HTTP client, keys and ID tokens."""

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from portal.sso.http import HttpClient, HttpSettings
from portal.sso.netpolicy import AddressPolicy
from tests.support.servers import App, LoopbackServer

#: Loopback test servers are reached as in development: the policy allows loopback.
DEV_POLICY = AddressPolicy(allow_loopback=True)
#: Timeouts roomy enough for a loaded CI machine: a loopback server that answers is never late.
ROOMY = HttpSettings(connect_timeout=3.0, read_timeout=5.0, max_bytes=64 * 1024, policy=DEV_POLICY)
#: For the tests that provoke a timeout on purpose, against a server that never answers.
HASTY = HttpSettings(connect_timeout=0.5, read_timeout=0.4, max_bytes=64 * 1024, policy=DEV_POLICY)


@pytest.fixture
def serve() -> Iterator[Callable[..., LoopbackServer]]:
    """Start loopback WSGI servers; stop them after the test."""
    servers: list[LoopbackServer] = []

    def start(app=None, ssl_context=None) -> LoopbackServer:
        server = LoopbackServer(app or App(), ssl_context=ssl_context).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(wait=False)


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


@pytest.fixture
def http() -> Iterator[HttpClient]:
    """A fresh client with a 64 KiB cap and timeouts no loaded machine runs out of."""
    client = HttpClient(ROOMY)
    yield client
    client.close()


@pytest.fixture
def hasty_http() -> Iterator[HttpClient]:
    """A fresh client with a 0.4 s read timeout, for servers that hang on purpose."""
    client = HttpClient(HASTY)
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
