"""What the tracking stores return: frozen, typed records (the house convention, see
``registry/records.py`` and the README's "What stores return").

``AlertStore`` returns ``AlertRecord``; ``AlertRecord.as_dict()`` is the wire shape, which
``AlertManager`` (the public API) calls at its edge and which alert events carry.
``OpsStore`` returns ``OpsCounts``. ``MetricsStore.read`` returns ``BucketRow``s, the one
record that is a ``NamedTuple`` rather than a frozen dataclass: it is built once per stored
metric bucket on the metrics read path (up to ~200 per version per query), where a
frozen dataclass costs about 4.5 times as much to build, and it is just as typed and
immutable.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from storage.schema import iso


@dataclass(frozen=True)
class AlertRecord:
    """One alert. At most one per (model, version, rule) is active; ``version`` is "" for an
    alert about the whole model."""

    id: int
    model: str
    version: str
    rule: str
    severity: str
    message: str
    value: float | None
    threshold: float | None
    details: dict[str, Any]
    active: bool
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready object the API returns."""
        return {
            "id": self.id, "model": self.model, "version": self.version, "rule": self.rule,
            "severity": self.severity, "message": self.message, "value": self.value,
            "threshold": self.threshold, "details": self.details, "active": self.active,
            "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
            "resolved_at": iso(self.resolved_at),
        }


@dataclass(frozen=True)
class OpsCounts:
    """What the operators' alerts watch, counted cluster-wide in one read transaction."""

    deployments: tuple[tuple[str, str, str, int], ...]   # (model, strategy, state, n)
    rollbacks: tuple[tuple[str, str, int], ...]          # (model, trigger, n)
    deliveries: tuple[tuple[str, int], ...]              # (state, n)
    attempts: tuple[tuple[str, int], ...]                # (outcome, n)


class BucketRow(NamedTuple):
    """One stored metric bucket of one version at one resolution."""

    model: str
    version: str
    resolution: int
    bucket_start: int
    requests: int
    successes: int
    latency_sum: float
    latency_min: float | None
    latency_max: float | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_micro_usd: int
    errors: dict[str, int]
    latency_hist: bytes
