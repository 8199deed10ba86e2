"""Every table's rows out and in, for export and import bundles (issue 17).

Generic over ``storage.schema.metadata``, so a table another feature adds is carried along
without touching this module. Values are written as JSON (times as ISO 8601, bytes as base64)
and read back by the column's type. On the way in, integer surrogate keys (``id``) are kept
when they are free in the target (an empty database gets back exactly what was exported);
where they are taken, rows get fresh ids and every foreign key is mapped to them, so a bundle
also imports into a database that already holds other models. All rows go in in one
transaction: all or nothing.
"""
from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (Column, Connection, DateTime, Integer, LargeBinary, Table, insert, select,
                        text)
from sqlalchemy.exc import IntegrityError

from errors import AlreadyExists
from storage.database import Database
from storage.schema import metadata

# Never carried: what belongs to one installation rather than to the registry's content. API
# keys and webhook subscriptions hold credentials; auth_state is that server's security state;
# webhook deliveries and attempts are its outbox of notifications already sent or due.
EXCLUDED_TABLES = frozenset({"api_keys", "auth_state", "webhook_subscriptions",
                             "webhook_deliveries", "webhook_attempts"})


class DryRun(Exception):
    """Raised inside the import transaction to roll a dry run back."""


def _tables() -> list[Table]:
    return [t for t in metadata.sorted_tables if t.name not in EXCLUDED_TABLES]


def _surrogate(table: Table) -> Column | None:
    """The table's integer ``id`` primary key, which an import does not keep."""
    pk = list(table.primary_key.columns)
    if len(pk) == 1 and pk[0].name == "id" and isinstance(pk[0].type, Integer):
        return pk[0]
    return None


def _out(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, LargeBinary):
        return base64.b64encode(value).decode()
    if isinstance(column.type, DateTime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat()
    return value


def _in(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, LargeBinary):
        return base64.b64decode(value)
    if isinstance(column.type, DateTime):
        return datetime.fromisoformat(value)
    return value


class BundleStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """{table: rows} of every carried table, in one read transaction, by primary key."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.db.read(snapshot=True) as conn:
            for table in _tables():
                rows = conn.execute(select(table).order_by(*table.primary_key.columns))
                out[table.name] = [{c.name: _out(c, row._mapping[c.name]) for c in table.columns}
                                   for row in rows]
        return out

    def conflicts(self, tables: dict[str, list[dict[str, Any]]]) -> list[str]:
        """What in the bundle already exists here: model names, and rows whose own (not
        surrogate) single-column primary key is taken."""
        found: list[str] = []
        with self.db.read() as conn:
            names = [r["name"] for r in tables.get("models", [])]
            for chunk in _chunks(names):
                models = metadata.tables["models"]
                found += [f"model '{n}' already exists" for n in conn.execute(
                    select(models.c.name).where(models.c.name.in_(chunk))).scalars()]
            for table in _tables():
                pk = list(table.primary_key.columns)
                if len(pk) != 1 or _surrogate(table) is not None or pk[0].foreign_keys:
                    continue
                keys = [r[pk[0].name] for r in tables.get(table.name, [])]
                for chunk in _chunks(keys):
                    found += [f"{table.name} '{k}' already exists" for k in conn.execute(
                        select(pk[0]).where(pk[0].in_(chunk))).scalars()]
        return found

    def load(self, tables: dict[str, list[dict[str, Any]]], *, dry_run: bool = False
             ) -> dict[str, int]:
        """Insert every row in one transaction; {table: rows added}. A dry run does it all
        and rolls back, so it meets the same conflicts a real import would."""
        counts: dict[str, int] = {}
        try:
            with self.db.transaction() as conn:
                id_maps: dict[str, dict[int, int]] = {}
                referenced = {fk.column.table.name for t in _tables() for fk in t.foreign_keys}
                for table in _tables():
                    rows = tables.get(table.name) or []
                    counts[table.name] = len(rows)
                    if rows:
                        self._insert(conn, table, rows, id_maps,
                                     keep_map=table.name in referenced)
                if dry_run:
                    raise DryRun
        except DryRun:
            pass
        except IntegrityError as err:
            first = str(err.orig).splitlines()[0] if err.orig else str(err)
            raise AlreadyExists(f"the bundle conflicts with what exists here: {first}; "
                                "nothing was imported") from None
        return {name: n for name, n in counts.items() if n}

    @staticmethod
    def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]],
                id_maps: dict[str, dict[int, int]], keep_map: bool) -> None:
        surrogate = _surrogate(table)
        if surrogate is not None and not _ids_taken(conn, surrogate, [r["id"] for r in rows]):
            surrogate = None  # the ids are free here: keep them, answers stay identical
            keep_ids = True
        else:
            keep_ids = False
        columns = [c for c in table.columns if c is not surrogate]
        fks = {c.name: next(iter(c.foreign_keys)).column.table.name
               for c in columns if c.foreign_keys}
        values = []
        for row in rows:
            item = {c.name: _in(c, row.get(c.name)) for c in columns if c.name in row}
            for name, target in fks.items():
                if item.get(name) is not None and target in id_maps:
                    item[name] = id_maps[target][item[name]]
            values.append(item)
        if surrogate is not None and keep_map:
            mapping = id_maps.setdefault(table.name, {})
            for row, item in zip(rows, values):
                mapping[row["id"]] = conn.execute(insert(table).values(**item)) \
                    .inserted_primary_key[0]
        else:
            conn.execute(insert(table), values)
            if keep_ids:
                id_maps[table.name] = {r["id"]: r["id"] for r in rows}
                if conn.dialect.name == "postgresql":  # explicit ids do not move the sequence
                    conn.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT max(id) FROM {table.name}))"))


def _ids_taken(conn: Connection, column: Column, ids: list[int]) -> bool:
    return any(conn.execute(select(column).where(column.in_(chunk)).limit(1)).first()
               for chunk in _chunks(ids))


def _chunks(items: Iterable[Any], size: int = 500) -> Iterable[list[Any]]:
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]
