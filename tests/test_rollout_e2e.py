"""Rollouts end to end: a real server (``python api/app.py``), its background ticker, and real
HTTP load from several client threads.

- a blue-green switch, each canary step and an abort under load: zero failed requests, and
  the canary's observed share at each step within a few points of the step's weight;
- a canary of a faulty Gemini version (the fake server fails 30% of that model id's calls) is
  aborted by its analysis; users never see an error (fallback to stable);
- SIGKILL during a canary, restart on the same data: the rollout goes on from the same step;
- concurrent deploys of one model: one 202, the others 409.

Short analysis settings keep each rollout to seconds. Figures are printed (``-s`` shows them).
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from deployment.records import FINAL_STATES
from models import onnx_examples
from tests.support import LATENCY_TOLERANT, LiveServer
from tests.fake_gemini import FakeGemini

pytestmark = pytest.mark.slow   # real server processes, rollouts in real time

X = [[1.0, 2.0, 3.0, 4.0]]
ROUTER_SETTLE_S = 0.6        # a table change is live in the server within its router's TTL
SHARE_TOLERANCE = 0.05       # "within a few points"
CLEAN_ENV = {"DATABASE_URL": "", "ARTIFACT_ROOT": "", "REGISTRY_ADMIN_TOKEN": "",
             "GEMINI_API_KEY": "", "GOOGLE_API_KEY": "", "GOOGLE_GEMINI_BASE_URL": ""}


def serve(data_dir: Path, env: dict[str, str] | None = None) -> LiveServer:
    """A started server on ``data_dir``, with none of the developer's keys or URLs."""
    return LiveServer(data_dir, {**CLEAN_ENV, **(env or {})}).start()


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def post(self, path: str, body: dict | None = None, expect: int | None = 200) -> Any:
        r = self.http.post(self.url + path, json=body or {}, timeout=30)
        if expect is not None:
            assert r.status_code == expect, (path, r.status_code, r.text)
        return r.json()

    def get(self, path: str) -> Any:
        r = self.http.get(self.url + path, timeout=30)
        assert r.status_code == 200, (path, r.text)
        return r.json()

    def onnx_model(self, name: str, versions: list[str]) -> None:
        self.post("/api/models/register", {"name": name}, 201)
        for version in versions:
            self.post(f"/api/models/{name}/versions/register",
                      {"version": version, "provider": "onnx"}, 201)
            r = self.http.put(f"{self.url}/api/models/{name}/versions/{version}/artifact",
                              data=onnx_examples.linear_model(),
                              headers={"Content-Type": "application/octet-stream"}, timeout=30)
            assert r.status_code in (200, 201), r.text

    def deploy(self, name: str, version: str, strategy: str = "direct", **extra: Any) -> str:
        body = {"version": version, "strategy": strategy, **extra}
        r = self.http.post(f"{self.url}/api/models/{name}/deploy", json=body, timeout=60)
        # 201: switched (direct, blue-green, a first deployment); 202: a canary's first step
        assert r.status_code == (202 if r.json()["deployment"]["traffic"].get(version) != 100
                                 else 201), r.text
        return r.json()["deployment"]["id"]

    def deployment(self, dep: str) -> dict[str, Any]:
        return self.get(f"/api/deployments/{dep}")["deployment"]

    def traffic(self, name: str) -> dict[str, Any]:
        return self.get(f"/api/models/{name}/traffic")["traffic"]

    def wait(self, dep: str, done: Callable[[dict], bool], timeout: float,
             what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.deployment(dep)
            if done(got):
                return got
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {got}"
            time.sleep(0.1)

    def wait_state(self, dep: str, state: str, timeout: float = 30) -> dict[str, Any]:
        """The deployment once in ``state``; fails at once if it ends in another state."""
        def reached(d: dict) -> bool:
            assert d["state"] == state or d["state"] not in FINAL_STATES, \
                f"ended {d['state']} ({d.get('reason')}) instead of {state}: {d}"
            return d["state"] == state
        return self.wait(dep, reached, timeout, state)


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int
    version: str | None
    fallback: bool
    error: str = ""


class Load:
    """``threads`` clients posting predictions back to back until ``stop()``."""

    def __init__(self, url: str, model: str, input: Any, threads: int = 4) -> None:
        self.url = f"{url}/api/models/{model}/predict"
        self.input = input
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.answers

    def wait_answers(self, count: int = 120, timeout: float = 60.0) -> None:
        """Until ``count`` requests sent once the router has settled (from now) are answered:
        a traffic window then holds enough requests for its share, whether the machine serves
        300 requests a second or 30 (a second test worker, other load), instead of a fixed
        sleep that is long on one machine and too short on the other."""
        since = time.time() + ROUTER_SETTLE_S
        deadline = time.monotonic() + timeout
        while sum(a.started >= since for a in list(self.answers)) < count:
            assert time.monotonic() < deadline, f"fewer than {count} answers in {timeout} s"
            time.sleep(0.1)

    def _run(self) -> None:
        http = requests.Session()
        while not self._stop.is_set():
            started = time.time()
            try:
                r = http.post(self.url, json={"input": self.input}, timeout=30)
                body = r.json()
                answer = Answer(started, time.time(), r.status_code, body.get("version"),
                                bool(body.get("fallback")),
                                "" if r.ok else str(body.get("error")))
            except Exception as exc:  # a connection error is a failed request too
                answer = Answer(started, time.time(), 0, None, False, repr(exc))
            with self._lock:
                self.answers.append(answer)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def step_times(dep: dict[str, Any]) -> list[tuple[float, int]]:
    """(time, weight) of each traffic step the deployment took, from its event timeline."""
    return [(epoch(e["at"]), e["detail"]["weight"]) for e in dep["events"]
            if e["kind"] == "deployment.step"]


def event_time(dep: dict[str, Any], kind: str) -> float:
    return next(epoch(e["at"]) for e in dep["events"] if e["kind"] == kind)


def share(answers: list[Answer], version: str, start: float, end: float) -> tuple[float, int]:
    """The share of ``version`` among answers to requests sent in [start + settle, end)."""
    window = [a for a in answers if a.started >= start + ROUTER_SETTLE_S and a.ended < end]
    assert len(window) >= 100, f"too few requests in a window ({len(window)})"
    return sum(a.version == version for a in window) / len(window), len(window)


def failed(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status != 200]


# -- tests -----------------------------------------------------------------------------------------
def test_blue_green_canary_steps_and_abort_under_load_fail_no_request(tmp_path: Path):
    server = serve(tmp_path / "data")
    api = Api(server.url)
    try:
        api.onnx_model("m", ["1.0.0", "1.1.0", "1.2.0", "1.3.0"])
        api.wait_state(api.deploy("m", "1.0.0"), "succeeded")
        load = Load(server.url, "m", X, threads=4).start()
        try:
            time.sleep(0.5)
            bg = api.deploy("m", "1.1.0", "blue-green",
                            analysis={"min_requests": 20, "interval_s": 2, "deadline_s": 30,
                                      **LATENCY_TOLERANT})
            bg_done = api.wait_state(bg, "succeeded", 30)
            load.wait_answers()                      # all on 1.1.0, enough of them to say so
            canary = api.deploy("m", "1.2.0", "canary",
                                analysis={"min_requests": 30, "interval_s": 5, "deadline_s": 60,
                                          **LATENCY_TOLERANT})
            canary_done = api.wait_state(canary, "succeeded", 40)
            load.wait_answers()                      # 100% on 1.2.0 for a moment
            # Never passes on its own (too few requests): steered by hand, then aborted.
            doomed = api.deploy("m", "1.3.0", "canary",
                                analysis={"min_requests": 10**6, "interval_s": 1,
                                          "deadline_s": 120})
            api.wait(doomed, lambda d: d["step"] == 0, 20, "the 10% step")
            load.wait_answers(800)                   # a share within 5 points: ~3 sigma
            api.post(f"/api/deployments/{doomed}/promote")
            load.wait_answers(800)                   # a share within 5 points: ~3 sigma
            aborted = api.post(f"/api/deployments/{doomed}/abort", {"reason": "e2e"})
            assert aborted["deployment"]["state"] == "aborted"
            assert api.traffic("m")["weights"] == {"1.2.0": 100}
            load.wait_answers()
        finally:
            answers = load.stop()
        end = time.time()
        doomed_done = api.deployment(doomed)
    finally:
        server.stop()

    bad = failed(answers)
    assert not bad, f"{len(bad)} of {len(answers)} requests failed, e.g. {bad[:3]}"
    fallbacks = sum(a.fallback for a in answers)   # e.g. a call racing the unload of 1.3.0

    # Blue-green: 1.0.0 until the switch, 1.1.0 from it on (one atomic change).
    [(switch, weight)] = step_times(bg_done)
    assert weight == 100
    assert {a.version for a in answers if a.ended < switch} == {"1.0.0"}
    after_switch, n_after = share(answers, "1.1.0", switch, step_times(canary_done)[0][0])
    assert after_switch == 1.0

    # Canary: each step's observed share within a few points of its weight.
    figures = {}
    for label, dep, version, finish in (("canary", canary_done, "1.2.0",
                                         step_times(doomed_done)[0][0]),
                                        ("aborted canary", doomed_done, "1.3.0",
                                         event_time(doomed_done, "deployment.aborted"))):
        steps = step_times(dep)
        bounds = [t for t, _ in steps[1:]] + [finish]
        for (start, weight), stop in zip(steps, bounds):
            observed, n = share(answers, version, start, stop)
            figures[f"{label} {weight}%"] = (round(100 * observed, 1), n)
            assert abs(observed - weight / 100) <= SHARE_TOLERANCE, (label, weight, observed, n)
    # After the abort: nothing reaches the aborted version.
    observed, n = share(answers, "1.3.0", event_time(doomed_done, "deployment.aborted"), end)
    figures["after abort (1.3.0)"] = (round(100 * observed, 1), n)
    assert observed == 0.0
    print(f"\n{len(answers)} requests, {len(bad)} failed, {fallbacks} by fallback; "
          f"blue-green after switch: "
          f"{n_after} requests all on 1.1.0; observed canary share per step (%, requests): "
          f"{figures}")


@pytest.fixture
def fake_gemini():
    with FakeGemini() as fake:
        yield fake


def test_a_faulty_gemini_canary_is_aborted_and_users_see_no_error(tmp_path: Path,
                                                                   fake_gemini: FakeGemini):
    fake_gemini.set_behavior(model="gemini-e2e-faulty", error_rate=0.3, status=500)
    server = serve(tmp_path / "data", {"GOOGLE_GEMINI_BASE_URL": fake_gemini.url,
                                       "GEMINI_API_KEY": "fake-key"})
    api = Api(server.url)
    try:
        api.post("/api/models/register", {"name": "chat"}, 201)
        for version, model_id in (("1.0.0", "gemini-e2e-stable"),
                                  ("1.1.0", "gemini-e2e-faulty")):
            api.post("/api/models/chat/versions/register",
                     {"version": version, "config": {"model": model_id}}, 201)
        api.wait_state(api.deploy("chat", "1.0.0"), "succeeded")
        load = Load(server.url, "chat", "hello there", threads=4).start()
        try:
            dep = api.deploy("chat", "1.1.0", "canary",
                             analysis={"min_requests": 20, "interval_s": 2, "deadline_s": 60})
            got = api.wait_state(dep, "aborted", 40)
            assert api.traffic("chat")["weights"] == {"1.0.0": 100}
            time.sleep(1.0)
        finally:
            answers = load.stop()
        alerts = api.get("/api/alerts?model=chat&active=true")["alerts"]
    finally:
        server.stop()

    bad = failed(answers)
    assert not bad, f"{len(bad)} of {len(answers)} requests failed, e.g. {bad[:3]}"
    fallbacks = [a for a in answers if a.fallback]
    assert fallbacks and all(a.version == "1.0.0" for a in fallbacks)
    assert fake_gemini.call_count("gemini-e2e-faulty") > 0
    verdict = got["verdicts"][-1]
    assert verdict["result"] == "fail" and got["traffic"] == {"1.0.0": 100}
    assert 0.15 <= verdict["evidence"]["candidate"]["error_rate"] <= 0.45
    assert "rollback.recorded" in [e["kind"] for e in got["events"]]
    assert any(a["rule"] == "automatic_rollback" and a["version"] == "1.1.0" for a in alerts)
    print(f"\n{len(answers)} requests, {len(bad)} failed, {len(fallbacks)} served by fallback; "
          f"canary error rate at abort {verdict['evidence']['candidate']['error_rate']:.3f} "
          f"over {verdict['evidence']['candidate']['requests']} requests")


def test_sigkill_during_a_canary_then_restart_continues_from_the_same_step(tmp_path: Path):
    data = tmp_path / "data"
    server = serve(data)
    api = Api(server.url)
    try:
        api.onnx_model("k", ["1.0.0", "1.1.0"])
        api.wait_state(api.deploy("k", "1.0.0"), "succeeded")
        dep = api.deploy("k", "1.1.0", "canary",
                         analysis={"min_requests": 50, "interval_s": 2, "deadline_s": 120,
                                   **LATENCY_TOLERANT})
        before = api.wait(dep, lambda d: d["state"] == "progressing", 20, "step 0")
        table_before = api.traffic("k")
    finally:
        server.kill()                                       # SIGKILL: no shutdown code runs
    assert before["step"] == 0 and table_before["weights"] == {"1.1.0": 10, "1.0.0": 90}

    server = serve(data)
    api = Api(server.url)
    try:
        after = api.deployment(dep)
        assert (after["state"], after["step"], after["traffic"]) == (
            "progressing", 0, before["traffic"])
        assert api.traffic("k") == table_before             # same table, same revision
        time.sleep(1.5)                                     # the new ticker runs: no data yet
        assert api.deployment(dep)["step"] == 0 and api.traffic("k") == table_before
        load = Load(server.url, "k", X, threads=3).start()
        try:
            api.wait(dep, lambda d: d["step"] == 1, 30, "the 50% step after the restart")
            done = api.wait_state(dep, "succeeded", 30)
        finally:
            answers = load.stop()
    finally:
        server.stop()
    assert not failed(answers)
    kinds = Counter(e["kind"] for e in done["events"])
    assert kinds["deployment.health_check"] == 1 and kinds["deployment.step"] == 3
    assert done["traffic"] == {"1.1.0": 100}


def test_concurrent_deploys_of_one_model_one_wins(tmp_path: Path):
    server = serve(tmp_path / "data")
    api = Api(server.url)
    try:
        api.onnx_model("race", ["1.0.0", "1.1.0", "1.2.0", "1.3.0"])
        api.wait_state(api.deploy("race", "1.0.0"), "succeeded")
        versions = ["1.1.0", "1.2.0", "1.3.0"] * 3
        barrier = threading.Barrier(len(versions))
        statuses: list[int] = []

        def deploy(version: str) -> None:
            http = requests.Session()
            barrier.wait(10)
            r = http.post(f"{server.url}/api/models/race/deploy",
                          json={"version": version, "strategy": "canary"}, timeout=30)
            statuses.append(r.status_code)

        threads = [threading.Thread(target=deploy, args=(v,)) for v in versions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        active = api.get("/api/deployments?model=race&state=health_check")["deployments"] + \
            api.get("/api/deployments?model=race&state=progressing")["deployments"]
    finally:
        server.stop()
    assert Counter(statuses) == {202: 1, 409: len(versions) - 1}
    assert len(active) == 1
