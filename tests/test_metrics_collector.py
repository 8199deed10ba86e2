"""The hot path: in-memory aggregation, flushing, accuracy, concurrency, several processes.

Runs on a SQLite file and, with ``TEST_DATABASE_URL``, on a PostgreSQL schema of its own; every
test uses its own model names.
"""
from __future__ import annotations

import math
import multiprocessing
import threading
import time
import uuid

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from errors import InvalidArgument
from storage.database import Database
from tracking import prometheus
from tracking.metrics_collector import (RELATIVE_ACCURACY, MetricsCollector, index_values,
                                        latency_index)
from tracking.metrics_store import MetricsStore, cover
from tracking.performance_tracker import PerformanceTracker

pytestmark = pytest.mark.storage   # the PostgreSQL cases stay in the fast lane


def _name() -> str:
    return f"mc-{uuid.uuid4().hex[:12]}"


def _close(a: float, b: float, rel: float = 0.01) -> bool:
    return abs(a - b) <= rel * abs(b)


def test_log_buckets_report_every_value_within_half_a_percent():
    values = np.geomspace(1e-6, 1e4, 20_000)
    reported = index_values(np.array([latency_index(v) for v in values]))
    assert np.max(np.abs(reported - values) / values) <= RELATIVE_ACCURACY + 1e-12
    assert index_values(np.array([latency_index(0.0)]))[0] == 0.0


@pytest.mark.parametrize("flushed", [False, True])
def test_percentiles_match_exact_ones_within_one_percent(db, collector, flushed):
    model = _name()
    samples = np.random.default_rng(7).lognormal(mean=-1.2, sigma=0.9, size=10_000)
    now = time.time()
    for i, x in enumerate(samples):   # spread over an hour: many buckets and every tier
        collector.record(model, "1.0.0", float(x), True, at=now - 3500 + i * 0.35)
    if flushed:
        collector.flush()
    m = PerformanceTracker(db, collector).get_metrics(model, "1.0.0")
    assert m["requests"] == 10_000
    for key, q in (("p50_latency", 50), ("p95_latency", 95), ("p99_latency", 99)):
        assert _close(m[key], float(np.percentile(samples, q))), (key, m[key])
    assert math.isclose(m["avg_latency"], float(samples.mean()), rel_tol=1e-9)
    assert m["max_latency"] == float(samples.max())


def test_concurrent_recording_is_exact_and_readers_never_double_count(db):
    model = _name()
    c = MetricsCollector(MetricsStore(db), flush_interval=0.02)   # flushes race the writers
    tracker = PerformanceTracker(db, c)
    threads, per_thread = 8, 5_000
    seen: list[list[int]] = [[], []]
    done = threading.Event()

    def write(k: int) -> None:
        for i in range(per_thread):
            c.record(model, "1.0.0", 0.01 * (1 + i % 7), i % 10 != 0, "timeout",
                     input_tokens=2, output_tokens=3)
            if i % 500 == 499:
                time.sleep(0.03)     # spread the writes over many flushes

    def read(mine: list[int]) -> None:
        while not done.wait(0.005):  # pause: busy readers would starve the writers of the GIL
            mine.append(tracker.get_metrics(model, "1.0.0")["requests"])

    readers = [threading.Thread(target=read, args=(mine,)) for mine in seen]
    writers = [threading.Thread(target=write, args=(k,)) for k in range(threads)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    c.close()
    # Every intermediate read saw each prediction once: counts only ever grow.
    for mine in seen:
        assert mine == sorted(mine) and mine[-1] <= threads * per_thread
    fresh = PerformanceTracker(db, MetricsCollector(MetricsStore(db), start_thread=False))
    m = fresh.get_metrics(model, "1.0.0")
    n = threads * per_thread
    assert (m["requests"], m["failures"], m["errors"]) == (n, n // 10, {"timeout": n // 10})
    assert (m["input_tokens"], m["output_tokens"], m["total_tokens"]) == (2 * n, 3 * n, 5 * n)


def test_close_flushes_what_is_left(db):
    model = _name()
    c = MetricsCollector(MetricsStore(db), flush_interval=60)
    for _ in range(5):
        c.record(model, "2.0.0", 0.2, True)
    c.close()
    other = PerformanceTracker(db, MetricsCollector(MetricsStore(db), start_thread=False))
    assert other.get_metrics(model, "2.0.0")["requests"] == 5


def test_background_thread_flushes_within_a_second(db):
    model = _name()
    c = MetricsCollector(MetricsStore(db), flush_interval=0.1)
    c.record(model, "1.0.0", 0.2, True)
    deadline = time.time() + 2
    reader = PerformanceTracker(db, MetricsCollector(MetricsStore(db), start_thread=False))
    while reader.get_metrics(model, "1.0.0")["requests"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert reader.get_metrics(model, "1.0.0")["requests"] == 1
    c.close()


class _FailOnce:
    """A sink whose first write fails after doing its SQL (rolled back)."""

    def __init__(self, store: MetricsStore) -> None:
        self.store, self.failed = store, False

    def add(self, batch, *, commit_guard=None):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            raise RuntimeError("database unavailable")
        self.store.add(batch, commit_guard=commit_guard)


def test_a_failed_flush_keeps_the_batch_visible_and_retries_it(db):
    model = _name()
    store = MetricsStore(db)
    c = MetricsCollector(_FailOnce(store), start_thread=False)
    tracker = PerformanceTracker(db, c)
    c.record(model, "1.0.0", 0.1, True)
    with pytest.raises(RuntimeError):
        c.flush()
    c.record(model, "1.0.0", 0.1, True)
    assert tracker.get_metrics(model, "1.0.0")["requests"] == 2
    assert c.flush() == 1
    assert tracker.get_metrics(model, "1.0.0")["requests"] == 2
    assert store.read(model, None, [(10, 0, 2**40)])[0].requests == 2


def test_record_refuses_impossible_latencies(collector):
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument):
            collector.record("m", "1.0.0", bad, True)


def test_old_data_is_read_from_coarser_tiers_and_prune_keeps_it(db, collector):
    model = _name()
    now = time.time()
    ages = [3 * 86400, 30 * 3600, 2 * 3600, 1800, 5]   # far from every window edge below
    for age in ages:
        collector.record(model, "1.0.0", 0.1, True, at=now - age)
    collector.flush()
    tracker = PerformanceTracker(db, collector)

    def count(window):  # type: ignore[no-untyped-def]
        return tracker.get_metrics(model, "1.0.0", window=window)["requests"]

    assert [count(w) for w in ("1h", "3h", "2d", "4d", None)] == [2, 3, 4, 5, 5]
    assert tracker.prune() >= 2              # the 10 s rows older than a day
    assert [count(w) for w in ("1h", "3h", "2d", "4d", None)] == [2, 3, 4, 5, 5]
    tracker.prune(now=now + 40 * 86400)      # past the 30-day horizon: all gone
    assert count(None) == 0


def test_cover_uses_whole_buckets_coarsest_in_the_middle():
    ranges = cover(86400 - 20, 2 * 86400 + 3600 + 310)
    assert ranges[0] == (10, 86400 - 20, 86400)
    assert (86400, 86400, 2 * 86400) in ranges and (3600, 2 * 86400, 2 * 86400 + 3600) in ranges
    covered = sum(hi - lo for _, lo, hi in ranges)
    assert covered == 86400 + 3600 + 330


def _child(url: str, model: str, seed: int, at: float) -> None:
    db = Database(url)
    c = MetricsCollector(MetricsStore(db), start_thread=False)
    for i, x in enumerate(np.random.default_rng(seed).lognormal(-1.0, 0.7, 5_000)):
        c.record(model, "1.0.0", float(x), True, at=at + (i % 30))
        if i % 1000 == 999:
            c.flush()        # several flushes per process into the same rows
    c.close()
    db.dispose()


@pytest.mark.slow   # child processes
def test_two_processes_flushing_the_same_buckets_add_up(db):
    model = _name()
    at = time.time() - 60
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_child, args=(db.url, model, seed, at)) for seed in (1, 2)]
    for p in children:
        p.start()
    for p in children:
        p.join(60)
        assert p.exitcode == 0
    samples = np.concatenate([np.random.default_rng(s).lognormal(-1.0, 0.7, 5_000)
                              for s in (1, 2)])
    tracker = PerformanceTracker(db, MetricsCollector(MetricsStore(db), start_thread=False))
    m = tracker.get_metrics(model, "1.0.0")
    assert m["requests"] == 10_000
    for key, q in (("p50_latency", 50), ("p95_latency", 95), ("p99_latency", 99)):
        assert _close(m[key], float(np.percentile(samples, q))), key


def test_prometheus_render_has_the_series_after_a_flush(db, collector):
    model = _name()
    collector._exporter = prometheus.export
    collector.record(model, "1.0.0", 0.004, True, input_tokens=3, output_tokens=4)
    collector.record(model, "1.0.0", 0.3, False, "timeout")
    collector.record(model, "1.0.0", 0.3, True, total_tokens=9)
    collector.flush()
    prometheus.set_traffic(model, {"1.0.0": 90, "1.1.0": 10})
    prometheus.set_traffic(model, {"1.0.0": 100})
    body, content_type = prometheus.render()
    assert content_type.startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode())
               for s in family.samples if s.labels.get("model") == model}

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted({"model": model, **labels}.items()))))

    v = {"version": "1.0.0"}
    assert value("registry_predictions_total", outcome="success", **v) == 2
    assert value("registry_predictions_total", outcome="error", **v) == 1
    assert value("registry_prediction_errors_total", kind="timeout", **v) == 1
    assert value("registry_prediction_latency_seconds_bucket", le="0.005", **v) == 1
    assert value("registry_prediction_latency_seconds_bucket", le="0.25", **v) == 1
    assert value("registry_prediction_latency_seconds_bucket", le="0.5", **v) == 3
    assert value("registry_prediction_latency_seconds_count", **v) == 3
    assert math.isclose(value("registry_prediction_latency_seconds_sum", **v), 0.604)
    assert value("registry_prediction_tokens_total", kind="input", **v) == 3
    assert value("registry_prediction_tokens_total", kind="unsplit", **v) == 9
    assert value("registry_traffic_weight_percent", **v) == 100
    assert value("registry_traffic_weight_percent", version="1.1.0") == 0


def _child_exports(model: str) -> None:
    # PROMETHEUS_MULTIPROC_DIR is inherited, so this process writes its values to files.
    collector = MetricsCollector(_NullSink(), start_thread=False, exporter=prometheus.export)
    collector.record(model, "1.0.0", 0.2, True, input_tokens=5, output_tokens=7)
    collector.flush()
    prometheus.set_traffic(model, {"1.0.0": 100})


class _NullSink:
    def add(self, batch, *, commit_guard=None):  # type: ignore[no-untyped-def]
        pass


@pytest.mark.slow   # child processes
def test_prometheus_render_aggregates_worker_processes(tmp_path, monkeypatch):
    model = _name()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_child_exports, args=(model,)) for _ in range(2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    body, _ = prometheus.render(str(tmp_path))
    samples = {(s.name, s.labels.get("outcome"), s.labels.get("kind"), s.labels.get("le")): s.value
               for family in text_string_to_metric_families(body.decode())
               for s in family.samples if s.labels.get("model") == model}
    assert samples[("registry_predictions_total", "success", None, None)] == 2
    assert samples[("registry_prediction_tokens_total", None, "output", None)] == 14
    assert samples[("registry_prediction_latency_seconds_bucket", None, None, "0.25")] == 2
    assert samples[("registry_traffic_weight_percent", None, None, None)] == 100
