"""Prices, spend reports and budgets: parse, call the price book / reports / budgets, serialise."""
from __future__ import annotations

from flask import Blueprint
from spectree import Response

from api.cost_schemas import (BudgetBody, BudgetEnvelope, BudgetList, BudgetsQuery, PriceBody,
                              PricesEnvelope, PricesQuery, SpendEnvelope, SpendQuery)
from api.deployments_routes import parse_time
from api.schemas import ErrorOut
from api.services import actor, services
from api.spec import spec
from errors import InvalidArgument

bp = Blueprint("cost", __name__)
TAGS = ["cost"]
E = {"HTTP_400": ErrorOut, "HTTP_404": ErrorOut}
SCOPES = ("key", "model")


def _prices(name: str, version: str | None) -> dict:
    svc = services()
    registry, book = svc.registry, svc.prices
    if version is not None:
        versions = [registry.resolve(name, version).text]
    else:
        versions = [v["version"] for v in registry.list_versions_page(name, limit=100)[0]]
    current = {}
    for v in versions:
        quote = book.quote(name, v)
        current[v] = None if quote is None else quote.as_dict()
    history = book.history(name, versions[0] if version else None)
    return {"model": name, "current": current, "history": [h.as_dict() for h in history]}


@bp.put("/api/models/<name>/prices")
@spec.validate(json=PriceBody, resp=Response(HTTP_200=PricesEnvelope, **E), tags=TAGS)
def put_prices(name: str, json: PriceBody):
    """Set the price of a model (or of one `version`) in USD per 1M tokens from
    `effective_from` (default now). Calls after that time use it, earlier calls keep their
    cost, and the previous prices stay in the history."""
    rates = json.model_dump(include={"input_per_1m", "output_per_1m", "cached_input_per_1m",
                                     "thinking_per_1m"}, exclude_none=True)
    services().prices.set_price(name, rates, version=json.version,
                                effective_from=parse_time(json.effective_from,
                                                          "effective_from"),
                                source=json.source, actor=actor())
    return {"prices": _prices(name, json.version)}


@bp.get("/api/models/<name>/prices")
@spec.validate(query=PricesQuery, resp=Response(HTTP_200=PricesEnvelope, **E), tags=TAGS)
def get_prices(name: str, query: PricesQuery):
    """The price in force now for each version (its 100 newest, or `version`) with where it
    comes from (`version`, `config`, `model`, `builtin`), and the stored price history newest
    first."""
    return {"prices": _prices(name, query.version)}


@bp.get("/api/spend")
@spec.validate(query=SpendQuery, resp=Response(HTTP_200=SpendEnvelope, HTTP_400=ErrorOut),
               tags=TAGS)
def spend(query: SpendQuery):
    """What predictions cost, exact integer micro-USD sums per `group_by` (any of model,
    version, key, day, hour) over [`from`, `to`) rounded to whole UTC hours; `key` filters one
    API key's name, `model` one model."""
    report = services().spend.report(
        query.group_by, parse_time(query.from_, "from"), parse_time(query.to, "to"),
        model=query.model, api_key=query.key, limit=query.limit, page_token=query.page_token)
    return {"spend": report}


def _scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidArgument(f"budget scope must be 'key' or 'model', got {scope!r}")
    return scope


@bp.put("/api/budgets/<scope>/<name>")
@spec.validate(json=BudgetBody, resp=Response(HTTP_200=BudgetEnvelope, HTTP_400=ErrorOut),
               tags=TAGS)
def put_budget(scope: str, name: str, json: BudgetBody):
    """Create or replace the budget of an API key (`scope` key, by key name) or a model, per
    UTC `day` or `month`: `soft_limit_usd` raises an alert, `hard_limit_usd` rejects further
    predictions with 429 (or only alerts with `hard_action: alert`)."""
    budget = services().budgets.put(_scope(scope), name, json.period,
                                    soft_limit_usd=json.soft_limit_usd,
                                    hard_limit_usd=json.hard_limit_usd,
                                    hard_action=json.hard_action, actor=actor())
    return {"budget": budget}


@bp.get("/api/budgets")
@spec.validate(query=BudgetsQuery, resp=Response(HTTP_200=BudgetList, HTTP_400=ErrorOut),
               tags=TAGS)
def list_budgets(query: BudgetsQuery):
    """Budgets by scope and name, each with its spend in the current period and when that
    resets; keyset pagination (`limit`, `page_token` from the previous answer's
    `next_page_token`)."""
    budgets, token = services().budgets.list_page(query.limit, query.page_token)
    return {"budgets": budgets, "next_page_token": token}


@bp.get("/api/budgets/<scope>/<name>")
@spec.validate(resp=Response(HTTP_200=BudgetEnvelope, **E), tags=TAGS)
def get_budget(scope: str, name: str):
    """One budget with its spend in the current period."""
    return {"budget": services().budgets.get(_scope(scope), name)}


@bp.delete("/api/budgets/<scope>/<name>")
@spec.validate(resp=Response(HTTP_204=None, **E), tags=TAGS)
def delete_budget(scope: str, name: str):
    """Remove a budget."""
    services().budgets.delete(_scope(scope), name)
    return "", 204
