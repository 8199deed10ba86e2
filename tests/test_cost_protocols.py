"""The cost of an answer in every protocol (issue 16), through Flask's test client: in the
usage object where the protocol has one, in the ``X-Cost-USD`` header on every priced
non-streamed answer, in-band at the end of streams. (The real openai and google-genai clients
reading them are in test_protocols_e2e.py.)

Prices: $1000 per 1M input and $2000 per 1M output tokens, so one input token costs 1000
micro-USD and one output token 2000: each expected cost below is computed by hand from the
token counts the answer reports.
"""
from __future__ import annotations

import json

import pytest

from money import micro_to_text
from tests.test_api_predict import gemini_model, onnx_model

PRICES = {"input_per_1m": 1000, "output_per_1m": 2000}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}


def by_hand(input_tokens: int, output_tokens: int) -> int:
    return input_tokens * 1000 + output_tokens * 2000


def sse(body: str) -> list[dict]:
    return [json.loads(line[6:]) for line in body.splitlines()
            if line.startswith("data: {")]


@pytest.fixture
def priced(client, gemini):
    gemini_model(client, prices=PRICES)
    return client


@pytest.mark.parametrize("micro, text", [(0, "0.000000"), (13000, "0.013000"),
                                          (1, "0.000001"), (12_500_000, "12.500000")])
def test_the_header_is_exact_decimal_usd(micro, text):
    assert micro_to_text(micro) == text


def test_openai_answer_carries_its_cost_in_usage_and_header(priced):
    r = priced.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.json
    usage = r.json["usage"]
    cost = by_hand(usage["prompt_tokens"], usage["completion_tokens"])
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["cost_micro_usd"] == cost and usage["cost_usd"] == cost / 1e6
    assert r.headers["X-Cost-USD"] == micro_to_text(cost)


def test_openai_stream_has_its_cost_in_the_usage_chunk_only(priced):
    r = priced.post("/v1/chat/completions",
                    json={**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    events = sse(r.get_data(as_text=True))
    usage = events[-1]["usage"]
    assert usage["cost_micro_usd"] == by_hand(usage["prompt_tokens"],
                                              usage["completion_tokens"])
    assert "X-Cost-USD" not in r.headers   # sent before the cost was known


def test_gemini_answer_carries_its_cost_in_usage_metadata_and_header(priced):
    r = priced.post("/gemini/v1beta/models/chat:generateContent", json=GEMINI)
    assert r.status_code == 200, r.json
    meta = r.json["usageMetadata"]
    cost = by_hand(meta["promptTokenCount"],
                   meta["candidatesTokenCount"] + meta["thoughtsTokenCount"])
    assert meta["costMicroUsd"] == cost and meta["costUsd"] == cost / 1e6
    assert r.headers["X-Cost-USD"] == micro_to_text(cost)

    r = priced.post("/gemini/v1beta/models/chat:streamGenerateContent?alt=sse", json=GEMINI)
    events = sse(r.get_data(as_text=True))
    meta = events[-1]["usageMetadata"]
    assert meta["costMicroUsd"] == by_hand(
        meta["promptTokenCount"], meta["candidatesTokenCount"] + meta["thoughtsTokenCount"])
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"


def test_predict_has_the_header_and_unpriced_answers_have_none(priced):
    r = priced.post("/api/models/chat/predict", json={"input": "hello there"})
    assert r.headers["X-Cost-USD"] == micro_to_text(r.json["usage"]["cost_micro_usd"])
    assert r.json["usage"]["cost_micro_usd"] > 0

    priced.post("/api/models/register", json={"name": "unpriced"})
    priced.post("/api/models/unpriced/versions/register",
                json={"version": "1.0.0", "status": "stable", "config": {"model": "no-such"}})
    r = priced.post("/v1/chat/completions", json={**CHAT, "model": "unpriced"})
    assert r.status_code == 200 and r.json["usage"]["cost_micro_usd"] is None
    assert "X-Cost-USD" not in r.headers


def test_open_inference_has_no_usage_and_no_cost_for_onnx(priced):
    onnx_model(priced)
    r = priced.post("/v2/models/lin/infer", json={"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]})
    assert r.status_code == 200, r.json
    assert "X-Cost-USD" not in r.headers and r.headers["x-model-version"] == "1.0.0"
