"""The deployment endpoints: the seed's deploy body, errors, history, actions, traffic ``?at=``.

The test client's app runs no ticker (TESTING): a deploy does its health check and first step
inside the call; each test ticks explicitly for the rest."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from api import background
from api.app import create_app
from storage.schema import iso
from models import onnx_examples

DEPLOYMENT_KEYS = {"id", "model", "version", "previous_version", "strategy", "state", "step",
                   "steps", "traffic", "analysis", "reason", "created_at", "updated_at",
                   "finished_at"}


def add_version(client, version: str, status: str = "experimental", name: str = "m") -> None:
    r = client.post(f"/api/models/{name}/versions/register",
                    json={"version": version, "status": status, "provider": "onnx"})
    assert r.status_code == 201, r.json
    r = client.put(f"/api/models/{name}/versions/{version}/artifact",
                   data=onnx_examples.linear_model(),
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code in (200, 201), r.json


def tick(app) -> list[dict]:
    return app.extensions["model_registry"].deployments.tick()


@pytest.fixture
def live(app, client):
    """Model ``m`` with 1.0.0 deployed at 100% and 1.1.0, 1.2.0 registered."""
    assert client.post("/api/models/register", json={"name": "m"}).status_code == 201
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        add_version(client, version)
    r = client.post("/api/models/m/deploy", json={"version": "1.0.0"})
    assert r.status_code == 201
    assert client.get(f"/api/deployments/{r.json['deployment']['id']}").json[
        "deployment"]["state"] == "succeeded"
    return client


def test_seed_deploy_body_answers_202_with_the_first_canary_step_live(app, live):
    r = live.post("/api/models/m/deploy", json={"version": "1.1.0", "strategy": "canary"})
    assert r.status_code == 202
    dep = r.json["deployment"]
    assert DEPLOYMENT_KEYS <= set(dep)
    assert dep["state"] == "progressing" and dep["strategy"] == "canary" and dep["step"] == 0
    assert dep["steps"] == [10, 50, 100] and dep["previous_version"] == "1.0.0"
    assert dep["traffic"] == {"1.1.0": 10, "1.0.0": 90}
    assert dep["analysis"]["min_requests"] == 20
    assert dep["id"].startswith("dep_") and dep["actor"].startswith("api:")
    assert [e["kind"] for e in dep["events"]] == [
        "deployment.created", "deployment.health_check", "traffic.changed", "deployment.step"]
    assert live.get("/api/models/m/traffic").json["traffic"]["weights"] == {"1.1.0": 10,
                                                                           "1.0.0": 90}


def test_deploy_defaults_to_direct(app, live):
    r = live.post("/api/models/m/deploy", json={"version": "1.1.0", "reason": "hotfix"})
    assert r.status_code == 201 and r.json["deployment"]["strategy"] == "direct"
    assert r.json["deployment"]["state"] == "succeeded"
    assert r.json["deployment"]["events"][0]["reason"] == "hotfix"
    assert live.get("/api/models/m/traffic").json["traffic"]["weights"] == {"1.1.0": 100}


@pytest.mark.parametrize("body, fragment", [
    ({"version": "1.1.0", "strategy": "rolling"}, "strategy"),
    ({"version": "1.1.0", "strategy": "canary", "steps": [50, 10, 100]}, "increasing"),
    ({"version": "1.1.0", "strategy": "canary", "steps": [10, 50]}, "end at 100"),
    ({"version": "1.1.0", "strategy": "canary", "steps": [0, 100]}, "1 to 100"),
    ({"version": "1.1.0", "strategy": "canary", "steps": "10,50,100"}, "steps"),
    ({"version": "1.1.0", "steps": [10, 100]}, "canary deployments only"),
    ({"version": "1.1.0", "strategy": "canary", "analysis": {"min_requests": 0}},
     "min_requests"),
    ({"version": "1.1.0", "strategy": "canary", "analysis": {"bogus": 1}}, "bogus"),
    ({"version": "1.1.0", "analysis": {"min_requests": 5}}, "no analysis"),
    ({"version": "1.1.0", "color": "blue"}, "color"),
    ({"strategy": "canary"}, "version"),
    ({"version": "1.1.0", "force": "yes please"}, "force"),
])
def test_bad_deploy_bodies_are_400(live, body, fragment):
    r = live.post("/api/models/m/deploy", json=body)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_ARGUMENT"
    assert fragment in r.json["error"]["message"]


def test_unknown_model_or_version_is_404(live):
    r = live.post("/api/models/nope/deploy", json={"version": "1.0.0"})
    assert r.status_code == 404 and "model 'nope'" in r.json["error"]["message"]
    r = live.post("/api/models/m/deploy", json={"version": "9.9.9"})
    assert r.status_code == 404 and "9.9.9" in r.json["error"]["message"]


def test_a_second_deploy_is_409_unless_forced(app, live):
    first = live.post("/api/models/m/deploy",
                      json={"version": "1.1.0", "strategy": "canary"}).json["deployment"]["id"]
    r = live.post("/api/models/m/deploy", json={"version": "1.2.0", "strategy": "canary"})
    assert r.status_code == 409 and r.json["error"]["code"] == "FAILED_PRECONDITION"
    assert r.json["error"]["details"]["deployment_id"] == first
    r = live.post("/api/models/m/deploy",
                  json={"version": "1.2.0", "strategy": "canary", "force": True})
    assert r.status_code == 202
    assert live.get(f"/api/deployments/{first}").json["deployment"]["state"] == "superseded"
    assert r.json["deployment"]["traffic"] == {"1.2.0": 10, "1.0.0": 90}
    r = live.post("/api/models/m/deploy", json={"version": "1.0.0"})
    assert r.status_code == 409


def test_a_blue_green_window_does_not_block_the_next_deploy(app, live):
    r = live.post("/api/models/m/deploy", json={"version": "1.1.0", "strategy": "blue-green"})
    assert r.status_code == 201 and r.json["deployment"]["state"] == "progressing"
    window = r.json["deployment"]["id"]
    r = live.post("/api/models/m/deploy", json={"version": "1.2.0"})   # at once, no force
    assert r.status_code == 201 and r.json["deployment"]["state"] == "succeeded"
    assert r.json["deployment"]["previous_version"] == "1.1.0"
    assert live.get(f"/api/deployments/{window}").json["deployment"]["state"] == "succeeded"


def test_a_failing_health_check_is_409_naming_the_deployment(app, live):
    r = live.post("/api/models/m/versions/register", json={"version": "2.0.0",
                                                           "provider": "onnx"})
    assert r.status_code == 201
    live.put("/api/models/m/versions/2.0.0/artifact", data=onnx_examples.failing_model(),
             headers={"Content-Type": "application/octet-stream"})
    r = live.post("/api/models/m/deploy", json={"version": "2.0.0", "strategy": "canary"})
    assert r.status_code == 409 and r.json["error"]["code"] == "FAILED_PRECONDITION"
    dep = r.json["error"]["details"]["deployment_id"]
    assert dep in r.json["error"]["message"] and "probes of m@2.0.0 failed" in r.json[
        "error"]["message"]
    assert r.json["error"]["details"]["health_check"]["probes"]
    got = live.get(f"/api/deployments/{dep}").json["deployment"]
    assert got["state"] == "failed" and got["verdicts"][-1]["check"] == "health"
    assert live.get("/api/models/m/traffic").json["traffic"]["weights"] == {"1.0.0": 100}


def test_list_get_and_events(app, live):
    dep = live.post("/api/models/m/deploy",
                    json={"version": "1.1.0", "strategy": "canary"}).json["deployment"]["id"]
    listing = live.get("/api/deployments").json
    assert [d["version"] for d in listing["deployments"]] == ["1.1.0", "1.0.0"]
    assert listing["next_page_token"] is None and "events" not in listing["deployments"][0]
    assert [d["id"] for d in live.get("/api/deployments?state=progressing").json[
        "deployments"]] == [dep]
    assert live.get("/api/deployments?model=other").json["deployments"] == []
    page = live.get("/api/deployments?model=m&limit=1").json
    assert [d["id"] for d in page["deployments"]] == [dep] and page["next_page_token"]
    rest = live.get(f"/api/deployments?model=m&limit=1&page_token={page['next_page_token']}")
    assert [d["version"] for d in rest.json["deployments"]] == ["1.0.0"]
    got = live.get(f"/api/deployments/{dep}").json["deployment"]
    assert got["state"] == "progressing" and got["step"] == 0
    assert got["traffic"] == {"1.1.0": 10, "1.0.0": 90}
    assert [e["kind"] for e in got["events"]] == [
        "deployment.created", "deployment.health_check", "traffic.changed", "deployment.step"]
    assert all(e["at"].endswith("Z") for e in got["events"])
    assert got["verdicts"][0]["check"] == "health"
    for query in ("state=sleeping", "limit=0", "limit=abc", "page_token=%%%", "surprise=1"):
        r = live.get(f"/api/deployments?{query}")
        assert r.status_code == 400, query
    r = live.get("/api/deployments/dep_nope")
    assert r.status_code == 404 and r.json["error"]["code"] == "NOT_FOUND"


def test_actions(app, live):
    dep = live.post("/api/models/m/deploy",
                    json={"version": "1.1.0", "strategy": "canary"}).json["deployment"]["id"]
    r = live.post(f"/api/deployments/{dep}/pause", json={"reason": "looking at a graph"})
    assert r.status_code == 200 and r.json["deployment"]["state"] == "paused"
    assert r.json["deployment"]["reason"] == "looking at a graph"
    r = live.post(f"/api/deployments/{dep}/resume")
    assert r.status_code == 200 and r.json["deployment"]["state"] == "progressing"
    r = live.post(f"/api/deployments/{dep}/promote", json={})
    assert r.status_code == 200 and r.json["deployment"]["step"] == 1
    assert r.json["deployment"]["traffic"] == {"1.1.0": 50, "1.0.0": 50}
    r = live.post(f"/api/deployments/{dep}/abort", json={"reason": "latency"})
    assert r.status_code == 200 and r.json["deployment"]["state"] == "aborted"
    assert live.get("/api/models/m/traffic").json["traffic"]["weights"] == {"1.0.0": 100}
    r = live.post(f"/api/deployments/{dep}/abort")
    assert r.status_code == 409
    assert live.post(f"/api/deployments/{dep}/pause", json={"bogus": 1}).status_code == 400
    assert live.post("/api/deployments/dep_nope/abort").status_code == 404
    r = live.post(f"/api/deployments/{dep}/promote", json={"full": True})
    assert r.status_code == 409
    dep2 = live.post("/api/models/m/deploy",
                     json={"version": "1.2.0", "strategy": "canary"}).json["deployment"]["id"]
    tick(app)
    r = live.post(f"/api/deployments/{dep2}/promote", json={"full": True})
    assert r.status_code == 200 and r.json["deployment"]["state"] == "succeeded"
    assert live.get("/api/models/m/traffic").json["traffic"]["weights"] == {"1.2.0": 100}


def test_traffic_now_and_at_a_past_time(app, client):
    client.post("/api/models/register", json={"name": "m"})
    add_version(client, "1.0.0", status="stable")
    add_version(client, "1.1.0")
    r = client.get("/api/models/m/traffic")
    assert r.status_code == 200
    assert r.json["traffic"] == {"model": "m", "revision": 0, "weights": {"1.0.0": 100},
                                 "stable_version": "1.0.0", "deployment_id": None,
                                 "updated_at": None}
    before = iso(datetime.now(timezone.utc))
    time.sleep(0.01)
    dep = client.post("/api/models/m/deploy",
                      json={"version": "1.1.0", "strategy": "canary"}).json["deployment"]["id"]
    tick(app)
    time.sleep(0.01)
    during = iso(datetime.now(timezone.utc))
    client.post(f"/api/deployments/{dep}/promote")
    now = client.get("/api/models/m/traffic").json["traffic"]
    assert now["weights"] == {"1.1.0": 50, "1.0.0": 50} and now["revision"] == 2
    assert now["deployment_id"] == dep and now["stable_version"] == "1.0.0"
    then = client.get("/api/models/m/traffic", query_string={"at": during}).json["traffic"]
    assert then["weights"] == {"1.1.0": 10, "1.0.0": 90} and then["revision"] == 1
    assert client.get("/api/models/m/traffic", query_string={"at": before}).json[
        "traffic"]["weights"] == {}
    offset = (datetime.fromisoformat(during.replace("Z", "+00:00"))
              .astimezone(timezone(timedelta(hours=2))).isoformat())
    assert client.get("/api/models/m/traffic", query_string={"at": offset}).json[
        "traffic"]["revision"] == 1                          # any offset, read as UTC
    r = client.get("/api/models/m/traffic?at=yesterday")
    assert r.status_code == 400 and "ISO 8601" in r.json["error"]["message"]
    assert client.get("/api/models/nope/traffic").status_code == 404


def test_predict_follows_the_table(app, live):
    r = live.post("/api/models/m/deploy", json={"version": "1.1.0", "strategy": "blue-green"})
    assert r.status_code == 201 and r.json["deployment"]["state"] == "progressing"
    r = live.post("/api/models/m/predict", json={"input": [[1, 2, 3, 4]]})
    assert r.json["version"] == "1.1.0" and r.json["deployment_id"]   # switched on answer
    r = live.post("/api/models/m/predict", json={"input": [[1, 2, 3, 4]], "version": "1.0.0"})
    assert r.status_code == 200 and r.json["routed_by"] == "pin"      # the old one stays up


@pytest.mark.slow   # waits for the real ticker
def test_the_ticker_drives_rollouts_when_enabled(data_dir: Path):
    app = create_app({"TESTING": True, "TICKER": True, "TICKER_INTERVAL_S": 0.05,
                      "data_dir": data_dir})
    ticker = app.extensions[background.TICKER_KEY]
    try:
        assert ticker.running
        client = app.test_client()
        client.post("/api/models/register", json={"name": "m"})
        add_version(client, "1.0.0")
        add_version(client, "1.1.0")
        assert client.post("/api/models/m/deploy", json={"version": "1.0.0"}).status_code == 201
        window = {"min_requests": 1000, "interval_s": 0.1, "deadline_s": 0.2}
        dep = client.post("/api/models/m/deploy", json={
            "version": "1.1.0", "strategy": "blue-green", "analysis": window}).json[
            "deployment"]["id"]   # its post-switch window ends (succeeded) on a later tick
        deadline = time.monotonic() + 10
        while client.get(f"/api/deployments/{dep}").json["deployment"]["state"] != "succeeded":
            assert time.monotonic() < deadline, "the ticker did not advance the deployment"
            time.sleep(0.05)
    finally:
        ticker.stop()
        app.extensions["model_registry"].database.dispose()
    assert not ticker.running


def test_no_ticker_with_ticker_false(data_dir: Path):
    app = create_app({"TICKER": False, "data_dir": data_dir})
    assert background.TICKER_KEY not in app.extensions
    app.extensions["model_registry"].database.dispose()
