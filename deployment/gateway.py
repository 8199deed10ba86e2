"""The prediction path: route → loaded provider → predict → record, with fallback.

Nothing here writes SQL: the router reads a cached table, the loader a cached instance, and the
collector aggregates in memory (flushed in batches by its own thread).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from deployment.router import Route, Router
from errors import (DataCorrupted, FailedPrecondition, ProviderError, ProviderTimeout,
                    RateLimited, Unavailable)
from models.base_model import Prediction
from models.model_loader import ModelLoader
from registry.model_registry import ModelRegistry
from tracking.budgets import Budgets
from tracking.metrics_collector import MetricsCollector, pinned_key
from tracking.pricing import PriceBook, cost_fields

# Failures that are the version's fault: counted against it, and worth one retry on stable.
# Everything else the gateway raises (bad input, non-finite outputs, outputs or memory over the
# caps, a refused pin) is the caller's: a 4xx that never reaches the version's metrics, so it
# can feed neither canary analysis nor the live watcher nor alerts (issue 21).
VERSION_FAILURES = (ProviderError, ProviderTimeout, Unavailable, DataCorrupted, FailedPrecondition)


def highest_stable(registry: ModelRegistry):
    """What serves a model with no traffic table yet: its highest stable version."""
    def pick(model: str) -> str | None:
        return registry.highest_stable([model]).get(model)
    return pick


class InFlightLimit:
    """At most ``limit`` predictions of one model in flight in this process, so that a slow
    backend cannot hold every worker thread: the next one is refused at once (429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, model: str) -> Iterator[None]:
        with self._lock:
            count = self._counts.get(model, 0)
            if count >= self.limit:
                raise RateLimited(f"model '{model}' already has {count} predictions in flight "
                                  f"(MAX_INFLIGHT_PER_MODEL={self.limit}); retry shortly")
            self._counts[model] = count + 1
        try:
            yield
        finally:
            with self._lock:
                self._counts[model] -= 1


class Gateway:
    def __init__(self, registry: ModelRegistry, loader: ModelLoader, router: Router,
                 collector: MetricsCollector, max_inflight_per_model: int = 64, *,
                 prices: PriceBook | None = None, budgets: Budgets | None = None) -> None:
        self.registry = registry
        self.loader = loader
        self.router = router
        self.collector = collector
        self.inflight = InFlightLimit(max_inflight_per_model)
        self.prices = prices
        self.budgets = budgets

    def predict(self, model: str, input: Any, *, version: str | None = None,
                key: str | None = None, params: dict[str, Any] | None = None,
                api_key: str | None = None) -> dict[str, Any]:
        """Serve one prediction. A failed call to a version other than the stable one is retried
        once on the stable version (``fallback: true``) and still counted against the first.
        ``api_key`` (the caller's key name) is what spend and key budgets are counted by; a
        spent hard budget of the key or the model refuses the call (BudgetExceeded)."""
        if self.budgets is not None:
            self.budgets.check(model, api_key)
        with self.inflight.hold(model):
            return self._predict(model, input, version, key, params, api_key)

    def _predict(self, model: str, input: Any, version: str | None, key: str | None,
                 params: dict[str, Any] | None, api_key: str | None) -> dict[str, Any]:
        if version is not None:
            route = Route(self.registry.resolve(model, version).text, "pin", None, None)
        else:
            route = self.router.choose(model, key)
            if route is None:
                self.registry.get_model(model)  # NotFound for an unknown model
                raise Unavailable(f"nothing is deployed for model '{model}': deploy a version "
                                  f"(POST /api/models/{model}/deploy) or mark one stable")
        try:
            return self._call(model, route.version, input, params, route, False, api_key)
        except VERSION_FAILURES:
            stable = route.stable_version
            if route.routed_by == "pin" or stable is None or stable == route.version:
                raise
            return self._call(model, stable, input, params, route, True, api_key)

    def _call(self, model: str, version: str, input: Any, params: dict[str, Any] | None,
              route: Route, fallback: bool, api_key: str | None) -> dict[str, Any]:
        """One call, counted against ``version`` when it is the version's doing; a pinned
        call is counted apart (``pinned_key``), where nothing judges versions (its cost is
        still the model's spend)."""
        tracked = pinned_key(model) if route.routed_by == "pin" else model
        started = time.perf_counter()
        try:
            provider = self.loader.get(model, version)
            started = time.perf_counter()  # a first load is not the model's latency
            result: Prediction = provider.predict(input, params)
        except VERSION_FAILURES as exc:
            self.collector.record(tracked, version, time.perf_counter() - started, False,
                                  exc.code, api_key=api_key)
            raise
        latency = time.perf_counter() - started
        usage = result.usage
        if usage is None:
            self.collector.record(tracked, version, latency, True, api_key=api_key)
            usage_out = None
        else:
            cost = None if self.prices is None else self.prices.cost(
                model, version, usage.input_tokens, usage.output_tokens, usage.total_tokens,
                usage.cached_tokens, usage.thinking_tokens)
            self.collector.record(tracked, version, latency, True, None, usage.input_tokens,
                                  usage.output_tokens, total_tokens=usage.total_tokens,
                                  cost=cost or 0, api_key=api_key)
            if cost and self.budgets is not None:
                self.budgets.spent(model, api_key, cost)
            usage_out = {**usage.as_dict(), **cost_fields(cost)}
        return _answer(model, version, result.output, usage_out, latency, route, fallback)


def _answer(model: str, version: str, output: Any, usage: dict[str, Any] | None,
            latency: float, route: Route, fallback: bool) -> dict[str, Any]:
    return {"model": model, "version": version, "output": output,
            "latency": latency, "usage": usage,
            "deployment_id": route.deployment_id, "routed_by": route.routed_by,
            "fallback": fallback}
