"""Request and response bodies of the deployment endpoints (pydantic v2).

The analysis settings are the domain's own model (``deployment_strategy.AnalysisSettings``):
one definition validates the request, fills the defaults and documents them in OpenAPI.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, Field

from api.schemas import Body
from deployment.deployment_store import STATES
from deployment.deployment_strategy import STRATEGIES, AnalysisSettings
from shared.pagination import MAX_PAGE_SIZE

Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]
State = Literal[STATES]  # type: ignore[valid-type]


class DeployBody(Body):
    version: str = Field(min_length=1, max_length=255,
                         description="exact version, `latest`, an alias or a range")
    strategy: Strategy = Field("direct", description="direct, blue-green or canary")
    steps: Optional[list[int]] = Field(
        None, description="canary traffic percents, increasing, ending at 100 "
                          "(default [10, 50, 100])")
    analysis: Optional[AnalysisSettings] = Field(
        None, description="when a step may pass or must fail (blue-green and canary)")
    force: bool = Field(False, description="supersede a rollout in progress")
    reason: str = Field("", max_length=10_000)


class ActionBody(Body):
    reason: str = Field("", max_length=10_000)


class PromoteBody(ActionBody):
    full: bool = Field(False, description="go straight to 100% instead of the next step")


class ListDeploymentsQuery(Body):
    model: Optional[str] = Field(None, max_length=128)
    state: Optional[State] = None
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


class DeploymentList(BaseModel):
    deployments: list[DeploymentOut]
    next_page_token: Optional[str]


class TrafficOut(BaseModel):
    model: str
    revision: int
    weights: dict[str, int]
    stable_version: Optional[str]
    deployment_id: Optional[str]
    updated_at: Optional[str]


class TrafficEnvelope(BaseModel):
    traffic: TrafficOut
