"""Outbound HTTP to identity providers: pooled, capped, never following redirects.

Every connection goes through `PinnedBackend`: the host name is resolved here, every address
it resolves to is checked with the settings' `AddressPolicy`, and the socket is connected to
a checked address (TLS still verifies the certificate for, and sends SNI with, the host
name). So a provider URL, or a provider's DNS answer, can never make Portal call loopback,
private or metadata addresses that the policy refuses, and DNS rebinding between a check and
the connection is impossible: there is no second resolution. Each request also has a total
deadline, enforced on every socket operation, so a server that drips its answer cannot hold a
worker longer than ``HttpSettings.total_timeout``.
"""

from __future__ import annotations

import contextvars
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

from portal.sso.errors import (
    ProviderAddressRefused,
    ProviderTimeout,
    ProviderUnreachable,
    ResponseTooLarge,
    SSOError,
)
from portal.sso.netpolicy import AddressPolicy, AddressRefused
from portal.sso.trace import Trace

log = logging.getLogger(__name__)

#: Told of every finished provider call: ``(step, seconds)``, success or failure alike. The
#: engine knows no metrics library; the app sets this once (portal/metrics.py). It runs on
#: the sign-in's thread after the call, so it must be quick and must not raise.
CallObserver = Callable[[str, float], None]
_call_observer: CallObserver | None = None


def set_call_observer(observer: CallObserver | None) -> None:
    """Install (or remove, with None) the function told of each provider call's duration."""
    global _call_observer
    _call_observer = observer


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts (seconds), response size cap (bytes), TLS verification and address policy.

    ``total_timeout`` bounds a whole request (connect, send, headers and body);
    ``policy`` says which addresses may be connected to (the default refuses loopback and
    every private or internal network).
    """

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_bytes: int = 1_048_576
    verify: bool = True
    total_timeout: float = 15.0
    policy: AddressPolicy = field(default_factory=AddressPolicy)


#: When the request running in this context must be finished (time.monotonic()), if any.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "portal_http_deadline", default=None
)


def _bounded(timeout: float | None, timeout_error: type[Exception]) -> float | None:
    """Return ``timeout`` shortened to the current request's deadline; raise once it passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise timeout_error("the request's total deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the current request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # server_hostname is the URL's host name: SNI and certificate checks use it, not the IP.
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """Resolve, check every address with the policy, and connect to a checked address."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        # Every address is checked (AddressRefused propagates), and only those are used.
        self.policy.check_addresses(host, [info[4][0] for info in infos])
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for family, socktype, proto, _name, sockaddr in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                sock.settimeout(timeout)
                if local_address is not None:
                    sock.bind((local_address, 0))
                sock.connect(sockaddr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for option in socket_options or ():
                    sock.setsockopt(*option)
            except TimeoutError:
                sock.close()
                error = httpcore.ConnectTimeout(f"connecting to {host} timed out")
            except OSError as exc:
                sock.close()
                error = httpcore.ConnectError(f"cannot connect to {host}: {exc}")
            else:
                return _DeadlineStream(SyncStream(sock))
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("Unix sockets are not used for identity providers")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _pinned_pool(settings: HttpSettings) -> httpcore.ConnectionPool:
    """Return a keep-alive connection pool (no retries) connecting through `PinnedBackend`."""
    return httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=settings.verify, trust_env=False),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=PinnedBackend(settings.policy),
    )


@dataclass(frozen=True)
class HttpResponse:
    """A fully read response."""

    status: int
    #: Header names in lower case; a repeated header's values joined with ", ".
    headers: dict[str, str]
    content: bytes
    elapsed_ms: float

    @property
    def content_type(self) -> str:
        """Return the media type, lower case, without parameters."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _host(url: str) -> str:
    """Return scheme://host[:port] of a URL: paths and queries may carry codes or secrets."""
    return _parse(url)[1]


class _RedactHttpxLogs(logging.Filter):
    """Keep URLs (which may carry a code or secret) and response headers out of httpx's logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "httpx" and isinstance(record.args, tuple) and len(record.args) > 1:
            record.args = (record.args[0], _host(str(record.args[1])), *record.args[2:])
        elif isinstance(record.msg, str) and record.msg.startswith(
            ("receive_response_headers.complete", "send_request_headers")
        ):
            record.msg = record.msg.split(" ", 1)[0]
            record.args = ()
        return True


_log_filter = _RedactHttpxLogs()
for _name in ("httpx", "httpcore.http11", "httpcore.http2"):
    logging.getLogger(_name).addFilter(_log_filter)


class HttpClient:
    """A pooled HTTP/1.1 client bound to one set of settings.

    It drives httpcore's connection pool directly: a provider call needs none of httpx's
    client layer (cookies, auth flows, redirects, decoders), which cost about as much CPU as
    the pool itself. It asks for no content coding (``Accept-Encoding: identity``), so the
    size cap counts the bytes that are used, and there is nothing to decompress.
    """

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._pool = _pinned_pool(settings)
        self._timeouts = {
            "connect": settings.connect_timeout,
            "read": settings.read_timeout,
            "write": settings.read_timeout,
            "pool": settings.connect_timeout,
        }

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        trace: Trace | None = None,
        step: str = "other",
    ) -> HttpResponse:
        """Send a request and read the whole (capped) response.

        ``step`` names the protocol step (``token``, ``profile``, ``jwks``...) for the call
        observer; it never reaches the provider.
        """
        started = time.monotonic()
        target, host = _parse(url)
        status: int | None = None
        content_type: str | None = None
        try:
            if target is None:
                raise ProviderUnreachable(f"{host}: invalid or unsupported URL")
            response = self._send(method, target, headers, body, host)
            status = response.status
            content_type = response.content_type
        except SSOError as exc:
            elapsed = (time.monotonic() - started) * 1000
            log.debug("SSO %s %s failed after %.0f ms: %s", method, host, elapsed, exc.code)
            if trace is not None:
                trace.record_request(
                    method, url, headers, body, status=status, elapsed_ms=elapsed, error=exc.code
                )
            if _call_observer is not None:
                _call_observer(step, elapsed / 1000)
            raise
        log.debug("SSO %s %s -> %s in %.0f ms", method, host, status, response.elapsed_ms)
        if trace is not None:
            trace.record_request(
                method,
                url,
                headers,
                body,
                status=status,
                elapsed_ms=response.elapsed_ms,
                content_type=content_type,
            )
        if _call_observer is not None:
            _call_observer(step, response.elapsed_ms / 1000)
        return response

    def _send(
        self,
        method: str,
        url: httpcore.URL,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        host: str,
    ) -> HttpResponse:
        cap = self.settings.max_bytes
        # Header values may hold non-ASCII text a template produced: send them as UTF-8.
        raw_headers = [(name.encode("ascii"), value.encode("utf-8")) for name, value in headers]
        given = {name.lower() for name, _value in raw_headers}
        raw_headers += [default for default in _DEFAULT_HEADERS if default[0] not in given]
        started = time.monotonic()
        total = self.settings.total_timeout
        deadline = started + total
        token = _deadline.set(deadline)
        try:
            with self._pool.stream(
                method.upper(),
                url,
                headers=raw_headers,
                content=body,
                extensions={"timeout": self._timeouts},
            ) as response:
                received = _headers(response.headers)
                declared = received.get("content-length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise ResponseTooLarge(f"{host} declared {declared} bytes (cap {cap})")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_stream():
                    if time.monotonic() >= deadline:
                        raise ProviderTimeout(f"{host}: total deadline of {total:g} s passed")
                    size += len(chunk)
                    if size > cap:
                        raise ResponseTooLarge(f"{host} sent more than {cap} bytes")
                    chunks.append(chunk)
                return HttpResponse(
                    status=response.status,
                    headers=received,
                    content=b"".join(chunks),
                    elapsed_ms=(time.monotonic() - started) * 1000,
                )
        except AddressRefused as exc:
            raise ProviderAddressRefused(f"{host}: {exc}") from None
        except httpcore.TimeoutException as exc:
            if time.monotonic() >= deadline:
                raise ProviderTimeout(f"{host}: total deadline of {total:g} s passed") from None
            raise ProviderTimeout(f"{host}: {type(exc).__name__}") from None
        except httpcore.UnsupportedProtocol:
            raise ProviderUnreachable(f"{host}: unsupported URL scheme") from None
        except (httpcore.LocalProtocolError, UnicodeEncodeError):
            raise ProviderUnreachable(f"{host}: invalid URL or header") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError) as exc:
            raise ProviderUnreachable(f"{host}: {type(exc).__name__}") from None
        finally:
            _deadline.reset(token)


#: Sent unless a template sets them: no content coding (nothing to decompress, and the size
#: cap counts what is used), any media type, and a product name some APIs require.
_DEFAULT_HEADERS = (
    (b"accept", b"*/*"),
    (b"accept-encoding", b"identity"),
    (b"user-agent", b"Portal"),
)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Return response headers by lower-case name; a repeated header's values joined."""
    found: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        found[key] = f"{found[key]}, {text}" if key in found else text
    return found


def _parse(url: str) -> tuple[httpcore.URL | None, str]:
    """Return an http(s) URL's request target (None for any other) and its scheme://host[:port].

    httpx's parser normalises the URL (IDNA host, percent-encoding) as an httpx client
    would; the host part is all that logs and errors name (a path or query may carry a
    code or a secret).
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None, "<invalid URL>"
    port = f":{parsed.port}" if parsed.port else ""
    host = f"{parsed.scheme}://{parsed.host}{port}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None, host
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    return target, host


_clients: dict[HttpSettings, HttpClient] = {}
_clients_lock = threading.Lock()


def get_http_client(settings: HttpSettings | None = None) -> HttpClient:
    """Return this process's pooled client for the settings."""
    settings = settings or HttpSettings()
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            client = _clients[settings] = HttpClient(settings)
        return client
