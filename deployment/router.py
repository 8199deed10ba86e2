"""Which version serves a request: the cached traffic table and a weighted or sticky choice.

Each process caches every model's table and revalidates it with one cheap read of the revision
at most every ``ttl_s`` (0.5 s by default), so a change made by any process is honoured by all
within a second, and the hot path is a dict lookup and a bisect.
"""
from __future__ import annotations

import bisect
import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from deployment.records import TrafficTable
from deployment.traffic_store import TrafficStore

BUCKETS = 10_000


@dataclass(frozen=True)
class Route:
    version: str
    routed_by: str              # "weight" | "key" | "pin"
    deployment_id: str | None
    stable_version: str | None


@dataclass(frozen=True)
class _Compiled:
    """A table turned into cumulative bucket bounds. Candidates come first, the stable version
    last, so a key whose bucket is on the canary at 10% stays on it at 50%."""

    table: TrafficTable | None
    bounds: list[int]
    versions: list[str]
    checked: float

    @classmethod
    def build(cls, table: TrafficTable | None, default: str | None, now: float) -> "_Compiled":
        if table is None:
            return cls(None, [BUCKETS] if default else [], [default] if default else [], now)
        stable = table.stable_version
        order = sorted(v for v in table.weights if v != stable)
        if stable in table.weights:
            order.append(stable)
        bounds, total = [], 0
        for version in order:
            total += table.weights[version] * BUCKETS // 100
            bounds.append(total)
        bounds[-1] = BUCKETS
        return cls(table, bounds, order, now)


def key_bucket(key: str) -> int:
    """A stable bucket in [0, 10000) for a routing key, the same in every process."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class Router:
    """``default_version(model)`` names what serves a model that has no traffic table yet
    (the registry's highest stable version), or None."""

    def __init__(self, store: TrafficStore, default_version: Callable[[str], str | None],
                 ttl_s: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, dict[str, float]], None] | None = None) -> None:
        self.store = store
        # Told each table this process starts routing by (issue 20: the Prometheus gauge
        # registry_traffic_weight_percent shows the split in force, not one last written).
        self.on_change = on_change
        self.default_version = default_version
        self.ttl_s = ttl_s
        self.clock = clock   # monotonic seconds; tests inject one instead of sleeping
        self._cache: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _compiled(self, model: str) -> _Compiled:
        now = self.clock()
        entry = self._cache.get(model)
        if entry is not None and now - entry.checked < self.ttl_s:
            return entry
        with self._lock:  # one revalidation per model at a time; others keep the old copy
            entry = self._cache.get(model)
            if entry is not None and now - entry.checked < self.ttl_s:
                return entry
            revision = self.store.revision(model)
            if entry is not None and entry.table is not None and entry.table.revision == revision:
                entry = _Compiled(entry.table, entry.bounds, entry.versions, now)
            else:
                table = self.store.get(model) if revision is not None else None
                default = None if table else self.default_version(model)
                entry = _Compiled.build(table, default, now)
                if self.on_change is not None:
                    self.on_change(model, dict(table.weights) if table else
                                   {default: 100.0} if default else {})
            self._cache[model] = entry
            return entry

    def table(self, model: str) -> TrafficTable | None:
        return self._compiled(model).table

    def choose(self, model: str, key: str | None = None) -> Route | None:
        """The version for one request, or None when nothing serves this model."""
        entry = self._compiled(model)
        if not entry.versions:
            return None
        bucket = key_bucket(key) if key is not None else random.randrange(BUCKETS)
        version = entry.versions[bisect.bisect_right(entry.bounds, bucket)]
        table = entry.table
        return Route(version, "key" if key is not None else "weight",
                     table.deployment_id if table else None,
                     table.stable_version if table else version)

    def invalidate(self, model: str | None = None) -> None:
        """Forget cached tables (this process wrote a change and wants it seen at once)."""
        with self._lock:
            if model is None:
                self._cache.clear()
            else:
                self._cache.pop(model, None)
