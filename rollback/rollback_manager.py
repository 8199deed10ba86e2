"""Rollback: back to the previous or any named version at once, by hand or automatically.

A rollback is immediate (no canary): through the deployment layer's :class:`TrafficSwitch`, in
one transaction the rollout in progress and the last succeeded deployment become
``rolled_back``, the traffic table serves the target at 100%, and a rollback record keeps the
trigger, the reason and the evidence; then the router drops its cached table and the versions
nothing needs any more are unloaded in this process. It refuses (409) to roll onto an
archived version or one that fails its health check: never trade a bad version for a broken one.

"Previous" comes from the deployment history: during a rollout, the version it started from;
otherwise the version the deployment that made the live version live replaced. Rolling back
twice therefore walks further back, and with nothing before answers 409.

The watcher (``watch()``, run by the server's background ticker) judges every live version that
no rollout is analysing with ``AutoRollbackPolicy``; a breach rolls back to the previous good
version with trigger ``automatic`` and raises an alert. A version rolled back automatically is
never chosen again as an automatic target.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from config import Settings
from defaults import parts_for
from deployment.deployment_store import DeploymentStore
from deployment.health_checker import HealthChecker
from deployment.router import Router
from deployment.traffic_store import TrafficStore
from deployment.traffic_switch import TrafficSwitch
from errors import FailedPrecondition
from registry.model_registry import ModelRegistry
from shared.text import check_text
from shared.pagination import check_limit
from rollback.snapshot_manager import live_version
from storage.database import Database
from storage.schema import utcnow
from tracking.alerting import AlertManager
from tracking.performance_tracker import PerformanceTracker


@dataclass(frozen=True)
class AutoRollbackPolicy:
    """When the watcher rolls a live version back. Thresholds: error rate (fraction) and p95
    latency (seconds) over the last ``window_s`` seconds it has been live, judged only with at
    least ``min_requests`` requests."""

    max_error_rate: float = 0.2
    max_p95_latency: float | None = None
    min_requests: int = 20
    window_s: float = 60.0
    enabled: bool = True

    @classmethod
    def from_settings(cls, s: Settings) -> "AutoRollbackPolicy":
        return cls(max_error_rate=s.auto_rollback_max_error_rate,
                   max_p95_latency=s.auto_rollback_max_p95_s,
                   min_requests=s.auto_rollback_min_requests, window_s=s.auto_rollback_window_s,
                   enabled=s.auto_rollback)


class RollbackManager:
    """The seed's ``RollbackManager``: ``RollbackManager()`` works on the process's services;
    what it is not given comes from the composition root (``defaults.parts_for``).

    Part of the public Python API: rollback records are answered as dicts
    (``RollbackRecord.as_dict()``), converted here from the records the stores return."""

    def __init__(self, database: Database | None = None, *,
                 registry: ModelRegistry | None = None, tracker: PerformanceTracker | None = None,
                 alerts: AlertManager | None = None, health: HealthChecker | None = None,
                 router: Router | None = None, switch: TrafficSwitch | None = None,
                 policy: AutoRollbackPolicy | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        parts = parts_for(database or (registry.db if registry else None))  # what is not given
        self.db = parts.database
        self.registry = registry or parts.registry
        self.tracker = tracker or parts.tracker
        self.alerts = alerts or parts.alerts
        self.health = health if health is not None else parts.health
        self.policy = policy or AutoRollbackPolicy.from_settings(parts.settings)
        self.clock = clock
        self.traffic = TrafficStore(self.db)
        self.deployments = DeploymentStore(self.db)
        self.switch = switch or TrafficSwitch(self.db, traffic=self.traffic,
                                              deployments=self.deployments, router=router,
                                              loader=self.health.loader)

    # -- the seed's API ------------------------------------------------------------------------
    def rollback_to_previous(self, name: str, reason: str = "", actor: str = "system") -> str:
        """Roll back to the version live before the current one; returns the version now
        serving."""
        return self.rollback(name, reason=reason, actor=actor)["to_version"]

    def rollback_to_version(self, name: str, version: str, reason: str = "",
                            actor: str = "system") -> bool:
        """Roll back to ``version`` (exact, alias or range); True when done."""
        self.rollback(name, version, reason=reason, actor=actor)
        return True

    def auto_rollback_on_error(self, name: str, error_threshold: float = 0.1,
                               min_requests: int | None = None,
                               window_s: float | None = None) -> bool:
        """Judge the live version's recent error rate now; roll back when it is above
        ``error_threshold`` (with enough requests). Returns whether it rolled back."""
        policy = AutoRollbackPolicy(
            max_error_rate=error_threshold, max_p95_latency=None,
            min_requests=self.policy.min_requests if min_requests is None else min_requests,
            window_s=self.policy.window_s if window_s is None else window_s)
        return self._judge(name, policy) is not None

    # -- rollback ------------------------------------------------------------------------------
    def rollback(self, name: str, version: str | None = None, *, reason: str = "",
                 actor: str = "system", trigger: str = "manual",
                 evidence: dict[str, Any] | None = None) -> dict[str, Any]:
        """Serve ``version`` (default: the previous one) at 100% now; the rollback record."""
        reason = check_text(reason, "reason")
        table = self.traffic.get(name)
        if table is None:
            self.registry.get_model(name)
            raise FailedPrecondition(f"model '{name}' has never been deployed: nothing to roll "
                                     "back")
        active = self.deployments.active_for_model(name)
        current = active.version if active else live_version(table.weights, table.stable_version)
        if version is not None:
            target = self.registry.get_version(name, version)["version"]
        else:
            target = self.previous_version(name, automatic=trigger == "automatic")
            if target is None:
                raise FailedPrecondition(f"model '{name}' has no version live before "
                                         f"{current} to roll back to")
        if table.weights == {target: 100} and active is None:
            raise FailedPrecondition(f"version '{target}' of model '{name}' already serves "
                                     "100% of its traffic")
        row = self.registry.get_version(name, target)
        if row["status"] == "archived":
            raise FailedPrecondition(f"version '{target}' of model '{name}' is archived; "
                                     "refusing to roll back onto it")
        report = self.health.check(name, target)
        if not report.ok:
            raise FailedPrecondition(f"refusing to roll back onto {name}@{target}: its health "
                                     f"check failed ({report.message})")
        reason = reason or f"{trigger} rollback from {current} to {target}"
        now = self.clock()
        with self.switch.transaction() as tx:
            record = tx.switch(
                name, {target: 100}, target, actor=actor, reason=reason, now=now,
                expected_revision=table.revision, roll_back=True, release=True,
                keep={current} if current else set(),
                rollback=dict(from_version=current, to_version=target, trigger=trigger,
                              deployment_id=active.id if active else None,
                              evidence={**(evidence or {}),
                                        "health_check": report.as_dict()}))
        assert record is not None
        if trigger == "automatic":
            self.alerts.record_automatic_rollback(name, current or "", reason, details=evidence)
        return record.as_dict()

    def previous_version(self, name: str, automatic: bool = False) -> str | None:
        """The version to roll back to, from the deployment history (see the module doc).

        ``automatic``: skip versions that were once rolled back automatically."""
        table = self.traffic.get(name)
        if table is None:
            return None
        banned = self._auto_rolled_back(name) if automatic else set()
        active = self.deployments.active_for_model(name)
        history, _ = self.deployments.list(name, None, 500, None)
        made_live = {}  # version → the newest finished deployment that made it live
        for dep in history:
            if dep.state in ("succeeded", "rolled_back") and dep.version not in made_live:
                made_live[dep.version] = dep
        candidate = active.previous_version if active else \
            self._before(made_live, live_version(table.weights, table.stable_version))
        seen = set()
        while candidate is not None and candidate in banned and candidate not in seen:
            seen.add(candidate)
            candidate = self._before(made_live, candidate)
        return None if candidate in banned else candidate

    @staticmethod
    def _before(made_live: dict[str, Any], version: str | None) -> str | None:
        dep = made_live.get(version) if version else None
        return dep.previous_version if dep else None

    def _auto_rolled_back(self, name: str) -> set[str]:
        rows, _ = self.deployments.list_rollbacks(name, limit=500)
        return {r.from_version for r in rows if r.trigger == "automatic"}

    # -- the watcher ---------------------------------------------------------------------------
    def watch(self) -> list[dict[str, Any]]:
        """Judge every live version nothing is rolling out; the rollbacks it made."""
        if not self.policy.enabled:
            return []
        done = []
        for name in self.traffic.models():
            if self.deployments.active_for_model(name) is not None:
                continue  # the rollout controller's analysis is in charge
            try:
                record = self._judge(name, self.policy)
            except FailedPrecondition:
                continue  # nothing healthy to go back to: the alert below stays raised
            if record is not None:
                done.append(record)
        return done

    def _judge(self, name: str, policy: AutoRollbackPolicy) -> dict[str, Any] | None:
        table = self.traffic.get(name)
        if table is None:
            return None
        live = live_version(table.weights, table.stable_version)
        updated = datetime.fromisoformat(table.updated_at.replace("Z", "+00:00"))
        live_for = max(1.0, (self.clock() - updated).total_seconds())
        window = min(policy.window_s, live_for)
        metrics = self.tracker.get_metrics(name, live, window)
        if metrics["requests"] < policy.min_requests:
            return None
        breaches = []
        if (metrics["error_rate"] or 0) > policy.max_error_rate:
            breaches.append(f"error rate {metrics['error_rate']:.1%} > "
                            f"{policy.max_error_rate:.1%}")
        if policy.max_p95_latency is not None and \
                (metrics["p95_latency"] or 0) > policy.max_p95_latency:
            breaches.append(f"p95 latency {metrics['p95_latency']:.3f}s > "
                            f"{policy.max_p95_latency}s")
        if not breaches:
            return None
        evidence = {"version": live, "window_s": window, "metrics": metrics,
                    "policy": asdict(policy), "breaches": breaches}
        reason = f"automatic rollback of {live}: " + "; ".join(breaches)
        try:
            return self.rollback(name, reason=reason, actor="auto-rollback",
                                 trigger="automatic", evidence=evidence)
        except FailedPrecondition as exc:
            self.alerts.raise_alert(name, live, "auto_rollback_blocked",
                                    metrics["error_rate"], policy.max_error_rate,
                                    f"{reason}, but no rollback is possible: {exc.message}",
                                    "critical", details=evidence)
            raise

    # -- history -------------------------------------------------------------------------------
    def list(self, model: str | None = None, limit: int = 50,
             page_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        rows, token = self.deployments.list_rollbacks(model, check_limit(limit, 50), page_token)
        return [r.as_dict() for r in rows], token

    def get(self, rollback_id: str) -> dict[str, Any]:
        return self.deployments.get_rollback(rollback_id).as_dict()
