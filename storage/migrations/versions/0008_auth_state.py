"""a persisted "API keys required" switch: once authentication is on, it stays on

Revision ID: 0008
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "auth_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("keys_required", sa.Boolean, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True)),
    )
    # A database that ever held a key had authentication on: keep it on.
    had_keys = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM api_keys")).scalar_one() > 0
    op.bulk_insert(table, [{"id": 1, "keys_required": had_keys, "since": None}])


def downgrade() -> None:
    op.drop_table("auth_state")
