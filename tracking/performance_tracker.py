"""Per-version performance: track predictions, read metrics, compare versions, time series.

Every query reads aggregated buckets (``tracking.metrics_store``) merged with the collector's
not yet flushed aggregates, so it costs the same for a thousand or a million predictions and a
prediction tracked in this process is visible at once (read your writes).

Conventions (DESIGN §4): latencies in seconds, ``success_rate`` in percent (0-100),
``error_rate`` as a fraction (0-1). Quantities undefined without requests (rates, latencies,
``avg_tokens``) are ``None``. Besides the contract's keys each metrics object carries
``min_latency``/``max_latency`` (exact; the percentiles are clamped to them, so one sample
reports its own latency) and ``errors``: failures by error kind.

Windows (``"30s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"``, seconds, or a ``timedelta``)
select every 10 s bucket that overlaps ``[now - window, now]``; ``throughput`` divides by the
time those buckets span up to now. Without a window, everything kept is read and
``throughput`` divides by the version's observed span: from its first to its last bucket
(ending now at the latest), and at least one bucket (10 s).

Tokens: ``input_tokens``/``output_tokens`` are what the provider split out; ``total_tokens`` is
the provider's total. ``track_prediction(tokens=150)`` with no split therefore adds 150 to
``total_tokens`` (and ``avg_tokens``) only; with a split and no ``tokens`` the total is
input + output.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from errors import InvalidArgument
from defaults import parts_for
from money import MICRO
from storage.database import Database
from storage.schema import iso
from tracking.aggregates import (BUCKET_SECONDS, Aggregate, Key, decode_histogram,
                                 index_values, quantiles)
from tracking.metrics_collector import MetricsCollector
from tracking.metrics_store import RESOLUTIONS, MetricsStore, cover
from tracking.pricing import PriceBook
from tracking.records import BucketRow

Window = str | int | float | timedelta | None

_WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX_WINDOW_S = 3650 * 86400.0
MAX_POINTS = 1440
_DIFF_KEYS = ("requests", "successes", "failures", "success_rate", "error_rate", "avg_latency",
              "p50_latency", "p95_latency", "p99_latency", "input_tokens", "output_tokens",
              "total_tokens", "avg_tokens", "throughput", "cost_usd", "cost_per_request_usd",
              "cost_per_1k_requests_usd")


def parse_window(window: Window, *, name: str = "window") -> float | None:
    """``"15m"``/``"24h"``/``"30s"``/``"7d"``/``"2w"``, seconds, or a timedelta → seconds."""
    if window is None:
        return None
    seconds: float
    if isinstance(window, timedelta):
        seconds = window.total_seconds()
    elif isinstance(window, (int, float)) and not isinstance(window, bool):
        seconds = float(window)
    elif isinstance(window, str) and (match := _WINDOW_RE.match(window)):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2].lower()]
    else:
        raise InvalidArgument(f"{name} {window!r} is not a duration; use e.g. '30s', '15m', "
                              f"'24h', '7d' or a number of seconds")
    if not 0 < seconds <= _MAX_WINDOW_S:
        raise InvalidArgument(f"{name} must be between 1 second and 3650 days, got {window!r}")
    return seconds


def _check_name(value: Any, what: str, max_len: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidArgument(f"{what} must be a non-empty string of at most {max_len} "
                              f"characters, got {value!r}")
    return value


def _check_count(value: Any, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative integer, got {value!r}")
    return value


class _Summary:
    """Adds up stored rows and in-memory aggregates of one version (and one time step)."""

    def __init__(self) -> None:
        self.total = Aggregate()          # scalars and error kinds; histogram kept apart:
        self._indices: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []

    def add(self, item: BucketRow | Aggregate) -> None:
        if isinstance(item, Aggregate):
            self._add_aggregate(item)
        else:
            self._add_row(item)

    def _add_row(self, row: BucketRow) -> None:
        agg = self.total
        agg.requests += row.requests
        agg.successes += row.successes
        agg.latency_sum += row.latency_sum
        if row.latency_min is not None:
            agg.latency_min = min(agg.latency_min, row.latency_min)
            agg.latency_max = max(agg.latency_max, row.latency_max)
        agg.input_tokens += row.input_tokens
        agg.output_tokens += row.output_tokens
        agg.total_tokens += row.total_tokens
        agg.cost += row.cost_micro_usd
        for kind, n in (row.errors or {}).items():
            agg.errors[kind] = agg.errors.get(kind, 0) + n
        indices, counts = decode_histogram(row.latency_hist)
        self._indices.append(indices)
        self._counts.append(counts)

    def _add_aggregate(self, agg: Aggregate) -> None:
        hist, agg.hist = agg.hist, {}     # the aggregate is a private copy
        self.total.merge(agg)
        self._indices.append(np.fromiter(hist.keys(), dtype=np.int64, count=len(hist)))
        self._counts.append(np.fromiter(hist.values(), dtype=np.int64, count=len(hist)))

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(latency values, counts), one entry per log bucket, each value within 0.5% of
        every latency it stands for (clamped to the exact extremes)."""
        if self.total.requests == 0 or not self._indices:
            return np.empty(0), np.empty(0, dtype=np.int64)
        uniq, inverse = np.unique(np.concatenate(self._indices), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate(self._counts),
                             minlength=uniq.size).astype(np.int64)
        values = np.clip(index_values(uniq), self.total.latency_min, self.total.latency_max)
        keep = counts > 0
        return values[keep], counts[keep]

    def metrics(self, span: float) -> dict[str, Any]:
        agg = self.total
        n = agg.requests
        if n == 0:
            p50 = p95 = p99 = None
        else:
            p50, p95, p99 = (
                min(max(q, agg.latency_min), agg.latency_max) if q is not None else None
                for q in quantiles(np.concatenate(self._indices), np.concatenate(self._counts),
                                   (0.5, 0.95, 0.99)))
        return {
            "requests": n,
            "successes": agg.successes,
            "failures": agg.failures,
            "success_rate": 100.0 * agg.successes / n if n else None,
            "error_rate": agg.failures / n if n else None,
            "avg_latency": agg.latency_sum / n if n else None,
            "p50_latency": p50,
            "p95_latency": p95,
            "p99_latency": p99,
            "min_latency": agg.latency_min if n else None,
            "max_latency": agg.latency_max if n else None,
            "input_tokens": agg.input_tokens,
            "output_tokens": agg.output_tokens,
            "total_tokens": agg.total_tokens,
            "avg_tokens": agg.total_tokens / n if n else None,
            # Money: the exact integer sum, and USD figures derived from it for display.
            "cost_micro_usd": agg.cost,
            "cost_usd": agg.cost / MICRO,
            "cost_per_request_usd": agg.cost / n / MICRO if n else None,
            "cost_per_1k_requests_usd": agg.cost * 1000 / n / MICRO if n else None,
            "throughput": n / span if span > 0 else 0.0,
            "errors": dict(sorted(agg.errors.items())),
        }


def empty_metrics() -> dict[str, Any]:
    """The metrics object of a version that served nothing in the window."""
    return _Summary().metrics(0.0)


def _floor(t: float, step: int) -> int:
    return int(t // step) * step


def _utc(ts: float) -> str | None:
    return iso(datetime.fromtimestamp(ts, tz=timezone.utc))


class PerformanceTracker:
    """Tracks predictions and answers metric queries for the versions of models.

    ``PerformanceTracker()`` uses the process's database and collector (the composition root's,
    see ``defaults.py``); given only a database, a collector of its own on that database.
    """

    def __init__(self, database: Database | None = None,
                 collector: MetricsCollector | None = None,
                 prices: PriceBook | None = None, *,
                 max_series_versions: int = 20) -> None:
        self.max_series_versions = max_series_versions
        if database is None and collector is not None:
            database = getattr(collector.sink, "database", None)
        if collector is None:
            parts = parts_for(database)
            database, collector = parts.database, parts.collector
        self.database = database or parts_for(None).database
        self.collector = collector
        sink = self.collector.sink
        self.store = sink if isinstance(sink, MetricsStore) else MetricsStore(self.database)
        self._prices = prices

    @property
    def prices(self) -> PriceBook:
        """What predictions cost (built on first use: most trackers only read)."""
        if self._prices is None:
            self._prices = PriceBook(self.database)
        return self._prices

    # --- writing ------------------------------------------------------------------------------

    def track_prediction(self, model: str, version: str, latency: float,
                         tokens: int | None = None, success: bool = True, *,
                         input_tokens: int | None = None, output_tokens: int | None = None,
                         error: str | BaseException | None = None,
                         at: float | None = None, api_key: str | None = None) -> None:
        """Record one prediction. ``error`` (a kind such as ``"timeout"``, or the exception)
        marks it failed; ``tokens`` is the total when the provider gives no split (priced as
        input tokens). The cost comes from the price in force at ``at`` (see
        ``tracking.pricing``); ``api_key`` names the key it is spent by."""
        _check_name(model, "model", 160)   # a name, or "<name>#pinned"
        _check_name(version, "version", 255)
        if isinstance(latency, bool) or not isinstance(latency, (int, float)):
            raise InvalidArgument(f"latency must be a number of seconds, got {latency!r}")
        n_in = _check_count(input_tokens, "input_tokens")
        n_out = _check_count(output_tokens, "output_tokens")
        total = n_in + n_out if tokens is None else _check_count(tokens, "tokens")
        if error is not None:
            success = False
        kind = None if error is None else (error if isinstance(error, str)
                                            else type(error).__name__)
        cost = self.prices.cost(model, version, n_in, n_out, total, at=at) if total else None
        self.collector.record(model, version, float(latency), bool(success), kind, n_in, n_out,
                              at, total_tokens=total, cost=cost or 0, api_key=api_key)

    def flush(self) -> int:
        """Store what the collector holds now (it also does so every second by itself)."""
        return self.collector.flush()

    def prune(self, now: float | None = None) -> int:
        """Apply retention (see ``tracking.metrics_store``); returns the rows deleted."""
        return self.store.prune(time.time() if now is None else now)

    # --- reading ------------------------------------------------------------------------------

    def get_metrics(self, model: str, version: str | None = None,
                    window: Window = None) -> dict[str, Any]:
        """The metrics of one version, or ``{version: metrics}`` of every version with data
        in the window when ``version`` is None."""
        _check_name(model, "model", 160)   # a name, or "<name>#pinned"
        if version is not None:
            _check_name(version, "version", 255)
        seconds = parse_window(window)
        found = self._metrics(model, None if version is None else [version], seconds)
        if version is not None:
            return found.get(version) or empty_metrics()
        return dict(sorted(found.items()))

    def latency_histograms(self, model: str, versions: Sequence[str], window: Window
                           ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{version: (latency values, counts)}`` over the window, from the same stored
        histograms as the percentiles (so every server process's predictions count, and they
        survive restarts); a version without data in the window is left out. The rank tests
        of ``deployment.analysis`` read these."""
        _check_name(model, "model", 160)
        seconds = parse_window(window)
        per_version = self._summaries(model, list(versions), seconds, time.time())[0]
        return {ver: summary.histogram() for ver, summary in per_version.items()
                if summary.total.requests}

    def compare_versions(self, model: str, v1: str, v2: str,
                         window: Window = None) -> dict[str, Any]:
        """``{"v1": metrics, "v2": metrics, "diff": {key: {"delta": v2-v1, "ratio": v2/v1}}}``,
        both read from one snapshot."""
        _check_name(model, "model", 160)   # a name, or "<name>#pinned"
        _check_name(v1, "v1", 255)
        _check_name(v2, "v2", 255)
        found = self._metrics(model, [v1, v2], parse_window(window))
        a, b = found.get(v1) or empty_metrics(), found.get(v2) or empty_metrics()
        diff: dict[str, dict[str, float | None]] = {}
        for key in _DIFF_KEYS:
            x, y = a[key], b[key]
            both = x is not None and y is not None
            diff[key] = {"delta": y - x if both else None,
                         "ratio": y / x if both and x != 0 else None}
        return {"v1": a, "v2": b, "diff": diff}

    def time_series(self, model: str, version: str | None = None, window: Window = "1h",
                    step: Window = "1m") -> dict[str, Any]:
        """Metrics per step over the window: ``{"model", "version", "window", "step",
        "points"}`` where ``points`` is ``[{"start", "end", **metrics}]`` for one version and
        ``{version: [...]}`` for all. ``step`` is rounded up to a multiple of the resolution
        kept for that age (10 s for the last day, 5 min for a week, 1 h beyond)."""
        _check_name(model, "model", 160)   # a name, or "<name>#pinned"
        if version is not None:
            _check_name(version, "version", 255)
        seconds = parse_window(window)
        if seconds is None:
            raise InvalidArgument("time_series needs a window, e.g. '1h'")
        step_s = parse_window(step, name="step") or 0.0
        now = time.time()
        oldest = self.store.retention.oldest
        step_n = max(BUCKET_SECONDS, math.ceil(step_s / BUCKET_SECONDS) * BUCKET_SECONDS)
        while True:   # steps must be whole buckets of the finest tier still holding the start
            count = math.ceil(seconds / step_n)
            end = _floor(now, step_n) + step_n
            start = end - count * step_n
            holding = next((r for r in RESOLUTIONS if start >= oldest(r, now)), RESOLUTIONS[-1])
            if step_n % holding == 0:
                break
            step_n = math.ceil(step_n / holding) * holding
        res = max(r for r in RESOLUTIONS if step_n % r == 0)   # coarser tiers keep longer
        if count > MAX_POINTS:
            raise InvalidArgument(f"{count} points requested; at most {MAX_POINTS}: use a "
                                  f"larger step")
        versions = None if version is None else [version]
        rows, memory = self._read(model, versions, [(res, start, end)], start, end)
        steps: dict[tuple[str, int], _Summary] = {}
        for ver, bucket_start, item in _items(rows, memory):
            steps.setdefault((ver, (bucket_start - start) // step_n), _Summary()).add(item)
        names = sorted({ver for ver, _ in steps}) if version is None else [version]
        omitted = 0
        if len(names) > self.max_series_versions:   # bounded work and answer (issue 21)
            busiest = Counter[str]()
            for (ver, _), summary in steps.items():
                busiest[ver] += summary.total.requests
            kept = {ver for ver, _ in busiest.most_common(self.max_series_versions)}
            omitted = len(names) - len(kept)
            names = [ver for ver in names if ver in kept]
        series: dict[str, list[dict[str, Any]]] = {}
        for ver in names:
            points = []
            for i in range(count):
                p_start = start + i * step_n
                summary = steps.get((ver, i)) or _Summary()
                span = min(step_n, now - p_start)
                points.append({"start": _utc(p_start), "end": _utc(p_start + step_n),
                               **summary.metrics(span)})
            series[ver] = points
        answer = {"model": model, "version": version, "window": seconds, "step": step_n,
                  "points": series[version] if version is not None else series}
        if omitted:
            answer["versions_omitted"] = omitted
        return answer

    # --- internals ----------------------------------------------------------------------------

    def _summaries(self, model: str, versions: Sequence[str] | None, seconds: float | None,
                   now: float) -> tuple[dict[str, _Summary], dict[str, list[int]],
                                        dict[str, list[int]], dict[tuple[str, str],
                                                                   tuple[int, int]], int]:
        """Each version's summary over the window, and where its buckets came from."""
        end = _floor(now, BUCKET_SECONDS) + BUCKET_SECONDS
        retention = self.store.retention
        horizon_start = _floor(now - retention.horizon_days * 86400, BUCKET_SECONDS)
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        if seconds is not None:
            start = _floor(now - seconds, BUCKET_SECONDS)
        else:
            spans = self.store.spans(model, versions)
            # Versions missing from metric_series have only data flushed after this read,
            # i.e. recent data: the fine tier's day covers them.
            firsts = [first for first, _ in spans.values()]
            start = _floor(retention.oldest(RESOLUTIONS[0], now), BUCKET_SECONDS)
            if firsts:
                start = min(start, min(firsts))
            start = max(start, horizon_start)
        for fine, coarse in zip(RESOLUTIONS, RESOLUTIONS[1:]):
            if start >= retention.oldest(fine, now):
                break
            start = start // coarse * coarse   # that edge is read from the coarser tier
        rows, memory = self._read(model, versions, cover(start, end), start, end)
        per_version: dict[str, _Summary] = {}
        in_memory: dict[str, list[int]] = {}      # exact 10 s bucket starts
        in_rows: dict[str, list[int]] = {}        # bucket starts of any tier
        for ver, bucket_start, item in _items(rows, memory):
            per_version.setdefault(ver, _Summary()).add(item)
            starts = in_memory if isinstance(item, Aggregate) else in_rows
            starts.setdefault(ver, []).append(bucket_start)
        return per_version, in_memory, in_rows, spans, start

    def _metrics(self, model: str, versions: Sequence[str] | None,
                 seconds: float | None) -> dict[str, dict[str, Any]]:
        now = time.time()
        per_version, in_memory, in_rows, spans, start = self._summaries(model, versions,
                                                                        seconds, now)
        out: dict[str, dict[str, Any]] = {}
        for ver, summary in per_version.items():
            if summary.total.requests == 0:
                continue
            if seconds is not None:
                span = now - start
            else:
                # The observed span: metric_series plus what is still in memory. A version
                # whose first flush committed between the two reads has no series row yet:
                # its stored buckets (coarser, but recent) stand in.
                known = [*spans.get((model, ver), ()), *in_memory.get(ver, [])]
                known = known or in_rows[ver]
                first_at = max(min(known), start)
                span = max(min(now, max(known) + BUCKET_SECONDS) - first_at, BUCKET_SECONDS)
            out[ver] = summary.metrics(span)
        return out

    def _read(self, model: str, versions: Sequence[str] | None,
              ranges: list[tuple[int, int, int]], start: int, end: int
              ) -> tuple[list[BucketRow], list[tuple[Key, Aggregate]]]:
        wanted_versions = None if versions is None else set(versions)

        def wanted(key: Key) -> bool:
            return (key[0] == model and start <= key[2] < end
                    and (wanted_versions is None or key[1] in wanted_versions))

        return self.collector.read_consistent(
            lambda: self.store.read(model, versions, ranges), wanted)


def _items(rows: Iterable[BucketRow], memory: Iterable[tuple[Key, Aggregate]]
           ) -> Iterator[tuple[str, int, BucketRow | Aggregate]]:
    """Stored rows and in-memory aggregates as (version, bucket_start, item)."""
    for row in rows:
        if row.requests:
            yield row.version, row.bucket_start, row
    for (_model, version, bucket_start), agg in memory:
        yield version, bucket_start, agg
