"""The hot path of performance tracking: record a prediction in memory, O(1), no SQL.

Why it is built this way:

* **Aggregation, not events.** ``record()`` adds the prediction to an in-memory aggregate keyed
  by (model, version, 10 s time bucket). Ten seconds is fine enough for a canary gate (which
  looks at minutes) and for a dashboard, and coarse enough that a busy version produces one row
  per ten seconds whatever its traffic. Queries therefore cost the same for a thousand or a
  million predictions.
* **A mergeable latency histogram.** Percentiles cannot be averaged, but histograms can be
  added. Latencies go into DDSketch-style logarithmic buckets: bucket ``i`` holds the values in
  ``(gamma**(i-1), gamma**i]`` with ``gamma = (1+a)/(1-a)``, ``a = 0.005``; reporting a bucket
  by ``2*gamma**i/(gamma+1)`` is within 0.5% of every value in it, so any percentile of any
  sum of histograms (buckets, processes, versions) is within 0.5% of the exact order statistic.
  The histogram is a sparse ``{index: count}`` dict (a few hundred keys for real latency
  spreads). It is written by hand (~30 lines) instead of depending on the ``ddsketch`` package:
  we need only index/value/encode/quantile, and owning the index function keeps the stored
  format stable across library versions.
* **One buffer per thread.** Each recording thread aggregates into its own buffer under its
  own lock, which only a flush or a reader ever contends: with one shared lock, two busy
  threads hand the lock and the GIL back and forth on every call (measured: 4x slower).
* **Batches.** A background thread drains the aggregates at least every second (``flush()``
  can also be called; ``close()`` and an ``atexit`` hook flush at shutdown) and hands them to a
  sink (``tracking.metrics_store.MetricsStore``), which adds them into stored rows in one
  transaction. Rows are merged additively, so any number of processes can flush into the same
  bucket.
* **Read your writes.** Drained aggregates stay visible in memory ("in flight") until the
  transaction that stores them commits. Draining (buffers → in flight) and the commit with the
  removal (in flight → database) each happen under the exclusive side of a readers-writer lock
  whose shared side readers hold while they read the database and the buffers, so a reader
  sees each prediction exactly once: in memory or in the database, never both, never neither.
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from errors import InvalidArgument

if TYPE_CHECKING:
    from storage.database import Database

log = logging.getLogger(__name__)

BUCKET_SECONDS = 10
RELATIVE_ACCURACY = 0.005
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
_INV_LOG_GAMMA = 1.0 / _LOG_GAMMA
MIN_LATENCY = 1e-9            # at or below this a latency counts as 0 (its own bucket)
ZERO_INDEX = -(1 << 31)       # the bucket of zero latencies, reported as 0.0
_MAX_LATENCY = 1e9            # guards against NaN, inf and negative values in one comparison
DEFAULT_FLUSH_INTERVAL_S = 1.0

Key = tuple[str, str, int]    # (model, version, bucket_start in epoch seconds)
T = TypeVar("T")


# --- the histogram --------------------------------------------------------------------------

# Pinned predictions (the caller chose the version) are recorded apart from routed traffic,
# under the model key "<model>#pinned": '#' cannot occur in a model name, so nothing that
# judges a version (canary analysis, the live watcher, alerts) ever reads them (issue 21).
PINNED_SUFFIX = "#pinned"


def pinned_key(model: str) -> str:
    return model + PINNED_SUFFIX


def is_pinned_key(name: str) -> bool:
    return name.endswith(PINNED_SUFFIX)


def latency_index(latency: float) -> int:
    """The log bucket of one latency (seconds)."""
    if latency <= MIN_LATENCY:
        return ZERO_INDEX
    return math.ceil(math.log(latency) * _INV_LOG_GAMMA)


def index_values(indices: np.ndarray) -> np.ndarray:
    """The value each bucket reports: within RELATIVE_ACCURACY of everything it holds."""
    values = 2.0 * np.exp(indices.astype(np.float64) * _LOG_GAMMA) / (GAMMA + 1.0)
    return np.where(indices == ZERO_INDEX, 0.0, values)


def encode_histogram(hist: Mapping[int, int]) -> bytes:
    """Sparse histogram → bytes: sorted indices then counts, little-endian int64."""
    if not hist:
        return b""
    idx = np.fromiter(hist.keys(), dtype="<i8", count=len(hist))
    cnt = np.fromiter(hist.values(), dtype="<i8", count=len(hist))
    order = np.argsort(idx)
    return np.concatenate([idx[order], cnt[order]]).tobytes()


def decode_histogram(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Bytes → (indices, counts) arrays (views on the blob: no copy)."""
    arr = np.frombuffer(blob, dtype="<i8")
    half = arr.size // 2
    return arr[:half], arr[half:]


def histogram_dict(blob: bytes) -> dict[int, int]:
    idx, cnt = decode_histogram(blob)
    return dict(zip(idx.tolist(), cnt.tolist()))


def quantiles(indices: np.ndarray, counts: np.ndarray, qs: Iterable[float]) -> list[float | None]:
    """Quantiles of a histogram given as (possibly repeated, unsorted) indices and counts.

    Uses numpy's default definition (linear interpolation between the order statistics around
    rank ``q*(n-1)``), each order statistic read from the bucket that holds it.
    """
    qs = list(qs)
    if indices.size == 0:
        return [None] * len(qs)
    uniq, inverse = np.unique(indices, return_inverse=True)
    merged = np.bincount(inverse, weights=counts, minlength=uniq.size)
    cum = np.cumsum(merged)
    total = cum[-1]
    if total <= 0:
        return [None] * len(qs)
    values = index_values(uniq)
    out: list[float | None] = []
    for q in qs:
        rank = q * (total - 1)
        lo, hi = math.floor(rank), math.ceil(rank)
        v_lo = values[np.searchsorted(cum, lo, side="right")]
        v_hi = values[np.searchsorted(cum, hi, side="right")]
        out.append(float(v_lo + (rank - lo) * (v_hi - v_lo)))
    return out


# --- the aggregate --------------------------------------------------------------------------

class Aggregate:
    """Everything stored about a set of predictions; adding two gives the aggregate of both."""

    __slots__ = ("requests", "successes", "latency_sum", "latency_min", "latency_max",
                 "input_tokens", "output_tokens", "total_tokens", "cost", "errors", "hist",
                 "by_key")

    def __init__(self) -> None:
        self.requests = 0
        self.successes = 0
        self.latency_sum = 0.0
        self.latency_min = math.inf           # exact extremes: percentiles are clamped to them
        self.latency_max = 0.0
        self.input_tokens = 0
        self.output_tokens = 0
        self.total_tokens = 0
        self.cost = 0                         # micro-USD (money.py): integers only
        self.errors: dict[str, int] = {}      # failures by error kind
        self.hist: dict[int, int] = {}        # latency_index → count
        # Spend of the requests made with an API key: {key name: [requests, input tokens
        # (unsplit included), output tokens, cost]}. Requests without a key are the rest of the
        # totals (see ``anonymous_spend``), so keyless traffic pays nothing here.
        self.by_key: dict[str, list[int]] = {}

    @property
    def failures(self) -> int:
        return self.requests - self.successes

    def merge(self, other: Aggregate) -> Aggregate:
        """Add ``other`` into this aggregate (returns self)."""
        self.requests += other.requests
        self.successes += other.successes
        self.latency_sum += other.latency_sum
        if other.latency_min < self.latency_min:
            self.latency_min = other.latency_min
        if other.latency_max > self.latency_max:
            self.latency_max = other.latency_max
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.total_tokens += other.total_tokens
        self.cost += other.cost
        for name, theirs in other.by_key.items():
            mine = self.by_key.get(name)
            if mine is None:
                self.by_key[name] = list(theirs)
            else:
                for i, n in enumerate(theirs):
                    mine[i] += n
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        hist = self.hist
        for i, n in other.hist.items():
            hist[i] = hist.get(i, 0) + n
        return self

    def copy(self) -> Aggregate:
        return Aggregate().merge(self)

    def anonymous_spend(self) -> list[int]:
        """[requests, input tokens, output tokens, cost] of the requests made without a key."""
        rest = [self.requests, self.total_tokens - self.output_tokens, self.output_tokens,
                self.cost]
        for spent in self.by_key.values():
            for i, n in enumerate(spent):
                rest[i] -= n
        return rest


def merge_batches(batches: Iterable[Mapping[Key, Aggregate]]) -> dict[Key, Aggregate]:
    """Several drained batches → one, without touching the inputs (readers may hold them)."""
    out: dict[Key, Aggregate] = {}
    for batch in batches:
        for key, agg in batch.items():
            mine = out.get(key)
            out[key] = agg.copy() if mine is None else mine.merge(agg)
    return out


# --- the collector --------------------------------------------------------------------------

class MetricsSink(Protocol):
    """Where flushed aggregates go (``tracking.metrics_store.MetricsStore``).

    ``add`` stores the batch in one transaction and enters ``commit_guard`` right before the
    commit, leaving it right after (with the exception, if the commit failed).
    """

    def add(self, batch: Mapping[Key, Aggregate], *,
            commit_guard: AbstractContextManager[None] | None = None) -> None: ...


Exporter = Callable[[Mapping[Key, Aggregate]], None]


class _ReadersWriterLock:
    """Many readers at once, or one writer; a waiting writer goes first.

    Readers are metric queries (several API threads at once); the writer is the commit of a
    flush, which must not wait behind a stream of readers.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    def acquire(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True

    def release(self) -> None:
        with self._cond:
            self._writing = False
            self._cond.notify_all()


class _Publish:
    """Held across the commit of a flush: readers never see a batch twice or not at all."""

    def __init__(self, collector: MetricsCollector, batches: int) -> None:
        self._collector = collector
        self._batches = batches

    def __enter__(self) -> None:
        self._collector._visible.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        try:
            if exc_type is None:
                del self._collector._in_flight[:self._batches]
        finally:
            self._collector._visible.release()


class _ThreadBuffer:
    """One recording thread's pending aggregates; its lock is contended only by a flush or a
    reader, never by another recording thread."""

    __slots__ = ("lock", "pending", "thread")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[Key, Aggregate] = {}
        self.thread = weakref.ref(threading.current_thread())

    def alive(self) -> bool:
        thread = self.thread()
        return thread is not None and thread.is_alive()


class MetricsCollector:
    """Aggregates predictions in memory and flushes them to ``sink`` in batches.

    ``record`` is thread-safe and O(1): each thread aggregates into its own buffer.
    ``flush`` drains every buffer; it is called by a background thread every
    ``flush_interval`` seconds (``start_thread=False`` leaves flushing to the caller), by
    ``close()``, and at interpreter exit. ``exporter`` (e.g. ``tracking.prometheus.export``)
    receives every drained batch once, before it is stored, so Prometheus counters are updated
    per batch instead of per prediction.
    """

    def __init__(self, sink: MetricsSink, *, flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
                 exporter: Exporter | None = None, start_thread: bool = True) -> None:
        if not 0 < flush_interval <= 60:
            raise InvalidArgument(
                f"flush_interval must be in (0, 60] seconds, got {flush_interval}")
        self.sink = sink
        self.flush_interval = flush_interval
        self._exporter = exporter
        self._start_thread = start_thread
        self._init_state()
        _live.add(self)

    def _init_state(self) -> None:
        self._local = threading.local()           # .buffer: the thread's _ThreadBuffer
        self._buffers: list[_ThreadBuffer] = []
        self._buffers_lock = threading.Lock()
        # Readers (shared) vs. moving aggregates between buffers, in-flight and the database
        # (exclusive): a reader sees every aggregate in exactly one place. Guards _in_flight.
        self._visible = _ReadersWriterLock()
        self._flush_mutex = threading.Lock()      # one flush at a time
        self._in_flight: list[dict[Key, Aggregate]] = []   # drained, not yet committed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.closed = False
        if self._start_thread:
            self._thread = threading.Thread(target=self._run, name="metrics-flusher", daemon=True)
            self._thread.start()

    # The hot path. Kept flat (no helper calls) because it runs once per prediction.
    def record(self, model: str, version: str, latency_s: float, success: bool,
               error_kind: str | None = None, input_tokens: int = 0, output_tokens: int = 0,
               at: float | None = None, total_tokens: int | None = None, cost: int = 0,
               api_key: str | None = None) -> None:
        """Count one prediction. ``total_tokens`` defaults to input + output; pass it when the
        provider reports only a total. ``at`` (epoch seconds) defaults to now. ``cost`` is
        the prediction's price in integer micro-USD; ``api_key`` the name of the key that made
        it (for spend per key)."""
        if not 0.0 <= latency_s < _MAX_LATENCY:
            raise InvalidArgument(
                f"latency must be a finite number of seconds >= 0, got {latency_s!r}")
        t = time.time() if at is None else at
        key = (model, version, int(t // BUCKET_SECONDS) * BUCKET_SECONDS)
        idx = (math.ceil(math.log(latency_s) * _INV_LOG_GAMMA)
               if latency_s > MIN_LATENCY else ZERO_INDEX)
        if total_tokens is None:
            total_tokens = input_tokens + output_tokens
        try:
            buffer = self._local.buffer
        except AttributeError:
            buffer = self._new_buffer()
        with buffer.lock:
            agg = buffer.pending.get(key)
            if agg is None:
                agg = buffer.pending[key] = Aggregate()
            agg.requests += 1
            if success:
                agg.successes += 1
            else:
                errors = agg.errors
                kind = error_kind or "error"
                errors[kind] = errors.get(kind, 0) + 1
            agg.latency_sum += latency_s
            if latency_s < agg.latency_min:
                agg.latency_min = latency_s
            if latency_s > agg.latency_max:
                agg.latency_max = latency_s
            if total_tokens:
                agg.input_tokens += input_tokens
                agg.output_tokens += output_tokens
                agg.total_tokens += total_tokens
            agg.cost += cost
            if api_key is not None:
                spent = agg.by_key.get(api_key)
                if spent is None:
                    spent = agg.by_key[api_key] = [0, 0, 0, 0]
                spent[0] += 1
                spent[1] += total_tokens - output_tokens
                spent[2] += output_tokens
                spent[3] += cost
            hist = agg.hist
            hist[idx] = hist.get(idx, 0) + 1

    def flush(self) -> int:
        """Store everything recorded so far; returns the number of aggregates written.

        On failure the batch stays in memory (still visible to readers) and is retried by the
        next flush; nothing is counted twice because a failed transaction stores nothing.
        """
        with self._flush_mutex:
            fresh = self._drain()
            batches = list(self._in_flight)
            if fresh and self._exporter is not None:
                try:
                    self._exporter(fresh)
                except Exception:  # monitoring must never break storing
                    log.exception("metrics exporter failed")
            if not batches:
                return 0
            combined = batches[0] if len(batches) == 1 else merge_batches(batches)
            try:
                self.sink.add(combined, commit_guard=_Publish(self, len(batches)))
            except Exception:
                self._visible.acquire()   # keep one merged batch for the retry, not a list
                try:
                    self._in_flight[:len(batches)] = [combined]
                finally:
                    self._visible.release()
                raise
            return len(combined)

    def _new_buffer(self) -> _ThreadBuffer:
        buffer = self._local.buffer = _ThreadBuffer()
        with self._buffers_lock:
            self._buffers.append(buffer)
        return buffer

    def _drain(self) -> dict[Key, Aggregate]:
        """Move every thread's pending aggregates to in-flight; returns them merged."""
        with self._buffers_lock:
            buffers = list(self._buffers)
        drained: list[dict[Key, Aggregate]] = []
        self._visible.acquire()
        try:
            for buffer in buffers:
                with buffer.lock:
                    if buffer.pending:
                        drained.append(buffer.pending)
                        buffer.pending = {}
            self._in_flight.extend(drained)
        finally:
            self._visible.release()
        with self._buffers_lock:   # a finished thread records no more: forget its buffer
            self._buffers = [b for b in self._buffers if b.alive() or b.pending]
        return drained[0] if len(drained) == 1 else merge_batches(drained)
    def read_consistent(self, read: Callable[[], T], wanted: Callable[[Key], bool]
                        ) -> tuple[T, list[tuple[Key, Aggregate]]]:
        """Run ``read`` (one SELECT of stored rows) and snapshot the unflushed aggregates whose
        key ``wanted`` accepts, atomically with respect to flush commits."""
        with self._visible.shared():
            stored = read()
            with self._buffers_lock:
                buffers = list(self._buffers)
            memory = [(k, a.copy()) for batch in self._in_flight
                      for k, a in batch.items() if wanted(k)]
            for buffer in buffers:
                with buffer.lock:
                    memory.extend((k, a.copy()) for k, a in buffer.pending.items() if wanted(k))
        return stored, memory

    def close(self) -> None:
        """Stop the flusher and flush what is left. Records made later stay in memory until
        the next ``flush()`` (the atexit hook does one)."""
        self.closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:
                log.warning("metrics flush failed; keeping the batch for the next attempt",
                            exc_info=True)

    def _after_fork_in_child(self) -> None:
        # The parent flushes its own buffers; a child that inherited them must not count them
        # again. Locks may have been held by parent threads at fork time: make new ones.
        self._init_state()


_live: weakref.WeakSet[MetricsCollector] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    for collector in list(_live):
        try:
            collector.close()
        except Exception:
            log.warning("metrics flush at exit failed", exc_info=True)


def _reset_after_fork() -> None:
    for collector in list(_live):
        collector._after_fork_in_child()


atexit.register(_flush_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


# --- one collector per database per process -------------------------------------------------

_defaults: dict[str, MetricsCollector] = {}
_defaults_lock = threading.Lock()


def default_collector(database: Database | None = None) -> MetricsCollector:
    """The process-wide collector of ``database`` (default: the configured database).

    Everything in a process that records or reads metrics of one database shares it, which is
    what makes read-your-writes hold across the gateway, the tracker and the alerting.
    """
    # Imported here: metrics_store imports the aggregate types from this module.
    from storage.database import default_database
    from tracking import prometheus
    from tracking.metrics_store import MetricsStore

    db = database or default_database()
    with _defaults_lock:
        collector = _defaults.get(db.url)
        if collector is None or collector.closed:
            collector = MetricsCollector(MetricsStore(db), exporter=prometheus.export)
            _defaults[db.url] = collector
        return collector
