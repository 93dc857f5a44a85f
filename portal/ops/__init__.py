"""What a load balancer and a monitoring system ask: /healthz, /readyz and /metrics.

They are answered by a WSGI layer in front of the Flask app, not by a blueprint: a probe runs
none of the site's request handling (session cookie, user loading, rate limits, the redirect
to https), so it can never write a cookie, be throttled, or be sent elsewhere, and a load
balancer may ask the worker directly over plain http. No answer names a version, a host or
a setting.

- ``/healthz``: the process answers (no I/O at all).
- ``/readyz``: the database answers, its schema is at the migration head this code ships, and
  Redis answers when ``REDIS_URL`` is set. JSON, 200 when all hold, 503 otherwise.
- ``/metrics``: Prometheus' text format, only when ``PORTAL_METRICS_TOKEN`` is set and the
  scraper sends it as ``Authorization: Bearer <token>`` (401 otherwise). Unset, the path is
  the site's ordinary 404 page.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import sqlalchemy as sa
from flask import Flask

from portal import metrics

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
OPS_PATHS = frozenset({HEALTH_PATH, READY_PATH, METRICS_PATH})
#: Seconds a readiness check waits for Redis.
REDIS_TIMEOUT = 2.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class OpsMiddleware:
    """Answer the operations paths; hand every other request to the app."""

    def __init__(self, wsgi_app: WSGIApp, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.app = app
        self._heads: set[str] | None = None
        self._redis: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        path = environ.get("PATH_INFO", "")
        if path not in OPS_PATHS:
            return self.wsgi_app(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return self._answer(
                start_response,
                environ,
                405,
                {"status": "method not allowed"},
                extra=[("Allow", "GET, HEAD")],
            )
        if path == HEALTH_PATH:
            return self._answer(start_response, environ, 200, {"status": "ok"})
        if path == READY_PATH:
            ready, checks = self.readiness()
            status = {"status": "ready" if ready else "not ready", "checks": checks}
            return self._answer(start_response, environ, 200 if ready else 503, status)
        if path == METRICS_PATH and self.app.config["PORTAL_METRICS_TOKEN"]:
            return self._metrics(environ, start_response)
        return self.wsgi_app(environ, start_response)

    # -- readiness -------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Return whether this instance can serve, and each check's one-word result."""
        checks = {"database": "unavailable", "schema": "unknown"}
        with self.app.app_context():
            from portal.extensions import db

            try:
                with db.engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                    conn.rollback()
                    checks["database"] = "ok"
                    checks["schema"] = "ok" if self._at_head(conn) else "not at head"
            except sa.exc.SQLAlchemyError as exc:
                # The class only: a driver's message can name the host or the user.
                log.warning("readyz: database check failed (%s)", type(exc).__name__)
        url = self.app.config.get("REDIS_URL")
        if url:
            checks["redis"] = self._redis_answers(url)
        ready = all(value == "ok" for value in checks.values())
        return ready, checks

    def _at_head(self, conn: sa.Connection) -> bool:
        """Tell whether the database's alembic revision is the head this code ships."""
        try:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            current = set(rows.scalars())
        except sa.exc.DBAPIError:
            return False  # no alembic_version table: never migrated
        return current == self._head_revisions()

    def _head_revisions(self) -> set[str]:
        if self._heads is None:
            from alembic.script import ScriptDirectory

            from portal import resource_dir

            self._heads = set(ScriptDirectory(str(resource_dir("migrations"))).get_heads())
        return self._heads

    def _redis_answers(self, url: str) -> str:
        import redis

        try:
            if self._redis is None:
                self._redis = redis.Redis.from_url(
                    url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
                )
            self._redis.ping()
        except (redis.RedisError, OSError, ValueError) as exc:
            log.warning("readyz: Redis check failed (%s)", type(exc).__name__)
            return "unavailable"
        return "ok"

    # -- metrics ---------------------------------------------------------------------------

    def _metrics(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        token = self.app.config["PORTAL_METRICS_TOKEN"].encode()
        given = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credential.strip().encode("utf-8", "replace"), token
        ):
            return self._answer(
                start_response,
                environ,
                401,
                {"status": "unauthorized"},
                extra=[("WWW-Authenticate", 'Bearer realm="metrics"')],
            )
        with self.app.app_context():
            from portal.extensions import db

            try:
                body = metrics.exposition()
            finally:
                db.session.remove()
        return self._send(
            start_response, environ, 200, body, "text/plain; version=0.0.4; charset=utf-8"
        )

    # -- answers ---------------------------------------------------------------------------

    def _answer(
        self,
        start_response: Callable[..., Any],
        environ: dict[str, Any],
        status: int,
        document: dict[str, Any],
        extra: list[tuple[str, str]] | None = None,
    ):
        body = json.dumps(document).encode()
        return self._send(start_response, environ, status, body, "application/json", extra)

    @staticmethod
    def _send(
        start_response: Callable[..., Any],
        environ: dict[str, Any],
        status: int,
        body: bytes,
        content_type: str,
        extra: list[tuple[str, str]] | None = None,
    ):
        reason = HTTPStatus(status).phrase
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *(extra or []),
        ]
        start_response(f"{status} {reason}", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def init_app(app: Flask) -> None:
    """Answer the operations paths in front of ``app`` and time its requests."""
    metrics.init_app(app)
    app.wsgi_app = OpsMiddleware(app.wsgi_app, app)  # type: ignore[method-assign]
