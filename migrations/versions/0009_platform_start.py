"""Sign-ins started by the platform: the opt-in flag and the Refresh Token Post Body

Existing systems keep refusing a POSTed refresh token (the flag is off) and get the
documented refresh body, so turning the flag on later needs no other change.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 17:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DEFAULT_REFRESH_TOKEN_BODY = (
    "grant_type=refresh_token&refresh_token=%RefreshToken%&client_id=%ClientID%"
    "&client_secret=%ClientSecret%"
)


def upgrade():
    # Plain ADD COLUMNs: on SQLite a batch rebuild would drop AUTOINCREMENT (ids never reused).
    op.add_column(
        "auth_systems",
        sa.Column("platform_start", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "auth_systems",
        sa.Column("refresh_token_body", sa.Text(), nullable=False, server_default=""),
    )
    auth_systems = sa.table("auth_systems", sa.column("refresh_token_body", sa.Text()))
    op.execute(auth_systems.update().values(refresh_token_body=DEFAULT_REFRESH_TOKEN_BODY))


def downgrade():
    op.drop_column("auth_systems", "refresh_token_body")
    op.drop_column("auth_systems", "platform_start")
