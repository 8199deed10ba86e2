"""Registry benchmark (run by hand): ``python bench/bench_registry.py [--versions 10000]``.

1. Listing one page of 100 versions of a model that has N versions (target ≤ 10 ms), first page
   and a deep page, beside listing a model with 100 versions: the ratio shows it is flat.
2. Registering versions over HTTP with 8 concurrent clients against ``python api/app.py``
   (a real server process on this machine), beside 1 client.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from registry.model_registry import ModelRegistry  # noqa: E402
from registry.version_manager import precedence_key  # noqa: E402
from storage.database import Database  # noqa: E402
from storage.schema import model_versions, models, utcnow  # noqa: E402
from tests.support import LiveServer  # noqa: E402


def bulk_versions(db: Database, name: str, count: int) -> None:
    """Insert ``count`` versions in one transaction (setup only; the API path is measured below)."""
    registry = ModelRegistry(db)
    registry.register_model(name)
    now = utcnow()
    with db.transaction() as conn:
        model_id = conn.execute(select(models.c.id).where(models.c.name == name)).scalar_one()
        rows = []
        for i in range(count):
            v = f"{i // 1000}.{(i // 10) % 100}.{i % 10}"
            rows.append(dict(model_id=model_id, version=v, precedence=precedence_key(v),
                             major=i // 1000, minor=(i // 10) % 100, patch=i % 10, status="stable",
                             provider="onnx", config={}, description="", tags={}, metadata={},
                             created_at=now, updated_at=now))
        conn.execute(insert(model_versions), rows)


def time_ms(fn, repeat: int = 50) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def bench_listing(tmp: Path, count: int) -> list[tuple[str, str]]:
    db = Database(f"sqlite:///{tmp / 'list.db'}")
    bulk_versions(db, "big", count)
    bulk_versions(db, "small", 100)
    reg = ModelRegistry(db)
    _, token = reg.list_versions_page("big", limit=100)
    deep_token = token
    for _ in range(count // 200):
        _, deep_token = reg.list_versions_page("big", limit=100, page_token=deep_token)
    small = time_ms(lambda: reg.list_versions_page("small", limit=100))
    first = time_ms(lambda: reg.list_versions_page("big", limit=100))
    deep = time_ms(lambda: reg.list_versions_page("big", limit=100, page_token=deep_token))
    return [
        ("list 100 of 100 versions (median)", f"{small:.2f} ms"),
        (f"list first 100 of {count} versions", f"{first:.2f} ms  ({first / small:.2f}x)"),
        (f"list a middle page of {count} versions", f"{deep:.2f} ms  ({deep / small:.2f}x)"),
    ]


def bench_http_register(tmp: Path, per_client: int) -> list[tuple[str, str]]:
    server = LiveServer(tmp / "http").start()
    rows = []
    try:
        results = {}
        for clients in (1, 8):
            name = f"m{clients}"
            requests.post(f"{server.url}/api/models/register", json={"name": name}).raise_for_status()

            def work(c: int) -> list[int]:
                s = requests.Session()
                return [s.post(f"{server.url}/api/models/{name}/versions/register",
                               json={"version": f"{c}.{i}.0"}).status_code
                        for i in range(per_client)]

            t = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                codes = [code for batch in pool.map(work, range(clients)) for code in batch]
            elapsed = time.perf_counter() - t
            assert codes.count(201) == len(codes), codes
            results[clients] = len(codes) / elapsed
            rows.append((f"register versions over HTTP, {clients} client(s)",
                         f"{results[clients]:.0f}/s, {len(codes)} ok, 0 errors"))
        rows.append(("8 clients vs 1 client", f"{results[8] / results[1]:.2f}x"))
    finally:
        server.stop()
    return rows


def main(versions: int = 10_000, per_client: int = 50) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = bench_listing(tmp, versions) + bench_http_register(tmp, per_client)
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark'.ljust(width)}  result")
    for name, result in rows:
        print(f"{name.ljust(width)}  {result}")
    return [(name, result, "≤ 10 ms" if name.startswith("list first") else "")
            for name, result in rows]


if __name__ == "__main__":
    os.environ.setdefault("REGISTRY_DATA_DIR", tempfile.mkdtemp())
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--per-client", type=int, default=50)
    a = parser.parse_args()
    main(a.versions, a.per_client)
