"""Table definitions (SQLAlchemy Core). The migrations under ``storage/migrations`` create them.

Tables of a later area are added here with a migration of their own.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Column, DateTime, ForeignKey, Index, Integer,
                        LargeBinary, MetaData, String, Table, Text, UniqueConstraint)

metadata = MetaData()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, as every API answer shows times."""
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


models = Table(
    "models", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Tags live in their own table so that `?tag=key:value` is an indexed lookup on any database.
model_tags = Table(
    "model_tags", metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(512), nullable=False),
    Index("ix_model_tags_key_value", "key", "value"),
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version", String(255), nullable=False),
    # Bytewise order == SemVer precedence (registry.version_manager.precedence_key); unique per
    # model, so two versions differing only in build metadata collide.
    Column("precedence", LargeBinary(600), nullable=False),
    Column("major", BigInteger, nullable=False),
    Column("minor", BigInteger, nullable=False),
    Column("patch", BigInteger, nullable=False),
    Column("prerelease", String(255)),
    Column("build", String(255)),
    Column("status", String(16), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("config", JSON, nullable=False, default=dict),
    Column("artifact_digest", String(64)),
    Column("artifact_size", BigInteger),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=dict),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "precedence", name="uq_model_versions_precedence"),
)

aliases = Table(
    "aliases", metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("alias", String(128), primary_key=True),
    Column("version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"),
           nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The audit trail: every state change, with who and why. Names, not foreign keys, so that the
# history of a deleted model survives it.
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("model", String(128)),
    Column("version", String(255)),
    Column("deployment_id", String(64)),
    Column("reason", Text, nullable=False, default=""),
    Column("detail", JSON, nullable=False, default=dict),
    Index("ix_events_model_at", "model", "at"),
    Index("ix_events_deployment", "deployment_id"),
)
