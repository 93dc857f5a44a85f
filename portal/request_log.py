"""Request logs without query strings: codes and ``state`` never reach a log file.

The callback's address carries the authorization ``code`` and ``state``. Werkzeug's access
log (on whenever logging is at INFO) prints the whole request line; this filter cuts the
query string out of every request line the ``werkzeug`` and ``gunicorn.access`` loggers
emit. With gunicorn, also use an access-log format built on ``%(U)s`` (the path without the
query) rather than ``%(r)s``, so its own lines never hold one either (see docs).
"""

from __future__ import annotations

import logging
import re

from flask import Flask

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


def init_app(app: Flask) -> None:
    """Install the filter on the request loggers (once per process)."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryStringFilter) for f in logger.filters):
            logger.addFilter(QueryStringFilter())
