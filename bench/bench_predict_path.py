"""Where a prediction's CPU goes beyond the bare endpoint's (run by hand):
``python bench/bench_predict_path.py [--requests 3000]``.

The benchmark app of ``bench_http.py`` (the real app plus a bare endpoint on the same ONNX
session) is called as a WSGI app in this process, without an HTTP server. Each step of the
predict path is timed with this thread's CPU clock inside whole requests, where every step runs
between Flask's and the other steps' code, and again alone in a tight loop, where its code and
data stay in the CPU's caches. The gap between the two columns is why a step that costs a few
microseconds in a loop costs several times that in a real request (issue 14).
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from bench.bench_http import prepare  # noqa: E402
from bench.http_app import with_bare_endpoint  # noqa: E402
from bench.report import print_rows  # noqa: E402

INPUT = [[0.1, 0.2, 0.3, 0.4]]
BODY = json.dumps({"input": INPUT}).encode()
BARE, PREDICT = "/bare/bench/1.0.0", "/api/models/bench/predict"


def _request(app: Any, path: str) -> None:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(BODY)),
               "wsgi.input": io.BytesIO(BODY), "wsgi.errors": sys.stderr}
    status: list[str] = []
    b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    assert status[0].startswith("200"), status


def _loop_us(call: Callable[[], Any], n: int = 3000) -> float:
    call()
    started = time.thread_time_ns()
    for _ in range(n):
        call()
    return (time.thread_time_ns() - started) / n / 1000


def main(requests: int = 3000) -> list[tuple[str, str, str]]:
    data = Path(tempfile.mkdtemp(prefix="bench-predict-path-"))
    prepare(data, "bench", ["1.0.0"], status="stable")
    app = with_bare_endpoint(create_app({"data_dir": data, "auto_rollback": False}))
    services = app.extensions["model_registry"]
    gateway, provider = services.gateway, services.loader.get("bench", "1.0.0")
    feeds = provider._feeds(INPUT)
    results = provider._run(provider._session, feeds)
    loops = {  # the same steps, each alone in a tight loop
        "gateway.predict (all of the below)": lambda: gateway.predict("bench", INPUT),
        "  routing": lambda: gateway.route("bench"),
        "  provider.predict": lambda: provider.predict(INPUT),
        "    input checks and conversion": lambda: provider._feeds(INPUT),
        "    run under the deadline": lambda: provider._run(provider._session, feeds),
        "    output checks and JSON": lambda: provider._output_json(results),
        "  recording": lambda: gateway.collector.record("bench", "1.0.0", 0.001, True),
    }
    for _ in range(200):   # warm both routes through the whole app
        _request(app, BARE)
        _request(app, PREDICT)
    loop_us = {name: _loop_us(call) for name, call in loops.items()}
    samples: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time_ns()
            try:
                return func(*args, **kwargs)
            finally:
                samples[name].append((time.thread_time_ns() - started) / 1000)
        return wrapper

    views = app.view_functions
    views["bare_predict"] = timed("bare view", views["bare_predict"])
    views["predict.predict"] = timed("predict view", views["predict.predict"])
    gateway.predict = timed("gateway.predict (all of the below)", gateway.predict)
    gateway.route = timed("  routing", gateway.route)
    gateway.collector.record = timed("  recording", gateway.collector.record)
    provider.predict = timed("  provider.predict", provider.predict)
    provider._feeds = timed("    input checks and conversion", provider._feeds)
    provider._run = timed("    run under the deadline", provider._run)
    provider._output_json = timed("    output checks and JSON", provider._output_json)
    for path in (BARE, PREDICT) * 2:   # alternate; the second pair is kept
        for name in samples:
            if (name == "bare view") == (path == BARE):
                samples[name].clear()
        for _ in range(requests):
            _request(app, path)
    median = {name: statistics.median(values) for name, values in samples.items()}
    rows = [("bare view (asarray, run, tolist)", f"{median['bare view']:.1f} µs", ""),
            ("predict view (validation, gateway, answer)", f"{median['predict view']:.1f} µs",
             f"{median['predict view'] - median['bare view']:.1f} µs more than bare")]
    rows += [(name, f"{median[name]:.1f} µs", f"alone in a loop: {loop_us[name]:.1f} µs")
             for name in loops]
    print(f"CPU time per step, median of {requests} requests (this thread's clock)")
    return print_rows(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    main(parser.parse_args().requests)
