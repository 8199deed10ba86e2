"""Webhook benchmark (run by hand): ``python bench/bench_webhooks.py [--events 200]``.

1. What the outbox costs a change: model registrations per second (Flask test client, SQLite)
   with 0 and with 5 subscriptions, rounds interleaved; the ratio is the figure.
2. Event to receipt: a real server (``python api/app.py``) and a local receiver; the time from
   each registration's answer to the receiver getting its delivery (median, p95), and how long
   all of them took to arrive.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from api.app import create_app  # noqa: E402
from bench.report import Row, print_rows  # noqa: E402
from tests.support import LiveServer  # noqa: E402
from tests.webhook_receiver import Receiver  # noqa: E402


def registrations_per_s(subscriptions: int, n: int) -> float:
    app = create_app({"TESTING": True, "data_dir": tempfile.mkdtemp()})
    client = app.test_client()
    for i in range(subscriptions):
        client.post("/api/webhooks", json={"url": f"https://example.com/h{i}"})
    started = time.perf_counter()
    for i in range(n):
        client.post("/api/models/register", json={"name": f"m{i}"})
    elapsed = time.perf_counter() - started
    app.extensions["model_registry"].close()
    return n / elapsed


def bench_outbox(n: int) -> list[Row]:
    plain, fanned = [], []
    for _ in range(3):
        plain.append(registrations_per_s(0, n))
        fanned.append(registrations_per_s(5, n))
    a, b = statistics.median(plain), statistics.median(fanned)
    return [("registrations/s, 0 subscriptions", f"{a:.0f}", ""),
            ("registrations/s, 5 subscriptions", f"{b:.0f}", f"ratio {b / a:.2f}")]


def bench_latency(events: int) -> list[Row]:
    env = {"WEBHOOK_ALLOWED_HTTP_HOSTS": "127.0.0.1", "WEBHOOK_ALLOW_PRIVATE": "true"}
    with Receiver() as receiver, tempfile.TemporaryDirectory() as d:
        server = LiveServer(Path(d), env=env).start()
        try:
            url = receiver.script("/bench", 200)
            requests.post(f"{server.url}/api/webhooks", timeout=10,
                          json={"url": url, "events": ["model.created"]}).raise_for_status()
            answered: dict[str, float] = {}
            first = time.monotonic()
            for i in range(events):
                requests.post(f"{server.url}/api/models/register", json={"name": f"m{i}"},
                              timeout=10).raise_for_status()
                answered[f"m{i}"] = time.monotonic()
            deadline = time.monotonic() + 120
            while len(receiver.at("/bench")) < events and time.monotonic() < deadline:
                time.sleep(0.05)
            got = receiver.at("/bench")
            lags = sorted((r.at - answered[r.json()["data"]["model"]]) * 1000 for r in got)
            total = max(r.at for r in got) - first
        finally:
            server.stop()
    p95 = lags[int(0.95 * (len(lags) - 1))]
    return [(f"event to receipt, median ({len(got)}/{events})", f"{statistics.median(lags):.0f} ms",
             "ticker beat 0.5 s"),
            ("event to receipt, p95", f"{p95:.0f} ms", ""),
            (f"{events} events registered and delivered", f"{total:.1f} s", "")]


def main(events: int = 200, registrations: int = 200) -> list[Row]:
    return print_rows(bench_outbox(registrations) + bench_latency(events))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--registrations", type=int, default=200)
    args = parser.parse_args()
    main(args.events, args.registrations)
