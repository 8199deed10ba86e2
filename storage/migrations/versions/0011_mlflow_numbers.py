"""MLflow compatibility (issue 17): an integer number per version, never reused; source, run id

Revision ID: 0011
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("next_number", sa.Integer, nullable=False,
                                   server_default="1"))
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("number", sa.Integer))
        batch.add_column(sa.Column("source", sa.Text))
        batch.add_column(sa.Column("run_id", sa.String(64)))
    # Existing versions are numbered in the order they were registered.
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT id, model_id FROM model_versions ORDER BY model_id, created_at, id")).all()
    counters: dict[int, int] = {}
    for version_id, model_id in rows:
        counters[model_id] = counters.get(model_id, 0) + 1
        conn.execute(sa.text("UPDATE model_versions SET number = :n WHERE id = :id"),
                     {"n": counters[model_id], "id": version_id})
    for model_id, last in counters.items():
        conn.execute(sa.text("UPDATE models SET next_number = :n WHERE id = :id"),
                     {"n": last + 1, "id": model_id})
    op.create_index("uq_model_versions_number", "model_versions", ["model_id", "number"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_model_versions_number", "model_versions")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("run_id")
        batch.drop_column("source")
        batch.drop_column("number")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("next_number")
