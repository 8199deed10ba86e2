"""The web dashboard: HTML pages under ``/ui`` and the one aggregate they need, ``/api/overview``.

The pages are shells: they hold no data, so they are public (``/ui`` is in
``auth.PUBLIC_PREFIXES``). Their JavaScript (``api/static/dashboard/``) loads everything from
the JSON API with ``fetch``, sending ``Authorization: Bearer <key>`` when the user has pasted a
key into the header, so the data stays exactly as protected as the API is.

``GET /api/overview`` answers the models page in one request instead of one request per model:
each model of a page with its live traffic, its rollout in progress and its active alerts. It
only reads, through the stores and managers the other endpoints use.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from flask import Blueprint, Response as FlaskResponse, redirect, render_template, url_for
from pydantic import BaseModel, Field
from spectree import Response
from werkzeug.wrappers import Response as WerkzeugResponse

from api.schemas import Body, ErrorOut
from api.services import services
from api.spec import spec
from deployment.listing import ALL_STATES
from deployment.records import Deployment

bp = Blueprint("dashboard", __name__)
TAGS = ["dashboard"]
OVERVIEW_MAX_PAGE = 100
ALERTS_COUNTED = 100  # active alerts counted per model; more shows as ALERTS_COUNTED
ALERTS_SCANNED = 500  # up to this many active alerts in all are read in one query

# The pages run only their own scripts and styles, talk only to this server, and cannot be
# framed: a pasted API key in localStorage is then out of reach of injected markup.
PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# Navigation: (endpoint, label). The model page is reached from the models page.
NAV = (("dashboard.models_page", "Models"), ("dashboard.deployments_page", "Deployments"),
       ("dashboard.rollbacks_page", "Rollbacks"), ("dashboard.alerts_page", "Alerts"),
       ("dashboard.snapshots_page", "Snapshots"), ("dashboard.webhooks_page", "Webhooks"))


# -- the overview endpoint ----------------------------------------------------------------------
class OverviewQuery(Body):
    q: Optional[str] = Field(None, max_length=128, description="name substring")
    tag: Optional[str] = Field(None, max_length=650, description="key:value")
    limit: int = Field(50, ge=1, le=OVERVIEW_MAX_PAGE)
    page_token: Optional[str] = Field(None, max_length=2048)


class OverviewRollout(BaseModel):
    id: str
    version: str
    previous_version: Optional[str]
    strategy: str
    state: str
    step: Optional[int] = Field(description="index into steps; null before the first step")
    steps: list[int]
    updated_at: str


class OverviewModel(BaseModel):
    name: str
    description: str
    tags: dict[str, str]
    updated_at: str
    live_versions: list[str] = Field(description="versions serving traffic, heaviest first")
    traffic: dict[str, int] = Field(description="{version: percent} serving now")
    stable_version: Optional[str]
    traffic_source: Literal["table", "default", "none"] = Field(
        description="`table`: set by a deployment or rollback; `default`: nothing deployed "
                    "yet, the highest stable version serves; `none`: nothing can serve")
    rollout: Optional[OverviewRollout] = Field(description="the rollout in progress, if any")
    active_alerts: int = Field(description=f"active alerts (counted up to {ALERTS_COUNTED})")
    health: Literal["ok", "warning", "critical", "idle"] = Field(
        description="`critical`: a critical alert is active; `warning`: a warning alert is "
                    "active or the rollout is paused; `idle`: nothing serves; else `ok`")


class Overview(BaseModel):
    models: list[OverviewModel]
    next_page_token: Optional[str]


def _rollout(dep: Deployment | None) -> dict[str, Any] | None:
    if dep is None:
        return None
    out = dep.as_dict()
    return {k: out[k] for k in ("id", "version", "previous_version", "strategy", "state",
                                "step", "steps", "updated_at")}


def _active_alerts(names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The active alerts of each model named: one query for all of them while every active
    alert fits in one page (the usual case: at most one per model, version and rule), else one
    indexed query per model."""
    manager = services().alerts
    found, more = manager.list_alerts(None, True, ALERTS_SCANNED)
    if more is None:
        wanted = set(names)
        out: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for alert in found:
            if alert["model"] in wanted:
                out[alert["model"]].append(alert)
        return out
    return {name: manager.list_alerts(name, True, ALERTS_COUNTED)[0] for name in names}


def _health(serving: bool, rollout: dict[str, Any] | None,
            alerts: list[dict[str, Any]]) -> str:
    severities = {a["severity"] for a in alerts}
    if "critical" in severities:
        return "critical"
    if severities or (rollout is not None and rollout["state"] == "paused"):
        return "warning"
    return "ok" if serving else "idle"


@bp.get("/api/overview")
@spec.validate(query=OverviewQuery, resp=Response(HTTP_200=Overview, HTTP_400=ErrorOut),
               tags=TAGS)
def overview(query: OverviewQuery) -> dict[str, Any]:
    """The models page in one request: each model with its traffic, rollout and alerts.

    One page of models by name (`q`: name substring, `tag=key:value`, `limit` up to 100,
    `page_token` from the previous answer's `next_page_token`), each with the live traffic
    split and the versions serving it (heaviest first), the rollout in progress (state and
    step) if any, the number of active alerts, and a health summary. The traffic tables of the
    page are read in one query, the rollouts in progress and the alerts with
    one query each, and what serves the models never deployed (their highest stable
    versions) with one query for the page."""
    svc = services()
    models, token = svc.registry.list_models(query.q, query.tag, query.limit, query.page_token)
    names = [m["name"] for m in models]
    active = {dep.model: dep for dep in svc.deployments.store.active()}
    alerts = _active_alerts(names)
    tables = svc.traffic.get_many(names)
    defaults = svc.registry.highest_stable([n for n in names if n not in tables])
    out = []
    for model in models:
        name = model["name"]
        table = tables.get(name)
        if table is not None:
            weights, stable, source = dict(table.weights), table.stable_version, "table"
        else:   # what the router serves a model that was never deployed
            stable = defaults.get(name)
            weights, source = ({stable: 100}, "default") if stable else ({}, "none")
        rollout = _rollout(active.get(name))
        out.append({
            "name": name, "description": model["description"], "tags": model["tags"],
            "updated_at": model["updated_at"],
            "live_versions": sorted(weights, key=lambda v: (-weights[v], v)),
            "traffic": weights, "stable_version": stable, "traffic_source": source,
            "rollout": rollout, "active_alerts": min(len(alerts[name]), ALERTS_COUNTED),
            "health": _health(bool(weights), rollout, alerts[name]),
        })
    return {"models": out, "next_page_token": token}


# -- the pages ----------------------------------------------------------------------------------
def _page(template: str, title: str, active: str, **context: Any) -> FlaskResponse:
    html = render_template(f"dashboard/{template}", title=title, nav=NAV, active=active,
                           **context)
    return FlaskResponse(html, mimetype="text/html", headers=PAGE_HEADERS)


@bp.get("/")
def index() -> WerkzeugResponse:
    """The dashboard is the home page."""
    return redirect(url_for("dashboard.models_page"))


@bp.get("/ui/")
def models_page() -> FlaskResponse:
    """Every model with its live versions, traffic split, rollout and alerts."""
    return _page("models.html", "Models", "dashboard.models_page")


@bp.get("/ui/models/<name>")
def model_page(name: str) -> FlaskResponse:
    """One model: versions, traffic, the current rollout, charts, actions."""
    return _page("model.html", name, "dashboard.models_page", model=name)


@bp.get("/ui/deployments")
def deployments_page() -> FlaskResponse:
    """Every deployment, newest first, with verdicts and events."""
    return _page("deployments.html", "Deployments", "dashboard.deployments_page",
                 states=ALL_STATES)


@bp.get("/ui/rollbacks")
def rollbacks_page() -> FlaskResponse:
    """The rollback history with its evidence."""
    return _page("rollbacks.html", "Rollbacks", "dashboard.rollbacks_page")


@bp.get("/ui/alerts")
def alerts_page() -> FlaskResponse:
    """Alerts: the active ones by default, or all of them."""
    return _page("alerts.html", "Alerts", "dashboard.alerts_page")


@bp.get("/ui/snapshots")
def snapshots_page() -> FlaskResponse:
    """Snapshots of the serving state; restore one."""
    return _page("snapshots.html", "Snapshots", "dashboard.snapshots_page")


@bp.get("/ui/webhooks")
def webhooks_page() -> FlaskResponse:
    """Webhook subscriptions and the delivery log of each (the data needs an admin key)."""
    return _page("webhooks.html", "Webhooks", "dashboard.webhooks_page")
