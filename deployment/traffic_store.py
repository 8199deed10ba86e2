"""All SQL of the traffic table: the live {version: percent} of each model, and its history.

Writers (the rollout controller, rollback, snapshot restore) pass their own connection so that a
traffic change commits in the same transaction as the state change that caused it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from deployment.records import TrafficChange, TrafficTable
from errors import FailedPrecondition, InvalidArgument
from storage.events import record_event
from storage.database import Database
from storage.schema import iso, traffic, traffic_history, utcnow


def check_weights(weights: dict[str, int]) -> dict[str, int]:
    """Whole percents that add up to 100; versions at 0 are dropped."""
    if not isinstance(weights, dict) or not weights:
        raise InvalidArgument("traffic weights must be a non-empty object {version: percent}")
    for version, weight in weights.items():
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            raise InvalidArgument(f"weight of {version!r} must be a whole percent from 0 to 100")
    if sum(weights.values()) != 100:
        raise InvalidArgument(f"traffic weights must add up to 100, got {sum(weights.values())}")
    return {v: w for v, w in weights.items() if w > 0}


def _table(row: Any) -> TrafficTable:
    return TrafficTable(row.model, row.revision, dict(row.weights), row.stable_version,
                        row.deployment_id, iso(getattr(row, "updated_at", None) or
                                               getattr(row, "at", None)))


class TrafficStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    def get(self, model: str, conn: Connection | None = None) -> TrafficTable | None:
        if conn is not None:
            row = conn.execute(select(traffic).where(traffic.c.model == model)).first()
            return _table(row) if row else None
        with self.db.read() as c:
            return self.get(model, c)

    def get_many(self, names: list[str]) -> dict[str, TrafficTable]:
        """The tables of many models in one query (models without one are left out)."""
        if not names:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(select(traffic).where(traffic.c.model.in_(names))).all()
        return {row.model: _table(row) for row in rows}

    def models(self) -> list[str]:
        """Every model that has a traffic table."""
        with self.db.read() as conn:
            return list(conn.execute(select(traffic.c.model).order_by(traffic.c.model)).scalars())

    def revision(self, model: str) -> int | None:
        """The cheap check every process makes to know whether its cached table is current."""
        with self.db.read() as conn:
            return conn.execute(select(traffic.c.revision)
                                .where(traffic.c.model == model)).scalar()

    def set(self, conn: Connection, model: str, weights: dict[str, int],
            stable_version: str | None, *, actor: str, reason: str,
            deployment_id: str | None = None,
            expected_revision: int | None = None) -> TrafficTable:
        """Replace the table inside the caller's transaction; history and an event row too.

        ``expected_revision`` makes the write optimistic: it fails if someone changed the table
        since the caller read it.
        """
        weights = check_weights(weights)
        now = utcnow()
        current = self.get(model, conn)
        if expected_revision is not None and (current.revision if current else 0) != expected_revision:
            raise FailedPrecondition(f"the traffic of model '{model}' changed meanwhile; retry")
        revision = (current.revision if current else 0) + 1
        values = dict(revision=revision, weights=weights, stable_version=stable_version,
                      deployment_id=deployment_id, updated_at=now)
        if current is None:
            conn.execute(insert(traffic).values(model=model, **values))
        else:
            done = conn.execute(update(traffic).where(traffic.c.model == model,
                                                      traffic.c.revision == current.revision)
                                .values(**values)).rowcount
            if not done:
                raise FailedPrecondition(f"the traffic of model '{model}' changed meanwhile; retry")
        conn.execute(insert(traffic_history).values(
            model=model, revision=revision, weights=weights, stable_version=stable_version,
            deployment_id=deployment_id, actor=actor, reason=reason, at=now))
        record_event(conn, "traffic.changed", actor=actor, model=model,
                     deployment_id=deployment_id, reason=reason,
                     detail={"weights": weights, "revision": revision,
                             "stable_version": stable_version})
        return TrafficTable(model, revision, weights, stable_version, deployment_id, iso(now))

    def at(self, model: str, when: datetime) -> TrafficTable | None:
        """What served at ``when``: the last change at or before it."""
        with self.db.read() as conn:
            row = conn.execute(select(traffic_history)
                               .where(traffic_history.c.model == model,
                                      traffic_history.c.at <= when)
                               .order_by(traffic_history.c.revision.desc()).limit(1)).first()
            return _table(row) if row else None

    def history(self, model: str, limit: int = 100) -> list[TrafficChange]:
        """The model's traffic changes, newest first."""
        with self.db.read() as conn:
            rows = conn.execute(select(traffic_history)
                                .where(traffic_history.c.model == model)
                                .order_by(traffic_history.c.revision.desc()).limit(limit)).all()
        return [TrafficChange(r.model, r.revision, dict(r.weights), r.stable_version,
                              r.deployment_id, iso(r.at), r.actor, r.reason) for r in rows]
