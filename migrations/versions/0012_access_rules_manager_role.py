"""Access rules on any claim, and the community manager role from the provider

Each system's group mapping gains Allowed Email Domains (none), a Required Claim (none)
with its message, and Existing Accounts Only (off) with its message: existing systems keep
signing in exactly who they signed in before. A mapping rule may now give the community
manager role instead of a member group (``group_rules.group_id`` becomes nullable; no
existing rule changes), and an account records which system gave it that role (none yet).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 08:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "group_mapping_settings",
        sa.Column("allowed_email_domains", sa.JSON(), nullable=False, server_default="[]"),
    )
    for name in ("required_claim", "required_claim_message", "existing_accounts_message"):
        op.add_column(
            "group_mapping_settings", sa.Column(name, sa.Text(), nullable=False, server_default="")
        )
    op.add_column(
        "group_mapping_settings",
        sa.Column(
            "existing_accounts_only", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )
    with op.batch_alter_table("group_rules", schema=None) as batch_op:
        batch_op.alter_column("group_id", existing_type=sa.Integer(), nullable=True)
    op.add_column("users", sa.Column("manager_role_system_id", sa.Integer(), nullable=True))


def downgrade():
    op.drop_column("users", "manager_role_system_id")
    op.execute("DELETE FROM group_rules WHERE group_id IS NULL")
    with op.batch_alter_table("group_rules", schema=None) as batch_op:
        batch_op.alter_column("group_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("group_mapping_settings", schema=None) as batch_op:
        for name in (
            "existing_accounts_only",
            "existing_accounts_message",
            "required_claim_message",
            "required_claim",
            "allowed_email_domains",
        ):
            batch_op.drop_column(name)
