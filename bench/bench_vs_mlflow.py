"""This registry beside MLflow's (run by hand):
``python bench/bench_vs_mlflow.py [--rounds 2] [--workload requests|mlflow-client]``.

Installs ``mlflow==3.17.2`` once into a virtualenv of its own (``bench/.venv-mlflow``, ignored by
git; ``MLFLOW_VENV`` to put it elsewhere) and skips, saying why, when it cannot. Starts both
servers on loopback, one worker process each, each on a fresh SQLite file: this project under
gunicorn (gthread, 8 threads, ``api.app:create_app()``; ``--server granian`` serves the same app
with granian instead, to show the HTTP server's share of the cost), MLflow with ``mlflow server
--backend-store-uri sqlite:///... --workers 1`` (its GenAI job runner off: see ``start_mlflow``),
and waits until both are idle. Then 8 concurrent clients run the same workload against each,
alternating: each operation runs on one server then at once on the other, the order swapping
every round. Per round 50 models x 5 versions (100 x 5 over the two default rounds): create the
models, create their versions (each with a tag), ask each model's latest version 5 times, list
each model's versions 5 times. Two workloads (issue 17): plain ``requests`` on each server's own
API, and MLflow's own client (``MlflowClient``, ``bench/mlflow_client_workload.py``) against
``/api/2.0/mlflow`` on both. Prints ops/s per operation and server and the ratio (target >= 10x
each), and the server CPU time per operation read from /proc: on a machine shared with other
work, wall-clock rates move with the load, CPU per operation much less.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.report import print_rows  # noqa: E402
from bench.servers import SERVERS, cpu_seconds, server_command  # noqa: E402
from bench.mlflow_client_workload import ViaMlflowClient  # noqa: E402
from tests.support import free_port, wait_ready as wait_http_ready  # noqa: E402

MLFLOW = "mlflow==3.17.2"
VENV = Path(os.environ.get("MLFLOW_VENV", ROOT / "bench" / ".venv-mlflow"))
CLIENTS = 8
MODELS_PER_ROUND = 50
VERSIONS = 5
READS_PER_MODEL = 5
OPERATIONS = ("create model", "create version (with a tag)", "latest version of a model",
              "list a model's versions")


def mlflow_binary() -> Path:
    """The mlflow command of the benchmark's own virtualenv, installed on first use."""
    binary = VENV / "bin" / "mlflow"
    if binary.exists():
        return binary
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", MLFLOW], check=True)
    return binary


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    wait_http_ready(url, proc, timeout, log=lambda: log.read_text(errors="replace"))


def start_ours(data: Path, server: str = "gunicorn") -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = data / "ours.log"
    env = {**os.environ, "REGISTRY_DATA_DIR": str(data / "ours"), "AUTO_ROLLBACK": "off"}
    proc = subprocess.Popen(server_command(server, "api.app:create_app", port, factory=True),
                            cwd=ROOT, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/healthz", proc, log)
    return proc, url


def start_mlflow(binary: Path, data: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = data / "mlflow.log"
    (data / "mlflow-artifacts").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(binary), "server", "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
         "--default-artifact-root", str(data / "mlflow-artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=data, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        # Job execution (GenAI jobs, nothing of the registry's) would start seven huey
        # consumers: seconds of CPU each just after start, then polling for ever, which
        # slowed whichever server was measured meanwhile.
        env={**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "true",
             "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health", proc, log)
    return proc, url


def settle(pid: int, timeout: float = 60.0) -> None:
    """Wait until a started server's process tree is idle (under 5% of a core over a second),
    so that nothing still starting up is measured against the other server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.05:
            return


class Ours:
    def __init__(self, url: str) -> None:
        self.url = url

    def create_model(self, s: requests.Session, name: str) -> requests.Response:
        return s.post(f"{self.url}/api/models/register", json={"name": name})

    def create_version(self, s: requests.Session, name: str, i: int) -> requests.Response:
        return s.post(f"{self.url}/api/models/{name}/versions/register",
                      json={"version": f"1.0.{i}", "tags": {"run": str(i)}})

    def latest(self, s: requests.Session, name: str) -> requests.Response:
        return s.get(f"{self.url}/api/models/{name}/versions/latest")

    def list_versions(self, s: requests.Session, name: str) -> requests.Response:
        return s.get(f"{self.url}/api/models/{name}/versions")


class MLflow:
    def __init__(self, url: str) -> None:
        self.api = f"{url}/api/2.0/mlflow"

    def create_model(self, s: requests.Session, name: str) -> requests.Response:
        return s.post(f"{self.api}/registered-models/create", json={"name": name})

    def create_version(self, s: requests.Session, name: str, i: int) -> requests.Response:
        return s.post(f"{self.api}/model-versions/create",
                      json={"name": name, "source": f"s3://bench/{name}/{i}",
                            "tags": [{"key": "run", "value": str(i)}]})

    def latest(self, s: requests.Session, name: str) -> requests.Response:
        return s.post(f"{self.api}/registered-models/get-latest-versions", json={"name": name})

    def list_versions(self, s: requests.Session, name: str) -> requests.Response:
        return s.get(f"{self.api}/model-versions/search", params={"filter": f"name='{name}'"})


def timed(chunks: list[list[Callable[[requests.Session], requests.Response]]],
          sessions: list[requests.Session]) -> float:
    """Seconds to run each chunk of calls on its own client thread (keep-alive session)."""

    def work(c: int) -> None:
        for call in chunks[c]:
            response = call(sessions[c])
            if not response.ok:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(work, range(CLIENTS)))
    return time.perf_counter() - start


def phases(server, tag: str) -> dict[str, list[list[Callable]]]:
    """{operation: the calls of each client} of one round against one server."""
    names = [f"{tag}-{i}" for i in range(MODELS_PER_ROUND)]
    work = {
        OPERATIONS[0]: [lambda s, n=n: server.create_model(s, n) for n in names],
        OPERATIONS[1]: [lambda s, n=n, i=i: server.create_version(s, n, i)
                        for i in range(VERSIONS) for n in names],
        OPERATIONS[2]: [lambda s, n=n: server.latest(s, n)
                        for _ in range(READS_PER_MODEL) for n in names],
        OPERATIONS[3]: [lambda s, n=n: server.list_versions(s, n)
                        for _ in range(READS_PER_MODEL) for n in names],
    }
    # Call i goes to client i % CLIENTS, except versions: one model's stay on one client, in
    # ascending order.
    out = {op: [calls[c::CLIENTS] for c in range(CLIENTS)] for op, calls in work.items()}
    versions = work[OPERATIONS[1]]
    out[OPERATIONS[1]] = [[versions[i] for i in range(len(versions))
                           if (i % MODELS_PER_ROUND) % CLIENTS == c] for c in range(CLIENTS)]
    return out


WORKLOADS = ("requests", "mlflow-client")


def servers_for(workload: str, urls: dict[str, str]) -> dict[str, Any]:
    """The four operations against each server, spoken by ``workload``: plain ``requests`` on
    each server's own API, or MLflow's ``MlflowClient`` on both (``/api/2.0/mlflow``)."""
    if workload == "requests":
        return {"ours": Ours(urls["ours"]), "mlflow": MLflow(urls["mlflow"])}
    return {name: ViaMlflowClient(url) for name, url in urls.items()}


def run_workload(workload: str, urls: dict[str, str], pids: dict[str, int],
                 rounds: int) -> dict[str, dict[str, list[float]]]:
    """{server: {operation: [ops, wall seconds, server CPU seconds]}} over ``rounds``
    alternating rounds of one workload."""
    servers = servers_for(workload, urls)
    totals = {s: {op: [0, 0.0, 0.0] for op in OPERATIONS} for s in servers}
    for server in servers.values():  # warm up: imports, first connections
        one_round_small(server, f"warm-{uuid.uuid4().hex[:6]}")
    for r in range(rounds):
        work = {name: phases(server, f"{workload}-r{r}-{name}")
                for name, server in servers.items()}
        for op in OPERATIONS:  # the same operation on both, back to back
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                # Fresh connections per phase: the other server's phase outlasts gunicorn's
                # keep-alive, and a request racing the close of an idle one is reset.
                sessions = [requests.Session() for _ in range(CLIENTS)]
                cpu = cpu_seconds(pids[name])
                secs = timed(work[name][op], sessions)
                totals[name][op][0] += sum(map(len, work[name][op]))
                totals[name][op][1] += secs
                totals[name][op][2] += cpu_seconds(pids[name]) - cpu
    return totals


def report(workload: str, totals: dict[str, dict[str, list[float]]],
           server: str = "gunicorn") -> list[tuple[str, str, str]]:
    rows = []
    for op in OPERATIONS:
        (n_ours, wall_ours, cpu_ours), (n_ml, wall_ml, cpu_ml) = totals["ours"][op], \
            totals["mlflow"][op]
        ours, theirs = n_ours / wall_ours, n_ml / wall_ml
        rows.append((f"[{workload}] {op}: MLflow 3.17.2", f"{theirs:.0f}/s",
                     f"server CPU {1000 * cpu_ml / n_ml:.1f} ms/op"))
        ours_name = "this project" + ("" if server == "gunicorn" else f" ({server})")
        rows.append((f"[{workload}] {op}: {ours_name}", f"{ours:.0f}/s",
                     f"{ours / theirs:.1f}x MLflow (target ≥ 10x); server CPU "
                     f"{1000 * cpu_ours / n_ours:.1f} ms/op, "
                     f"{(cpu_ml / n_ml) / max(cpu_ours / n_ours, 1e-9):.1f}x less"))
    return rows


def main(rounds: int = 2, workloads: tuple[str, ...] = WORKLOADS,
         server: str = "gunicorn") -> list[tuple[str, str, str]]:
    try:
        binary = mlflow_binary()
    except (OSError, subprocess.CalledProcessError) as exc:
        reason = f"skipped: cannot install {MLFLOW} into {VENV}: {exc}"
        print(reason)
        return [("registry vs MLflow", reason, "≥ 10x")]
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as d:
        data = Path(d)
        procs = []
        try:
            ours_proc, ours_url = start_ours(data, server)
            procs.append(ours_proc)
            ml_proc, ml_url = start_mlflow(binary, data)
            procs.append(ml_proc)
            urls = {"ours": ours_url, "mlflow": ml_url}
            pids = {"ours": ours_proc.pid, "mlflow": ml_proc.pid}
            for pid in pids.values():
                settle(pid)
            results = {w: run_workload(w, urls, pids, rounds) for w in workloads}
        finally:
            for proc in procs:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"{CLIENTS} concurrent clients, {rounds} alternating rounds of {MODELS_PER_ROUND} "
          f"models x {VERSIONS} versions per workload; one worker process per server (ours "
          f"under {server}); "
          f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    for workload, totals in results.items():
        rows += report(workload, totals, server)
    return print_rows(rows)


def one_round_small(server, tag: str) -> None:
    s = requests.Session()
    for i in range(3):
        server.create_model(s, f"{tag}-{i}").raise_for_status()
        server.create_version(s, f"{tag}-{i}", 0).raise_for_status()
        server.latest(s, f"{tag}-{i}").raise_for_status()
        server.list_versions(s, f"{tag}-{i}").raise_for_status()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workload", choices=WORKLOADS, action="append",
                        help="run only this workload (repeatable); default: both")
    parser.add_argument("--server", choices=SERVERS, default="gunicorn",
                        help="serve this project with gunicorn (the shipped configuration, "
                             "default) or granian (measured, not shipped)")
    args = parser.parse_args()
    main(args.rounds, tuple(args.workload or WORKLOADS), args.server)
