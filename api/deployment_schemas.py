"""Request and response bodies of the deployment endpoints (pydantic v2).

The analysis settings are the domain's own model (``deployment_strategy.AnalysisSettings``):
one definition validates the request, fills the defaults and documents them in OpenAPI.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, Field

from api.schemas import Body
from deployment.deployment_strategy import STRATEGIES, AnalysisSettings
from deployment.records import STATES
from deployment.listing import ALL_STATES, ALL_STRATEGIES
from shared.pagination import MAX_PAGE_SIZE

Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]
DeployStrategy = Literal[STRATEGIES + ("shadow", "experiment")]  # type: ignore[valid-type]  # issue 19
State = Literal[STATES]  # type: ignore[valid-type]
AnyState = Literal[ALL_STATES]  # type: ignore[valid-type]  # rollouts', shadows', experiments'
AnyStrategy = Literal[ALL_STRATEGIES]  # type: ignore[valid-type]


class DeployBody(Body):
    version: Optional[str] = Field(
        None, min_length=1, max_length=255,
        description="exact version, `latest`, an alias or a range (required but for an "
                    "experiment, which names its `variants`)")
    strategy: DeployStrategy = Field(
        "direct", description="direct, blue-green, canary; shadow (mirrors a sample of live "
                              "requests to the version; answers a shadow object); experiment "
                              "(an A/B split of `variants`; answers an experiment object)")
    steps: Optional[list[int]] = Field(
        None, description="canary traffic percents, increasing, ending at 100 "
                          "(default [10, 50, 100])")
    analysis: Optional[AnalysisSettings] = Field(
        None, description="when a step may pass or must fail (blue-green and canary)")
    # issue 19: shadow
    sample_percent: Optional[float] = Field(None, gt=0, le=100,
                                            description="shadow: percent of requests mirrored")
    duration_s: Optional[float] = Field(None, gt=0, le=30 * 86400,
                                        description="shadow, experiment: seconds it runs")
    variants: Optional[dict[str, int]] = Field(
        None, description="experiment: {version: weight} summing to 100, the control first; "
                          "`version` is then ignored")
    sample_size: Optional[int] = Field(None, ge=1, le=10_000_000,
                                       description="experiment: requests per variant")
    primary_metric: Optional[Literal["error_rate", "latency"]] = Field(
        None, description="experiment: what the verdict compares")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="experiment: significance level")
    max_requests: Optional[int] = Field(None, ge=1, le=10_000_000,
                                        description="shadow: mirrored requests before it ends")
    force: bool = Field(False, description="supersede a rollout in progress")
    reason: str = Field("", max_length=10_000)


class ActionBody(Body):
    reason: str = Field("", max_length=10_000)


class PromoteBody(ActionBody):
    full: bool = Field(False, description="go straight to 100% instead of the next step")


class ListDeploymentsQuery(Body):
    model: Optional[str] = Field(None, max_length=128)
    state: Optional[AnyState] = None
    strategy: Optional[AnyStrategy] = None
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    page_token: Optional[str] = Field(None, max_length=2048)


class TrafficQuery(Body):
    at: Optional[str] = Field(None, max_length=64,
                              description="ISO 8601 time: what served then")


class EventOut(BaseModel):
    id: int
    at: str
    kind: str
    actor: str
    version: Optional[str]
    reason: str
    detail: dict[str, Any]


class DeploymentOut(BaseModel):
    id: str
    model: str
    version: str
    previous_version: Optional[str]
    strategy: Strategy
    state: State
    step: Optional[int]
    steps: list[int]
    traffic: dict[str, int]
    analysis: Optional[dict[str, Any]]
    reason: str
    actor: str
    created_at: str
    updated_at: str
    finished_at: Optional[str]
    deadline_at: Optional[str]
    verdicts: list[dict[str, Any]]
    events: Optional[list[EventOut]] = None


class DeploymentEnvelope(BaseModel):
    deployment: DeploymentOut


class TrafficOut(BaseModel):
    model: str
    revision: int
    weights: dict[str, int]
    stable_version: Optional[str]
    deployment_id: Optional[str]
    updated_at: Optional[str]


class TrafficEnvelope(BaseModel):
    traffic: TrafficOut


# -- issue 19: shadow reports ---------------------------------------------------------------------
class ShadowOut(BaseModel):
    id: str
    model: str
    version: str
    strategy: Literal["shadow"]
    state: Literal["running", "finished", "promoted"]
    sample_percent: float
    max_requests: Optional[int]
    ends_at: Optional[str]
    dropped: int
    reason: str
    actor: str
    created_at: str
    finished_at: Optional[str]


class ExperimentOut(BaseModel):
    id: str
    model: str
    strategy: Literal["experiment"]
    variants: dict[str, int]
    control: str
    primary_metric: str
    alpha: float
    sample_size: Optional[int]
    ends_at: Optional[str]
    state: Literal["running", "finished", "promoted"]
    previous: Optional[dict[str, int]]
    result: Optional[dict[str, Any]]
    reason: str
    actor: str
    created_at: str
    finished_at: Optional[str]


class DeploymentList(BaseModel):
    """A page of rollouts, shadows and experiments (each says its ``strategy``)."""
    deployments: list[Union[DeploymentOut, ShadowOut, ExperimentOut]]
    next_page_token: Optional[str]


class DeployAnswer(BaseModel):
    """A rollout, or the shadow or experiment started."""
    deployment: Union[DeploymentOut, ShadowOut, ExperimentOut]


class ExperimentResults(BaseModel):
    experiment: ExperimentOut
    running: bool
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    verdict: Optional[dict[str, Any]] = None


class ExperimentPromoteBody(ActionBody):
    variant: str = Field(min_length=1, max_length=255, description="the version to deploy")


class ExperimentPromoted(BaseModel):
    experiment: ExperimentOut
    deployment: Optional[DeploymentOut]


class ShadowReport(BaseModel):
    shadow: ShadowOut
    mirrored: int
    dropped: int
    agreement: dict[str, Any]
    argmax_agreement: Optional[dict[str, Any]]
    mean_similarity: Optional[float]
    shadow_errors: dict[str, Any]
    latency: dict[str, Any]
    tokens: dict[str, Any]
    worst_disagreements: list[dict[str, Any]]


class ShadowPromoteBody(ActionBody):
    analysis: Optional[AnalysisSettings] = Field(None, description="the canary's analysis")
