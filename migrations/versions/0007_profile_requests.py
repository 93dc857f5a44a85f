"""Chained profile requests: a system's Profile API becomes request 1 of up to four

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 16:30:00

Each system's ``profile_url`` and ``profile_headers`` move to a ``profile_requests`` row at
position 1 (method GET, no body), and the two columns go; downgrade moves request 1 back (the
requests after it have no place in the old schema and are dropped).
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _rebuild_auth_systems(bind):
    """Alter auth_systems keeping SQLite's AUTOINCREMENT and its sequence (ids never reused)."""
    sqlite = bind.dialect.name == "sqlite"
    seq = None
    if sqlite:
        seq = bind.execute(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'auth_systems'")
        ).scalar()
    batch = op.batch_alter_table(
        "auth_systems",
        schema=None,
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True} if sqlite else {},
    )
    return batch, seq


def _restore_sequence(bind, seq):
    if bind.dialect.name == "sqlite" and seq:
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'auth_systems'"))
        bind.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('auth_systems', :seq)"),
            {"seq": int(seq)},
        )


def upgrade():
    requests = op.create_table(
        "profile_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("auth_system_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["auth_system_id"],
            ["auth_systems.id"],
            name=op.f("fk_profile_requests_auth_system_id_auth_systems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_requests")),
        sa.UniqueConstraint("auth_system_id", "position", name="uq_profile_requests_position"),
    )
    with op.batch_alter_table("profile_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_profile_requests_auth_system_id"), ["auth_system_id"], unique=False
        )

    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, profile_url, profile_headers FROM auth_systems"
            " WHERE profile_url <> '' OR profile_headers <> ''"
        )
    ).all()
    if rows:
        op.bulk_insert(
            requests,
            [
                {
                    "auth_system_id": system_id,
                    "position": 1,
                    "method": "GET",
                    "url": url or "",
                    "headers": headers or "",
                    "body": "",
                }
                for system_id, url, headers in rows
            ],
        )

    batch, seq = _rebuild_auth_systems(bind)
    with batch as batch_op:
        batch_op.drop_column("profile_url")
        batch_op.drop_column("profile_headers")
    _restore_sequence(bind, seq)


def downgrade():
    bind = op.get_bind()
    batch, seq = _rebuild_auth_systems(bind)
    with batch as batch_op:
        batch_op.add_column(sa.Column("profile_url", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("profile_headers", sa.Text(), nullable=False, server_default="")
        )
    _restore_sequence(bind, seq)
    first = bind.execute(
        sa.text("SELECT auth_system_id, url, headers FROM profile_requests WHERE position = 1")
    ).all()
    for system_id, url, headers in first:
        bind.execute(
            sa.text(
                "UPDATE auth_systems SET profile_url = :url, profile_headers = :headers"
                " WHERE id = :id"
            ),
            {"url": url, "headers": headers, "id": system_id},
        )
    with op.batch_alter_table("profile_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_requests_auth_system_id"))
    op.drop_table("profile_requests")
