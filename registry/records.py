"""What the registry store returns: frozen, typed records, as every store does.

The convention for every store: a store returns frozen dataclasses (one per kind of row), never
SQLAlchemy rows and never the wire shape; the public API (``ModelRegistry``'s methods, the
REST views) turns them into dicts with ``as_dict()`` at its edge. Types say what a row holds
and cannot be changed by a caller by accident, and the dict shape lives in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.schema import iso


@dataclass(frozen=True)
class ModelRecord:
    name: str
    description: str
    tags: dict[str, str]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "tags": dict(self.tags),
                "metadata": self.metadata, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at)}


@dataclass(frozen=True)
class VersionRecord:
    model: str
    version: str
    precedence: bytes      # the SemVer precedence key the store orders and pages by
    major: int
    minor: int
    patch: int
    prerelease: str | None
    build: str | None
    status: str
    provider: str
    config: dict[str, Any]
    artifact_digest: str | None
    artifact_size: int | None
    tags: dict[str, str]
    metadata: dict[str, Any]
    description: str
    aliases: tuple[str, ...]
    number: int            # MLflow's integer version (issue 17): per model, never reused
    source: str | None     # where an MLflow client said the version came from
    run_id: str | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        artifact = ({"digest": self.artifact_digest, "size": self.artifact_size}
                    if self.artifact_digest else None)
        return {"model": self.model, "version": self.version, "major": self.major,
                "minor": self.minor, "patch": self.patch, "prerelease": self.prerelease,
                "build": self.build, "status": self.status, "provider": self.provider,
                "config": self.config, "artifact": artifact, "tags": self.tags,
                "metadata": self.metadata, "description": self.description,
                "aliases": list(self.aliases), "number": self.number, "source": self.source,
                "run_id": self.run_id, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at)}


@dataclass(frozen=True)
class AliasRecord:
    model: str
    alias: str
    version: str
    number: int            # the version's MLflow number (issue 17)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "alias": self.alias, "version": self.version,
                "number": self.number}


@dataclass(frozen=True)
class ServingState:
    """What a snapshot records of a model's registry side: each version's status and each
    alias's version."""

    statuses: dict[str, str]
    aliases: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"statuses": dict(self.statuses), "aliases": dict(self.aliases)}
