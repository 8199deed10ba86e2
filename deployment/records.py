"""What the shadow and experiment stores return: frozen, typed records (issue 19, the store
convention of issue 13; see ``registry/records.py``).

A store returns these, never SQLAlchemy rows and never the wire shape; the public API (the
managers' methods, the REST views) turns them into dicts with ``as_dict()`` at its edge, so the
shape clients see is written once, here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.schema import iso

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
