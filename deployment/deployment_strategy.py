"""Rollout strategies as step plans, and the analysis settings that gate each step.

A plan is the list of traffic weights (percent of requests for the new version) a rollout goes
through, and whether the step at each index waits for an analysis verdict before moving on:

============  ===========  ========================================================
strategy      steps        analysis
============  ===========  ========================================================
direct        [100]        none: 100% at once after the health check
blue-green    [100]        the post-switch window: fail → switch back at once
canary        [10, 50, 100] (or ``steps``)  every step but the last (reaching 100% ends it)
============  ===========  ========================================================

The first deployment of a model (nothing live to compare with or fall back to) uses
:func:`first_deployment_plan`: ``[100]`` without analysis, whatever the strategy asked for.

The settings are one pydantic model, :class:`AnalysisSettings`; the REST schema reuses it, so a
setting is validated (and documented in the OpenAPI document) in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from errors import InvalidArgument

DIRECT = "direct"
BLUE_GREEN = "blue-green"
CANARY = "canary"
STRATEGIES: tuple[str, ...] = (DIRECT, BLUE_GREEN, CANARY)
DEFAULT_CANARY_STEPS: tuple[int, ...] = (10, 50, 100)
MAX_STEPS = 20


class AnalysisSettings(BaseModel):
    """When a step's analysis may decide, and what makes it fail.

    A step passes once the new version served at least ``min_requests`` requests and
    ``interval_s`` seconds went by, with no check failing. It fails as soon as
    ``min_requests`` requests show a failing check (no need to wait out the interval to stop
    hurting users). With too little data by ``deadline_s`` a canary pauses for a human.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_requests: StrictInt = Field(20, ge=1, le=10_000_000,
                                    description="requests the new version must serve per step")
    interval_s: float = Field(30.0, gt=0, le=7 * 86400,
                              description="seconds each step lasts at least")
    max_error_rate: float = Field(0.05, ge=0, le=1,
                                  description="highest acceptable error rate (fraction 0-1)")
    max_p95_latency: Optional[float] = Field(None, gt=0,
                                             description="highest acceptable p95 latency (s)")
    max_p95_ratio: Optional[float] = Field(
        1.5, ge=1, description="highest acceptable p95 relative to the stable version's "
                               "(checked when both have min_requests); null disables")
    p95_tolerance_s: float = Field(
        0.025, ge=0, description="a p95 ratio breach also needs this many seconds of absolute "
                                 "difference: sub-millisecond latencies jitter by large ratios")
    max_cost_ratio: Optional[float] = Field(
        None, gt=0, description="highest acceptable cost per request relative to the stable "
                                "version's (e.g. 1.5); null disables. Blue-green compares with "
                                "the stable version's cost before the switch")
    cost_baseline_s: float = Field(
        3600.0, gt=0, le=30 * 86400,
        description="when the stable version served fewer than min_requests during the step "
                    "(blue-green after its switch), its cost per request over this many "
                    "seconds is the reference")
    # issue 19: the statistical judge (deployment.judge) and its settings
    judge: Literal["threshold", "statistical"] = Field(
        "threshold", description="threshold: the fixed limits above; statistical: Fisher's "
                                 "exact test on errors and Mann-Whitney U on latency against "
                                 "the stable version (canary only)")
    alpha: float = Field(0.05, gt=0, lt=0.5,
                         description="statistical judge: significance level of a verdict "
                                     "(each of the two tests uses alpha/2)")
    min_samples: StrictInt = Field(
        100, ge=5, le=10_000_000, description="statistical judge: requests each version needs "
                                              "in the step before any verdict but inconclusive")
    max_samples: StrictInt = Field(
        20_000, ge=100, le=1_000_000, description="statistical judge: latencies per version "
                                                  "the rank test reads (a uniform subsample)")
    min_latency_ratio: float = Field(
        1.1, ge=1, description="statistical judge: a significant latency shift fails only if "
                               "the median ratio reaches this")
    min_latency_shift_s: float = Field(
        0.001, ge=0, description="statistical judge: ... and the medians differ by at least "
                                 "this many seconds")
    deadline_s: float = Field(600.0, gt=0, le=30 * 86400,
                              description="seconds a step may wait for enough data; then "
                                          "a canary pauses")

    @model_validator(mode="after")
    def _deadline_after_interval(self) -> "AnalysisSettings":
        if self.deadline_s < self.interval_s:
            raise ValueError(f"deadline_s ({self.deadline_s:g}) must be at least interval_s "
                             f"({self.interval_s:g})")
        return self


def _describe(err: ValidationError, prefix: str) -> str:
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{prefix}.{where}: {e['msg']}" if where else f"{prefix}: {e['msg']}")
    return "; ".join(parts)


def parse_analysis(value: AnalysisSettings | dict[str, Any] | None) -> AnalysisSettings:
    """Settings from a dict (defaults filled in) → AnalysisSettings, or InvalidArgument."""
    if value is None:
        return AnalysisSettings()
    if isinstance(value, AnalysisSettings):
        return value
    if not isinstance(value, dict):
        raise InvalidArgument("analysis must be an object of settings such as "
                              '{"min_requests": 20, "interval_s": 30}')
    try:
        return AnalysisSettings(**value)
    except ValidationError as err:
        raise InvalidArgument(_describe(err, "analysis")) from None
    except TypeError as err:  # non-string keys
        raise InvalidArgument(f"analysis: {err}") from None


def check_steps(steps: Any) -> tuple[int, ...]:
    """Canary steps: strictly increasing whole percents in 1..100, ending at 100."""
    if not isinstance(steps, (list, tuple)) or not steps or len(steps) > MAX_STEPS:
        raise InvalidArgument(f"steps must be a list of 1 to {MAX_STEPS} percents ending at 100, "
                              "e.g. [10, 50, 100]")
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 100:
            raise InvalidArgument(f"steps must be whole percents from 1 to 100, got {step!r}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise InvalidArgument(f"steps must be strictly increasing, got {list(steps)}")
    if steps[-1] != 100:
        raise InvalidArgument(f"steps must end at 100, got {list(steps)}")
    return tuple(steps)


@dataclass(frozen=True)
class Plan:
    """What a deployment goes through; rebuilt from its stored row after a restart."""

    strategy: str
    steps: tuple[int, ...]
    analysis: AnalysisSettings | None

    @property
    def last(self) -> int:
        return len(self.steps) - 1

    def analyzed(self, index: int) -> bool:
        """Whether the step at ``index`` waits for an analysis verdict.

        Blue-green analyses its single 100% step (the post-switch window); a canary analyses
        every step but the last: reaching 100% after a passed 50% is the promotion itself.
        """
        if self.analysis is None:
            return False
        return self.strategy == BLUE_GREEN or index < self.last

    def is_final(self, index: int) -> bool:
        """Entering this step ends the rollout (nothing left to wait for)."""
        return index == self.last and not self.analyzed(index)

    def weights(self, index: int, candidate: str, stable: str | None) -> dict[str, int]:
        """The traffic table of step ``index``: the candidate's weight, the rest on stable."""
        weight = self.steps[index]
        if weight >= 100 or stable is None or stable == candidate:
            return {candidate: 100}
        return {candidate: weight, stable: 100 - weight}

    def stored(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "steps": list(self.steps),
                "analysis": self.analysis.model_dump() if self.analysis else None}

    @classmethod
    def restore(cls, strategy: str, steps: list[int],
                analysis: dict[str, Any] | None) -> "Plan":
        return cls(strategy, tuple(steps),
                   AnalysisSettings(**analysis) if analysis is not None else None)


def check_strategy(strategy: Any) -> str:
    if strategy not in STRATEGIES:
        raise InvalidArgument(f"unknown strategy {strategy!r}: expected one of "
                              f"{', '.join(STRATEGIES)}")
    return strategy


def make_plan(strategy: str, steps: Any = None,
              analysis: AnalysisSettings | dict[str, Any] | None = None) -> Plan:
    """Validate a deploy request's strategy, steps and analysis into a plan."""
    strategy = check_strategy(strategy)
    if strategy == CANARY:
        return Plan(CANARY, check_steps(steps) if steps is not None else DEFAULT_CANARY_STEPS,
                    parse_analysis(analysis))
    if steps is not None:
        raise InvalidArgument(f"steps apply to canary deployments only, not {strategy}")
    if strategy == BLUE_GREEN:
        settings = parse_analysis(analysis)
        if settings.judge == "statistical":
            raise InvalidArgument("the statistical judge compares two versions serving side by "
                                  "side: use it with canary, not blue-green")
        return Plan(BLUE_GREEN, (100,), settings)
    if analysis is not None:
        raise InvalidArgument("a direct deployment has no analysis; use blue-green or canary "
                              "to gate it on metrics")
    return Plan(DIRECT, (100,), None)


def first_deployment_plan(strategy: str) -> Plan:
    """Nothing is live yet: no stable version to compare with or to fall back on, so switch
    to 100% right after the health check, whatever the strategy."""
    return Plan(check_strategy(strategy), (100,), None)
