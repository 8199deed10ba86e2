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

from api.deployment_schemas import (ActionBody, DeployAnswer, DeployBody,
                                    ExperimentPromoteBody, ExperimentPromoted,
                                    ExperimentResults, DeploymentEnvelope, DeploymentList,
                                    ListDeploymentsQuery, PromoteBody, ShadowPromoteBody,
                                    ShadowReport, TrafficEnvelope, TrafficQuery)
from api.schemas import ErrorOut
from api.services import actor, services
from api.spec import spec
from errors import InvalidArgument

bp = Blueprint("deployments", __name__)
TAGS = ["deployments"]
E = {"HTTP_400": ErrorOut, "HTTP_404": ErrorOut}


@bp.post("/api/models/<name>/deploy")
@spec.validate(json=DeployBody, resp=Response(HTTP_201=DeploymentEnvelope,
                                               HTTP_202=DeployAnswer, HTTP_409=ErrorOut,
                                               **E), tags=TAGS)
def deploy(name: str, json: DeployBody):
    """Deploy a version (direct, blue-green or canary); the health check runs inside the call.
    201: the version serves 100% (a blue-green post-switch window goes on in the background).
    202: a canary's first step is live; the server drives the next ones. 409: the health check
    failed (the deployment is recorded `failed`, traffic untouched), or another rollout — a
    canary between steps, a paused one — is in progress, unless `force` supersedes it.
    `shadow` and `experiment` start those instead (202; the answer's `deployment` is the shadow
    or the experiment: see `GET /api/deployments/{id}/shadow` and `/experiment`)."""
    if json.strategy == "shadow":
        return _start_shadow(name, json)
    if json.strategy == "experiment":
        return _start_experiment(name, json)
    if any(v is not None for v in (json.sample_percent, json.duration_s, json.max_requests,
                                   json.variants, json.sample_size, json.primary_metric)):
        raise InvalidArgument("sample_percent, duration_s, max_requests, variants, sample_size "
                              "and primary_metric apply to shadow and experiment only")
    if json.version is None:
        raise InvalidArgument("version is required")
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
    """Deployments newest first — rollouts, shadows and A/B experiments (each with its
    `strategy`); filters `model`, `state` and `strategy`; keyset pagination."""
    deployments, token = services().listing.list(query.model, query.state, query.strategy,
                                                 query.limit, query.page_token)
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


# -- issue 19: shadows ------------------------------------------------------------------------------
def _start_shadow(name: str, json: DeployBody):
    if json.version is None:
        raise InvalidArgument("version is required: the shadow's candidate")
    if json.steps is not None or json.analysis is not None:
        raise InvalidArgument("a shadow has no steps or analysis: it serves nobody")
    shadow = services().shadows.start(name, json.version, json.sample_percent, json.duration_s,
                                      json.max_requests, json.reason, actor=actor())
    return {"deployment": shadow}, 202


@bp.get("/api/deployments/<deployment_id>/shadow")
@spec.validate(resp=Response(HTTP_200=ShadowReport, **E), tags=TAGS)
def shadow_report(deployment_id: str):
    """A shadow's comparison so far: agreement rates with Wilson 95% intervals, latency of both
    sides, the candidate's errors and tokens, dropped mirrors, the worst disagreements."""
    return services().shadows.report(deployment_id)


@bp.post("/api/deployments/<deployment_id>/shadow/stop")
@spec.validate(json=ActionBody, resp=Response(HTTP_200=ShadowReport, **E), tags=TAGS)
def stop_shadow(deployment_id: str, json: ActionBody):
    """End a shadow now (its report stays)."""
    shadows = services().shadows
    shadows.stop(deployment_id)
    return shadows.report(deployment_id)


@bp.post("/api/deployments/<deployment_id>/shadow/promote")
@spec.validate(json=ShadowPromoteBody, resp=Response(HTTP_202=DeploymentEnvelope,
                                                     HTTP_409=ErrorOut, **E), tags=TAGS)
def promote_shadow(deployment_id: str, json: ShadowPromoteBody):
    """End the shadow and start a canary of its version (`analysis` as for a canary)."""
    svc = services()
    analysis = json.analysis.model_dump() if json.analysis else None
    dep = svc.shadows.promote(deployment_id, svc.deployments.deploy, analysis, actor=actor())
    return {"deployment": svc.deployments.get(dep)}, 202


# -- issue 19: A/B experiments ----------------------------------------------------------------------
def _start_experiment(name: str, json: DeployBody):
    if json.steps is not None or json.analysis is not None:
        raise InvalidArgument("an experiment has no steps or analysis: its split is fixed")
    experiment = services().experiments.start(
        name, json.variants, json.primary_metric, json.duration_s, json.sample_size,
        json.alpha, json.reason, actor=actor())
    return {"deployment": experiment}, 202


@bp.get("/api/deployments/<deployment_id>/experiment")
@spec.validate(resp=Response(HTTP_200=ExperimentResults, **E), tags=TAGS)
def experiment_results(deployment_id: str):
    """An experiment's per-variant metrics and verdict (test, effect size, CI, p-value); once
    its duration or sample size is reached, the frozen final verdict (reading ends it)."""
    return services().experiments.results(deployment_id)


@bp.post("/api/deployments/<deployment_id>/experiment/stop")
@spec.validate(json=ActionBody, resp=Response(HTTP_200=ExperimentResults, **E), tags=TAGS)
def stop_experiment(deployment_id: str, json: ActionBody):
    """End an experiment now: its verdict so far is frozen, the control serves everything."""
    return services().experiments.stop(deployment_id, actor=actor())


@bp.post("/api/deployments/<deployment_id>/experiment/promote")
@spec.validate(json=ExperimentPromoteBody, resp=Response(HTTP_200=ExperimentPromoted,
                                                         HTTP_409=ErrorOut, **E), tags=TAGS)
def promote_experiment(deployment_id: str, json: ExperimentPromoteBody):
    """End the experiment and deploy the chosen variant (direct); the control needs no
    deployment (it serves everything again)."""
    svc = services()
    dep = svc.experiments.promote(deployment_id, json.variant, svc.deployments.deploy,
                                  actor=actor())
    return {"experiment": svc.experiments.get(deployment_id),
            "deployment": svc.deployments.get(dep) if dep else None}
