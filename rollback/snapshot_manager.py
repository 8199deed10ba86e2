"""Snapshots of the serving state, and their atomic restore.

A snapshot records, for one model or for every model: the traffic table, the aliases, the status
of every version and the rollout in progress. One is taken automatically before every
deployment (the newest ``retention`` automatic ones are kept per scope); any can be taken by
hand. The automatic one is taken inside the deploy's transaction, after its refusal checks: a
refused deploy leaves no snapshot. Restoring puts all of it back in one transaction (traffic
through the deployment layer's :class:`TrafficSwitch`, like every traffic change), recorded as a
rollback with trigger ``snapshot``, and is refused (409) when a version it needs no longer exists or fails its health
check — never a half-applied state.

What a restore does not touch: models created after the snapshot (reported as ``untouched``),
and the traffic of a model that had no traffic table yet when the snapshot was taken (it was
served by its highest stable version; the restored statuses decide that again).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from deployment.deployment_store import DeploymentStore, new_id
from deployment.health_checker import HealthChecker
from deployment.records import RollbackRecord
from deployment.router import Router
from deployment.traffic_store import TrafficStore
from deployment.traffic_switch import SwitchTransaction, TrafficSwitch
from defaults import parts_for
from errors import FailedPrecondition
from registry.metadata_store import MetadataStore
from shared.text import check_text
from shared.pagination import check_limit
from rollback.snapshot_store import SnapshotStore
from storage.database import Database
from storage.schema import utcnow

DEFAULT_RETENTION = 50


def live_version(weights: dict[str, int], stable: str | None) -> str | None:
    """The version a table serves most: its stable version, else the heaviest one."""
    if not weights:
        return None
    return stable if stable in weights else max(weights, key=weights.get)


class SnapshotManager:
    """Part of the public Python API: snapshots, restores and their rollback records are
    answered as dicts (``as_dict()`` of the records), converted here from what
    ``SnapshotStore`` and the deployment layer return."""

    def __init__(self, database: Database | None = None, *, health: HealthChecker | None = None,
                 router: Router | None = None, switch: TrafficSwitch | None = None,
                 retention: int = DEFAULT_RETENTION,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = database = database or parts_for(None).database
        self.store = SnapshotStore(database)
        self.registry_store = MetadataStore(database)
        self.traffic = TrafficStore(database)
        self.deployments = DeploymentStore(database)
        self.health = health
        self.switch = switch or TrafficSwitch(
            database, traffic=self.traffic, deployments=self.deployments, router=router,
            loader=health.loader if health is not None else None)
        self.retention = retention
        self.clock = clock

    def create(self, model: str | None = None, *, automatic: bool = False, reason: str = "",
               actor: str = "system", conn: Connection | None = None) -> dict[str, Any]:
        """Record the serving state of ``model`` (or of every model) in one transaction (the
        caller's ``conn`` when given)."""
        reason = check_text(reason, "reason")
        if conn is None:
            with self.db.transaction() as own:
                return self.create(model, automatic=automatic, reason=reason, actor=actor,
                                   conn=own)
        names = [model] if model is not None else self.registry_store.model_names(conn)
        state = {"models": {name: self._model_state(conn, name) for name in names}}
        snapshot = self.store.insert(conn, {
            "id": new_id("snap"), "model": model, "automatic": automatic, "state": state,
            "reason": reason, "actor": actor, "created_at": self.clock()})
        if automatic:
            self.store.prune_automatic(conn, model, self.retention)
        return snapshot.as_dict()

    def before_deploy(self, conn: Connection, model: str, deployment_id: str) -> None:
        """The deployment manager's hook, inside the deploy's transaction once its refusal
        checks passed: the serving state before every deployment."""
        self.create(model, automatic=True, reason=f"before deployment {deployment_id}",
                    conn=conn)

    def _model_state(self, conn: Any, name: str) -> dict[str, Any]:
        table = self.traffic.get(name, conn)
        active = self.deployments.active_for_model(name, conn)
        return {**self.registry_store.serving_state(conn, name).as_dict(),
                "traffic": ({"weights": table.weights, "stable_version": table.stable_version,
                             "revision": table.revision} if table else None),
                "active_deployment": active.id if active else None}

    def get(self, snapshot_id: str) -> dict[str, Any]:
        return self.store.get(snapshot_id).as_dict()

    def list(self, model: str | None = None, automatic: bool | None = None, limit: int = 50,
             page_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        rows, token = self.store.list(model, automatic, check_limit(limit, 50), page_token)
        return [r.as_dict() for r in rows], token

    def delete(self, snapshot_id: str) -> None:
        self.store.delete(snapshot_id)

    def restore(self, snapshot_id: str, *, reason: str = "",
                actor: str = "system") -> dict[str, Any]:
        """Put the recorded serving state back; returns what was restored, what was left
        untouched, and the rollback records written."""
        snapshot = self.store.get(snapshot_id)
        reason = check_text(reason, "reason") or f"restore snapshot {snapshot_id}"
        recorded: dict[str, Any] = snapshot.state["models"]
        self._check_health(recorded)
        now = self.clock()
        rollbacks = []
        with self.switch.transaction() as tx:
            conn = tx.conn
            existing = set(self.registry_store.model_names(conn))
            gone = sorted(set(recorded) - existing)
            if gone:
                raise FailedPrecondition(f"model(s) {gone} no longer exist; the snapshot "
                                         "cannot be restored")
            for name, state in recorded.items():
                self.registry_store.restore_serving_state(conn, name, state["statuses"],
                                                          state["aliases"], actor, reason)
                record = self._restore_traffic(tx, name, state["traffic"], snapshot_id,
                                               actor, reason, now)
                if record is not None:
                    rollbacks.append(record.as_dict())
            scope = {snapshot.model} if snapshot.model else existing
            untouched = sorted(scope - set(recorded))
        for name in recorded:  # after the commit: this process reads its own restore at once
            self.registry_store.forget(name)
        return {"snapshot_id": snapshot_id, "restored": sorted(recorded),
                "untouched": untouched, "rollbacks": rollbacks}

    def _restore_traffic(self, tx: SwitchTransaction, name: str,
                         recorded: dict[str, Any] | None, snapshot_id: str, actor: str,
                         reason: str, now: datetime) -> RollbackRecord | None:
        current = self.traffic.get(name, tx.conn)
        if recorded is None or current is None:
            return None
        weights, stable = recorded["weights"], recorded["stable_version"]
        if current.weights == weights and current.stable_version == stable:
            return None
        replaced = live_version(current.weights, current.stable_version)
        return tx.switch(name, weights, stable, actor=actor, reason=reason, now=now,
                         roll_back=True, release=True,
                         keep={replaced} if replaced else set(),
                         rollback=dict(from_version=replaced,
                                       to_version=live_version(weights, stable),
                                       trigger="snapshot",
                                       evidence={"snapshot_id": snapshot_id, "weights": weights,
                                                 "replaced_weights": current.weights}))

    def _check_health(self, recorded: dict[str, Any]) -> None:
        """Never restore onto a version that cannot serve."""
        if self.health is None:
            return
        for name, state in recorded.items():
            for version in (state["traffic"] or {}).get("weights", {}):
                report = self.health.check(name, version)
                if not report.ok:
                    raise FailedPrecondition(f"refusing to restore: {name}@{version} fails its "
                                             f"health check ({report.message})")
