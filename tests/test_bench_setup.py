"""The benchmarks' set-up steps still run against the code.

Benchmarks are run by hand, so nothing else notices when a refactoring breaks them:
``bench_protocols.py`` imported ``build_services`` from where it no longer was for a whole day.
Each ``prepare`` registers its models in a separate process, as before a benchmark.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_http, bench_protocols
from config import Settings
from wiring import build_services

pytestmark = pytest.mark.slow   # a child process per benchmark


def _model_names(data: Path) -> set[str]:
    services = build_services(Settings.from_env({"data_dir": data}))
    try:
        models, _ = services.registry.list_models()
        return {m["name"] for m in models}
    finally:
        services.close()


def test_the_benchmarks_prepare_their_models(tmp_path: Path):
    bench_http.prepare(tmp_path / "http", "bench", ["1.0.0"], status="stable")
    bench_protocols.prepare(tmp_path / "protocols")
    assert _model_names(tmp_path / "http") == {"bench"}
    assert _model_names(tmp_path / "protocols") == {"chat", "iris"}
