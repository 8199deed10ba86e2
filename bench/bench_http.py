"""HTTP predict throughput (run by hand): ``python bench/bench_http.py [--seconds 5]``.

One gunicorn server (the shipped worker) serves both ``POST /api/models/{m}/predict`` (the
gateway: routing, validation, tracking) and a bare Flask endpoint calling the same loaded ONNX
session (``bench/http_app.py``). Client threads in this process send keep-alive requests to
each in turn, for the same time, in 5 alternating runs; the ratio is the median over the runs of
gateway / bare. Target ≥ 0.9x (issue 14). Beside the rates it prints the server's CPU time per
request on each route (from /proc), which moves far less from run to run on a shared machine.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import print_rows  # noqa: E402
from bench.servers import SERVERS, cpu_seconds, server_command  # noqa: E402
from tests.support import free_port, wait_ready  # noqa: E402


def start_server(data_dir: Path, port: int, workers: int, threads: int,
                 server: str = "gunicorn") -> subprocess.Popen:
    """``server``: see ``bench/servers.py``."""
    env = {**os.environ, "REGISTRY_DATA_DIR": str(data_dir), "AUTO_ROLLBACK": "off"}
    command = server_command(server, "bench.http_app:build", port, factory=True,
                             workers=workers, threads=threads)
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    wait_ready(f"http://127.0.0.1:{port}/healthz", proc, 30)
    return proc


def prepare(data: Path, model: str, versions: list[str], status: str = "experimental") -> None:
    """Register ONNX versions with an artifact in a data dir, in a separate process (the server
    then opens the same SQLite file)."""
    subprocess.run([sys.executable, "-c", (
        "from wiring import build_services; from config import Settings;"
        "from models.onnx_examples import linear_model; from pathlib import Path;"
        f"s = build_services(Settings.from_env({{'data_dir': Path({str(data)!r})}}));"
        f"s.registry.register_model({model!r});"
        "dg, n = s.artifacts.put_bytes(linear_model());"
        f"[(s.registry.register_version({model!r}, v, {status!r}, provider='onnx'),"
        f"  s.registry.attach_artifact({model!r}, v, dg, n)) for v in {versions!r}];"
        "s.close()")], cwd=ROOT, check=True, env={**os.environ, "REGISTRY_DATA_DIR": str(data)})


def call(conn: http.client.HTTPConnection, path: str, body: bytes,
         headers: dict[str, str] | None = None) -> int:
    conn.request("POST", path, body,
                 {"Content-Type": "application/json"} if headers is None else headers)
    response = conn.getresponse()
    response.read()
    return response.status


def throughput(port: int, path: str, body: bytes, clients: int, seconds: float,
               headers: dict[str, str] | None = None) -> tuple[float, int]:
    """(requests answered 200 per second, requests answered otherwise)."""
    done, failed = [0] * clients, [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            if call(conn, path, body, headers) == 200:
                done[i] += 1
            else:
                failed[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started), sum(failed)


def main(seconds: float = 5.0, clients: int = 8, workers: int = 1,
         threads: int = 8, server: str = "gunicorn") -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as d:
        data = Path(d)
        prepare(data, "bench", ["1.0.0"], status="stable")
        port = free_port()
        proc = start_server(data, port, workers, threads, server)
        try:
            body = json.dumps({"input": [[0.1, 0.2, 0.3, 0.4]]}).encode()
            routes = {"bare": "/bare/bench/1.0.0", "gateway": "/api/models/bench/predict"}
            for path in routes.values():  # warm up: load the model in every worker
                throughput(port, path, body, clients, 1.0)
            results: dict[str, list[tuple[float, int]]] = {name: [] for name in routes}
            cpu = {name: [0.0, 0.0] for name in routes}   # server CPU seconds, requests
            for run in range(5):  # alternate, so both see the same machine state
                order = list(routes) if run % 2 == 0 else list(reversed(routes))
                for name in order:
                    before, started = cpu_seconds(proc.pid), time.monotonic()
                    rate, failed = throughput(port, routes[name], body, clients, seconds / 2)
                    cpu[name][0] += cpu_seconds(proc.pid) - before
                    cpu[name][1] += (rate * (time.monotonic() - started)) + failed
                    results[name].append((rate, failed))
        finally:
            proc.terminate()
            proc.wait(10)
    rate = {name: sum(r for r, _ in runs) / len(runs) for name, runs in results.items()}
    ratios = sorted(g / b for (g, _), (b, _) in zip(results["gateway"], results["bare"]))
    failed = {name: sum(f for _, f in runs) for name, runs in results.items()}
    per_request = {name: 1e6 * seconds_ / max(count, 1) for name, (seconds_, count) in cpu.items()}
    rows = [
        ("HTTP predict, bare Flask + same ONNX session", f"{rate['bare']:.0f} req/s",
         f"server CPU {per_request['bare']:.0f} µs/request"),
        ("HTTP predict through the gateway", f"{rate['gateway']:.0f} req/s",
         f"server CPU {per_request['gateway']:.0f} µs/request"),
        ("gateway / bare throughput, median of 5 runs", f"{ratios[2]:.2f}x",
         f"≥ 0.9x (runs: {', '.join(f'{r:.2f}' for r in ratios)}); "
         f"bare / gateway server CPU per request: "
         f"{per_request['bare'] / max(per_request['gateway'], 1e-9):.2f}x"),
    ]
    print(f"{server}, {workers} worker(s) x {threads} threads; {clients} keep-alive "
          f"clients; failed: {failed}")
    return print_rows(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--server", choices=SERVERS, default="gunicorn")
    a = parser.parse_args()
    main(a.seconds, a.clients, a.workers, a.threads, a.server)
