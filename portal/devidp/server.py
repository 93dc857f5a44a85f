"""Serve a WSGI app on 127.0.0.1 in a background thread (werkzeug's development server)."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

LOOPBACK = "127.0.0.1"


class _TrackingHandler(WSGIRequestHandler):
    """Request handler that registers its connection so that stop() can cut keep-alives."""

    quiet = True

    def setup(self) -> None:
        """Register the connection with the owning server."""
        super().setup()
        conns: set[socket.socket] | None = getattr(self.server, "devidp_connections", None)
        if conns is not None:
            with self.server.devidp_lock:  # type: ignore[attr-defined]
                conns.add(self.connection)

    def finish(self) -> None:
        """Unregister the connection."""
        conns: set[socket.socket] | None = getattr(self.server, "devidp_connections", None)
        if conns is not None:
            with self.server.devidp_lock:  # type: ignore[attr-defined]
                conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Stay quiet unless the server was asked to log."""
        if not self.quiet:
            super().log_request(code, size)


_QuietHandler = _TrackingHandler


class _LoudHandler(_TrackingHandler):
    quiet = False


class Startable:
    """Something served in the background: ``restart()``, and ``with`` to stop it at the end."""

    def start(self) -> Self:
        """Start serving (subclasses)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving (subclasses)."""
        raise NotImplementedError

    def restart(self) -> Self:
        """Stop, then serve again on the same port."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LiveServer(Startable):
    """A WSGI app served on a loopback port by a background thread.

    ``port=0`` picks a free port; after ``stop()``, ``start()`` (or ``restart()``) binds the
    same port again, so a test can simulate a provider that goes down and comes back.
    Use as a context manager to stop it at the end.
    """

    def __init__(
        self, app: Any, *, host: str = LOOPBACK, port: int = 0, quiet: bool = True
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.quiet = quiet
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    @property
    def running(self) -> bool:
        """True while the server accepts connections."""
        return self._server is not None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        if not self.port:
            raise RuntimeError("server was never started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Bind (the same port as before, if any) and serve in a daemon thread."""
        if self._server is not None:
            return self
        handler = _QuietHandler if self.quiet else _LoudHandler
        server = make_server(self.host, self.port, self.app, threaded=True, request_handler=handler)
        server.devidp_connections = set()  # type: ignore[attr-defined]
        server.devidp_lock = threading.Lock()  # type: ignore[attr-defined]
        self.port = server.server_port
        self.stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"devidp-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the listening socket and cut open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.server_close()
        with server.devidp_lock:  # type: ignore[attr-defined]
            conns = list(server.devidp_connections)  # type: ignore[attr-defined]
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def serve(app: Any, *, host: str = LOOPBACK, port: int = 0, quiet: bool = True) -> LiveServer:
    """Start ``app`` on a loopback port in a background thread and return the running server."""
    return LiveServer(app, host=host, port=port, quiet=quiet).start()


def closed_port_url(host: str = LOOPBACK) -> str:
    """Return ``http://127.0.0.1:<port>`` for a port that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    return f"http://{host}:{port}"
