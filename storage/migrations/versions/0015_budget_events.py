"""budget events: the period in which each budget last reached its soft and hard limit (issue 18)

One ``budget.*_limit_reached`` event per budget, period and threshold: the metrics flush that
adds the spend crossing a limit sets the column to the period's start with a conditional UPDATE
in the same transaction, and only the process whose UPDATE changed the row writes the event.

Revision ID: 0015
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("budgets") as batch:
        batch.add_column(sa.Column("soft_reached_period", sa.BigInteger))
        batch.add_column(sa.Column("hard_reached_period", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("budgets") as batch:
        batch.drop_column("hard_reached_period")
        batch.drop_column("soft_reached_period")
