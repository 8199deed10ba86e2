"""The gateway: one prediction through the model's live traffic table."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from spectree import Response

from api.cost_header import set_cost
from api.schemas import ErrorOut, PredictBody, PredictionOut
from api.services import api_key_name, services
from api.spec import documented

bp = Blueprint("predict", __name__, url_prefix="/api/models")


# The hot path: spectree documents it, but the body is validated here in one pydantic call and
# neither spectree's wrapper nor its response check runs per request (its walk over the answer
# cost a quarter of the HTTP throughput, its re-wrapping of the response most of the rest;
# schemathesis checks the answers against the spec in the tests).
@bp.post("/<name>/predict")
@documented(json=PredictBody, resp=Response(
    HTTP_200=PredictionOut, HTTP_400=ErrorOut, HTTP_404=ErrorOut, HTTP_409=ErrorOut,
    HTTP_429=ErrorOut, HTTP_502=ErrorOut, HTTP_503=ErrorOut, HTTP_504=ErrorOut),
    tags=["predict"])
def predict(name: str):
    """Predict with the version the traffic table picks (or the pinned `version`).

    A `key` (or the `X-Routing-Key` header) makes routing sticky: the same key reaches the same
    version while the weights allow it. A priced answer also carries its cost in the
    `X-Cost-USD` header (exact decimal USD), as every protocol's answers do."""
    body = PredictBody.model_validate(request.get_json(silent=True) or {})
    key = body.key or request.headers.get("X-Routing-Key") or None
    answer = services().gateway.predict(name, body.input, version=body.version, key=key,
                                        params=body.params, api_key=api_key_name())
    usage = answer["usage"]
    return set_cost(jsonify(answer), usage and usage.get("cost_micro_usd"))
