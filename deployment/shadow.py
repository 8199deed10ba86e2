"""Shadow deployments (issue 19): live requests also sent to a candidate nobody sees.

A shadow (``"strategy": "shadow"``) names a model's candidate version, the share of live
requests to mirror (``sample_percent``) and when it ends (``duration_s`` and/or
``max_requests``). Why it is built this way:

* **The user never waits for the mirror.** Every protocol (predict, OpenAI and Gemini chat,
  streamed or not, Open Inference) passes through ``Gateway.serve`` or a ``ChatStream``;
  there, after the primary answered (a stream: after its last piece), the gateway hands the
  same provider call to the mirror: :meth:`ShadowMirror.pick` (a coin flip) and
  :meth:`ShadowMirror.submit` (a ``put_nowait`` on a bounded queue), nothing else. A full
  queue drops the mirror and counts it (``dropped``); a fixed pool of ``SHADOW_CONCURRENCY``
  worker threads per process calls the candidate, so a slow candidate can hold neither
  request threads nor unbounded memory.
* **Kept apart.** The candidate's calls go straight to the loaded provider, never through
  the metrics collector: shadow latency and errors feed no canary gate, no live watcher, no
  alert. Each mirrored pair's comparison is one row of ``shadow_pairs``, written in batches
  (one transaction a second per process, by the background ticker, off the request path), so
  every server process adds to one report that survives restarts. The ticker also ends the
  shadows whose duration or request count is reached.
* **Compared without a model call.** Numeric outputs (ONNX): agreement within a tolerance
  (``numpy.allclose``, rtol 1e-3, atol 1e-5) and arg-max agreement along the last axis.
  Text (LLMs): exact match, and a similarity of the normalised texts (lower case, collapsed
  whitespace) by ``difflib.SequenceMatcher.ratio``; a pair agrees when exact or at least
  ``TEXT_AGREEMENT`` similar. Plus both latencies, the candidate's errors, tokens and cost (both sides priced
  as the gateway prices a call, over the pairs where both have a price).
* **Inputs are private.** Examples (input and both outputs) are stored only when
  ``SHADOW_STORE_INPUTS`` is on; otherwise the worst disagreements show only their numbers.

The report gives agreement rates with Wilson 95% intervals. A running shadow can be promoted
into a canary (the deployment manager then takes over).
"""
from __future__ import annotations

import difflib
import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from deployment.judge import wilson
from deployment.records import ShadowPair, ShadowRecord
from deployment.shadow_store import ShadowStore
from deployment.usage_cost import usage_cost
from errors import FailedPrecondition, InvalidArgument, NotFound
from models.base_model import ModelProvider, Prediction, Usage
from models.model_loader import ModelLoader
from registry.model_registry import ModelRegistry
from storage.schema import iso, utcnow
from tracking.pricing import PriceBook, cost_fields

log = logging.getLogger(__name__)

RTOL, ATOL = 1e-3, 1e-5
TEXT_AGREEMENT = 0.9
WORST_EXAMPLES = 5
_SPACES = re.compile(r"\s+")


# --- comparing one pair ----------------------------------------------------------------------

def _normalise(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower()


def _numeric(output: Any) -> np.ndarray | None:
    """The first numeric output as an array (ONNX answers a list, or {name: list, label})."""
    if isinstance(output, dict):
        output = next((v for k, v in output.items() if k != "label"), None)
    try:
        arr = np.asarray(output, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.size else None


def compare(primary: Any, shadow: Any) -> dict[str, Any]:
    """``agree`` (1/0) and the measures behind it, for text or numeric outputs."""
    if isinstance(primary, str) and isinstance(shadow, str):
        exact = primary == shadow
        similarity = difflib.SequenceMatcher(None, _normalise(primary),
                                             _normalise(shadow)).ratio()
        return {"agree": int(exact or similarity >= TEXT_AGREEMENT), "similarity": similarity,
                "argmax_agree": None, "max_abs_diff": None, "exact": exact}
    a, b = _numeric(primary), _numeric(shadow)
    if a is None or b is None or a.shape != b.shape:
        same = primary == shadow
        return {"agree": int(same), "similarity": float(same), "argmax_agree": None,
                "max_abs_diff": None, "exact": same}
    diff = float(np.max(np.abs(a - b)))
    argmax = bool(np.array_equal(np.argmax(a, axis=-1), np.argmax(b, axis=-1)))
    close = bool(np.allclose(a, b, rtol=RTOL, atol=ATOL))
    return {"agree": int(close), "similarity": 1.0 / (1.0 + diff), "argmax_agree": int(argmax),
            "max_abs_diff": diff, "exact": diff == 0.0}


# --- the mirror: sampling, the bounded queue, the workers -------------------------------------

@dataclass(frozen=True)
class Mirror:
    """One mirrored call waiting for a worker: the same ``invoke`` the gateway ran on the
    primary (``predict``, ``chat`` or ``infer``), to run on the candidate, and what the
    primary answered. ``example`` gives the call's input for the report, only if allowed."""

    shadow: ShadowRecord
    invoke: Callable[[ModelProvider], Prediction]
    version: str
    output: Any
    latency: float
    usage: Usage | None
    example: Callable[[], Any] | None = None
    cost: int | None = None      # the primary's micro-USD; None without a price


class ShadowMirror:
    """Per process: which shadows run, the sampling, the queue and the worker pool.

    Every protocol's call reaches it from the one place they all pass, the gateway
    (``Gateway.serve`` and the end of a ``ChatStream``): :meth:`pick` (a dict lookup and a
    coin flip) then :meth:`submit` (a ``put_nowait``). :meth:`refresh` (which shadows run,
    ending those that are due, storing the compared pairs) is a duty of the server's
    background ticker (``api/background.py``); a script calls it, or ``ShadowManager.tick``.
    """

    def __init__(self, store: ShadowStore, loader: ModelLoader, *, queue_size: int = 256,
                 concurrency: int = 2, store_inputs: bool = False,
                 start_threads: bool = True, start_on_shadow: bool = False,
                 clock: Callable[[], datetime] = utcnow, prices: PriceBook | None = None) -> None:
        self.store = store
        self.loader = loader
        self.prices = prices              # prices the candidate's calls, as the gateway does
        self.store_inputs = store_inputs
        self.clock = clock
        self.queue: queue.Queue[Mirror | None] = queue.Queue(maxsize=max(1, queue_size))
        self._active: dict[str, ShadowRecord] = {}        # model → running shadow
        self._sent: dict[str, int] = {}                    # shadow id → mirrors queued here
        self._dropped: dict[str, int] = {}                 # not yet added to the database
        self._pairs: list[dict[str, Any]] = []             # compared, not yet stored
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.concurrency = max(1, concurrency)
        self.start_on_shadow = start_on_shadow     # start the workers when a shadow starts
        self._threads: list[threading.Thread] = []
        if start_threads:
            self.start()

    def start(self) -> None:
        """Start the workers (once): a server does so at start-up, a shadow started in this
        process does too."""
        with self._lock:
            if self._threads or self._stop.is_set():
                return
            for i in range(self.concurrency):
                thread = threading.Thread(target=self._work, name=f"shadow-worker-{i}",
                                          daemon=True)
                thread.start()
                self._threads.append(thread)

    def pick(self, model: str, served_version: str) -> ShadowRecord | None:
        """The shadow this call is mirrored to, or None: the model has a running shadow whose
        candidate did not serve the call, and the sample's coin flip says yes. Never blocks."""
        shadow = self._active.get(model)
        if shadow is None or served_version == shadow.version:
            return None
        if random.random() * 100.0 >= shadow.sample_percent:
            return None
        return shadow

    def submit(self, mirror: Mirror) -> bool:
        """Queue a picked call (the primary answered already). Never blocks: a full queue
        drops it and counts it. True when queued."""
        shadow = mirror.shadow
        with self._lock:
            limit = shadow.max_requests
            if limit is not None and self._sent.get(shadow.id, 0) >= limit:
                return False
            try:
                self.queue.put_nowait(mirror)
            except queue.Full:
                self._dropped[shadow.id] = self._dropped.get(shadow.id, 0) + 1
                return False
            self._sent[shadow.id] = self._sent.get(shadow.id, 0) + 1
        return True

    def mirror_one(self, mirror: Mirror) -> None:
        """Call the candidate, compare, keep the pair for the next flush (a worker's job;
        public for tests)."""
        shadow = mirror.shadow
        pair: dict[str, Any] = {"shadow_id": shadow.id, "primary_version": mirror.version,
                                "primary_latency": mirror.latency,
                                "primary_tokens": _tokens(mirror.usage),
                                "primary_cost_micro_usd": mirror.cost}
        started = time.perf_counter()
        try:
            provider = self.loader.get(shadow.model, shadow.version)
            started = time.perf_counter()
            result = mirror.invoke(provider)
        except Exception as exc:  # noqa: BLE001 — any candidate failure is a shadow error
            pair.update(shadow_latency=time.perf_counter() - started,
                        shadow_error=getattr(exc, "code", type(exc).__name__)[:64])
        else:
            pair["shadow_latency"] = time.perf_counter() - started
            pair["shadow_tokens"] = _tokens(result.usage)
            pair["shadow_cost_micro_usd"] = usage_cost(self.prices, shadow.model,
                                                       shadow.version, result.usage)
            measures = compare(mirror.output, result.output)
            pair.update(agree=measures["agree"], argmax_agree=measures["argmax_agree"],
                        similarity=measures["similarity"],
                        max_abs_diff=measures["max_abs_diff"])
            if self.store_inputs and not measures["exact"]:
                pair["example"] = _jsonable({
                    "input": mirror.example() if mirror.example is not None else None,
                    "primary_output": mirror.output, "shadow_output": result.output})
        with self._lock:
            self._pairs.append(pair)

    def flush(self) -> None:
        """Store the compared pairs and add the dropped mirrors, in one transaction: the
        ticker does it every second, so a fast candidate costs one write a second, not one
        per mirror."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            dropped, self._dropped = self._dropped, {}
        if pairs or dropped:
            try:
                self.store.add(pairs, dropped)
            except Exception:
                with self._lock:   # keep them for the next flush
                    self._pairs[:0] = pairs
                    for key, n in dropped.items():
                        self._dropped[key] = self._dropped.get(key, 0) + n
                raise

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if item is not None:   # None: close() waking an idle worker
                    self.mirror_one(item)
            except Exception:  # noqa: BLE001 — a worker must survive a storage hiccup
                log.exception("shadow mirror failed")
            finally:
                self.queue.task_done()

    def refresh(self) -> list[str]:
        """Store this process's pairs and drops, end the shadows past their deadline or
        request count (each with its event), and reload the running ones. Returns the ids
        this call ended."""
        self.flush()
        now = self.clock()
        active: dict[str, ShadowRecord] = {}
        ended: list[str] = []
        for shadow in self.store.running():
            why = None
            if shadow.ends_at is not None and now >= shadow.ends_at:
                why = "its duration is over"
            elif shadow.max_requests is not None and \
                    self.store.count(shadow.id) >= shadow.max_requests:
                why = f"{shadow.max_requests} requests mirrored"
            if why is None:
                active[shadow.model] = shadow
            elif self.store.finish(shadow.id, "finished", reason=why):
                ended.append(shadow.id)
        self._active = active
        return ended

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued mirror is stored (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        self.flush()

    def close(self) -> None:
        self._stop.set()
        for _ in self._threads:   # idle workers wake now, not at their next poll (0.5 s)
            try:
                self.queue.put_nowait(None)
            except queue.Full:    # then they are busy, and see the stop after their mirror
                break
        for thread in self._threads:
            thread.join(timeout=2)
        try:
            self.flush()
        except Exception:  # noqa: BLE001 — shutting down: the database may be gone
            log.warning("shadow pairs not stored at shutdown", exc_info=True)


def _tokens(usage: Usage | None) -> int | None:
    return usage.total_tokens if usage else None


def _jsonable(value: Any) -> Any:
    """Tensors (Open Inference answers numpy arrays) as lists, for the stored example."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --- starting, reporting, promoting -----------------------------------------------------------

class ShadowManager:
    """Starts, reads, stops and promotes shadows; public methods answer dicts (the records'
    ``as_dict()``)."""

    def __init__(self, store: ShadowStore, registry: ModelRegistry, mirror: ShadowMirror,
                 traffic_of: Any) -> None:
        self.store = store
        self.registry = registry
        self.mirror = mirror
        self.traffic_of = traffic_of      # model → the live traffic table or None

    def start(self, model: str, version: str, sample_percent: float | None,
              duration_s: float | None, max_requests: int | None, reason: str = "",
              actor: str = "system") -> dict[str, Any]:
        if sample_percent is None or not 0 < float(sample_percent) <= 100:
            raise InvalidArgument("a shadow needs sample_percent in (0, 100]")
        if duration_s is None and max_requests is None:
            raise InvalidArgument("a shadow needs duration_s or max_requests (or both)")
        if duration_s is not None and not 0 < duration_s <= 30 * 86400:
            raise InvalidArgument("duration_s must be in (0, 2592000]")
        if max_requests is not None and not 0 < max_requests <= 10_000_000:
            raise InvalidArgument("max_requests must be in 1..10000000")
        exact = self.registry.get_version(model, version)["version"]
        table = self.traffic_of(model)
        weights = dict(table.weights) if table is not None else {}
        if not weights:   # never deployed: the router serves the highest stable version
            stable = self.registry.highest_stable([model]).get(model)
            weights = {stable: 100} if stable else {}
        if not weights:
            raise FailedPrecondition(f"model '{model}' serves nothing yet: a shadow mirrors "
                                     "live traffic")
        if weights == {exact: 100}:
            raise FailedPrecondition(f"version '{exact}' already serves all of '{model}'")
        if any(s.model == model for s in self.store.running()):
            raise FailedPrecondition(f"model '{model}' already has a running shadow")
        now = self.mirror.clock()
        ends_at = now + timedelta(seconds=duration_s) if duration_s is not None else None
        shadow = self.store.create(model, exact, float(sample_percent), max_requests, ends_at,
                                   reason, actor)
        if self.mirror.start_on_shadow:
            self.mirror.start()
        self.mirror.refresh()
        return shadow.as_dict()

    def _record(self, shadow_id: str) -> ShadowRecord:
        shadow = self.store.get(shadow_id)
        if shadow is None:
            raise NotFound(f"no shadow deployment '{shadow_id}'")
        return shadow

    def get(self, shadow_id: str) -> dict[str, Any]:
        return self._record(shadow_id).as_dict()

    def tick(self) -> list[str]:
        """End the shadows whose duration or request count is reached (what the server's
        background ticker does every second; a script calls it). Returns the ids ended."""
        return self.mirror.refresh()

    def stop(self, shadow_id: str, actor: str = "system") -> dict[str, Any]:
        self._record(shadow_id)
        self.store.finish(shadow_id, "finished", actor=actor, reason=f"stopped by {actor}")
        self.mirror.refresh()
        return self.get(shadow_id)

    def promote(self, shadow_id: str, deploy: Any, analysis: dict[str, Any] | None = None,
                actor: str = "system") -> str:
        """End the shadow and start a canary of its candidate; returns the deployment id."""
        shadow = self._record(shadow_id)
        if shadow.state == "promoted":
            raise FailedPrecondition(f"shadow {shadow_id} was already promoted")
        deployment_id = deploy(shadow.model, shadow.version, "canary", None, analysis,
                               reason=f"promoted from shadow {shadow_id}", actor=actor)
        self.store.finish(shadow_id, "promoted", running_only=False, actor=actor,
                          reason=f"promoted into canary {deployment_id}")
        self.mirror.refresh()
        return deployment_id

    def report(self, shadow_id: str) -> dict[str, Any]:
        self.mirror.flush()      # this process's compared pairs, not yet stored
        shadow = self._record(shadow_id)
        return {"shadow": shadow.as_dict(),
                **summarize(self.store.pairs(shadow_id), shadow.dropped)}


def _rate(hits: int, n: int) -> dict[str, Any]:
    return {"rate": hits / n if n else None, "n": n, "ci95": wilson(hits, n)}


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.quantile(arr, [0.5, 0.95, 0.99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(arr.mean())}


def _cost(answered: list[ShadowPair]) -> dict[str, Any]:
    """Both sides' cost over the pairs where both were priced (the same calls, so the ratio
    is what the candidate would cost instead of the primary)."""
    priced = [p for p in answered
              if p.primary_cost_micro_usd is not None and p.shadow_cost_micro_usd is not None]
    primary = sum(p.primary_cost_micro_usd or 0 for p in priced)
    shadow = sum(p.shadow_cost_micro_usd or 0 for p in priced)
    return {"priced_pairs": len(priced),
            "primary": cost_fields(primary if priced else None),
            "shadow": cost_fields(shadow if priced else None),
            "ratio": shadow / primary if primary else None}


def summarize(pairs: list[ShadowPair], dropped: int) -> dict[str, Any]:
    """The report of a shadow's stored pairs: agreement with Wilson intervals, latency,
    errors, tokens, cost and the worst disagreements."""
    answered = [p for p in pairs if p.shadow_error is None]
    argmax = [p for p in answered if p.argmax_agree is not None]
    errors: dict[str, int] = {}
    for p in pairs:
        if p.shadow_error is not None:
            errors[p.shadow_error] = errors.get(p.shadow_error, 0) + 1
    worst = sorted((p for p in answered if not p.agree or (p.similarity or 1.0) < 1.0),
                   key=lambda p: (p.agree, p.similarity if p.similarity is not None else 0.0))
    similarities = [p.similarity for p in answered if p.similarity is not None]
    return {
        "mirrored": len(pairs), "dropped": dropped,
        "agreement": _rate(sum(p.agree for p in answered), len(answered)),
        "argmax_agreement": _rate(sum(p.argmax_agree for p in argmax), len(argmax))
        if argmax else None,
        "mean_similarity": float(np.mean(similarities)) if similarities else None,
        "shadow_errors": {**_rate(len(pairs) - len(answered), len(pairs)), "kinds": errors},
        "latency": {"primary": _quantiles([p.primary_latency for p in pairs]),
                    "shadow": _quantiles([p.shadow_latency for p in answered])},
        "tokens": {"primary": sum(p.primary_tokens or 0 for p in pairs),
                   "shadow": sum(p.shadow_tokens or 0 for p in answered)},
        "cost": _cost(answered),
        "worst_disagreements": [
            {"at": iso(p.at), "agree": bool(p.agree),
             "similarity": p.similarity, "max_abs_diff": p.max_abs_diff,
             "argmax_agree": None if p.argmax_agree is None else bool(p.argmax_agree),
             "primary_latency": p.primary_latency, "shadow_latency": p.shadow_latency,
             "example": p.example}
            for p in worst[:WORST_EXAMPLES]],
    }
