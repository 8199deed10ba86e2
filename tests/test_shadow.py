"""Shadow deployments (issue 19): real ONNX versions, the real gateway, the fake Gemini server
through the real SDK as a slow candidate, the real database (SQLite and PostgreSQL)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sqlalchemy import select

from deployment.shadow import ShadowManager, ShadowMirror, compare
from deployment.shadow_store import ShadowStore
from errors import FailedPrecondition, InvalidArgument
from models import onnx_examples
from models.base_model import ChatRequest, Message, Prediction
from storage.schema import events
from tracking.pricing import PriceBook
from tests.test_api_deployments import add_version
from tests.test_deployment_manager import Env, env  # noqa: F401  (the fixture)

SWAP = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)


def onnx_version(env: Env, version: str, weights: np.ndarray) -> None:  # noqa: F811
    env.registry.register_version("m", version, provider="onnx")
    data = onnx_examples.linear_model(in_features=2, out_features=2, weights=weights,
                                      bias=np.zeros(2, dtype=np.float32))
    digest, size = env.artifacts.put_bytes(data)
    env.registry.attach_artifact("m", version, digest, size)


def shadows(env: Env, **mirror_kw) -> ShadowManager:  # noqa: F811
    store = ShadowStore(env.db)
    mirror = ShadowMirror(store, env.loader, **mirror_kw)
    env.at_close.append(mirror.close)   # its threads stop before the test's database goes away
    env.gateway.mirror = mirror
    return ShadowManager(store, env.registry, mirror, env.traffic.get)


@pytest.fixture
def live(env: Env):  # noqa: F811
    """Model m: 1.0.0 (y = x) serving 100%, 1.1.0 (columns swapped) registered."""
    onnx_version(env, "1.0.0", np.eye(2, dtype=np.float32))
    env.go_live("1.0.0")
    onnx_version(env, "1.1.0", SWAP)
    return env


def test_compare_numbers_and_text():
    same = compare([[1.0, 2.0]], [[1.0, 2.0000001]])
    assert same["agree"] == 1 and same["argmax_agree"] == 1
    flipped = compare({"y": [[1.0, 2.0]], "label": ["b"]}, {"y": [[2.0, 1.0]], "label": ["a"]})
    assert flipped["agree"] == 0 and flipped["argmax_agree"] == 0
    assert flipped["max_abs_diff"] == 1.0
    text = compare("The cat sat.", "the  cat sat.")
    assert text["agree"] == 1 and not text["exact"] and text["similarity"] == 1.0
    other = compare("yes", "no, definitely not")
    assert other["agree"] == 0 and other["similarity"] < 0.5


def test_onnx_candidate_differing_on_a_known_share_is_reported_with_that_rate(live: Env):
    manager = shadows(live, queue_size=1000, concurrency=2, store_inputs=True)
    try:
        shadow = manager.start("m", "1.1.0", 100, None, 400)
        # 30% of inputs have equal features (the swap changes nothing), 70% do not
        inputs = [[[float(i), float(i)]] if i % 10 < 3 else [[float(i), float(i) + 1.0]]
                  for i in range(400)]
        for x in inputs:
            answer = live.gateway.predict("m", x)
            assert answer["version"] == "1.0.0" and answer["output"] == x  # the user's answer
        manager.mirror.drain()
        report = manager.report(shadow["id"])
    finally:
        manager.mirror.close()
    assert report["mirrored"] == 400 and report["dropped"] == 0
    agreement = report["agreement"]
    assert agreement["rate"] == pytest.approx(0.3) and agreement["n"] == 400
    low, high = agreement["ci95"]
    assert low < 0.3 < high and high - low < 0.1
    assert report["argmax_agreement"]["rate"] == pytest.approx(0.3)
    worst = report["worst_disagreements"]
    assert worst and worst[0]["agree"] is False
    assert worst[0]["example"]["shadow_output"] != worst[0]["example"]["primary_output"]
    # kept apart: the candidate never shows up in the production metrics
    live.tracker.flush()
    assert "1.1.0" not in live.tracker.get_metrics("m", window="1h")
    # the request count ended it
    manager.mirror.refresh()
    assert manager.get(shadow["id"])["state"] == "finished"


def test_ten_percent_sampling_mirrors_ten_percent(live: Env):
    manager = shadows(live, queue_size=10_000, start_threads=False)
    manager.start("m", "1.1.0", 10, 3600, None)
    for _ in range(3000):                  # through the gateway, as every protocol goes
        live.gateway.predict("m", [[1.0, 2.0]])
    assert 240 <= manager.mirror.queue.qsize() <= 360     # 10 ± 2 %


def test_a_full_queue_drops_and_counts(live: Env):
    manager = shadows(live, queue_size=5, start_threads=False)
    shadow = manager.start("m", "1.1.0", 100, 3600, None)
    for _ in range(20):
        live.gateway.predict("m", [[1.0, 2.0]])
    assert manager.mirror.queue.qsize() == 5
    manager.mirror.refresh()                 # adds this process's drops to the database
    assert manager.report(shadow["id"])["dropped"] == 15


def test_the_primary_never_waits_for_a_slow_candidate(env: Env, gemini):  # noqa: F811
    """4 clients; the candidate (fake Gemini) takes 2 s per call; every mirror is offered.
    The primary is a Gemini version too: a candidate refusing the primary's input (an ONNX
    tensor) fails at once, without a call, and is not slow at all."""
    for version, name in (("1.0.0", "gemini-fast"), ("2.0.0", "gemini-slow")):
        env.registry.register_version("m", version, provider="gemini", config={"model": name})
    env.go_live("1.0.0")
    gemini.set_behavior("gemini-slow", latency=2.0)
    manager = shadows(env, queue_size=4, concurrency=2)
    shadow = manager.start("m", "2.0.0", 100, 3600, None)
    walls: list[float] = []

    def client() -> None:
        for _ in range(30):
            started = time.perf_counter()
            env.gateway.predict("m", "hello")
            walls.append(time.perf_counter() - started)

    try:
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert max(walls) < 0.5, f"a primary call waited {max(walls):.3f}s"
        manager.mirror.refresh()
        report = manager.report(shadow["id"])
        assert report["dropped"] >= 120 - 4 - 2 - 4     # at most queue + workers (+ slack)
        assert gemini.call_count("gemini-slow") >= 1    # the candidate was called, and slow
    finally:
        gemini.stop()   # the calls still waiting end now, not 2 s later
        manager.mirror.close()


def kinds_of_events(env: Env, trial_id: str) -> list[str]:  # noqa: F811
    with env.db.read() as conn:
        return [r.kind for r in conn.execute(select(events.c.kind)
                                             .where(events.c.deployment_id == trial_id)
                                             .order_by(events.c.id))]


def run_queued(mirror: ShadowMirror) -> None:
    """Do the workers' job here (a mirror built without threads)."""
    while not mirror.queue.empty():
        mirror.mirror_one(mirror.queue.get_nowait())
        mirror.queue.task_done()


def test_the_ticker_ends_a_shadow_on_time_and_on_count(live: Env):
    """No read needed: ``tick`` (a background duty of the server) ends a due shadow, with its
    event. Time is the injected clock, not a sleep."""
    manager = shadows(live, start_threads=False, clock=live.clock)
    timed = manager.start("m", "1.1.0", 100, 60, None)
    assert manager.tick() == []
    live.clock.advance(61)
    assert manager.tick() == [timed["id"]]
    assert manager.get(timed["id"])["state"] == "finished"
    assert kinds_of_events(live, timed["id"]) == ["shadow.started", "shadow.finished"]
    counted = manager.start("m", "1.1.0", 100, None, 3)
    for _ in range(5):                       # the 4th and 5th are not even queued
        live.gateway.predict("m", [[1.0, 2.0]])
    assert manager.mirror.queue.qsize() == 3
    run_queued(manager.mirror)
    assert manager.tick() == [counted["id"]]
    assert manager.report(counted["id"])["mirrored"] == 3
    live.gateway.predict("m", [[1.0, 2.0]])  # ended: nothing is mirrored any more
    assert manager.mirror.queue.empty()


def test_open_inference_calls_are_mirrored_through_the_gateway(live: Env):
    """The tensor protocol's call (``infer``) is what the candidate runs too."""
    manager = shadows(live, start_threads=False, store_inputs=True)
    shadow = manager.start("m", "1.1.0", 100, 600, None)
    for x in ([[1.0, 1.0]], [[1.0, 3.0]]):   # equal features: the swap changes nothing
        tensors = {"x": np.array(x, dtype=np.float32)}
        served = live.gateway.serve("m", lambda p, t=tensors: Prediction(p.infer(t)),
                                    example=lambda t=tensors: t)
        assert served.version == "1.0.0"
    run_queued(manager.mirror)
    report = manager.report(shadow["id"])
    assert report["mirrored"] == 2 and report["agreement"]["rate"] == 0.5
    [worst] = report["worst_disagreements"]
    assert worst["example"]["input"] == {"x": [[1.0, 3.0]]}
    assert worst["example"]["shadow_output"] == {"y": [[3.0, 1.0]]}


@pytest.fixture
def llm(env: Env, gemini):  # noqa: F811
    """Model llm: 1.0.0 (stable) answers in full; 1.1.0 stops after 3 words."""
    env.registry.register_model("llm")
    env.registry.register_version("llm", "1.0.0", status="stable", provider="gemini",
                                  config={"model": "gem-primary"})
    env.registry.register_version("llm", "1.1.0", provider="gemini",
                                  config={"model": "gem-candidate", "max_output_tokens": 3})
    return env


def chat(text: str) -> ChatRequest:
    return ChatRequest((Message("user", text),))


def test_chat_calls_and_streams_are_mirrored_and_their_texts_compared(llm: Env):
    manager = shadows(llm, start_threads=False, store_inputs=True)
    shadow = manager.start("llm", "1.1.0", 100, 600, None)
    assert llm.gateway.chat("llm", chat("hi")).prediction.output == "echo: hi"
    stream = llm.gateway.chat_stream("llm", chat("tell me a long story please"))
    assert "".join(p.text for p in stream) == "echo: tell me a long story please"
    stream.close()
    early = llm.gateway.chat_stream("llm", chat("one two three four"))
    next(early)
    early.close()                            # the client went away: no complete answer
    llm.gateway.chat("llm", chat("hi"), version="1.0.0")   # pinned: never mirrored
    assert manager.mirror.queue.qsize() == 2
    run_queued(manager.mirror)
    report = manager.report(shadow["id"])
    assert report["mirrored"] == 2 and report["agreement"]["rate"] == 0.5
    assert report["shadow_errors"]["rate"] == 0.0 and report["tokens"]["shadow"] > 0
    [worst] = report["worst_disagreements"]
    assert 0 < worst["similarity"] < 0.9
    assert worst["example"] == {"input": [{"role": "user", "text": "tell me a long story please"}],
                                "primary_output": "echo: tell me a long story please",
                                "shadow_output": "echo: tell me"}


def test_both_sides_of_a_mirrored_call_are_priced(llm: Env, gemini):
    """Each pair is priced as the gateway prices a call: the primary's cost is the answered
    call's, the candidate's its own usage at its own version's price."""
    prices = PriceBook(llm.db, llm.registry)
    prices.set_price("llm", {"input_per_1m": 1.0, "output_per_1m": 10.0}, version="1.0.0")
    prices.set_price("llm", {"input_per_1m": 2.0, "output_per_1m": 20.0}, version="1.1.0")
    gemini.set_usage("gem-primary", prompt=1000, candidates=200)     # 1000 + 2000 µUSD
    gemini.set_usage("gem-candidate", prompt=1000, candidates=100)   # 2000 + 2000 µUSD
    llm.gateway.prices = prices
    manager = shadows(llm, start_threads=False, prices=prices)
    shadow = manager.start("llm", "1.1.0", 100, 600, None)
    assert llm.gateway.chat("llm", chat("hi")).cost == 3000
    stream = llm.gateway.chat_stream("llm", chat("hello"))
    "".join(p.text for p in stream)
    stream.close()
    run_queued(manager.mirror)
    cost = manager.report(shadow["id"])["cost"]
    assert cost["priced_pairs"] == 2
    assert cost["primary"] == {"cost_micro_usd": 6000, "cost_usd": 0.006}
    assert cost["shadow"] == {"cost_micro_usd": 8000, "cost_usd": 0.008}
    assert cost["ratio"] == pytest.approx(8000 / 6000)


def test_an_unpriced_shadow_reports_no_cost(live: Env):
    manager = shadows(live, start_threads=False)
    shadow = manager.start("m", "1.1.0", 100, 600, None)
    live.gateway.predict("m", [[1.0, 2.0]])
    run_queued(manager.mirror)
    cost = manager.report(shadow["id"])["cost"]
    assert cost == {"priced_pairs": 0, "primary": {"cost_micro_usd": None, "cost_usd": None},
                    "shadow": {"cost_micro_usd": None, "cost_usd": None}, "ratio": None}


def test_no_protocol_waits_for_a_slow_candidate(llm: Env, gemini):
    """4 clients call chat and stream on the primary; the candidate takes 2 s per call and
    every call is offered to it: no primary call comes near that."""
    gemini.set_behavior("gem-candidate", latency=2.0)
    manager = shadows(llm, queue_size=4, concurrency=2)
    manager.start("llm", "1.1.0", 100, 600, None)
    walls: list[float] = []

    def client(i: int) -> None:
        for n in range(8):
            started = time.perf_counter()
            if (i + n) % 2:
                llm.gateway.chat("llm", chat(f"hello {n}"))
            else:
                stream = llm.gateway.chat_stream("llm", chat(f"hello there {n}"))
                list(stream)
                stream.close()
            walls.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(walls) == 32
    assert max(walls) < 1.0, f"a primary call waited {max(walls):.3f}s"


def test_start_refusals_and_promotion_into_a_canary(live: Env):
    manager = shadows(live, start_threads=False)
    with pytest.raises(InvalidArgument):
        manager.start("m", "1.1.0", 0, 60, None)
    with pytest.raises(InvalidArgument):
        manager.start("m", "1.1.0", 10, None, None)
    with pytest.raises(FailedPrecondition):
        manager.start("m", "1.0.0", 10, 60, None)          # already serves everything
    shadow = manager.start("m", "1.1.0", 10, 60, None)
    with pytest.raises(FailedPrecondition):
        manager.start("m", "1.1.0", 10, 60, None)           # one shadow per model
    dep = manager.promote(shadow["id"], live.manager.deploy)
    got = live.manager.get(dep)
    assert got["strategy"] == "canary" and got["version"] == "1.1.0"
    assert any("shadow" in e["reason"] for e in got["events"])
    assert manager.get(shadow["id"])["state"] == "promoted"
    with pytest.raises(FailedPrecondition):
        manager.promote(shadow["id"], live.manager.deploy)


def test_rest_shadow_lifecycle(app, client):
    """The REST translation: start through /deploy, read the report, stop, promote."""
    from tests.test_api_deployments import tick
    assert client.post("/api/models/register", json={"name": "m"}).status_code == 201
    for version in ("1.0.0", "1.1.0"):
        add_version(client, version)
    assert client.post("/api/models/m/deploy", json={"version": "1.0.0"}).status_code == 201
    tick(app)
    r = client.post("/api/models/m/deploy", json={"version": "1.1.0", "strategy": "shadow"})
    assert r.status_code == 400 and "sample_percent" in r.json["error"]["message"]
    r = client.post("/api/models/m/deploy", json={"version": "1.1.0", "sample_percent": 5})
    assert r.status_code == 400
    r = client.post("/api/models/m/deploy", json={"version": "1.1.0", "strategy": "shadow",
                                                  "sample_percent": 100, "max_requests": 10})
    assert r.status_code == 202, r.json
    shadow_id = r.json["deployment"]["id"]
    for _ in range(5):
        assert client.post("/api/models/m/predict",
                           json={"input": [[1.0, 2.0, 3.0, 4.0]]}).status_code == 200
    app.extensions["model_registry"].shadows.mirror.drain()
    r = client.get(f"/api/deployments/{shadow_id}/shadow")
    assert r.status_code == 200, r.json
    assert r.json["shadow"]["state"] == "running" and r.json["mirrored"] == 5
    assert r.json["agreement"]["rate"] == 1.0            # same artifact: full agreement
    r = client.post(f"/api/deployments/{shadow_id}/shadow/stop", json={})
    assert r.status_code == 200 and r.json["shadow"]["state"] == "finished"
    r = client.post(f"/api/deployments/{shadow_id}/shadow/promote",
                    json={"analysis": {"judge": "statistical"}})
    assert r.status_code == 202, r.json
    assert r.json["deployment"]["strategy"] == "canary"
    assert r.json["deployment"]["analysis"]["judge"] == "statistical"
    assert client.get("/api/deployments/dep_nope/shadow").status_code == 404


def test_shadows_and_experiments_are_listed_with_the_rollouts(app, client):
    """GET /api/deployments: every kind newest first with its strategy and state, filtered by
    strategy and state, one keyset token across the three tables."""
    assert client.post("/api/models/register", json={"name": "m"}).status_code == 201
    for version in ("1.0.0", "1.1.0"):
        add_version(client, version)
    direct = client.post("/api/models/m/deploy", json={"version": "1.0.0"}).json["deployment"]
    shadow = client.post("/api/models/m/deploy", json={
        "version": "1.1.0", "strategy": "shadow", "sample_percent": 10,
        "duration_s": 60}).json["deployment"]
    assert client.post(f"/api/deployments/{shadow['id']}/shadow/stop", json={}).status_code == 200
    experiment = client.post("/api/models/m/deploy", json={
        "strategy": "experiment", "variants": {"1.0.0": 50, "1.1.0": 50},
        "primary_metric": "error_rate", "duration_s": 60}).json["deployment"]

    def ids(**query) -> list[tuple[str, str, str]]:
        seen, token = [], None
        while True:
            r = client.get("/api/deployments", query_string={
                **query, "limit": 1, **({"page_token": token} if token else {})})
            assert r.status_code == 200, r.json
            seen += [(d["id"], d["strategy"], d["state"]) for d in r.json["deployments"]]
            token = r.json["next_page_token"]
            if token is None:
                return seen

    assert ids() == [(experiment["id"], "experiment", "running"),
                     (shadow["id"], "shadow", "finished"),
                     (direct["id"], "direct", "succeeded")]
    assert ids(strategy="shadow") == [(shadow["id"], "shadow", "finished")]
    assert ids(state="running") == [(experiment["id"], "experiment", "running")]
    assert ids(state="succeeded", model="m") == [(direct["id"], "direct", "succeeded")]
    assert ids(strategy="canary", state="running") == []
    assert ids(strategy="experiment", model="other") == []
    r = client.get("/api/deployments", query_string={"strategy": "mirror"})
    assert r.status_code == 400 and "strategy" in r.json["error"]["message"]
    listed = client.get("/api/deployments").json["deployments"]
    assert listed[0]["variants"] == {"1.0.0": 50, "1.1.0": 50}
    assert listed[1]["sample_percent"] == 10
