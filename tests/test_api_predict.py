"""Artifacts and predictions over the REST API: ONNX locally, Gemini through the real SDK
against the fake server; every provider failure mapped to its documented status."""
from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from api.app import create_app
from models.onnx_examples import default_weights, linear_model


def onnx_model(client, name="lin", version="1.0.0", status="stable", upload=True):
    client.post("/api/models/register", json={"name": name})
    r = client.post(f"/api/models/{name}/versions/register",
                    json={"version": version, "provider": "onnx", "status": status})
    assert r.status_code == 201, r.json
    if upload:
        r = client.put(f"/api/models/{name}/versions/{version}/artifact", data=linear_model(),
                       content_type="application/octet-stream")
        assert r.status_code == 201, r.json


def gemini_model(client, name="chat", version="1.0.0", **config):
    client.post("/api/models/register", json={"name": name})
    r = client.post(f"/api/models/{name}/versions/register",
                    json={"version": version, "status": "stable",
                          "config": {"model": "gemini-2.5-flash", **config}})
    assert r.status_code == 201, r.json


def test_artifact_upload_download_and_immutability(client):
    onnx_model(client, upload=False)
    data = linear_model()
    r = client.put("/api/models/lin/versions/1.0.0/artifact", data=data,
                   content_type="application/octet-stream")
    digest = hashlib.sha256(data).hexdigest()
    assert r.status_code == 201 and r.headers["ETag"] == f'"{digest}"'
    assert r.json["version"]["artifact"] == {"digest": digest, "size": len(data)}
    with client.get("/api/models/lin/versions/1.0.0/artifact") as r:   # closes the file
        assert r.status_code == 200 and r.data == data and r.headers["ETag"] == f'"{digest}"'
    with client.get("/api/models/lin/versions/1.0.0/artifact",
                    headers={"If-None-Match": f'"{digest}"'}) as r:   # closes the file
        assert r.status_code == 304
    # same bytes again: fine; other bytes: 409
    assert client.put("/api/models/lin/versions/1.0.0/artifact", data=data,
                      content_type="application/octet-stream").status_code == 201
    r = client.put("/api/models/lin/versions/1.0.0/artifact", data=b"other bytes",
                   content_type="application/octet-stream")
    assert r.status_code == 409 and r.json["error"]["code"] == "ALREADY_EXISTS"


def test_artifact_errors(data_dir):
    app = create_app({"data_dir": data_dir, "max_artifact_bytes": 100})
    client = app.test_client()
    onnx_model(client, upload=False)
    assert client.get("/api/models/lin/versions/1.0.0/artifact").status_code == 404
    assert client.put("/api/models/lin/versions/9.9.9/artifact", data=b"x").status_code == 404
    r = client.put("/api/models/lin/versions/1.0.0/artifact", data=b"")
    assert r.status_code == 400
    r = client.put("/api/models/lin/versions/1.0.0/artifact", data=b"x" * 1000)
    assert r.status_code == 413 and r.json["error"]["code"] == "TOO_LARGE"


def test_onnx_predict_matches_numpy(client):
    onnx_model(client)
    x = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]
    r = client.post("/api/models/lin/predict", json={"input": x})
    assert r.status_code == 200, r.json
    w, b = default_weights(4, 2)
    np.testing.assert_allclose(r.json["output"], np.array(x, np.float32) @ w + b, rtol=1e-5)
    body = r.json
    assert body["version"] == "1.0.0" and body["routed_by"] == "weight"
    assert body["fallback"] is False and body["usage"] is None and body["latency"] > 0


@pytest.mark.parametrize("bad", [[[1, 2, 3]], "text", [["a", "b", "c", "d"]], {"nope": [1]}])
def test_onnx_bad_input_is_400(client, bad):
    onnx_model(client)
    r = client.post("/api/models/lin/predict", json={"input": bad})
    assert r.status_code == 400 and "x: float32[N, 4]" in r.json["error"]["message"]


def test_predict_errors(client):
    assert client.post("/api/models/ghost/predict", json={"input": 1}).status_code == 404
    onnx_model(client, status="experimental")
    r = client.post("/api/models/lin/predict", json={"input": [[1, 2, 3, 4]]})
    assert r.status_code == 503 and "nothing is deployed" in r.json["error"]["message"]
    r = client.post("/api/models/lin/predict", json={"input": [[1, 2, 3, 4]], "version": "1.0.0"})
    assert r.status_code == 200 and r.json["routed_by"] == "pin"
    assert client.post("/api/models/lin/predict", json={}).status_code == 400
    assert client.post("/api/models/lin/predict", json={"input": 1, "extra": 2}).status_code == 400
    onnx_model(client, name="noart", upload=False)
    r = client.post("/api/models/noart/predict", json={"input": [[1, 2, 3, 4]]})
    assert r.status_code == 409 and "upload an artifact" in r.json["error"]["message"]


def test_corrupted_artifact_is_refused_not_served(client, app):
    onnx_model(client)
    svc = app.extensions["model_registry"]
    digest = svc.registry.get_version("lin", "1.0.0")["artifact"]["digest"]
    path = svc.artifacts.path_for(digest, verify=False)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-3] + b"bad")
    r = client.post("/api/models/lin/predict", json={"input": [[1, 2, 3, 4]]})
    assert r.status_code == 409 and r.json["error"]["code"] == "DATA_CORRUPTED"
    assert client.get("/api/models/lin/versions/1.0.0/artifact").status_code == 409


def test_gemini_predict_returns_text_and_usage(client, gemini):
    gemini_model(client, system_instruction="Be brief.", temperature=0.2)
    r = client.post("/api/models/chat/predict", json={"input": "hello there world"})
    assert r.status_code == 200, r.json
    assert r.json["output"] == "echo: hello there world"
    usage = r.json["usage"]
    assert usage["input_tokens"] > 0 and usage["total_tokens"] == (
        usage["input_tokens"] + usage["output_tokens"])
    sent = gemini.calls[-1]["body"]
    assert sent["generationConfig"]["temperature"] == 0.2
    assert "Be brief." in str(sent["systemInstruction"])


@pytest.mark.parametrize("status, code, http", [(429, "UNAVAILABLE", 503),
                                                (500, "PROVIDER_ERROR", 502)])
def test_gemini_failures_map_to_statuses(client, gemini, status, code, http):
    gemini_model(client)
    gemini.set_behavior(error_rate=1.0, status=status)
    r = client.post("/api/models/chat/predict", json={"input": "hi"})
    assert r.status_code == http and r.json["error"]["code"] == code
    assert str(status) in r.json["error"]["message"]
    assert gemini.call_count() == 1  # the SDK did not retry behind our back


def test_gemini_timeout_is_504_within_the_limit(client, gemini, monkeypatch):
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "0.25")   # a real wait: kept short
    gemini_model(client)
    gemini.set_behavior(hang=True)
    started = time.monotonic()
    r = client.post("/api/models/chat/predict", json={"input": "hi"})
    assert r.status_code == 504 and r.json["error"]["code"] == "PROVIDER_TIMEOUT"
    assert time.monotonic() - started < 0.25 + 3


def test_gemini_without_key_is_503_naming_the_variable(client, monkeypatch):
    gemini_model(client)
    r = client.post("/api/models/chat/predict", json={"input": "hi"})
    assert r.status_code == 503 and "GEMINI_API_KEY" in r.json["error"]["message"]


def test_predictions_are_tracked(client, app):
    onnx_model(client)
    for _ in range(5):
        client.post("/api/models/lin/predict", json={"input": [[1, 2, 3, 4]]})
    client.post("/api/models/lin/predict", json={"input": [[1, 2, 3]]})  # caller's fault: not counted
    metrics = app.extensions["model_registry"].tracker.get_metrics("lin", "1.0.0")
    assert metrics["requests"] == 5 and metrics["successes"] == 5


@pytest.mark.slow   # waits for a 1 s backend
def test_slow_backend_cannot_exhaust_workers(data_dir, gemini, monkeypatch):
    """Over the per-model in-flight limit the next request is refused at once with 429."""
    from concurrent.futures import ThreadPoolExecutor
    app = create_app({"TESTING": True, "data_dir": data_dir, "max_inflight_per_model": 2})
    client = app.test_client()
    gemini_model(client)
    gemini.set_behavior(latency=1.0)
    with ThreadPoolExecutor(3) as pool:
        slow = [pool.submit(client.post, "/api/models/chat/predict", json={"input": "hi"})
                for _ in range(2)]
        time.sleep(0.4)
        started = time.monotonic()
        r = client.post("/api/models/chat/predict", json={"input": "hi"})
        assert r.status_code == 429 and r.json["error"]["code"] == "RESOURCE_EXHAUSTED"
        assert time.monotonic() - started < 0.5
        assert [f.result().status_code for f in slow] == [200, 200]
    assert client.post("/api/models/chat/predict", json={"input": "hi"}).status_code == 200
