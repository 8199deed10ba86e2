"""The statistical judge of canary analysis (issue 19), on real stored metrics (SQLite and
PostgreSQL) read back through the real tracker, and through the real rollout controller."""
from __future__ import annotations

import numpy as np
import pytest

from deployment.analysis import FAIL, INCONCLUSIVE, PASS, analyze
from deployment.deployment_strategy import AnalysisSettings, make_plan
from errors import InvalidArgument
from tests.test_deployment_manager import Env, env  # noqa: F401  (the fixture)
from tracking.performance_tracker import PerformanceTracker

STAT = {"judge": "statistical", "interval_s": 30, "deadline_s": 120}


def feed(tracker: PerformanceTracker, version: str, latencies: np.ndarray,
         failures: int = 0) -> None:
    for i, latency in enumerate(latencies):
        tracker.track_prediction("m", version, float(latency), success=i >= failures)


def lognormal(n: int, median: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median), 0.3, n)


def judge(tracker: PerformanceTracker, elapsed: float = 60.0, **settings):
    return analyze(tracker, "m", "1.1.0", "1.0.0",
                   AnalysisSettings(**{**STAT, **settings}), elapsed)


def test_twenty_percent_slower_over_500_samples_fails_with_the_numbers(
        tracker: PerformanceTracker):
    feed(tracker, "1.0.0", lognormal(600, 0.050, 1))
    feed(tracker, "1.1.0", 1.2 * lognormal(600, 0.050, 2))
    tracker.flush()
    verdict = judge(tracker)
    assert verdict.result == FAIL, verdict.reason
    assert verdict.failed is not None and verdict.failed.name == "latency_rank_test"
    latency = verdict.evidence["latency"]
    assert latency["p_value"] < 0.025 and latency["n_candidate"] == 600
    assert 1.1 < latency["median_ratio"] < 1.3 and latency["prob_slower"] > 0.6
    assert verdict.evidence["judge"] == "statistical" and verdict.evidence["alpha"] == 0.05
    assert verdict.evidence["errors"]["p_value"] == 1.0


def test_the_same_distribution_passes_and_claims_nothing(tracker: PerformanceTracker):
    feed(tracker, "1.0.0", lognormal(600, 0.050, 3))
    feed(tracker, "1.1.0", lognormal(600, 0.050, 4))
    verdict = judge(tracker)
    assert verdict.result == PASS, verdict.reason
    assert verdict.evidence["latency"]["p_value"] > 0.025
    assert judge(tracker, elapsed=10).result == INCONCLUSIVE      # the interval still runs


def test_twenty_samples_are_inconclusive_even_when_much_slower(tracker: PerformanceTracker):
    feed(tracker, "1.0.0", lognormal(20, 0.050, 5))
    feed(tracker, "1.1.0", 3 * lognormal(20, 0.050, 6), failures=2)
    verdict = judge(tracker)
    assert verdict.result == INCONCLUSIVE and "20/100" in verdict.reason
    assert "latency" in verdict.evidence and "errors" in verdict.evidence   # numbers shown


@pytest.mark.parametrize("stable_requests", [270, 1000])
def test_one_error_in_thirty_requests_does_not_fail(tracker: PerformanceTracker,
                                                    stable_requests: int):
    feed(tracker, "1.0.0", lognormal(stable_requests, 0.050, 7))
    feed(tracker, "1.1.0", lognormal(30, 0.050, 8), failures=1)
    verdict = judge(tracker, min_samples=30)
    assert verdict.result == PASS, verdict.reason
    errors = verdict.evidence["errors"]
    assert errors["p_value"] > 0.025 and errors["candidate_rate"] == pytest.approx(1 / 30)
    low, high = errors["candidate_ci95"]
    assert low < 1 / 30 < high


def test_clearly_more_errors_fail(tracker: PerformanceTracker):
    feed(tracker, "1.0.0", lognormal(200, 0.050, 9), failures=1)
    feed(tracker, "1.1.0", lognormal(200, 0.050, 10), failures=15)
    verdict = judge(tracker)
    assert verdict.result == FAIL and verdict.failed.name == "error_rate_test"
    assert verdict.evidence["errors"]["p_value"] < 0.001


def test_the_rank_test_reads_a_bounded_subsample(tracker: PerformanceTracker):
    feed(tracker, "1.0.0", lognormal(600, 0.050, 11))
    feed(tracker, "1.1.0", 1.5 * lognormal(600, 0.050, 12))
    verdict = judge(tracker, max_samples=200)
    assert verdict.result == FAIL
    assert verdict.evidence["latency"]["n_candidate"] == 200
    assert verdict.evidence["latency"]["n_stable"] == 200


def test_a_tiny_absolute_shift_is_not_a_failure(tracker: PerformanceTracker):
    feed(tracker, "1.0.0", lognormal(600, 0.0002, 13))
    feed(tracker, "1.1.0", 1.2 * lognormal(600, 0.0002, 14))
    verdict = judge(tracker)
    assert verdict.evidence["latency"]["p_value"] < 0.025     # significant, but 40 µs
    assert verdict.result == PASS


def test_settings_validation():
    with pytest.raises(InvalidArgument, match="judge"):
        make_plan("canary", analysis={"judge": "bayesian"})
    with pytest.raises(InvalidArgument, match="side by side"):
        make_plan("blue-green", analysis={"judge": "statistical"})
    plan = make_plan("canary", analysis={"judge": "statistical", "alpha": 0.01})
    assert plan.analysis.judge == "statistical"
    restored = type(plan).restore(**plan.stored())
    assert restored.analysis == plan.analysis


def test_a_canary_with_twenty_samples_pauses_at_the_deadline(env: Env):  # noqa: F811
    env.live("1.0.0")
    env.version("1.1.0")
    dep = env.manager.deploy("m", "1.1.0", "canary", analysis=STAT)
    env.tick()
    env.track("1.0.0", 20)
    env.track("1.1.0", 20)
    assert env.tick(60) == []                       # inconclusive before the deadline
    [paused] = env.tick(61)
    assert paused["state"] == "paused" and "deadline" in paused["reason"]
    verdict = paused["verdicts"][-1]
    assert verdict["result"] == "inconclusive"
    assert verdict["evidence"]["judge"] == "statistical"
