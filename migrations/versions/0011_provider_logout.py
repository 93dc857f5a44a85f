"""Back-channel logout and the deprovisioning webhook (issue 9, items 3 and 4)

Single-use values (logout token ``jti``, webhook signatures), the sessions a provider ended,
the Webhook Signing Secret, a binding the provider deleted, and the user's last provider
logout. Existing rows keep their values: every new column is empty or null.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 07:20:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "used_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_used_tokens")),
        sa.UniqueConstraint("digest", name=op.f("uq_used_tokens_digest")),
    )
    op.create_index(op.f("ix_used_tokens_expires_at"), "used_tokens", ["expires_at"])
    op.create_table(
        "provider_session_ends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("auth_system_id", sa.Integer(), nullable=False),
        sa.Column("sid", sa.String(length=255), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_provider_session_ends_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["auth_system_id"],
            ["auth_systems.id"],
            name=op.f("fk_provider_session_ends_auth_system_id_auth_systems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_session_ends")),
    )
    op.create_index(op.f("ix_provider_session_ends_user_id"), "provider_session_ends", ["user_id"])
    op.create_index(
        op.f("ix_provider_session_ends_ended_at"), "provider_session_ends", ["ended_at"]
    )
    op.create_table(
        "provider_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("auth_system_id", sa.Integer(), nullable=False),
        sa.Column("sid", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("signed_in_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["auth_system_id"],
            ["auth_systems.id"],
            name=op.f("fk_provider_sessions_auth_system_id_auth_systems"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_provider_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_sessions")),
    )
    op.create_index(
        "ix_provider_sessions_system_sid", "provider_sessions", ["auth_system_id", "sid"]
    )
    op.create_index(op.f("ix_provider_sessions_user_id"), "provider_sessions", ["user_id"])
    # Plain ADD COLUMNs: on SQLite a batch rebuild would drop AUTOINCREMENT (ids never reused).
    op.add_column(
        "auth_systems",
        sa.Column("webhook_secret_encrypted", sa.Text(), nullable=False, server_default=""),
    )
    op.add_column("identities", sa.Column("disabled_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("provider_logout_at", sa.Float()))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("provider_logout_at")
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
    op.drop_column("auth_systems", "webhook_secret_encrypted")
    op.drop_index(op.f("ix_provider_sessions_user_id"), table_name="provider_sessions")
    op.drop_index("ix_provider_sessions_system_sid", table_name="provider_sessions")
    op.drop_table("provider_sessions")
    op.drop_index(op.f("ix_provider_session_ends_ended_at"), table_name="provider_session_ends")
    op.drop_index(op.f("ix_provider_session_ends_user_id"), table_name="provider_session_ends")
    op.drop_table("provider_session_ends")
    op.drop_index(op.f("ix_used_tokens_expires_at"), table_name="used_tokens")
    op.drop_table("used_tokens")
