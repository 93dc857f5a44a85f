"""Pooled server connections: a connection that died while idle in the pool is replaced.

Statements run on the driver's cursor (`PlainStatement`): values convert as through the ORM,
the engine's listeners see them, and a loan leaves no transaction, lock or autocommit behind.
"""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from portal import database
from portal.database import PlainStatement, plain_connection
from portal.extensions import db
from portal.models import LoginAttempt


@pytest.fixture
def server_db(app):
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite opens a local file: there is no server connection to lose")
    return app


def _backend_pid() -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def test_connection_killed_while_idle_is_replaced_before_use(server_db, monkeypatch):
    """The server drops a pooled connection (restart, idle timeout): the next page still works."""
    first = _backend_pid()
    # Someone else ends that session on the server while it waits in the pool.
    other = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
    with other.connect() as admin:
        assert admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": first}).scalar()
    other.dispose()
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 0.0)
    second = _backend_pid()
    assert second != first


_ATTEMPTS = LoginAttempt.__table__
_WRITE = PlainStatement(
    sa.insert(_ATTEMPTS)
    .values(
        state_hash=sa.bindparam("p_state"),
        browser_hash="b" * 64,
        auth_system_id=sa.bindparam("p_system"),
        issuer="",
        nonce="n",
        code_verifier_encrypted="v",
        next_path="/library",
        is_test=sa.bindparam("p_test"),
        test_result=sa.bindparam("p_result"),
        created_at=sa.bindparam("p_created"),
    )
    .returning(_ATTEMPTS.c.id),
    columns=[_ATTEMPTS.c.id],
)
_READ = PlainStatement(
    sa.select(
        _ATTEMPTS.c.id, _ATTEMPTS.c.is_test, _ATTEMPTS.c.test_result, _ATTEMPTS.c.created_at
    ).where(_ATTEMPTS.c.state_hash == sa.bindparam("p_state")),
    columns=[_ATTEMPTS.c.id, _ATTEMPTS.c.is_test, _ATTEMPTS.c.test_result, _ATTEMPTS.c.created_at],
)


def _write(connection, state: str, system_id: int) -> int:
    values = {
        "p_state": state,
        "p_system": system_id,
        "p_test": True,
        "p_result": {"steps": ["token", "profile"], "ok": True},
        "p_created": datetime(2026, 12, 3, 9, 30, 15, 123456, tzinfo=UTC),
    }
    (row,) = connection.run(_WRITE, values)
    return row["id"]


def test_plain_statements_convert_values_as_the_orm_does(app, create_auth_system):
    """A date, a boolean and JSON written on the driver's cursor read back the same both ways."""
    system = create_auth_system()
    with plain_connection() as connection:
        new_id = _write(connection, "s" * 64, system.id)
        connection.commit()
        (read,) = connection.run(_READ, {"p_state": "s" * 64})
    assert read == {
        "id": new_id,
        "is_test": True,
        "test_result": {"steps": ["token", "profile"], "ok": True},
        "created_at": read["created_at"],
    }
    assert read["created_at"].replace(tzinfo=UTC) == datetime(2026, 12, 3, 9, 30, 15, 123456, UTC)
    through_orm = db.session.get(LoginAttempt, new_id)
    assert through_orm.is_test is True
    assert through_orm.test_result == {"steps": ["token", "profile"], "ok": True}
    assert through_orm.created_at == read["created_at"]
    assert through_orm.next_path == "/library"


def test_plain_statements_are_seen_by_the_engines_listeners(app, create_auth_system):
    """Statement counters (the sign-in's budget test) count them like any other statement."""
    system_id = create_auth_system().id
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        with plain_connection() as connection:
            _write(connection, "t" * 64, system_id)
            connection.commit()
            connection.run(_READ, {"p_state": "t" * 64})
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert [sql.split()[0] for sql in seen] == ["INSERT", "SELECT"]


def test_a_failed_loan_leaves_no_lock_and_no_autocommit_behind(app, create_auth_system):
    """An error inside a loan: nothing half-done stays open, and the next session works as usual."""
    system_id = create_auth_system().id
    db.session.remove()
    db.engine.dispose()  # one pooled connection from here on: the loan's is the session's next
    with pytest.raises(RuntimeError), plain_connection() as connection:
        _write(connection, "u" * 64, system_id)
        raise RuntimeError("the request failed after the write")
    queue = database._WRITER_QUEUES.get(db.engine)
    assert queue is None or not queue.locked(), "the SQLite writer queue is still held"
    # SQLite: the uncommitted write was rolled back; a server database committed it alone.
    kept = db.session.scalar(sa.select(sa.func.count()).select_from(LoginAttempt))
    assert kept == (0 if db.engine.dialect.name == "sqlite" else 1)
    # The connection is back in a transaction: a session's rolled-back write leaves nothing.
    db.session.add(
        LoginAttempt(
            state_hash="w" * 64,
            browser_hash="b" * 64,
            auth_system_id=system_id,
            nonce="n",
            code_verifier_encrypted="v",
        )
    )
    db.session.flush()
    db.session.rollback()
    assert (
        db.session.scalar(sa.select(LoginAttempt).where(LoginAttempt.state_hash == "w" * 64))
        is None
    )


def test_a_refused_plain_statement_raises_as_sqlalchemy_does_without_its_values(
    app, create_auth_system
):
    """A unique constraint refuses the second row: IntegrityError, its values not in the message."""
    system_id = create_auth_system().id
    with plain_connection() as connection:
        _write(connection, "x" * 64, system_id)
        connection.commit()
    with pytest.raises(sa.exc.IntegrityError) as refused, plain_connection() as connection:
        _write(connection, "x" * 64, system_id)
    # The statement's values are hidden (the database's own message may name the key).
    assert "[parameters" not in str(refused.value) and "profile" not in str(refused.value)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LoginAttempt)) == 1


def test_plain_statements_share_a_cursor_that_holds_nothing_open(app, create_auth_system):
    """One cursor per connection runs its plain statements; between two, nothing stays open.

    On SQLite an unfinished read would keep the WAL from being checkpointed (the file grows
    without end); on PostgreSQL a connection left in a transaction holds its snapshot.
    """
    system_id = create_auth_system().id
    db.session.remove()
    db.engine.dispose()  # one pooled connection from here on
    cursors = []
    with plain_connection() as connection:
        _write(connection, "k" * 64, system_id)
        connection.commit()
        cursors.append(database._plain_cursor(connection._fairy))
    for _ in range(2):
        with plain_connection() as connection:
            [row] = connection.run(_READ, {"p_state": "k" * 64})
            assert row["is_test"] is True
            cursors.append(database._plain_cursor(connection._fairy))
            driver = connection._fairy.dbapi_connection
    assert cursors[0] is cursors[1] is cursors[2]
    if db.engine.dialect.name == "sqlite":
        import sqlite3

        other = sqlite3.connect(db.engine.url.database)
        try:
            busy, _log, _done = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            other.close()
        assert busy == 0, "a reader kept the WAL from being checkpointed"
    else:
        watcher = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
        try:
            with watcher.connect() as other:
                state = other.execute(
                    sa.text("SELECT state FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": driver.info.backend_pid},
                ).scalar_one()
        finally:
            watcher.dispose()
        assert state == "idle"


def test_a_row_attached_is_the_sessions_object_as_a_query_leaves_it(
    app, member, create_auth_system
):
    """`attach_loaded`: persistent and clean; its relationships load on first use; a change is
    written at commit; a second attach of the same row returns the object already held."""
    from sqlalchemy import inspect

    from portal.auth.sessions import _USER_BY_ID
    from portal.database import attach_loaded
    from portal.models import Identity, User

    system = create_auth_system()
    db.session.add(Identity(user_id=member.id, auth_system_id=system.id, subject="s-1"))
    db.session.commit()
    member_id = member.id
    db.session.remove()
    with plain_connection() as connection:
        [row] = connection.run(_USER_BY_ID, {"user_id": member_id})
    user = attach_loaded(User, row)
    state = inspect(user)
    assert state.persistent and user in db.session and not db.session.dirty
    assert user.email == "member@example.com"
    assert [identity.subject for identity in user.identities] == ["s-1"]  # lazy load works
    assert attach_loaded(User, row) is user
    user.first_name = "Renamed"
    db.session.commit()
    db.session.remove()
    assert db.session.get(User, member_id).first_name == "Renamed"


def test_connections_held_at_once_by_every_thread_are_kept_for_the_next_burst(app):
    """A worker's threads each hold a connection, give them back, and take them again: the
    second burst opens none (a new PostgreSQL connection costs both sides milliseconds of CPU;
    with SQLAlchemy's default pool of 5, every burst closed and reopened the rest)."""
    from portal.config import DB_POOL_SIZE

    opened: list[object] = []

    def count(dbapi_connection, record):
        opened.append(dbapi_connection)

    sa.event.listen(db.engine, "connect", count)
    try:
        for _burst in range(3):
            held = [db.engine.raw_connection() for _ in range(DB_POOL_SIZE)]
            for connection in held:
                connection.close()
    finally:
        sa.event.remove(db.engine, "connect", count)
    assert len(opened) <= DB_POOL_SIZE, f"{len(opened)} connections opened for three bursts"


def test_only_a_sign_ins_attempt_commits_without_waiting_for_the_disk(app, create_auth_system):
    """A login attempt and its claim may commit without waiting for the server's disk; the
    account, its binding and the audit event never do, not even on the connection that has
    just run such a write (the setting lasts for that one statement's transaction)."""
    from sqlalchemy.dialects import postgresql, sqlite

    from portal.services import account_resolution, audit, login_attempts

    lazy = "set_config('synchronous_commit', 'off', true)"
    pg = postgresql.dialect()
    assert lazy in login_attempts._INSERT_ATTEMPT.sql(pg)
    assert lazy in login_attempts._CLAIM_ATTEMPT.sql(pg)
    durable = (
        account_resolution._INSERT_USER,
        account_resolution._INSERT_IDENTITY,
        account_resolution._TOUCH_USER,
        account_resolution._TOUCH_IDENTITY,
        audit._INSERT_EVENT,
    )
    assert not [s for s in durable if "synchronous_commit" in s.sql(pg)]
    assert "synchronous_commit" not in login_attempts._CLAIM_ATTEMPT.sql(sqlite.dialect())

    system_id = create_auth_system().id
    db.session.remove()
    db.engine.dispose()  # one pooled connection from here on
    with plain_connection() as connection:
        # The start's own INSERT, run as `record_login_attempt` runs it.
        (row,) = connection.run(
            login_attempts._INSERT_ATTEMPT,
            {
                "p_state_hash": "w" * 64,
                "p_browser_hash": "b" * 64,
                "p_auth_system_id": system_id,
                "p_issuer": "",
                "p_nonce": "n",
                "p_code_verifier_encrypted": "v",
                "p_next_path": "",
                "p_is_test": False,
                "p_created_at": datetime.now(UTC),
            },
        )
        connection.commit()
    on_server = db.engine.dialect.name == "postgresql"
    # PostgreSQL hands back the setting's new value; SQLite a plain NULL.
    assert row["commit_without_waiting"] == ("off" if on_server else None)
    # Committed: another connection sees the attempt.
    watcher = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
    try:
        with watcher.connect() as other:
            seen = other.execute(
                sa.select(_ATTEMPTS.c.id).where(_ATTEMPTS.c.state_hash == "w" * 64)
            ).scalar_one()
    finally:
        watcher.dispose()
    assert seen == row["id"]
    if on_server:
        # The same pooled connection, next transaction (the account's): durable again.
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW synchronous_commit")).scalar_one() == "on"
