"""The one way traffic moves: a rollout step, an abort, a rollback, a snapshot restore.

Every traffic change keeps the same invariants, so they live here once:

1. in one transaction, the deployments it ends are marked first (``rolled_back`` for a
   rollback or a restore; the rollout controller transitions its own row in the same
   transaction before switching), then the traffic table is replaced (with its history row and
   ``traffic.changed`` event), then the caller's events, then the rollback record (with its
   ``rollback.recorded`` event) is written — deployments before the table, always in that order, so that concurrent writers
   on PostgreSQL never deadlock (see ``deployment_store``);
2. after the commit, this process's router drops its cached table (other processes revalidate
   within a second by themselves);
3. after the commit, when a rollout ends, the versions of the model that nothing routes to any
   more are unloaded in this process, keeping the ones the caller names (the previous version:
   an instant switch back stays possible).

Usage::

    with switch.transaction() as tx:
        store.transition(tx.conn, ...)           # the caller's own rows, same transaction
        tx.switch("m", {"1.1.0": 100}, "1.1.0", actor=..., reason=..., now=now,
                  release=True)
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from deployment.deployment_store import DeploymentStore
from deployment.records import RollbackRecord
from deployment.router import Router
from deployment.traffic_store import TrafficStore
from models.model_loader import ModelLoader
from storage.database import Database

log = logging.getLogger(__name__)


@dataclass
class SwitchTransaction:
    """The traffic changes of one transaction; their process-local effects run after commit."""

    conn: Connection
    owner: "TrafficSwitch"
    invalidate: set[str] = field(default_factory=set)
    releases: dict[str, set[str]] = field(default_factory=dict)

    def switch(self, model: str, weights: dict[str, int], stable: str | None, *, actor: str,
               reason: str, now: datetime, deployment_id: str | None = None,
               expected_revision: int | None = None, roll_back: bool = False,
               rollback: dict[str, Any] | None = None, release: bool = False,
               keep: set[str] | frozenset[str] = frozenset(),
               events: Callable[[], None] | None = None) -> RollbackRecord | None:
        """Serve ``weights`` (``stable``: the fallback of failed calls) from the commit on.

        ``roll_back``: first mark the rollout in progress and the last succeeded deployment of
        ``model`` ``rolled_back``. ``rollback``: the rollback record to write (``from_version``,
        ``to_version``, ``trigger``, ``evidence``, optionally ``deployment_id``); returned.
        ``release``: a rollout ended — unload what neither ``weights`` nor ``keep`` names.
        ``events``: writes the caller's own event rows, after the table and before the rollback
        record (a history that reads "traffic changed, aborted, rolled back").
        """
        owner = self.owner
        if roll_back:
            owner.deployments.mark_rolled_back(self.conn, model, actor=actor, reason=reason,
                                               now=now)
        owner.traffic.set(self.conn, model, weights, stable, actor=actor, reason=reason,
                          deployment_id=deployment_id, expected_revision=expected_revision)
        if events is not None:
            events()
        record = None
        if rollback is not None:
            record = owner.deployments.insert_rollback(
                self.conn, model=model, reason=reason, actor=actor, now=now,
                **{"deployment_id": deployment_id, **rollback})
        self.invalidate.add(model)
        if release:
            self.release(model, set(weights) | set(keep) | ({stable} if stable else set()))
        return record

    def release(self, model: str, keep: set[str]) -> None:
        """After the commit, unload the versions of ``model`` not in ``keep`` (a rollout
        ended without moving traffic)."""
        self.releases[model] = self.releases.get(model, set()) | keep


class TrafficSwitch:
    """Owns the process-local side of traffic changes: the router and the loaded versions.

    ``loader``: the loader whose cache to trim when a rollout ends (None: nothing is loaded by
    this object's users in this process, nothing to release)."""

    def __init__(self, database: Database, *, traffic: TrafficStore | None = None,
                 deployments: DeploymentStore | None = None, router: Router | None = None,
                 loader: ModelLoader | None = None) -> None:
        self.db = database
        self.traffic = traffic or TrafficStore(database)
        self.deployments = deployments or DeploymentStore(database)
        self.router = router
        self.loader = loader

    @contextmanager
    def transaction(self) -> Iterator[SwitchTransaction]:
        with self.db.transaction() as conn:
            tx = SwitchTransaction(conn, self)
            yield tx
        self._after_commit(tx)

    def _after_commit(self, tx: SwitchTransaction) -> None:
        if self.router is not None:
            for model in tx.invalidate:
                self.router.invalidate(model)
        if self.loader is None:
            return
        for model, keep in tx.releases.items():
            try:   # unloading is a courtesy: it must not undo a committed switch
                self.loader.retain(model, keep)
            except Exception:
                log.exception("releasing the unused versions of %s failed", model)
