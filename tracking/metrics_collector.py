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
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar

from errors import InvalidArgument
from tracking.aggregates import (_INV_LOG_GAMMA, _MAX_LATENCY, BUCKET_SECONDS, GAMMA,  # noqa: F401
                                 MIN_LATENCY, RELATIVE_ACCURACY, ZERO_INDEX, Aggregate, Key,
                                 decode_histogram, encode_histogram, histogram_dict,
                                 index_values, is_pinned_key, latency_index, merge_batches,
                                 pinned_key, quantiles, PINNED_SUFFIX)

log = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL_S = 1.0
T = TypeVar("T")


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
