"""A/B experiments (issue 19): a fixed traffic split, per-variant metrics, a defensible verdict.

``"strategy": "experiment"`` with ``variants`` (``{version: weight}``, the first is the
control), a ``duration_s`` and/or a ``sample_size`` (requests per variant), and a
``primary_metric`` (``error_rate`` or ``latency``):

* **A fixed split, sticky.** Starting writes the traffic table to the variants' weights and
  nothing changes it until the experiment ends: requests carrying a routing ``key`` land on
  the same variant every time (the router hashes the key into fixed buckets, the same in
  every process). No rollout of the model starts meanwhile: ``refuse_rollout`` is the
  deployment manager's ``before_deploy`` hook, and an experiment refuses to start during one.
* **Per-variant metrics** are the production metrics of each version since the start (the
  variants serve real users, so their numbers feed alerts like any other traffic).
* **The verdict**, computed while running (``running: true``) and stored when the experiment
  ends, compares each variant with the control at ``alpha`` (Bonferroni-divided by the
  number of comparisons):

  - ``error_rate``: the two-proportion z-test (computed as scipy's chi-square test of the
    2×2 table without continuity correction, which is the same test); effect size: the
    difference in error rates, with its Wald confidence interval;
  - ``latency``: Welch's t-test on the latencies (from the stored histograms, a uniform
    subsample of at most ``MAX_SAMPLES`` per variant, see ``deployment.judge``); effect size:
    the difference in mean latency, with Welch's confidence interval.

  A difference is claimed only when its p-value is below the level; otherwise the verdict is
  ``no significant difference`` — absence of evidence, never a winner by default.
* **Ending** is a duty of the server's background ticker (:meth:`ExperimentManager.tick`,
  every 2 s; reading the results checks too): past ``duration_s`` or with every variant at
  ``sample_size`` the verdict is frozen with an ``experiment.finished`` event and the traffic
  goes back to the control. The winner is deployed only on request
  (``promote``).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

import numpy as np
from sqlalchemy import Connection

from deployment.experiment_store import RUNNING, ExperimentStore
from deployment.records import ExperimentRecord
from deployment.judge import subsample
from deployment.traffic_store import check_weights
from deployment.traffic_switch import TrafficSwitch
from errors import FailedPrecondition, InvalidArgument, NotFound
from registry.model_registry import ModelRegistry
from shared.lazy_import import lazy_module
from storage.schema import utcnow
from tracking.performance_tracker import PerformanceTracker

stats = lazy_module("scipy.stats")   # ~1 s to import: see shared/lazy_import.py

METRICS = ("error_rate", "latency")
MAX_VARIANTS = 4
MAX_SAMPLES = 20_000


def proportion_test(c_fail: int, c_n: int, t_fail: int, t_n: int,
                    alpha: float) -> dict[str, Any]:
    """Two-proportion z-test of treatment vs control error rates (two-sided)."""
    pc, pt = c_fail / c_n, t_fail / t_n
    table = np.array([[t_fail, t_n - t_fail], [c_fail, c_n - c_fail]])
    if (table.sum(axis=0) == 0).any():          # no failures (or no successes) anywhere
        p = 1.0
    else:
        p = float(stats.chi2_contingency(table, correction=False).pvalue)
    z = float(stats.norm.ppf(1 - alpha / 2))
    se = float(np.sqrt(pt * (1 - pt) / t_n + pc * (1 - pc) / c_n))
    diff = pt - pc
    return {"test": "two-proportion z-test", "p_value": p, "control": pc, "treatment": pt,
            "effect": diff, "effect_name": "difference in error rate",
            "ci": [diff - z * se, diff + z * se]}


def welch_test(control: np.ndarray, treatment: np.ndarray, alpha: float) -> dict[str, Any]:
    """Welch's t-test of treatment vs control mean latency (two-sided)."""
    result = stats.ttest_ind(treatment, control, equal_var=False)
    ci = result.confidence_interval(1 - alpha)
    return {"test": "welch t-test", "p_value": float(result.pvalue),
            "control": float(control.mean()), "treatment": float(treatment.mean()),
            "effect": float(treatment.mean() - control.mean()),
            "effect_name": "difference in mean latency (s)",
            "ci": [float(ci.low), float(ci.high)],
            "n_control": int(control.size), "n_treatment": int(treatment.size)}


def verdict(experiment: dict[str, Any], metrics: dict[str, dict[str, Any]],
            latencies: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Each variant against the control on the primary metric; claims only what is
    significant at alpha / (number of comparisons)."""
    control = experiment["control"]
    others = [v for v in experiment["variants"] if v != control]
    level = experiment["alpha"] / max(1, len(others))
    comparisons: list[dict[str, Any]] = []
    for variant in others:
        c, t = metrics.get(control), metrics.get(variant)
        if not c or not t or not c["requests"] or not t["requests"]:
            comparisons.append({"variant": variant, "outcome": "no data"})
            continue
        if experiment["primary_metric"] == "error_rate":
            test = proportion_test(c["failures"], c["requests"], t["failures"], t["requests"],
                                   level)
        elif control in latencies and variant in latencies:
            test = welch_test(subsample(*latencies[control], MAX_SAMPLES),
                              subsample(*latencies[variant], MAX_SAMPLES), level)
        else:
            comparisons.append({"variant": variant, "outcome": "no data"})
            continue
        significant = test["p_value"] < level
        outcome = ("no significant difference" if not significant
                   else "worse" if test["effect"] > 0 else "better")
        comparisons.append({"variant": variant, "outcome": outcome, "significant": significant,
                            "level": level, **test})
    better = [c for c in comparisons if c.get("outcome") == "better"]
    worse = [c for c in comparisons if c.get("outcome") == "worse"]
    if better:
        best = min(better, key=lambda c: c["effect"])
        winner, summary = best["variant"], f"{best['variant']} is better than {control}"
    elif worse and len(worse) == len(others):
        winner, summary = control, f"the control {control} is better than every variant"
    else:
        winner, summary = None, "no significant difference: no claim"
    return {"primary_metric": experiment["primary_metric"], "alpha": experiment["alpha"],
            "winner": winner, "summary": summary, "comparisons": comparisons}


class ExperimentManager:
    """Starts, reads, ends and promotes experiments. Public methods answer dicts (the records'
    ``as_dict()``); ``clock`` is injectable so that tests move time instead of sleeping."""

    def __init__(self, store: ExperimentStore, registry: ModelRegistry,
                 tracker: PerformanceTracker, rollout_active: Callable[[str], bool],
                 switch: TrafficSwitch, clock: Callable[[], datetime] = utcnow) -> None:
        self.switch = switch
        self.store = store
        self.registry = registry
        self.tracker = tracker
        self.rollout_active = rollout_active
        self.clock = clock

    def start(self, model: str, variants: dict[str, int] | None, primary_metric: str | None,
              duration_s: float | None, sample_size: int | None, alpha: float = 0.05,
              reason: str = "", actor: str = "system") -> dict[str, Any]:
        if not isinstance(variants, dict) or not 2 <= len(variants) <= MAX_VARIANTS:
            raise InvalidArgument(f"an experiment needs variants: 2 to {MAX_VARIANTS} versions "
                                  'with weights, e.g. {"1.0.0": 50, "1.1.0": 50} (control first)')
        if primary_metric not in METRICS:
            raise InvalidArgument(f"primary_metric must be one of {', '.join(METRICS)}")
        if duration_s is None and sample_size is None:
            raise InvalidArgument("an experiment needs duration_s or sample_size (or both)")
        if not 0 < alpha < 0.5:
            raise InvalidArgument("alpha must be in (0, 0.5)")
        exact = {self.registry.get_version(model, v)["version"]: w for v, w in variants.items()}
        if len(exact) != len(variants):
            raise InvalidArgument("variants name the same version twice")
        if any(w < 1 for w in exact.values()):
            raise InvalidArgument("every variant needs a weight of at least 1")
        weights = check_weights(exact)
        if self.rollout_active(model):
            raise FailedPrecondition(f"model '{model}' has a rollout in progress")
        if self.store.running_for(model) is not None:
            raise FailedPrecondition(f"model '{model}' already has a running experiment")
        now = self.clock()
        ends_at = now + timedelta(seconds=duration_s) if duration_s is not None else None
        table = self.switch.traffic.get(model)
        with self.switch.transaction() as tx:
            experiment = self.store.insert(tx.conn, model, weights, primary_metric, alpha,
                                           sample_size, ends_at,
                                           dict(table.weights) if table else None, reason,
                                           actor)
            tx.switch(model, weights, experiment.control, actor=actor,
                      reason=f"experiment {experiment.id}", now=now,
                      deployment_id=experiment.id)
        return experiment.as_dict()

    def _finish(self, experiment_id: str, result: dict[str, Any], actor: str,
                why: str) -> bool:
        """Freeze the verdict and put the control back on 100%, in one transaction."""
        with self.switch.transaction() as tx:
            row = self.store.finish(tx.conn, experiment_id, result, actor, why)
            if row is not None:
                tx.switch(row.model, {row.control: 100}, row.control, actor=actor,
                          reason=f"experiment {experiment_id} ended: back to its control",
                          now=self.clock(), deployment_id=experiment_id)
        return row is not None

    def refuse_rollout(self, conn: Connection | None, model: str,
                       _deployment_id: str = "") -> None:
        """The deployment manager's ``before_deploy`` hook (inside the deploy's transaction):
        the split holds while the experiment runs."""
        running = self.store.running_for(model, conn)
        if running is not None:
            raise FailedPrecondition(f"model '{model}' is in experiment {running.id}: stop "
                                     "or promote it first")

    def _record(self, experiment_id: str) -> ExperimentRecord:
        experiment = self.store.get(experiment_id)
        if experiment is None:
            raise NotFound(f"no experiment '{experiment_id}'")
        return experiment

    def get(self, experiment_id: str) -> dict[str, Any]:
        return self._record(experiment_id).as_dict()

    def results(self, experiment_id: str, now: datetime | None = None) -> dict[str, Any]:
        """The experiment with its per-variant metrics and verdict; ends it when due (the
        background ticker does too, see :meth:`tick`, so reading is never required)."""
        return self._results(self._record(experiment_id), now or self.clock())

    def _results(self, experiment: ExperimentRecord, now: datetime) -> dict[str, Any]:
        if experiment.state != RUNNING:
            return {"experiment": experiment.as_dict(), **(experiment.result or {}),
                    "running": False}
        window = max(1.0, (now - experiment.created_at).total_seconds())
        variants = list(experiment.variants)
        found = self.tracker.get_metrics(experiment.model, window=window)
        metrics = {v: found[v] for v in variants if v in found}
        latencies = self.tracker.latency_histograms(experiment.model, variants, window) \
            if experiment.primary_metric == "latency" else {}
        result = {"metrics": metrics,
                  "verdict": verdict(experiment.as_dict(), metrics, latencies)}
        why = _due(experiment, metrics, now)
        if why is not None and self._finish(experiment.id, result, "system", why):
            return {"experiment": self.get(experiment.id), **result, "running": False}
        return {"experiment": experiment.as_dict(), **result, "running": True}

    def tick(self, now: datetime | None = None) -> list[str]:
        """End every running experiment whose duration or sample size is reached, with its
        verdict and event (a background duty of the server, ``api/background.py``; safe in
        several processes: the row lock in ``finish`` lets one of them end it). Returns the
        ids this call ended."""
        now = now or self.clock()
        ended = []
        for experiment in self.store.running():
            if not self._results(experiment, now)["running"]:
                ended.append(experiment.id)
        return ended

    def stop(self, experiment_id: str, actor: str = "system") -> dict[str, Any]:
        """End now: the verdict so far is frozen, the traffic goes back to the control."""
        current = self.results(experiment_id)
        if current["running"]:
            result = {k: current[k] for k in ("metrics", "verdict")}
            self._finish(experiment_id, result, actor, f"stopped by {actor}")
        return self.results(experiment_id)

    def promote(self, experiment_id: str, variant: str, deploy: Callable[..., str],
                actor: str = "system") -> str | None:
        """Deploy ``variant`` (direct) once the experiment ended; None when it is the control,
        which already serves everything again."""
        experiment = self._record(experiment_id)
        if variant not in experiment.variants:
            raise InvalidArgument(f"'{variant}' is not a variant of experiment {experiment_id}")
        if experiment.state == "promoted":
            raise FailedPrecondition(f"experiment {experiment_id} was already promoted")
        self.stop(experiment_id, actor=actor)
        deployment_id = None
        if variant != experiment.control:
            deployment_id = deploy(experiment.model, variant, "direct",
                                   reason=f"promoted from experiment {experiment_id}",
                                   actor=actor)
        self.store.mark_promoted(experiment_id)
        return deployment_id


def _due(experiment: ExperimentRecord, metrics: dict[str, dict[str, Any]],
         now: datetime) -> str | None:
    """Why a running experiment ends now (its duration or its sample size), or None."""
    if experiment.ends_at is not None and now >= experiment.ends_at:
        return "its duration is over"
    size = experiment.sample_size
    if size is not None and all(metrics.get(v, {}).get("requests", 0) >= size
                                for v in experiment.variants):
        return f"every variant served {size} requests"
    return None
