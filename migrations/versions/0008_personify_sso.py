"""Personify SSO: a second connector type, its settings beside the OAuth 2.0 ones

Columns on ``auth_systems`` rather than a child table: a system has exactly one set of
them, the form, export and audit read every setting by its field name from the same row,
and the settings snapshot compiles a system without another query. The three secrets are
stored encrypted, as the Client Secret is.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 16:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: (column, type) in the form's order; every one is NOT NULL, empty for existing systems.
COLUMNS = (
    ("sso_login_url", sa.Text()),
    ("vendor_id", sa.String(length=50)),
    ("vendor_username", sa.String(length=255)),
    ("vendor_password_encrypted", sa.Text()),
    ("vendor_block_encrypted", sa.Text()),
    ("sso_web_service_url", sa.Text()),
    ("ims_web_service_url", sa.Text()),
    ("data_services_url", sa.Text()),
    ("data_services_username", sa.String(length=255)),
    ("data_services_password_encrypted", sa.Text()),
)


def upgrade():
    # The server default fills existing rows, and rows other tools insert without them.
    with op.batch_alter_table("auth_systems", schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=False, server_default=""))


def downgrade():
    with op.batch_alter_table("auth_systems", schema=None) as batch_op:
        for name, _type in reversed(COLUMNS):
            batch_op.drop_column(name)
