"""Request logs: no query strings, a request id on every request, JSON lines when asked.

The callback's address carries the authorization ``code`` and ``state``. Werkzeug's access
log (on whenever logging is at INFO) prints the whole request line; this filter cuts the
query string out of every request line the ``werkzeug`` and ``gunicorn.access`` loggers
emit. With gunicorn, also use an access-log format built on ``%(U)s`` (the path without the
query) rather than ``%(r)s``, so its own lines never hold one either (see docs).

Every request gets an id, sent back in ``X-Request-ID``: the one a trusted proxy passed on
(``PORTAL_TRUST_PROXY`` set, and the value a plain token of 8 to 128 letters, digits, ``.``,
``_`` or ``-``), else a new random one. A browser's own header is never taken: it could
make two requests share an id, or smuggle text into a log line.

``PORTAL_LOG_FORMAT=json`` writes one JSON object per line: ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, ``request_id`` (``-`` outside a request), the
``key=value`` fields the message carries (``ref``, ``system``, ``outcome``, ``code``...), any
``extra=`` fields, and ``exception`` for a traceback. Query strings are cut from the message
and the traceback alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request

#: Loggers whose records are request lines.
REQUEST_LOGGERS = ("werkzeug", "gunicorn.access")
#: A path followed by its query: ``/sso/x/callback?code=...`` keeps ``/sso/x/callback``.
_PATH_QUERY = re.compile(r"(/[^\s?\"'\x1b]*)\?[^\s\"'\x1b]*")


def strip_query(message: str) -> str:
    """Return ``message`` with the query string of every path in it removed."""
    return _PATH_QUERY.sub(r"\1", message)


class QueryStringFilter(logging.Filter):
    """Rewrite a log record so no path in it keeps its query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg = strip_query(message)
            record.args = None
        return True


#: The response header that carries the request id (and the proxy's request header).
REQUEST_ID_HEADER = "X-Request-ID"
#: An id passed on by a trusted proxy: nginx's $request_id, a UUID, a trace id.
_INCOMING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,127}")
#: A ``key=value`` field in a log message: a value free of spaces, quotes and ``=``, followed
#: by the next field or the end (``detail=unknown state`` is free text: it stays in the message).
_FIELD = re.compile(r"(?<!\S)([a-z_]+)=([^\s'\"=]+)(?=\s+[a-z_]+=|\s*$)")
#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
}
_JSON_KEYS = ("time", "level", "logger", "message", "request_id", "exception")


def request_id() -> str:
    """Return the current request's id (``-`` outside a request)."""
    if has_request_context():
        return g.get("request_id", "-")
    return "-"


def _assign_request_id() -> None:
    incoming = ""
    if current_app.config.get("PORTAL_TRUST_PROXY"):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _INCOMING_ID.fullmatch(incoming) else os.urandom(16).hex()


def _send_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "-")
    return response


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id()
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line, without any query string."""

    def format(self, record: logging.LogRecord) -> str:
        message = strip_query(record.getMessage())
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "request_id": getattr(record, "request_id", None) or request_id(),
        }
        for key, value in _FIELD.findall(message):
            document.setdefault(key, value)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in _JSON_KEYS:
                document[key] = value
        if record.exc_info:
            document["exception"] = strip_query(self.formatException(record.exc_info))
        elif record.stack_info:
            document["exception"] = strip_query(self.formatStack(record.stack_info))
        return json.dumps(document, default=str, ensure_ascii=False)


def _use_json_lines() -> None:
    """Make the process's log handlers write JSON lines (once per process)."""
    root = logging.getLogger()
    # basicConfig's handler on the root, and gunicorn's own (its loggers do not propagate).
    handlers = [h for h in root.handlers if type(h) is logging.StreamHandler]
    if not handlers:
        handler = logging.StreamHandler()
        root.addHandler(handler)
        handlers.append(handler)
    for name in ("gunicorn.error", "gunicorn.access"):
        handlers += logging.getLogger(name).handlers
    for handler in handlers:
        if not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter())
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


def init_app(app: Flask) -> None:
    """Cut queries from request lines, give each request an id, and write JSON if asked."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryStringFilter) for f in logger.filters):
            logger.addFilter(QueryStringFilter())
    # First of the request hooks, so every later hook's log lines carry the id.
    app.before_request_funcs.setdefault(None, []).insert(0, _assign_request_id)
    app.after_request(_send_request_id)
    if app.config.get("PORTAL_LOG_FORMAT") == "json":
        _use_json_lines()
