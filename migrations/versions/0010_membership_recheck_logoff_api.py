"""Membership during a session: re-check interval, grace period, Logoff API, SSO sessions

Existing systems get re-checking off (0 minutes), a 60-minute grace period for when it is
turned on, and no Logoff API (empty URL, POST). The new ``sso_sessions`` table holds the
tokens of sessions signed in through a system that needs them; it starts empty.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 07:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMNs: on SQLite a batch rebuild would drop AUTOINCREMENT (ids never reused).
    for name in ("logoff_url", "logoff_headers", "logoff_body"):
        op.add_column("auth_systems", sa.Column(name, sa.Text(), nullable=False, server_default=""))
    op.add_column(
        "auth_systems",
        sa.Column("logoff_method", sa.String(10), nullable=False, server_default="POST"),
    )
    op.add_column(
        "auth_systems",
        sa.Column("recheck_minutes", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "auth_systems",
        sa.Column("grace_minutes", sa.Integer(), nullable=False, server_default="60"),
    )
    op.create_table(
        "sso_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "auth_system_id",
            sa.Integer(),
            sa.ForeignKey("auth_systems.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("session_generation", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=False),
        sa.Column("token_response_encrypted", sa.Text(), nullable=False),
        sa.Column("access_expires_at", sa.DateTime(timezone=True)),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checking_since", sa.DateTime(timezone=True)),
        sa.Column("unreachable_since", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sso_sessions_user_id", "sso_sessions", ["user_id"])
    op.create_index("ix_sso_sessions_auth_system_id", "sso_sessions", ["auth_system_id"])


def downgrade():
    op.drop_index("ix_sso_sessions_auth_system_id", table_name="sso_sessions")
    op.drop_index("ix_sso_sessions_user_id", table_name="sso_sessions")
    op.drop_table("sso_sessions")
    for name in (
        "grace_minutes",
        "recheck_minutes",
        "logoff_method",
        "logoff_body",
        "logoff_headers",
        "logoff_url",
    ):
        op.drop_column("auth_systems", name)
