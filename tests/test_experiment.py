"""A/B experiments (issue 19): variants served by the fake Gemini server through the real SDK
and the real gateway, metrics from the real tracker, on SQLite and PostgreSQL."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sqlalchemy import select

from deployment.experiment import ExperimentManager, proportion_test, verdict, welch_test
from deployment.experiment_store import ExperimentStore
from deployment.traffic_switch import TrafficSwitch
from errors import FailedPrecondition, InvalidArgument
from storage.schema import events
from tests.test_deployment_manager import Env, env  # noqa: F401  (the fixture)


def experiments(env: Env) -> ExperimentManager:  # noqa: F811
    manager = ExperimentManager(ExperimentStore(env.db), env.registry, env.tracker,
                                lambda m: env.manager.store.active_for_model(m) is not None,
                                TrafficSwitch(env.db, traffic=env.traffic, router=env.router),
                                clock=env.clock)
    env.manager.before_deploy = manager.refuse_rollout
    return manager


@pytest.fixture
def variants(env: Env, gemini):  # noqa: F811
    """m 1.0.0 (control) and 1.1.0 on two fake Gemini models; 1.0.0 serves everything."""
    for version, name in (("1.0.0", "gem-a"), ("1.1.0", "gem-b")):
        env.registry.register_version("m", version, provider="gemini", config={"model": name})
    env.go_live("1.0.0")
    return env


def run(env: Env, n: int) -> Counter:  # noqa: F811
    """``n`` calls, then the controller's clock caught up with the real time: the tracker
    counts calls at the real time, in 10-second buckets, and an experiment's results read the
    window from its start to the controller's now. Left behind, that clock made the window the
    1-second minimum, and calls in an earlier bucket went uncounted (a run that crossed a
    bucket boundary, as a loaded machine's 400 calls can, did not end the experiment)."""
    seen: Counter = Counter()
    for i in range(n):
        try:
            seen[env.gateway.predict("m", "hello", key=f"user-{i}")["version"]] += 1
        except Exception:  # noqa: BLE001 — a failed call with a failed fallback
            seen["failed"] += 1
    env.clock.catch_up()
    return seen


def test_a_planted_error_difference_gets_the_right_verdict(variants: Env, gemini):
    gemini.set_behavior("gem-a", error_rate=0.02)
    gemini.set_behavior("gem-b", error_rate=0.20)
    manager = experiments(variants)
    exp = manager.start("m", {"1.0.0": 50, "1.1.0": 50}, "error_rate", None, 150)
    assert variants.table() == ({"1.0.0": 50, "1.1.0": 50}, "1.0.0")
    with pytest.raises(FailedPrecondition, match="experiment"):
        variants.manager.deploy("m", "1.1.0")                       # the split holds
    run(variants, 400)
    assert manager.tick() == [exp["id"]]       # the ticker ends it: nobody read it
    assert variants.table() == ({"1.0.0": 100}, "1.0.0")
    results = manager.results(exp["id"])
    assert not results["running"] and results["experiment"]["state"] == "finished"
    assert variants.table() == ({"1.0.0": 100}, "1.0.0")            # back on the control
    [comparison] = results["verdict"]["comparisons"]
    assert comparison["outcome"] == "worse" and comparison["p_value"] < 0.05
    assert results["verdict"]["winner"] == "1.0.0"
    low, high = comparison["ci"]
    assert 0 < low < comparison["effect"] < high
    # promotion only on request
    assert manager.promote(exp["id"], "1.0.0", variants.manager.deploy) is None
    assert manager.get(exp["id"])["state"] == "promoted"


def test_no_difference_claims_nothing(variants: Env, gemini):
    gemini.set_behavior(None, error_rate=0.05)
    manager = experiments(variants)
    exp = manager.start("m", {"1.0.0": 50, "1.1.0": 50}, "error_rate", 3600, None)
    seen = run(variants, 300)
    assert 100 <= seen["1.0.0"] + seen["1.1.0"]
    results = manager.results(exp["id"])
    assert results["running"]
    assert results["verdict"]["winner"] is None
    assert results["verdict"]["comparisons"][0]["outcome"] == "no significant difference"
    stopped = manager.stop(exp["id"])
    assert stopped["experiment"]["state"] == "finished" and stopped["verdict"]["winner"] is None
    dep = manager.promote(exp["id"], "1.1.0", variants.manager.deploy)   # a human's choice
    assert variants.manager.get(dep)["version"] == "1.1.0"


def test_the_ticker_ends_an_experiment_when_its_duration_is_over(variants: Env):
    """With the injected clock: not due, nothing happens; due, the ticker freezes the verdict,
    records the event and puts the control back, without anyone reading the results."""
    manager = experiments(variants)
    exp = manager.start("m", {"1.0.0": 50, "1.1.0": 50}, "error_rate", 60, None)
    run(variants, 20)
    assert manager.tick() == []
    variants.clock.advance(61)
    assert manager.tick() == [exp["id"]]
    assert manager.tick() == []                 # once
    stored = manager.store.get(exp["id"])
    assert stored.state == "finished" and stored.finished_at is not None
    assert stored.result["verdict"]["summary"] == "no significant difference: no claim"
    assert variants.table() == ({"1.0.0": 100}, "1.0.0")
    with variants.db.read() as conn:
        kinds = [r.kind for r in conn.execute(select(events.c.kind, events.c.reason).where(
            events.c.deployment_id == exp["id"]).order_by(events.c.id))]
    assert kinds[0] == "experiment.started" and "experiment.finished" in kinds


def test_sticky_keys_keep_their_variant(variants: Env):
    manager = experiments(variants)
    manager.start("m", {"1.0.0": 50, "1.1.0": 50}, "latency", 3600, None)
    first = [variants.gateway.predict("m", "hi", key=f"k{i}")["version"] for i in range(30)]
    again = [variants.gateway.predict("m", "hi", key=f"k{i}")["version"] for i in range(30)]
    assert first == again and set(first) == {"1.0.0", "1.1.0"}


def test_start_refusals(variants: Env):
    manager = experiments(variants)
    with pytest.raises(InvalidArgument):
        manager.start("m", {"1.0.0": 100}, "error_rate", 60, None)
    with pytest.raises(InvalidArgument):
        manager.start("m", {"1.0.0": 50, "1.1.0": 50}, "revenue", 60, None)
    with pytest.raises(InvalidArgument):
        manager.start("m", {"1.0.0": 50, "1.1.0": 50}, "latency", None, None)
    with pytest.raises(InvalidArgument):
        manager.start("m", {"1.0.0": 60, "1.1.0": 50}, "latency", 60, None)
    manager.start("m", {"1.0.0": 50, "1.1.0": 50}, "latency", 60, None)
    with pytest.raises(FailedPrecondition):
        manager.start("m", {"1.0.0": 50, "1.1.0": 50}, "latency", 60, None)


def test_the_statistics():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.100, 0.02, 2000), rng.normal(0.110, 0.02, 2000)
    slower = welch_test(a, b, 0.05)
    assert slower["p_value"] < 1e-6 and slower["ci"][0] < 0.010 < slower["ci"][1]
    same = welch_test(a, rng.normal(0.100, 0.02, 2000), 0.05)
    assert same["p_value"] > 0.05 and same["ci"][0] < 0 < same["ci"][1]
    assert proportion_test(0, 100, 0, 100, 0.05)["p_value"] == 1.0
    exp = {"control": "a", "variants": {"a": 50, "b": 50}, "alpha": 0.05,
           "primary_metric": "error_rate"}
    v = verdict(exp, {"a": {"requests": 1000, "failures": 100},
                      "b": {"requests": 1000, "failures": 50}}, {})
    assert v["winner"] == "b" and v["comparisons"][0]["outcome"] == "better"


def test_rest_experiment_lifecycle(app, client):
    """The REST translation: start through /deploy, results, promote the chosen variant."""
    from tests.test_api_deployments import add_version, tick
    assert client.post("/api/models/register", json={"name": "m"}).status_code == 201
    for version in ("1.0.0", "1.1.0"):
        add_version(client, version)
    assert client.post("/api/models/m/deploy", json={"version": "1.0.0"}).status_code == 201
    tick(app)
    r = client.post("/api/models/m/deploy", json={"strategy": "experiment",
                                                  "variants": {"1.0.0": 50, "1.1.0": 50}})
    assert r.status_code == 400, r.json
    r = client.post("/api/models/m/deploy", json={
        "strategy": "experiment", "variants": {"1.0.0": 50, "1.1.0": 50},
        "primary_metric": "latency", "sample_size": 1000})
    assert r.status_code == 202, r.json
    exp_id = r.json["deployment"]["id"]
    assert client.post("/api/models/m/deploy", json={"version": "1.1.0"}).status_code == 409
    for i in range(20):
        r = client.post("/api/models/m/predict",
                        json={"input": [[1.0, 2.0, 3.0, 4.0]], "key": f"u{i}"})
        assert r.status_code == 200, r.json
    r = client.get(f"/api/deployments/{exp_id}/experiment")
    assert r.status_code == 200, r.json
    assert r.json["running"] and set(r.json["metrics"]) == {"1.0.0", "1.1.0"}
    r = client.post(f"/api/deployments/{exp_id}/experiment/promote", json={"variant": "2.0.0"})
    assert r.status_code == 400
    r = client.post(f"/api/deployments/{exp_id}/experiment/promote", json={"variant": "1.1.0"})
    assert r.status_code == 200, r.json
    assert r.json["experiment"]["state"] == "promoted"
    assert r.json["deployment"]["version"] == "1.1.0"
    assert client.get("/api/deployments/dep_nope/experiment").status_code == 404
