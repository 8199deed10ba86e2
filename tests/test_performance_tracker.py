"""PerformanceTracker: the seed example, windows, read-your-writes, comparisons, time series."""
from __future__ import annotations

import math
import time
import uuid
from datetime import timedelta

import pytest

from errors import InvalidArgument
from tracking.performance_tracker import PerformanceTracker, parse_window

pytestmark = pytest.mark.storage   # the PostgreSQL cases stay in the fast lane

CONTRACT_KEYS = {"requests", "successes", "failures", "success_rate", "error_rate",
                 "avg_latency", "p50_latency", "p95_latency", "p99_latency", "input_tokens",
                 "output_tokens", "total_tokens", "avg_tokens", "throughput"}


def _url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 't.db'}"   # the seed's default database: a SQLite file


def _name() -> str:
    return f"pt-{uuid.uuid4().hex[:12]}"


def test_seed_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", _url(tmp_path))
    name = _name()   # the seed says "sentiment-analyzer"; unique here for a shared database
    tracker = PerformanceTracker()
    try:
        tracker.track_prediction(name, "1.0.0", latency=0.234, tokens=150, success=True)
        metrics = tracker.get_metrics(name, "1.0.0")
        print(metrics)
    finally:
        tracker.collector.close()
        tracker.database.dispose()
    assert CONTRACT_KEYS <= set(metrics) and str(metrics["requests"]) in capsys.readouterr().out
    assert metrics["requests"] == metrics["successes"] == 1 and metrics["failures"] == 0
    assert (metrics["success_rate"], metrics["error_rate"]) == (100.0, 0.0)
    for key in ("avg_latency", "p50_latency", "p95_latency", "p99_latency"):
        assert metrics[key] == pytest.approx(0.234)
    assert (metrics["total_tokens"], metrics["avg_tokens"]) == (150, 150.0)
    assert (metrics["input_tokens"], metrics["output_tokens"]) == (0, 0)
    assert metrics["throughput"] > 0


def test_read_your_writes_and_no_double_count_after_flush(tracker):
    model = _name()
    tracker.track_prediction(model, "1.0.0", latency=0.1, input_tokens=10, output_tokens=5)
    tracker.track_prediction(model, "1.0.0", latency=0.3, error="timeout")
    before = tracker.get_metrics(model, "1.0.0")
    tracker.flush()
    after = tracker.get_metrics(model, "1.0.0")
    assert before == after
    assert (after["requests"], after["failures"], after["errors"]) == (2, 1, {"timeout": 1})
    assert after["success_rate"] == 50.0 and after["error_rate"] == 0.5
    assert (after["input_tokens"], after["output_tokens"], after["total_tokens"]) == (10, 5, 15)
    assert after["avg_latency"] == pytest.approx(0.2)


def test_windows_select_buckets_by_age(tracker):
    model = _name()
    now = time.time()
    for age in (10, 100, 1000, 5000):
        tracker.track_prediction(model, "1.0.0", latency=0.05, at=now - age)
    tracker.flush()
    got = {w: tracker.get_metrics(model, "1.0.0", window=w)["requests"]
           for w in ("30s", "5m", 1800, timedelta(hours=2), "24h")}
    assert got == {"30s": 1, "5m": 2, 1800: 3, timedelta(hours=2): 4, "24h": 4}
    m = tracker.get_metrics(model, "1.0.0", window="15m")
    assert 900 <= 2 / m["throughput"] <= 920      # requests per second over the window


@pytest.mark.parametrize("bad", ["abc", "5x", "-5m", "", "0s", 0, -3, True, [], "1e3s"])
def test_a_bad_window_is_an_invalid_argument(tracker, bad):
    with pytest.raises(InvalidArgument):
        tracker.get_metrics("m", "1.0.0", window=bad)


def test_window_syntax():
    assert [parse_window(w) for w in ("30s", "15m", "24h", "7d", "2w", "90", 45.5, None)] == \
        [30, 900, 86400, 7 * 86400, 14 * 86400, 90, 45.5, None]


def test_metrics_of_every_version_and_of_an_unknown_one(tracker):
    model = _name()
    tracker.track_prediction(model, "1.0.0", latency=0.1)
    tracker.track_prediction(model, "1.1.0", latency=0.2)
    tracker.flush()
    tracker.track_prediction(model, "1.1.0", latency=0.2)
    every = tracker.get_metrics(model)
    assert {v: m["requests"] for v, m in every.items()} == {"1.0.0": 1, "1.1.0": 2}
    none = tracker.get_metrics(model, "9.9.9")
    assert none["requests"] == 0 and none["p95_latency"] is None and none["throughput"] == 0
    assert tracker.get_metrics(_name()) == {}


def test_compare_versions_gives_deltas_and_ratios(tracker):
    model = _name()
    for _ in range(4):
        tracker.track_prediction(model, "1.0.0", latency=0.1, tokens=100)
        tracker.track_prediction(model, "2.0.0", latency=0.2, tokens=50)
    tracker.track_prediction(model, "2.0.0", latency=0.2, error="provider_error")
    result = tracker.compare_versions(model, "1.0.0", "2.0.0")
    assert result["v1"]["requests"] == 4 and result["v2"]["requests"] == 5
    assert result["diff"]["p95_latency"]["ratio"] == pytest.approx(2.0, rel=0.01)
    assert result["diff"]["avg_latency"]["delta"] == pytest.approx(0.1)
    assert result["diff"]["success_rate"]["delta"] == pytest.approx(-20.0)
    assert result["diff"]["error_rate"]["ratio"] is None     # v1 had no errors: no ratio
    assert result["diff"]["avg_tokens"]["ratio"] == pytest.approx(0.4)


def test_time_series_counts_per_step(tracker):
    model = _name()
    now = time.time()
    step_start = int(now // 60) * 60
    for k in range(3):                     # the current minute and the two before it
        for _ in range(k + 1):
            tracker.track_prediction(model, "1.0.0", latency=0.1, at=step_start - 60 * k + 1)
    tracker.flush()
    tracker.track_prediction(model, "1.0.0", latency=0.1, at=step_start + 2)   # unflushed
    series = tracker.time_series(model, "1.0.0", window="5m", step="1m")
    assert series["step"] == 60 and len(series["points"]) == 5
    assert [p["requests"] for p in series["points"]] == [0, 0, 3, 2, 2]
    both = tracker.time_series(model, window="3m", step="1m")["points"]
    assert list(both) == ["1.0.0"]
    with pytest.raises(InvalidArgument):
        tracker.time_series(model, window="7d", step="10s")    # too many points


def test_track_prediction_validates_its_input(tracker):
    for kwargs in ({"latency": "fast"}, {"latency": -1.0}, {"latency": 0.1, "tokens": -1},
                   {"latency": 0.1, "input_tokens": 1.5}):
        with pytest.raises(InvalidArgument):
            tracker.track_prediction("m", "1.0.0", **kwargs)
    with pytest.raises(InvalidArgument):
        tracker.track_prediction("", "1.0.0", latency=0.1)


def test_query_reads_buckets_not_events(tracker):
    """10,000 predictions in one bucket are one stored row per tier."""
    model = _name()
    at = time.time()
    for i in range(10_000):
        tracker.collector.record(model, "1.0.0", 0.01 + (i % 100) / 1000, True, at=at)
    tracker.flush()
    rows = tracker.store.read(model, None, [(r, 0, 2**40) for r in (10, 300, 3600, 86400)])
    assert len(rows) == 4 and all(r.requests == 10_000 for r in rows)
    m = tracker.get_metrics(model, "1.0.0", window="1m")
    assert m["requests"] == 10_000 and math.isclose(m["p50_latency"], 0.0595, rel_tol=0.01)


def test_a_flush_between_the_span_read_and_the_bucket_read(tracker, monkeypatch):
    """The version's first flush commits after metric_series was read: still answered."""
    model = _name()
    tracker.track_prediction(model, "1.0.0", latency=0.1)
    tracker.flush()
    monkeypatch.setattr(tracker.store, "spans", lambda *a, **k: {})
    m = tracker.get_metrics(model, "1.0.0")
    assert m["requests"] == 1 and m["throughput"] > 0
