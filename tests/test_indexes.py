"""Every sign-in's lookups go through their unique keys, and no index is written for nothing.

An index whose columns lead another index of the same table serves no lookup the other does
not, yet every INSERT writes it, and on PostgreSQL the generic plan of a prepared statement
could choose it while the table was small and keep it as the table grew: the binding lookup
then read every binding of the system, the claim every attempt, at each sign-in.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from portal import create_app
from portal.database import PlainStatement
from portal.extensions import db
from portal.services.account_resolution import _BINDING_OR_HOLDERS
from portal.services.login_attempts import _CLAIM_ATTEMPT
from tests.support.database import is_postgres, scratch_database
from tests.support.keys import TEST_KEY


def _keys(inspector: Any, table: str) -> list[tuple[tuple[str, ...], bool, str]]:
    """Return ``(columns, unique, name)`` of each index and unique constraint of ``table``."""
    found = [
        (tuple(index["column_names"]), bool(index["unique"]), index["name"])
        for index in inspector.get_indexes(table)
    ]
    found += [
        (tuple(constraint["column_names"]), True, constraint["name"])
        for constraint in inspector.get_unique_constraints(table)
    ]
    return found


def test_no_index_repeats_the_leading_columns_of_another(app):
    """The migrated schema has no plain index whose columns lead another index or unique
    constraint of its table (that one already serves every lookup by them)."""
    inspector = sa.inspect(db.engine)
    redundant = []
    for table in inspector.get_table_names():
        keys = _keys(inspector, table)
        for columns, unique, name in keys:
            if unique:
                continue
            for other_columns, _other_unique, other_name in keys:
                longer = len(other_columns) > len(columns)
                if other_name != name and longer and other_columns[: len(columns)] == columns:
                    redundant.append(f"{table}.{name} {columns} leads {other_name}")
    assert redundant == []


def _sign_in_lookups() -> dict[str, tuple[PlainStatement, str, set[tuple[str, ...]]]]:
    """The lookups of a sign-in: statement, table, and the keys it may search that table by
    (each names one row)."""
    return {
        "the callback's claim of its attempt": (
            _CLAIM_ATTEMPT,
            "login_attempts",
            {("state_hash",)},
        ),
        "the binding lookup": (
            _BINDING_OR_HOLDERS,
            "identities",
            {("auth_system_id", "subject")},
        ),
        "the lookup of the accounts holding the email address or username": (
            _BINDING_OR_HOLDERS,
            "users",
            {("id",), ("email",), ("username_key",)},
        ),
    }


@pytest.fixture
def new_community(database_url, tmp_path, monkeypatch):
    """Yield an app on a database just migrated from empty, as a new community's: its tables
    were never analyzed (on PostgreSQL the planner assumes each has ten pages)."""
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))

    def on(url: str):
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "PORTAL_ENCRYPTION_KEYS": [TEST_KEY]})
        with app.app_context():
            upgrade()
            yield app
            db.session.remove()
            db.engine.dispose()

    if not is_postgres(database_url):
        yield from on("sqlite:///" + str(tmp_path / "new.sqlite3"))
        return
    with scratch_database(database_url, prefix="portal_plans") as url:
        yield from on(url)


def _postgresql_generic_plan(sql: str) -> list[dict[str, Any]]:
    """Return the plan nodes PostgreSQL keeps for ``sql`` prepared (its generic plan)."""
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", numbered, sql).replace("%%", "%")
    nodes: list[dict[str, Any]] = []
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE lookup AS {prepared}")
        nulls = ", ".join(["NULL"] * len(names))
        plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) EXECUTE lookup({nulls})").scalar()
        conn.exec_driver_sql("DEALLOCATE lookup")
        conn.rollback()
    pending = [(json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending.extend(node.get("Plans", []))
    return nodes


@pytest.mark.parametrize("lookup", sorted(_sign_in_lookups()))
def test_a_sign_in_looks_its_rows_up_by_a_key_that_names_them(new_community, lookup):
    """On a new community's empty tables, each lookup searches its table through an index of a
    key naming the row (never every row of the system, nor the whole table): on PostgreSQL in
    the plan it keeps prepared, on SQLite in its query plan."""
    statement, table, keys = _sign_in_lookups()[lookup]
    dialect = db.engine.dialect
    sql = statement.sql(dialect)
    if dialect.name == "postgresql":
        indexes = {name: columns for columns, _unique, name in _keys(sa.inspect(db.engine), table)}
        if table == "users":
            indexes["pk_users"] = ("id",)
        nodes = _postgresql_generic_plan(sql)
        scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == table]
        assert "Seq Scan" not in scans, f"{lookup} reads all of {table}"
        used = [indexes[n["Index Name"]] for n in nodes if n.get("Index Name") in indexes]
        assert used, f"{lookup}: no index of {table} in the plan"
        assert set(used) <= keys, f"{lookup} searches {table} by {used}"
        return
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", (None,) * sql.count("?")).all()
    # (SQLite names a table's integer primary key "rowid".)
    details = [
        row[-1].replace("rowid=", "id=") for row in rows if re.search(rf"\b{table}\b", row[-1])
    ]
    assert details, f"{lookup}: no search of {table}"
    assert not [d for d in details if d.startswith("SCAN")], f"{lookup}: {details}"
    searched = [
        tuple(term.split("=")[0] for term in match.split(" AND "))
        for detail in details
        for match in re.findall(r"\(([^)]*)\)", detail)
    ]
    assert searched and set(searched) <= keys, f"{lookup}: {details}"
