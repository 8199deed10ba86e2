"""All SQL of snapshots; returns the records of ``rollback/records.py``."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select

from errors import NotFound
from rollback.records import SnapshotRecord, SnapshotSummary
from shared.pagination import decode_token, encode_token
from storage.database import Database
from storage.schema import snapshots


SUMMARY_MODELS = 4


def summarize(state: dict[str, Any] | None) -> dict[str, Any]:
    """What a list shows of a snapshot: how many models, and the first few's weights."""
    models = (state or {}).get("models") or {}
    shown = dict(list(models.items())[:SUMMARY_MODELS])
    return {"model_count": len(models),
            "models": {name: ((s or {}).get("traffic") or {}).get("weights")
                       for name, s in shown.items()}}


def _snapshot(row: Any) -> SnapshotRecord:
    return SnapshotRecord(id=row.id, model=row.model, automatic=row.automatic, state=row.state,
                          reason=row.reason, actor=row.actor, created_at=row.created_at)


def _summary(row: Any) -> SnapshotSummary:
    return SnapshotSummary(id=row.id, model=row.model, automatic=row.automatic,
                           summary=row.summary or {"model_count": None, "models": {}},
                           reason=row.reason, actor=row.actor, created_at=row.created_at)


_SUMMARY_COLUMNS = [snapshots.c[name] for name in
                    ("id", "model", "automatic", "summary", "reason", "actor", "created_at")]


class SnapshotStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    def insert(self, conn: Connection, values: dict[str, Any]) -> SnapshotRecord:
        conn.execute(insert(snapshots).values(**values, summary=summarize(values["state"])))
        return _snapshot(conn.execute(select(snapshots)
                                      .where(snapshots.c.id == values["id"])).one())

    def get(self, snapshot_id: str) -> SnapshotRecord:
        with self.db.read() as conn:
            row = conn.execute(select(snapshots).where(snapshots.c.id == snapshot_id)).first()
        if row is None:
            raise NotFound(f"snapshot '{snapshot_id}' does not exist")
        return _snapshot(row)

    def list(self, model: str | None, automatic: bool | None, limit: int,
             page_token: str | None) -> tuple[list[SnapshotSummary], str | None]:
        """Newest first (ids are time ordered)."""
        stmt = select(*_SUMMARY_COLUMNS).order_by(snapshots.c.id.desc()).limit(limit + 1)
        if model is not None:
            stmt = stmt.where(snapshots.c.model == model)
        if automatic is not None:
            stmt = stmt.where(snapshots.c.automatic == automatic)
        after = decode_token(page_token)
        if after is not None:
            stmt = stmt.where(snapshots.c.id < str(after))
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        page = [_summary(r) for r in rows[:limit]]
        return page, (encode_token(page[-1].id) if len(rows) > limit else None)

    def delete(self, snapshot_id: str) -> None:
        with self.db.transaction() as conn:
            if not conn.execute(delete(snapshots).where(snapshots.c.id == snapshot_id)).rowcount:
                raise NotFound(f"snapshot '{snapshot_id}' does not exist")

    def prune_automatic(self, conn: Connection, model: str | None, keep: int) -> int:
        """Keep the newest ``keep`` automatic snapshots of ``model``."""
        scope = snapshots.c.model.is_(None) if model is None else snapshots.c.model == model
        old = select(snapshots.c.id).where(scope, snapshots.c.automatic.is_(True)) \
            .order_by(snapshots.c.id.desc()).offset(keep)
        ids = [r.id for r in conn.execute(old)]
        if ids:
            conn.execute(delete(snapshots).where(snapshots.c.id.in_(ids)))
        return len(ids)
