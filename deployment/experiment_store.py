"""A/B experiments in the database (issue 19). One transaction per method."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from deployment.deployment_store import aware, new_id
from storage.database import Database
from storage.schema import experiments, iso, utcnow

RUNNING = "running"


def experiment_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "model": row.model, "strategy": "experiment",
            "variants": row.variants, "control": row.control,
            "primary_metric": row.primary_metric, "alpha": row.alpha,
            "sample_size": row.sample_size, "ends_at": iso(aware(row.ends_at)),
            "state": row.state, "previous": row.previous, "result": row.result,
            "reason": row.reason, "actor": row.actor, "created_at": iso(aware(row.created_at)),
            "finished_at": iso(aware(row.finished_at))}


class ExperimentStore:
    """Experiment rows. Starting and ending also move the traffic, so those two methods write
    inside the caller's :class:`~deployment.traffic_switch.TrafficSwitch` transaction."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def insert(self, conn: Connection, model: str, variants: dict[str, int],
               primary_metric: str, alpha: float, sample_size: int | None,
               ends_at: datetime | None, previous: dict[str, int] | None, reason: str,
               actor: str) -> dict[str, Any]:
        experiment_id = new_id("dep")
        conn.execute(experiments.insert().values(
            id=experiment_id, model=model, variants=variants, control=next(iter(variants)),
            primary_metric=primary_metric, alpha=alpha, sample_size=sample_size,
            ends_at=ends_at, state=RUNNING, previous=previous, result=None, reason=reason,
            actor=actor, created_at=utcnow(), finished_at=None))
        row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)).one()
        return experiment_dict(row)

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(select(experiments)
                               .where(experiments.c.id == experiment_id)).first()
        return experiment_dict(row) if row else None

    def running_for(self, model: str, conn: Connection | None = None) -> dict[str, Any] | None:
        if conn is None:
            with self.db.read() as c:
                return self.running_for(model, c)
        row = conn.execute(select(experiments).where(experiments.c.model == model,
                                                     experiments.c.state == RUNNING)).first()
        return experiment_dict(row) if row else None

    def finish(self, conn: Connection, experiment_id: str,
               result: dict[str, Any]) -> dict[str, Any] | None:
        """Running → finished with its verdict; None when it was no longer running (another
        process finished it first)."""
        row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)
                           .with_for_update()).one()
        if row.state != RUNNING:
            return None
        conn.execute(update(experiments).where(experiments.c.id == experiment_id)
                     .values(state="finished", result=result, finished_at=utcnow()))
        return experiment_dict(row)

    def mark_promoted(self, experiment_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(update(experiments).where(experiments.c.id == experiment_id)
                         .values(state="promoted"))
