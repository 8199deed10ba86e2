"""All SQL of the registry: models, tags, versions, aliases and their events.

Each public method is one transaction. Database errors are translated into domain errors here
(a unique violation becomes ALREADY_EXISTS), so callers never see SQLAlchemy. Methods return
the frozen records of ``registry/records.py``, never rows or dicts.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from errors import AlreadyExists, FailedPrecondition, NotFound
from registry.records import AliasRecord, ModelRecord, VersionRecord
from storage.database import Database
from storage.events import record_event
from storage.schema import (aliases, events, model_tags, model_versions, models, traffic,
                            utcnow)

VERSION_FIELDS = ("status", "description", "tags", "metadata")


class VersionKey(NamedTuple):
    """A version as the store finds it: its precedence key, and the text to name it in errors."""

    precedence: bytes
    text: str


class MetadataStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    # -- models ---------------------------------------------------------------------------
    def create_model(self, name: str, description: str, tags: dict[str, str],
                     metadata: dict[str, Any], actor: str) -> ModelRecord:
        now = utcnow()
        try:
            with self.db.transaction() as conn:
                model_id = conn.execute(insert(models).values(
                    name=name, description=description, metadata=metadata,
                    created_at=now, updated_at=now)).inserted_primary_key[0]
                self._write_tags(conn, model_id, tags)
                record_event(conn, "model.registered", actor=actor, model=name)
                return self._model_record(conn, self._model_row(conn, name))
        except IntegrityError:
            raise AlreadyExists(f"model '{name}' already exists") from None

    def get_model(self, name: str) -> ModelRecord:
        with self.db.read() as conn:
            return self._model_record(conn, self._model_row(conn, name))

    def list_models(self, q: str | None, tag: tuple[str, str] | None, after: str | None,
                    limit: int) -> list[ModelRecord]:
        stmt = select(models).order_by(models.c.name).limit(limit)
        if q:
            stmt = stmt.where(models.c.name.icontains(q, autoescape=True))
        if tag:
            stmt = stmt.where(models.c.id.in_(select(model_tags.c.model_id).where(
                model_tags.c.key == tag[0], model_tags.c.value == tag[1])))
        if after is not None:
            stmt = stmt.where(models.c.name > after)
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
            tags = self._tags_for(conn, [r.id for r in rows])
            return [self._model_record(conn, r, tags.get(r.id, {})) for r in rows]

    def update_model(self, name: str, changes: dict[str, Any], actor: str) -> ModelRecord:
        with self.db.transaction() as conn:
            row = self._model_row(conn, name)
            values = {k: v for k, v in changes.items() if k in ("description", "metadata")}
            conn.execute(update(models).where(models.c.id == row.id)
                         .values(updated_at=utcnow(), **values))
            if "tags" in changes:
                conn.execute(delete(model_tags).where(model_tags.c.model_id == row.id))
                self._write_tags(conn, row.id, changes["tags"])
            record_event(conn, "model.updated", actor=actor, model=name,
                         detail={"fields": sorted(changes)})
            return self._model_record(conn, self._model_row(conn, name))

    def delete_model(self, name: str, actor: str) -> None:
        """Delete a model and its versions; refused while a traffic table serves it."""
        with self.db.transaction() as conn:
            row = self._model_row(conn, name)
            if conn.execute(select(traffic.c.model).where(traffic.c.model == name)).first():
                raise FailedPrecondition(
                    f"model '{name}' is deployed (it has a traffic table); deleting it would "
                    "break every caller. Archive its versions instead")
            conn.execute(delete(models).where(models.c.id == row.id))
            record_event(conn, "model.deleted", actor=actor, model=name)

    # -- versions -------------------------------------------------------------------------
    def create_version(self, name: str, values: dict[str, Any], actor: str) -> VersionRecord:
        now = utcnow()
        try:
            with self.db.transaction() as conn:
                model = self._model_row(conn, name)
                conn.execute(insert(model_versions).values(
                    model_id=model.id, created_at=now, updated_at=now, **values))
                conn.execute(update(models).where(models.c.id == model.id).values(updated_at=now))
                record_event(conn, "version.registered", actor=actor, model=name,
                             version=values["version"], detail={"status": values["status"]})
                row = self._version_row(
                    conn, model.id, VersionKey(values["precedence"], values["version"]), name)
                return self._version_record(conn, name, row)
        except IntegrityError:
            raise AlreadyExists(f"version '{values['version']}' of model '{name}' already exists "
                                "(versions that differ only in build metadata are the same "
                                "version)") from None

    def get_version(self, name: str, key: VersionKey) -> VersionRecord:
        with self.db.read() as conn:
            model = self._model_row(conn, name)
            return self._version_record(conn, name, self._version_row(conn, model.id, key, name))

    def list_versions(self, name: str, status: str | None, before: bytes | None,
                      limit: int) -> list[VersionRecord]:
        """Newest first by SemVer precedence, ``limit`` rows strictly below ``before``."""
        with self.db.read() as conn:
            model = self._model_row(conn, name)
            stmt = (select(model_versions).where(model_versions.c.model_id == model.id)
                    .order_by(model_versions.c.precedence.desc()).limit(limit))
            if status:
                stmt = stmt.where(model_versions.c.status == status)
            if before is not None:
                stmt = stmt.where(model_versions.c.precedence < before)
            rows = conn.execute(stmt).all()
            names = self._aliases_for(conn, [r.id for r in rows])
            return [self._version_record(conn, name, r, names.get(r.id, [])) for r in rows]

    def highest_with_status(self, names: list[str], status: str) -> dict[str, str]:
        """{model: its highest-precedence version with ``status``} for many models, one query."""
        if not names:
            return {}
        inner = model_versions.alias("inner")
        # ORDER BY ... LIMIT 1, not max(): PostgreSQL has no max() over bytea.
        best = (select(inner.c.precedence)
                .where(inner.c.model_id == model_versions.c.model_id, inner.c.status == status)
                .order_by(inner.c.precedence.desc()).limit(1).scalar_subquery())
        stmt = (select(models.c.name, model_versions.c.version)
                .join(models, models.c.id == model_versions.c.model_id)
                .where(models.c.name.in_(names), model_versions.c.status == status,
                       model_versions.c.precedence == best))
        with self.db.read() as conn:
            return {r.name: r.version for r in conn.execute(stmt)}

    def update_version(self, name: str, key: VersionKey, changes: dict[str, Any],
                       actor: str) -> VersionRecord:
        with self.db.transaction() as conn:
            model = self._model_row(conn, name)
            row = self._version_row(conn, model.id, key, name)
            values = {k: v for k, v in changes.items() if k in VERSION_FIELDS}
            conn.execute(update(model_versions).where(model_versions.c.id == row.id)
                         .values(updated_at=utcnow(), **values))
            record_event(conn, "version.updated", actor=actor, model=name, version=row.version,
                         detail={"changes": {k: values[k] for k in values if k == "status"},
                                 "fields": sorted(values), "previous_status": row.status})
            return self._version_record(conn, name, self._version_row(conn, model.id, key, name))

    def set_artifact(self, name: str, key: VersionKey, digest: str, size: int,
                     actor: str) -> VersionRecord:
        """Attach an artifact once; the same bytes again is a no-op, other bytes a conflict."""
        with self.db.transaction() as conn:
            model = self._model_row(conn, name)
            row = self._version_row(conn, model.id, key, name)
            if row.artifact_digest not in (None, digest):
                raise AlreadyExists(
                    f"version '{row.version}' of model '{name}' already has an artifact "
                    f"(sha256 {row.artifact_digest}); versions are immutable: register a new "
                    "version for new bytes")
            if row.artifact_digest is None:
                conn.execute(update(model_versions).where(model_versions.c.id == row.id)
                             .values(artifact_digest=digest, artifact_size=size,
                                     updated_at=utcnow()))
                record_event(conn, "version.artifact", actor=actor, model=name,
                             version=row.version, detail={"digest": digest, "size": size})
            return self._version_record(conn, name, self._version_row(conn, model.id, key, name))

    # -- aliases --------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, key: VersionKey, actor: str) -> AliasRecord:
        with self.db.transaction() as conn:
            model = self._model_row(conn, name)
            row = self._version_row(conn, model.id, key, name)
            conn.execute(delete(aliases).where(aliases.c.model_id == model.id,
                                               aliases.c.alias == alias))
            conn.execute(insert(aliases).values(model_id=model.id, alias=alias,
                                                version_id=row.id, updated_at=utcnow()))
            record_event(conn, "alias.set", actor=actor, model=name, version=row.version,
                         detail={"alias": alias})
            return AliasRecord(model=name, alias=alias, version=row.version)

    def delete_alias(self, name: str, alias: str, actor: str) -> None:
        with self.db.transaction() as conn:
            model = self._model_row(conn, name)
            gone = conn.execute(delete(aliases).where(aliases.c.model_id == model.id,
                                                      aliases.c.alias == alias)).rowcount
            if not gone:
                raise NotFound(f"alias '{alias}' of model '{name}' does not exist")
            record_event(conn, "alias.deleted", actor=actor, model=name, detail={"alias": alias})

    def resolve_alias(self, name: str, alias: str) -> VersionKey | None:
        with self.db.read() as conn:
            model = self._model_row(conn, name)
            row = conn.execute(
                select(model_versions.c.precedence, model_versions.c.version)
                .join(aliases, aliases.c.version_id == model_versions.c.id)
                .where(aliases.c.model_id == model.id, aliases.c.alias == alias)).first()
            return VersionKey(row.precedence, row.version) if row else None

    # -- serving state, inside a caller's transaction (snapshot restore) ----------------------
    @staticmethod
    def model_names(conn: Connection) -> list[str]:
        return list(conn.execute(select(models.c.name).order_by(models.c.name)).scalars())

    def serving_state(self, conn: Connection, name: str) -> dict[str, Any]:
        """Aliases and version statuses of a model, as a snapshot records them."""
        model = self._model_row(conn, name)
        statuses = {r.version: r.status for r in conn.execute(
            select(model_versions.c.version, model_versions.c.status)
            .where(model_versions.c.model_id == model.id))}
        alias_rows = conn.execute(
            select(aliases.c.alias, model_versions.c.version)
            .join(model_versions, aliases.c.version_id == model_versions.c.id)
            .where(aliases.c.model_id == model.id)).all()
        return {"statuses": statuses, "aliases": {r.alias: r.version for r in alias_rows}}

    def restore_serving_state(self, conn: Connection, name: str, statuses: dict[str, str],
                              alias_map: dict[str, str], actor: str, reason: str) -> None:
        """Put statuses and aliases back as recorded; every version named must still exist."""
        model = self._model_row(conn, name)
        ids = {r.version: r.id for r in conn.execute(
            select(model_versions.c.version, model_versions.c.id)
            .where(model_versions.c.model_id == model.id))}
        missing = sorted({*statuses, *alias_map.values()} - set(ids))
        if missing:
            raise FailedPrecondition(f"model '{name}' no longer has version(s) {missing} that "
                                     "the snapshot needs")
        now = utcnow()
        for version, status in statuses.items():
            conn.execute(update(model_versions).where(model_versions.c.id == ids[version],
                                                      model_versions.c.status != status)
                         .values(status=status, updated_at=now))
        conn.execute(delete(aliases).where(aliases.c.model_id == model.id))
        if alias_map:
            conn.execute(insert(aliases), [{"model_id": model.id, "alias": a,
                                            "version_id": ids[v], "updated_at": now}
                                           for a, v in alias_map.items()])
        record_event(conn, "model.serving_state_restored", actor=actor, model=name,
                     reason=reason, detail={"statuses": statuses, "aliases": alias_map})

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _model_row(conn: Connection, name: str) -> Row:
        row = conn.execute(select(models).where(models.c.name == name)).first()
        if row is None:
            raise NotFound(f"model '{name}' does not exist")
        return row

    @staticmethod
    def _version_row(conn: Connection, model_id: int, key: VersionKey, name: str) -> Row:
        row = conn.execute(select(model_versions).where(
            model_versions.c.model_id == model_id,
            model_versions.c.precedence == key.precedence)).first()
        if row is None:
            raise NotFound(f"version '{key.text}' of model '{name}' does not exist")
        return row

    @staticmethod
    def _write_tags(conn: Connection, model_id: int, tags: dict[str, str]) -> None:
        if tags:
            conn.execute(insert(model_tags), [{"model_id": model_id, "key": k, "value": v}
                                              for k, v in tags.items()])

    @staticmethod
    def _tags_for(conn: Connection, model_ids: Iterable[int]) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {}
        ids = list(model_ids)
        if ids:
            for r in conn.execute(select(model_tags).where(model_tags.c.model_id.in_(ids))):
                out.setdefault(r.model_id, {})[r.key] = r.value
        return out

    @staticmethod
    def _aliases_for(conn: Connection, version_ids: Iterable[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        ids = list(version_ids)
        if ids:
            for r in conn.execute(select(aliases.c.version_id, aliases.c.alias)
                                  .where(aliases.c.version_id.in_(ids))
                                  .order_by(aliases.c.alias)):
                out.setdefault(r.version_id, []).append(r.alias)
        return out

    def _model_record(self, conn: Connection, row: Row,
                    tags: dict[str, str] | None = None) -> ModelRecord:
        if tags is None:
            tags = self._tags_for(conn, [row.id]).get(row.id, {})
        return ModelRecord(name=row.name, description=row.description, tags=tags,
                           metadata=row.metadata, created_at=row.created_at,
                           updated_at=row.updated_at)

    def _version_record(self, conn: Connection, name: str, row: Row,
                      alias_names: list[str] | None = None) -> VersionRecord:
        if alias_names is None:
            alias_names = self._aliases_for(conn, [row.id]).get(row.id, [])
        return VersionRecord(
            model=name, version=row.version, precedence=row.precedence, major=row.major,
            minor=row.minor, patch=row.patch, prerelease=row.prerelease, build=row.build,
            status=row.status, provider=row.provider, config=row.config,
            artifact_digest=row.artifact_digest, artifact_size=row.artifact_size,
            tags=row.tags, metadata=row.metadata, description=row.description,
            aliases=tuple(alias_names), created_at=row.created_at, updated_at=row.updated_at)
