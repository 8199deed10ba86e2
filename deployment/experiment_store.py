"""A/B experiments in the database (issue 19). One transaction per method; every method
returns frozen records (``deployment/records.py``)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from deployment.deployment_store import aware, filters, keyset_page, new_id
from deployment.records import ExperimentRecord
from storage.database import Database
from storage.events import record_event
from storage.schema import experiments, utcnow

RUNNING = "running"


def experiment_record(row: Any) -> ExperimentRecord:
    return ExperimentRecord(
        id=row.id, model=row.model, variants=dict(row.variants), control=row.control,
        primary_metric=row.primary_metric, alpha=float(row.alpha),
        sample_size=row.sample_size, ends_at=aware(row.ends_at), state=row.state,
        previous=row.previous, result=row.result, reason=row.reason, actor=row.actor,
        created_at=aware(row.created_at), finished_at=aware(row.finished_at))


class ExperimentStore:
    """Experiment rows. Starting and ending also move the traffic, so those two methods write
    inside the caller's :class:`~deployment.traffic_switch.TrafficSwitch` transaction."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def insert(self, conn: Connection, model: str, variants: dict[str, int],
               primary_metric: str, alpha: float, sample_size: int | None,
               ends_at: datetime | None, previous: dict[str, int] | None, reason: str,
               actor: str) -> ExperimentRecord:
        experiment_id = new_id("dep")
        conn.execute(experiments.insert().values(
            id=experiment_id, model=model, variants=variants, control=next(iter(variants)),
            primary_metric=primary_metric, alpha=alpha, sample_size=sample_size,
            ends_at=ends_at, state=RUNNING, previous=previous, result=None, reason=reason,
            actor=actor, created_at=utcnow(), finished_at=None))
        row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)).one()
        record_event(conn, "experiment.started", actor=actor, model=model,
                     deployment_id=experiment_id, reason=reason,
                     detail={"variants": variants, "primary_metric": primary_metric})
        return experiment_record(row)

    def get(self, experiment_id: str) -> ExperimentRecord | None:
        with self.db.read() as conn:
            row = conn.execute(select(experiments)
                               .where(experiments.c.id == experiment_id)).first()
        return experiment_record(row) if row else None


    def list(self, model: str | None, state: str | None, limit: int,
             page_token: str | None) -> tuple[list[ExperimentRecord], str | None]:
        """Newest first, keyset-paged as the deployments are (``deployment.listing``)."""
        where = filters(experiments, model=model, state=state)
        return keyset_page(self.db, experiments, where, limit, page_token, experiment_record)

    def running(self) -> list[ExperimentRecord]:
        """Every running experiment (the ticker checks which are due)."""
        with self.db.read() as conn:
            rows = conn.execute(select(experiments)
                                .where(experiments.c.state == RUNNING)).all()
        return [experiment_record(r) for r in rows]

    def running_for(self, model: str, conn: Connection | None = None
                    ) -> ExperimentRecord | None:
        if conn is None:
            with self.db.read() as c:
                return self.running_for(model, c)
        row = conn.execute(select(experiments).where(experiments.c.model == model,
                                                     experiments.c.state == RUNNING)).first()
        return experiment_record(row) if row else None

    def finish(self, conn: Connection, experiment_id: str, result: dict[str, Any],
               actor: str = "system", reason: str = "") -> ExperimentRecord | None:
        """Running → finished with its verdict and its event; None when it was no longer
        running (another process finished it first)."""
        row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)
                           .with_for_update()).one()
        if row.state != RUNNING:
            return None
        conn.execute(update(experiments).where(experiments.c.id == experiment_id)
                     .values(state="finished", result=result, finished_at=utcnow()))
        verdict = result.get("verdict") or {}
        record_event(conn, "experiment.finished", actor=actor, model=row.model,
                     deployment_id=experiment_id, reason=reason,
                     detail={"winner": verdict.get("winner"),
                             "summary": verdict.get("summary")})
        return experiment_record(row)

    def mark_promoted(self, experiment_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(update(experiments).where(experiments.c.id == experiment_id)
                         .values(state="promoted"))
