"""registry: models, tags, versions, aliases, events

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _times() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        *_times(),
    )
    op.create_table(
        "model_tags",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
    )
    op.create_index("ix_model_tags_key_value", "model_tags", ["key", "value"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("precedence", sa.LargeBinary(600), nullable=False),
        sa.Column("major", sa.BigInteger, nullable=False),
        sa.Column("minor", sa.BigInteger, nullable=False),
        sa.Column("patch", sa.BigInteger, nullable=False),
        sa.Column("prerelease", sa.String(255)),
        sa.Column("build", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("artifact_digest", sa.String(64)),
        sa.Column("artifact_size", sa.BigInteger),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        *_times(),
        sa.UniqueConstraint("model_id", "precedence", name="uq_model_versions_precedence"),
    )
    op.create_table(
        "aliases",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("alias", sa.String(128), primary_key=True),
        sa.Column("version_id", sa.Integer,
                  sa.ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128)),
        sa.Column("version", sa.String(255)),
        sa.Column("deployment_id", sa.String(64)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_model_at", "events", ["model", "at"])
    op.create_index("ix_events_deployment", "events", ["deployment_id"])


def downgrade() -> None:
    for table in ("events", "aliases", "model_versions", "model_tags", "models"):
        op.drop_table(table)
