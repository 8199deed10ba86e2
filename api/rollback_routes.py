"""Rollback, its history, and snapshots of the serving state."""
from __future__ import annotations

from flask import Blueprint
from spectree import Response

from api.schemas import (ErrorOut, RestoreBody, RestoreEnvelope, RollbackBody, RollbackEnvelope,
                         RollbackList, RollbacksQuery, SnapshotBody, SnapshotEnvelope,
                         SnapshotList, SnapshotsQuery)
from api.services import actor, services
from api.spec import spec

bp = Blueprint("rollback", __name__)
TAGS = ["rollback"]
E = {"HTTP_400": ErrorOut, "HTTP_404": ErrorOut, "HTTP_409": ErrorOut}


@bp.post("/api/models/<name>/rollback")
@spec.validate(json=RollbackBody, resp=Response(HTTP_200=RollbackEnvelope, **E), tags=TAGS)
def rollback(name: str, json: RollbackBody):
    """Serve `version` (default: the previous live version) at 100% now, ending any rollout.

    409 when there is nothing to roll back to, or the target is archived or unhealthy."""
    record = services().rollbacks.rollback(name, json.version, reason=json.reason,
                                           actor=actor())
    return {"rollback": record}


@bp.get("/api/rollbacks")
@spec.validate(query=RollbacksQuery, resp=Response(HTTP_200=RollbackList, HTTP_400=ErrorOut),
               tags=TAGS)
def list_rollbacks(query: RollbacksQuery):
    """Every rollback (manual, automatic, snapshot) newest first, with its evidence."""
    rows, token = services().rollbacks.list(query.model, query.limit, query.page_token)
    return {"rollbacks": rows, "next_page_token": token}


@bp.post("/api/snapshots")
@spec.validate(json=SnapshotBody, resp=Response(HTTP_201=SnapshotEnvelope, **E), tags=TAGS)
def create_snapshot(json: SnapshotBody):
    """Record the serving state of one model (`model`) or of every model."""
    if json.model is not None:
        services().registry.get_model(json.model)
    snapshot = services().snapshots.create(json.model, reason=json.reason, actor=actor())
    return {"snapshot": snapshot}, 201


@bp.get("/api/snapshots")
@spec.validate(query=SnapshotsQuery, resp=Response(HTTP_200=SnapshotList, HTTP_400=ErrorOut),
               tags=TAGS)
def list_snapshots(query: SnapshotsQuery):
    """Snapshots newest first; `automatic=true` for the ones taken before deployments. Each
    item carries a `summary` (model count, first models' weights); the recorded `state` is
    only in `GET /api/snapshots/{id}`."""
    rows, token = services().snapshots.list(query.model, query.automatic, query.limit,
                                            query.page_token)
    return {"snapshots": rows, "next_page_token": token}


@bp.get("/api/snapshots/<snapshot_id>")
@spec.validate(resp=Response(HTTP_200=SnapshotEnvelope, **E), tags=TAGS)
def get_snapshot(snapshot_id: str):
    """One snapshot with the state it recorded."""
    return {"snapshot": services().snapshots.get(snapshot_id)}


@bp.delete("/api/snapshots/<snapshot_id>")
@spec.validate(resp=Response("HTTP_204", **E), tags=TAGS)
def delete_snapshot(snapshot_id: str):
    """Delete a snapshot."""
    services().snapshots.delete(snapshot_id)
    return "", 204


@bp.post("/api/snapshots/<snapshot_id>/restore")
@spec.validate(json=RestoreBody, resp=Response(HTTP_200=RestoreEnvelope, **E), tags=TAGS)
def restore_snapshot(snapshot_id: str, json: RestoreBody):
    """Put the recorded serving state back, atomically (recorded as rollbacks, trigger
    `snapshot`); 409 if a version it needs no longer exists or fails its health check."""
    result = services().snapshots.restore(snapshot_id, reason=json.reason, actor=actor())
    return {"restore": result}
