"""All SQL of spend and budgets.

Spend rows are hourly sums per (model, version, API key); the metrics flush adds them in the
same transaction as the metric buckets (``add_spend``), with ``INSERT ... ON CONFLICT DO
UPDATE SET x = x + excluded.x``, so any number of processes flushing into the same hour add up
exactly (integers only). Reports and budget checks sum them with SQL.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from errors import NotFound
from storage.database import Database
from storage.schema import budgets, iso, spend, utcnow
from tracking.aggregates import PINNED_SUFFIX, Aggregate, Key

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


class SpendStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def _insert(self, table):  # type: ignore[no-untyped-def]
        return (sqlite if self.database.is_sqlite else postgresql).insert(table)

    def totals(self, group_by: Sequence[str], start: int, end: int, *,
               model: str | None = None, api_key: str | None = None
               ) -> list[dict[str, Any]]:
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
            return [dict(row._mapping) for row in conn.execute(query)]

    def cost(self, start: int, end: int, *, model: str | None = None,
             api_key: str | None = None) -> int:
        """Micro-USD spent in [start, end) by one model or one key (or everything)."""
        rows = self.totals((), start, end, model=model, api_key=api_key)
        return int(rows[0]["cost_micro_usd"]) if rows else 0

    # --- budgets --------------------------------------------------------------------------

    def put_budget(self, values: dict[str, Any], actor: str) -> dict[str, Any]:
        """Create or replace the budget of (scope, name)."""
        now = utcnow()
        insert = self._insert(budgets)
        row = dict(values, actor=actor, created_at=now, updated_at=now)
        changed = {k: insert.excluded[k] for k in ("period", "soft_limit_micro_usd",
                                                    "hard_limit_micro_usd", "hard_action",
                                                    "actor", "updated_at")}
        with self.database.transaction() as conn:
            conn.execute(insert.values(**row).on_conflict_do_update(
                index_elements=[budgets.c.scope, budgets.c.name], set_=changed))
            found = conn.execute(select(budgets).where(
                budgets.c.scope == values["scope"], budgets.c.name == values["name"])).one()
        return budget_dict(found)

    def budgets(self) -> list[dict[str, Any]]:
        with self.database.read() as conn:
            rows = conn.execute(select(budgets).order_by(budgets.c.scope, budgets.c.name))
            return [budget_dict(row) for row in rows]

    def delete_budget(self, scope: str, name: str) -> None:
        with self.database.transaction() as conn:
            result = conn.execute(delete(budgets).where(budgets.c.scope == scope,
                                                        budgets.c.name == name))
        if not result.rowcount:
            raise NotFound(f"no budget for {scope} '{name}'")


def budget_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "scope": row.scope, "name": row.name, "period": row.period,
            "soft_limit_micro_usd": row.soft_limit_micro_usd,
            "hard_limit_micro_usd": row.hard_limit_micro_usd, "hard_action": row.hard_action,
            "actor": row.actor, "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at)}
