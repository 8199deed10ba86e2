"""Shadows and experiments in a real server process (issue 19), one server for the module:
what only the running server shows — every client protocol mirrored by the one mechanism in
the gateway, and the background ticker ending shadows and experiments that nobody reads."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fake_gemini import FakeGemini
from tests.test_rollout_e2e import Api, serve

pytestmark = pytest.mark.slow
LONG = "tell me a long story please"          # the candidate stops after 3 words: differs
SHORT = "hi"                                  # "echo: hi": both answer the same


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """llm 1.0.0 (deployed) answers in full; 1.1.0 stops after 3 words; 1.2.0 answers in full."""
    with FakeGemini() as fake:
        live = serve(tmp_path_factory.mktemp("shadow"),
                     {"GOOGLE_GEMINI_BASE_URL": fake.url, "GEMINI_API_KEY": "fake-key",
                      "NO_PROXY": "127.0.0.1,localhost", "SHADOW_STORE_INPUTS": "true"})
        api = Api(live.url)
        try:
            api.post("/api/models/register", {"name": "llm"}, 201)
            for version, config in (("1.0.0", {}), ("1.1.0", {"max_output_tokens": 3}),
                                    ("1.2.0", {})):
                api.post("/api/models/llm/versions/register",
                         {"version": version, "config": {"model": "gem", **config}}, 201)
            api.wait_state(api.deploy("llm", "1.0.0"), "succeeded")
            yield api
        finally:
            live.stop()


def until(what: str, get: Callable[[], Any], done: Callable[[Any], bool],
          timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = get()
        if done(got):
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {got}"
        time.sleep(0.2)


def listed(api: Api, trial_id: str, strategy: str) -> dict[str, Any]:
    """The trial as GET /api/deployments lists it (reading the list ends nothing)."""
    found = api.get(f"/api/deployments?model=llm&strategy={strategy}")["deployments"]
    return next(d for d in found if d["id"] == trial_id)


def test_every_chat_protocol_is_mirrored_and_the_report_compares_the_texts(server: Api):
    shadow = server.post("/api/models/llm/deploy", {
        "version": "1.1.0", "strategy": "shadow", "sample_percent": 100,
        "max_requests": 5}, 202)["deployment"]["id"]
    http = server.http
    # OpenAI chat completions, plain and streamed
    r = http.post(f"{server.url}/v1/chat/completions", timeout=30, json={
        "model": "llm", "messages": [{"role": "user", "content": SHORT}]})
    assert r.json()["choices"][0]["message"]["content"] == "echo: hi"
    with http.post(f"{server.url}/v1/chat/completions", timeout=30, stream=True, json={
            "model": "llm", "stream": True,
            "messages": [{"role": "user", "content": LONG}]}) as r:
        body = r.text
    assert "[DONE]" in body and r.headers["x-model-version"] == "1.0.0"
    # Gemini generateContent, plain and streamed
    contents = {"contents": [{"role": "user", "parts": [{"text": LONG}]}]}
    r = http.post(f"{server.url}/gemini/v1beta/models/llm:generateContent", json=contents,
                  timeout=30)
    assert r.json()["candidates"][0]["content"]["parts"][0]["text"] == f"echo: {LONG}"
    short = {"contents": [{"role": "user", "parts": [{"text": SHORT}]}]}
    with http.post(f"{server.url}/gemini/v1beta/models/llm:streamGenerateContent?alt=sse",
                   json=short, timeout=30, stream=True) as r:
        pieces = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True)
                  if line.startswith("data: ")]
    assert "".join(p["candidates"][0]["content"]["parts"][0]["text"] for p in pieces) == \
        "echo: hi"
    # and predict
    assert server.post("/api/models/llm/predict", {"input": SHORT})["version"] == "1.0.0"
    # the server's ticker stores the pairs and ends the shadow at its request count
    report = until("5 mirrored pairs", lambda: server.get(f"/api/deployments/{shadow}/shadow"),
                   lambda r: r["mirrored"] == 5 and r["shadow"]["state"] == "finished")
    assert report["agreement"]["rate"] == pytest.approx(3 / 5)
    assert report["shadow_errors"]["rate"] == 0.0
    worst = report["worst_disagreements"]
    assert len(worst) == 2 and all(w["similarity"] < 0.9 for w in worst)
    assert {w["example"]["primary_output"] for w in worst} == {f"echo: {LONG}"}
    assert {w["example"]["shadow_output"] for w in worst} == {"echo: tell me"}
    # the candidate's calls never reached the production metrics
    metrics = server.get("/api/models/llm/metrics?window=1h")
    assert "1.1.0" not in json.dumps(metrics)


def test_the_ticker_ends_a_due_experiment_with_its_verdict_unread(server: Api):
    exp = server.post("/api/models/llm/deploy", {
        "strategy": "experiment", "variants": {"1.0.0": 50, "1.2.0": 50},
        "primary_metric": "error_rate", "sample_size": 10}, 202)["deployment"]["id"]
    assert listed(server, exp, "experiment")["state"] == "running"
    seen: dict[str, int] = {}
    for i in range(80):          # sticky keys spread over both variants
        r = server.http.post(f"{server.url}/api/models/llm/predict", timeout=30,
                             json={"input": SHORT, "key": f"user-{i}"})
        assert r.status_code == 200, r.text
        seen[r.json()["version"]] = seen.get(r.json()["version"], 0) + 1
    assert min(seen.values()) >= 10, seen
    ended = until("the experiment to end", lambda: listed(server, exp, "experiment"),
                  lambda d: d["state"] == "finished")
    assert ended["result"]["verdict"]["summary"] == "no significant difference: no claim"
    assert server.get("/api/models/llm/traffic")["traffic"]["weights"] == {"1.0.0": 100}
