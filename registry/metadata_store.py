"""All SQL of the registry: models, tags, versions, aliases and their events.

Each public method is one transaction. Database errors are translated into domain errors here
(a unique violation becomes ALREADY_EXISTS), so callers never see SQLAlchemy. Methods return
the frozen records of ``registry/records.py``, never rows or dicts.
"""
from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlalchemy import (Connection, Integer, LargeBinary, Row, bindparam, delete, func,
                        insert, select, text, union_all, update)
from sqlalchemy.exc import IntegrityError

from errors import AlreadyExists, FailedPrecondition, NotFound
from registry.read_cache import ReadCache
from registry.records import AliasRecord, ModelRecord, ServingState, VersionRecord
from registry.version_manager import KeyInterval
from storage.database import Database
from storage.events import record_event
from storage.schema import (LIVE, RELEASE, aliases, model_tags, model_versions, models, traffic,
                            utcnow)

VERSION_FIELDS = ("status", "description", "tags", "metadata")


class Seek(NamedTuple):
    """One index seek: the versions whose precedence key is in ``interval``, releases only or
    not. A list of seeks is what ``latest``, a range or a plain listing asks for."""

    interval: KeyInterval
    releases_only: bool


EVERYTHING = [Seek(KeyInterval(), False)]


class VersionKey(NamedTuple):
    """A version as the store finds it: its precedence key, and the text to name it in errors."""

    precedence: bytes
    text: str


# The statements of the hot paths, built once with bound parameters (issue 14): building an
# expression and computing its cache key anew cost more CPU than SQLite's execution of it.
_MODEL_ID = select(models.c.id).where(models.c.name == bindparam("name")).scalar_subquery()
_REVISION = select(models.c.revision).where(models.c.name == bindparam("name"))
_MODEL_ROW = select(models).where(models.c.name == bindparam("name"))
_INSERT_MODEL = insert(models)
_INSERT_VERSION = insert(model_versions)
_INSERT_TAGS = insert(model_tags)
_TOUCH = (update(models).where(models.c.name == bindparam("model_name"))
          .values(revision=models.c.revision + 1, updated_at=bindparam("now"))
          .returning(models.c.id))
_ALIASES_OF = (select(aliases.c.version_id, aliases.c.alias)
               .where(aliases.c.version_id.in_(bindparam("ids", expanding=True)))
               .order_by(aliases.c.alias))
_TAGS_OF = select(model_tags).where(model_tags.c.model_id.in_(bindparam("ids", expanding=True)))


def _take_number(sqlite: bool, given: bool) -> Any:
    """UPDATE of a model that registers a version: finds the model, bumps its revision (read
    caches) and takes the version's number, in one statement. ``given``: a number copied from
    MLflow, which later ones count on from."""
    following = (models.c.next_number + 1 if not given else
                 (func.max if sqlite else func.greatest)(models.c.next_number,
                                                         bindparam("number", type_=Integer) + 1))
    return (update(models).where(models.c.name == bindparam("model_name"))
            .values(revision=models.c.revision + 1, updated_at=bindparam("now"),
                    next_number=following)
            .returning(models.c.id, models.c.next_number))


_TAKE_NUMBER = {(sqlite, given): _take_number(sqlite, given)
                for sqlite in (True, False) for given in (True, False)}

def _revision(database: Database, name: str) -> int | None:
    with database.read() as conn:
        return conn.execute(_REVISION, {"name": name}).scalar()


# The cache reaches its database through a weak proxy: a strong reference from a value of this
# dict to its key would keep every Database (its engine and compiled statements) alive forever.
_caches: "weakref.WeakKeyDictionary[Database, ReadCache]" = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


class MetadataStore:
    """``cache`` is shared by every store of one ``Database`` (the registry's and the snapshot
    manager's), so that a write through either is seen at once by reads through both."""

    def __init__(self, database: Database) -> None:
        self.db = database
        with _caches_lock:
            self.cache = _caches.get(database) or _caches.setdefault(
                database, ReadCache(functools.partial(_revision, weakref.proxy(database))))

    @contextmanager
    def _write(self, name: str) -> Iterator[Connection]:
        """A write transaction on model ``name``; this process's cached answers about it are
        dropped once it is over (after the commit, so no reader can cache the old state)."""
        try:
            with self.db.transaction() as conn:
                yield conn
        finally:
            self.cache.invalidate(name)

    def forget(self, name: str) -> None:
        """A caller's own transaction changed ``name`` (snapshot restore): drop cached answers."""
        self.cache.invalidate(name)

    # -- models ---------------------------------------------------------------------------
    def create_model(self, name: str, description: str, tags: dict[str, str],
                     metadata: dict[str, Any], actor: str) -> ModelRecord:
        now = utcnow()
        try:
            with self._write(name) as conn:
                # A nanosecond clock: a model registered again after a delete never shows a
                # revision that a read cache holds for its predecessor.
                model_id = conn.execute(_INSERT_MODEL, {
                    "name": name, "description": description, "metadata": metadata,
                    "created_at": now, "updated_at": now, "revision": time.time_ns(),
                }).inserted_primary_key[0]
                self._write_tags(conn, model_id, tags)
                record_event(conn, "model.registered", actor=actor, model=name)
            # Built from what was written rather than read back: two statements fewer.
            return ModelRecord(name=name, description=description, tags=dict(tags),
                               metadata=metadata, created_at=now, updated_at=now)
        except IntegrityError:
            raise AlreadyExists(f"model '{name}' already exists") from None

    def get_model(self, name: str) -> ModelRecord:
        with self.db.read() as conn:
            return self._model_record(conn, self._model_row(conn, name))

    def revision(self, name: str) -> int | None:
        """The model's revision (what read caches compare), or None when it does not exist."""
        return _revision(self.db, name)

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
        with self._write(name) as conn:
            row = self._model_row(conn, name)
            values = {k: v for k, v in changes.items() if k in ("description", "metadata")}
            conn.execute(update(models).where(models.c.id == row.id)
                         .values(updated_at=utcnow(), revision=models.c.revision + 1, **values))
            if "tags" in changes:
                conn.execute(delete(model_tags).where(model_tags.c.model_id == row.id))
                self._write_tags(conn, row.id, changes["tags"])
            record_event(conn, "model.updated", actor=actor, model=name,
                         detail={"fields": sorted(changes)})
            return self._model_record(conn, self._model_row(conn, name))

    def delete_model(self, name: str, actor: str) -> None:
        """Delete a model and its versions; refused while a traffic table serves it."""
        with self._write(name) as conn:
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
            with self._write(name) as conn:
                # One statement finds the model, bumps its revision (read caches) and takes the
                # version's number: concurrent registrations of one model queue on its row, and
                # a number is never handed out twice. A number given (copied from MLflow) makes
                # later ones count on from it.
                number = values.pop("number", None)
                found = conn.execute(_TAKE_NUMBER[self.db.is_sqlite, number is not None],
                                     {"model_name": name, "now": now, "number": number}).first()
                if found is None:
                    raise NotFound(f"model '{name}' does not exist")
                model_id = found.id
                if number is None:
                    number = found.next_number - 1
                conn.execute(_INSERT_VERSION, {"model_id": model_id, "number": number,
                                               "created_at": now, "updated_at": now, **values})
                record_event(conn, "version.registered", actor=actor, model=name,
                             version=values["version"], detail={"status": values["status"]})
            # Built from what was written rather than read back: three statements in all.
            return _version_record(name, {**values, "number": number, "artifact_digest": None,
                                          "artifact_size": None, "created_at": now,
                                          "updated_at": now}, ())
        except IntegrityError:
            raise AlreadyExists(f"version '{values['version']}' (or its number) of model "
                                f"'{name}' already exists "
                                "(versions that differ only in build metadata are the same "
                                "version)") from None

    def key_for_number(self, name: str, number: int) -> VersionKey:
        """The version that carries MLflow's integer ``number``."""
        with self.db.read() as conn:
            model = self._model_row(conn, name)
            row = conn.execute(select(model_versions.c.precedence, model_versions.c.version)
                               .where(model_versions.c.model_id == model.id,
                                      model_versions.c.number == number)).first()
            if row is None:
                raise NotFound(f"version {number} of model '{name}' does not exist")
            return VersionKey(row.precedence, row.version)

    def highest_number(self, name: str) -> VersionKey | None:
        """The most recently numbered version (MLflow's notion of "latest")."""
        with self.db.read() as conn:
            model = self._model_row(conn, name)
            row = conn.execute(select(model_versions.c.precedence, model_versions.c.version)
                               .where(model_versions.c.model_id == model.id)
                               .order_by(model_versions.c.number.desc()).limit(1)).first()
            return VersionKey(row.precedence, row.version) if row else None

    def delete_version(self, name: str, key: VersionKey, actor: str) -> None:
        """Delete one version (its number is not reused); refused while it serves traffic."""
        with self._write(name) as conn:
            model_id = self._touch(conn, name)
            row = self._version_row(conn, model_id, key, name)
            live = conn.execute(select(traffic.c.weights, traffic.c.stable_version)
                                .where(traffic.c.model == name)).first()
            if live is not None and (row.version == live.stable_version
                                     or (live.weights or {}).get(row.version)):
                raise FailedPrecondition(
                    f"version '{row.version}' of model '{name}' is deployed; deploy another "
                    "version or archive this one instead")
            conn.execute(delete(model_versions).where(model_versions.c.id == row.id))
            record_event(conn, "version.deleted", actor=actor, model=name, version=row.version)

    def rename_model(self, name: str, new_name: str, actor: str) -> ModelRecord:
        """Rename a model; refused while it is deployed (traffic, metrics and deployments are
        recorded under its name)."""
        try:
            with self._write(name) as conn:
                model_id = self._touch(conn, name)
                if conn.execute(select(traffic.c.model).where(traffic.c.model == name)).first():
                    raise FailedPrecondition(f"model '{name}' is deployed; renaming it would "
                                             "break every caller")
                conn.execute(update(models).where(models.c.id == model_id)
                             .values(name=new_name))
                record_event(conn, "model.renamed", actor=actor, model=new_name,
                             detail={"from": name})
                record = self._model_record(conn, self._model_row(conn, new_name))
            self.forget(new_name)
            return record
        except IntegrityError:
            raise AlreadyExists(f"model '{new_name}' already exists") from None

    def set_model_tag(self, name: str, key: str, value: str | None, actor: str) -> None:
        """Set one tag (``value`` None deletes it; deleting a missing tag is NOT_FOUND)."""
        with self._write(name) as conn:
            model_id = self._touch(conn, name)
            gone = conn.execute(delete(model_tags).where(model_tags.c.model_id == model_id,
                                                         model_tags.c.key == key)).rowcount
            if value is None and not gone:
                raise NotFound(f"model '{name}' has no tag '{key}'")
            if value is not None:
                self._write_tags(conn, model_id, {key: value})
            record_event(conn, "model.updated", actor=actor, model=name,
                         detail={"fields": ["tags"], "tag": key})

    def set_version_tag(self, name: str, key: VersionKey, tag: str, value: str | None,
                        actor: str) -> None:
        """Set one version tag (``value`` None deletes it), read and written in one transaction."""
        with self._write(name) as conn:
            model_id = self._touch(conn, name)
            row = self._version_row(conn, model_id, key, name)
            tags = dict(row.tags or {})
            if value is None and tags.pop(tag, None) is None:
                raise NotFound(f"version '{row.version}' of model '{name}' has no tag '{tag}'")
            if value is not None:
                tags[tag] = value
            conn.execute(update(model_versions).where(model_versions.c.id == row.id)
                         .values(tags=tags, updated_at=utcnow()))
            record_event(conn, "version.updated", actor=actor, model=name, version=row.version,
                         detail={"fields": ["tags"], "tag": tag})

    def get_version(self, name: str, key: VersionKey) -> VersionRecord:
        with self.db.read() as conn:
            model = self._model_row(conn, name)
            return self._version_record_of(conn, name,
                                           self._version_row(conn, model.id, key, name))

    def versions(self, name: str, seeks: Sequence[Seek], *, live: bool = False,
                 status: str | None = None, before: bytes | None = None,
                 limit: int = 1) -> list[VersionRecord]:
        """Up to ``limit`` versions found by ``seeks``, newest first, strictly below ``before``;
        ``live`` leaves archived ones out. One statement (two with the aliases), and each seek
        reads at most ``limit`` index entries past its start, whatever the model's size: the
        partial indexes of schema.py hold exactly the rows that ``live``/``releases_only`` ask
        for. An unknown model raises NotFound (checked only when nothing was found)."""
        bounds = [_clip(seek.interval, before) for seek in seeks]
        bounds_kept = [(seek, b) for seek, b in zip(seeks, bounds) if not b.empty]
        shape = (tuple((seek.releases_only, b.low is not None and b.low_in, b.low is None,
                        b.high is not None and b.high_in, b.high is None)
                       for seek, b in bounds_kept), live, status is not None)
        params: dict[str, Any] = {"name": name, "status": status, "lim": limit}
        for i, (_seek, b) in enumerate(bounds_kept):
            params[f"lo{i}"], params[f"hi{i}"] = b.low, b.high
        with self.db.read() as conn:
            # An empty range (such as '>2.0.0 <1.0.0') needs no statement.
            rows = conn.execute(_versions_statement(shape), params).all() if bounds_kept else []
            if not rows:
                self._model_row(conn, name)
                return []
            names = self._aliases_for(conn, [r.id for r in rows])
            return [_version_record(name, r._mapping, names.get(r.id, ())) for r in rows]

    def aliased_version(self, name: str, alias: str) -> VersionRecord | None:
        """The version an alias points at, or None (NotFound for an unknown model)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(model_versions).join(aliases, aliases.c.version_id == model_versions.c.id)
                .join(models, models.c.id == aliases.c.model_id)
                .where(models.c.name == name, aliases.c.alias == alias)).first()
            if row is None:
                self._model_row(conn, name)
                return None
            names = self._aliases_for(conn, [row.id])
            return _version_record(name, row._mapping, names.get(row.id, ()))

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
        with self._write(name) as conn:
            model_id = self._touch(conn, name)
            row = self._version_row(conn, model_id, key, name)
            values = {k: v for k, v in changes.items() if k in VERSION_FIELDS}
            conn.execute(update(model_versions).where(model_versions.c.id == row.id)
                         .values(updated_at=utcnow(), **values))
            record_event(conn, "version.updated", actor=actor, model=name, version=row.version,
                         detail={"changes": {k: values[k] for k in values if k == "status"},
                                 "fields": sorted(values), "previous_status": row.status})
            return self._version_record_of(conn, name,
                                           self._version_row(conn, model_id, key, name))

    def set_artifact(self, name: str, key: VersionKey, digest: str, size: int,
                     actor: str) -> VersionRecord:
        """Attach an artifact once; the same bytes again is a no-op, other bytes a conflict."""
        with self._write(name) as conn:
            model_id = self._touch(conn, name)
            row = self._version_row(conn, model_id, key, name)
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
            return self._version_record_of(conn, name,
                                           self._version_row(conn, model_id, key, name))

    # -- aliases --------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, key: VersionKey, actor: str) -> AliasRecord:
        with self._write(name) as conn:
            model_id = self._touch(conn, name)
            row = self._version_row(conn, model_id, key, name)
            conn.execute(delete(aliases).where(aliases.c.model_id == model_id,
                                               aliases.c.alias == alias))
            conn.execute(insert(aliases).values(model_id=model_id, alias=alias,
                                                version_id=row.id, updated_at=utcnow()))
            record_event(conn, "alias.set", actor=actor, model=name, version=row.version,
                         detail={"alias": alias})
            return AliasRecord(model=name, alias=alias, version=row.version, number=row.number)

    def delete_alias(self, name: str, alias: str, actor: str) -> None:
        with self._write(name) as conn:
            model_id = self._touch(conn, name)
            gone = conn.execute(delete(aliases).where(aliases.c.model_id == model_id,
                                                      aliases.c.alias == alias)).rowcount
            if not gone:
                raise NotFound(f"alias '{alias}' of model '{name}' does not exist")
            record_event(conn, "alias.deleted", actor=actor, model=name, detail={"alias": alias})

    def model_aliases(self, name: str) -> list[AliasRecord]:
        """Every alias of one model, by alias."""
        with self.db.read() as conn:
            model = self._model_row(conn, name)
            return [AliasRecord(model=name, alias=r.alias, version=r.version, number=r.number)
                    for r in conn.execute(
                        select(aliases.c.alias, model_versions.c.version, model_versions.c.number)
                        .join(model_versions, aliases.c.version_id == model_versions.c.id)
                        .where(aliases.c.model_id == model.id).order_by(aliases.c.alias))]

    # -- serving state, inside a caller's transaction (snapshot restore) ----------------------
    @staticmethod
    def model_names(conn: Connection) -> list[str]:
        return list(conn.execute(select(models.c.name).order_by(models.c.name)).scalars())

    def serving_state(self, conn: Connection, name: str) -> ServingState:
        """Aliases and version statuses of a model, as a snapshot records them."""
        model_id = self._model_row(conn, name).id
        statuses = {r.version: r.status for r in conn.execute(
            select(model_versions.c.version, model_versions.c.status)
            .where(model_versions.c.model_id == model_id))}
        alias_rows = conn.execute(
            select(aliases.c.alias, model_versions.c.version)
            .join(model_versions, aliases.c.version_id == model_versions.c.id)
            .where(aliases.c.model_id == model_id)).all()
        return ServingState(statuses, {r.alias: r.version for r in alias_rows})

    def restore_serving_state(self, conn: Connection, name: str, statuses: dict[str, str],
                              alias_map: dict[str, str], actor: str, reason: str) -> None:
        """Put statuses and aliases back as recorded; every version named must still exist."""
        model_id = self._touch(conn, name)
        ids = {r.version: r.id for r in conn.execute(
            select(model_versions.c.version, model_versions.c.id)
            .where(model_versions.c.model_id == model_id))}
        missing = sorted({*statuses, *alias_map.values()} - set(ids))
        if missing:
            raise FailedPrecondition(f"model '{name}' no longer has version(s) {missing} that "
                                     "the snapshot needs")
        now = utcnow()
        for version, status in statuses.items():
            conn.execute(update(model_versions).where(model_versions.c.id == ids[version],
                                                      model_versions.c.status != status)
                         .values(status=status, updated_at=now))
        conn.execute(delete(aliases).where(aliases.c.model_id == model_id))
        if alias_map:
            conn.execute(insert(aliases), [{"model_id": model_id, "alias": a,
                                            "version_id": ids[v], "updated_at": now}
                                           for a, v in alias_map.items()])
        record_event(conn, "model.serving_state_restored", actor=actor, model=name,
                     reason=reason, detail={"statuses": statuses, "aliases": alias_map})

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _model_row(conn: Connection, name: str) -> Row:
        row = conn.execute(_MODEL_ROW, {"name": name}).first()
        if row is None:
            raise NotFound(f"model '{name}' does not exist")
        return row

    @staticmethod
    def _touch(conn: Connection, name: str, now: Any = None) -> int:
        """Bump the model's revision (and updated_at) inside a write; its id. The one statement
        both finds the model and tells every read cache that it changed."""
        model_id = conn.execute(_TOUCH, {"model_name": name, "now": now or utcnow()}).scalar()
        if model_id is None:
            raise NotFound(f"model '{name}' does not exist")
        return model_id

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
            conn.execute(_INSERT_TAGS, [{"model_id": model_id, "key": k, "value": v}
                                        for k, v in tags.items()])

    @staticmethod
    def _tags_for(conn: Connection, model_ids: Iterable[int]) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {}
        ids = list(model_ids)
        if ids:
            for r in conn.execute(_TAGS_OF, {"ids": ids}):
                out.setdefault(r.model_id, {})[r.key] = r.value
        return out

    @staticmethod
    def _aliases_for(conn: Connection, version_ids: Iterable[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        ids = list(version_ids)
        if ids:
            for r in conn.execute(_ALIASES_OF, {"ids": ids}):
                out.setdefault(r.version_id, []).append(r.alias)
        return out

    def _model_record(self, conn: Connection, row: Row,
                    tags: dict[str, str] | None = None) -> ModelRecord:
        if tags is None:
            tags = self._tags_for(conn, [row.id]).get(row.id, {})
        return ModelRecord(name=row.name, description=row.description, tags=tags,
                           metadata=row.metadata, created_at=row.created_at,
                           updated_at=row.updated_at)

    def _version_record_of(self, conn: Connection, name: str, row: Row) -> VersionRecord:
        return _version_record(name, row._mapping,
                               self._aliases_for(conn, [row.id]).get(row.id, ()))


def _clip(interval: KeyInterval, before: bytes | None) -> KeyInterval:
    """``interval`` with its keys below ``before`` only."""
    if before is not None and (interval.high is None or before <= interval.high):
        return KeyInterval(interval.low, interval.low_in, before, False)
    return interval


@functools.lru_cache(maxsize=512)
def _versions_statement(shape: tuple) -> Any:
    """The statement of ``MetadataStore.versions`` for one shape of seeks, built once: the
    bounds, name, status and limit are bound parameters, so SQLAlchemy's compiled cache serves
    every later call without rebuilding (a UNION of subqueries costs milliseconds to build)."""
    seeks, live, with_status = shape
    model_id = _MODEL_ID
    col = model_versions.c.precedence
    parts = []
    for i, (releases_only, low_in, no_low, high_in, no_high) in enumerate(seeks):
        stmt = select(model_versions).where(model_versions.c.model_id == model_id)
        # Literal text, not bound parameters: it is what lets SQLite (and PostgreSQL's
        # generic plans) prove that a partial index covers the query.
        if live:
            stmt = stmt.where(text(LIVE))
        if releases_only:
            stmt = stmt.where(text(RELEASE))
        if with_status:
            stmt = stmt.where(model_versions.c.status == bindparam("status"))
        if not no_low:
            low = bindparam(f"lo{i}", type_=LargeBinary)
            stmt = stmt.where(col >= low if low_in else col > low)
        if not no_high:
            high = bindparam(f"hi{i}", type_=LargeBinary)
            stmt = stmt.where(col <= high if high_in else col < high)
        parts.append(stmt.order_by(col.desc()).limit(bindparam("lim", type_=Integer)))
    if len(parts) == 1:
        return parts[0]
    both = union_all(*(select(p.subquery()) for p in parts)).subquery()
    return (select(both).order_by(both.c.precedence.desc())
            .limit(bindparam("lim", type_=Integer)))


def _version_record(name: str, row: Any, alias_names: Iterable[str]) -> VersionRecord:
    """A version as the store returns it, from a row mapping (or the values just written)."""
    return VersionRecord(
        model=name, version=row["version"], precedence=row["precedence"], major=row["major"],
        minor=row["minor"], patch=row["patch"], prerelease=row["prerelease"],
        build=row["build"], status=row["status"], provider=row["provider"],
        config=row["config"], artifact_digest=row["artifact_digest"],
        artifact_size=row["artifact_size"], tags=row["tags"], metadata=row["metadata"],
        description=row["description"], aliases=tuple(alias_names), number=row["number"],
        source=row.get("source"), run_id=row.get("run_id"),
        created_at=row["created_at"], updated_at=row["updated_at"])
