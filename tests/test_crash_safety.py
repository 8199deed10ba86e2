"""Crash safety: SIGKILL a real server (``python api/app.py`` on SQLite) in the middle of work,
then check what a restart finds.

After every kill, with the server dead:

* ``PRAGMA integrity_check`` of the SQLite file is ``ok``;
* every file under the artifact store's ``sha256/`` tree hashes to its name (uploads are
  written to ``tmp/`` and published by one atomic rename), and no upload in progress shows up
  there;
* every version row that names an artifact has that file, with that size (the bytes are
  published before the row points at them);
* every event-producing write is all or nothing (the row and its audit event commit together).

After the restart on the same data dir: the API answers, every deployment is finished or has a
way forward (active ones have their next check / deadline stored and either advance by the
ticker or can be promoted / aborted over the API), stale upload temp files are removed by the
store's ``cleanup_temp`` (older than its one-hour guard), and predictions served at least
1.5 s before the kill are all counted (the collector flushes every second: the documented loss
bound is the last second).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import LiveServer
from models.onnx_examples import linear_model

pytestmark = pytest.mark.slow   # kills real servers with SIGKILL

INPUT = {"input": [[1.0, 2.0, 3.0, 4.0]]}
DIGEST = re.compile(r"[0-9a-f]{64}")


# -- helpers ---------------------------------------------------------------------------------

class Server:
    """A LiveServer on a fixed data dir that can be killed and started again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.live: LiveServer | None = None

    @property
    def url(self) -> str:
        assert self.live is not None
        return self.live.url

    def start(self) -> "Server":
        self.live = LiveServer(self.data_dir).start(timeout=30)
        return self

    def sigkill(self) -> None:
        assert self.live is not None and self.live.proc is not None
        self.live.kill()                       # Popen.kill: SIGKILL, then wait
        assert self.live.proc.returncode == -9

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()

    def post(self, path: str, body: dict | None = None, timeout: float = 10) -> requests.Response:
        return requests.post(self.url + path, json=body if body is not None else {},
                             timeout=timeout)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def register_onnx(self, model: str, version: str, upload: bool = True) -> None:
        self.post("/api/models/register", {"name": model})
        r = self.post(f"/api/models/{model}/versions/register",
                      {"version": version, "provider": "onnx"})
        assert r.status_code == 201, r.text
        if upload:
            r = requests.put(f"{self.url}/api/models/{model}/versions/{version}/artifact",
                             data=linear_model(),
                             headers={"Content-Type": "application/octet-stream"}, timeout=10)
            assert r.status_code == 201, r.text

    def deploy(self, model: str, version: str, **body) -> str:
        r = self.post(f"/api/models/{model}/deploy", {"version": version, **body})
        assert r.status_code in (201, 202), r.text   # 202: a canary's first step is live
        return r.json()["deployment"]["id"]

    def deployment(self, deployment_id: str) -> dict:
        return self.get(f"/api/deployments/{deployment_id}").json()["deployment"]

    def wait_deployment(self, deployment_id: str, done, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            dep = self.deployment(deployment_id)
            if done(dep):
                return dep
            assert time.monotonic() < deadline, f"deployment never got there: {dep}"
            time.sleep(0.05)

    def predict(self, model: str) -> requests.Response:
        return requests.post(f"{self.url}/api/models/{model}/predict", json=INPUT, timeout=10)


def sql(data_dir: Path, query: str, *args) -> list[tuple]:
    conn = sqlite3.connect(data_dir / "registry.db", timeout=30)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def check_consistent(data_dir: Path) -> None:
    """What must hold after any kill, checked with the server dead."""
    assert sql(data_dir, "PRAGMA integrity_check") == [("ok",)]
    assert sql(data_dir, "PRAGMA foreign_key_check") == []
    objects = data_dir / "artifacts" / "sha256"
    for path in objects.rglob("*") if objects.exists() else []:
        if path.is_dir():
            continue
        assert DIGEST.fullmatch(path.name) and path.parent.name == path.name[:2], path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"bad blob {path}"
    for version, digest, size in sql(data_dir, "SELECT version, artifact_digest, artifact_size "
                                               "FROM model_versions WHERE artifact_digest IS "
                                               "NOT NULL"):
        blob = objects / digest[:2] / digest
        assert blob.is_file(), f"version {version} claims {digest}, which is not stored"
        assert blob.stat().st_size == size
    # A row and its audit event commit together.
    models = sql(data_dir, "SELECT count(*) FROM models")[0][0]
    registered = sql(data_dir, "SELECT count(*) FROM events WHERE kind = 'model.registered'")
    assert registered[0][0] == models
    versions = sql(data_dir, "SELECT count(*) FROM model_versions")[0][0]
    events = sql(data_dir, "SELECT count(*) FROM events WHERE kind = 'version.registered'")
    assert events[0][0] == versions


def active_deployments(data_dir: Path) -> list[tuple]:
    return sql(data_dir, "SELECT id, state, next_check_at, deadline_at FROM deployments "
                         "WHERE finished_at IS NULL")


def check_way_forward(server: Server) -> None:
    """After a restart: every unfinished deployment can still move (by itself or by a call)."""
    for dep_id, state, next_check, deadline in active_deployments(server.data_dir):
        # paused waits for a human by design (promote or abort); the others for the ticker,
        # at a stored time, with a stored deadline (a step's or a health check's lease).
        if state in ("pending", "health_check", "progressing"):
            assert next_check is not None, (dep_id, state)
        if state in ("health_check", "progressing"):
            assert deadline is not None, (dep_id, state)
    assert server.get("/readyz").status_code == 200
    assert server.get("/api/models").status_code == 200
    assert server.get("/api/deployments").status_code == 200


@pytest.fixture(scope="module")
def _module_server(tmp_path_factory: pytest.TempPathFactory):
    """One data dir for the whole module: each test kills the server and starts it again on
    what the kill left, so the later tests also run on the debris of the earlier ones."""
    srv = Server(tmp_path_factory.mktemp("crash") / "data")
    yield srv
    srv.stop()


@pytest.fixture
def server(_module_server: Server) -> Server:
    live = _module_server.live
    if live is None or live.proc is None or live.proc.poll() is not None:
        _module_server.start()
    return _module_server


# -- (a) registrations --------------------------------------------------------------------------

def test_kill_during_a_burst_of_registrations(server):
    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def register(worker: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"m{worker}-{i}"
            try:
                if server.post("/api/models/register", {"name": name, "tags": {"w": str(worker)},
                                                        "description": "x" * 200},
                               timeout=5).status_code == 201:
                    with lock:
                        acknowledged.append((name, ""))
                    for v in ("1.0.0", "1.1.0"):
                        r = server.post(f"/api/models/{name}/versions/register",
                                        {"version": v, "provider": "onnx"}, timeout=5)
                        if r.status_code == 201:
                            with lock:
                                acknowledged.append((name, v))
            except requests.RequestException:
                return   # the server died under us
            i += 1

    threads = [threading.Thread(target=register, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.sigkill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acknowledged) > 20, "the burst never got going"
    print(f"\n{len(acknowledged)} registrations acknowledged before the kill")

    check_consistent(server.data_dir)
    models = {n for (n,) in sql(server.data_dir, "SELECT name FROM models")}
    versions = set(sql(server.data_dir, "SELECT m.name, v.version FROM model_versions v "
                                        "JOIN models m ON m.id = v.model_id"))
    for name, version in acknowledged:   # a 201 is durable
        assert (name in models) if not version else ((name, version) in versions)

    server.start()
    check_way_forward(server)
    listed = server.get("/api/models?limit=1000").json()["models"]
    assert {m["name"] for m in listed} == models
    assert server.post("/api/models/register", {"name": "after-crash"}).status_code == 201


# -- (b) a large upload -------------------------------------------------------------------------

def test_kill_during_a_large_upload(server):
    server.register_onnx("big", "1.0.0", upload=False)
    tmp_dir = server.data_dir / "artifacts" / "tmp"
    chunk = os.urandom(1 << 20)
    sent = {"bytes": 0}

    def body():
        for _ in range(256):            # 256 MB if it ever finished; it will not
            sent["bytes"] += len(chunk)
            yield chunk
            time.sleep(0.01)

    def upload() -> None:
        try:
            requests.put(f"{server.url}/api/models/big/versions/1.0.0/artifact", data=body(),
                         headers={"Content-Type": "application/octet-stream"}, timeout=30)
        except requests.RequestException:
            pass

    thread = threading.Thread(target=upload)
    thread.start()
    deadline = time.monotonic() + 15
    while True:   # kill once the server has written a good part to its temp file
        parts = list(tmp_dir.glob("upload-*.part")) if tmp_dir.exists() else []
        if parts and parts[0].stat().st_size > (16 << 20):
            break
        assert time.monotonic() < deadline, "the upload never reached the server"
        time.sleep(0.02)
    server.sigkill()
    thread.join(30)

    check_consistent(server.data_dir)
    assert sql(server.data_dir, "SELECT artifact_digest FROM model_versions v JOIN models m "
               "ON m.id = v.model_id WHERE m.name = 'big'") == [(None,)]
    parts = list(tmp_dir.glob("upload-*.part"))
    assert len(parts) == 1   # the half-written upload is only a temp file, outside sha256/
    # The store's start-up cleanup removes temp files untouched for an hour (its guard): a
    # fresher one could be another process's upload still running, so it stays.
    old = time.time() - 2 * 3600
    os.utime(parts[0], (old, old))
    running = tmp_dir / "upload-another-process.part"
    running.write_bytes(b"still arriving")
    server.start()
    assert not parts[0].exists() and running.exists()
    assert list(tmp_dir.glob("*")) == [running]
    running.unlink()
    check_way_forward(server)
    assert server.get("/api/models/big/versions/1.0.0/artifact").status_code == 404
    r = requests.put(f"{server.url}/api/models/big/versions/1.0.0/artifact", data=linear_model(),
                     headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert r.status_code == 201
    dep = server.deploy("big", "1.0.0")
    server.wait_deployment(dep, lambda d: d["state"] == "succeeded")
    assert server.predict("big").status_code == 200


# -- (c) a deployment in progress ---------------------------------------------------------------

def test_kill_during_deployments(server):
    server.register_onnx("dep", "1.0.0")
    server.register_onnx("dep", "1.1.0")
    server.register_onnx("fast", "1.0.0")
    first = server.deploy("dep", "1.0.0")
    server.wait_deployment(first, lambda d: d["state"] == "succeeded")
    slow = {"min_requests": 1, "interval_s": 3600, "deadline_s": 7200}
    canary = server.deploy("dep", "1.1.0", strategy="canary", analysis=slow)
    server.wait_deployment(canary, lambda d: d["state"] == "progressing")
    direct = server.deploy("fast", "1.0.0")   # killed right after it answered (done in the call)
    server.sigkill()

    check_consistent(server.data_dir)
    states = {dep_id: state for dep_id, state, *_ in active_deployments(server.data_dir)}
    assert states[canary] == "progressing"
    server.start()
    check_way_forward(server)
    # The canary kept its step and its stored times; it can be driven over the API.
    dep = server.deployment(canary)
    assert (dep["state"], dep["step"], dep["traffic"]) == ("progressing", 0,
                                                           {"1.1.0": 10, "1.0.0": 90})
    assert dep["deadline_at"] is not None
    r = server.post(f"/api/deployments/{canary}/promote", {"reason": "after the crash"})
    assert r.status_code == 200 and r.json()["deployment"]["step"] == 1
    r = server.post(f"/api/deployments/{canary}/abort", {"reason": "after the crash"})
    assert r.status_code == 200 and r.json()["deployment"]["traffic"] == {"1.0.0": 100}
    assert server.predict("dep").json()["version"] == "1.0.0"
    # The direct one either finished or is advancing; a health check that was cut short is
    # retried when its stored lease runs out, and can be aborted meanwhile.
    dep = server.deployment(direct)
    print(f"\ndirect deployment killed in state {states.get(direct, 'finished')}; "
          f"after the restart: {dep['state']}")
    if dep["finished_at"] is None and dep["state"] == "health_check":
        r = server.post(f"/api/deployments/{direct}/abort", {"reason": "lease too long"})
        assert r.status_code == 200 and r.json()["deployment"]["state"] == "aborted"
    else:
        dep = server.wait_deployment(direct, lambda d: d["finished_at"] is not None)
        assert dep["state"] == "succeeded"
        assert server.predict("fast").status_code == 200


# -- (d) a snapshot restore ---------------------------------------------------------------------

def test_kill_right_after_a_snapshot_restore_is_sent(server):
    server.register_onnx("snap", "1.0.0")
    server.register_onnx("snap", "1.1.0")
    server.wait_deployment(server.deploy("snap", "1.0.0"), lambda d: d["state"] == "succeeded")
    snap = server.post("/api/snapshots", {"model": "snap"}).json()["snapshot"]["id"]
    server.wait_deployment(server.deploy("snap", "1.1.0"), lambda d: d["state"] == "succeeded")

    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("POST", f"/api/snapshots/{snap}/restore", body=json.dumps({}),
                 headers={"Content-Type": "application/json"})
    time.sleep(0.012)    # best effort: a restore takes ~20 ms here (health check, commit)
    server.sigkill()
    conn.close()

    check_consistent(server.data_dir)
    (weights,), = sql(server.data_dir, "SELECT weights FROM traffic WHERE model = 'snap'")
    restored = json.loads(weights) == {"1.0.0": 100}
    records = sql(server.data_dir, "SELECT count(*) FROM rollbacks WHERE trigger = 'snapshot' "
                                    "AND model = 'snap'")
    assert records[0][0] == (1 if restored else 0)       # all or nothing
    assert json.loads(weights) in ({"1.0.0": 100}, {"1.1.0": 100})
    print(f"\nsnapshot restore {'committed' if restored else 'not committed'} at the kill")
    server.start()
    check_way_forward(server)
    r = server.post(f"/api/snapshots/{snap}/restore", {})
    assert r.status_code == 200, r.text
    assert server.predict("snap").json()["version"] == "1.0.0"


# -- the metrics loss bound ---------------------------------------------------------------------

def test_predictions_older_than_the_flush_survive_a_kill(server):
    server.register_onnx("met", "1.0.0")
    server.wait_deployment(server.deploy("met", "1.0.0"), lambda d: d["state"] == "succeeded")
    session = requests.Session()
    early = sum(session.post(f"{server.url}/api/models/met/predict", json=INPUT,
                             timeout=10).status_code == 200 for _ in range(150))
    assert early == 150
    time.sleep(1.5)       # the documented bound: older than the last flush (every second)
    late = sum(session.post(f"{server.url}/api/models/met/predict", json=INPUT,
                            timeout=10).status_code == 200 for _ in range(50))
    session.close()
    server.sigkill()      # the last 50 may or may not have been flushed
    check_consistent(server.data_dir)
    server.start()
    metrics = server.get("/api/models/met/metrics").json()["versions"]["1.0.0"]
    print(f"\nafter the kill: {metrics['requests']} of {early} + {late} predictions counted")
    assert early <= metrics["requests"] <= early + late, metrics
    assert metrics["failures"] == 0
