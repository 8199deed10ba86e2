"""Request ids, structured logs and OpenTelemetry spans (issue 20)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import observability
from api.app import create_app
from api.services import EXTENSION_KEY
from models.onnx_examples import linear_model
from tests.support import LocalHTTPServer, LiveServer

X = [[1.0, 2.0, 3.0, 4.0]]


def onnx_model(client, name: str = "m") -> None:
    client.post("/api/models/register", json={"name": name})
    client.post(f"/api/models/{name}/versions/register",
                json={"version": "1.0.0", "provider": "onnx", "status": "stable"})
    r = client.put(f"/api/models/{name}/versions/1.0.0/artifact", data=linear_model(),
                   content_type="application/octet-stream")
    assert r.status_code == 201, r.json


@pytest.fixture
def spans(data_dir: Path):
    exporter = InMemorySpanExporter()
    observability.configure_tracing(exporter=exporter)
    app = create_app({"data_dir": data_dir, "TICKER": False})   # no background ticks
    try:
        yield app.test_client(), exporter
    finally:
        app.extensions[EXTENSION_KEY].close()
        observability.shutdown_tracing()


def test_spans_of_a_prediction_exist_and_nest(spans):
    client, exporter = spans
    onnx_model(client)
    exporter.clear()
    r = client.post("/api/models/m/predict", json={"input": X},
                    headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-"
                                            "b7ad6b7169203331-01"})
    assert r.status_code == 200, r.json
    got = exporter.get_finished_spans()
    by_name = {s.name: s for s in got}
    request = by_name["POST /api/models/<name>/predict"]
    route, call = by_name["route"], by_name["provider.call"]
    # The caller's trace goes on: same trace id, its span is our request span's parent.
    assert request.context.trace_id == 0x0af7651916cd43dd8448eb211c80319c
    assert request.parent.span_id == 0xb7ad6b7169203331
    assert route.parent.span_id == request.context.span_id
    assert call.parent.span_id == request.context.span_id
    assert call.attributes["registry.model"] == "m" and call.attributes["registry.version"] == "1.0.0"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["registry.request_id"] == r.headers["X-Request-Id"]
    # The database spans the request made. A background thread's own work (the collector's
    # flush) starts traces of its own, without a parent, and may fall in the same moment.
    db = [s for s in got if s.name.startswith("db ") and s.parent is not None]
    assert db and all(s.context.trace_id == request.context.trace_id for s in db)
    assert any(s.parent.span_id == route.context.span_id for s in db)   # the traffic read
    assert all(s.end_time <= request.end_time for s in got if s is not request)


def test_an_error_marks_the_request_span(spans):
    client, exporter = spans
    r = client.post("/api/models/nope/predict", json={"input": X})
    assert r.status_code == 404
    [request] = [s for s in exporter.get_finished_spans() if s.name.startswith("POST")]
    assert request.attributes["http.response.status_code"] == 404


def test_tracing_off_costs_no_objects(tmp_path):
    observability.shutdown_tracing()
    assert not observability.tracing_enabled()
    assert observability.span("x") is observability.span("y")   # one shared no-op


def test_request_id_is_taken_from_the_caller_when_plain(client):
    r = client.get("/healthz", headers={"X-Request-Id": "edge-42.a:b"})
    assert r.headers["X-Request-Id"] == "edge-42.a:b"
    for bad in ("x" * 200, "has space", "<script>"):
        r = client.get("/healthz", headers={"X-Request-Id": bad})
        assert r.headers["X-Request-Id"] != bad and len(r.headers["X-Request-Id"]) == 16
    assert client.get("/healthz").headers["X-Request-Id"]


class OtlpReceiver:
    """A tiny OTLP/HTTP receiver: collects the spans POSTed to /v1/traces (protobuf)."""

    def __init__(self) -> None:
        self.spans: list = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                for rs in req.resource_spans:
                    for ss in rs.scope_spans:
                        receiver.spans.extend(ss.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(b"")
                receiver.paths.append(self.path)

            def log_message(self, *args):
                pass

        self.paths: list[str] = []
        self.server = LocalHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_spans_are_exported_over_otlp_and_logs_are_json(tmp_path: Path):
    receiver = OtlpReceiver()
    server = LiveServer(tmp_path / "data", {
        "DATABASE_URL": "", "ARTIFACT_ROOT": "", "LOG_FORMAT": "json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
        "NO_PROXY": "127.0.0.1,localhost"}).start()
    try:
        http = requests.Session()
        http.post(server.url + "/api/models/register", json={"name": "m"}, timeout=10)
        http.post(server.url + "/api/models/m/versions/register", timeout=10,
                  json={"version": "1.0.0", "provider": "onnx", "status": "stable"})
        http.put(server.url + "/api/models/m/versions/1.0.0/artifact", data=linear_model(),
                 headers={"Content-Type": "application/octet-stream"}, timeout=10)
        r = http.post(server.url + "/api/models/m/predict", json={"input": X},
                      headers={"X-Request-Id": "trace-me-1"}, timeout=10)
        assert r.status_code == 200 and r.headers["X-Request-Id"] == "trace-me-1"
        deadline = time.monotonic() + 15
        while not any(s.name == "provider.call" for s in receiver.spans):
            assert time.monotonic() < deadline, [s.name for s in receiver.spans]
            time.sleep(0.1)
    finally:
        server.stop()
        receiver.close()
    assert set(receiver.paths) == {"/v1/traces"}
    names = {s.name for s in receiver.spans}
    assert {"POST /api/models/<name>/predict", "route", "provider.call"} <= names
    assert any(n.startswith("db ") for n in names)
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert lines, server.log()[-2000:]
    mine = [rec for rec in lines if rec.get("request_id") == "trace-me-1"]
    assert mine, lines[-5:]
    assert {"time", "level", "logger", "message", "model", "version", "deployment"} <= set(mine[0])
