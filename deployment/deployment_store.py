"""All SQL of deployments, their events, the rollback history and health check results.

Writers pass their own connection, so that a deployment's state change, the traffic change it
causes (``TrafficStore.set``), its event rows and any rollback record commit together.

Concurrency: every change of a deployment goes through :meth:`DeploymentStore.transition`, an
``UPDATE ... WHERE id = :id AND revision = :seen`` that bumps the revision. Exactly one of
several processes acting on the same state wins (rowcount 1); the others get :class:`Lost` and
roll back. On PostgreSQL the UPDATE also row-locks the deployment until commit, so a writer
that changes both a deployment and the traffic table must take the deployment first (the
controller does, and so must the rollback manager: call :meth:`mark_rolled_back` before
``TrafficStore.set``) — the same order everywhere means no deadlock. On SQLite every write
transaction is ``BEGIN IMMEDIATE``: writers queue.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from deployment.records import (STATES, Deployment, DeploymentEvent, HealthCheckRecord,
                                RollbackRecord)
from errors import FailedPrecondition, InvalidArgument, NotFound
from storage.events import record_event
from shared.pagination import decode_token, encode_token
from storage.database import Database
from storage.schema import as_utc, deployments, events, health_checks, iso, rollbacks

TRIGGERS: tuple[str, ...] = ("manual", "automatic", "snapshot")
T = TypeVar("T")


class Lost(Exception):
    """Another process (or thread) changed the deployment first: this change is void."""


def new_id(prefix: str) -> str:
    """``<prefix>_<13 hex digits of µs since the epoch><6 random hex>``: unique and ordered by
    creation time, so ids sort like the history they name."""
    return f"{prefix}_{time.time_ns() // 1000:013x}{secrets.token_hex(3)}"


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _utc(value: datetime) -> datetime:
    """Bind values in UTC: SQLite compares the stored text, which drops the offset."""
    return as_utc(value)


def _deployment(row: Any) -> Deployment:
    return Deployment(
        id=row.id, model=row.model, version=row.version, previous_version=row.previous_version,
        strategy=row.strategy, state=row.state, step=row.step, steps=list(row.steps),
        traffic=dict(row.traffic), analysis=row.analysis, verdicts=list(row.verdicts or []),
        reason=row.reason, actor=row.actor, revision=row.revision,
        step_started_at=aware(row.step_started_at), next_check_at=aware(row.next_check_at),
        deadline_at=aware(row.deadline_at), created_at=aware(row.created_at),
        updated_at=aware(row.updated_at), finished_at=aware(row.finished_at))


def _event(row: Any) -> DeploymentEvent:
    return DeploymentEvent(id=row.id, at=aware(row.at), kind=row.kind, actor=row.actor,
                           version=row.version, reason=row.reason, detail=row.detail)


def _rollback(row: Any) -> RollbackRecord:
    return RollbackRecord(id=row.id, model=row.model, from_version=row.from_version,
                          to_version=row.to_version, trigger=row.trigger, reason=row.reason,
                          evidence=row.evidence, actor=row.actor,
                          deployment_id=row.deployment_id, created_at=aware(row.created_at))


def _page_after(page_token: str | None) -> tuple[datetime, str] | None:
    """Keyset tokens are ``[created_at ISO, id]`` of the last row of the previous page."""
    token = decode_token(page_token)
    if token is None:
        return None
    try:
        created, last_id = token
        return _utc(datetime.fromisoformat(created.replace("Z", "+00:00"))), str(last_id)
    except (TypeError, ValueError, AttributeError):
        raise InvalidArgument("page_token is not a token this server issued") from None


def _token(created_at: datetime, row_id: str) -> str:
    return encode_token([iso(created_at), row_id])


def _newest_first(table: Any, after: tuple[datetime, str] | None) -> Any:
    """ORDER BY created_at DESC, id DESC, starting strictly after ``after``."""
    if after is None:
        return None
    created, last_id = after
    return or_(table.c.created_at < created,
               and_(table.c.created_at == created, table.c.id < last_id))


def keyset_page(database: Database, table: Any, where: list[Any], limit: int,
                page_token: str | None, record: Callable[[Any], T]) -> tuple[list[T], str | None]:
    """One page of ``table`` matching ``where``, newest first (created_at, id), after the page
    token's row: ``limit`` records and the next page's token (None on the last page). The
    deployment, shadow and experiment stores page with it, all with the same kind of token,
    so ``deployment.listing`` can merge their pages into one list."""
    stmt = (select(table).where(*where)
            .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1))
    after = _newest_first(table, _page_after(page_token))
    if after is not None:
        stmt = stmt.where(after)
    with database.read() as conn:
        rows = conn.execute(stmt).all()
    page = [record(r) for r in rows[:limit]]
    return page, (page_token_of(aware(rows[limit - 1].created_at), rows[limit - 1].id)
                  if len(rows) > limit else None)


def filters(table: Any, **equal: Any) -> list[Any]:
    """``column == value`` for each given value that is not None (a list's filters)."""
    return [table.c[name] == value for name, value in equal.items() if value is not None]


def page_token_of(created_at: datetime, row_id: str) -> str:
    """The token of the page after the row (``created_at``, ``row_id``)."""
    return _token(created_at, row_id)


class DeploymentStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    # -- reading ----------------------------------------------------------------------------
    def get(self, deployment_id: str, conn: Connection | None = None, *,
            with_events: bool = False) -> Deployment:
        if conn is None:
            with self.db.read() as c:
                return self.get(deployment_id, c, with_events=with_events)
        row = conn.execute(select(deployments).where(deployments.c.id == deployment_id)).first()
        if row is None:
            raise NotFound(f"deployment '{deployment_id}' does not exist")
        dep = _deployment(row)
        if with_events:
            rows = conn.execute(select(events).where(events.c.deployment_id == deployment_id)
                                .order_by(events.c.id)).all()
            dep = replace(dep, events=tuple(_event(r) for r in rows))
        return dep

    def active_for_model(self, model: str, conn: Connection | None = None) -> Deployment | None:
        if conn is None:
            with self.db.read() as c:
                return self.active_for_model(model, c)
        row = conn.execute(select(deployments).where(deployments.c.model == model,
                                                     deployments.c.finished_at.is_(None))).first()
        return _deployment(row) if row else None

    def active(self) -> list[Deployment]:
        """Every rollout in progress (few: at most one per model), oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(select(deployments).where(deployments.c.finished_at.is_(None))
                                .order_by(deployments.c.created_at, deployments.c.id)).all()
        return [_deployment(r) for r in rows]

    def list(self, model: str | None, state: str | None, limit: int,
             page_token: str | None, strategy: str | None = None
             ) -> tuple[list[Deployment], str | None]:
        """Newest first; ``limit`` rows and the token of the next page (or None)."""
        if state is not None and state not in STATES:
            raise InvalidArgument(f"unknown state {state!r}: expected one of {', '.join(STATES)}")
        where = filters(deployments, model=model, state=state, strategy=strategy)
        return keyset_page(self.db, deployments, where, limit, page_token, _deployment)

    # -- writing (in the caller's transaction) ------------------------------------------------
    def insert(self, conn: Connection, dep: Deployment) -> None:
        """Create a deployment; another rollout of the model in progress → FailedPrecondition
        (the partial unique index decides, whichever process got there first)."""
        values = {k: getattr(dep, k) for k in deployments.c.keys()}
        try:
            conn.execute(insert(deployments).values(**values))
        except IntegrityError:
            raise FailedPrecondition(
                f"a rollout of model '{dep.model}' is already in progress; wait for it, abort "
                f"it, or deploy with \"force\": true to supersede it") from None

    def transition(self, conn: Connection, dep: Deployment, **changes: Any) -> Deployment:
        """Apply ``changes`` if ``dep`` is still what is stored (same revision); bump the
        revision. Raises :class:`Lost` when someone else changed it first."""
        changes["revision"] = dep.revision + 1
        done = conn.execute(update(deployments)
                            .where(deployments.c.id == dep.id,
                                   deployments.c.revision == dep.revision)
                            .values(**changes)).rowcount
        if done != 1:
            raise Lost(dep.id)
        return replace(dep, **changes)

    def mark_rolled_back(self, conn: Connection, model: str, *, actor: str, reason: str,
                         now: datetime) -> list[str]:
        """For the rollback manager, before it changes the traffic table: the rollout in
        progress (if any) and the last succeeded deployment of ``model`` become
        ``rolled_back``. Returns their ids."""
        latest = conn.execute(select(deployments.c.id).where(
            deployments.c.model == model, deployments.c.state == "succeeded")
            .order_by(deployments.c.created_at.desc(), deployments.c.id.desc()).limit(1)).first()
        ids = [r.id for r in conn.execute(select(deployments.c.id).where(
            deployments.c.model == model, deployments.c.finished_at.is_(None))).all()]
        if latest is not None:
            ids.append(latest.id)
        for dep_id in ids:
            row = conn.execute(select(deployments).where(deployments.c.id == dep_id)
                               .with_for_update()).first()
            conn.execute(update(deployments).where(deployments.c.id == dep_id).values(
                state="rolled_back", reason=reason, revision=row.revision + 1,
                next_check_at=None, updated_at=now, finished_at=row.finished_at or now))
            record_event(conn, "deployment.rolled_back", actor=actor, model=model,
                         version=row.version, deployment_id=dep_id, reason=reason,
                         detail={"from_state": row.state})
        return ids

    def insert_rollback(self, conn: Connection, *, model: str, from_version: str | None,
                        to_version: str | None, trigger: str, reason: str,
                        evidence: dict[str, Any] | None, actor: str,
                        deployment_id: str | None, now: datetime) -> RollbackRecord:
        """One row of the rollback history (written by the controller and the rollback
        manager alike)."""
        if trigger not in TRIGGERS:
            raise InvalidArgument(f"rollback trigger must be one of {TRIGGERS}, got {trigger!r}")
        record = RollbackRecord(id=new_id("rb"), model=model, from_version=from_version,
                                to_version=to_version, trigger=trigger, reason=reason,
                                evidence=evidence or {}, actor=actor,
                                deployment_id=deployment_id, created_at=now)
        conn.execute(insert(rollbacks).values(**vars(record)))
        record_event(conn, "rollback.recorded", actor=actor, model=model, version=to_version,
                     deployment_id=deployment_id, reason=reason,
                     detail={"rollback_id": record.id, "trigger": trigger,
                             "from_version": from_version, "to_version": to_version})
        return record

    def record_health(self, conn: Connection, *, model: str, version: str,
                      deployment_id: str | None, ok: bool, message: str,
                      probes: list[dict[str, Any]], now: datetime) -> None:
        conn.execute(insert(health_checks).values(
            model=model, version=version, deployment_id=deployment_id, ok=ok, message=message,
            probes=probes, checked_at=now))

    # -- reading rollbacks and health checks ---------------------------------------------------
    def list_rollbacks(self, model: str | None = None, limit: int = 50,
                       page_token: str | None = None
                       ) -> tuple[list[RollbackRecord], str | None]:
        stmt = (select(rollbacks).order_by(rollbacks.c.created_at.desc(), rollbacks.c.id.desc())
                .limit(limit + 1))
        if model is not None:
            stmt = stmt.where(rollbacks.c.model == model)
        after = _newest_first(rollbacks, _page_after(page_token))
        if after is not None:
            stmt = stmt.where(after)
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        page = rows[:limit]
        token = _token(aware(page[-1].created_at), page[-1].id) if len(rows) > limit else None
        return [_rollback(r) for r in page], token

    def get_rollback(self, rollback_id: str) -> RollbackRecord:
        with self.db.read() as conn:
            row = conn.execute(select(rollbacks).where(rollbacks.c.id == rollback_id)).first()
        if row is None:
            raise NotFound(f"rollback '{rollback_id}' does not exist")
        return _rollback(row)

    def health_checks(self, model: str, version: str | None = None,
                      limit: int = 20) -> list[HealthCheckRecord]:
        stmt = (select(health_checks).where(health_checks.c.model == model)
                .order_by(health_checks.c.id.desc()).limit(limit))
        if version is not None:
            stmt = stmt.where(health_checks.c.version == version)
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        return [HealthCheckRecord(model=r.model, version=r.version,
                                  deployment_id=r.deployment_id, ok=r.ok, message=r.message,
                                  probes=r.probes, checked_at=aware(r.checked_at))
                for r in rows]
