"""registry reads: a revision per model, partial indexes for latest and ranges (issue 14)

Revision ID: 0014
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None

# The WHERE texts must read exactly as the queries in registry/metadata_store.py write them:
# SQLite only uses a partial index when the query's WHERE contains its terms literally.
LIVE = "status <> 'archived'"
RELEASE = "prerelease IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("revision", sa.BigInteger, nullable=False,
                                   server_default="1"))
    for name, where in (("ix_model_versions_release", RELEASE),
                        ("ix_model_versions_live", LIVE),
                        ("ix_model_versions_live_release", f"{LIVE} AND {RELEASE}")):
        op.create_index(name, "model_versions", ["model_id", "precedence"],
                        sqlite_where=sa.text(where), postgresql_where=sa.text(where))
    op.create_index("ix_model_versions_status", "model_versions",
                    ["model_id", "status", "precedence"])


def downgrade() -> None:
    for name in ("ix_model_versions_status", "ix_model_versions_live_release",
                 "ix_model_versions_live", "ix_model_versions_release"):
        op.drop_index(name, "model_versions")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("revision")
