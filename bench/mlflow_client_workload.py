"""The benchmark workload spoken through MLflow's own client (``mlflow.MlflowClient``, from
mlflow-skinny), so that this registry and an MLflow server are compared on exactly what an
MLflow user runs (issue 17). Same four operations and call signature as the raw-HTTP workload
classes of ``bench/bench_vs_mlflow.py``; the ``session`` argument is unused (the client keeps
its own connections)."""
from __future__ import annotations

import os
import warnings
from typing import Any

# No telemetry from the benchmark's client, and no deprecation notice per call
# (get_latest_versions is what MLflow users of stages still call).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


class Done:
    """What the benchmark's runner checks of an answer: the client raised nothing."""

    ok = True
    status_code = 200
    text = ""

    def raise_for_status(self) -> None:
        """Nothing to raise: a failed call already raised in the client."""


class ViaMlflowClient:
    def __init__(self, url: str) -> None:
        from mlflow import MlflowClient  # a benchmark-only dependency (requirements-dev)
        self.client = MlflowClient(tracking_uri=url, registry_uri=url)

    def create_model(self, _session: Any, name: str) -> Done:
        self.client.create_registered_model(name)
        return Done()

    def create_version(self, _session: Any, name: str, i: int) -> Done:
        self.client.create_model_version(name, f"s3://bench/{name}/{i}", tags={"run": str(i)})
        return Done()

    def latest(self, _session: Any, name: str) -> Done:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.client.get_latest_versions(name)
        return Done()

    def list_versions(self, _session: Any, name: str) -> Done:
        self.client.search_model_versions(f"name='{name}'")
        return Done()
