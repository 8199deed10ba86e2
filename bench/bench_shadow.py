"""Shadow overhead (run by hand): ``python bench/bench_shadow.py [--rounds 8 --seconds 4]``
(issue 19).

One gunicorn server (gthread) serves a Gemini version answered at once by the fake Gemini
server (in a process of its own); 4 keep-alive clients send predictions. Each round has a phase
without a shadow and one with a shadow of ``--percent`` (default 10%) whose candidate
(another Gemini version of the fake server) takes 2 s per call, in alternating order; after a
shadow phase the stopped shadow's queued mirrors finish before anything else runs. Reported:
the median over rounds of the primary's p99 ratio with / without (client-measured, per
request; target ≤ 1.10) with its spread, and the share of requests mirrored or dropped during
the shadow phases (target 10 ± 2%). On a shared machine the spread says how much the load
moved during the run; the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

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


def p99(values: list[float]) -> float:
    return float(np.quantile(values, 0.99))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def server_cpu(proc: "psutil.Process") -> float:
    """CPU seconds (user + system) used so far by the server: master and workers."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def drain(port: int, shadow_id: str, timeout: float = 30.0) -> dict:
    """Wait until the stopped shadow's queued mirrors are done (its report stops growing for
    2.5 s), so the next phase without a shadow carries no mirror work."""
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    while True:
        report = request(port, "GET", f"/api/deployments/{shadow_id}/shadow")
        if report["mirrored"] != last:
            last, still_since = report["mirrored"], time.monotonic()
        elif time.monotonic() - still_since >= 2.5 or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def _serve_fake(urls: "multiprocessing.Queue[str]") -> None:
    """The fake Gemini server in a process of its own: the clients' process then measures
    latency without sharing its interpreter lock with the fake's 200 answers a second."""
    with FakeGemini() as fake:
        fake.set_behavior("slow-candidate", latency=2.0)
        urls.put(fake.url)
        threading.Event().wait()


def fake_gemini() -> tuple[str, "multiprocessing.Process"]:
    ctx = multiprocessing.get_context("spawn")
    urls = ctx.Queue()
    process = ctx.Process(target=_serve_fake, args=(urls,), daemon=True)
    process.start()
    return urls.get(timeout=60), process


def main(seconds: float = 4.0, clients: int = 4, percent: float = 10.0, rounds: int = 8) -> list:
    """``rounds`` rounds, each a phase without and a phase with the shadow (``seconds`` each),
    the order alternating round by round (ABBA...), so that drifts in the machine's load hit
    both conditions alike. Each round gives one p99 ratio from two adjacent phases; the
    median of those ratios is the figure, their spread how far to trust it."""
    fake_url, fake_process = fake_gemini()
    with tempfile.TemporaryDirectory() as d:
        # a small queue: the 10% sample outruns a 2 s candidate, so most mirrors are dropped
        # (and counted) instead of waiting minutes in the queue
        os.environ.update(GOOGLE_GEMINI_BASE_URL=fake_url, GEMINI_API_KEY="bench",
                          NO_PROXY="127.0.0.1,localhost", SHADOW_QUEUE_SIZE="8",
                          SHADOW_CONCURRENCY="2")
        data = Path(d)
        port = free_port()
        load_before = load_average()
        proc = start_server(data, port, 1, 8)
        server = psutil.Process(proc.pid)
        plain_all: list[float] = []
        shadow_all: list[float] = []
        ratios: list[float] = []
        cpu_ratios: list[float] = []

        def measured(phase: Callable[[], list[float]]) -> tuple[list[float], float]:
            """The phase's latencies and the server's CPU ms per request during it."""
            before = server_cpu(server)
            got = phase()
            return got, 1000 * (server_cpu(server) - before) / max(1, len(got))
        offered, reports = 0, []
        try:
            request(port, "POST", "/api/models/register", {"name": "bench"})
            for version, status, name in (("1.0.0", "stable", "fast-primary"),
                                          ("2.0.0", "experimental", "slow-candidate")):
                request(port, "POST", "/api/models/bench/versions/register",
                        {"version": version, "status": status, "provider": "gemini",
                         "config": {"model": name}})
            load(port, clients, 2.0)                                       # warm up

            def with_shadow() -> tuple[list[float], float]:
                shadow_id = request(port, "POST", "/api/models/bench/deploy", {
                    "version": "2.0.0", "strategy": "shadow", "sample_percent": percent,
                    "duration_s": 3600})["deployment"]["id"]
                got = measured(lambda: load(port, clients, seconds))
                request(port, "POST", f"/api/deployments/{shadow_id}/shadow/stop", {})
                reports.append(drain(port, shadow_id))
                return got

            def without() -> tuple[list[float], float]:
                return measured(lambda: load(port, clients, seconds))

            for i in range(rounds):
                if i % 2 == 0:
                    (plain, cpu_plain), (shadowed, cpu_shadow) = without(), with_shadow()
                else:
                    (shadowed, cpu_shadow), (plain, cpu_plain) = with_shadow(), without()
                offered += len(shadowed)
                plain_all += plain
                shadow_all += shadowed
                ratios.append(p99(shadowed) / p99(plain))
                cpu_ratios.append(cpu_shadow / cpu_plain)
                print(f"  round {i + 1}: p99 {1000 * p99(plain):.1f} ms without, "
                      f"{1000 * p99(shadowed):.1f} ms with: {ratios[-1]:.2f}x; server CPU "
                      f"{cpu_plain:.2f} / {cpu_shadow:.2f} ms per request; "
                      f"{len(plain)} / {len(shadowed)} requests (load {load_average()})",
                      flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
            fake_process.terminate()
            fake_process.join(10)
    queued = sum(r["mirrored"] for r in reports)
    dropped = sum(r["dropped"] for r in reports)
    share = (queued + dropped) / max(1, offered)
    q1, median, q3 = np.quantile(ratios, [0.25, 0.5, 0.75])
    rows = [
        ("primary p99 without a shadow (all rounds)", f"{1000 * p99(plain_all):.2f} ms", ""),
        (f"primary p99 with a {percent:g}% shadow (2 s candidate)",
         f"{1000 * p99(shadow_all):.2f} ms", ""),
        (f"p99 ratio shadow / none, median of {rounds} rounds", f"{median:.2f}x", "≤ 1.10x"),
        ("  per-round ratios: interquartile range", f"{q1:.2f}–{q3:.2f}x", ""),
        ("  per-round ratios: min–max", f"{min(ratios):.2f}–{max(ratios):.2f}x", ""),
        ("p99 ratio of the pooled samples", f"{p99(shadow_all) / p99(plain_all):.2f}x", ""),
        ("server CPU per request, shadow / none (median)",
         f"{float(np.median(cpu_ratios)):.2f}x", ""),
        ("requests sampled (mirrored + dropped)", f"{100 * share:.1f}%", f"{percent:g} ± 2%"),
        ("mirrors completed / dropped", f"{queued} / {dropped}", ""),
    ]
    errors = sum(round((r["shadow_errors"]["rate"] or 0) * r["shadow_errors"]["n"])
                 for r in reports)
    print(f"candidate errors: {errors} of {queued} mirrored calls")
    print(f"gunicorn gthread, 1 worker x 8 threads; {clients} keep-alive clients; "
          f"{len(plain_all)} + {len(shadow_all)} requests; load average before "
          f"{load_before}, after {load_average()}")
    return print_rows(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0, help="per phase")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--percent", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=8)
    a = parser.parse_args()
    main(a.seconds, a.clients, a.percent, a.rounds)
