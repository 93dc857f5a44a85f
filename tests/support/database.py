"""The test database: URL spelling and scratch PostgreSQL databases that each run owns."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def normalize(url: str) -> str:
    """Return a PostgreSQL URL spelled for the psycopg 3 driver (other URLs unchanged)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_postgres(url: str) -> bool:
    """Tell whether the test database is PostgreSQL."""
    return url.startswith("postgresql")


def scratch_name(prefix: str) -> str:
    """Return a database name no other run (process, xdist worker) picks at the same time."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"{prefix}_{os.getpid()}_{worker}_{uuid.uuid4().hex[:8]}"


@contextmanager
def scratch_database(server_url: str, prefix: str = "portal_test") -> Iterator[str]:
    """Create an empty database on the server of ``server_url``; yield its URL, then drop it.

    The given database is only used to connect: two runs given the same URL never share tables.
    """
    name = scratch_name(prefix)
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
