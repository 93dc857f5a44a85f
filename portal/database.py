"""The database engine's tuning and the transaction helpers of the hot paths.

SQLite is the embedded default, and a multi-process server (gunicorn) makes it a shared
file: it runs in WAL mode (readers never wait for the writer), with ``synchronous=NORMAL``
(WAL's durable-enough default: a commit survives a crash of the application; a power cut
may lose the last transactions, never the file) and a busy timeout, so a writer waits for
the one before it instead of failing with "database is locked".
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from portal.extensions import db

#: How long a SQLite writer waits for the one before it (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def tune_engine(engine: Engine) -> None:
    """Install the SQLite pragmas on every new connection of ``engine`` (no-op elsewhere)."""
    if engine.dialect.name == "sqlite" and not event.contains(engine, "connect", _tune_sqlite):
        event.listen(engine, "connect", _tune_sqlite)


def init_app(app: Flask) -> None:
    """Tune the app's engine (created lazily by Flask-SQLAlchemy, so on first use)."""
    with app.app_context():
        tune_engine(db.engine)


def commit_keeping_loaded() -> None:
    """Commit the session without expiring what it holds.

    After a commit SQLAlchemy reloads every object it touches again, one SELECT each; the
    sign-in path commits rows it has just written itself, so their values are known.
    """
    session = db.session()
    saved = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = saved
