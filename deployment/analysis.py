"""The verdict of one rollout step: pass, fail or inconclusive, with the evidence.

The inputs are the tracking aggregates of the new version and of the stable version over the
step's window (since the step started). The tracker answers from 10 s buckets, so the window
reaches back to the start of the bucket the step began in: a few seconds of the previous step
may count, which only ever adds data of the same new version.

Two judges, chosen per deployment by ``settings.judge``: ``"threshold"`` (the default, the
rules below) and ``"statistical"`` (``deployment.judge``: Fisher's exact test on errors and a
Mann–Whitney U test on latency, with a minimum sample size).

Threshold rules, in order:

1. fewer than ``min_requests`` requests of the new version → inconclusive (waiting for data);
2. any failing check → fail, at once (no need to wait out the interval while users suffer):
   - error rate above ``max_error_rate`` — unless the stable version, with enough requests of
     its own, fails at least as often: then the new version is no worse and the backend is
     the likelier culprit, so the verdict is inconclusive (a human decides after the deadline);
   - p95 latency above ``max_p95_latency`` (when set);
   - p95 above ``max_p95_ratio`` × the stable p95, when both have ``min_requests`` requests,
     and more than ``p95_tolerance_s`` above it in absolute terms;
   - cost per request above ``max_cost_ratio`` × the stable version's (when set). The stable
     side is its cost per request in the step's window, or — when it served fewer than
     ``min_requests`` there, as after a blue-green switch — over the last
     ``cost_baseline_s`` seconds; a stable version that cost nothing is no reference;
3. ``interval_s`` not over yet → inconclusive; else → pass.
"""
from __future__ import annotations

from typing import Any

from deployment.deployment_strategy import AnalysisSettings
from deployment.judge import judge
from deployment.verdicts import (FAIL, INCONCLUSIVE, PASS, Check, Verdict,  # noqa: F401
                                 cost_check, window_metrics)
from tracking.performance_tracker import PerformanceTracker


def _checks(c: dict[str, Any], s: dict[str, Any] | None, settings: AnalysisSettings
            ) -> tuple[list[Check], bool]:
    """All checks, and whether an error-rate breach is excused by an equally bad stable."""
    stable_has_data = s is not None and s["requests"] >= settings.min_requests
    checks: list[Check] = []
    error_rate = c["error_rate"] or 0.0
    excused = False
    ok = error_rate <= settings.max_error_rate
    note = ""
    if not ok and stable_has_data and (s["error_rate"] or 0.0) >= error_rate:
        excused, note = True, "the stable version fails at least as often"
    checks.append(Check("error_rate", error_rate, settings.max_error_rate, ok, note))
    p95 = c["p95_latency"]
    if settings.max_p95_latency is not None and p95 is not None:
        checks.append(Check("p95_latency", p95, settings.max_p95_latency,
                            p95 <= settings.max_p95_latency))
    if (settings.max_p95_ratio is not None and stable_has_data and p95 is not None
            and s["p95_latency"]):
        ratio = p95 / s["p95_latency"]
        breach = (ratio > settings.max_p95_ratio
                  and p95 - s["p95_latency"] > settings.p95_tolerance_s)
        checks.append(Check("p95_latency_ratio", ratio, settings.max_p95_ratio, not breach,
                            f"stable p95 {s['p95_latency']:.6f}s"))
    return checks, excused


def analyze(tracker: PerformanceTracker, model: str, candidate: str, stable: str | None,
            settings: AnalysisSettings, elapsed_s: float) -> Verdict:
    """Judge ``candidate`` against ``stable`` over the last ``elapsed_s`` seconds (the time
    since the step started), by the thresholds or by the statistical judge (settings.judge)."""
    if settings.judge == "statistical":
        return judge(tracker, model, candidate, stable, settings, elapsed_s)
    window, c, s, evidence = window_metrics(tracker, model, candidate, stable, elapsed_s,
                                             settings)
    evidence["judge"] = "threshold"
    if c["requests"] < settings.min_requests:
        return Verdict(INCONCLUSIVE, f"waiting for data: {c['requests']}/"
                                     f"{settings.min_requests} requests of {candidate}",
                       evidence)
    checks, excused = _checks(c, s, settings)
    cost = cost_check(tracker, model, c, s, stable, settings, window, evidence)
    if cost is not None:
        checks.append(cost)
    evidence["checks"] = [check.as_dict() for check in checks]
    failing = [check for check in checks if not check.ok
               and not (excused and check.name == "error_rate")]
    if failing:
        first = failing[0]
        reasons = "; ".join(f"{f.name} {f.value:.4g} > {f.threshold:g}" for f in failing)
        return Verdict(FAIL, f"{candidate} failed analysis: {reasons}", evidence, first)
    if excused:
        return Verdict(INCONCLUSIVE, f"{candidate} error rate {c['error_rate']:.4g} is above "
                                     f"{settings.max_error_rate:g} but no worse than the "
                                     f"stable version's", evidence)
    if elapsed_s < settings.interval_s:
        return Verdict(INCONCLUSIVE, f"waiting for the interval: {elapsed_s:.1f}/"
                                     f"{settings.interval_s:g} s", evidence)
    return Verdict(PASS, f"{candidate} passed analysis: {c['requests']} requests, error rate "
                         f"{error_rate_text(c)}, p95 {latency_text(c)}", evidence)


def error_rate_text(m: dict[str, Any]) -> str:
    return "n/a" if m["error_rate"] is None else f"{m['error_rate']:.4g}"


def latency_text(m: dict[str, Any]) -> str:
    return "n/a" if m["p95_latency"] is None else f"{m['p95_latency']:.4g}s"
