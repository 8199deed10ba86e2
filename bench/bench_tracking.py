"""Benchmark of performance tracking (run by hand: ``python bench/bench_tracking.py``).

Measures (DESIGN §7): ``record()`` events per second in process (target ≥ 100,000; each event
carries its cost in micro-USD, as the gateway records it), and
``get_metrics`` latency with 1,000 and with 1,000,000 tracked predictions (target ≤ 20 ms and
independent of the count). Both populations are spread over the same last 24 hours, so the
comparison isolates the number of predictions. Uses a temporary SQLite file, or
``BENCH_DATABASE_URL`` when set.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.database import Database  # noqa: E402
from tracking import prometheus  # noqa: E402
from tracking.metrics_collector import MetricsCollector  # noqa: E402
from tracking.metrics_store import MetricsStore  # noqa: E402
from tracking.performance_tracker import PerformanceTracker  # noqa: E402

DAY = 86400


def bench_record(collector: MetricsCollector, n: int, threads: int) -> float:
    """record() calls per second (all threads together), flusher and exporter running."""
    model = f"bench-rec-{uuid.uuid4().hex[:6]}"
    latencies = np.random.default_rng(1).lognormal(-1.5, 0.8, 4096).tolist()
    per_thread = n // threads

    def work() -> None:
        record = collector.record
        for i in range(per_thread):
            record(model, "1.0.0", latencies[i & 4095], True, None, 20, 80, None, None, 206)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per_thread * threads / (time.perf_counter() - start)


def populate(collector: MetricsCollector, model: str, n: int, now: float) -> float:
    latencies = np.random.default_rng(2).lognormal(-1.5, 0.8, n)
    at = now - DAY + np.arange(n) * (DAY / n)
    start = time.perf_counter()
    record = collector.record
    for x, t in zip(latencies.tolist(), at.tolist()):
        record(model, "1.0.0", x, True, None, 20, 80, t, None, 206)
    collector.flush()
    return time.perf_counter() - start


def time_query(tracker: PerformanceTracker, model: str, window: object, runs: int = 40
               ) -> tuple[float, float]:
    tracker.get_metrics(model, "1.0.0", window=window)            # warm up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        tracker.get_metrics(model, "1.0.0", window=window)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> list[tuple[str, str, str]]:
    url = os.environ.get("BENCH_DATABASE_URL")
    tmp = tempfile.TemporaryDirectory()
    db = Database(url or f"sqlite:///{Path(tmp.name) / 'bench.db'}")
    collector = MetricsCollector(MetricsStore(db), exporter=prometheus.export)
    tracker = PerformanceTracker(db, collector)
    print(f"database: {db.dialect}")

    print("\nrecord() throughput (flusher + Prometheus exporter running)")
    print(f"{'threads':>8} {'events/s':>12}")
    rates = {}
    for threads in (1, 2):
        rates[threads] = bench_record(collector, 400_000, threads)
        print(f"{threads:>8} {rates[threads]:>12,.0f}")
    collector.flush()

    now = time.time()
    windows = (None, "15m", "1h", "24h", "7d")
    sizes = (1_000, 100_000, 1_000_000)
    models = {n: f"bench-{n}-{uuid.uuid4().hex[:6]}" for n in sizes}
    print("\npopulating (spread over the last 24 h, then flushed)")
    for n, model in models.items():
        print(f"{n:>12,} predictions in {populate(collector, model, n, now):.1f}s")

    print("\nget_metrics latency, ms: median of 40 (p95 in brackets)")
    print(f"{'predictions':>12} " + " ".join(f"{w or 'all':>14}" for w in windows))
    medians: dict[int, list[float]] = {}
    for n, model in models.items():
        timings = [time_query(tracker, model, w) for w in windows]
        medians[n] = [m for m, _ in timings]
        print(f"{n:>12,} " + " ".join(f"{m:>7.2f} [{p:>4.1f}]" for m, p in timings))
    print(f"{'1M / 1k':>12} " + " ".join(
        f"{a / b:>14.2f}" for a, b in zip(medians[1_000_000], medians[1_000])))
    print(f"{'1M / 100k':>12} " + " ".join(
        f"{a / b:>14.2f}" for a, b in zip(medians[1_000_000], medians[100_000])))
    assert tracker.get_metrics(models[1_000_000], "1.0.0")["requests"] == 1_000_000
    collector.close()
    db.dispose()
    small, large = medians[1_000][0], medians[1_000_000][0]
    return [("metrics ingestion, in process (1 / 2 threads)",
             f"{rates[1]:,.0f} / {rates[2]:,.0f} /s", "≥ 100,000/s"),
            ("get_metrics, 1,000 tracked predictions", f"{small:.2f} ms", "≤ 20 ms"),
            ("get_metrics, 1,000,000 tracked predictions", f"{large:.2f} ms",
             f"≤ 20 ms; {large / small:.2f}x the 1k time")]


if __name__ == "__main__":
    main()
