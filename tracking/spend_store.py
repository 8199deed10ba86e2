"""All SQL of spend and budgets.

Spend rows are hourly sums per (model, version, API key); the metrics flush adds them in the
same transaction as the metric buckets (``add_spend``), with ``INSERT ... ON CONFLICT DO
UPDATE SET x = x + excluded.x``, so any number of processes flushing into the same hour add up
exactly (integers only). Reports and budget checks sum them with SQL.

Budget events (issue 18): in that same flush transaction, ``note_limits_reached`` compares the
stored spend of every budget the batch spent for with its limits, and writes one
``budget.soft_limit_reached`` / ``budget.hard_limit_reached`` event per budget, period and
threshold (a conditional UPDATE of ``budgets.*_reached_period`` decides which process writes
it, so two processes flushing at once write it once).
"""
from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (Connection, and_, bindparam, case, delete, func, literal, or_, select,
                        update)
from sqlalchemy.dialects import postgresql, sqlite

from errors import NotFound
from money import micro_to_usd
from storage.database import Database
from storage.events import record_event
from storage.schema import budgets, spend, utcnow
from tracking.aggregates import PINNED_SUFFIX, Aggregate, Key
from tracking.records import THRESHOLDS, BudgetRecord, SpendTotal

HOUR = 3600
DAY = 86400
SpendKey = tuple[str, str, str, int]          # (model, version, api key, hour_start)
SPEND_FIELDS = ("requests", "input_tokens", "output_tokens", "cost_micro_usd")
NO_KEY = ""                                    # the api_key of requests made without one


def spend_model(tracked: str) -> str:
    """The model a tracked name spends for: pinned calls (``<model>#pinned``) are tracked apart
    from routed traffic, but they cost the model all the same."""
    return tracked.removesuffix(PINNED_SUFFIX)


def spend_rows(batch: Mapping[Key, Aggregate] | Sequence[tuple[Key, Aggregate]]
               ) -> dict[SpendKey, list[int]]:
    """Collector aggregates → hourly spend per (model, version, key): [requests, input
    tokens, output tokens, cost]."""
    out: dict[SpendKey, list[int]] = {}
    items = batch.items() if isinstance(batch, Mapping) else batch
    for (tracked, version, start), agg in items:
        model = spend_model(tracked)
        hour = start // HOUR * HOUR
        parts = [(NO_KEY, agg.anonymous_spend()), *agg.by_key.items()]
        for name, values in parts:
            if not values[0]:
                continue
            mine = out.setdefault((model, version, name, hour), [0, 0, 0, 0])
            for i, n in enumerate(values):
                mine[i] += n
    return out


def add_spend(conn: Connection, insert: Any, rows: Mapping[SpendKey, list[int]]) -> None:
    """Add the rows into the stored hourly sums (inside the caller's transaction)."""
    if not rows:
        return
    new = insert.excluded
    statement = insert.on_conflict_do_update(
        index_elements=[spend.c.model, spend.c.hour_start, spend.c.version, spend.c.api_key],
        set_={name: getattr(spend.c, name) + getattr(new, name) for name in SPEND_FIELDS})
    conn.execute(statement, [
        dict(model=m, version=v, api_key=k, hour_start=h, **dict(zip(SPEND_FIELDS, values)))
        for (m, v, k, h), values in sorted(rows.items())])


GROUPS = ("model", "version", "key", "day", "hour")
LIMIT_EVENTS = {t: f"budget.{t}_limit_reached" for t in THRESHOLDS}


def period_bounds(period: str, now: float) -> tuple[int, int]:
    """[start, end) of the UTC day or month holding ``now`` (epoch seconds)."""
    t = datetime.fromtimestamp(now, tz=timezone.utc)
    if period == "day":
        start = datetime(t.year, t.month, t.day, tzinfo=timezone.utc)
        return int(start.timestamp()), int(start.timestamp()) + 86400
    start = datetime(t.year, t.month, 1, tzinfo=timezone.utc)
    days = calendar.monthrange(t.year, t.month)[1]
    return int(start.timestamp()), int(start.timestamp()) + days * 86400


def utc_text(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


# Built once: the metrics flush runs these every second in every process, and building the
# expressions each time cost more than running them.
_CONCERNED = select(budgets).where(or_(
    and_(budgets.c.scope == "model", budgets.c.name.in_(bindparam("models", expanding=True))),
    and_(budgets.c.scope == "key", budgets.c.name.in_(bindparam("keys", expanding=True)))))
_PERIOD_SUMS = {
    scope: select(column, func.sum(case((spend.c.hour_start >= bindparam("day_start"),
                                         spend.c.cost_micro_usd), else_=0)),
                  func.sum(spend.c.cost_micro_usd))
    .where(spend.c.hour_start >= bindparam("month_start"),
           column.in_(bindparam("names", expanding=True)))
    .group_by(column)
    for scope, column in (("model", spend.c.model), ("key", spend.c.api_key))}


def period_spent(conn: Connection, concerned: Sequence[BudgetRecord], now: float
                 ) -> dict[tuple[str, str], int]:
    """Stored micro-USD spent by each budget's model or key in its current UTC day or month,
    keyed by (scope, name): at most two grouped reads (models, keys), however many budgets."""
    bounds = {"day_start": period_bounds("day", now)[0],
              "month_start": period_bounds("month", now)[0]}
    found: dict[tuple[str, str], int] = {}
    for scope, query in _PERIOD_SUMS.items():
        mine = [b for b in concerned if b.scope == scope]
        if not mine:
            continue
        names = sorted({b.name for b in mine})
        sums = {name: (int(day), int(month))
                for name, day, month in conn.execute(query, {**bounds, "names": names})}
        for b in mine:
            found[(scope, b.name)] = sums.get(b.name, (0, 0))[0 if b.period == "day" else 1]
    return found


def note_limits_reached(conn: Connection, rows: Mapping[SpendKey, list[int]],
                        now: float) -> list[tuple[BudgetRecord, str, int]]:
    """After ``add_spend`` in the same transaction: for each budget of a model or key that
    ``rows`` spent for, write the event of each limit its stored period spend has reached and
    whose event this period has not been written yet. Returns (budget, threshold, spent) of
    the events written. One small read when no budget concerns the batch."""
    models = {m for (m, _, _, _), values in rows.items() if values[3]}
    keys = {k for (_, _, k, _), values in rows.items() if values[3] and k != NO_KEY}
    if not models and not keys:
        return []
    concerned = conn.execute(_CONCERNED, {"models": sorted(models), "keys": sorted(keys)}).all()
    return _note_reached(conn, [budget_record(row) for row in concerned], now)


def _unannounced(budget: BudgetRecord, now: float) -> list[str]:
    """The thresholds of ``budget`` whose event has not been written this period."""
    start = period_bounds(budget.period, now)[0]
    return [t for t in THRESHOLDS if budget.limit(t) is not None
            and getattr(budget, f"{t}_reached_period") != start]


def _note_reached(conn: Connection, concerned: Sequence[BudgetRecord],
                  now: float) -> list[tuple[BudgetRecord, str, int]]:
    due: dict[int, list[str]] = {}
    candidates = []
    for budget in concerned:
        due[budget.id] = _unannounced(budget, now)
        if due[budget.id]:
            candidates.append(budget)
    if not candidates:
        return []
    spent_by = period_spent(conn, candidates, now)
    written = []
    for budget in candidates:
        start, end = period_bounds(budget.period, now)
        spent = spent_by[(budget.scope, budget.name)]
        for threshold in due[budget.id]:
            limit = budget.limit(threshold)
            if spent < limit:  # type: ignore[operator]
                continue
            column = getattr(budgets.c, f"{threshold}_reached_period")
            claimed = conn.execute(update(budgets).where(
                budgets.c.id == budget.id, or_(column.is_(None), column != start))
                .values({column.name: start})).rowcount
            if claimed:
                _limit_event(conn, budget, threshold, spent, start, end)
                written.append((budget, threshold, spent))
    return written


def _limit_event(conn: Connection, budget: BudgetRecord, threshold: str, spent: int,
                 start: int, end: int) -> None:
    limit = budget.limit(threshold)
    what = f"{budget.scope} '{budget.name}'"
    action = ("further predictions are refused (429)"
              if threshold == "hard" and budget.hard_action == "reject" else "alert only")
    record_event(
        conn, LIMIT_EVENTS[threshold], model=budget.name if budget.scope == "model" else None,
        reason=f"{what} spent ${spent / 1e6:.6f} of its {budget.period}ly {threshold} limit "
               f"${limit / 1e6:.6f} ({action})",  # type: ignore[operator]
        detail={"budget": budget.as_dict(), "threshold": threshold,
                "limit_micro_usd": limit, "limit_usd": micro_to_usd(limit),
                "spent_micro_usd": spent, "spent_usd": micro_to_usd(spent),
                "period_start": utc_text(start), "resets_at": utc_text(end)})


class SpendStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def _insert(self, table):  # type: ignore[no-untyped-def]
        return (sqlite if self.database.is_sqlite else postgresql).insert(table)

    def totals(self, group_by: Sequence[str], start: int, end: int, *,
               model: str | None = None, api_key: str | None = None) -> list[SpendTotal]:
        """Sums of the hours in [start, end) grouped by ``group_by`` (names of ``GROUPS``)."""
        t = spend
        columns = {"model": t.c.model, "version": t.c.version, "key": t.c.api_key,
                   "day": (t.c.hour_start // DAY) * DAY, "hour": t.c.hour_start}
        keys = [columns[g].label(g) for g in group_by]
        sums = [func.sum(getattr(t.c, name)).label(name) for name in SPEND_FIELDS]
        query = select(*keys, *sums).where(t.c.hour_start >= start, t.c.hour_start < end)
        if model is not None:
            query = query.where(t.c.model == model)
        if api_key is not None:
            query = query.where(t.c.api_key == api_key)
        if keys:
            query = query.group_by(*keys)
        else:
            query = query.having(func.count() > literal(0))
        with self.database.read() as conn:
            return [SpendTotal(tuple(row[:len(keys)]),
                               *(int(n) for n in row[len(keys):]))
                    for row in conn.execute(query)]

    def cost(self, start: int, end: int, *, model: str | None = None,
             api_key: str | None = None) -> int:
        """Micro-USD spent in [start, end) by one model or one key (or everything)."""
        rows = self.totals((), start, end, model=model, api_key=api_key)
        return rows[0].cost_micro_usd if rows else 0

    # --- budgets --------------------------------------------------------------------------

    def put_budget(self, values: dict[str, Any], actor: str) -> BudgetRecord:
        """Create or replace the budget of (scope, name). Replacing it forgets which limits
        were reached this period: a new limit already reached gets its event at the next
        spend."""
        now = utcnow()
        insert = self._insert(budgets)
        row = dict(values, actor=actor, created_at=now, updated_at=now,
                   soft_reached_period=None, hard_reached_period=None)
        changed = {k: insert.excluded[k] for k in ("period", "soft_limit_micro_usd",
                                                    "hard_limit_micro_usd", "hard_action",
                                                    "actor", "updated_at", "soft_reached_period",
                                                    "hard_reached_period")}
        with self.database.transaction() as conn:
            conn.execute(insert.values(**row).on_conflict_do_update(
                index_elements=[budgets.c.scope, budgets.c.name], set_=changed))
            found = conn.execute(select(budgets).where(
                budgets.c.scope == values["scope"], budgets.c.name == values["name"])).one()
        return budget_record(found)

    def budgets(self, *, limit: int | None = None,
                after: tuple[str, str] | None = None) -> list[BudgetRecord]:
        """Budgets ordered by (scope, name); ``after`` is the keyset cursor of a page."""
        query = select(budgets).order_by(budgets.c.scope, budgets.c.name)
        if after is not None:
            scope, name = after
            query = query.where(or_(budgets.c.scope > scope,
                                    and_(budgets.c.scope == scope, budgets.c.name > name)))
        if limit is not None:
            query = query.limit(limit)
        with self.database.read() as conn:
            return [budget_record(row) for row in conn.execute(query)]

    def budgets_spent(self, now: float) -> list[tuple[BudgetRecord, int]]:
        """Every budget with its stored spend in its current period (micro-USD), for
        ``/metrics``."""
        with self.database.read() as conn:
            rows = [budget_record(r) for r in conn.execute(
                select(budgets).order_by(budgets.c.scope, budgets.c.name))]
            spent = period_spent(conn, rows, now)
        return [(b, spent[(b.scope, b.name)]) for b in rows]

    def note_all_reached(self, now: float) -> list[tuple[BudgetRecord, str, int]]:
        """The flush's check over every budget, in a transaction of its own (the server's
        ticker runs it every few seconds). Why: on PostgreSQL two processes flushing at once
        for one budget (different models of one key) each sum without the other's uncommitted
        spend, so a crossing made by both together can be seen by neither; and a hard limit
        that rejects leaves no later spend to look again. Idempotent (the conditional UPDATE);
        a read only, unless an event is due."""
        with self.database.read() as conn:
            rows = [budget_record(row) for row in conn.execute(select(budgets))]
            spent = period_spent(conn, rows, now) if rows else {}
        if not any(spent[(b.scope, b.name)] >= b.limit(t)  # type: ignore[operator]
                   for b in rows for t in _unannounced(b, now)):
            return []
        with self.database.transaction() as conn:
            concerned = [budget_record(row) for row in conn.execute(select(budgets))]
            return _note_reached(conn, concerned, now)

    def budget(self, scope: str, name: str) -> BudgetRecord:
        with self.database.read() as conn:
            row = conn.execute(select(budgets).where(budgets.c.scope == scope,
                                                     budgets.c.name == name)).first()
        if row is None:
            raise NotFound(f"no budget for {scope} '{name}'")
        return budget_record(row)

    def delete_budget(self, scope: str, name: str) -> None:
        with self.database.transaction() as conn:
            result = conn.execute(delete(budgets).where(budgets.c.scope == scope,
                                                        budgets.c.name == name))
        if not result.rowcount:
            raise NotFound(f"no budget for {scope} '{name}'")


def budget_record(row: Any) -> BudgetRecord:
    return BudgetRecord(row.id, row.scope, row.name, row.period, row.soft_limit_micro_usd,
                        row.hard_limit_micro_usd, row.hard_action, row.actor, row.created_at,
                        row.updated_at, row.soft_reached_period, row.hard_reached_period)
