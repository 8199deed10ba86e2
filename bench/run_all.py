"""Every benchmark in one run, then one table: ``python bench/run_all.py``.

Each benchmark prints its details as it goes; the table at the end collects the figures and the
ratios measured side by side (never lone absolute times compared across runs).
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("REGISTRY_DATA_DIR", tempfile.mkdtemp(prefix="bench-"))

from bench import (bench_gateway, bench_http, bench_predict_path,  # noqa: E402
                   bench_protocols, bench_registry, bench_rollout, bench_s3_memory,
                   bench_tracking, bench_vs_mlflow, bench_webhooks)

BENCHMARKS = [("gateway overhead", bench_gateway.main),
              ("HTTP throughput", bench_http.main),
              ("predict path, step by step", bench_predict_path.main),   # issue 14
              ("metrics", bench_tracking.main),
              ("registry", bench_registry.main),
              ("registry vs MLflow", bench_vs_mlflow.main),
              ("rollout reaction", bench_rollout.main),
              ("webhooks", bench_webhooks.main),
              ("client protocols", bench_protocols.main),
              ("tracing cost", bench_gateway.tracing_cost),          # issue 20
              ("S3 artifact memory", bench_s3_memory.main)]          # issue 20


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    for title, run in BENCHMARKS:
        print(f"\n== {title}")
        rows += run()
    try:
        from bench import bench_dashboard
        print("\n== dashboard")
        rows += bench_dashboard.main()
    except ImportError:
        pass
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\n== summary ({machine})\n")
    print("| benchmark | result | target / ratio |\n|---|---|---|")
    for name, result, target in rows:
        print(f"| {name.strip()} | {result} | {target} |")


if __name__ == "__main__":
    main()
