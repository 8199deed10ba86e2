"""shadow pair cost: what each side of a mirrored call cost, in micro-USD (issue 19 with 16)

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shadow_pairs") as batch:
        batch.add_column(sa.Column("primary_cost_micro_usd", sa.BigInteger))
        batch.add_column(sa.Column("shadow_cost_micro_usd", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("shadow_pairs") as batch:
        batch.drop_column("shadow_cost_micro_usd")
        batch.drop_column("primary_cost_micro_usd")
