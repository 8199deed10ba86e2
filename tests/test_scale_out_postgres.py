"""Scale-out on PostgreSQL, end to end: two gunicorn servers (``-c gunicorn.conf.py``, two
workers each) on one fresh PostgreSQL database, started together.

What it shows (the figures are printed; run with ``-s`` to see them):

* the four workers migrate the empty database at once and all come up (advisory lock);
* a rollout started on server A is served by every worker of server B within one second;
* a canary driven by the four workers' tickers, under load on both servers, applies each step
  exactly once (events and traffic history) and fails no request;
* N predictions spread over the four workers are counted exactly N by ``get_metrics`` on
  either server, and each server's ``/metrics`` counter (the sum over its workers' files)
  equals what that server served.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support import LATENCY_TOLERANT, PG_URL, ProductionServer
from models.onnx_examples import linear_model

pytestmark = [pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL is not set"),
              pytest.mark.slow]   # two gunicorn servers on PostgreSQL

INPUT = {"input": [[1.0, 2.0, 3.0, 4.0]]}
CLOSE = {"Connection": "close"}   # a new connection per request: spread over the workers
_ENV_DROP = ("REGISTRY_ADMIN_TOKEN", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL",
             "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@pytest.fixture
def pg_database() -> str:
    """A fresh PostgreSQL database (not only a schema: the advisory lock of the migrations
    and every table start from nothing), dropped afterwards."""
    name = f"scale_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Gunicorn(ProductionServer):
    """``gunicorn -c gunicorn.conf.py 'api.app:create_app()'`` with two workers."""

    def __init__(self, name: str, base: Path, database_url: str, artifact_root: Path) -> None:
        super().__init__(base, name, {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "8",
                                      "DATABASE_URL": database_url,
                                      "ARTIFACT_ROOT": str(artifact_root)}, drop=_ENV_DROP)

    # -- helpers ----------------------------------------------------------------------------------
    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.url + path, timeout=10, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kw)

    def predict(self, model: str) -> requests.Response:
        return requests.post(f"{self.url}/api/models/{model}/predict", json=INPUT,
                             headers=CLOSE, timeout=10)

    def prometheus_predictions(self, model: str) -> int:
        """``registry_predictions_total`` of ``model`` in this server's ``/metrics``."""
        body = self.get("/metrics").text
        total = 0.0
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == "registry_predictions_total" \
                        and sample.labels.get("model") == model:
                    total += sample.value
        return int(total)

    def per_worker_predictions(self, model: str) -> dict[int, int]:
        """The same counter read from each worker's own file (``counter_<pid>.db``)."""
        out: dict[int, int] = {}
        for path in sorted(self.prom_dir.glob("counter_*.db")):
            pid = int(path.stem.split("_")[1])
            for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
                for sample in metric.samples:
                    if sample.name == "registry_predictions_total" \
                            and sample.labels.get("model") == model:
                        out[pid] = out.get(pid, 0) + int(sample.value)
        return out


def register_onnx(server: Gunicorn, model: str, versions: list[str]) -> None:
    assert server.post("/api/models/register", json={"name": model}).status_code == 201
    data = linear_model()
    for version in versions:
        r = server.post(f"/api/models/{model}/versions/register",
                        json={"version": version, "provider": "onnx"})
        assert r.status_code == 201, r.text
        r = requests.put(f"{server.url}/api/models/{model}/versions/{version}/artifact",
                         data=data, headers={"Content-Type": "application/octet-stream"},
                         timeout=10)
        assert r.status_code == 201, r.text


def deploy(server: Gunicorn, model: str, version: str, **body) -> str:
    r = server.post(f"/api/models/{model}/deploy", json={"version": version, **body})
    assert r.status_code in (201, 202), r.text   # 201: switched; 202: a canary's first step
    return r.json()["deployment"]["id"]


def wait_finished(server: Gunicorn, deployment_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = server.get(f"/api/deployments/{deployment_id}").json()["deployment"]
        if dep["finished_at"] is not None:
            return dep
        time.sleep(0.05)
    raise AssertionError(f"deployment {deployment_id} did not finish: {dep}")


def epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


class Load:
    """Threads sending predictions to some servers until stopped; every answer is kept."""

    def __init__(self, servers: list[Gunicorn], model: str, threads_per_server: int = 3) -> None:
        self.model = model
        self.results: list[tuple[str, float, float, int, str | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(s,), daemon=True)
                         for s in servers for _ in range(threads_per_server)]

    def _run(self, server: Gunicorn) -> None:
        while not self._stop.is_set():
            sent = time.time()
            try:
                r = server.predict(self.model)
                status, version = r.status_code, r.json().get("version")
            except requests.RequestException as exc:
                status, version = -1, type(exc).__name__
            with self._lock:
                self.results.append((server.name, sent, time.time(), status, version))

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def test_two_gunicorn_servers_share_one_postgres_database(pg_database, tmp_path):
    artifacts = tmp_path / "shared-artifacts"
    a = Gunicorn("a", tmp_path, pg_database, artifacts)
    b = Gunicorn("b", tmp_path, pg_database, artifacts)
    try:
        # -- both servers start at the same moment: four workers migrate an empty database --
        started = time.monotonic()
        a.start()
        b.start()
        a.wait_ready()
        b.wait_ready()
        print(f"\nboth servers ready (4 workers) in {time.monotonic() - started:.1f} s")
        engine = create_engine(pg_database)
        with engine.connect() as conn:
            heads = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        engine.dispose()
        assert len(heads) == 1, heads
        for server in (a, b):
            assert "Worker failed to boot" not in server.log()
            assert "Traceback" not in server.log(), server.log()[-3000:]

        # -- a rollout started on A is served by B within one second -------------------------
        register_onnx(a, "scale", ["1.0.0", "1.1.0", "1.2.0"])
        wait_finished(a, deploy(a, "scale", "1.0.0"))   # first deployment: direct
        deadline = time.monotonic() + 5
        while b.predict("scale").json().get("version") != "1.0.0":
            assert time.monotonic() < deadline, "B never served the first deployment"
            time.sleep(0.05)
        with Load([b], "scale", threads_per_server=4) as poll:
            time.sleep(0.3)
            dep = wait_finished(a, deploy(a, "scale", "1.1.0"))
            assert dep["state"] == "succeeded", dep
            table = a.get("/api/models/scale/traffic").json()["traffic"]
            assert table["weights"] == {"1.1.0": 100}
            changed = epoch(table["updated_at"])
            while time.time() < changed + 2.0:
                time.sleep(0.05)
        assert all(status == 200 for _, _, _, status, _ in poll.results), \
            Counter((s, v) for _, _, _, s, v in poll.results)
        old = [recv for _, _, recv, _, v in poll.results if v == "1.0.0" and recv > changed]
        new = [recv for _, _, recv, _, v in poll.results if v == "1.1.0"]
        late = [recv for _, sent, recv, _, v in poll.results
                if v == "1.0.0" and sent > changed + 1.0]
        propagation = max(old, default=changed) - changed
        print(f"traffic change on A seen by every worker of B after <= {propagation:.3f} s "
              f"(first 1.1.0 answer from B after {min(new) - changed:.3f} s; "
              f"{len(poll.results)} polls of B)")
        assert not late, f"B still served 1.0.0 more than 1 s after the change: {late}"
        assert propagation < 1.0

        # -- a canary driven by four racing tickers, under load on both servers --------------
        analysis = {"min_requests": 5, "interval_s": 1.0, "deadline_s": 30.0,
                    "max_error_rate": 0.05, **LATENCY_TOLERANT}
        with Load([a, b], "scale", threads_per_server=3) as load:
            time.sleep(0.3)
            canary_id = deploy(a, "scale", "1.2.0", strategy="canary", steps=[10, 50, 100],
                               analysis=analysis)
            canary = wait_finished(a, canary_id, timeout=30)
            time.sleep(0.3)
        statuses = Counter(status for _, _, _, status, _ in load.results)
        by_server = Counter(name for name, *_ in load.results)
        took = epoch(canary["finished_at"]) - epoch(canary["created_at"])
        print(f"canary {canary['state']} in {took:.1f} s "
              f"under {len(load.results)} predictions (A {by_server['a']}, B {by_server['b']}): "
              f"statuses {dict(statuses)}")
        assert canary["state"] == "succeeded", canary
        assert set(statuses) == {200}, statuses
        timeline = b.get(f"/api/deployments/{canary_id}").json()["deployment"]["events"]
        kinds = Counter(e["kind"] for e in timeline)
        steps = Counter(e["detail"]["step"] for e in timeline if e["kind"] == "deployment.step")
        assert steps == {0: 1, 1: 1, 2: 1}, timeline
        assert kinds["deployment.health_check"] == 1, kinds
        assert kinds["deployment.succeeded"] == 1, kinds
        assert kinds["traffic.changed"] == 3, kinds
        engine = create_engine(pg_database)
        with engine.connect() as conn:
            history = conn.execute(text(
                "SELECT weights FROM traffic_history WHERE deployment_id = :d ORDER BY revision"),
                {"d": canary_id}).scalars().all()
        engine.dispose()
        assert history == [{"1.2.0": 10, "1.1.0": 90}, {"1.2.0": 50, "1.1.0": 50},
                           {"1.2.0": 100}], history
        print(f"canary events: {dict(kinds)}; traffic history: {history}")

        # -- N predictions over four workers add up, in get_metrics and in /metrics -----------
        register_onnx(a, "count", ["1.0.0"])
        wait_finished(a, deploy(a, "count", "1.0.0"))
        time.sleep(1.1)   # every worker's router has revalidated the new table
        n_per_server = 200
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda s: (s.name, s.predict("count").status_code),
                                    [a, b] * n_per_server))
        served = Counter(name for name, status in answers if status == 200)
        assert served == {"a": n_per_server, "b": n_per_server}, Counter(answers)
        n = 2 * n_per_server
        time.sleep(1.6)   # every worker flushes at least once a second
        for server in (a, b):
            metrics = server.get("/api/models/count/metrics").json()["versions"]["1.0.0"]
            assert metrics["requests"] == n and metrics["successes"] == n, metrics
        per_worker = {s.name: s.per_worker_predictions("count") for s in (a, b)}
        exposed = {s.name: s.prometheus_predictions("count") for s in (a, b)}
        print(f"{n} predictions: get_metrics = {n} on both servers; /metrics A = {exposed['a']}"
              f" {per_worker['a']}, B = {exposed['b']} {per_worker['b']} (per worker pid)")
        for server in (a, b):
            assert exposed[server.name] == served[server.name]
            assert sum(per_worker[server.name].values()) == served[server.name]
            assert len([c for c in per_worker[server.name].values() if c]) == 2, per_worker
    finally:
        codes = {s.name: s.stop() for s in (a, b)}
    assert codes == {"a": 0, "b": 0}, codes
    for server in (a, b):
        assert "Traceback" not in server.log(), server.log()[-3000:]
