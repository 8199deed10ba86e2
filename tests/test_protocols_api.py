"""The client protocols through Flask's test client: parsing, error shapes, auth, stream
bookkeeping. (The real clients on a real socket are in test_protocols_e2e.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client import REGISTRY

from werkzeug.exceptions import RequestTimeout

from api.app import create_app
from api.protocol_errors import error_parts, google_body, openai_body
from deployment.model_ref import ModelRef, parse_model_ref
from errors import InvalidArgument
from tests.test_api_predict import gemini_model, onnx_model

CHAT = {"messages": [{"role": "user", "content": "hello there"}]}


@pytest.mark.parametrize("text, ref", [("m", ModelRef("m")), ("m@1.2.0", ModelRef("m", "1.2.0")),
                                       ("m@^1.2", ModelRef("m", "^1.2")),
                                       (" m@champion ", ModelRef("m", "champion"))])
def test_model_references(text, ref):
    assert parse_model_ref(text) == ref and str(ref) == text.strip()


@pytest.mark.parametrize("text", ["", "@1.0.0", "m@", 3, None])
def test_bad_model_references_name_the_field(text):
    with pytest.raises(InvalidArgument) as err:
        parse_model_ref(text)
    assert err.value.details == {"param": "model"}


def test_openai_errors_before_the_first_token_are_ordinary_errors(client, gemini):
    gemini_model(client)
    gemini.set_behavior(error_rate=1.0, status=500)
    r = client.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT})
    assert r.status_code == 502 and r.mimetype == "application/json"
    assert r.json["error"]["type"] == "server_error"
    assert r.json["error"]["code"] == "provider_error"


def _sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_stream_closed_early_is_a_disconnect_and_frees_its_slot(app, client, gemini):
    gemini_model(client)
    gateway = app.extensions["model_registry"].gateway
    before = _sample("registry_stream_disconnects_total", model="chat", version="1.0.0")
    for read_first in (True, False):  # read one event then hang up; hang up before any
        r = client.post("/v1/chat/completions", buffered=False,
                        json={"model": "chat", "stream": True, **CHAT})
        assert r.status_code == 200 and r.headers["x-model-version"] == "1.0.0"
        if read_first:
            assert next(iter(r.response)).startswith(b"data: ")
        r.close()
        assert gateway.inflight._counts["chat"] == 0
    after = _sample("registry_stream_disconnects_total", model="chat", version="1.0.0")
    assert after - before == 2
    # A stream read to its end is a success, not a disconnect.
    r = client.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT})
    assert r.get_data(as_text=True).endswith("data: [DONE]\n\n")
    assert _sample("registry_stream_disconnects_total", model="chat", version="1.0.0") == after
    # Only the completed stream counts for the version (a client leaving is not its fault).
    metrics = client.get("/api/models/chat/metrics").json
    assert metrics["versions"]["1.0.0"]["requests"] == 1
    assert metrics["versions"]["1.0.0"]["total_tokens"] > 0


def test_auth_openai_bearer_and_gemini_key_header(data_dir, gemini):
    app = create_app({"TESTING": True, "data_dir": data_dir, "admin_token": "adm"})
    c = app.test_client()
    r = c.post("/v1/chat/completions", json={"model": "chat", **CHAT})
    assert r.status_code == 401
    assert r.json["error"]["type"] == "authentication_error" and r.json["error"]["message"]
    token = c.post("/api/keys", json={"name": "reader", "role": "read"},
                   headers={"Authorization": "Bearer adm"}).json["token"]
    r = c.post("/v1/chat/completions", json={"model": "chat", **CHAT},
               headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404 and r.json["error"]["type"] == "not_found_error"
    r = c.post("/gemini/v1beta/models/chat:generateContent", headers={"x-goog-api-key": token},
               json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert r.status_code == 404 and r.json["error"]["status"] == "NOT_FOUND"
    assert c.get("/v2/health/live").json == {"live": True, "ready": True}
    app.extensions["model_registry"].close()


def test_gemini_refuses_what_it_cannot_honour(client, gemini):
    gemini_model(client)
    r = client.post("/gemini/v1beta/models/chat:generateContent",
                    json={"contents": [{"parts": [{"text": "hi"}]}],
                          "safetySettings": [{"category": "x"}]})
    assert r.status_code == 400 and r.json["error"]["status"] == "INVALID_ARGUMENT"
    assert "safetySettings" in r.json["error"]["message"]
    r = client.post("/gemini/v1beta/models/chat:countTokens", json={"contents": []})
    assert r.status_code == 400
    r = client.post("/gemini/v1/models/chat:generateContent",
                    json={"contents": [{"role": "user", "parts": [{"text": "a b"}]}],
                          "generationConfig": {"maxOutputTokens": 1}})
    assert r.status_code == 200 and r.headers["x-model-version"] == "1.0.0"
    candidate = r.json["candidates"][0]
    assert candidate["finishReason"] == "MAX_TOKENS" and candidate["content"]["parts"] == [
        {"text": "echo:"}]


def test_oip_infer_without_content_type_json_and_binary(client):
    onnx_model(client)
    x = np.asarray([[1, 2, 3, 4], [0, 0, 0, 1]], dtype=np.float32)
    native = client.post("/api/models/lin/predict", json={"input": x.tolist()}).json["output"]
    header = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                          "data": x.reshape(-1).tolist()}]}
    r = client.post("/v2/models/lin/infer", data=json.dumps(header), content_type=None)
    assert r.status_code == 200 and r.json["outputs"][0]["data"] == sum(native, [])
    head = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    r = client.post("/v2/models/lin/versions/1.0.0/infer", data=head + x.tobytes(),
                    headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 200, r.data
    size = int(r.headers["Inference-Header-Content-Length"])
    meta = json.loads(r.data[:size])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 16
    got = np.frombuffer(r.data[size:], dtype="<f4").reshape(meta["outputs"][0]["shape"])
    np.testing.assert_array_equal(got, np.asarray(native, dtype=np.float32))


@pytest.mark.parametrize("body, headers, needle", [
    (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
     {}, "expects size 4 on axis 1"),
    (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2]}]}',
     {}, "do not fill shape"),
    (b'{"inputs": []}', {}, "inputs"),
    (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", '
     b'"parameters": {"binary_data_size": 16}}]}', {"Inference-Header-Content-Length": "999"},
     "Inference-Header-Content-Length"),
    (b'not json', {}, "JSON"),
])
def test_oip_bad_requests_are_400_saying_why(client, body, headers, needle):
    onnx_model(client)
    r = client.post("/v2/models/lin/infer", data=body, headers=headers)
    assert r.status_code == 400 and needle.lower() in r.json["error"].lower(), r.json


def test_each_protocol_refuses_the_other_kind_of_model(client, gemini):
    onnx_model(client)
    gemini_model(client)
    r = client.post("/v1/chat/completions", json={"model": "lin", **CHAT})
    assert r.status_code == 400 and r.json["error"]["param"] == "model"
    r = client.get("/v2/models/chat")
    assert r.status_code == 400 and "no tensor inputs" in r.json["error"]


def test_every_protocol_is_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json["paths"]
    for path in ("/v1/chat/completions", "/v1/models", "/v1/models/{model_id}",
                 "/gemini/{api_version}/models/{model}:generateContent",
                 "/gemini/{api_version}/models/{model}:streamGenerateContent",
                 "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
                 "/v2/models/{name}/versions/{version}/infer", "/v2/models/{name}/ready"):
        assert path in paths, path


def test_errors_anywhere_under_a_protocol_prefix_keep_its_shape(client):
    r = client.get("/v1/no/such/thing")
    assert r.status_code == 404 and r.json["error"]["type"] == "not_found_error"
    r = client.get("/v2/models/x/versions/1/nothing")
    assert r.status_code == 404 and isinstance(r.json["error"], str)
    r = client.get("/gemini/v1beta/nothing")
    assert r.status_code == 404 and r.json["error"]["status"] == "NOT_FOUND"
    # Text the database cannot take is a 400, in the protocol's shape too.
    r = client.post("/v1/chat/completions", json={"model": "m\ud800", **CHAT})
    assert r.status_code == 400 and r.json["error"]["type"] == "invalid_request_error"
    assert client.get("/api/nothing").json["error"]["code"] == "NOT_FOUND"


def test_a_body_timeout_from_the_server_speaks_each_protocol():
    """The production worker ends a body that stopped arriving with werkzeug's 408."""
    status, code, message, param = error_parts(RequestTimeout("the request body stopped arriving"))
    assert (status, code) == (408, "REQUEST_TIMEOUT")
    assert google_body(status, code, message, param)["error"]["status"] == "DEADLINE_EXCEEDED"
    assert openai_body(status, code, message, param)["error"]["code"] == "request_timeout"
