"""The client protocols end to end: the real ``openai``, ``google-genai`` and ``tritonclient``
libraries against one real server process (``python api/app.py``) with the fake Gemini behind
it. Each test proves what only a real client on a real socket can: wire format, headers,
streaming, and that routing, pins, canaries and tracking apply as they do for predict.
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
import requests
import tritonclient.http as triton
from google import genai
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_gemini import FakeGemini
from tests.support import LATENCY_TOLERANT
from tests.test_rollout_e2e import Api, serve

pytestmark = pytest.mark.slow
X = [[1.0, 2.0, 3.0, 4.0]]
SYSTEM = {"role": "system", "content": "answer briefly"}
# summarizer's price: one input token costs 1000 micro-USD, one output token 2000
PRICES = {"input_per_1m": 1000, "output_per_1m": 2000}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        fake.set_behavior(model="gemini-slow-stream", chunk_delay=0.3)
        yield fake


@pytest.fixture(scope="module")
def server(fake: FakeGemini, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """summarizer 1.2.0 (deployed), 1.2.5 (alias champion), 2.0.0 (canary target), slow 1.0.0
    (streams one word every 0.3 s), iris 1.0.0 (ONNX)."""
    live = serve(tmp_path_factory.mktemp("protocols"),
                 {"GOOGLE_GEMINI_BASE_URL": fake.url, "GEMINI_API_KEY": "fake-key",
                  "NO_PROXY": "127.0.0.1,localhost"})
    api = Api(live.url)
    try:
        api.post("/api/models/register", {"name": "summarizer"}, 201)
        for version in ("1.2.0", "1.2.5", "2.0.0"):
            api.post("/api/models/summarizer/versions/register",
                     {"version": version, "config": {"model": f"gemini-{version}",
                                                     "prices": PRICES}}, 201)
        r = api.http.put(f"{api.url}/api/models/summarizer/aliases/champion",
                         json={"version": "1.2.5"}, timeout=30)
        assert r.ok, r.text
        api.wait_state(api.deploy("summarizer", "1.2.0"), "succeeded")
        api.post("/api/models/register", {"name": "slow"}, 201)
        api.post("/api/models/slow/versions/register",
                 {"version": "1.0.0", "config": {"model": "gemini-slow-stream"}}, 201)
        api.wait_state(api.deploy("slow", "1.0.0"), "succeeded")
        api.onnx_model("iris", ["1.0.0"])
        api.wait_state(api.deploy("iris", "1.0.0"), "succeeded")
        yield api
    finally:
        live.stop()


@pytest.fixture
def client(server: Api) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_openai_plain_and_streamed_answers_with_usage_and_version(client: openai.OpenAI):
    messages = [SYSTEM, {"role": "user", "content": "summarise this text"}]
    raw = client.chat.completions.with_raw_response.create(model="summarizer",
                                                           messages=messages, max_tokens=50)
    plain = raw.parse()
    assert raw.headers["x-model-version"] == "1.2.0" and plain.model == "summarizer@1.2.0"
    choice = plain.choices[0]
    assert choice.message.content == "echo: summarise this text"
    assert choice.finish_reason == "stop"
    # The fake counts words: prompt = system (2) + user (3); answer = 4 words.
    assert (plain.usage.prompt_tokens, plain.usage.completion_tokens,
            plain.usage.total_tokens) == (5, 4, 9)
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0
    # the cost: an extra usage field the SDK keeps, and the header (5 × 1000 + 4 × 2000)
    assert (plain.usage.cost_micro_usd, plain.usage.cost_usd) == (13000, 0.013)
    assert raw.headers["x-cost-usd"] == "0.013000"

    chunks = list(client.chat.completions.create(
        model="summarizer", messages=messages, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == 9 and not chunks[-1].choices
    assert chunks[-1].usage.cost_micro_usd == 13000

    cut = client.chat.completions.create(model="summarizer", messages=messages, max_tokens=2)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2


def test_openai_model_references_resolve_as_predict_pins(client: openai.OpenAI,
                                                         server: Api):
    ask = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert client.chat.completions.create(model="summarizer@^1.2",
                                          messages=ask).model == "summarizer@1.2.5"
    assert client.chat.completions.create(model="summarizer@champion",
                                          messages=ask).model == "summarizer@1.2.5"
    assert client.chat.completions.create(model="summarizer@latest",
                                          messages=ask).model == "summarizer@2.0.0"
    pinned = server.post("/api/models/summarizer/predict", {"input": "hi", "version": "^1.2"})
    assert pinned["version"] == "1.2.5"
    ids = {m.id for m in client.models.list()}
    assert {"summarizer", "summarizer@champion", "slow"} <= ids and "iris" not in ids
    assert client.models.retrieve("summarizer@champion").id == "summarizer@champion"


@pytest.mark.parametrize("extra, param", [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages.0.role"),
    ({"model": "iris"}, "model"),
    ({"temperature": 7}, "temperature"),
])
def test_openai_refuses_what_it_cannot_honour_naming_the_field(client: openai.OpenAI,
                                                              extra: dict, param: str):
    body = {"model": "summarizer", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**body)
    assert err.value.status_code == 400 and err.value.param == param
    assert err.value.type == "invalid_request_error" and err.value.message


def test_openai_unknown_model_is_a_404_in_openai_shape(client: openai.OpenAI):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=[{"role": "user",
                                                                "content": "hi"}])
    assert err.value.body["type"] == "not_found_error"


def test_a_client_leaving_a_stream_is_counted_and_the_provider_call_closed(
        server: Api, fake: FakeGemini):
    with requests.post(f"{server.url}/v1/chat/completions", stream=True, timeout=30, json={
            "model": "slow", "stream": True,
            "messages": [{"role": "user", "content": " ".join(["word"] * 30)}]}) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line).startswith(b"data: ")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        metrics = {(s.name, s.labels.get("model")): s.value
                   for f in text_string_to_metric_families(
                       requests.get(f"{server.url}/metrics", timeout=10).text)
                   for s in f.samples}
        calls = [c for c in fake.calls if c["model"] == "gemini-slow-stream"]
        if metrics.get(("registry_stream_disconnects_total", "slow")) == 1 \
                and calls and calls[-1].get("disconnected"):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"disconnect not seen: {metrics}, {calls[-1:]}")
    assert metrics[("registry_stream_time_to_first_token_seconds_count", "slow")] >= 1


def test_google_genai_pointed_at_the_gateway(server: Api):
    client = genai.Client(api_key="unused", http_options={"base_url": f"{server.url}/gemini"})
    answer = client.models.generate_content(model="summarizer@champion",
                                            contents="shorten me please")
    assert answer.text == "echo: shorten me please"
    assert answer.model_version == "summarizer@1.2.5"
    assert answer.usage_metadata.total_token_count == 7
    # google-genai drops unknown usageMetadata fields; the cost header reaches its users
    # (prompt 3 words × 1000 + answer 4 words × 2000)
    assert answer.sdk_http_response.headers["x-cost-usd"] == "0.011000"
    pieces = list(client.models.generate_content_stream(model="summarizer",
                                                        contents="shorten me please"))
    assert "".join(p.text or "" for p in pieces) == answer.text
    assert pieces[-1].usage_metadata.total_token_count == 7
    assert pieces[-1].model_version == "summarizer@1.2.0"


def test_tritonclient_metadata_json_and_binary_equal_predict(server: Api):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris") and client.is_model_ready("iris", "1.0.0")
    meta = client.get_model_metadata("iris")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
    native = np.asarray(server.post("/api/models/iris/predict", {"input": X})["output"],
                        dtype=np.float32)
    for binary, version in ((False, ""), (True, ""), (True, "1.0.0")):
        tensor = triton.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.asarray(X, dtype=np.float32), binary_data=binary)
        result = client.infer("iris", [tensor], model_version=version,
                              outputs=[triton.InferRequestedOutput("y", binary_data=binary)])
        np.testing.assert_array_equal(result.as_numpy("y"), native)
        assert result.get_response()["model_version"] == "1.0.0"
    with pytest.raises(Exception, match="does not generate|no tensor inputs"):
        client.get_model_metadata("summarizer")


def test_the_readme_client_examples_run(server: Api, capsys: pytest.CaptureFixture):
    """Each Python example of the README's client protocols section, on this server's models
    (summarizer for sentiment-analyzer, iris for fraud-scorer)."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("## Client protocols"):text.index("## Python API")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    for block in blocks:
        code = (block.replace("http://localhost:5000", server.url)
                .replace("localhost:5000", server.url.removeprefix("http://"))
                .replace("sentiment-analyzer", "summarizer").replace("@production", "@champion")
                .replace("@^1.0", "@^1.2").replace("fraud-scorer", "iris"))
        exec(compile(code, "README", "exec"), {})
    out = capsys.readouterr().out
    assert "summarizer@1.2.5 echo: I love this product" in out and "1.0.0 [[" in out


def test_a_canary_driven_by_chat_traffic_alone_is_promoted_users_stay_sticky(
        server: Api, client: openai.OpenAI):
    """Chat completions (half of them streamed) from 24 users are the only traffic; the
    canary's analysis promotes 2.0.0 through 10→50→100 with no failed request, and no user
    who reached 2.0.0 is ever sent back to 1.2.0."""
    seen: dict[str, list[tuple[float, str]]] = {}
    failures: list[str] = []
    stop = threading.Event()

    def user_loop(worker: int) -> None:
        n = 0
        while not stop.is_set():
            user = f"user-{worker}-{n % 6}"
            n += 1
            body = {"model": "summarizer", "user": user,
                    "messages": [{"role": "user", "content": "hello there"}]}
            started = time.monotonic()
            try:
                if n % 2:
                    version = client.chat.completions.create(**body).model
                else:
                    version = list(client.chat.completions.create(**body, stream=True))[0].model
            except Exception as exc:  # any failure is a failed request
                failures.append(repr(exc))
                continue
            seen.setdefault(user, []).append((started, version.split("@")[1]))

    threads = [threading.Thread(target=user_loop, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    try:
        dep = server.deploy("summarizer", "2.0.0", "canary",
                            analysis={"min_requests": 15, "interval_s": 2, "deadline_s": 60,
                                      **LATENCY_TOLERANT})
        done = server.wait_state(dep, "succeeded", 60)
        settled = time.monotonic() + 0.6   # the router's TTL: then 100% everywhere
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:3]
    assert [v["result"] for v in done["verdicts"]][-1] == "pass"
    assert server.traffic("summarizer")["weights"] == {"2.0.0": 100}
    for user, answers in seen.items():
        versions = [v for _, v in answers]
        first_canary = versions.index("2.0.0") if "2.0.0" in versions else len(versions)
        assert "1.2.0" not in versions[first_canary:], (user, versions)
    late = [v for answers in seen.values() for t, v in answers if t > settled]
    assert late and set(late) == {"2.0.0"}
