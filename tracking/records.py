"""What the tracking stores return: frozen, typed records (the house convention, see
``registry/records.py`` and the README's "What stores return").

``AlertStore`` returns ``AlertRecord``; ``AlertRecord.as_dict()`` is the wire shape, which
``AlertManager`` (the public API) calls at its edge and which alert events carry.
``OpsStore`` returns ``OpsCounts``. ``MetricsStore.read`` returns ``BucketRow``s, the one
record that is a ``NamedTuple`` rather than a frozen dataclass: it is built once per stored
metric bucket on the metrics read path (up to ~200 per version per query), where a
frozen dataclass costs about 4.5 times as much to build, and it is just as typed and
immutable.

The cost stores (``price_store``, ``spend_store``) return ``BudgetRecord``, ``PriceRecord`` and
``SpendTotal``; amounts stay integer micro-USD here, and ``as_dict()`` gives the JSON shape (with
USD for display) that the API serialises.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from money import Price, micro_to_usd
from storage.schema import iso

THRESHOLDS = ("soft", "hard")


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


@dataclass(frozen=True)
class BudgetRecord:
    """One budget row: the limits of an API key (``scope`` key) or a model per UTC period."""

    id: int
    scope: str                      # key | model
    name: str
    period: str                     # day | month
    soft_limit_micro_usd: int | None
    hard_limit_micro_usd: int | None
    hard_action: str                # reject | alert
    actor: str
    created_at: datetime
    updated_at: datetime
    soft_reached_period: int | None = None   # start of the period whose soft event was sent
    hard_reached_period: int | None = None

    def limit(self, threshold: str) -> int | None:
        """The soft or hard limit in micro-USD (None: not set)."""
        return self.soft_limit_micro_usd if threshold == "soft" else self.hard_limit_micro_usd

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "scope": self.scope, "name": self.name, "period": self.period,
                "soft_limit_micro_usd": self.soft_limit_micro_usd,
                "hard_limit_micro_usd": self.hard_limit_micro_usd,
                "hard_action": self.hard_action, "actor": self.actor,
                "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
                "soft_limit_usd": micro_to_usd(self.soft_limit_micro_usd),
                "hard_limit_usd": micro_to_usd(self.hard_limit_micro_usd)}


@dataclass(frozen=True)
class PriceRecord:
    """One stored price (rows are appended, never changed: the history of every past cost)."""

    id: int
    model: str
    version: str | None             # None: the model-wide price
    effective_from: datetime
    price: Price
    source: str
    actor: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "version": self.version,
                "effective_from": iso(self.effective_from), **self.price.as_usd(),
                "source": self.source, "actor": self.actor, "created_at": iso(self.created_at)}


@dataclass(frozen=True)
class SpendTotal:
    """Sums of stored spend for one group (``group`` holds the values of the ``group_by``
    names, in their order; empty for the grand total)."""

    group: tuple[Any, ...]
    requests: int
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int

    def values(self) -> list[int]:
        return [self.requests, self.input_tokens, self.output_tokens, self.cost_micro_usd]
