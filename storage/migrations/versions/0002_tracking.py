"""tracking: metric_buckets (aggregated prediction metrics), metric_series, alerts

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_buckets",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("resolution", sa.Integer, nullable=False),
        sa.Column("bucket_start", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("successes", sa.BigInteger, nullable=False),
        sa.Column("failures", sa.BigInteger, nullable=False),
        sa.Column("latency_sum", sa.Float, nullable=False),
        sa.Column("latency_min", sa.Float),
        sa.Column("latency_max", sa.Float),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("total_tokens", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("latency_hist", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", "resolution", "bucket_start", "version",
                                name="pk_metric_buckets"),
    )
    op.create_index("ix_metric_buckets_resolution_start", "metric_buckets",
                    ["resolution", "bucket_start"])
    op.create_table(
        "metric_series",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("version", sa.String(255), primary_key=True),
        sa.Column("first_bucket", sa.BigInteger, nullable=False),
        sa.Column("last_bucket", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_metric_series_last", "metric_series", ["last_bucket"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_alerts_one_active", "alerts", ["model", "version", "rule"], unique=True,
                    sqlite_where=sa.text("resolved_at IS NULL"),
                    postgresql_where=sa.text("resolved_at IS NULL"))
    op.create_index("ix_alerts_model_id", "alerts", ["model", "id"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("metric_series")
    op.drop_table("metric_buckets")
