"""Deployments and traffic: start a rollout, follow it, steer it; read the traffic table.

``deploy`` answers once the deployment did what its strategy allows inside the call (see
``DeploymentManager.deploy``): 201 when the new version serves 100% (direct, blue-green, any
first deployment), 202 when a canary's first step is live and the background ticker
(``api/background.py``) drives the rest; 409 when the health check failed (the deployment is
recorded ``failed``) or another rollout is in progress.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint
from spectree import Response

from api.deployment_schemas import (ActionBody, DeployBody, DeploymentEnvelope, DeploymentList,
                                    ListDeploymentsQuery, PromoteBody, TrafficEnvelope,
                                    TrafficQuery)
from api.schemas import ErrorOut
from api.services import actor, services
from api.spec import spec
from errors import InvalidArgument

bp = Blueprint("deployments", __name__)
TAGS = ["deployments"]
E = {"HTTP_400": ErrorOut, "HTTP_404": ErrorOut}


@bp.post("/api/models/<name>/deploy")
@spec.validate(json=DeployBody, resp=Response(HTTP_201=DeploymentEnvelope,
                                               HTTP_202=DeploymentEnvelope, HTTP_409=ErrorOut,
                                               **E), tags=TAGS)
def deploy(name: str, json: DeployBody):
    """Deploy a version (direct, blue-green or canary); the health check runs inside the call.
    201: the version serves 100% (a blue-green post-switch window goes on in the background).
    202: a canary's first step is live; the server drives the next ones. 409: the health check
    failed (the deployment is recorded `failed`, traffic untouched), or another rollout — a
    canary between steps, a paused one — is in progress, unless `force` supersedes it."""
    manager = services().deployments
    deployment_id = manager.deploy(name, json.version, json.strategy, json.steps,
                                   json.analysis, force=json.force, reason=json.reason,
                                   actor=actor())
    deployment = manager.get(deployment_id)
    switched = deployment["traffic"].get(deployment["version"]) == 100
    return {"deployment": deployment}, 201 if switched else 202


@bp.get("/api/deployments")
@spec.validate(query=ListDeploymentsQuery, resp=Response(HTTP_200=DeploymentList, **E),
               tags=TAGS)
def list_deployments(query: ListDeploymentsQuery):
    """Deployments newest first; filters `model` and `state`; keyset pagination."""
    deployments, token = services().deployments.list(query.model, query.state, query.limit,
                                                     query.page_token)
    return {"deployments": deployments, "next_page_token": token}


@bp.get("/api/deployments/<deployment_id>")
@spec.validate(resp=Response(HTTP_200=DeploymentEnvelope, **E), tags=TAGS)
def get_deployment(deployment_id: str):
    """One deployment with its verdicts and event timeline."""
    return {"deployment": services().deployments.get(deployment_id)}


@bp.post("/api/deployments/<deployment_id>/promote")
@spec.validate(json=PromoteBody, resp=Response(HTTP_200=DeploymentEnvelope, HTTP_409=ErrorOut,
                                                **E), tags=TAGS)
def promote(deployment_id: str, json: PromoteBody):
    """Skip the current step's analysis: the next step now (`full`: straight to 100%)."""
    return {"deployment": services().deployments.promote(
        deployment_id, json.reason, actor=actor(), full=json.full)}


@bp.post("/api/deployments/<deployment_id>/pause")
@spec.validate(json=ActionBody, resp=Response(HTTP_200=DeploymentEnvelope, HTTP_409=ErrorOut,
                                               **E), tags=TAGS)
def pause(deployment_id: str, json: ActionBody):
    """Hold the rollout at its current step."""
    return {"deployment": services().deployments.pause(deployment_id, json.reason,
                                                       actor=actor())}


@bp.post("/api/deployments/<deployment_id>/resume")
@spec.validate(json=ActionBody, resp=Response(HTTP_200=DeploymentEnvelope, HTTP_409=ErrorOut,
                                               **E), tags=TAGS)
def resume(deployment_id: str, json: ActionBody):
    """Continue a paused rollout; the current step's window starts again."""
    return {"deployment": services().deployments.resume(deployment_id, json.reason,
                                                        actor=actor())}


@bp.post("/api/deployments/<deployment_id>/abort")
@spec.validate(json=ActionBody, resp=Response(HTTP_200=DeploymentEnvelope, HTTP_409=ErrorOut,
                                               **E), tags=TAGS)
def abort(deployment_id: str, json: ActionBody):
    """Stop the rollout: traffic goes 100% back to the stable version at once."""
    return {"deployment": services().deployments.abort(deployment_id, json.reason,
                                                       actor=actor())}


@bp.get("/api/models/<name>/traffic")
@spec.validate(query=TrafficQuery, resp=Response(HTTP_200=TrafficEnvelope, **E), tags=TAGS)
def get_traffic(name: str, query: TrafficQuery):
    """The model's live traffic table, or with `at` the one that served at that time."""
    return {"traffic": services().deployments.traffic_table(name, parse_time(query.at))}


def parse_time(text: str | None, name: str = "at") -> datetime | None:
    """An ISO 8601 query or body time (a ``Z`` or an offset; naive times are UTC)."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{name}={text!r} is not an ISO 8601 time such as "
                              "2025-01-31T12:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
