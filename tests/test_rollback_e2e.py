"""Rollback against a running server under concurrent load (real HTTP, real processes):
a manual rollback and a snapshot restore fail no request and every later request is served by
the target; a live Gemini version that starts failing is rolled back automatically."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests

from models.onnx_examples import linear_model
from tests.support import LiveServer, wait_until

pytestmark = pytest.mark.slow   # real server processes, rollbacks in real time

X = [[1.0, 2.0, 3.0, 4.0]]


class Load:
    """Client threads predicting until stopped; every answer kept with its time."""

    def __init__(self, url: str, model: str, body: dict, clients: int = 4) -> None:
        self.url, self.model, self.body = url, model, body
        self.answers: list[tuple[float, int, str | None]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            r = session.post(f"{self.url}/api/models/{self.model}/predict", json=self.body,
                             timeout=30)
            version = r.json().get("version") if r.status_code == 200 else None
            self.answers.append((time.monotonic(), r.status_code, version))

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def serve(url: str, model: str, versions: list[str]) -> None:
    """Register ONNX versions, deploy them in turn; the last one ends up live."""
    requests.post(f"{url}/api/models/register", json={"name": model}).raise_for_status()
    for version in versions:
        requests.post(f"{url}/api/models/{model}/versions/register",
                      json={"version": version, "provider": "onnx"}).raise_for_status()
        requests.put(f"{url}/api/models/{model}/versions/{version}/artifact",
                     data=linear_model()).raise_for_status()
        requests.post(f"{url}/api/models/{model}/deploy",
                      json={"version": version}).raise_for_status()
        wait_until(lambda: requests.get(f"{url}/api/models/{model}/traffic").json()
                   .get("traffic", {}).get("weights") == {version: 100})


def test_rollback_and_restore_under_load_fail_no_request(live_server):
    url = live_server.url
    serve(url, "m", ["1.0.0", "1.1.0"])
    snap = requests.post(f"{url}/api/snapshots", json={"model": "m"}).json()["snapshot"]["id"]
    with Load(url, "m", {"input": X}) as load:
        time.sleep(1.0)
        r = requests.post(f"{url}/api/models/m/rollback", json={"reason": "e2e"})
        assert r.status_code == 200 and r.json()["rollback"]["to_version"] == "1.0.0"
        rolled_back = time.monotonic()
        time.sleep(2.0)
        # Answers are timed when they arrive: one that arrives before the restore's own
        # answer may already have been routed by the restored table (seen in CI: 1.1.0 at
        # 2.047 s, the restore sent at 2.0 s), so the rollback's window ends when it is sent.
        restore_sent = time.monotonic()
        r = requests.post(f"{url}/api/snapshots/{snap}/restore", json={})
        assert r.status_code == 200
        restored = time.monotonic()
        time.sleep(2.0)
    statuses = Counter(status for _, status, _ in load.answers)
    assert statuses == {200: len(load.answers)} and len(load.answers) > 100, statuses
    # the router revalidates at least every 0.5 s: after 1 s every answer is the target's
    between = [v for t, _, v in load.answers if rolled_back + 1.0 < t < restore_sent]
    after = [v for t, _, v in load.answers if t > restored + 1.0]
    late = [(round(t - rolled_back, 3), v) for t, _, v in load.answers
            if rolled_back < t < restore_sent and v != "1.0.0"]
    assert between and set(between) == {"1.0.0"}, f"off-target answers after the rollback " \
        f"(seconds after it, version): {late[:50]}"
    late = [(round(t - restored, 3), v) for t, _, v in load.answers
            if t > restored and v != "1.1.0"]
    assert after and set(after) == {"1.1.0"}, f"off-target answers after the restore: {late[:50]}"


@pytest.fixture
def gemini_server(tmp_path, gemini):
    server = LiveServer(tmp_path / "gemini-server", env={
        "AUTO_ROLLBACK_WINDOW_S": "5", "AUTO_ROLLBACK_MIN_REQUESTS": "20",
        "AUTO_ROLLBACK_MAX_ERROR_RATE": "0.2"}).start()
    yield server
    server.stop()


def test_failing_live_version_is_rolled_back_automatically(gemini_server, gemini):
    url = gemini_server.url
    requests.post(f"{url}/api/models/register", json={"name": "chat"}).raise_for_status()
    for version, model_id in (("1.0.0", "gemini-good"), ("1.1.0", "gemini-new")):
        requests.post(f"{url}/api/models/chat/versions/register",
                      json={"version": version, "config": {"model": model_id}}
                      ).raise_for_status()
        requests.post(f"{url}/api/models/chat/deploy",
                      json={"version": version}).raise_for_status()
        wait_until(lambda: requests.get(f"{url}/api/models/chat/traffic").json()
                   .get("traffic", {}).get("weights") == {version: 100})
    gemini.set_behavior(model="gemini-new", error_rate=0.5, status=500)
    started = time.monotonic()
    with Load(url, "chat", {"input": "hello"}, clients=3):
        wait_until(lambda: requests.get(f"{url}/api/models/chat/traffic").json()
                   ["traffic"]["weights"] == {"1.0.0": 100}, timeout=30)
    took = time.monotonic() - started
    assert took < 15, f"rolled back after {took:.1f}s"
    rollback = requests.get(f"{url}/api/rollbacks?model=chat").json()["rollbacks"][0]
    assert (rollback["trigger"], rollback["from_version"], rollback["to_version"]) == (
        "automatic", "1.1.0", "1.0.0")
    metrics = rollback["evidence"]["metrics"]
    assert metrics["requests"] >= 20 and 0.3 <= metrics["error_rate"] <= 0.7
    # The alert is raised just after the rollback commits (documented): wait for it, as a
    # client would, rather than race it under load.
    wait_until(lambda: any(
        a["rule"] == "automatic_rollback" and a["version"] == "1.1.0" for a in requests.get(
            f"{url}/api/alerts?model=chat&active=true").json()["alerts"]), timeout=10)
