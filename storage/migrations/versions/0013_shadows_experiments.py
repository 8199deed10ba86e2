"""shadow deployments and A/B experiments (issue 19): the shadows, the comparison of each
mirrored pair, the experiments

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadows",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("sample_percent", sa.JSON, nullable=False),
        sa.Column("max_requests", sa.Integer),
        sa.Column("ends_at", sa.DateTime(timezone=True)),
        sa.Column("dropped", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_shadows_model_state", "shadows", ["model", "state"])
    op.create_table(
        "shadow_pairs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("shadow_id", sa.String(64),
                  sa.ForeignKey("shadows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("primary_version", sa.String(255), nullable=False),
        sa.Column("primary_latency", sa.JSON, nullable=False),
        sa.Column("shadow_latency", sa.JSON),
        sa.Column("shadow_error", sa.String(64)),
        sa.Column("agree", sa.Integer),
        sa.Column("argmax_agree", sa.Integer),
        sa.Column("similarity", sa.JSON),
        sa.Column("max_abs_diff", sa.JSON),
        sa.Column("primary_tokens", sa.Integer),
        sa.Column("shadow_tokens", sa.Integer),
        sa.Column("example", sa.JSON),
    )
    op.create_index("ix_shadow_pairs_shadow", "shadow_pairs", ["shadow_id", "id"])
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("variants", sa.JSON, nullable=False),
        sa.Column("control", sa.String(255), nullable=False),
        sa.Column("primary_metric", sa.String(32), nullable=False),
        sa.Column("alpha", sa.JSON, nullable=False),
        sa.Column("sample_size", sa.Integer),
        sa.Column("ends_at", sa.DateTime(timezone=True)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("previous", sa.JSON),
        sa.Column("result", sa.JSON),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_experiments_model_state", "experiments", ["model", "state"])


def downgrade() -> None:
    op.drop_table("experiments")
    op.drop_table("shadow_pairs")
    op.drop_table("shadows")
