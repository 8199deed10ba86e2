"""deployments: rollout state machines, the rollback history, health check results

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("previous_version", sa.String(255)),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("traffic", sa.JSON, nullable=False),
        sa.Column("analysis", sa.JSON),
        sa.Column("verdicts", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True)),
        sa.Column("next_check_at", sa.DateTime(timezone=True)),
        sa.Column("deadline_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_deployments_model_created", "deployments", ["model", "created_at"])
    op.create_index("ix_deployments_created", "deployments", ["created_at"])
    # One rollout in progress per model, across processes.
    op.create_index("ix_deployments_one_active", "deployments", ["model"], unique=True,
                    sqlite_where=sa.text("finished_at IS NULL"),
                    postgresql_where=sa.text("finished_at IS NULL"))
    op.create_table(
        "rollbacks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("from_version", sa.String(255)),
        sa.Column("to_version", sa.String(255)),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("deployment_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rollbacks_model_created", "rollbacks", ["model", "created_at"])
    op.create_index("ix_rollbacks_created", "rollbacks", ["created_at"])
    op.create_table(
        "health_checks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("deployment_id", sa.String(64)),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("probes", sa.JSON, nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_health_checks_model_version", "health_checks",
                    ["model", "version", "checked_at"])


def downgrade() -> None:
    op.drop_table("health_checks")
    op.drop_table("rollbacks")
    op.drop_table("deployments")
