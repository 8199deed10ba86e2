"""The gateway: one prediction through the model's live traffic table."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from spectree import Response

from api.cost_header import set_cost
from api.schemas import ErrorOut, PredictBody, PredictionOut
from api.services import api_key_name, services
from api.spec import spec

bp = Blueprint("predict", __name__, url_prefix="/api/models")


# The hot path: the body is validated by one pydantic call (api/spec.py), the answer is not
# walked again per request (schemathesis checks answers against the spec in the tests).
@bp.post("/<name>/predict")
@spec.validate(resp=Response(
    HTTP_200=PredictionOut, HTTP_400=ErrorOut, HTTP_404=ErrorOut, HTTP_409=ErrorOut,
    HTTP_429=ErrorOut, HTTP_502=ErrorOut, HTTP_503=ErrorOut, HTTP_504=ErrorOut),
    tags=["predict"])
def predict(name: str, json: PredictBody):
    """Predict with the version the traffic table picks (or the pinned `version`).

    A `key` (or the `X-Routing-Key` header) makes routing sticky: the same key reaches the same
    version while the weights allow it. A priced answer also carries its cost in the
    `X-Cost-USD` header (exact decimal USD), as every protocol's answers do."""
    key = json.key or request.headers.get("X-Routing-Key") or None
    answer = services().gateway.predict(name, json.input, version=json.version, key=key,
                                        params=json.params, api_key=api_key_name())
    usage = answer["usage"]
    return set_cost(jsonify(answer), usage and usage.get("cost_micro_usd"))
