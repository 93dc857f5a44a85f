"""Outbound HTTP to identity providers: pooled, capped, never following redirects.

Every connection goes through `_pinned_connector`: the host name is resolved here, every address
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
import email.parser
import functools
import http.client
import io
import logging
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

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


class _DeadlinePassed(TimeoutError):
    """The current request's total deadline passed."""


def _bounded(timeout: float) -> float:
    """Return ``timeout`` shortened to the current request's deadline; raise once it passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise _DeadlinePassed("total deadline passed")
    return min(timeout, left)


class _ConnectFailed(OSError):
    """No checked address of the host could be connected to."""


def _pinned_connector(
    policy: AddressPolicy, connect_timeout: float
) -> Callable[..., socket.socket]:
    """Return a ``create_connection`` that resolves, checks every address, and connects.

    http.client calls it with the URL's host; the socket is connected to a checked address
    of that one resolution (TLS then verifies the certificate for, and sends SNI with, the
    host name, as `_ProviderTLSConnection` wraps the socket).
    """

    def connect(address: tuple[str, int], *_args: Any, **_kwargs: Any) -> socket.socket:
        host, port = address
        timeout = _bounded(connect_timeout)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise _ConnectFailed(f"cannot resolve {host}: {exc}") from None
        # Every address is checked (AddressRefused propagates), and only those are used.
        policy.check_addresses(host, [info[4][0] for info in infos])
        error: OSError = _ConnectFailed(f"{host} has no address")
        for family, socktype, proto, _name, sockaddr in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
            except TimeoutError:
                sock.close()
                error = TimeoutError(f"connecting to {host} timed out")
            except OSError as exc:
                sock.close()
                error = _ConnectFailed(f"cannot connect to {host}: {exc}")
            else:
                return sock
        raise error

    return connect


class _DeadlineReader(io.RawIOBase):
    """A socket's reading side whose every read ends by the current request's deadline."""

    def __init__(self, sock: socket.socket, read_timeout: float, holder: Any) -> None:
        self._sock = sock
        self._read_timeout = read_timeout
        self._applied: float | None = None
        # http.client's own file over the socket: while it is open the socket stays open,
        # even once the connection is closed (a response the server ends by closing).
        self._holder = holder

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._holder.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        timeout = _bounded(self._read_timeout)
        if timeout != self._applied:  # each change is a system call: only when it changes
            self._sock.settimeout(timeout)
            self._applied = timeout
        return self._sock.recv_into(buffer)


class _DeadlineResponse(http.client.HTTPResponse):
    """A response read through `_DeadlineReader`: a server that drips its status line,
    headers or body is stopped by the request's total deadline, not only per read."""

    read_timeout = 10.0

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_DeadlineReader(sock, self.read_timeout, self.fp))

    def begin(self) -> None:
        """http.client's ``HTTPResponse.begin`` (3.11), the headers read by `_parse_headers`."""
        if self.headers is not None:
            return
        while True:  # read until a response that is not 100 Continue
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            _read_header_lines(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _parse_headers(self.fp)
        encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(encoding and encoding.lower() == "chunked")  # type: ignore[assignment]
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if (
            status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED)
            or 100 <= status < 200
            or self._method == "HEAD"  # type: ignore[attr-defined]
        ):
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


#: http.client's limits on a response's header lines.
_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 100
#: A header line of the plain shape: a token, then the colon (RFC 9110 section 5.1).
_PLAIN_HEADER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:")


def _read_header_lines(fp: Any) -> list[bytes]:
    """Read a response's header lines, up to and including the blank line, as http.client does
    (the same limits: a line of at most 64 KiB, at most 100 lines)."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(_MAX_HEADER_LINE + 1)
        if len(line) > _MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def _parse_headers(fp: Any) -> http.client.HTTPMessage:
    """Return a response's headers as http.client's ``parse_headers`` does, in a tenth of its time.

    http.client hands the header block to the email package's parser (about 40 us for the
    usual eight lines, twice a sign-in). Lines of the plain ``Name: value`` shape make the
    same message directly (the name as sent, the value without the whitespace before it and the
    line end, as the parser stores them); any other line (folded, or without a name) sends the
    whole block through the email parser, as before.
    """
    lines = _read_header_lines(fp)
    message = http.client.HTTPMessage()
    for line in lines[:-1]:  # (the last is the blank line, or the end of the stream)
        if not _PLAIN_HEADER_LINE.match(line):
            text = b"".join(lines).decode("iso-8859-1")
            return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)
        name, _colon, value = line.decode("iso-8859-1").partition(":")
        message[name] = value.lstrip(" \t").rstrip("\r\n")
    return message


class _OneWrite:
    """Send a request's head and a small body in one write.

    http.client writes the head and the body separately: on a TCP_NODELAY socket that is
    two segments, two system calls and a second wake-up of the provider for every token
    call. (``_send_output`` is http.client's own step for this, unchanged since 3.0.)
    """

    _buffer: list[bytes]

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        if isinstance(message_body, bytes) and not encode_chunked and len(message_body) < 65536:
            self._buffer.extend((b"", message_body))
            message = b"\r\n".join(self._buffer)
            del self._buffer[:]
            self.send(message)  # type: ignore[attr-defined]
            return
        super()._send_output(message_body, encode_chunked)  # type: ignore[misc]


class _ProviderConnection(_OneWrite, http.client.HTTPConnection):
    """An HTTP connection made through the pinned connector, read under the deadline."""

    def __init__(self, host: str, port: int | None, settings: HttpSettings) -> None:
        super().__init__(host, port, timeout=settings.connect_timeout)
        self._create_connection = _pinned_connector(settings.policy, settings.connect_timeout)
        self.response_class = _settings_response(settings)


class _ProviderTLSConnection(_OneWrite, http.client.HTTPSConnection):
    """An HTTPS connection made through the pinned connector: the certificate is verified
    for the URL's host name, whatever address the socket was connected to."""

    def __init__(
        self, host: str, port: int | None, settings: HttpSettings, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=settings.connect_timeout, context=context)
        self._create_connection = _pinned_connector(settings.policy, settings.connect_timeout)
        self.response_class = _settings_response(settings)


def _settings_response(settings: HttpSettings) -> type[_DeadlineResponse]:
    return type("_Response", (_DeadlineResponse,), {"read_timeout": settings.read_timeout})


#: Idle connections kept per provider address, and for how long (seconds).
MAX_IDLE_PER_HOST = 20
KEEPALIVE_EXPIRY = 5.0
_Connection = _ProviderConnection | _ProviderTLSConnection


def _dropped(connection: _Connection) -> bool:
    """Tell whether an idle connection was closed by the server (or has unread bytes)."""
    sock = connection.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Pool:
    """Keep-alive connections per (scheme, host, port), each used by one request at a time."""

    def __init__(self, settings: HttpSettings) -> None:
        self._settings = settings
        self._context: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, str, int | None], list[tuple[float, _Connection]]] = {}
        self._lock = threading.Lock()

    def checkout(self, scheme: str, host: str, port: int | None) -> _Connection:
        """Return an idle connection that is still open, or a new (unconnected) one."""
        key = (scheme, host, port)
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    break
                since, connection = idle.pop()
            if now - since < KEEPALIVE_EXPIRY and not _dropped(connection):
                return connection
            connection.close()
        if scheme == "https":
            return _ProviderTLSConnection(host, port, self._settings, self._tls_context())
        return _ProviderConnection(host, port, self._settings)

    def checkin(self, scheme: str, host: str, port: int | None, connection: _Connection) -> None:
        """Keep a connection whose response was read to the end, for the next request."""
        with self._lock:
            idle = self._idle.setdefault((scheme, host, port), [])
            if len(idle) < MAX_IDLE_PER_HOST:
                idle.append((time.monotonic(), connection))
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for _since, connection in connections:
                connection.close()

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = httpx.create_ssl_context(verify=self._settings.verify, trust_env=False)
        return self._context


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


class HttpClient:
    """A pooled HTTP/1.1 client bound to one set of settings.

    It drives the standard library's ``http.client`` over its own keep-alive pool: a provider
    call needs no client layer (cookies, auth flows, redirects, decoders), and httpcore's
    pure-Python HTTP parser cost three times as much CPU per call (≈500 µs against ≈160 µs
    measured on loopback). It asks for no content coding (``Accept-Encoding: identity``), so
    the size cap counts the bytes that are used, and there is nothing to decompress.
    """

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._pool = _Pool(settings)

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
        url: _Target,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        host: str,
    ) -> HttpResponse:
        cap = self.settings.max_bytes
        started = time.monotonic()
        total = self.settings.total_timeout
        deadline = started + total
        token = _deadline.set(deadline)
        connection: _Connection | None = None
        try:
            connection = self._pool.checkout(url.scheme, url.host, url.port)
            if connection.sock is not None:
                timeout = _bounded(self.settings.read_timeout)
                if connection.sock.gettimeout() != timeout:
                    connection.sock.settimeout(timeout)
            given = {name.lower() for name, _value in headers}
            connection.putrequest(
                method.upper(),
                url.target,
                skip_host="host" in given,
                skip_accept_encoding=True,
            )
            # Header values may hold non-ASCII text a template produced: send them as UTF-8.
            for name, value in headers:
                connection.putheader(name, value.encode("utf-8"))
            for name, value in _DEFAULT_HEADERS:
                if name not in given:
                    connection.putheader(name, value)
            if body is not None and "content-length" not in given:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            received = _headers(response.getheaders())
            declared = received.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise ResponseTooLarge(f"{host} declared {declared} bytes (cap {cap})")
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read1(65536):
                if time.monotonic() >= deadline:
                    raise ProviderTimeout(f"{host}: total deadline of {total:g} s passed")
                size += len(chunk)
                if size > cap:
                    raise ResponseTooLarge(f"{host} sent more than {cap} bytes")
                chunks.append(chunk)
            response.close()  # read to the end: the connection is free for the next request
            if not response.will_close:
                self._pool.checkin(url.scheme, url.host, url.port, connection)
                connection = None
            return HttpResponse(
                status=response.status,
                headers=received,
                content=b"".join(chunks),
                elapsed_ms=(time.monotonic() - started) * 1000,
            )
        except AddressRefused as exc:
            raise ProviderAddressRefused(f"{host}: {exc}") from None
        except _DeadlinePassed:
            raise ProviderTimeout(f"{host}: total deadline of {total:g} s passed") from None
        except TimeoutError as exc:
            if time.monotonic() >= deadline:
                raise ProviderTimeout(f"{host}: total deadline of {total:g} s passed") from None
            raise ProviderTimeout(f"{host}: {_timeout_step(exc, connection)}") from None
        except (ValueError, UnicodeError):
            # http.client refuses a line break or control character in the target or a header.
            raise ProviderUnreachable(f"{host}: invalid URL or header") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ProviderUnreachable(f"{host}: {type(exc).__name__}") from None
        finally:
            if connection is not None:
                connection.close()
            _deadline.reset(token)


def _timeout_step(exc: TimeoutError, connection: _Connection | None) -> str:
    """Name the step that timed out for the log: connecting, or waiting for the answer."""
    if connection is None or connection.sock is None or "connecting" in str(exc):
        return "ConnectTimeout"
    return "ReadTimeout"


#: Sent unless a template sets them: no content coding (nothing to decompress, and the size
#: cap counts what is used), any media type, and a product name some APIs require.
_DEFAULT_HEADERS = (
    ("accept", "*/*"),
    ("accept-encoding", "identity"),
    ("user-agent", "Portal"),
)


def _headers(raw: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return response headers by lower-case name; a repeated header's values joined."""
    found: dict[str, str] = {}
    for name, text in raw:
        key = name.lower()
        found[key] = f"{found[key]}, {text}" if key in found else text
    return found


@dataclass(frozen=True)
class _Target:
    """Where a request goes: scheme, host (IDNA-encoded), port, and the path with its query."""

    scheme: str
    host: str
    port: int | None
    target: str


@functools.lru_cache(maxsize=256)
def _parse(url: str) -> tuple[_Target | None, str]:
    """Return an http(s) URL's request target (None for any other) and its scheme://host[:port].

    httpx's parser normalises the URL (IDNA host, percent-encoding) as an httpx client
    would; the host part is all that logs and errors name (a path or query may carry a
    code or a secret). A system's endpoints are the same URLs at every sign-in: each is
    parsed once per process (about 70 us a call), the answer being immutable.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None, "<invalid URL>"
    port = f":{parsed.port}" if parsed.port else ""
    host = f"{parsed.scheme}://{parsed.host}{port}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None, host
    target = _Target(
        scheme=parsed.scheme,
        host=parsed.raw_host.decode("ascii"),
        port=parsed.port,
        target=parsed.raw_path.decode("ascii"),
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
