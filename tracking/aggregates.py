"""The data types of performance tracking, below everything that records, stores or
exports metrics: the 10 s bucket, the mergeable latency histogram and the aggregate.

They live apart from the collector so that the collector, the metrics store and the
Prometheus exporter all import them from here and none of them imports another (see
``tracking/metrics_collector.py`` for why the histogram and the aggregate look like this).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

BUCKET_SECONDS = 10
RELATIVE_ACCURACY = 0.005
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
_INV_LOG_GAMMA = 1.0 / _LOG_GAMMA
MIN_LATENCY = 1e-9            # at or below this a latency counts as 0 (its own bucket)
ZERO_INDEX = -(1 << 31)       # the bucket of zero latencies, reported as 0.0
_MAX_LATENCY = 1e9            # guards against NaN, inf and negative values in one comparison

Key = tuple[str, str, int]    # (model, version, bucket_start in epoch seconds)

# Pinned predictions (the caller chose the version) are recorded apart from routed traffic,
# under the model key "<model>#pinned": '#' cannot occur in a model name, so nothing that
# judges a version (canary analysis, the live watcher, alerts) ever reads them (issue 21).
PINNED_SUFFIX = "#pinned"


def pinned_key(model: str) -> str:
    return model + PINNED_SUFFIX


def is_pinned_key(name: str) -> bool:
    return name.endswith(PINNED_SUFFIX)


# --- the histogram --------------------------------------------------------------------------

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
