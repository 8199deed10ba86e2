"""Shadows and their mirrored pairs in the database (issue 19). One transaction per method;
every method returns frozen records (``deployment/records.py``)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from deployment.deployment_store import aware, filters, keyset_page, new_id
from deployment.records import ShadowPair, ShadowRecord
from storage.database import Database
from storage.events import record_event
from storage.schema import shadow_pairs, shadows, utcnow

RUNNING = "running"
_PAIR_DEFAULTS: dict[str, Any] = {
    "shadow_latency": None, "shadow_error": None, "agree": None, "argmax_agree": None,
    "similarity": None, "max_abs_diff": None, "primary_tokens": None, "shadow_tokens": None,
    "example": None, "primary_cost_micro_usd": None, "shadow_cost_micro_usd": None}


def shadow_record(row: Any) -> ShadowRecord:
    return ShadowRecord(
        id=row.id, model=row.model, version=row.version, state=row.state,
        sample_percent=float(row.sample_percent), max_requests=row.max_requests,
        ends_at=aware(row.ends_at), dropped=row.dropped, reason=row.reason, actor=row.actor,
        created_at=aware(row.created_at), finished_at=aware(row.finished_at))


def _pair(row: Any) -> ShadowPair:
    return ShadowPair(
        shadow_id=row.shadow_id, at=aware(row.at), primary_version=row.primary_version,
        primary_latency=row.primary_latency, shadow_latency=row.shadow_latency,
        shadow_error=row.shadow_error, agree=row.agree, argmax_agree=row.argmax_agree,
        similarity=row.similarity, max_abs_diff=row.max_abs_diff,
        primary_tokens=row.primary_tokens, shadow_tokens=row.shadow_tokens,
        example=row.example, primary_cost_micro_usd=row.primary_cost_micro_usd,
        shadow_cost_micro_usd=row.shadow_cost_micro_usd)


class ShadowStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    def create(self, model: str, version: str, sample_percent: float,
               max_requests: int | None, ends_at: datetime | None, reason: str,
               actor: str) -> ShadowRecord:
        values = dict(id=new_id("dep"), model=model, version=version, state=RUNNING,
                      sample_percent=sample_percent, max_requests=max_requests,
                      ends_at=ends_at, dropped=0, reason=reason, actor=actor,
                      created_at=utcnow(), finished_at=None)
        with self.db.transaction() as conn:
            conn.execute(shadows.insert().values(**values))
            row = conn.execute(select(shadows).where(shadows.c.id == values["id"])).one()
            record_event(conn, "shadow.started", actor=actor, model=model, version=version,
                         deployment_id=values["id"], reason=reason,
                         detail={"sample_percent": sample_percent,
                                 "max_requests": max_requests})
        return shadow_record(row)

    def get(self, shadow_id: str) -> ShadowRecord | None:
        with self.db.read() as conn:
            row = conn.execute(select(shadows).where(shadows.c.id == shadow_id)).first()
        return shadow_record(row) if row else None


    def list(self, model: str | None, state: str | None, limit: int,
             page_token: str | None) -> tuple[list[ShadowRecord], str | None]:
        """Newest first, keyset-paged as the deployments are (``deployment.listing``)."""
        return keyset_page(self.db, shadows, filters(shadows, model=model, state=state), limit,
                           page_token, shadow_record)

    def running(self) -> list[ShadowRecord]:
        with self.db.read() as conn:
            rows = conn.execute(select(shadows).where(shadows.c.state == RUNNING)).all()
        return [shadow_record(r) for r in rows]

    def finish(self, shadow_id: str, state: str, running_only: bool = True, *,
               actor: str = "system", reason: str = "") -> bool:
        """Running → ``state`` (``running_only=False``: from finished too, for promotion),
        with its event; False when nothing changed (another process ended it first)."""
        where = [shadows.c.id == shadow_id]
        if running_only:
            where.append(shadows.c.state == RUNNING)
        with self.db.transaction() as conn:
            changed = conn.execute(update(shadows).where(*where).values(
                state=state, finished_at=func.coalesce(shadows.c.finished_at, utcnow())
            )).rowcount
            if changed:
                row = conn.execute(select(shadows.c.model, shadows.c.version)
                                   .where(shadows.c.id == shadow_id)).one()
                record_event(conn, f"shadow.{state}", actor=actor, model=row.model,
                             version=row.version, deployment_id=shadow_id, reason=reason)
        return bool(changed)

    def add(self, pairs: list[dict[str, Any]], dropped: dict[str, int]) -> None:
        """Compared pairs (each with its ``shadow_id``) and dropped-mirror counts."""
        with self.db.transaction() as conn:
            if pairs:
                now = utcnow()
                conn.execute(shadow_pairs.insert(),
                             [{"at": now, **_PAIR_DEFAULTS, **p} for p in pairs])
            for shadow_id, n in dropped.items():
                conn.execute(update(shadows).where(shadows.c.id == shadow_id)
                             .values(dropped=shadows.c.dropped + n))

    def pairs(self, shadow_id: str) -> list[ShadowPair]:
        with self.db.read() as conn:
            rows = conn.execute(select(shadow_pairs)
                                .where(shadow_pairs.c.shadow_id == shadow_id)
                                .order_by(shadow_pairs.c.id)).all()
        return [_pair(r) for r in rows]

    def count(self, shadow_id: str) -> int:
        with self.db.read() as conn:
            return conn.execute(select(func.count()).select_from(shadow_pairs)
                                .where(shadow_pairs.c.shadow_id == shadow_id)).scalar_one()
