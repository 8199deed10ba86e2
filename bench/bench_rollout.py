"""Rollout reaction time (run by hand): ``python bench/bench_rollout.py [--trials 5]``.

A gunicorn server with several worker processes; clients keep predicting over many keep-alive
connections (spread over the workers) while the traffic table is switched between two versions
with ``POST /rollback`` on one connection. Measured: from the switch's answer (committed) to the
last answer still served by the old version, in any worker. Target ≤ 1 s.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_http import prepare, start_server  # noqa: E402
from bench.report import print_rows  # noqa: E402
from tests.support import free_port  # noqa: E402


def post(conn: http.client.HTTPConnection, path: str, body: dict) -> dict:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    if response.status >= 300:
        raise RuntimeError(f"{path}: {response.status} {data}")
    return data


def main(trials: int = 5, workers: int = 3, clients: int = 6) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as d:
        data = Path(d)
        prepare(data, "m", ["1.0.0", "1.1.0"])
        port = free_port()
        proc = start_server(data, port, workers, 4)
        try:
            control = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for version in ("1.0.0", "1.1.0"):
                post(control, "/api/models/m/deploy", {"version": version})
                while True:  # switched on the answer; every worker sees it within ~1 s
                    time.sleep(0.2)
                    try:
                        if post(control, "/api/models/m/predict",
                                {"input": [[1, 2, 3, 4]]})["version"] == version:
                            break
                    except RuntimeError:  # 503 until the first deployment switches
                        pass
            answers: list[tuple[float, str]] = []
            stop = threading.Event()

            def client() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                while not stop.is_set():
                    version = post(conn, "/api/models/m/predict",
                                   {"input": [[1, 2, 3, 4]]})["version"]
                    answers.append((time.monotonic(), version))

            threads = [threading.Thread(target=client) for _ in range(clients)]
            for t in threads:
                t.start()
            lags = []
            current = "1.1.0"
            for _ in range(trials):
                time.sleep(0.7)
                target = "1.0.0" if current == "1.1.0" else "1.1.0"
                post(control, "/api/models/m/rollback", {"version": target})
                switched = time.monotonic()
                time.sleep(1.5)
                stale = [at for at, version in list(answers) if at > switched and version == current]
                lags.append(max(stale) - switched if stale else 0.0)
                current = target
            stop.set()
            for t in threads:
                t.join()
        finally:
            proc.terminate()
            proc.wait(10)
    rows = [(f"traffic change seen by all {workers} workers (max of {trials})",
             f"{max(lags) * 1000:.0f} ms", "≤ 1000 ms"),
            ("  median over the switches", f"{statistics.median(lags) * 1000:.0f} ms", "")]
    return print_rows(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--workers", type=int, default=3)
    a = parser.parse_args()
    main(a.trials, a.workers)
