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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine, Row
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state

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

    def locked(self) -> bool:
        """Tell whether a writer of this process holds the queue."""
        return self._lock.locked()

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


#: Per SQLite engine, its writer queue.
_WRITER_QUEUES: weakref.WeakKeyDictionary[Engine, _WriterQueue] = weakref.WeakKeyDictionary()

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
    queue = _WRITER_QUEUES[engine] = _WriterQueue()
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


def attach_loaded(model: type[_Model], row: Row[Any] | dict[str, Any]) -> _Model:
    """Return the ``model`` object of a row read with Core, in the session as a query leaves it.

    The hot paths read with Core: an ORM query of one user costs about twice the Core
    statement on SQLite (≈200 µs against ≈110 µs CPU), a joined-load query or an ORM
    INSERT .. RETURNING of the entity three to five times. The object is
    persistent, with no pending change; relationships load on first access, as after a
    query. An object the session already holds for that row is returned as it is, as a
    query would (without ``populate_existing``). ``row`` holds every column of the table (a
    `PlainStatement` row: by column name).
    """
    mapper = model.__mapper__  # type: ignore[attr-defined]
    session = db.session()
    if isinstance(row, dict) and isinstance(next(iter(row), ""), str):
        # A `PlainStatement` row keyed by column name.
        values = {name: row[column.key] for name, column in _column_attrs(model)}
        pk = [row[c.key] for c in mapper.primary_key]
    elif isinstance(row, dict):  # keyed by column (``by_column``)
        values = {name: row[column] for name, column in _column_attrs(model)}
        pk = [row[c] for c in mapper.primary_key]
    else:
        mapping = row._mapping
        values = {name: mapping[column] for name, column in _column_attrs(model)}
        pk = [mapping[c] for c in mapper.primary_key]
    held = session.identity_map.get(mapper.identity_key_from_primary_key(pk))
    if held is not None:
        return held
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update(values)
    make_transient_to_detached(obj)
    # What ``session.add`` does for a detached object, less its walk of the relationships for
    # objects to cascade to: a new object has none loaded (about 20 us of a user's load).
    session._update_impl(instance_state(obj))
    return obj


# -- statements that stand alone, on the driver's cursor ------------------------------------


class _CommitWithoutWaiting(sa.sql.expression.ColumnElement[Any]):
    """A RETURNING column that lets the statement's transaction commit without waiting for
    the server's disk (PostgreSQL: ``set_config('synchronous_commit', 'off', true)``).

    For rows that only a sign-in in progress needs (a login attempt and its claim), never for
    an account, a session or an audit event. Safe because PostgreSQL writes its log in order:
    the sign-in's own transaction (the account and the audit event) commits durably after the
    claim, and making it durable makes everything before it durable, the claim included. A
    crash of the database server can only lose the attempts of sign-ins that had not finished:
    their members start again. The setting lasts for the statement's transaction alone
    (``true``: as SET LOCAL), and it is evaluated only for a row written (a claim that matched
    nothing commits nothing). Nothing on SQLite, where a plain NULL is returned.
    """

    type = sa.types.NullType()
    inherit_cache = True


@compiles(_CommitWithoutWaiting)
def _commit_without_waiting(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "NULL"


@compiles(_CommitWithoutWaiting, "postgresql")
def _commit_without_waiting_pg(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "set_config('synchronous_commit', 'off', true)"


#: Add to a `PlainStatement`'s RETURNING (and columns) for a row a crash may lose (above).
COMMIT_WITHOUT_WAITING = _CommitWithoutWaiting().label("commit_without_waiting")


class PlainStatement:
    """A Core statement compiled once per dialect by SQLAlchemy, run on the driver's cursor.

    The sign-in's statements that stand alone (the settings version, a login attempt's
    INSERT and its claim, the user loader) cost about five times the driver's own work when
    they go through a session and a Connection (≈100 µs against ≈20 µs CPU on SQLite, plus
    ≈200 µs for the session and its transaction). SQLAlchemy still writes the SQL, and its
    types still convert the values both ways (dates on SQLite, JSON, booleans); only the
    per-execution machinery is skipped. Run with `plain_connection`.

    Parameters are bound by name (``bindparam``); ``columns`` are the result's columns in
    order (their types convert the values read), and each row comes back as a dict keyed
    by column name (by the column itself with ``by_column``, for a join of tables that share
    column names).
    """

    def __init__(
        self, statement: Any, columns: Sequence[Any] = (), *, by_column: bool = False
    ) -> None:
        self._statement = statement
        self._columns = tuple(columns)
        self._by_column = by_column
        self._by_dialect: dict[str, tuple[Any, ...]] = {}
        self._results: dict[str, tuple[tuple[str, Any], ...]] = {}

    def _compiled(self, dialect: Dialect) -> tuple[Any, ...]:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            compiled = self._statement.compile(dialect=dialect)
            binds = {
                name: param.type.dialect_impl(dialect).bind_processor(dialect)
                for name, param in compiled.binds.items()
            }
            order = tuple(compiled.positiontup) if compiled.positional else None
            # Values the statement carries itself (``id == 1``), as SQLAlchemy would bind them.
            fixed = {
                name: param.effective_value
                for name, param in compiled.binds.items()
                if not param.required
            }
            found = (str(compiled), binds, order, fixed)
            self._by_dialect[dialect.name] = found
        return found

    def parameters(self, dialect: Dialect, values: Mapping[str, Any]) -> Any:
        """Return ``values`` converted by their types, in the driver's parameter style."""
        _sql, binds, order, fixed = self._compiled(dialect)
        converted = {}
        for name, value in (fixed | dict(values)).items():
            process = binds.get(name)
            converted[name] = process(value) if process is not None and value is not None else value
        return tuple(converted[name] for name in order) if order is not None else converted

    def knows_results(self, dialect: Dialect) -> bool:
        """Tell whether the result's converters for ``dialect`` are known (`rows` needs no
        description then)."""
        return dialect.name in self._results

    def rows(
        self,
        dialect: Dialect,
        description: Sequence[Any] | None,
        fetched: Sequence[Sequence[Any]],
    ) -> list[dict[str, Any]]:
        """Return the fetched rows as dicts by column name, their values converted.

        ``description`` (the cursor's) is needed the first time only.
        """
        results = self._results.get(dialect.name)
        if results is None:
            if description is None:
                raise ValueError("the first rows of a statement need the cursor's description")
            # The driver's type codes (the cursor's description) choose some converters.
            results = self._results[dialect.name] = tuple(
                (
                    column if self._by_column else column.key,
                    column.type.dialect_impl(dialect).result_processor(dialect, code),
                )
                for column, (_name, code, *_rest) in zip(self._columns, description, strict=True)
            )
        return [
            {
                key: (process(value) if process is not None else value)
                for (key, process), value in zip(results, row, strict=True)
            }
            for row in fetched
        ]

    @property
    def columns(self) -> tuple[Any, ...]:
        """The result's columns (none: the rows, if any, are not read)."""
        return self._columns

    def sql(self, dialect: Dialect) -> str:
        """Return the statement's SQL for ``dialect``."""
        return str(self._compiled(dialect)[0])


class PlainConnection:
    """A pooled connection running `PlainStatement` objects, each committed at once."""

    def __init__(self, engine: Engine, fairy: Any) -> None:
        self._engine = engine
        self._fairy = fairy
        self.dialect = engine.dialect

    def run(self, statement: PlainStatement, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Execute ``statement`` with ``values``; return its rows (dicts by column name)."""
        return _run(
            self._engine.dispatch, self._fairy, self._fairy, self.dialect, statement, values
        )

    def commit(self) -> None:
        """Commit what the statements wrote (on a server database, each was already)."""
        self._fairy.commit()


def _run(
    dispatch: Any,
    listened: Any,
    fairy: Any,
    dialect: Dialect,
    statement: PlainStatement,
    values: Mapping[str, Any],
) -> list[Any]:
    sql = statement.sql(dialect)
    parameters = statement.parameters(dialect, values)
    cursor = _plain_cursor(fairy)
    # The engine's listeners see the statement as any other (the SQLite writer queue,
    # statement counters).
    dispatch.before_cursor_execute(listened, cursor, sql, parameters, None, False)
    try:
        cursor.execute(sql, parameters)
    except dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy raises it (an IntegrityError for a unique constraint: the race of
        # two first sign-ins is retried on it), the parameters kept out of the message.
        raise sa.exc.DBAPIError.instance(
            sql,
            parameters,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            dialect=dialect,
        ) from exc
    if not statement.columns:
        # (An INSERT on PostgreSQL hands back its new key unasked: not wanted here.) On SQLite a
        # statement with rows stays open until they are read: finished here, as closing the
        # cursor would (psycopg has read its whole result already).
        if dialect.name == "sqlite" and cursor.description is not None:
            cursor.fetchall()
        return []
    # The description is read once per statement and dialect, for its type codes: psycopg
    # builds it anew at each access (a column object per column).
    description = None if statement.knows_results(dialect) else cursor.description
    return statement.rows(dialect, description, cursor.fetchall())


#: The driver's cursor that `PlainStatement` runs use on a connection, kept with it.
_PLAIN_CURSOR = "portal.plain_cursor"


def _plain_cursor(fairy: Any) -> Any:
    """Return the connection's cursor for `PlainStatement` runs, made at its first.

    A cursor can run one statement after another; making and closing one per statement
    costs psycopg about 20 us. It is kept in the pooled connection's ``info``, which
    SQLAlchemy clears when the connection is closed or invalidated, so it never outlives
    its connection; every statement's rows are read whole (or it has none), so a kept
    cursor holds no statement open (nor, on SQLite, a read lock).
    """
    info = fairy.info
    cursor = info.get(_PLAIN_CURSOR)
    if cursor is None:
        cursor = info[_PLAIN_CURSOR] = fairy.dbapi_connection.cursor()
    return cursor


def insert_statement(table: Any) -> PlainStatement:
    """Return a `PlainStatement` inserting every column of ``table`` but its generated key,
    handing the whole row back (values from `insert_values`)."""
    return PlainStatement(
        sa.insert(table)
        .values({c.key: sa.bindparam(f"p_{c.key}") for c in table.c if not _generated_key(c)})
        .returning(*table.c),
        columns=list(table.c),
    )


def insert_values(table: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the parameters of `insert_statement`: each column's value in ``values``, else its
    Python default (as an ORM or Core INSERT would apply it), else NULL."""
    found: dict[str, Any] = {}
    for column in table.c:
        if _generated_key(column):
            continue
        if column.key in values:
            value = values[column.key]
        elif column.default is not None and column.default.is_scalar:
            value = column.default.arg
        elif column.default is not None and column.default.is_callable:
            value = column.default.arg(None)
        else:
            value = None
        found[f"p_{column.key}"] = value
    return found


def _generated_key(column: Any) -> bool:
    return bool(column.primary_key and column.autoincrement in (True, "auto"))


def run_in_session(statement: PlainStatement, values: Mapping[str, Any]) -> list[Any]:
    """Run ``statement`` on the session's connection, in its transaction, on the driver's cursor.

    For the sign-in's transaction (the binding lookup, the returning member's UPDATEs, the
    audit event): committed or rolled back with the session. The session does not know the
    rows it changes: the caller keeps its objects in step (``set_committed_value``).
    """
    connection = db.session.connection()
    return _run(
        connection.dispatch,
        connection,
        connection.connection,
        connection.dialect,
        statement,
        values,
    )


def session_has_begun() -> bool:
    """Tell whether the session's transaction holds a connection (has sent its BEGIN).

    A session "begins" as soon as it is used (an object attached, a query built), long before
    it takes a connection; only a transaction holding one has read or written anything a
    statement standing alone could miss. (``_connections`` is SQLAlchemy's own record of
    them; were it ever gone, every transaction counts as begun.)
    """
    transaction = db.session().get_transaction()
    if transaction is None:
        return False
    return bool(getattr(transaction, "_connections", True))


def read_alone(statement: PlainStatement, values: Mapping[str, Any]) -> list[Any]:
    """Run a read that needs no transaction around it; return its rows.

    On PostgreSQL, while the session holds no transaction yet, it runs alone on an autocommit
    connection (`plain_connection`): no BEGIN before it, and the session's transaction, if
    one follows, begins at its first write. Each statement reads the latest committed rows
    there (READ COMMITTED), so it sees what it would have seen inside the transaction. On
    SQLite, or in a transaction already begun, it runs in the session (`run_in_session`).
    """
    if db.engine.dialect.name == "sqlite" or session_has_begun():
        return run_in_session(statement, values)
    with plain_connection() as connection:
        return connection.run(statement, values)


@contextmanager
def plain_connection() -> Iterator[PlainConnection]:
    """Lend a pooled connection for `PlainStatement` runs, outside any session.

    Each statement stands alone: on PostgreSQL the connection is in autocommit for the loan
    (no BEGIN, COMMIT or ROLLBACK round trips); on SQLite a write is committed by
    `PlainConnection.commit` (the writer queue is held from the first write until the
    connection is back in the pool). Nothing is left open: the pool rolls back whatever was
    not committed when the connection returns. It is never the session's connection, so it
    does not see what the session has not committed.
    """
    engine = db.engine
    fairy = engine.raw_connection()
    server = engine.dialect.name != "sqlite"
    try:
        if server:
            fairy.dbapi_connection.autocommit = True
        yield PlainConnection(engine, fairy)
    finally:
        if server:
            try:
                fairy.dbapi_connection.autocommit = False
            except Exception:  # noqa: BLE001  (a broken connection: the pool drops it)
                fairy.invalidate()
        fairy.close()
