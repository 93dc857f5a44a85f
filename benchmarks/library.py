"""Time the Library page for a member in 50 of 1,000 groups at 1k, 10k and 100k items.

Usage::

    .venv/bin/python benchmarks/library.py                 # a throw-away SQLite database
    .venv/bin/python benchmarks/library.py --database-url postgresql://postgres@127.0.0.1/bench

The PostgreSQL database is emptied first (its public schema is dropped): never point this
at a database you care about. One item in ten is open to everyone signed in; the others
name two random groups each. The script prints, per size, the median wall time of a full
``GET /library`` (routing, session, SQL and template) over ``--runs`` requests, the number
of SQL statements it ran and how many items the member may open.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal import create_app  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.models import ContentItem, GroupMembership, MemberGroup  # noqa: E402
from portal.models.content import content_groups  # noqa: E402
from portal.services.accounts import NewUser, create_user  # noqa: E402

SIZES = (1_000, 10_000, 100_000)
GROUPS = 1_000
MEMBER_GROUPS = 50
PASSWORD = "benchmark-password"
KINDS = ("recording", "library", "subscription")


def normalize(url: str) -> str:
    """Use the psycopg 3 driver for PostgreSQL URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema of the benchmark database."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def add_items(start: int, stop: int, group_ids: list[int], rng: random.Random) -> None:
    """Insert items ``start..stop-1``; nine in ten name two random groups."""
    batch = 10_000
    for lo in range(start, stop, batch):
        hi = min(stop, lo + batch)
        first_id = (db.session.scalar(sa.select(sa.func.max(ContentItem.id))) or 0) + 1
        db.session.execute(
            sa.insert(ContentItem),
            [
                {
                    "title": f"Item {i:06d}",
                    "kind": KINDS[i % 3],
                    "url": f"https://video.example.com/{i}",
                    "description": "",
                    "embed": False,
                    "visibility": "signed_in" if i % 10 == 0 else "groups",
                }
                for i in range(lo, hi)
            ],
        )
        ids = db.session.scalars(
            sa.select(ContentItem.id).where(
                ContentItem.id >= first_id, ContentItem.visibility == "groups"
            )
        )
        links = [
            {"content_id": item_id, "group_id": g}
            for item_id in ids
            for g in rng.sample(group_ids, 2)
        ]
        db.session.execute(sa.insert(content_groups), links)
        db.session.commit()


def count_visible(user) -> int:
    """Return how many items ``user`` may open."""
    from portal.services.content import visible_item_ids

    return db.session.scalar(sa.select(sa.func.count()).select_from(visible_item_ids(user)))


def main() -> None:
    """Build the data set step by step and time the page at each size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    if args.database_url:
        url = normalize(args.database_url)
        reset_postgres(url)
    else:
        url = "sqlite:///" + str(Path(tmp.name) / "bench.sqlite3")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "WTF_CSRF_ENABLED": False,
            "PORTAL_BASE_URL": "http://localhost",
        }
    )
    from flask_migrate import upgrade

    rng = random.Random(2026)  # noqa: S311 (reproducible test data, not secrets)
    with app.app_context():
        upgrade()
        db.session.execute(
            sa.insert(MemberGroup),
            [
                {"name": f"Group {i}", "name_key": f"group {i}", "description": ""}
                for i in range(GROUPS)
            ],
        )
        member = create_user(NewUser(email="member@example.com", password=PASSWORD))
        group_ids = list(db.session.scalars(sa.select(MemberGroup.id)))
        db.session.execute(
            sa.insert(GroupMembership),
            [{"user_id": member.id, "group_id": g} for g in rng.sample(group_ids, MEMBER_GROUPS)],
        )
        db.session.commit()
        if url.startswith("postgresql"):
            with db.engine.begin() as conn:
                conn.execute(sa.text("ANALYZE"))

        client = app.test_client()
        client.post("/login", data={"email": "member@example.com", "password": PASSWORD})
        statements: list[str] = []
        sa.event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

        print(
            f"Library page, member in {MEMBER_GROUPS} of {GROUPS} groups ({db.engine.dialect.name})"
        )
        print(f"{'items':>8} {'visible':>8} {'median ms':>10} {'statements':>11}")
        done = 0
        for size in SIZES:
            add_items(done, size, group_ids, rng)
            done = size
            if url.startswith("postgresql"):
                with db.engine.begin() as conn:
                    conn.execute(sa.text("ANALYZE"))
            assert client.get("/library").status_code == 200  # warm up
            times = []
            for _ in range(args.runs):
                db.session.remove()  # a fresh session, like a real request
                statements.clear()
                t0 = time.perf_counter()
                response = client.get("/library")
                times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200
            page_statements = len(statements)
            db.session.expire_all()
            visible = count_visible(db.session.get(type(member), member.id))
            print(f"{size:>8} {visible:>8} {statistics.median(times):>10.1f} {page_statements:>11}")
        db.session.remove()
        db.engine.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
