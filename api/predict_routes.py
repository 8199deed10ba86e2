"""The gateway: one prediction through the model's live traffic table."""
from __future__ import annotations

from flask import Blueprint, request
from spectree import Response

from api.schemas import ErrorOut, PredictBody, PredictionOut
from api.services import services
from api.spec import spec

bp = Blueprint("predict", __name__, url_prefix="/api/models")


@bp.post("/<name>/predict")
@spec.validate(json=PredictBody, resp=Response(
    HTTP_200=PredictionOut, HTTP_400=ErrorOut, HTTP_404=ErrorOut, HTTP_409=ErrorOut,
    HTTP_429=ErrorOut, HTTP_502=ErrorOut, HTTP_503=ErrorOut, HTTP_504=ErrorOut),
    tags=["predict"])
def predict(name: str, json: PredictBody):
    """Predict with the version the traffic table picks (or the pinned `version`).

    A `key` (or the `X-Routing-Key` header) makes routing sticky: the same key reaches the same
    version while the weights allow it."""
    key = json.key or request.headers.get("X-Routing-Key") or None
    return services().gateway.predict(name, json.input, version=json.version, key=key,
                                      params=json.params)
