"""Drop indexes that a sign-in writes for nothing and PostgreSQL could plan on

Four indexes repeat the leading column of a unique constraint's index on the same table
(``identities.user_id`` and ``identities.auth_system_id``, ``profile_params.auth_system_id``,
``profile_requests.auth_system_id``): that index already serves every lookup and cascade by
the column alone. ``login_attempts.auth_system_id`` and ``login_attempts.browser_hash`` serve
no statement: each one naming them names the attempt too, by its state or its id. Each was
written by every sign-in's INSERTs, and on PostgreSQL the generic plan of a prepared
statement could choose one of them while the table was small (the binding lookup reading
every binding of the system, the claim every attempt of the system) and keep it while the
table grew. No query loses an index it needs.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 08:10:00

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

#: (table, column) of each index dropped, named ``ix_<table>_<column>``.
DROPPED = (
    ("identities", "user_id"),
    ("identities", "auth_system_id"),
    ("login_attempts", "auth_system_id"),
    ("login_attempts", "browser_hash"),
    ("profile_params", "auth_system_id"),
    ("profile_requests", "auth_system_id"),
)


def upgrade():
    for table, column in DROPPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))


def downgrade():
    for table, column in DROPPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)
