"""Migrations build the schema from empty on SQLite and PostgreSQL, and match the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from portal import create_app
from portal.extensions import db
from tests.support.database import is_postgres, scratch_database
from tests.support.keys import TEST_KEY


@pytest.fixture
def empty_database_url(database_url, tmp_path):
    """Yield the URL of a brand-new empty database of the same kind as the suite's."""
    if not is_postgres(database_url):
        yield "sqlite:///" + str(tmp_path / "empty.sqlite3")
        return
    with scratch_database(database_url, prefix="portal_migrations") as url:
        yield url


def test_migrations_apply_from_empty_and_match_models(empty_database_url, tmp_path, monkeypatch):
    """An empty database upgraded by the migrations matches the models (no autogenerate diff)."""
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": empty_database_url, "PORTAL_ENCRYPTION_KEYS": [TEST_KEY]}
    )
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == []
        downgrade(revision="base")
        with db.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
        assert tables == set()
        db.engine.dispose()
