"""Liveness and readiness."""
from __future__ import annotations

from flask import Blueprint
from spectree import Response

from api.schemas import Health
from api.services import services
from api.spec import spec
from errors import Unavailable
from storage.disk import can_write, recently_full

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@spec.validate(resp=Response(HTTP_200=Health), tags=["health"])
def healthz():
    """The process is up."""
    return {"status": "ok", "checks": {}}


@bp.get("/readyz")
@spec.validate(resp=Response(HTTP_200=Health, HTTP_503=Health), tags=["health"])
def readyz():
    """The database answers: ready to serve (a failure says so; its details go to the log)."""
    try:
        services().database.ping()
    except Unavailable as exc:  # readiness reports, it does not raise
        return {"status": "unavailable", "checks": {"database": exc.message}}, 503
    # issue 21: a full disk makes writes fail; say so (a probe write on the data volume, and
    # any write that failed for lack of space in the last minute, e.g. on PostgreSQL's disk).
    if not can_write(services().artifacts.root / "tmp") or recently_full():
        return {"status": "unavailable", "checks": {"database": "ok",
                                                    "storage": "full: writes fail"}}, 503
    return {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}
