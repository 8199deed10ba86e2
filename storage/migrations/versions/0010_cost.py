"""cost: prices, spend per hour and key, budgets, cost in metric buckets (issue 16)

Revision ID: 0010
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metric_buckets") as batch:
        batch.add_column(sa.Column("cost_micro_usd", sa.BigInteger, nullable=False,
                                   server_default="0"))
    op.create_table(
        "prices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("input_rate", sa.BigInteger, nullable=False),
        sa.Column("output_rate", sa.BigInteger, nullable=False),
        sa.Column("cached_input_rate", sa.BigInteger),
        sa.Column("thinking_rate", sa.BigInteger),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_prices_model_version_from", "prices",
                    ["model", "version", "effective_from"])
    op.create_table(
        "spend",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("api_key", sa.String(128), nullable=False),
        sa.Column("hour_start", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_micro_usd", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("model", "hour_start", "version", "api_key", name="pk_spend"),
    )
    op.create_index("ix_spend_key_hour", "spend", ["api_key", "hour_start"])
    op.create_index("ix_spend_hour", "spend", ["hour_start"])
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("soft_limit_micro_usd", sa.BigInteger),
        sa.Column("hard_limit_micro_usd", sa.BigInteger),
        sa.Column("hard_action", sa.String(8), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("scope", "name", name="uq_budgets_scope_name"),
    )


def downgrade() -> None:
    op.drop_table("budgets")
    op.drop_table("spend")
    op.drop_table("prices")
    with op.batch_alter_table("metric_buckets") as batch:
        batch.drop_column("cost_micro_usd")
