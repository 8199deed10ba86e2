"""Budgets: how much one API key or one model may spend per UTC day or month.

A budget has a soft limit (an alert when reached) and a hard limit whose action is ``reject``
(further predictions answer 429 with the budget, the spend and the reset time, until the
period ends) or ``alert`` (an alert only). Spend is the exact integer sum of the costs tracked
in the period (``tracking.spend_store``).

Several server processes share budgets through the database, without a write per request:

* every process keeps, per budget, the spend read from the database together with its own
  unflushed aggregates (``MetricsCollector.read_consistent``: exact for this process) and
  re-reads it at most every ``sync_s`` seconds (default 1, on the next request);
* between two reads it adds the cost of each of its own finished predictions at once;
* ``check`` refuses a prediction when that spend has reached the hard limit.

The overshoot bound (how far past a ``reject`` hard limit the spend can end):

    overshoot < Σ over processes of (its predictions in flight × the largest cost of one
                prediction) + what the other processes spent in the last
                (flush interval + sync_s) seconds (2 s at the defaults)

A prediction is admitted before its cost is known, so each one in flight when the limit is
crossed can finish past it (at most ``MAX_INFLIGHT_PER_MODEL`` per model and process); the
other processes' spend becomes visible once they flushed it (every second) and this process
re-read it. ``tests/test_cost.py`` checks the in-process part with concurrent requests.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from errors import BudgetExceeded, InvalidArgument
from money import micro_to_usd, usd_to_micro
from shared.pagination import check_limit, decode_token, encode_token
from storage.database import Database
from tracking.aggregates import Aggregate, Key
from tracking.metrics_collector import MetricsCollector
from tracking.records import BudgetRecord
from tracking.spend_store import SpendStore, period_bounds, spend_model, utc_text

log = logging.getLogger(__name__)
SCOPES = ("key", "model")
PERIODS = ("day", "month")
ACTIONS = ("reject", "alert")
ADJECTIVE = {"day": "daily", "month": "monthly"}
SOFT_RULE = "budget_soft"
HARD_RULE = "budget_hard"


__all__ = ["Budgets", "alert_target", "period_bounds"]


def alert_target(scope: str, name: str) -> str:
    """The ``model`` field of a budget's alerts: the model, or ``key:<name>``."""
    return name if scope == "model" else f"key:{name}"


@dataclass
class _Live:
    """One budget as this process enforces it."""

    budget: BudgetRecord
    start: int
    end: int
    spent: int = 0        # micro-USD at the last sync (database + this process's memory)
    local: int = 0        # this process's costs since then


class Budgets:
    def __init__(self, database: Database, collector: MetricsCollector, *,
                 alerts: Any = None, sync_s: float = 1.0) -> None:
        self.store = SpendStore(database)
        self.collector = collector
        self.alerts = alerts
        self.sync_s = sync_s
        self._live: dict[tuple[str, str], _Live] = {}
        self._synced = -1e18
        self._lock = threading.Lock()

    # --- defining ---------------------------------------------------------------------------

    def put(self, scope: str, name: str, period: str, *, soft_limit_usd: Any = None,
            hard_limit_usd: Any = None, hard_action: str = "reject",
            actor: str = "system") -> dict[str, Any]:
        """Create or replace the budget of one API key (``scope="key"``, by key name) or one
        model."""
        if scope not in SCOPES:
            raise InvalidArgument(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise InvalidArgument("name must be 1-128 characters (a key name or a model name)")
        if period not in PERIODS:
            raise InvalidArgument(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
        if hard_action not in ACTIONS:
            raise InvalidArgument(f"hard_action must be one of {', '.join(ACTIONS)}, "
                                  f"got {hard_action!r}")
        soft = None if soft_limit_usd is None else usd_to_micro(soft_limit_usd, "soft_limit_usd")
        hard = None if hard_limit_usd is None else usd_to_micro(hard_limit_usd, "hard_limit_usd")
        if soft is None and hard is None:
            raise InvalidArgument("a budget needs soft_limit_usd, hard_limit_usd or both")
        if soft is not None and hard is not None and soft > hard:
            raise InvalidArgument("soft_limit_usd must not be above hard_limit_usd")
        row = self.store.put_budget(dict(
            scope=scope, name=name, period=period, soft_limit_micro_usd=soft,
            hard_limit_micro_usd=hard, hard_action=hard_action), actor)
        self.invalidate()
        return self._with_status(row, time.time())

    def list(self) -> list[dict[str, Any]]:
        """Every budget with its spend in the current period and when that resets."""
        now = time.time()
        return [self._with_status(b, now) for b in self.store.budgets()]

    def list_page(self, limit: int | None = 100, page_token: str | None = None
                  ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``list()`` ordered by (scope, name), and the next page's token (None
        on the last page)."""
        limit = check_limit(limit)
        after = decode_token(page_token)
        if after is not None and not (isinstance(after, list) and len(after) == 2
                                      and all(isinstance(part, str) for part in after)):
            raise InvalidArgument("page_token is not a token this server issued")
        rows = self.store.budgets(limit=limit + 1,
                                  after=None if after is None else (after[0], after[1]))
        now = time.time()
        page = [self._with_status(b, now) for b in rows[:limit]]
        token = encode_token([rows[limit - 1].scope, rows[limit - 1].name]) \
            if len(rows) > limit else None
        return page, token

    def get(self, scope: str, name: str) -> dict[str, Any]:
        return self._with_status(self.store.budget(scope, name), time.time())

    def delete(self, scope: str, name: str) -> None:
        self.store.delete_budget(scope, name)
        self.invalidate()

    def invalidate(self) -> None:
        self._synced = -1e18

    # --- the hot path -----------------------------------------------------------------------

    def check(self, model: str, api_key: str | None) -> None:
        """Refuse (BudgetExceeded → 429) when the model's or the key's ``reject`` budget is
        spent. Two dict lookups when nothing is budgeted."""
        if time.monotonic() - self._synced > self.sync_s:
            try:
                self._sync()
            except Exception:   # a failed re-read keeps the last view; the next one retries
                log.warning("budget sync failed; enforcing the last known spend", exc_info=True)
        live = self._live
        if not live:
            return
        for found in (live.get(("model", model)),
                      None if api_key is None else live.get(("key", api_key))):
            if found is None:
                continue
            hard = found.budget.hard_limit_micro_usd
            if (hard is not None and found.budget.hard_action == "reject"
                    and found.spent + found.local >= hard):
                raise self._exceeded(found)

    def spent(self, model: str, api_key: str | None, cost: int) -> None:
        """Count a finished prediction's cost at once (before the next sync sees it)."""
        live = self._live
        if not live or not cost:
            return
        with self._lock:
            for k in (("model", model), ("key", api_key)):
                found = live.get(k)  # type: ignore[arg-type]
                if found is not None:
                    found.local += cost

    # --- alerts (the server's background ticker) --------------------------------------------

    def evaluate(self) -> list[dict[str, Any]]:
        """Write any ``budget.*_limit_reached`` event a metrics flush could not see
        (``SpendStore.note_all_reached``), raise soft/hard alerts for budgets reached, resolve
        them when a new period starts; returns the alerts changed."""
        self.store.note_all_reached(time.time())
        if self.alerts is None:
            return []
        changed = []
        for budget in self.list():
            target = alert_target(budget["scope"], budget["name"])
            spent = budget["spent_micro_usd"]
            for rule, limit, severity in (
                    (SOFT_RULE, budget["soft_limit_micro_usd"], "warning"),
                    (HARD_RULE, budget["hard_limit_micro_usd"], "critical")):
                if limit is None:
                    continue
                if spent >= limit:
                    changed.append(self.alerts.raise_alert(
                        target, "", rule, micro_to_usd(spent), micro_to_usd(limit),
                        f"{budget['scope']} '{budget['name']}' spent ${spent / 1e6:.6f} of its "
                        f"{ADJECTIVE[budget['period']]} {rule.split('_')[1]} limit "
                        f"${limit / 1e6:.6f}", severity, budget))
                elif (resolved := self.alerts.resolve(target, "", rule)) is not None:
                    changed.append(resolved)
        return changed

    # --- internals --------------------------------------------------------------------------

    def period_spend(self, scope: str, name: str, start: int, end: int) -> int:
        """Exact micro-USD spent by a key or model in [start, end): stored hours plus what
        this process has not flushed yet, read atomically with respect to flushes."""
        model = name if scope == "model" else None
        key = name if scope == "key" else None

        def wanted(k: Key) -> bool:
            return start <= k[2] < end and (model is None or spend_model(k[0]) == model)

        stored, memory = self.collector.read_consistent(
            lambda: self.store.cost(start, end, model=model, api_key=key), wanted)
        return stored + sum(_cost_of(agg, key) for _, agg in memory)

    def _sync(self) -> None:
        with self._lock:
            if time.monotonic() - self._synced <= self.sync_s:
                return
            self._synced = time.monotonic()   # one syncing thread; the others go on
        now = time.time()
        fresh: dict[tuple[str, str], _Live] = {}
        before: dict[tuple[str, str], int] = {}
        for budget in self.store.budgets():
            start, end = period_bounds(budget.period, now)
            k = (budget.scope, budget.name)
            old = self._live.get(k)
            if old is not None and old.start == start:
                before[k] = old.local
            fresh[k] = _Live(budget, start, end,
                             self.period_spend(budget.scope, budget.name, start, end))
        with self._lock:   # ``spent`` holds it too: no cost lands between the two tables
            for k, n in before.items():
                # Costs counted locally since ``before`` was read are either in the fresh
                # spend already or not yet: keeping them may count a few twice until the next
                # sync, never fewer.
                fresh[k].local = self._live[k].local - n
            self._live = fresh

    def _exceeded(self, live: _Live) -> BudgetExceeded:
        b = live.budget
        spent = live.spent + live.local
        hard = b.hard_limit_micro_usd or 0
        return BudgetExceeded(
            f"the {ADJECTIVE[b.period]} budget of {b.scope} '{b.name}' is spent "
            f"(${spent / 1e6:.6f} of ${hard / 1e6:.6f}); it resets at {utc_text(live.end)}",
            details={"budget": {"scope": b.scope, "name": b.name, "period": b.period,
                                "hard_limit_micro_usd": b.hard_limit_micro_usd},
                     "hard_limit_usd": micro_to_usd(b.hard_limit_micro_usd),
                     "spent_micro_usd": spent, "spent_usd": micro_to_usd(spent),
                     "resets_at": utc_text(live.end)})

    def _with_status(self, budget: BudgetRecord, now: float) -> dict[str, Any]:
        """The record as the API shows it, with this period's spend."""
        start, end = period_bounds(budget.period, now)
        spent = self.period_spend(budget.scope, budget.name, start, end)
        hard, soft = budget.hard_limit_micro_usd, budget.soft_limit_micro_usd
        return {**budget.as_dict(), "spent_micro_usd": spent,
                "spent_usd": micro_to_usd(spent), "period_start": utc_text(start),
                "resets_at": utc_text(end),
                "soft_reached": soft is not None and spent >= soft,
                "hard_reached": hard is not None and spent >= hard}


def _cost_of(agg: Aggregate, key: str | None) -> int:
    if key is None:
        return agg.cost
    spent = agg.by_key.get(key)
    return 0 if spent is None else spent[3]
