"""The prediction path: route → loaded provider → predict → record, with fallback.

Nothing here writes SQL: the router reads a cached table, the loader a cached instance, and the
collector aggregates in memory (flushed in batches by its own thread).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import observability
from deployment.records import ShadowRecord
from deployment.router import Route, Router
from deployment.shadow import Mirror, ShadowMirror
from deployment.usage_cost import usage_cost
from errors import (DataCorrupted, FailedPrecondition, ProviderError, ProviderTimeout,
                    RateLimited, RegistryError, Unavailable)
from models.base_model import ChatRequest, Delta, ModelProvider, Prediction, Usage
from models.model_loader import ModelLoader
from registry.model_registry import ModelRegistry
from tracking import prometheus
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

    def hold(self, model: str) -> "_Slot":
        """A slot for one prediction of ``model``, held for the ``with`` block."""
        return _Slot(self, model)


class _Slot:
    """One in-flight slot: a plain context manager, not a generator (once per prediction)."""

    __slots__ = ("_limit", "_model")

    def __init__(self, limit: InFlightLimit, model: str) -> None:
        self._limit = limit
        self._model = model

    def __enter__(self) -> None:
        limit, model = self._limit, self._model
        with limit._lock:
            count = limit._counts.get(model, 0)
            if count >= limit.limit:
                raise RateLimited(f"model '{model}' already has {count} predictions in flight "
                                  f"(MAX_INFLIGHT_PER_MODEL={limit.limit}); retry shortly")
            limit._counts[model] = count + 1

    def __exit__(self, *exc_info: object) -> None:
        limit = self._limit
        with limit._lock:
            limit._counts[self._model] -= 1


@dataclass(frozen=True)
class Served:
    """One answered call: what served it and how."""

    model: str
    version: str
    prediction: Prediction
    latency: float
    route: Route
    fallback: bool
    cost: int | None = None     # micro-USD; None when the version has no price or no usage

    def as_dict(self) -> dict[str, Any]:
        """The body of ``POST /api/models/{name}/predict``."""
        usage = self.prediction.usage
        return {"model": self.model, "version": self.version, "output": self.prediction.output,
                "latency": self.latency,
                "usage": {**usage.as_dict(), **cost_fields(self.cost)} if usage else None,
                "deployment_id": self.route.deployment_id, "routed_by": self.route.routed_by,
                "fallback": self.fallback}


class Gateway:
    """Every protocol (predict, OpenAI, Gemini, Open Inference) calls a model through here:
    routing, pins, the in-flight limit, fallback to stable and tracking happen once."""

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
        # issue 19: where served calls are mirrored to running shadows (wiring sets it)
        self.mirror: ShadowMirror | None = None

    def predict(self, model: str, input: Any, *, version: str | None = None,
                key: str | None = None, params: dict[str, Any] | None = None,
                api_key: str | None = None) -> dict[str, Any]:
        """Serve one prediction. A failed call to a version other than the stable one is retried
        once on the stable version (``fallback: true``) and still counted against the first."""
        return self.serve(model, lambda p: p.predict(input, params), version=version,
                          key=key, api_key=api_key, example=lambda: input).as_dict()

    def chat(self, model: str, request: ChatRequest, *, version: str | None = None,
             key: str | None = None, api_key: str | None = None) -> Served:
        """One answer to a conversation, routed, limited, retried and tracked as predict."""
        return self.serve(model, lambda p: p.chat(request), version=version, key=key,
                          api_key=api_key, example=lambda: _conversation(request))

    def serve(self, model: str, invoke: Callable[[ModelProvider], Prediction], *,
              version: str | None = None, key: str | None = None,
              api_key: str | None = None, example: Callable[[], Any] | None = None) -> Served:
        """Call ``invoke`` on the provider of the version routing (or ``version``) picks.
        ``api_key`` (the caller's key name) is what spend and key budgets are counted by; a
        spent hard budget of the key or the model refuses the call (BudgetExceeded).

        Once answered, a routed (not pinned) call may be mirrored to the model's running
        shadow: the same ``invoke`` queued for the candidate, never waited for (issue 19).
        ``example`` gives the call's input for the shadow report (``SHADOW_STORE_INPUTS``)."""
        self._check_budget(model, api_key)
        with self.inflight.hold(model):
            route = self.route(model, version, key)
            try:
                served = self._call(model, route.version, invoke, route, False, api_key)
            except VERSION_FAILURES:
                stable = self._fallback_version(route)
                if stable is None:
                    raise
                served = self._call(model, stable, invoke, route, True, api_key)
        shadow = self._shadow_of(model, served.version, route)
        if shadow is not None and self.mirror is not None:
            self.mirror.submit(Mirror(shadow, invoke, served.version, served.prediction.output,
                                      served.latency, served.prediction.usage, example,
                                      served.cost))
        return served

    def _shadow_of(self, model: str, version: str, route: Route) -> ShadowRecord | None:
        """The running shadow this answered call is mirrored to, if sampled (never blocks).
        Pinned calls are never mirrored: the caller chose the version."""
        if self.mirror is None or route.routed_by == "pin":
            return None
        return self.mirror.pick(model, version)

    def _check_budget(self, model: str, api_key: str | None) -> None:
        if self.budgets is not None:
            self.budgets.check(model, api_key)

    def route(self, model: str, version: str | None = None, key: str | None = None) -> Route:
        """The version that serves this call: ``version`` (any ref the registry resolves)
        pins it, else the traffic table picks (sticky by ``key``)."""
        if version is not None:
            return Route(self.registry.resolve(model, version).text, "pin", None, None)
        with observability.span("route") as span:   # issue 20: a span when tracing is on
            if span is not None:
                span.set_attribute("registry.model", model)
            route = self.router.choose(model, key)
        if route is None:
            self.registry.get_model(model)  # NotFound for an unknown model
            raise Unavailable(f"nothing is deployed for model '{model}': deploy a version "
                              f"(POST /api/models/{model}/deploy) or mark one stable")
        return route

    @staticmethod
    def _fallback_version(route: Route) -> str | None:
        stable = route.stable_version
        if route.routed_by == "pin" or stable is None or stable == route.version:
            return None
        return stable

    @staticmethod
    def _tracked(model: str, route: Route) -> str:
        """Where a call is counted: against the model's version, or, for a pinned call, apart
        (``pinned_key``), where nothing judges versions."""
        return pinned_key(model) if route.routed_by == "pin" else model

    def _call(self, model: str, version: str, invoke: Callable[[ModelProvider], Prediction],
              route: Route, fallback: bool, api_key: str | None) -> Served:
        """One call, counted against ``version`` when it is the version's doing (a pinned
        call's cost is still the model's spend)."""
        tracked = self._tracked(model, route)
        observability.bind_route(model, version, route.deployment_id)   # issue 20: log fields
        started = time.perf_counter()
        try:
            provider = self.loader.get(model, version)
            started = time.perf_counter()  # a first load is not the model's latency
            with observability.span("provider.call") as span:
                if span is not None:
                    span.set_attributes({
                        "registry.model": model, "registry.version": version,
                        "registry.deployment": route.deployment_id or "",
                        "registry.routed_by": route.routed_by, "registry.fallback": fallback})
                result = invoke(provider)
        except VERSION_FAILURES as exc:
            self.collector.record(tracked, version, time.perf_counter() - started, False,
                                  exc.code, api_key=api_key)
            raise
        latency = time.perf_counter() - started
        cost = self._record_success(model, route, version, latency, result.usage, api_key)
        return Served(model, version, result, latency, route, fallback, cost)

    def _record_success(self, model: str, route: Route, version: str, latency: float,
                        usage: Usage | None, api_key: str | None) -> int | None:
        """Count one answered call with its cost (micro-USD, returned; None: no price)."""
        tracked = self._tracked(model, route)
        if usage is None:
            self.collector.record(tracked, version, latency, True, api_key=api_key)
            return None
        cost = usage_cost(self.prices, model, version, usage)
        self.collector.record(tracked, version, latency, True, None, usage.input_tokens,
                              usage.output_tokens, total_tokens=usage.total_tokens,
                              cost=cost or 0, api_key=api_key)
        if cost and self.budgets is not None:
            self.budgets.spent(model, api_key, cost)
        return cost

    def text_models(self, limit: int = 200) -> list[dict[str, Any]]:
        """Models with a version whose provider generates text, with their aliases: what the
        chat protocols can call (``GET /v1/models``). At most ``limit`` models."""
        found: list[dict[str, Any]] = []
        token = None
        while len(found) < limit:
            models, token = self.registry.list_models(limit=100, page_token=token)
            for model in models:
                versions, _ = self.registry.list_versions_page(model["name"], limit=100)
                text = [v for v in versions if self._generates_text(v["provider"])]
                if text:
                    found.append({"name": model["name"], "created_at": model["created_at"],
                                  "aliases": sorted(a for v in text for a in v["aliases"])})
            if token is None:
                break
        return found[:limit]

    def _generates_text(self, provider: str) -> bool:
        try:
            return self.loader.provider_class(provider).generates_text
        except RegistryError:  # a plug-in no longer installed
            return False

    # -- streams ----------------------------------------------------------------------------

    def chat_stream(self, model: str, request: ChatRequest, *, version: str | None = None,
                    key: str | None = None, api_key: str | None = None) -> "ChatStream":
        """Open a streamed answer. The first piece is awaited here, so that a failure before
        any text reaches the client is an ordinary error, retried once on the stable version
        as predict is; the in-flight slot is held until the stream ends or is closed."""
        self._check_budget(model, api_key)
        slot = ExitStack()
        slot.enter_context(self.inflight.hold(model))
        try:
            route = self.route(model, version, key)
            try:
                return self._open(model, route.version, request, route, False, slot, api_key)
            except VERSION_FAILURES:
                stable = self._fallback_version(route)
                if stable is None:
                    raise
                return self._open(model, stable, request, route, True, slot, api_key)
        except BaseException:
            slot.close()
            raise

    def _open(self, model: str, version: str, request: ChatRequest, route: Route,
              fallback: bool, slot: ExitStack, api_key: str | None) -> "ChatStream":
        started = time.perf_counter()
        try:
            provider = self.loader.get(model, version)
            started = time.perf_counter()
            pieces = provider.chat_stream(request)
            first = next(pieces, None)
        except VERSION_FAILURES as exc:
            self.collector.record(self._tracked(model, route), version,
                                  time.perf_counter() - started, False, exc.code,
                                  api_key=api_key)
            raise
        stream = ChatStream(self, model, version, route, fallback, pieces, first, started,
                            slot.pop_all(), api_key)
        shadow = self._shadow_of(model, version, route)
        if shadow is not None:     # mirrored once the stream ended complete (see _end)
            stream.mirror_to(shadow, lambda p: p.chat(request),
                             lambda: _conversation(request))
        return stream


def _conversation(request: ChatRequest) -> list[dict[str, str]]:
    """A chat call's input as the shadow report shows it."""
    return [{"role": m.role, "text": m.text} for m in request.messages]


class ChatStream:
    """The pieces of one streamed answer, tracked: its end (complete, failed, or closed early
    by a client that went away) is recorded once, the provider call is closed and the
    in-flight slot released. Callers iterate it and must ``close()`` it (WSGI servers do)."""

    def __init__(self, gateway: Gateway, model: str, version: str, route: Route, fallback: bool,
                 pieces: Iterator[Delta], first: Delta | None, started: float,
                 slot: ExitStack, api_key: str | None = None) -> None:
        self.model = model
        self.version = version
        self.route = route
        self.fallback = fallback
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.cost: int | None = None   # micro-USD, known once the stream ended complete
        self.api_key = api_key
        self.ttft: float | None = time.perf_counter() - started if first is not None else None
        self._gateway = gateway
        self._pieces = pieces
        self._first = first
        self._started = started
        self._slot = slot
        self._finished = first is None
        # issue 19: (shadow, the call to mirror, its input) when this answer is mirrored
        self._mirror: tuple[ShadowRecord, Callable[[ModelProvider], Prediction],
                            Callable[[], Any]] | None = None
        self._text: list[str] = []

        if first is None:
            self._end(None)

    def mirror_to(self, shadow: ShadowRecord, invoke: Callable[[ModelProvider], Prediction],
                  example: Callable[[], Any]) -> None:
        """Mirror this answer to ``shadow`` when it ends complete: its text is kept until then,
        and the candidate is asked the same conversation (unstreamed) afterwards."""
        if not self._finished:
            self._mirror = (shadow, invoke, example)

    def __iter__(self) -> "ChatStream":
        return self

    def __next__(self) -> Delta:
        if self._first is not None:
            piece, self._first = self._first, None
        elif self._finished:
            raise StopIteration
        else:
            try:
                piece = next(self._pieces)
            except StopIteration:
                self._end(None)
                raise
            except BaseException as exc:
                self._end(exc)
                raise
        self.usage = piece.usage or self.usage
        self.finish_reason = piece.finish_reason or self.finish_reason
        if self._mirror is not None:
            self._text.append(piece.text)
        return piece

    def close(self) -> None:
        """The consumer stopped: if the answer was not complete, the client went away."""
        if not self._finished:
            self._end("disconnected")

    def _end(self, outcome: BaseException | str | None) -> None:
        self._finished = True
        self._first = None
        close = getattr(self._pieces, "close", None)  # generators have it; plain iterators not
        try:
            if close is not None:
                close()
        finally:
            self._slot.close()
        latency = time.perf_counter() - self._started
        gateway, version = self._gateway, self.version
        tracked = gateway._tracked(self.model, self.route)
        if outcome is None:
            self.cost = gateway._record_success(self.model, self.route, version, latency,
                                                self.usage, self.api_key)
            if self._mirror is not None and gateway.mirror is not None:
                shadow, invoke, example = self._mirror
                gateway.mirror.submit(Mirror(shadow, invoke, version, "".join(self._text),
                                             latency, self.usage, example, self.cost))
        elif isinstance(outcome, VERSION_FAILURES):
            gateway.collector.record(tracked, version, latency, False, outcome.code,
                                     api_key=self.api_key)
        prometheus.observe_stream(tracked, version, self.ttft, outcome == "disconnected")
