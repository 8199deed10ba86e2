"""All SQL of performance tracking: aggregated metric buckets and alerts (their records are in
``tracking/records.py``).

Metric buckets
--------------
The collector flushes 10 s aggregates. ``MetricsStore.add`` adds each of them into four
resolution tiers at once: 10 s, 5 min, 1 h and 1 d (``RESOLUTIONS``). A query over any window
is answered from the coarsest buckets that fit inside it plus finer ones at its edges
(``cover``), so it reads at most ~200 rows per version whatever the window and whatever the
traffic. Writing four rows instead of one costs nothing noticeable at one flush per second.

Rows are merged by read-modify-write: ``INSERT ... ON CONFLICT DO NOTHING`` makes sure each row
exists, ``SELECT ... FOR UPDATE`` (in key order, so two flushers cannot deadlock) locks them,
the aggregates are added in Python (the histogram and error kinds are not additive in SQL), and
``UPDATE`` writes them back, all in one transaction. On SQLite ``BEGIN IMMEDIATE`` serialises
writers; on PostgreSQL the row locks do. Either way, flushes of the same bucket from any number
of processes add up exactly.

``metric_series`` keeps, per version, its first and last 10 s bucket (widened in the same
transaction): the observed span for throughput, and the versions with recent traffic for alert
evaluation, without scanning buckets.

Retention (``prune``, to be called periodically, e.g. by the server's ticker): the fine tiers
are only needed near "now", so 10 s rows are kept one day and 5 min rows seven days; hourly and
daily rows (and idle series) are kept ``METRICS_RETENTION_DAYS`` (default 30; it also caps the
fine tiers). Since every flush already wrote into the coarse tiers, deleting fine rows *is* the
roll-up: nothing is lost but resolution. Windows reaching further back than a tier keeps are
read from the next coarser tier (their old edge is rounded down to it).
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (Connection, and_, bindparam, case, delete, select, tuple_, union_all,
                        update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from config import get_settings
from errors import NotFound
from storage.events import record_event
from storage.database import Database
from storage.schema import alerts, metric_buckets, metric_series, spend, utcnow
from tracking.aggregates import BUCKET_SECONDS, Aggregate, Key, encode_histogram, histogram_dict
from tracking.records import AlertRecord, BucketRow
from tracking.spend_store import add_spend, note_limits_reached, spend_rows

RESOLUTIONS: tuple[int, ...] = (BUCKET_SECONDS, 300, 3600, 86400)
_FINE_RETENTION_S = {BUCKET_SECONDS: 86400, 300: 7 * 86400}
DEFAULT_RETENTION_DAYS = 30.0
_KEY_CHUNK = 200          # composite keys per SELECT (4 parameters each)
_RETRIES = 3
_RETRYABLE_SQLSTATES = {"40001", "40P01"}   # serialization failure, deadlock detected

TierKey = tuple[str, str, int, int]         # (model, version, resolution, bucket_start)




@dataclass(frozen=True)
class Retention:
    """How long each resolution tier is kept (seconds)."""

    horizon_days: float = DEFAULT_RETENTION_DAYS

    def seconds(self, resolution: int) -> float:
        horizon = self.horizon_days * 86400
        return min(_FINE_RETENTION_S.get(resolution, horizon), horizon)

    def oldest(self, resolution: int, now: float) -> float:
        """The oldest time the tier still holds in full."""
        return now - self.seconds(resolution)


def cover(lo: int, hi: int, resolutions: Sequence[int] = RESOLUTIONS) -> list[tuple[int, int, int]]:
    """Split ``[lo, hi)`` (multiples of the finest resolution) into ``(resolution, lo, hi)``
    ranges of whole buckets, coarsest in the middle, finest at the edges."""
    if lo >= hi:
        return []
    res = resolutions[-1]
    if len(resolutions) == 1:
        return [(res, lo, hi)]
    first, last = -(-lo // res) * res, hi // res * res
    if first >= last:
        return cover(lo, hi, resolutions[:-1])
    return (cover(lo, first, resolutions[:-1]) + [(res, first, last)]
            + cover(last, hi, resolutions[:-1]))


_ROW_COLUMNS = [getattr(metric_buckets.c, name) for name in BucketRow._fields]
_VALUE_COLUMNS = ("requests", "successes", "failures", "latency_sum", "latency_min", "latency_max",
                  "input_tokens", "output_tokens", "total_tokens", "cost_micro_usd", "errors",
                  "latency_hist", "updated_at")
_PK = [metric_buckets.c.model, metric_buckets.c.version, metric_buckets.c.resolution,
       metric_buckets.c.bucket_start]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _is_retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


class MetricsStore:
    """Stores and reads aggregated metric buckets (the collector's sink)."""

    def __init__(self, database: Database, retention: Retention | None = None) -> None:
        self.database = database
        self.retention = retention or Retention(get_settings().metrics_retention_days)

    def _insert(self, table):  # type: ignore[no-untyped-def]
        dialect = sqlite if self.database.is_sqlite else postgresql
        return dialect.insert(table)

    # --- writing ------------------------------------------------------------------------------

    @staticmethod
    def _expand(batch: Mapping[Key, Aggregate]) -> dict[TierKey, Aggregate]:
        """10 s aggregates → their contribution to every tier (new objects; inputs untouched)."""
        out: dict[TierKey, Aggregate] = {}
        for (model, version, start), agg in batch.items():
            for res in RESOLUTIONS:
                key = (model, version, res, start // res * res)
                mine = out.get(key)
                out[key] = agg.copy() if mine is None else mine.merge(agg)
        return out

    def add(self, batch: Mapping[Key, Aggregate], *,
            commit_guard: AbstractContextManager[None] | None = None) -> None:
        """Add the batch into the stored rows in one transaction (retried on deadlock).

        ``commit_guard`` is entered just before COMMIT and left just after it (see
        ``MetricsCollector``: that is what makes read-your-writes exact).
        """
        deltas = self._expand(batch)
        if not deltas:
            return
        keys = sorted(deltas)
        spent = spend_rows(batch)
        for attempt in range(_RETRIES):
            try:
                with ExitStack() as stack:
                    with self.database.transaction() as conn:
                        self._add_in(conn, keys, deltas)
                        add_spend(conn, self._insert(spend), spent)
                        # issue 18: a limit crossed by this spend is an event of this commit
                        note_limits_reached(conn, spent, time.time())
                        if commit_guard is not None:
                            stack.enter_context(commit_guard)
                return
            except DBAPIError as exc:
                if attempt + 1 == _RETRIES or not _is_retryable(exc):
                    raise

    def _add_in(self, conn: Connection, keys: list[TierKey],
                deltas: Mapping[TierKey, Aggregate]) -> None:
        now = utcnow()
        t = metric_buckets
        empty = dict(requests=0, successes=0, failures=0, latency_sum=0.0, latency_min=None,
                     latency_max=None, input_tokens=0, output_tokens=0, total_tokens=0,
                     cost_micro_usd=0, errors={}, latency_hist=b"", updated_at=now)
        conn.execute(self._insert(t).on_conflict_do_nothing(index_elements=_PK),
                     [dict(zip(("model", "version", "resolution", "bucket_start"), key), **empty)
                      for key in keys])
        stored: dict[TierKey, Aggregate] = {}
        for chunk in _chunks(keys, _KEY_CHUNK):
            query = (select(*_ROW_COLUMNS).where(tuple_(*_PK).in_(list(chunk)))
                     .order_by(*_PK).with_for_update())
            for row in conn.execute(query):
                stored[(row.model, row.version, row.resolution, row.bucket_start)] = \
                    self._aggregate(BucketRow(*row))
        params = []
        for key in keys:
            agg = stored[key].merge(deltas[key])
            params.append(dict(
                k_model=key[0], k_version=key[1], k_resolution=key[2], k_start=key[3],
                requests=agg.requests, successes=agg.successes, failures=agg.failures,
                latency_sum=agg.latency_sum, latency_min=agg.latency_min,
                latency_max=agg.latency_max, input_tokens=agg.input_tokens,
                output_tokens=agg.output_tokens, total_tokens=agg.total_tokens,
                cost_micro_usd=agg.cost, errors=agg.errors,
                latency_hist=encode_histogram(agg.hist), updated_at=now))
        statement = (
            update(t)
            .where(t.c.model == bindparam("k_model"), t.c.version == bindparam("k_version"),
                   t.c.resolution == bindparam("k_resolution"),
                   t.c.bucket_start == bindparam("k_start"))
            .values({name: bindparam(name) for name in _VALUE_COLUMNS}))
        conn.execute(statement, params)
        self._touch_series(conn, keys, now)

    def _touch_series(self, conn: Connection, keys: list[TierKey], now: Any) -> None:
        """Widen each version's [first_bucket, last_bucket] to the flushed buckets."""
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        for model, version, res, start in keys:
            if res == BUCKET_SECONDS:
                first, last = spans.get((model, version), (start, start))
                spans[(model, version)] = (min(first, start), max(last, start))
        s = metric_series
        insert = self._insert(s)
        new = insert.excluded
        conn.execute(
            insert.on_conflict_do_update(index_elements=[s.c.model, s.c.version], set_=dict(
                first_bucket=case((new.first_bucket < s.c.first_bucket, new.first_bucket),
                                  else_=s.c.first_bucket),
                last_bucket=case((new.last_bucket > s.c.last_bucket, new.last_bucket),
                                 else_=s.c.last_bucket),
                updated_at=new.updated_at)),
            [dict(model=m, version=v, first_bucket=f, last_bucket=last, updated_at=now)
             for (m, v), (f, last) in sorted(spans.items())])

    @staticmethod
    def _aggregate(row: BucketRow) -> Aggregate:
        agg = Aggregate()
        agg.requests, agg.successes, agg.latency_sum = row.requests, row.successes, row.latency_sum
        if row.latency_min is not None:
            agg.latency_min, agg.latency_max = row.latency_min, row.latency_max
        agg.input_tokens, agg.output_tokens = row.input_tokens, row.output_tokens
        agg.total_tokens = row.total_tokens
        agg.cost = row.cost_micro_usd
        agg.errors = dict(row.errors or {})
        agg.hist = histogram_dict(row.latency_hist)
        return agg

    # --- reading ------------------------------------------------------------------------------

    def read(self, model: str, versions: Sequence[str] | None,
             ranges: Sequence[tuple[int, int, int]]) -> list[BucketRow]:
        """Rows of one model (some versions, or all when None) in the given (resolution, lo,
        hi) ranges. One statement (one snapshot on every database); a UNION ALL of one index
        range scan per range, because an OR of ranges lets PostgreSQL fall back to scanning
        every row of the model."""
        if not ranges:
            return []
        t = metric_buckets
        parts = []
        for res, lo, hi in ranges:
            part = select(*_ROW_COLUMNS).where(t.c.model == model, t.c.resolution == res,
                                               t.c.bucket_start >= lo, t.c.bucket_start < hi)
            if versions is not None:
                part = part.where(t.c.version.in_(list(versions)))
            parts.append(part)
        query = parts[0] if len(parts) == 1 else union_all(*parts)
        with self.database.read() as conn:
            return [BucketRow(*row) for row in conn.execute(query)]

    def spans(self, model: str | None = None, versions: Sequence[str] | None = None,
              since: int | None = None) -> dict[tuple[str, str], tuple[int, int]]:
        """{(model, version): (first_bucket, last_bucket)} of the versions that reported
        metrics (last seen at or after ``since`` when given)."""
        s = metric_series
        query = select(s.c.model, s.c.version, s.c.first_bucket, s.c.last_bucket)
        if model is not None:
            query = query.where(s.c.model == model)
        if versions is not None:
            query = query.where(s.c.version.in_(list(versions)))
        if since is not None:
            query = query.where(s.c.last_bucket >= since)
        with self.database.read() as conn:
            return {(m, v): (first, last) for m, v, first, last in conn.execute(query)}

    def prune(self, now: float) -> int:
        """Delete the rows each tier no longer keeps; returns how many were deleted."""
        t = metric_buckets
        deleted = 0
        with self.database.transaction() as conn:
            for res in RESOLUTIONS:
                # A row is deleted once its whole bucket is older than the tier keeps.
                cutoff = int(self.retention.oldest(res, now)) - res
                result = conn.execute(delete(t).where(t.c.resolution == res,
                                                      t.c.bucket_start < cutoff))
                deleted += result.rowcount or 0
            horizon = int(now - self.retention.horizon_days * 86400)
            conn.execute(delete(metric_series).where(metric_series.c.last_bucket < horizon))
        return deleted


# --- alerts ---------------------------------------------------------------------------------

def _alert(row: Any) -> AlertRecord:
    return AlertRecord(
        id=row.id, model=row.model, version=row.version, rule=row.rule, severity=row.severity,
        message=row.message, value=row.value, threshold=row.threshold,
        details=row.details or {}, active=bool(row.active), created_at=row.created_at,
        updated_at=row.updated_at, resolved_at=row.resolved_at)


_ACTIVE = alerts.c.resolved_at.is_(None)


def _alert_event(conn: Connection, kind: str, alert: AlertRecord) -> None:
    """Opening and resolving an alert are events (and so webhooks), in the same transaction."""
    record_event(conn, kind, model=alert.model, version=alert.version or None,
                 reason=alert.message, detail=alert.as_dict())


class AlertStore:
    """Alert rows. At most one unresolved alert per (model, version, rule), by a partial unique
    index that ``upsert_active`` names in its ON CONFLICT clause (atomic in every process)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def upsert_active(self, *, model: str, version: str, rule: str, severity: str, message: str,
                      value: float | None, threshold: float | None,
                      details: Mapping[str, Any]) -> AlertRecord:
        """Open the alert, or refresh the one already active; returns it."""
        now = utcnow()
        dialect = sqlite if self.database.is_sqlite else postgresql
        fields = dict(severity=severity, message=message, value=value, threshold=threshold,
                      details=dict(details))
        statement = (
            dialect.insert(alerts)
            .values(model=model, version=version, rule=rule, active=True, created_at=now,
                    updated_at=now, resolved_at=None, **fields)
            .on_conflict_do_update(index_elements=[alerts.c.model, alerts.c.version,
                                                   alerts.c.rule],
                                   index_where=_ACTIVE, set_=dict(updated_at=now, **fields))
            .returning(*alerts.c))
        with self.database.transaction() as conn:
            alert = _alert(conn.execute(statement).one())
            if alert.created_at == alert.updated_at:     # opened now, not refreshed
                _alert_event(conn, "alert.raised", alert)
            return alert

    def resolve(self, *, model: str, version: str, rule: str) -> AlertRecord | None:
        """Resolve the active alert of (model, version, rule); None when there is none."""
        where = and_(alerts.c.model == model, alerts.c.version == version,
                     alerts.c.rule == rule, _ACTIVE)
        return self._resolve_where(where)

    def resolve_id(self, alert_id: int) -> AlertRecord:
        resolved = self._resolve_where(and_(alerts.c.id == alert_id, _ACTIVE))
        return resolved if resolved is not None else self.get(alert_id)

    def _resolve_where(self, where: Any) -> AlertRecord | None:
        now = utcnow()
        statement = (update(alerts).where(where)
                     .values(active=False, resolved_at=now, updated_at=now)
                     .returning(*alerts.c))
        with self.database.transaction() as conn:
            row = conn.execute(statement).first()
            if row is None:
                return None
            alert = _alert(row)
            _alert_event(conn, "alert.resolved", alert)
        return alert

    def get(self, alert_id: int) -> AlertRecord:
        with self.database.read() as conn:
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            raise NotFound(f"alert {alert_id} does not exist")
        return _alert(row)

    def list(self, *, model: str | None, active: bool | None, limit: int,
             before_id: int | None) -> list[AlertRecord]:
        """Newest first (by id); ``before_id`` is the keyset cursor."""
        query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
        if model is not None:
            query = query.where(alerts.c.model == model)
        if active is not None:
            query = query.where(_ACTIVE if active else alerts.c.resolved_at.is_not(None))
        if before_id is not None:
            query = query.where(alerts.c.id < before_id)
        with self.database.read() as conn:
            return [_alert(row) for row in conn.execute(query)]


__all__ = ["AlertStore", "BucketRow", "MetricsStore", "RESOLUTIONS", "Retention", "cover"]
