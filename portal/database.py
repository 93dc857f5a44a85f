"""The database engine's tuning and the transaction helpers of the hot paths.

SQLite is the embedded default, and a multi-process server (gunicorn) makes it a shared
file: it runs in WAL mode (readers never wait for the writer), with ``synchronous=NORMAL``
(WAL's durable-enough default: a commit survives a crash of the application; a power cut
may lose the last transactions, never the file) and a busy timeout, so a writer waits for
the one before it instead of failing with "database is locked".
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import make_transient_to_detached

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


#: A pooled server connection idle longer than this is checked before use (seconds).
IDLE_PING_SECONDS = 10.0
_IDLE_SINCE = "portal.idle_since"


def _note_idle(_dbapi_connection: Any, record: Any, *_args: Any) -> None:
    """Remember when a connection was made or came back to the pool."""
    record.info[_IDLE_SINCE] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Check a connection that sat idle in the pool before handing it out.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: four round trips per sign-in
    on PostgreSQL. A connection used a moment ago is alive; one that sat idle long enough
    for the server (or a proxy, or a restart) to drop it is pinged, and a dead one is
    replaced, as pre-ping would.
    """
    since = record.info.get(_IDLE_SINCE)
    if since is not None and time.monotonic() - since < IDLE_PING_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()
    except Exception as exc:  # noqa: BLE001  (any failure: the pool discards it and reconnects)
        raise DisconnectionError(f"idle connection failed its ping: {type(exc).__name__}") from exc


def tune_engine(engine: Engine) -> None:
    """Install the SQLite pragmas and the writer queue, or the idle-connection ping."""
    if engine.dialect.name != "sqlite":
        if not event.contains(engine.pool, "checkout", _ping_if_idle):
            event.listen(engine.pool, "connect", _note_idle)
            event.listen(engine.pool, "checkin", _note_idle)
            event.listen(engine.pool, "checkout", _ping_if_idle)
        return
    if event.contains(engine, "connect", _tune_sqlite):
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


#: Per engine, its autocommit twin on a server database (None on SQLite): see `single_statements`.
_AUTOCOMMIT: weakref.WeakKeyDictionary[Engine, Engine | None] = weakref.WeakKeyDictionary()


def single_statements() -> dict[str, Any]:
    """Bind arguments that run a session's statements outside a transaction on PostgreSQL.

    A statement that stands alone (a read, or one atomic INSERT or UPDATE committed at once)
    needs no transaction around it; in one, psycopg sends BEGIN before it and COMMIT or the
    pool's ROLLBACK after it: three round trips where one does. The session then runs such
    statements on an autocommit connection of the same pool (objects it loads are in the
    session as usual; later writes go through the session's own transaction). SQLite has no
    round trips to save: it keeps the one connection (``{}``, the session's default bind).
    """
    engine = db.engine
    try:
        twin = _AUTOCOMMIT[engine]
    except KeyError:
        twin = _AUTOCOMMIT[engine] = (
            None
            if engine.dialect.name == "sqlite"
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
    return {} if twin is None else {"bind": twin}


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


_Model = TypeVar("_Model")
#: Per model class, its column attributes as ``(attribute name, column)``.
_COLUMN_ATTRS: dict[type, tuple[tuple[str, Any], ...]] = {}


def _column_attrs(model: type) -> tuple[tuple[str, Any], ...]:
    attrs = _COLUMN_ATTRS.get(model)
    if attrs is None:
        mapper = model.__mapper__  # type: ignore[attr-defined]
        attrs = _COLUMN_ATTRS[model] = tuple((p.key, p.columns[0]) for p in mapper.column_attrs)
    return attrs


def attach_loaded(model: type[_Model], row: Row[Any]) -> _Model:
    """Return the ``model`` object of a row read with Core, in the session as a query leaves it.

    The hot paths read with Core: an ORM query of one user costs about twice the Core
    statement on SQLite (≈200 µs against ≈110 µs CPU), a joined-load query or an ORM
    INSERT .. RETURNING of the entity three to five times. The object is
    persistent, with no pending change; relationships load on first access, as after a
    query. An object the session already holds for that row is returned as it is, as a
    query would (without ``populate_existing``). ``row`` holds every column of the table.
    """
    mapper = model.__mapper__  # type: ignore[attr-defined]
    mapping = row._mapping
    session = db.session()
    key = mapper.identity_key_from_primary_key([mapping[c] for c in mapper.primary_key])
    held = session.identity_map.get(key)
    if held is not None:
        return held
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update({name: mapping[column] for name, column in _column_attrs(model)})
    make_transient_to_detached(obj)
    session.add(obj)
    return obj
