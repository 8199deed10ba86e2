"""a persisted "API keys required" switch: once authentication is on, it stays on; snapshot
summaries, so that listing snapshots never reads their full states; metric model names wide
enough for "<model>#pinned" (pinned traffic recorded apart)

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

    op.add_column("snapshots", sa.Column("summary", sa.JSON))
    snaps = sa.table("snapshots", sa.column("id", sa.String), sa.column("state", sa.JSON),
                     sa.column("summary", sa.JSON))
    bind = op.get_bind()
    for row in bind.execute(sa.select(snaps.c.id, snaps.c.state)).all():
        bind.execute(sa.update(snaps).where(snaps.c.id == row.id)
                     .values(summary=summarize(row.state)))


    if bind.dialect.name != "sqlite":   # SQLite does not enforce lengths
        for table in ("metric_buckets", "metric_series"):
            op.alter_column(table, "model", type_=sa.String(160),
                            existing_type=sa.String(128), existing_nullable=False)


def summarize(state: dict | None) -> dict:
    """A copy of ``rollback.snapshot_store.summarize`` (migrations do not import the app)."""
    models = (state or {}).get("models") or {}
    shown = dict(list(models.items())[:4])
    return {"model_count": len(models),
            "models": {name: ((s or {}).get("traffic") or {}).get("weights")
                       for name, s in shown.items()}}


def downgrade() -> None:
    op.drop_column("snapshots", "summary")
    op.drop_table("auth_state")
