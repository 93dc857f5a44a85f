"""The database engine's tuning and the transaction helpers of the hot paths.

SQLite is the embedded default, and a multi-process server (gunicorn) makes it a shared
file: it runs in WAL mode (readers never wait for the writer), with ``synchronous=NORMAL``
(WAL's durable-enough default: a commit survives a crash of the application; a power cut
may lose the last transactions, never the file) and a busy timeout, so a writer waits for
the one before it instead of failing with "database is locked".
"""

from __future__ import annotations

import threading
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


class _WriterQueue:
    """One SQLite writer at a time in this process, waiting in line rather than in SQLite.

    SQLite lets one transaction write at a time; a writer that finds the file locked sleeps in
    SQLite's busy handler (1, 2, 5 ... 100 ms steps) and may sleep on after the lock is free.
    Threads of one process queue here instead, from the first write statement of a transaction
    to its commit or rollback, and get the lock the moment it is released; only writers of
    other processes still meet in the busy handler. A writer that waits longer than the busy
    timeout goes on without the queue (SQLite's own wait then decides), so nothing can hang.
    """

    _WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
    _KEY = "portal.sqlite_writer"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def before_execute(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        """Queue at the first write statement of a transaction."""
        info = conn.info
        if self._KEY in info or not statement.lstrip()[:7].upper().startswith(self._WRITES):
            return
        # False when the wait ran out: SQLite's busy handler decides, as without the queue.
        info[self._KEY] = self._lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)

    def release(self, _dbapi_connection: Any, record: Any, *_args: Any) -> None:
        """Leave the queue once the connection is back in the pool (committed or rolled back)."""
        if record is not None and record.info.pop(self._KEY, False):
            self._lock.release()


def tune_engine(engine: Engine) -> None:
    """Install the SQLite pragmas and the writer queue on ``engine`` (no-op elsewhere)."""
    if engine.dialect.name != "sqlite" or event.contains(engine, "connect", _tune_sqlite):
        return
    event.listen(engine, "connect", _tune_sqlite)
    queue = _WriterQueue()
    event.listen(engine, "before_cursor_execute", queue.before_execute)
    # A transaction ends before its connection goes back to the pool (a commit, or the pool's
    # own rollback of an abandoned one), so the queue moves on right after it, never before.
    for name in ("checkin", "invalidate", "close"):
        event.listen(engine.pool, name, queue.release)


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
