"""Step plans, analysis settings, canary verdicts and health checks: the pure parts of the
rollout controller, without a database."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from deployment.analysis import FAIL, INCONCLUSIVE, PASS, analyze
from deployment.deployment_strategy import (DEFAULT_CANARY_STEPS, AnalysisSettings, Plan,
                                            check_steps, first_deployment_plan, make_plan,
                                            parse_analysis)
from deployment.health_checker import HealthChecker
from deployment.ticker import Ticker
from errors import FailedPrecondition, InvalidArgument
from models.base_model import HealthResult


# -- plans ---------------------------------------------------------------------------------------
def test_canary_defaults_to_10_50_100_with_default_analysis():
    plan = make_plan("canary")
    assert plan.steps == DEFAULT_CANARY_STEPS == (10, 50, 100)
    assert plan.analysis == AnalysisSettings()
    assert plan.analysis.min_requests == 20 and plan.analysis.interval_s == 30
    assert plan.analysis.max_error_rate == 0.05 and plan.analysis.deadline_s == 600
    assert [plan.analyzed(i) for i in range(3)] == [True, True, False]
    assert [plan.is_final(i) for i in range(3)] == [False, False, True]


def test_canary_weights_put_the_rest_on_stable():
    plan = make_plan("canary", [5, 25, 100])
    assert plan.weights(0, "1.1.0", "1.0.0") == {"1.1.0": 5, "1.0.0": 95}
    assert plan.weights(1, "1.1.0", "1.0.0") == {"1.1.0": 25, "1.0.0": 75}
    assert plan.weights(2, "1.1.0", "1.0.0") == {"1.1.0": 100}
    assert plan.weights(0, "1.1.0", None) == {"1.1.0": 100}


def test_direct_and_blue_green_plans():
    direct = make_plan("direct")
    assert direct.steps == (100,) and direct.analysis is None and direct.is_final(0)
    bg = make_plan("blue-green", analysis={"min_requests": 5})
    assert bg.steps == (100,) and bg.analyzed(0) and not bg.is_final(0)
    assert bg.analysis.min_requests == 5 and bg.analysis.interval_s == 30   # defaults filled


def test_first_deployment_plan_switches_directly_whatever_the_strategy():
    for strategy in ("direct", "blue-green", "canary"):
        plan = first_deployment_plan(strategy)
        assert plan.strategy == strategy and plan.steps == (100,) and plan.is_final(0)


def test_plan_survives_storage():
    plan = make_plan("canary", [20, 100], {"min_requests": 3, "max_p95_latency": 0.5})
    stored = plan.stored()
    assert Plan.restore(stored["strategy"], stored["steps"], stored["analysis"]) == plan


@pytest.mark.parametrize("steps, fragment", [
    ([], "list"), ("10,50", "list"), ([10, 50], "end at 100"), ([50, 10, 100], "increasing"),
    ([10, 10, 100], "increasing"), ([0, 100], "1 to 100"), ([10, 101], "1 to 100"),
    ([10.5, 100], "whole"), ([True, 100], "whole"), (list(range(1, 101)), "list"),
])
def test_bad_steps_are_invalid(steps, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        check_steps(steps)


def test_good_steps():
    assert check_steps([1, 2, 100]) == (1, 2, 100)
    assert check_steps([100]) == (100,)


@pytest.mark.parametrize("strategy, steps, analysis, fragment", [
    ("rolling", None, None, "unknown strategy"),
    ("direct", [10, 100], None, "canary deployments only"),
    ("blue-green", [10, 100], None, "canary deployments only"),
    ("direct", None, {"min_requests": 5}, "no analysis"),
    ("canary", None, {"min_requests": 0}, "min_requests"),
    ("canary", None, {"min_requests": 2.5}, "min_requests"),
    ("canary", None, {"max_error_rate": 1.5}, "max_error_rate"),
    ("canary", None, {"interval_s": -1}, "interval_s"),
    ("canary", None, {"max_p95_ratio": 0.5}, "max_p95_ratio"),
    ("canary", None, {"interval_s": 60, "deadline_s": 30}, "deadline_s"),
    ("canary", None, {"surprise": 1}, "surprise"),
    ("canary", None, [1], "object"),
])
def test_bad_requests_are_invalid(strategy, steps, analysis, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        make_plan(strategy, steps, analysis)


def test_parse_analysis_accepts_settings_objects_and_none():
    settings = AnalysisSettings(min_requests=7)
    assert parse_analysis(settings) is settings
    assert parse_analysis(None) == AnalysisSettings()


# -- analysis verdicts ---------------------------------------------------------------------------
class FakeTracker:
    """``get_metrics(model, window=...)`` answering from fixed per-version numbers."""

    def __init__(self, **versions: dict[str, Any]) -> None:
        self.versions = versions
        self.windows: list[float] = []

    def get_metrics(self, model: str, version: str | None = None, window: Any = None):
        self.windows.append(window)
        return {v: metrics(**m) for v, m in self.versions.items()}


def metrics(requests: int = 0, failures: int = 0, p95: float | None = 0.010) -> dict[str, Any]:
    return {"requests": requests, "failures": failures,
            "error_rate": failures / requests if requests else None,
            "p95_latency": p95 if requests else None, "avg_latency": p95,
            "errors": {"ProviderError": failures} if failures else {}}


def judge(canary: dict, stable: dict | None = None, elapsed: float = 60.0, **settings: Any):
    tracker = FakeTracker(**{"1.1.0": canary, **({"1.0.0": stable} if stable else {})})
    result = analyze(tracker, "m", "1.1.0", "1.0.0", AnalysisSettings(**settings), elapsed)
    return result, tracker


def test_too_few_requests_is_inconclusive():
    verdict, tracker = judge({"requests": 19, "failures": 19}, {"requests": 500})
    assert verdict.result == INCONCLUSIVE and "19/20" in verdict.reason
    assert tracker.windows == [60.0]     # the window is the time since the step started


def test_enough_clean_requests_after_the_interval_pass_with_evidence():
    verdict, _ = judge({"requests": 40, "failures": 1}, {"requests": 400, "failures": 4})
    assert verdict.result == PASS
    ev = verdict.evidence
    assert ev["candidate"]["requests"] == 40 and ev["stable"]["requests"] == 400
    assert {c["name"] for c in ev["checks"]} == {"error_rate", "p95_latency_ratio"}


def test_before_the_interval_a_pass_waits_but_a_failure_fails_at_once():
    verdict, _ = judge({"requests": 40}, {"requests": 400}, elapsed=5.0)
    assert verdict.result == INCONCLUSIVE and "interval" in verdict.reason
    verdict, _ = judge({"requests": 40, "failures": 12}, {"requests": 400}, elapsed=5.0)
    assert verdict.result == FAIL and verdict.failed.name == "error_rate"
    assert verdict.failed.value == pytest.approx(0.3) and verdict.failed.threshold == 0.05


def test_error_rate_no_worse_than_stable_is_not_blamed_on_the_canary():
    verdict, _ = judge({"requests": 40, "failures": 8}, {"requests": 400, "failures": 120})
    assert verdict.result == INCONCLUSIVE and "no worse than the stable" in verdict.reason
    # ... but the stable needs enough requests for that excuse.
    verdict, _ = judge({"requests": 40, "failures": 8}, {"requests": 5, "failures": 5})
    assert verdict.result == FAIL


def test_p95_absolute_threshold():
    verdict, _ = judge({"requests": 40, "p95": 0.9}, {"requests": 400, "p95": 0.8},
                       max_p95_latency=0.5)
    assert verdict.result == FAIL and verdict.failed.name == "p95_latency"


def test_p95_ratio_needs_both_sides_and_a_real_difference():
    # 3x slower and 200 ms more: fail.
    verdict, _ = judge({"requests": 40, "p95": 0.3}, {"requests": 400, "p95": 0.1})
    assert verdict.result == FAIL and verdict.failed.name == "p95_latency_ratio"
    # 3x slower but only 0.2 ms more (jitter of a sub-millisecond model): pass.
    verdict, _ = judge({"requests": 40, "p95": 0.0003}, {"requests": 400, "p95": 0.0001})
    assert verdict.result == PASS
    # Stable without enough data: no ratio check at all.
    verdict, _ = judge({"requests": 40, "p95": 0.3}, {"requests": 3, "p95": 0.1})
    assert verdict.result == PASS
    assert [c["name"] for c in verdict.evidence["checks"]] == ["error_rate"]
    # Ratio check disabled.
    verdict, _ = judge({"requests": 40, "p95": 0.3}, {"requests": 400, "p95": 0.1},
                       max_p95_ratio=None)
    assert verdict.result == PASS


def test_no_stable_version_judges_on_thresholds_alone():
    tracker = FakeTracker(**{"1.1.0": {"requests": 40}})
    verdict = analyze(tracker, "m", "1.1.0", None, AnalysisSettings(), 60.0)
    assert verdict.result == PASS and verdict.evidence["stable"] is None


# -- health checks -------------------------------------------------------------------------------
class FakeProvider:
    def __init__(self, results: list[bool], hang: threading.Event | None = None) -> None:
        self.results = list(results)
        self.calls = 0
        self.hang = hang

    def health(self) -> HealthResult:
        self.calls += 1
        if self.hang is not None:
            self.hang.wait(5)
        ok = self.results.pop(0) if self.results else True
        return HealthResult(ok, 0.001, "" if ok else "boom")


class FakeLoader:
    def __init__(self, provider: Any = None, error: Exception | None = None) -> None:
        self.provider, self.error = provider, error

    def get(self, model: str, version: str) -> Any:
        if self.error is not None:
            raise self.error
        return self.provider


def test_health_check_passes_when_every_probe_passes():
    provider = FakeProvider([True, True, True])
    report = HealthChecker(FakeLoader(provider), probes=3).check("m", "1.0.0")
    assert report.ok and provider.calls == 3 and len(report.probes) == 3
    assert "3/3" in report.message


def test_health_check_fails_on_the_first_failed_probe_by_default():
    provider = FakeProvider([True, False, True])
    report = HealthChecker(FakeLoader(provider), probes=3).check("m", "1.0.0")
    assert not report.ok and provider.calls == 2 and "boom" in report.message


def test_health_check_with_a_quorum():
    provider = FakeProvider([False, True, True])
    report = HealthChecker(FakeLoader(provider), probes=3, required=2).check("m", "1.0.0")
    assert report.ok and provider.calls == 3


def test_health_check_times_out_a_hung_probe():
    release = threading.Event()
    provider = FakeProvider([True], hang=release)
    report = HealthChecker(FakeLoader(provider), probes=2, timeout_s=0.1).check("m", "1.0.0")
    release.set()
    assert not report.ok and "timed out" in report.message


def test_health_check_reports_a_version_that_cannot_load():
    loader = FakeLoader(error=FailedPrecondition("no artifact"))
    report = HealthChecker(loader).check("m", "1.0.0")
    assert not report.ok and "cannot be loaded" in report.message
    assert report.probes[0]["stage"] == "load"


# -- the ticker ----------------------------------------------------------------------------------
def test_ticker_keeps_ticking_through_errors_logs_them_once_and_stops(caplog):
    calls: list[int] = []

    def tick() -> None:
        calls.append(1)
        if len(calls) % 2:
            raise RuntimeError("database unreachable")

    ticker = Ticker(tick, interval_s=0.01)
    with caplog.at_level(logging.DEBUG, logger="deployment.ticker"):
        assert ticker.start() is ticker.start()        # idempotent
        deadline = time.monotonic() + 5
        while len(calls) < 6:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ticker.stop()
    assert not ticker.running
    stopped_at = len(calls)
    time.sleep(0.05)
    assert len(calls) == stopped_at
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info      # the same failure again: debug only
    assert any("again" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
