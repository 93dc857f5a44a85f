"""Loopback servers of the tests: one threaded WSGI server, a recording app, raw socket reads."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

LOOPBACK = "127.0.0.1"


class _TrackedHandler(WSGIRequestHandler):
    """Request handler that registers its connection and thread with the server."""

    def setup(self) -> None:
        super().setup()
        server: _TrackedServer = self.server  # type: ignore[assignment]
        with server.tracking_lock:
            server.connections.add(self.connection)
            server.handler_threads.add(threading.current_thread())

    def finish(self) -> None:
        server: _TrackedServer = self.server  # type: ignore[assignment]
        with server.tracking_lock:
            server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass


class _QuietHandler(_TrackedHandler):
    """Tracked request handler that writes no access log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Stay quiet: pytest shows the app's own log on failure."""


class _TrackedServer(BaseWSGIServer):
    """Attributes the handler fills in (set on the instance make_server returns)."""

    connections: set[socket.socket]
    handler_threads: set[threading.Thread]
    tracking_lock: threading.Lock


class LoopbackServer:
    """A WSGI app served by werkzeug from a background thread, on an ephemeral loopback port.

    The socket is bound at construction, so ``url`` is known before ``start``. ``stop`` stops
    serving, cuts open connections and (with ``wait``) joins every request thread.
    """

    def __init__(
        self,
        app: Callable[..., Any] | None = None,
        host: str = LOOPBACK,
        port: int = 0,
        *,
        threaded: bool = True,
        ssl_context: Any = None,
        access_log: bool = True,
    ) -> None:
        self.app = app
        handler = _TrackedHandler if access_log else _QuietHandler
        self.server: _TrackedServer = make_server(  # type: ignore[assignment]
            host,
            port,
            self._dispatch,
            threaded=threaded,
            ssl_context=ssl_context,
            request_handler=handler,
        )
        self.server.connections = set()
        self.server.handler_threads = set()
        self.server.tracking_lock = threading.Lock()
        self.port: int = self.server.server_port
        self.url = f"{'https' if ssl_context else 'http'}://{host}:{self.port}"
        self.thread: threading.Thread | None = None

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self.app is not None, "the server has no app yet"
        return self.app(environ, start_response)

    def start(self, poll_interval: float = 0.02) -> LoopbackServer:
        """Serve until :meth:`stop`; return the server."""
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": poll_interval},
            name=f"loopback-server-{self.port}",
            daemon=True,
        )
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0, wait: bool = True) -> None:
        """Stop serving and close the socket; with ``wait``, cut keep-alive connections and
        join every request thread (raise if one is still running after ``timeout``)."""
        threads: list[threading.Thread] = []
        try:
            if self.thread is not None:
                self.server.shutdown()
                self.thread.join(timeout)
            if wait:
                threads = self._cut_and_join(timeout)
        finally:
            self.server.server_close()
        leaked = [t.name for t in [self.thread, *threads] if t is not None and t.is_alive()]
        if wait and leaked:
            raise RuntimeError(f"server threads still running after stop: {leaked}")

    def _cut_and_join(self, timeout: float) -> list[threading.Thread]:
        with self.server.tracking_lock:
            conns = list(self.server.connections)
            threads = list(self.server.handler_threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return threads

    def url_for(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return self.url + (path if path.startswith("/") else "/" + path)


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


def read_request_head(conn: socket.socket) -> bytes:
    """Read a request up to the end of its headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class ErrorLog(logging.Handler):
    """Collect a logger's ERROR records into a list."""

    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(level=logging.ERROR)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.append(record)
