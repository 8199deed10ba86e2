"""The statistical judge of a canary step: is the new version worse than the stable one?

Chosen per deployment with ``"analysis": {"judge": "statistical"}`` (the threshold rules of
``deployment.analysis`` stay the default). Both versions serve live traffic side by side during
a canary step, so their requests since the step started are two samples of the same traffic:

* **Errors** are two proportions, compared with Fisher's exact test (one-sided: is the new
  version's error proportion greater?). The test is exact, so it stays valid with the handful
  of failures a canary sees; the evidence also holds each rate's Wilson 95% interval.
* **Latency** is compared with the Mann–Whitney U rank test (one-sided: does the new version
  tend to answer slower?), which needs no assumption about the shape of latency distributions
  (long-tailed, multi-modal). A significant shift fails the step only when it also matters in
  practice: the median ratio reaches ``min_latency_ratio`` and the medians differ by at least
  ``min_latency_shift_s`` (sub-millisecond latencies differ "significantly" by jitter alone).

Significance level: ``alpha`` (default 0.05) is the family-wise error rate of one verdict; the
two tests each use ``alpha / 2`` (Bonferroni). A verdict is repeated at every tick, so over a
long step the chance of a false failure grows; ``min_samples`` and the effect floors keep it
small in practice.

Minimum sample size: below ``min_samples`` requests on either side the verdict is
``inconclusive`` — never ``pass``, and never ``fail`` either (the tests are still computed and
shown in the evidence); past the step's deadline a canary then pauses for a human. A ``pass``
needs both sides at ``min_samples`` after ``interval_s``, with neither test significant.

Where the latency samples live: in the tracker's latency histograms (``tracking.metrics_collector``),
the same 10 s buckets the percentiles come from. They are written by every server process and
stored in the database, so the judge of any process, before or after a restart, sees every
request of the step. Each latency is kept to its log bucket (within 0.5%), which the rank test
treats as ties (with the tie correction). The sample a test sees is bounded: a version with more
than ``max_samples`` requests in the window contributes a uniform random subsample of that size,
drawn without replacement from its histogram (a reservoir of the step, seeded so a verdict is
reproducible).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deployment.verdicts import (FAIL, INCONCLUSIVE, PASS, Check, Verdict, cost_check,
                                 window_metrics)
from deployment.deployment_strategy import AnalysisSettings
from shared.lazy_import import lazy_module
from tracking.performance_tracker import PerformanceTracker

stats = lazy_module("scipy.stats")   # ~1 s to import: see shared/lazy_import.py

_SEED = 19   # subsampling seed: the same data gives the same verdict


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None without trials)."""
    if n <= 0:
        return None
    ci = stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def error_test(c_fail: int, c_n: int, s_fail: int, s_n: int) -> dict[str, Any]:
    """Fisher's exact test, one-sided: is the candidate's error proportion greater?"""
    table = [[c_fail, c_n - c_fail], [s_fail, s_n - s_fail]]
    odds, p = stats.fisher_exact(table, alternative="greater")
    c_rate, s_rate = c_fail / c_n, s_fail / s_n
    return {"test": "fisher_exact (one-sided, greater)", "p_value": float(p),
            "candidate_rate": c_rate, "stable_rate": s_rate,
            "difference": c_rate - s_rate, "odds_ratio": _finite(odds),
            "candidate_ci95": wilson(c_fail, c_n), "stable_ci95": wilson(s_fail, s_n)}


def subsample(values: np.ndarray, counts: np.ndarray, limit: int) -> np.ndarray:
    """The latencies of a histogram, at most ``limit`` of them drawn without replacement."""
    counts = counts.astype(np.int64)
    if counts.sum() > limit:
        counts = np.random.default_rng(_SEED).multivariate_hypergeometric(counts, limit)
    return np.repeat(values, counts)


def latency_test(candidate: np.ndarray, stable: np.ndarray) -> dict[str, Any]:
    """Mann–Whitney U, one-sided: does the candidate tend to be slower?"""
    result = stats.mannwhitneyu(candidate, stable, alternative="greater", method="asymptotic")
    n1, n2 = candidate.size, stable.size
    c_med, s_med = float(np.median(candidate)), float(np.median(stable))
    return {"test": "mann_whitney_u (one-sided, greater)", "p_value": float(result.pvalue),
            "u": float(result.statistic), "n_candidate": int(n1), "n_stable": int(n2),
            # the probability that a random candidate request is slower than a stable one
            "prob_slower": float(result.statistic) / (n1 * n2),
            "candidate_median": c_med, "stable_median": s_med,
            "median_ratio": c_med / s_med if s_med > 0 else None,
            "median_shift_s": c_med - s_med}


def judge(tracker: PerformanceTracker, model: str, candidate: str, stable: str | None,
          settings: AnalysisSettings, elapsed_s: float) -> Verdict:
    """The statistical verdict of ``candidate`` against ``stable`` since the step started."""
    window, c, s, evidence = window_metrics(tracker, model, candidate, stable, elapsed_s,
                                            settings)
    alpha = settings.alpha
    evidence.update(judge="statistical", alpha=alpha, alpha_per_test=alpha / 2,
                    min_samples=settings.min_samples)
    if s is None:
        return Verdict(INCONCLUSIVE, "the statistical judge needs a stable version serving "
                                     "side by side", evidence)
    checks: list[Check] = []
    if c["requests"] and s["requests"]:
        errors = error_test(c["failures"], c["requests"], s["failures"], s["requests"])
        evidence["errors"] = errors
        checks.append(Check("error_rate_test", errors["p_value"], alpha / 2,
                            errors["p_value"] >= alpha / 2,
                            f"{c['failures']}/{c['requests']} vs "
                            f"{s['failures']}/{s['requests']}"))
        hists = tracker.latency_histograms(model, [candidate, stable], window)
        if candidate in hists and stable in hists:
            latency = latency_test(subsample(*hists[candidate], settings.max_samples),
                                   subsample(*hists[stable], settings.max_samples))
            evidence["latency"] = latency
            ratio = latency["median_ratio"]
            slower = (latency["p_value"] < alpha / 2 and ratio is not None
                      and ratio >= settings.min_latency_ratio
                      and latency["median_shift_s"] >= settings.min_latency_shift_s)
            checks.append(Check("latency_rank_test", latency["p_value"], alpha / 2, not slower,
                                f"median {latency['candidate_median']:.4g}s vs "
                                f"{latency['stable_median']:.4g}s"))
    cost = cost_check(tracker, model, c, s, stable, settings, window, evidence)
    if cost is not None:
        checks.append(cost)
    evidence["checks"] = [check.as_dict() for check in checks]
    short = [f"{name} {m['requests']}/{settings.min_samples}"
             for name, m in ((candidate, c), (stable, s)) if m["requests"] < settings.min_samples]
    if short:
        return Verdict(INCONCLUSIVE, "waiting for data (statistical judge): "
                                     + ", ".join(short) + " requests", evidence)
    failing = [check for check in checks if not check.ok]
    if failing:
        reasons = "; ".join(f"{f.name} {f.value:.4g} > {f.threshold:g} ({f.note})"
                            if f.name == "cost_ratio" else
                            f"{f.name} p={f.value:.3g} < {f.threshold:g} ({f.note})"
                            for f in failing)
        return Verdict(FAIL, f"{candidate} is worse than {stable}: {reasons}", evidence,
                       failing[0])
    if elapsed_s < settings.interval_s:
        return Verdict(INCONCLUSIVE, f"waiting for the interval: {elapsed_s:.1f}/"
                                     f"{settings.interval_s:g} s", evidence)
    return Verdict(PASS, f"{candidate} is not significantly worse than {stable} "
                         f"({c['requests']} vs {s['requests']} requests, alpha {alpha:g})",
                   evidence)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
