"""import-mlflow against a real MLflow 3.17.2 server holding 20 models (issue 17).

The MLflow server runs from its own virtualenv (never from requirements*.txt): the one at
MLFLOW_VENV (the variable bench/bench_vs_mlflow.py reads too), else
~/.cache/model-registry/mlflow-3.17.2, outside the checkout so that fresh clones on the same
machine (CI) reuse it. The server test runs when that virtualenv exists, or when
MLFLOW_SERVER_TESTS=1 asks to build it (``pip install mlflow==3.17.2``, about 8 minutes, once);
otherwise it is skipped, saying how to run it. The server is filled through MLflow's own client
(mlflow-skinny) and its artifact API.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from models import onnx_examples
from registry.bundle import main as bundle_main
from registry.mlflow_import import import_from_mlflow, semver_for
from registry.model_registry import ModelRegistry
from storage.database import Database
from storage.model_store import ArtifactStore
from tests.support import free_port

mlflow = pytest.importorskip("mlflow")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a full MLflow server is slow
MLFLOW_VERSION = "3.17.2"


MLFLOW_VENV = Path(os.environ.get("MLFLOW_VENV")
                   or Path.home() / ".cache" / "model-registry" / f"mlflow-{MLFLOW_VERSION}")
BUILD_VENV = os.environ.get("MLFLOW_SERVER_TESTS") == "1"
needs_mlflow_server = pytest.mark.skipif(
    not BUILD_VENV and not (MLFLOW_VENV / "bin" / "python").exists(),
    reason=f"needs a full MLflow {MLFLOW_VERSION} server in its own virtualenv, and "
           f"{MLFLOW_VENV} does not exist: run with MLFLOW_SERVER_TESTS=1 to build it there "
           "(about 8 minutes, once), or set MLFLOW_VENV to a virtualenv holding "
           f"mlflow=={MLFLOW_VERSION}")


def _server_python() -> Path:
    python = MLFLOW_VENV / "bin" / "python"
    probe = [str(python), "-c", "import mlflow, sys; sys.exit(mlflow.__version__ != "
             f"'{MLFLOW_VERSION}')"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not BUILD_VENV:
        pytest.skip(f"{MLFLOW_VENV} does not hold mlflow=={MLFLOW_VERSION}: run with "
                    "MLFLOW_SERVER_TESTS=1 to (re)build it (about 8 minutes)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}"],
                       check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as err:
        pytest.skip(f"a full MLflow {MLFLOW_VERSION} server could not be installed in its own "
                    f"virtualenv ({MLFLOW_VENV}): {err}")
    return python


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = _server_python()
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(python), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(url + "/health", timeout=10).ok:
                    break
            except requests.RequestException:  # not listening yet, or too busy starting
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("MLflow server did not start: "
                            + (root / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        _fill(url, root)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


ONNX = onnx_examples.linear_model()


def _fill(url: str, tmp: Path) -> None:
    """20 models, 1-3 versions each, tags on both, aliases; model-07's versions are ONNX
    models logged as run artifacts through MLflow's artifact proxy; model-02 v2 carries its own
    semver tag."""
    client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
    experiment = client.create_experiment("onnx-models")
    model_dir = tmp / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(ONNX)
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    for i in range(20):
        name = f"model-{i:02d}"
        client.create_registered_model(name, tags={"team": f"t{i % 3}"},
                                       description=f"model {i}")
        for n in range(1, 2 + i % 3):
            tags = {"quality": "gold"} if n == 1 else {}
            if name == "model-02" and n == 2:
                tags["semver"] = "1.5.0"
            source, run_id = f"s3://bucket/{name}/{n}", None
            if name == "model-07":
                run = client.create_run(experiment)
                client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
                source, run_id = f"{run.info.artifact_uri}/model", run.info.run_id
            client.create_model_version(name, source, run_id=run_id, tags=tags,
                                        description=f"v{n}")
        client.set_registered_model_alias(name, "champion", "1")


def test_semver_rules() -> None:
    assert semver_for(3, {}, "major") == "3.0.0"
    assert semver_for(3, {}, "minor") == "1.3.0"
    assert semver_for(3, {}, "patch") == "1.0.3"
    assert semver_for(3, {}, "2.{n}.0-beta") == "2.3.0-beta"
    assert semver_for(3, {"semver": "4.1.0"}, "major") == "4.1.0"
    assert semver_for(3, {"semver": "junk"}, "major") == "3.0.0"


@needs_mlflow_server
def test_import_20_models_then_again_adds_nothing(mlflow_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    registry, store = ModelRegistry(db), ArtifactStore(tmp_path / "art")
    try:
        dry = import_from_mlflow(registry, store, mlflow_url, dry_run=True)
        assert dry["counts"]["models"] == 20 and registry.list_models()[0] == []
        report = import_from_mlflow(registry, store, mlflow_url)
        assert report["skipped"] == []
        assert report["counts"] == {"models": 20, "versions": 39, "aliases": 20, "tags": 0,
                                    "artifacts": 2}
        models, _ = registry.list_models(limit=100)
        assert len(models) == 20
        m = registry.get_model("model-04")
        assert m["tags"] == {"team": "t1"} and m["description"] == "model 4"
        versions = {v["number"]: v for v in registry.iter_versions("model-05")}
        assert sorted(versions) == [1, 2, 3]
        assert [versions[n]["version"] for n in (1, 2, 3)] == ["1.0.0", "2.0.0", "3.0.0"]
        assert versions[1]["tags"] == {"quality": "gold"}
        assert versions[2]["source"] == "s3://bucket/model-05/2"
        assert registry.get_version("model-05", "champion")["number"] == 1
        assert registry.get_version("model-02", "1.5.0")["number"] == 2  # its own semver tag
        onnx = registry.get_version("model-07", "2.0.0")
        assert onnx["artifact"]["digest"] == hashlib.sha256(ONNX).hexdigest()
        # re-run: nothing new
        again = import_from_mlflow(registry, store, mlflow_url)
        assert again["counts"] == {"models": 0, "versions": 0, "aliases": 0, "tags": 0,
                                   "artifacts": 0}
        # something new on the MLflow side is picked up, numbers kept
        client = mlflow.MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
        client.create_model_version("model-00", "s3://bucket/model-00/2")
        client.set_registered_model_tag("model-00", "new", "yes")
        third = import_from_mlflow(registry, store, mlflow_url)
        assert third["added"]["versions"] == ["model-00/2 as 2.0.0"]
        assert third["added"]["tags"] == ["model-00:new"]
    finally:
        db.dispose()
    # the command line, with a rule of one's own, as a dry run
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "cli"))
    assert bundle_main(["import-mlflow", mlflow_url, "--dry-run",
                        "--semver-rule", "0.{n}.0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "model-05/3 as 0.3.0" in out["added"]["versions"] and out["dry_run"]
