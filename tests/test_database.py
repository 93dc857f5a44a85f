"""Pooled server connections: a connection that died while idle in the pool is replaced."""

import pytest
import sqlalchemy as sa

from portal import database
from portal.extensions import db


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
