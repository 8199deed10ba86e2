"""Tests of the ``gemini`` provider through the real google-genai SDK against a local fake
Gemini server: wire format, error mapping, retries off, timeouts. No network."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from google.genai import types

import config
from errors import InvalidArgument, ProviderError, ProviderTimeout, Unavailable
from models.base_model import VersionSpec
from models.gemini_model import GeminiModel, _usage_of
from tests.fake_gemini import FakeGemini

MODEL = "gemini-2.5-flash"


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, fake: FakeGemini, one_ca_file: Path) -> None:
    """Hermetic environment: the SDK talks to the fake, no developer .env leaks in; its
    clients load a CA bundle of one certificate (``one_ca_file``)."""
    monkeypatch.setattr(config, "load_dotenv", lambda *a, **k: False)
    for name in ("GOOGLE_API_KEY", "GEMINI_MODEL", "GOOGLE_GENAI_USE_VERTEXAI",
                 "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_API_VERSION",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "5")
    monkeypatch.setenv("SSL_CERT_FILE", str(one_ca_file))


@pytest.fixture
def make() -> Iterator[Callable[..., GeminiModel]]:
    """Build and load a provider for a config; every one is closed after the test."""
    made: list[GeminiModel] = []

    def build(cfg: dict[str, Any] | None = None, load: bool = True) -> GeminiModel:
        spec = VersionSpec(model="chat", version="1.0.0", provider="gemini",
                           config=GeminiModel.validate_config(dict(cfg or {})))
        provider = GeminiModel(spec)
        made.append(provider)
        if load:
            provider.load()
        return provider

    yield build
    for provider in made:
        provider.close()


def _body(fake: FakeGemini) -> dict[str, Any]:
    return fake.calls[-1]["body"]


# -- success path ---------------------------------------------------------------------------

def test_predict_returns_text_and_usage(fake: FakeGemini,
                                        make: Callable[..., GeminiModel]) -> None:
    result = make().predict("hello there world")
    assert result.output == "echo: hello there world"
    assert result.usage is not None
    assert result.usage.as_dict() == {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    call = fake.calls[-1]
    assert call["model"] == MODEL
    assert call["headers"]["x-goog-api-key"] == "test-key"


def test_system_instruction_and_settings_reach_the_wire(
        fake: FakeGemini, make: Callable[..., GeminiModel]) -> None:
    provider = make({"model": "gemini-x", "system_instruction": "Answer in French.",
                     "temperature": 0.2, "top_p": 0.9, "top_k": 20,
                     "max_output_tokens": 64, "stop_sequences": ["END"], "seed": 7,
                     "response_mime_type": "text/plain"})
    provider.predict("one two")
    body = _body(fake)
    assert fake.calls[-1]["model"] == "gemini-x"
    assert body["systemInstruction"]["parts"] == [{"text": "Answer in French."}]
    gen = body["generationConfig"]
    assert gen["temperature"] == 0.2 and gen["topP"] == 0.9 and gen["topK"] == 20
    assert gen["maxOutputTokens"] == 64 and gen["stopSequences"] == ["END"]
    assert gen["seed"] == 7 and gen["responseMimeType"] == "text/plain"
    assert body["contents"] == [{"parts": [{"text": "one two"}], "role": "user"}]


def test_default_model_comes_from_gemini_model_env(
        monkeypatch: pytest.MonkeyPatch, fake: FakeGemini,
        make: Callable[..., GeminiModel]) -> None:
    monkeypatch.setenv("GEMINI_MODEL", "gemini-env-model")
    provider = make()
    assert provider.spec.config["model"] == "gemini-env-model"  # pinned at registration
    provider.predict("hi")
    assert fake.calls[-1]["model"] == "gemini-env-model"


@pytest.mark.parametrize("given, expected_contents", [
    ({"prompt": "a b"}, [{"parts": [{"text": "a b"}], "role": "user"}]),
    (["a", "b c"], [{"parts": [{"text": "a"}, {"text": "b c"}], "role": "user"}]),
    ([{"role": "user", "parts": [{"text": "q"}]}, {"role": "model", "parts": [{"text": "r"}]},
      {"role": "user", "parts": [{"text": "q2"}]}],
     [{"parts": [{"text": "q"}], "role": "user"}, {"parts": [{"text": "r"}], "role": "model"},
      {"parts": [{"text": "q2"}], "role": "user"}]),
])
def test_input_forms(fake: FakeGemini, make: Callable[..., GeminiModel], given: Any,
                     expected_contents: list[dict[str, Any]]) -> None:
    result = make().predict(given)
    assert _body(fake)["contents"] == expected_contents
    assert result.output.startswith("echo: ")


def test_bad_input_is_invalid_argument_and_never_sent(
        fake: FakeGemini, make: Callable[..., GeminiModel]) -> None:
    provider = make()
    for bad in (42, None, "", "   ", [], {"text": "x"}, [1], {"prompt": 3},
                [{"role": "system", "parts": [{"text": "x"}]}]):
        with pytest.raises(InvalidArgument):
            provider.predict(bad)
    assert fake.call_count() == 0


# -- params ---------------------------------------------------------------------------------

def test_allowed_param_overrides_version_setting(
        fake: FakeGemini, make: Callable[..., GeminiModel]) -> None:
    provider = make({"temperature": 0.1})
    provider.predict("x", params={"temperature": 0.9, "max_output_tokens": 5})
    gen = _body(fake)["generationConfig"]
    assert gen["temperature"] == 0.9 and gen["maxOutputTokens"] == 5
    provider.predict("x")  # the override does not stick
    assert _body(fake)["generationConfig"] == {"temperature": 0.1}


def test_param_not_allowed_is_rejected_by_name(
        fake: FakeGemini, make: Callable[..., GeminiModel]) -> None:
    provider = make({"allowed_params": ["temperature"]})
    with pytest.raises(InvalidArgument, match="top_k"):
        provider.predict("x", params={"top_k": 3})
    with pytest.raises(InvalidArgument, match="model"):
        provider.predict("x", params={"model": "other"})
    with pytest.raises(InvalidArgument, match="temperature"):
        provider.predict("x", params={"temperature": "hot"})
    with pytest.raises(InvalidArgument):
        provider.predict("x", params=["temperature"])  # type: ignore[arg-type]
    assert fake.call_count() == 0


# -- config validation ----------------------------------------------------------------------

@pytest.mark.parametrize("cfg, fragment", [
    ({"temprature": 0.5}, "temprature"),
    ({"temperature": "0.5"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"temperature": 3}, "temperature"),
    ({"top_k": 1.5}, "top_k"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"system_instruction": 5}, "system_instruction"),
    ({"model": ""}, "model"),
    ({"candidate_count": 2}, "candidate_count"),
    ({"response_mime_type": "json"}, "response_mime_type"),
    ({"allowed_params": ["model"]}, "allowed_params"),
    ({"allowed_params": "temperature"}, "allowed_params"),
])
def test_validate_config_rejects(cfg: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        GeminiModel.validate_config(cfg)


def test_validate_config_normalises() -> None:
    out = GeminiModel.validate_config({"temperature": 1, "allowed_params": ["seed", "seed"]})
    assert out == {"temperature": 1.0, "allowed_params": ["seed"], "model": MODEL}
    with pytest.raises(InvalidArgument):
        GeminiModel.validate_config([])  # type: ignore[arg-type]


# -- errors ---------------------------------------------------------------------------------

def test_429_is_unavailable_rate_limited(fake: FakeGemini,
                                         make: Callable[..., GeminiModel]) -> None:
    fake.set_behavior(error_rate=1.0, status=429)
    with pytest.raises(Unavailable, match="rate limited") as info:
        make().predict("x")
    assert "Resource has been exhausted" in info.value.message
    assert info.value.details["http_status"] == 429
    assert info.value.details["retry_after_s"] == 2.0
    assert fake.call_count() == 1  # the SDK did not retry


def test_500_is_provider_error_after_exactly_one_http_call(
        fake: FakeGemini, make: Callable[..., GeminiModel]) -> None:
    fake.set_behavior(error_rate=1.0, status=500)
    with pytest.raises(ProviderError, match="internal error") as info:
        make().predict("x")
    assert info.value.details == {"http_status": 500, "provider_status": "INTERNAL"}
    assert fake.call_count() == 1


@pytest.mark.parametrize("status, error", [(400, ProviderError), (404, ProviderError),
                                           (503, ProviderError), (504, ProviderTimeout),
                                           (401, Unavailable), (403, Unavailable)])
def test_other_statuses(fake: FakeGemini, make: Callable[..., GeminiModel], status: int,
                        error: type[Exception]) -> None:
    fake.set_behavior(error_rate=1.0, status=status)
    with pytest.raises(error) as info:
        make().predict("x")
    assert info.value.details["http_status"] == status  # type: ignore[attr-defined]
    assert fake.call_count() == 1


def test_refused_key_is_unavailable(monkeypatch: pytest.MonkeyPatch,
                                    make: Callable[..., GeminiModel]) -> None:
    with FakeGemini(api_key="the-right-key") as strict:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", strict.url)
        with pytest.raises(Unavailable, match="refused the API key") as info:
            make().predict("x")
    assert "GEMINI_API_KEY" in info.value.message
    assert info.value.details["http_status"] == 400


def test_hang_is_provider_timeout_within_the_deadline(
        monkeypatch: pytest.MonkeyPatch, fake: FakeGemini,
        make: Callable[..., GeminiModel]) -> None:
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "0.25")   # a real wait: kept short
    provider = make()
    fake.set_behavior(hang=True)
    started = time.perf_counter()
    with pytest.raises(ProviderTimeout, match=r"timed out after 0\.25s"):
        provider.predict("x")
    assert time.perf_counter() - started < 0.25 + 1.5
    assert fake.call_count() == 1


def test_connection_error_is_provider_error(monkeypatch: pytest.MonkeyPatch,
                                            make: Callable[..., GeminiModel]) -> None:
    with FakeGemini() as gone:
        dead_url = gone.url
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", dead_url)
    with pytest.raises(ProviderError, match="cannot reach"):
        make().predict("x")


def test_missing_key_loads_then_predict_is_unavailable(
        monkeypatch: pytest.MonkeyPatch, fake: FakeGemini,
        make: Callable[..., GeminiModel]) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    provider = make()  # load() must not fail
    with pytest.raises(Unavailable) as info:
        provider.predict("x")
    assert "GEMINI_API_KEY" in info.value.message
    assert "set GEMINI_API_KEY in the environment or .env" in info.value.message
    assert fake.call_count() == 0
    monkeypatch.setenv("GOOGLE_API_KEY", "late-key")  # a key added later is picked up
    assert provider.predict("x").output == "echo: x"
    assert fake.calls[-1]["headers"]["x-goog-api-key"] == "late-key"


def test_predict_after_close_is_unavailable(make: Callable[..., GeminiModel]) -> None:
    provider = make()
    provider.close()
    with pytest.raises(Unavailable, match="closed"):
        provider.predict("x")


# -- behaviour under load / controls --------------------------------------------------------

def test_per_model_behavior_and_latency(fake: FakeGemini,
                                        make: Callable[..., GeminiModel]) -> None:
    fake.set_behavior(model="gemini-bad", error_rate=1.0, status=500)
    fake.set_behavior(latency=0.2)
    good, bad = make(), make({"model": "gemini-bad"})
    started = time.perf_counter()
    assert good.predict("x").output == "echo: x"
    assert time.perf_counter() - started >= 0.2
    with pytest.raises(ProviderError):
        bad.predict("x")
    assert fake.call_count("gemini-bad") == 1 and fake.call_count(MODEL) == 1


def test_error_rate_is_a_deterministic_fraction(
        fake: FakeGemini, make: Callable[..., GeminiModel]) -> None:
    fake.set_behavior(error_rate=0.25, status=500)
    provider = make()
    failures = 0
    for _ in range(8):
        try:
            provider.predict("x")
        except ProviderError:
            failures += 1
    assert failures == 2


def test_one_client_serves_many_threads(fake: FakeGemini,
                                        make: Callable[..., GeminiModel]) -> None:
    provider = make()
    client = provider._client
    outputs: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        out = provider.predict(f"n{i}").output
        with lock:
            outputs.append(out)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outputs) == sorted(f"echo: n{i}" for i in range(16))
    assert provider._client is client


# -- health ---------------------------------------------------------------------------------

def test_health_ok_uses_a_tiny_probe(fake: FakeGemini,
                                     make: Callable[..., GeminiModel]) -> None:
    provider = make({"allowed_params": []})  # the probe is not limited by allowed_params
    result = provider.health()
    assert result.ok and result.latency > 0
    body = _body(fake)
    assert body["contents"] == [{"parts": [{"text": "ping"}], "role": "user"}]
    assert body["generationConfig"]["maxOutputTokens"] <= 16


def test_health_failing(fake: FakeGemini, make: Callable[..., GeminiModel]) -> None:
    fake.set_behavior(error_rate=1.0, status=503)
    result = make().health()
    assert not result.ok and "503" in result.message


def test_usage_is_none_safe() -> None:
    assert _usage_of(types.GenerateContentResponse()) is None
    meta = types.GenerateContentResponseUsageMetadata(prompt_token_count=3)
    usage = _usage_of(types.GenerateContentResponse(usage_metadata=meta))
    assert usage is not None and usage.as_dict() == {
        "input_tokens": 3, "output_tokens": 0, "total_tokens": 3}


# -- the fake itself ------------------------------------------------------------------------

def _post(url: str, body: dict[str, Any], key: str | None = "k") -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["x-goog-api-key"] = key
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
def test_fake_accepts_both_api_versions(fake: FakeGemini, api_version: str) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "a b c"}]}]}
    status, reply = _post(f"{fake.url}/{api_version}/models/m1:generateContent", body)
    assert status == 200
    assert reply["candidates"][0]["content"]["parts"][0]["text"] == "echo: a b c"
    assert reply["candidates"][0]["finishReason"] == "STOP"
    assert reply["usageMetadata"] == {"promptTokenCount": 3, "candidatesTokenCount": 4,
                                      "totalTokenCount": 7}
    assert reply["modelVersion"] == "m1"
    assert fake.calls[-1]["api_version"] == api_version


def test_fake_refuses_missing_key_and_unknown_paths(fake: FakeGemini) -> None:
    body = {"contents": [{"parts": [{"text": "x"}]}]}
    status, reply = _post(f"{fake.url}/v1beta/models/m:generateContent", body, key=None)
    assert status == 403 and reply["error"]["status"] == "PERMISSION_DENIED"
    status, reply = _post(f"{fake.url}/v2/models/m:generateContent", body)
    assert status == 404 and reply["error"]["code"] == 404
    fake.set_behavior(error_rate=1.0, status=429)
    status, reply = _post(f"{fake.url}/v1beta/models/m:generateContent", body)
    assert status == 429 and reply["error"]["code"] == 429
    assert reply["error"]["status"] == "RESOURCE_EXHAUSTED" and reply["error"]["message"]
