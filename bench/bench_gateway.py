"""Gateway overhead (run by hand): ``python bench/bench_gateway.py [--n 20000]``.

Calls one loaded ONNX model directly (``provider.predict``) and through the gateway in process
(routing + loader lookup + tracking + response), interleaved in one run, and reports the median
of each and the median overhead per prediction. Target: overhead ≤ 50 µs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wiring import build_services  # noqa: E402
from config import Settings  # noqa: E402
from models.onnx_examples import linear_model  # noqa: E402


def main(n: int = 20_000) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as d:
        svc = build_services(Settings.from_env({"data_dir": Path(d)}))
        svc.registry.register_model("bench")
        svc.registry.register_version("bench", "1.0.0", "stable", provider="onnx")
        digest, size = svc.artifacts.put_bytes(linear_model())
        svc.registry.attach_artifact("bench", "1.0.0", digest, size)
        x = [[1.0, 2.0, 3.0, 4.0]]
        provider = svc.loader.get("bench", "1.0.0")
        gateway = svc.gateway
        for _ in range(2000):  # warm up both paths (and the router's cache)
            provider.predict(x)
            gateway.predict("bench", x)
        direct, routed = [], []
        clock = time.perf_counter_ns
        for _ in range(n):
            t0 = clock()
            provider.predict(x)
            t1 = clock()
            gateway.predict("bench", x)
            t2 = clock()
            direct.append(t1 - t0)
            routed.append(t2 - t1)
        # What a provider reporting usage adds: the price lookup and the integer cost.
        svc.registry.register_version("bench", "2.0.0", "stable", provider="gemini",
                                      config={"model": "gemini-2.5-flash"})
        cost = svc.prices.cost
        cost("bench", "2.0.0", 1000, 200, 1200)
        pricing = []
        for _ in range(n):
            t0 = clock()
            cost("bench", "2.0.0", 1000, 200, 1200)
            pricing.append(clock() - t0)
        svc.close()
    d_med, g_med = statistics.median(direct) / 1000, statistics.median(routed) / 1000
    overhead = statistics.median(g - dd for g, dd in zip(routed, direct)) / 1000
    print(f"{'path':34} median")
    print(f"{'direct provider.predict':34} {d_med:8.1f} µs")
    print(f"{'gateway.predict (route+load+track)':34} {g_med:8.1f} µs  ({g_med / d_med:.2f}x)")
    print(f"{'overhead per prediction':34} {overhead:8.1f} µs  (target ≤ 50 µs, n={n})")
    price_med = statistics.median(pricing) / 1000
    print(f"{'+ cost of a priced prediction':34} {price_med:8.1f} µs  (price lookup + cost)")
    return [("ONNX predict, direct (median)", f"{d_med:.1f} µs", ""),
            ("ONNX predict through the gateway, in process", f"{g_med:.1f} µs",
             f"{g_med / d_med:.2f}x direct"),
            ("gateway overhead per prediction (median)", f"{overhead:.1f} µs", "≤ 50 µs"),
            ("+ pricing a prediction that reports usage (median)", f"{price_med:.1f} µs",
             "within 10% of the overhead's budget")]


def tracing_cost(n: int = 20_000, rounds: int = 10) -> list[tuple[str, str, str]]:
    """Issue 20: the gateway with tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT), measured
    against a direct provider call, and with tracing on (spans recorded in memory), in
    alternating rounds of one run; plus the cost of one ``span()`` call when off."""
    import observability
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    x = [[1.0, 2.0, 3.0, 4.0]]
    clock = time.perf_counter_ns
    results: dict[str, list[int]] = {"direct": [], "off": [], "on": []}
    with tempfile.TemporaryDirectory() as d:
        exporter = InMemorySpanExporter()
        observability.configure_tracing(exporter=exporter)   # the SQL hooks exist, see below
        svc = build_services(Settings.from_env({"data_dir": Path(d)}))
        observability.shutdown_tracing()
        svc.registry.register_model("bench")
        svc.registry.register_version("bench", "1.0.0", "stable", provider="onnx")
        digest, size = svc.artifacts.put_bytes(linear_model())
        svc.registry.attach_artifact("bench", "1.0.0", digest, size)
        provider = svc.loader.get("bench", "1.0.0")
        for _ in range(2000):
            svc.gateway.predict("bench", x)
        for r in range(2 * rounds):
            on = r % 2 == 1
            if on:
                observability.configure_tracing(exporter=exporter)
            for _ in range(n // rounds):
                t0 = clock()
                provider.predict(x)
                t1 = clock()
                svc.gateway.predict("bench", x)
                t2 = clock()
                results["direct"].append(t1 - t0)
                results["on" if on else "off"].append(t2 - t1)
            exporter.clear()
            observability.shutdown_tracing()
        svc.close()
        t0 = clock()
        for _ in range(n):
            with observability.span("x"):
                pass
        noop_ns = (clock() - t0) / n
    med = {k: statistics.median(v) / 1000 for k, v in results.items()}
    print(f"{'direct provider.predict':34} {med['direct']:8.1f} µs")
    print(f"{'gateway, tracing off':34} {med['off']:8.1f} µs")
    print(f"{'gateway, tracing on (in memory)':34} {med['on']:8.1f} µs")
    print(f"{'one span() call, tracing off':34} {noop_ns:8.0f} ns")
    return [("gateway predict, tracing off (median)", f"{med['off']:.1f} µs",
             f"direct {med['direct']:.1f} µs"),
            ("gateway predict, tracing on (median)", f"{med['on']:.1f} µs",
             f"+{med['on'] - med['off']:.1f} µs"),
            ("one span() call with tracing off", f"{noop_ns:.0f} ns", "")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--tracing", action="store_true",
                        help="compare tracing off and on (issue 20)")
    args = parser.parse_args()
    tracing_cost(args.n) if args.tracing else main(args.n)
