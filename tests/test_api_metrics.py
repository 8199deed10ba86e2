"""Metrics, comparison, series, alerts and Prometheus over REST, fed by real predictions."""
from __future__ import annotations

import pytest

from tests.test_api_predict import onnx_model


@pytest.fixture
def served(client):
    onnx_model(client, version="1.0.0")
    client.post("/api/models/lin/versions/register",
                json={"version": "1.1.0", "provider": "onnx", "status": "stable"})
    from models.onnx_examples import linear_model
    client.put("/api/models/lin/versions/1.1.0/artifact", data=linear_model(),
               content_type="application/octet-stream")
    for i in range(30):
        r = client.post("/api/models/lin/predict",
                        json={"input": [[1, 2, 3, 4]], "version": "1.0.0" if i < 10 else "1.1.0"})
        assert r.status_code == 200
    return client


def test_metrics_per_version(served):
    # the fixture's predictions pin their versions: reported apart from routed traffic
    assert served.get("/api/models/lin/metrics").json["versions"] == {}
    body = served.get("/api/models/lin/metrics?traffic=pinned").json
    assert body["model"] == "lin"
    assert body["versions"]["1.0.0"]["requests"] == 10
    assert body["versions"]["1.1.0"]["requests"] == 20
    m = body["versions"]["1.1.0"]
    assert m["success_rate"] == 100.0 and m["error_rate"] == 0.0
    assert 0 < m["p50_latency"] <= m["p95_latency"] <= m["p99_latency"]
    one = served.get("/api/models/lin/metrics?version=1.0.0&window=15m&traffic=pinned").json
    assert list(one["versions"]) == ["1.0.0"] and one["window"] == "15m"


def test_compare_and_series(served):
    body = served.get("/api/models/lin/compare?v1=1.0.0&v2=1.1.0&traffic=pinned").json
    assert body["v1"]["requests"] == 10 and body["v2"]["requests"] == 20
    assert body["diff"]["requests"]["delta"] == 10
    series = served.get("/api/models/lin/metrics/series?window=10m&step=1m&traffic=pinned").json
    assert series["model"] == "lin"
    points = series["points"]["1.1.0"]
    assert sum(p["requests"] for p in points) == 20


@pytest.mark.parametrize("url", [
    "/api/models/lin/metrics?window=banana", "/api/models/lin/compare?v1=1.0.0",
    "/api/models/lin/metrics/series?step=0s", "/api/alerts?active=maybe",
    "/api/alerts?limit=0"])
def test_bad_queries_are_400(served, url):
    assert served.get(url).status_code == 400


def test_unknown_model_or_version_is_404(served):
    assert served.get("/api/models/ghost/metrics").status_code == 404
    assert served.get("/api/models/lin/compare?v1=1.0.0&v2=nope").status_code == 404


def test_alerts_listing(served, app):
    alerts = app.extensions["model_registry"].alerts
    alerts.raise_alert("lin", "1.1.0", "error_rate", 0.5, 0.05, "error rate 50%", "critical")
    body = served.get("/api/alerts?model=lin&active=true").json
    assert [a["rule"] for a in body["alerts"]] == ["error_rate"]
    assert served.get("/api/alerts?model=other").json["alerts"] == []


def test_prometheus_exposition(client):
    onnx_model(client, name="prom-model")
    for _ in range(7):
        assert client.post("/api/models/prom-model/predict",
                           json={"input": [[1, 2, 3, 4]]}).status_code == 200
    r = client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    text = r.get_data(as_text=True)
    # counters are process-wide; this model name is used by this test only
    assert ('registry_predictions_total{model="prom-model",outcome="success",version="1.0.0"} 7.0'
            in text)
    assert 'registry_prediction_latency_seconds_count{model="prom-model",version="1.0.0"} 7.0' in text
