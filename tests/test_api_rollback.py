"""Rollback and snapshots over REST: the seed's body, clear answers for every refusal."""
from __future__ import annotations

import pytest

from tests.test_api_predict import onnx_model


@pytest.fixture
def deployed(client, app):
    """Model 'lin' with 1.0.0 then 1.1.0 deployed (each done when its deploy answers)."""
    onnx_model(client, version="1.0.0", status="experimental")
    for version in ("1.0.0", "1.1.0"):
        if version != "1.0.0":
            onnx_model(client, version=version, status="experimental")
        r = client.post("/api/models/lin/deploy", json={"version": version})
        assert r.status_code == 201, r.json
        assert r.json["deployment"]["state"] == "succeeded"
    return client


def test_seed_rollback_body(deployed):
    r = deployed.post("/api/models/lin/rollback", json={"reason": "latency regression"})
    assert r.status_code == 200
    rb = r.json["rollback"]
    assert (rb["from_version"], rb["to_version"], rb["trigger"]) == ("1.1.0", "1.0.0", "manual")
    assert rb["reason"] == "latency regression" and rb["created_at"].endswith("Z")
    r = deployed.post("/api/models/lin/predict", json={"input": [[1, 2, 3, 4]]})
    assert r.json["version"] == "1.0.0"
    r = deployed.post("/api/models/lin/rollback", json={"version": "1.1.0"})
    assert r.status_code == 200 and r.json["rollback"]["to_version"] == "1.1.0"
    history = deployed.get("/api/rollbacks?model=lin").json["rollbacks"]
    assert [h["to_version"] for h in history] == ["1.1.0", "1.0.0"]


def test_rollback_refusals_are_clear(client, deployed):
    r = deployed.post("/api/models/lin/rollback", json={})
    assert r.status_code == 200
    r = deployed.post("/api/models/lin/rollback", json={})
    assert r.status_code == 409 and "no version live before" in r.json["error"]["message"]
    assert deployed.post("/api/models/ghost/rollback", json={}).status_code == 404
    assert deployed.post("/api/models/lin/rollback", json={"version": "9.9.9"}).status_code == 404
    assert deployed.post("/api/models/lin/rollback", json={"version": 5}).status_code == 400
    onnx_model(client, name="fresh")
    r = client.post("/api/models/fresh/rollback", json={})
    assert r.status_code == 409 and "never been deployed" in r.json["error"]["message"]


def test_snapshots_over_rest(deployed):
    r = deployed.post("/api/snapshots", json={"model": "lin", "reason": "before the experiment"})
    assert r.status_code == 201
    snap = r.json["snapshot"]
    assert snap["state"]["models"]["lin"]["traffic"]["weights"] == {"1.1.0": 100}
    deployed.post("/api/models/lin/rollback", json={})
    r = deployed.post(f"/api/snapshots/{snap['id']}/restore", json={})
    assert r.status_code == 200 and r.json["restore"]["rollbacks"][0]["trigger"] == "snapshot"
    assert deployed.post("/api/models/lin/predict",
                         json={"input": [[1, 2, 3, 4]]}).json["version"] == "1.1.0"
    listed = deployed.get("/api/snapshots?model=lin").json["snapshots"]
    assert snap["id"] in [s["id"] for s in listed]
    assert deployed.get("/api/snapshots?automatic=true").json["snapshots"]  # before each deploy
    assert deployed.get(f"/api/snapshots/{snap['id']}").status_code == 200
    assert deployed.delete(f"/api/snapshots/{snap['id']}").status_code == 204
    assert deployed.get(f"/api/snapshots/{snap['id']}").status_code == 404
    assert deployed.post(f"/api/snapshots/{snap['id']}/restore", json={}).status_code == 404


def test_snapshot_errors(client):
    assert client.post("/api/snapshots", json={"model": "ghost"}).status_code == 404
    assert client.post("/api/snapshots", json={"model": "bad name"}).status_code == 400
    assert client.get("/api/snapshots?automatic=perhaps").status_code == 400
    r = client.post("/api/snapshots", json={})
    assert r.status_code == 201 and r.json["snapshot"]["model"] is None


def test_deleting_a_deployed_model_is_refused(deployed):
    r = deployed.delete("/api/models/lin")
    assert r.status_code == 409 and "deployed" in r.json["error"]["message"]
    assert deployed.get("/api/models/lin").status_code == 200
