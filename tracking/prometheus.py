"""Prometheus metrics of the gateway, and the ``/metrics`` exposition.

Why it looks like this:

* The collector calls ``export`` once per flushed batch (at least every second), not once per
  prediction: a labelled Counter increment and a Histogram observation cost ~2-3 µs each here,
  which would cut ``record()`` throughput by more than half. Counters are incremented by the
  batch totals. The latency histogram is filled from the batch's fine log histogram: each
  fine bucket is counted under the first Prometheus bound not below its representative value,
  so only a latency within 0.5% of a bound can land one bucket off. Because prometheus_client
  has no public "observe n values" call, that uses the Histogram child's ``_buckets``/``_sum``
  value objects (stable since prometheus_client 0.4; the tests render and check them).
* Multi-process servers (gunicorn workers) set ``PROMETHEUS_MULTIPROC_DIR`` before the first
  import of prometheus_client; ``render`` then aggregates every worker's files with
  ``MultiProcessCollector``. The traffic gauge uses ``livemostrecent``: the last value set by
  any live worker is the table in force.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np
from prometheus_client.registry import Collector
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest, multiprocess)

from money import MICRO
from tracking.aggregates import Aggregate, Key, index_values

# LLM calls: from a cached 5 ms answer to a two-minute long generation.
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                                      10.0, 20.0, 30.0, 60.0, 120.0)

PREDICTIONS = Counter("registry_predictions", "Predictions served, by outcome (success/error).",
                      ["model", "version", "outcome"])
PREDICTION_ERRORS = Counter("registry_prediction_errors", "Failed predictions by error kind.",
                            ["model", "version", "kind"])
LATENCY = Histogram("registry_prediction_latency_seconds", "Prediction latency in seconds.",
                    ["model", "version"], buckets=LATENCY_BUCKETS)
TOKENS = Counter("registry_prediction_tokens",
                 "Tokens used; kind is input, output, or unsplit (a total without a split).",
                 ["model", "version", "kind"])
COST = Counter("registry_cost_usd", "Spend in USD per version (from integer micro-USD sums).",
               ["model", "version"])
TRAFFIC = Gauge("registry_traffic_weight_percent",
                "Share of a model's traffic per version (0-100).", ["model", "version"],
                multiprocess_mode="livemostrecent")

# Streamed answers (issue 15): how long until the first token reached the gateway, and how many
# streams the client abandoned (the provider call is then closed; the stream is not counted
# as a success or a failure of the version: the version did nothing wrong).
STREAM_TTFT = Histogram("registry_stream_time_to_first_token_seconds",
                        "Streamed answers: time from the provider call to its first piece.",
                        ["model", "version"], buckets=LATENCY_BUCKETS)
STREAM_DISCONNECTS = Counter("registry_stream_disconnects",
                             "Streams abandoned by the client before their end.",
                             ["model", "version"])

# Series per model are capped (issue 21): versions beyond the first ``max_versions`` seen by
# this process are counted under the version label "other".
OTHER_VERSION = "other"
_label_versions: dict[str, set[str]] = {}
_label_limit = {"max_versions": 20}

_BOUNDS = np.array(LATENCY_BUCKETS + (float("inf"),))
_traffic_versions: dict[str, set[str]] = {}
_traffic_lock = threading.Lock()


def limit_versions(max_versions: int) -> None:
    """At most ``max_versions`` version labels per model (``MAX_SERIES_VERSIONS``)."""
    _label_limit["max_versions"] = max_versions


def _label(model: str, version: str) -> str:
    seen = _label_versions.setdefault(model, set())
    if version in seen:
        return version
    if len(seen) >= _label_limit["max_versions"]:
        return OTHER_VERSION
    seen.add(version)
    return version


def export(batch: Mapping[Key, Aggregate]) -> None:
    """Add a drained collector batch to the Prometheus metrics (the collector's exporter)."""
    per_version: dict[tuple[str, str], Aggregate] = {}
    for (model, exact, _start), agg in batch.items():
        version = _label(model, exact)
        mine = per_version.get((model, version))
        per_version[(model, version)] = agg.copy() if mine is None else mine.merge(agg)
    for (model, version), agg in per_version.items():
        if agg.successes:
            PREDICTIONS.labels(model, version, "success").inc(agg.successes)
        if agg.failures:
            PREDICTIONS.labels(model, version, "error").inc(agg.failures)
        for kind, n in agg.errors.items():
            PREDICTION_ERRORS.labels(model, version, kind).inc(n)
        unsplit = agg.total_tokens - agg.input_tokens - agg.output_tokens
        for kind, n in (("input", agg.input_tokens), ("output", agg.output_tokens),
                        ("unsplit", unsplit)):
            if n > 0:
                TOKENS.labels(model, version, kind).inc(n)
        if agg.cost > 0:
            COST.labels(model, version).inc(agg.cost / MICRO)
        _observe_histogram(LATENCY.labels(model, version), agg)


def _observe_histogram(child: Histogram, agg: Aggregate) -> None:
    if not agg.hist:
        return
    indices = np.fromiter(agg.hist.keys(), dtype=np.int64, count=len(agg.hist))
    counts = np.fromiter(agg.hist.values(), dtype=np.int64, count=len(agg.hist))
    slots = np.searchsorted(_BOUNDS, index_values(indices), side="left")
    per_bound = np.bincount(slots, weights=counts, minlength=_BOUNDS.size)
    for slot in np.flatnonzero(per_bound):
        child._buckets[slot].inc(float(per_bound[slot]))
    child._sum.inc(agg.latency_sum)


def observe_stream(model: str, version: str, ttft_s: float | None, disconnected: bool) -> None:
    """Count one finished stream (called once per stream, not per piece)."""
    version = _label(model, version)
    if ttft_s is not None:
        STREAM_TTFT.labels(model, version).observe(ttft_s)
    if disconnected:
        STREAM_DISCONNECTS.labels(model, version).inc()


def set_traffic(model: str, weights: Mapping[str, float]) -> None:
    """Publish a model's traffic table (percent per version); versions left out go to 0."""
    with _traffic_lock:
        known = _traffic_versions.setdefault(model, set())
        for version in known - set(weights):
            TRAFFIC.labels(model, version).set(0)
        for version, weight in weights.items():
            TRAFFIC.labels(model, version).set(float(weight))
        known.update(weights)


def render(multiprocess_dir: str | None = None, *extra: Collector) -> tuple[bytes, str]:
    """The exposition text and its content type, for ``GET /metrics``; with the workers'
    ``multiprocess_dir`` (``Settings.prometheus_multiproc_dir``), every worker's files.
    ``extra`` collectors (read at scrape time, e.g. the database-backed ops metrics of
    issue 20) are appended."""
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if extra:
        more = CollectorRegistry(auto_describe=False)
        for collector in extra:
            more.register(collector)
        body += generate_latest(more)
    return body, CONTENT_TYPE_LATEST
