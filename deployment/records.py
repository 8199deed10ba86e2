"""What the deployment-layer stores return: frozen, typed records (the house convention, see
``registry/records.py`` and the README's "What stores return").

``DeploymentStore`` returns ``Deployment`` (with its ``DeploymentEvent``s when asked),
``RollbackRecord`` and ``HealthCheckRecord``; ``TrafficStore`` returns ``TrafficTable`` and,
for its history, ``TrafficChange``; ``ShadowStore`` returns ``ShadowRecord`` and ``ShadowPair``,
``ExperimentStore`` ``ExperimentRecord`` (issue 19). Each has one ``as_dict()``: the wire shape, written once,
which the public API (the managers, the REST views) calls at its edge.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.schema import iso

ACTIVE_STATES: tuple[str, ...] = ("pending", "health_check", "progressing", "paused")
FINAL_STATES: tuple[str, ...] = ("succeeded", "failed", "aborted", "superseded", "rolled_back")
STATES: tuple[str, ...] = ACTIVE_STATES + FINAL_STATES


@dataclass(frozen=True)
class DeploymentEvent:
    """One row of a deployment's event history."""

    id: int
    at: datetime
    kind: str
    actor: str
    version: str | None
    reason: str | None
    detail: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": iso(self.at), "kind": self.kind, "actor": self.actor,
                "version": self.version, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Deployment:
    """One deployment row. ``revision`` is the optimistic-concurrency token."""

    id: str
    model: str
    version: str
    previous_version: str | None
    strategy: str
    state: str
    step: int | None
    steps: list[int]
    traffic: dict[str, int]
    analysis: dict[str, Any] | None
    verdicts: list[dict[str, Any]]
    reason: str
    actor: str
    revision: int
    step_started_at: datetime | None
    next_check_at: datetime | None
    deadline_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    events: tuple[DeploymentEvent, ...] | None = field(default=None, compare=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def as_dict(self) -> dict[str, Any]:
        """The API object (DESIGN §4), plus who started it, the step deadline, the verdicts
        and, when read with them, the events."""
        out: dict[str, Any] = {
            "id": self.id, "model": self.model, "version": self.version,
            "previous_version": self.previous_version, "strategy": self.strategy,
            "state": self.state, "step": self.step, "steps": list(self.steps),
            "traffic": dict(self.traffic), "analysis": self.analysis, "reason": self.reason,
            "actor": self.actor, "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at), "finished_at": iso(self.finished_at),
            "deadline_at": iso(self.deadline_at) if self.active else None,
            "verdicts": list(self.verdicts),
        }
        if self.events is not None:
            out["events"] = [event.as_dict() for event in self.events]
        return out


@dataclass(frozen=True)
class RollbackRecord:
    """One row of the rollback history (manual, automatic or snapshot)."""

    id: str
    model: str
    from_version: str | None
    to_version: str | None
    trigger: str
    reason: str
    evidence: dict[str, Any]
    actor: str
    deployment_id: str | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The API object of a rollback (DESIGN §4), plus who did it and for which
        deployment."""
        return {"id": self.id, "model": self.model, "from_version": self.from_version,
                "to_version": self.to_version, "trigger": self.trigger, "reason": self.reason,
                "evidence": self.evidence, "actor": self.actor,
                "deployment_id": self.deployment_id, "created_at": iso(self.created_at)}


@dataclass(frozen=True)
class HealthCheckRecord:
    """One stored health check of a version, with its probes as evidence."""

    model: str
    version: str
    deployment_id: str | None
    ok: bool
    message: str
    probes: list[dict[str, Any]]
    checked_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version,
                "deployment_id": self.deployment_id, "ok": self.ok, "message": self.message,
                "probes": self.probes, "checked_at": iso(self.checked_at)}


@dataclass(frozen=True)
class TrafficTable:
    """The live {version: percent} of one model; ``revision`` bumps on every change."""

    model: str
    revision: int
    weights: dict[str, int]
    stable_version: str | None
    deployment_id: str | None
    updated_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "revision": self.revision, "weights": dict(self.weights),
                "stable_version": self.stable_version, "deployment_id": self.deployment_id,
                "updated_at": self.updated_at}


@dataclass(frozen=True)
class TrafficChange(TrafficTable):
    """One row of a model's traffic history: the table it set (``updated_at``: when), who set
    it and why."""

    actor: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "actor": self.actor, "reason": self.reason}


# -- issue 19: shadows and A/B experiments (ShadowStore, ExperimentStore) ---------------------

TRIAL_STATES: tuple[str, ...] = ("running", "finished", "promoted")


@dataclass(frozen=True)
class ShadowRecord:
    """One shadow deployment: the candidate, its sample and when it ends."""

    id: str
    model: str
    version: str
    state: str
    sample_percent: float
    max_requests: int | None
    ends_at: datetime | None
    dropped: int
    reason: str
    actor: str
    created_at: datetime
    finished_at: datetime | None
    strategy = "shadow"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "version": self.version,
                "state": self.state, "sample_percent": self.sample_percent,
                "max_requests": self.max_requests, "ends_at": iso(self.ends_at),
                "dropped": self.dropped, "reason": self.reason, "actor": self.actor,
                "created_at": iso(self.created_at), "finished_at": iso(self.finished_at),
                "strategy": self.strategy}


@dataclass(frozen=True)
class ShadowPair:
    """One mirrored call compared: both latencies, the candidate's error or the measures."""

    shadow_id: str
    at: datetime | None
    primary_version: str
    primary_latency: float
    shadow_latency: float | None
    shadow_error: str | None
    agree: int | None
    argmax_agree: int | None
    similarity: float | None
    max_abs_diff: float | None
    primary_tokens: int | None
    shadow_tokens: int | None
    example: dict[str, Any] | None
    primary_cost_micro_usd: int | None = None
    shadow_cost_micro_usd: int | None = None


@dataclass(frozen=True)
class ExperimentRecord:
    """One A/B experiment: its fixed split, what it compares, and its frozen result."""

    id: str
    model: str
    variants: dict[str, int]
    control: str
    primary_metric: str
    alpha: float
    sample_size: int | None
    ends_at: datetime | None
    state: str
    previous: dict[str, int] | None
    result: dict[str, Any] | None
    reason: str
    actor: str
    created_at: datetime
    finished_at: datetime | None
    strategy = "experiment"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "strategy": self.strategy,
                "variants": dict(self.variants), "control": self.control,
                "primary_metric": self.primary_metric, "alpha": self.alpha,
                "sample_size": self.sample_size, "ends_at": iso(self.ends_at),
                "state": self.state, "previous": self.previous, "result": self.result,
                "reason": self.reason, "actor": self.actor, "created_at": iso(self.created_at),
                "finished_at": iso(self.finished_at)}
