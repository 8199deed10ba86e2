"""A/B experiments in the database (issue 19). One transaction per method."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from deployment.deployment_store import aware, new_id
from deployment.traffic_store import TrafficStore
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
    def __init__(self, database: Database, traffic: TrafficStore) -> None:
        self.db = database
        self.traffic = traffic

    def create(self, model: str, variants: dict[str, int], primary_metric: str, alpha: float,
               sample_size: int | None, ends_at: datetime | None, reason: str,
               actor: str) -> dict[str, Any]:
        """Insert the experiment and switch the traffic to its split, in one transaction."""
        experiment_id = new_id("dep")
        with self.db.transaction() as conn:
            current = self.traffic.get(model, conn)
            control = next(iter(variants))
            conn.execute(experiments.insert().values(
                id=experiment_id, model=model, variants=variants, control=control,
                primary_metric=primary_metric, alpha=alpha, sample_size=sample_size,
                ends_at=ends_at, state=RUNNING,
                previous=dict(current.weights) if current else None, result=None,
                reason=reason, actor=actor, created_at=utcnow(), finished_at=None))
            self.traffic.set(conn, model, variants, control, actor=actor,
                             reason=f"experiment {experiment_id}", deployment_id=experiment_id)
            row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)).one()
        return experiment_dict(row)

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(select(experiments)
                               .where(experiments.c.id == experiment_id)).first()
        return experiment_dict(row) if row else None

    def running_for(self, model: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(select(experiments).where(experiments.c.model == model,
                                                         experiments.c.state == RUNNING)).first()
        return experiment_dict(row) if row else None

    def finish(self, experiment_id: str, result: dict[str, Any], restore: bool,
               actor: str) -> bool:
        """Running → finished with its verdict; the traffic back on the control (``restore``).
        False when it was no longer running (another process finished it first)."""
        with self.db.transaction() as conn:
            row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)
                               .with_for_update()).one()
            if row.state != RUNNING:
                return False
            conn.execute(update(experiments).where(experiments.c.id == experiment_id)
                         .values(state="finished", result=result, finished_at=utcnow()))
            if restore:
                self.traffic.set(conn, row.model, {row.control: 100}, row.control, actor=actor,
                                 reason=f"experiment {experiment_id} ended: back to its control",
                                 deployment_id=experiment_id)
        return True

    def mark_promoted(self, experiment_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(update(experiments).where(experiments.c.id == experiment_id)
                         .values(state="promoted"))
