"""Dashboard benchmark (run by hand): ``python bench/bench_dashboard.py [--models 1000]``.

Builds a registry of 1,000 models and 10,000 versions (bulk inserts for the setup), with
traffic tables, rollouts in progress and finished, alerts, rollbacks, snapshots and an hour of
metrics for the model shown; then measures, with Flask's test client (server time, no
network), every dashboard page and every API call each page makes when it loads: the median of
``--repeat`` calls each, in wall time and in CPU time (on a shared machine the wall time also
counts waiting for a core), with the number of SQL statements per call. Target: ≤ 100 ms each.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, insert, select  # noqa: E402

from api.app import create_app  # noqa: E402
from api.services import EXTENSION_KEY  # noqa: E402
from wiring import Services  # noqa: E402
from deployment.deployment_store import Deployment, new_id  # noqa: E402
from registry.version_manager import precedence_key  # noqa: E402
from storage.schema import model_versions, models, utcnow  # noqa: E402

TARGET_MS = 100.0
SHOWN = "model-0007"          # the model whose page is measured (canary in progress, metrics)


def build(svc: Services, n_models: int, per_model: int) -> dict[str, str]:
    """The registry the pages are measured on; returns ids the measured calls need."""
    db = svc.database
    now = utcnow()
    names = [f"model-{i:04d}" for i in range(n_models)]
    versions = [f"1.{i // 10}.{i % 10}" for i in range(per_model)]
    with db.transaction() as conn:
        conn.execute(insert(models), [dict(name=n, description=f"benchmark model {n}",
                                           metadata={}, created_at=now, updated_at=now)
                                      for n in names])
        ids = dict(conn.execute(select(models.c.name, models.c.id)).all())
        rows = []
        for name in names:
            for j, v in enumerate(versions):
                major, minor, patch = (int(p) for p in v.split("."))
                rows.append(dict(model_id=ids[name], version=v, precedence=precedence_key(v),
                                 major=major, minor=minor, patch=patch,
                                 status="stable" if j % 3 == 0 else "experimental",
                                 provider="onnx", config={}, artifact_digest="ab" * 32,
                                 artifact_size=4096 + j, description="", tags={},
                                 metadata={}, created_at=now, updated_at=now))
        conn.execute(insert(model_versions), rows)

    store = svc.deployments.store
    old, new = versions[-2], versions[-1]
    shown_dep = ""
    with db.transaction() as conn:
        for i, name in enumerate(names[: n_models // 2]):   # half the models are deployed
            canary = i % 10 == 7                             # one in ten has a canary running
            weights = {old: 90, new: 10} if canary else {old: 100}
            svc.traffic.set(conn, name, weights, old, actor="bench", reason="setup")
            finished = _deployment(name, old, None, "succeeded", now - timedelta(hours=1))
            store.insert(conn, finished)
            if canary:
                dep = _deployment(name, new, old, "progressing", now, step=0, traffic=weights)
                store.insert(conn, dep)
                shown_dep = dep.id if name == SHOWN else shown_dep
            if i % 10 == 3:
                store.insert_rollback(conn, model=name, from_version=new, to_version=old,
                                      trigger="automatic", reason="error rate 0.2 > 0.05",
                                      evidence={"error_rate": 0.2}, actor="system",
                                      deployment_id=None, now=now)
    for i, name in enumerate(names[:200:2]):                 # 100 active alerts
        svc.alerts.raise_alert(name, old, "high_error_rate", 0.2, 0.05, "errors",
                               "critical" if i % 4 == 0 else "warning")
    for name in names[:50]:
        svc.snapshots.create(name, automatic=True, reason="before deployment")
    svc.snapshots.create(None, reason="every model")          # one snapshot of all 1,000
    start = time.time() - 3600                                # an hour of predictions
    for k in range(20_000):
        svc.tracker.track_prediction(SHOWN, new if k % 10 == 0 else old, 0.01 + (k % 7) / 1000,
                                     success=k % 50 != 0, at=start + k * 3600 / 20_000)
    svc.tracker.flush()
    return {"deployment": shown_dep}


def _deployment(model: str, version: str, previous: str | None, state: str, at: Any,
                step: int | None = None, traffic: dict[str, int] | None = None) -> Deployment:
    final = state != "progressing"
    return Deployment(
        id=new_id("dep"), model=model, version=version, previous_version=previous,
        strategy="canary" if previous else "direct", state=state, step=step if not final else 0,
        steps=[10, 50, 100] if previous else [100], traffic=traffic or {version: 100},
        analysis={"min_requests": 20, "interval_s": 30.0, "max_error_rate": 0.05,
                  "max_p95_latency": None, "max_p95_ratio": 1.5, "p95_tolerance_s": 0.025,
                  "deadline_s": 3600.0} if previous else None,
        verdicts=[], reason="bench", actor="bench", revision=1, step_started_at=at,
        next_check_at=None if final else at + timedelta(days=1),
        deadline_at=None if final else at + timedelta(days=1), created_at=at, updated_at=at,
        finished_at=at if final else None)


def calls(client: Any, ids: dict[str, str]) -> list[tuple[str, str]]:
    """(page, URL) of every page and of every API call it makes when it loads."""
    page10 = None
    token = None
    for _ in range(10):    # the token of the models page 11 (a deep page)
        token = client.get("/api/overview", query_string={"limit": 50,
                                                          "page_token": token}).json[
            "next_page_token"]
    page10 = token
    m = f"/api/models/{SHOWN}"
    return [
        ("models", "/ui/"),
        ("models", "/api/overview?limit=50"),
        ("models", f"/api/overview?limit=50&page_token={page10}"),
        ("models", "/api/overview?limit=50&q=model-00"),
        ("model", f"/ui/models/{SHOWN}"),
        ("model", m),
        ("model", f"{m}/versions?limit=25"),
        ("model", f"{m}/traffic"),
        ("model", f"/api/deployments?model={SHOWN}&limit=5"),
        ("model", f"/api/deployments/{ids['deployment']}"),
        ("model", f"{m}/metrics/series?window=15m&step=10s"),
        ("model", f"{m}/metrics/series?window=1h&step=1m"),
        ("model", f"{m}/metrics/series?window=24h&step=30m"),
        ("model", f"/api/alerts?model={SHOWN}&active=true&limit=20"),
        ("deployments", "/ui/deployments"),
        ("deployments", "/api/deployments?limit=25"),
        ("rollbacks", "/ui/rollbacks"),
        ("rollbacks", "/api/rollbacks?limit=25"),
        ("alerts", "/ui/alerts"),
        ("alerts", "/api/alerts?active=true&limit=25"),
        ("snapshots", "/ui/snapshots"),
        ("snapshots", "/api/snapshots?limit=25"),
    ]


class StatementCounter:
    """Counts the SQL statements the server runs (a load-independent measure of the work)."""

    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


def measure(client: Any, url: str, repeat: int,
            counter: StatementCounter) -> tuple[float, float, int, int, int]:
    """Median wall time and median CPU time (ms) of ``repeat`` calls, with the status, the
    body size and the SQL statements of one call. On a busy machine the wall time includes
    waiting for a core; the CPU time does not."""
    wall, cpu = [], []
    status = size = statements = 0
    for _ in range(repeat):
        before = counter.count
        t, c = time.perf_counter(), time.thread_time()
        r = client.get(url)
        cpu.append((time.thread_time() - c) * 1000)
        wall.append((time.perf_counter() - t) * 1000)
        status, size, statements = r.status_code, len(r.data), counter.count - before
    return statistics.median(wall), statistics.median(cpu), status, size, statements


def main(models: int = 1000, versions_per_model: int = 10,
         repeat: int = 30) -> list[tuple[str, str, str]]:
    args = argparse.Namespace(models=models, versions_per_model=versions_per_model,
                              repeat=repeat)
    with tempfile.TemporaryDirectory() as d:
        app = create_app({"TESTING": True, "TICKER": False, "data_dir": Path(d)})
        svc = app.extensions[EXTENSION_KEY]
        t = time.perf_counter()
        ids = build(svc, args.models, args.versions_per_model)
        print(f"setup: {args.models} models, {args.models * args.versions_per_model} versions "
              f"in {time.perf_counter() - t:.1f} s; median of {args.repeat} calls each "
              f"(Flask test client, server time)\n")
        client = app.test_client()
        counter = StatementCounter(svc.database.engine)
        rows = []
        for page, url in calls(client, ids):
            client.get(url)   # warm
            rows.append((page, url, *measure(client, url, args.repeat, counter)))
        svc.close()
    width = max(len(r[1]) for r in rows)
    print(f"{'page':<12} {'request'.ljust(width)}  {'wall':>9}  {'cpu':>9}  sql  status  "
          f"{'bytes':>7}  target ≤ {TARGET_MS:.0f} ms")
    for page, url, wall, cpu, status, size, statements in rows:
        verdict = "ERROR" if status != 200 else "ok" if wall <= TARGET_MS else \
            "ok (cpu)" if cpu <= TARGET_MS else "SLOW"
        print(f"{page:<12} {url.ljust(width)}  {wall:7.2f}ms  {cpu:7.2f}ms  {statements:>3}  "
              f"{status:>6}  {size:>7}  {verdict}")
    worst = max(rows, key=lambda r: r[2])
    print(f"\nslowest: {worst[1]}: {worst[2]:.2f} ms wall, {worst[3]:.2f} ms cpu; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    pages = [r for r in rows if r[1].startswith("/ui")]
    api = [r for r in rows if not r[1].startswith("/ui")]
    return [(f"dashboard pages, {models:,} models / {models * versions_per_model:,} versions "
             "(slowest)", f"{max(r[2] for r in pages):.1f} ms", "≤ 100 ms"),
            ("API calls the pages make (slowest: " + worst[1].split("?")[0] + ")",
             f"{max(r[2] for r in api):.1f} ms", "≤ 100 ms")]


if __name__ == "__main__":
    os.environ.setdefault("REGISTRY_DATA_DIR", tempfile.mkdtemp())
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions-per-model", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=30)
    a = parser.parse_args()
    main(a.models, a.versions_per_model, a.repeat)
