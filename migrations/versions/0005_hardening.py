"""Hardening: trusted linking settings, pending emails, session generations, stable system ids

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:10:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username_source", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("email_pending", sa.String(length=254), nullable=True))
        batch_op.add_column(
            sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))

    # SQLite reuses the largest deleted rowid unless the table is AUTOINCREMENT: rebuild it so,
    # and start its sequence above every id the audit log already names.
    table_kwargs = {"sqlite_autoincrement": True} if sqlite else {}
    with op.batch_alter_table(
        "auth_systems",
        schema=None,
        recreate="always" if sqlite else "auto",
        table_kwargs=table_kwargs,
    ) as batch_op:
        batch_op.add_column(
            sa.Column("trusts_email", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("trusts_username", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    if sqlite:
        highest = bind.execute(
            sa.text(
                "SELECT max(coalesce((SELECT max(id) FROM auth_systems), 0),"
                " coalesce((SELECT max(auth_system_id) FROM audit_events), 0))"
            )
        ).scalar()
        if highest:
            bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'auth_systems'"))
            bind.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('auth_systems', :seq)"),
                {"seq": int(highest)},
            )

    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_attempts_browser_hash"), ["browser_hash"], unique=False
        )


def downgrade():
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_attempts_browser_hash"))
    with op.batch_alter_table("auth_systems", schema=None) as batch_op:
        batch_op.drop_column("trusts_username")
        batch_op.drop_column("trusts_email")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
        batch_op.drop_column("session_generation")
        batch_op.drop_column("email_pending")
        batch_op.drop_column("username_source")
