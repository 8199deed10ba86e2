"""What the cost stores return (``price_store``, ``spend_store``): frozen, typed records, as
the registry store does (``registry/records.py``, the README's "What stores return").

Amounts stay integer micro-USD here; ``as_dict()`` gives the JSON shape (with USD for display)
that the API serialises.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from money import Price, micro_to_usd
from storage.schema import iso

THRESHOLDS = ("soft", "hard")


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
