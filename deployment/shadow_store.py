"""Shadows and their mirrored pairs in the database (issue 19). One transaction per method."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from deployment.deployment_store import aware, new_id
from storage.database import Database
from storage.schema import iso, shadow_pairs, shadows, utcnow

RUNNING = "running"


def shadow_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "model": row.model, "version": row.version, "state": row.state,
            "sample_percent": row.sample_percent, "max_requests": row.max_requests,
            "ends_at": iso(aware(row.ends_at)), "dropped": row.dropped, "reason": row.reason,
            "actor": row.actor, "created_at": iso(aware(row.created_at)),
            "finished_at": iso(aware(row.finished_at)), "strategy": "shadow"}


class ShadowStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    def create(self, model: str, version: str, sample_percent: float,
               max_requests: int | None, ends_at: datetime | None, reason: str,
               actor: str) -> dict[str, Any]:
        values = dict(id=new_id("dep"), model=model, version=version, state=RUNNING,
                      sample_percent=sample_percent, max_requests=max_requests,
                      ends_at=ends_at, dropped=0, reason=reason, actor=actor,
                      created_at=utcnow(), finished_at=None)
        with self.db.transaction() as conn:
            conn.execute(shadows.insert().values(**values))
            row = conn.execute(select(shadows).where(shadows.c.id == values["id"])).one()
        return shadow_dict(row)

    def get(self, shadow_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(select(shadows).where(shadows.c.id == shadow_id)).first()
        return shadow_dict(row) if row else None

    def running(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(select(shadows).where(shadows.c.state == RUNNING)).all()
        return [shadow_dict(r) for r in rows]

    def finish(self, shadow_id: str, state: str, running_only: bool = True) -> None:
        """Running → ``state`` (``running_only=False``: from finished too, for promotion)."""
        where = [shadows.c.id == shadow_id]
        if running_only:
            where.append(shadows.c.state == RUNNING)
        with self.db.transaction() as conn:
            conn.execute(update(shadows).where(*where).values(
                state=state, finished_at=func.coalesce(shadows.c.finished_at, utcnow())))

    def add(self, pairs: list[dict[str, Any]], dropped: dict[str, int]) -> None:
        """Compared pairs (each with its ``shadow_id``) and dropped-mirror counts."""
        with self.db.transaction() as conn:
            if pairs:
                now = utcnow()
                conn.execute(shadow_pairs.insert(), [{"at": now, "shadow_latency": None,
                                                      "shadow_error": None, "agree": None,
                                                      "argmax_agree": None, "similarity": None,
                                                      "max_abs_diff": None,
                                                      "primary_tokens": None,
                                                      "shadow_tokens": None, "example": None,
                                                      **p} for p in pairs])
            for shadow_id, n in dropped.items():
                conn.execute(update(shadows).where(shadows.c.id == shadow_id)
                             .values(dropped=shadows.c.dropped + n))

    def pairs(self, shadow_id: str) -> list[Any]:
        with self.db.read() as conn:
            return conn.execute(select(shadow_pairs).where(shadow_pairs.c.shadow_id == shadow_id)
                                .order_by(shadow_pairs.c.id)).all()

    def count(self, shadow_id: str) -> int:
        with self.db.read() as conn:
            return conn.execute(select(func.count()).select_from(shadow_pairs)
                                .where(shadow_pairs.c.shadow_id == shadow_id)).scalar_one()
