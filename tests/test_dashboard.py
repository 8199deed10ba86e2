"""The dashboard's pages and its aggregate endpoint, with Flask's test client.

Pages are shells (their data comes from the API in the browser, see test_dashboard_browser.py):
here, that each renders with an empty registry and with a model, carries its mount points and
scripts, is public while the API stays protected; and that ``GET /api/overview`` answers what
the models page shows, validates its query and is documented.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.app import create_app
from models.onnx_examples import linear_model

STATIC = Path(__file__).resolve().parent.parent / "api" / "static" / "dashboard"
PAGES = {
    "/ui/": ["models", "models-empty", "models-pager", "q"],
    "/ui/models/m": ["traffic-bar", "rollout", "deploy-form", "rollback-form", "charts",
                     "versions", "versions-pager", "model-alerts", "model-deployments"],
    "/ui/deployments": ["deployments", "deployments-empty", "deployments-pager", "f-state"],
    "/ui/rollbacks": ["rollbacks", "rollbacks-empty", "rollbacks-pager"],
    "/ui/alerts": ["alerts", "alerts-empty", "alerts-pager", "f-active"],
    "/ui/snapshots": ["snapshots", "snapshots-empty", "snapshots-pager", "snapshot-form"],
    "/ui/webhooks": ["webhooks", "webhooks-empty", "webhooks-pager", "log-card", "deliveries",
                     "deliveries-pager"],
}
COMMON_IDS = ["api-key", "key-form", "banner", "confirm", "confirm-ok", "confirm-reason"]


def add_version(client, version: str, status: str = "experimental", name: str = "m") -> None:
    """Register an ONNX version of ``name`` and upload its artifact."""
    r = client.post(f"/api/models/{name}/versions/register",
                    json={"version": version, "status": status, "provider": "onnx"})
    assert r.status_code == 201, r.json
    r = client.put(f"/api/models/{name}/versions/{version}/artifact", data=linear_model(),
                   content_type="application/octet-stream")
    assert r.status_code == 201, r.json


def tick(app) -> None:
    """The test app runs no ticker: advance the rollouts by hand."""
    app.extensions["model_registry"].deployments.tick()


def check_page(client, path: str, ids: list[str]) -> str:
    r = client.get(path)
    assert r.status_code == 200, path
    assert r.mimetype == "text/html"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    html = r.get_data(as_text=True)
    for element_id in COMMON_IDS + ids:
        assert f'id="{element_id}"' in html, (path, element_id)
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        with client.get(src) as r:   # closed: a static file response holds the file open
            assert r.status_code == 200, src
    assert "<script>" not in html and " style=" not in html   # nothing inline: the CSP holds
    return html


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_with_an_empty_registry(client, path):
    check_page(client, path, PAGES[path])


def test_every_page_renders_with_one_model(app, client):
    client.post("/api/models/register", json={"name": "m"})
    add_version(client, "1.0.0")
    client.post("/api/models/m/deploy", json={"version": "1.0.0"})
    tick(app)
    for path, ids in PAGES.items():
        check_page(client, path, ids)
    html = client.get("/ui/models/m").get_data(as_text=True)
    assert 'data-page="model" data-model="m"' in html


def test_root_and_bare_ui_lead_to_the_dashboard(client):
    r = client.get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/ui/")
    assert client.get("/ui").status_code in (301, 308)


def test_model_names_are_escaped_in_the_page(client):
    r = client.get('/ui/models/"><img src=x onerror=alert(1)>')
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "<img" not in html
    assert 'data-model="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in html


def test_webhooks_page_is_in_the_navigation_and_its_data_needs_an_admin(data_dir):
    app = create_app({"TESTING": True, "data_dir": data_dir, "admin_token": "t0ken"})
    try:
        client = app.test_client()
        assert 'href="/ui/webhooks"' in client.get("/ui/").get_data(as_text=True)
        _, token = app.extensions["model_registry"].keys.create("viewer", "read", actor="t")
        r = client.get("/api/webhooks", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
        r = client.get("/api/webhooks", headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 200 and r.json == {"webhooks": [], "next_page_token": None}
    finally:
        app.extensions["model_registry"].close()


def test_scripts_put_api_data_in_as_text_only():
    for path in STATIC.glob("*.js"):
        source = path.read_text()
        assert "innerHTML" not in source and "outerHTML" not in source, path.name
        assert "insertAdjacentHTML" not in source and "eval(" not in source, path.name


def test_pages_are_public_but_their_data_is_not(data_dir):
    app = create_app({"TESTING": True, "data_dir": data_dir, "admin_token": "t0ken"})
    try:
        client = app.test_client()
        for path in PAGES:
            assert client.get(path).status_code == 200, path
        with client.get("/static/dashboard/common.js") as r:
            assert r.status_code == 200
        r = client.get("/api/overview")
        assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHENTICATED"
        r = client.get("/api/overview", headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 200 and r.json == {"models": [], "next_page_token": None}
    finally:
        app.extensions["model_registry"].close()


# -- GET /api/overview --------------------------------------------------------------------------
def overview(client, **params) -> dict:
    r = client.get("/api/overview", query_string=params)
    assert r.status_code == 200, r.json
    return r.json


def test_overview_empty(client):
    assert overview(client) == {"models": [], "next_page_token": None}


def test_overview_of_models_not_deployed(client):
    client.post("/api/models/register", json={"name": "bare", "description": "no versions",
                                                "tags": {"team": "ml"}})
    client.post("/api/models/register", json={"name": "stable"})
    add_version(client, "1.0.0", status="stable", name="stable")
    add_version(client, "2.0.0", status="experimental", name="stable")
    bare, stable = overview(client)["models"]
    assert bare["name"] == "bare" and bare["description"] == "no versions"
    assert bare["tags"] == {"team": "ml"}
    assert (bare["traffic"], bare["live_versions"], bare["traffic_source"]) == ({}, [], "none")
    assert bare["health"] == "idle" and bare["rollout"] is None and bare["active_alerts"] == 0
    # nothing deployed: the router serves the highest stable version, and so says the overview
    assert stable["traffic"] == {"1.0.0": 100} and stable["traffic_source"] == "default"
    assert stable["stable_version"] == "1.0.0" and stable["health"] == "ok"


def test_overview_shows_the_canary_in_progress_and_alerts(app, client):
    client.post("/api/models/register", json={"name": "m"})
    for version in ("1.0.0", "1.1.0"):
        add_version(client, version)
    client.post("/api/models/m/deploy", json={"version": "1.0.0"})
    dep = client.post("/api/models/m/deploy",
                      json={"version": "1.1.0", "strategy": "canary"}).json["deployment"]
    model = overview(client)["models"][0]
    assert model["traffic"] == {"1.0.0": 90, "1.1.0": 10}
    assert model["live_versions"] == ["1.0.0", "1.1.0"]    # heaviest first
    assert model["stable_version"] == "1.0.0" and model["traffic_source"] == "table"
    rollout = model["rollout"]
    assert rollout["id"] == dep["id"] and rollout["version"] == "1.1.0"
    assert (rollout["state"], rollout["step"], rollout["steps"]) == ("progressing", 0,
                                                                     [10, 50, 100])
    assert rollout["strategy"] == "canary" and rollout["previous_version"] == "1.0.0"
    assert model["health"] == "ok"

    alerts = app.extensions["model_registry"].alerts
    alerts.raise_alert("m", "1.1.0", "high_latency", 0.9, 0.5, "slow", "warning")
    model = overview(client)["models"][0]
    assert model["active_alerts"] == 1 and model["health"] == "warning"
    alerts.raise_alert("m", "1.1.0", "high_error_rate", 0.3, 0.05, "failing", "critical")
    model = overview(client)["models"][0]
    assert model["active_alerts"] == 2 and model["health"] == "critical"

    client.post(f"/api/deployments/{dep['id']}/abort", json={"reason": "enough"})
    model = overview(client)["models"][0]
    assert model["rollout"] is None and model["traffic"] == {"1.0.0": 100}


def test_overview_paused_rollout_is_a_warning(app, client):
    client.post("/api/models/register", json={"name": "m"})
    for version in ("1.0.0", "1.1.0"):
        add_version(client, version)
    client.post("/api/models/m/deploy", json={"version": "1.0.0"})
    tick(app)
    dep = client.post("/api/models/m/deploy",
                      json={"version": "1.1.0", "strategy": "canary"}).json["deployment"]
    tick(app)
    assert client.post(f"/api/deployments/{dep['id']}/pause", json={}).status_code == 200
    model = overview(client)["models"][0]
    assert model["rollout"]["state"] == "paused" and model["health"] == "warning"


def test_overview_search_and_pagination(client):
    for name in ("alpha", "beta", "gamma", "delta", "alphabet"):
        client.post("/api/models/register", json={"name": name, "tags": {"n": name[0]}})
    first = overview(client, limit=2)
    assert [m["name"] for m in first["models"]] == ["alpha", "alphabet"]
    second = overview(client, limit=2, page_token=first["next_page_token"])
    assert [m["name"] for m in second["models"]] == ["beta", "delta"]
    third = overview(client, limit=2, page_token=second["next_page_token"])
    assert [m["name"] for m in third["models"]] == ["gamma"]
    assert third["next_page_token"] is None
    assert [m["name"] for m in overview(client, q="ALPH")["models"]] == ["alpha", "alphabet"]
    assert [m["name"] for m in overview(client, tag="n:g")["models"]] == ["gamma"]
    assert overview(client, q="nothing-like-it")["models"] == []


@pytest.mark.parametrize("query, fragment", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=many", "limit"),
    ("page_token=not-a-token", "page_token"), ("q=" + "x" * 129, "q"),
    ("tag=no-colon", "key:value"), ("bogus=1", "bogus"),
])
def test_overview_rejects_bad_queries(client, query, fragment):
    r = client.get("/api/overview?" + query)
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "INVALID_ARGUMENT" and fragment in r.json["error"]["message"]


def test_overview_and_series_are_documented(client):
    doc = client.get("/openapi.json").json
    op = doc["paths"]["/api/overview"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"q", "tag", "limit", "page_token"}
    assert {"200", "400", "401"} <= set(op["responses"])
    assert "traffic" in op["summary"]
    series = doc["paths"]["/api/models/{name}/metrics/series"]["get"]
    assert "step" in series["description"] and "p95_latency" in series["description"]
    assert not any(path.startswith("/ui") for path in doc["paths"])   # pages are not the API
