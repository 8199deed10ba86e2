"""Shadow overhead (run by hand): ``python bench/bench_shadow.py [--seconds 6]`` (issue 19).

One gunicorn server (gthread) serves a Gemini version answered at once by the fake Gemini
server (in this process); 4 keep-alive clients send predictions. Phases alternate: without a
shadow, then with a shadow of ``--percent`` (default 10%) whose candidate (another Gemini
version of the fake server) takes 2 s per call. Reported:
the primary's p99 latency in each (client-measured, per request), their ratio (target ≤ 1.10),
and the share of requests mirrored or dropped during the shadow phases (target 10 ± 2%).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_http import start_server  # noqa: E402
from bench.report import print_rows  # noqa: E402
from tests.support import free_port  # noqa: E402
from tests.fake_gemini import FakeGemini  # noqa: E402


def request(port: int, method: str, path: str, body: dict | None = None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, json.dumps(body) if body is not None else None,
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    if response.status >= 400:
        raise RuntimeError(f"{method} {path}: {response.status} {data}")
    return data


def load(port: int, clients: int, seconds: float) -> list[float]:
    body = json.dumps({"input": "is this transaction fraudulent?"}).encode()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            started = time.perf_counter()
            conn.request("POST", "/api/models/bench/predict", body,
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                latencies[i].append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for per in latencies for x in per]


def main(seconds: float = 6.0, clients: int = 4, percent: float = 10.0) -> list:
    with FakeGemini() as fake, tempfile.TemporaryDirectory() as d:
        fake.set_behavior("slow-candidate", latency=2.0)
        # a small queue: the 10% sample outruns a 2 s candidate, so most mirrors are dropped
        # (and counted) instead of waiting minutes in the queue
        os.environ.update(GOOGLE_GEMINI_BASE_URL=fake.url, GEMINI_API_KEY="bench",
                          NO_PROXY="127.0.0.1,localhost", SHADOW_QUEUE_SIZE="8",
                          SHADOW_CONCURRENCY="2")
        data = Path(d)
        port = free_port()
        proc = start_server(data, port, 1, 8)
        try:
            request(port, "POST", "/api/models/register", {"name": "bench"})
            for version, status, name in (("1.0.0", "stable", "fast-primary"),
                                          ("2.0.0", "experimental", "slow-candidate")):
                request(port, "POST", "/api/models/bench/versions/register",
                        {"version": version, "status": status, "provider": "gemini",
                         "config": {"model": name}})
            load(port, clients, 1.0)                                       # warm up
            plain, shadowed, offered, reports = [], [], 0, []
            for _ in range(2):                  # alternate: both see the same machine state
                plain += load(port, clients, seconds / 2)
                started = request(port, "POST", "/api/models/bench/deploy", {
                    "version": "2.0.0", "strategy": "shadow", "sample_percent": percent,
                    "duration_s": 3600})["deployment"]["id"]
                time.sleep(1.2)                 # the mirror's refresher picks it up
                got = load(port, clients, seconds / 2)
                shadowed += got
                offered += len(got)
                request(port, "POST", f"/api/deployments/{started}/shadow/stop", {})
                time.sleep(11)                  # the queued mirrors (8 + 2 in flight) finish
                reports.append(request(port, "GET", f"/api/deployments/{started}/shadow"))
        finally:
            proc.terminate()
            proc.wait(10)
    p99_plain = float(np.quantile(plain, 0.99))
    p99_shadow = float(np.quantile(shadowed, 0.99))
    queued = sum(r["mirrored"] for r in reports)
    dropped = sum(r["dropped"] for r in reports)
    share = (queued + dropped) / max(1, offered)
    rows = [
        ("primary p99 without a shadow", f"{1000 * p99_plain:.2f} ms", ""),
        (f"primary p99 with a {percent:g}% shadow (2 s candidate)",
         f"{1000 * p99_shadow:.2f} ms", ""),
        ("p99 ratio shadow / none", f"{p99_shadow / p99_plain:.2f}x", "≤ 1.10x"),
        ("requests sampled (mirrored + dropped)", f"{100 * share:.1f}%", f"{percent:g} ± 2%"),
        ("mirrors completed / dropped", f"{queued} / {dropped}", ""),
    ]
    print("shadow errors:", [r["shadow_errors"] for r in reports],
          "shadow latency:", [r["latency"]["shadow"] for r in reports])
    print(f"gunicorn gthread, 1 worker x 8 threads; {clients} keep-alive clients; "
          f"{len(plain)} + {len(shadowed)} requests")
    return print_rows(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--percent", type=float, default=10.0)
    a = parser.parse_args()
    main(a.seconds, a.clients, a.percent)
