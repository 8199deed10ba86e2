"""MLflow's own client (mlflow-skinny) against this server, in a real server process.

Every Model Registry call the client makes, models:/ URIs by alias, number, SemVer and range,
pyfunc loading of an ONNX version, and the errors (MLflow's error codes, never a 5xx for bad
input). One server per module; auth is on, the client authenticates with MLFLOW_TRACKING_TOKEN.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from models import onnx_examples
from tests.support import LiveServer

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException, RestException  # noqa: E402

pytestmark = pytest.mark.slow
TOKEN = "mlflow-test-admin-token"
H = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("mlflow-server")
    srv = LiveServer(data, {"REGISTRY_ADMIN_TOKEN": TOKEN}).start()
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN",
                                            "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                                            "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_TRACKING_URI=srv.url, MLFLOW_TRACKING_TOKEN=TOKEN,
                      MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="30")
    mlflow.set_tracking_uri(srv.url)
    mlflow.set_registry_uri(srv.url)
    yield srv
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    srv.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> MlflowClient:
    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def _native_onnx_version(server: LiveServer, model: str, version: str, shift: float = 0.0) -> None:
    """Register an ONNX version through this registry's own API, with its artifact."""
    requests.post(f"{server.url}/api/models/register", json={"name": model},
                  headers=H, timeout=10)
    r = requests.post(f"{server.url}/api/models/{model}/versions/register",
                      json={"version": version, "provider": "onnx", "status": "stable"},
                      headers=H, timeout=10)
    assert r.status_code == 201, r.text
    r = requests.put(f"{server.url}/api/models/{model}/versions/{version}/artifact",
                     data=onnx_examples.linear_model(bias=np.array([shift, -shift])),
                     headers=H, timeout=10)
    assert r.status_code == 201, r.text


def _code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.error_code


def test_registered_model_lifecycle(client: MlflowClient) -> None:
    rm = client.create_registered_model("churn", tags={"team": "risk"}, description="first")
    assert rm.name == "churn" and rm.tags == {"team": "risk"} and rm.description == "first"
    client.update_registered_model("churn", description="second")
    r = requests.patch(f"{client.tracking_uri}/api/2.0/mlflow/registered-models/update",
                       json={"name": "churn"}, headers=H, timeout=10)
    assert r.json()["registered_model"]["description"] == "second"  # absent: left as it is
    client.set_registered_model_tag("churn", "stage.owner", "ana")
    client.delete_registered_model_tag("churn", "team")
    got = client.get_registered_model("churn")
    assert got.description == "second" and got.tags == {"stage.owner": "ana"}
    client.rename_registered_model("churn", "churn2")
    with pytest.raises(RestException) as e:
        client.get_registered_model("churn")
    assert _code(e) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_registered_model("churn2").name == "churn2"
    with pytest.raises(RestException) as e:
        client.create_registered_model("churn2")
    assert _code(e) == "RESOURCE_ALREADY_EXISTS"
    client.delete_registered_model("churn2")
    with pytest.raises(RestException) as e:
        client.get_registered_model("churn2")
    assert _code(e) == "RESOURCE_DOES_NOT_EXIST"


def test_versions_numbers_semver_tags_and_aliases(client: MlflowClient) -> None:
    client.create_registered_model("scorer")
    v1 = client.create_model_version("scorer", "s3://bucket/scorer/1", run_id="r1",
                                     tags={"k": "v"}, description="d1")
    v2 = client.create_model_version("scorer", "s3://bucket/scorer/2",
                                     tags={"semver": "2.0.0-rc.1"})
    v3 = client.create_model_version("scorer", "s3://bucket/scorer/3")
    assert (v1.version, v2.version, v3.version) == ("1", "2", "3")
    assert v1.tags == {"k": "v", "semver": "1.0.0"} and v1.run_id == "r1"
    assert v2.tags["semver"] == "2.0.0-rc.1"
    assert v3.tags["semver"] == "2.0.0"  # the next patch of the highest: rc.1's release
    # a deleted number is never handed out again
    client.delete_model_version("scorer", "3")
    v4 = client.create_model_version("scorer", "s3://bucket/scorer/4")
    assert v4.version == "4" and v4.tags["semver"] == "2.0.0"

    client.update_model_version("scorer", "1", description="one")
    client.set_model_version_tag("scorer", "1", "quality", "gold")
    client.delete_model_version_tag("scorer", "1", "k")
    got = client.get_model_version("scorer", "1")
    assert got.description == "one" and got.tags == {"quality": "gold", "semver": "1.0.0"}
    assert got.source == "s3://bucket/scorer/1"

    client.set_registered_model_alias("scorer", "champion", "1")
    # the client insists on integers; the server takes a SemVer (or range, alias) too
    r = requests.post(f"{client.tracking_uri}/api/2.0/mlflow/registered-models/alias",
                      json={"name": "scorer", "alias": "challenger", "version": "2.0.0"},
                      headers=H, timeout=10)
    assert r.status_code == 200, r.text
    assert client.get_model_version_by_alias("scorer", "champion").version == "1"
    assert client.get_registered_model("scorer").aliases == {"champion": "1", "challenger": "4"}
    client.delete_registered_model_alias("scorer", "challenger")
    assert client.get_registered_model("scorer").aliases == {"champion": "1"}
    assert client.get_model_version("scorer", "champion").version == "1"

    latest = client.get_latest_versions("scorer")
    assert [v.version for v in latest] == ["4"]
    assert client.get_model_version_download_uri("scorer", "2") == "s3://bucket/scorer/2"

    found = client.search_model_versions("name = 'scorer' AND tag.quality = 'gold'")
    assert [v.version for v in found] == ["1"]
    found = client.search_model_versions("name='scorer'", order_by=["version_number ASC"])
    assert [v.version for v in found] == ["1", "2", "4"]


def test_search_registered_models_filters_and_pages(client: MlflowClient) -> None:
    for i in range(7):
        client.create_registered_model(f"page-{i}", tags={"team": "a" if i % 2 else "b"})
    r = requests.post(f"{client.tracking_uri}/api/2.0/mlflow/registered-models/create",
                      json={"name": "page-prompt",
                            "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]},
                      headers=H, timeout=10)  # the client refuses to create prompts as models
    assert r.status_code == 200, r.text
    names = [m.name for m in client.search_registered_models("name LIKE 'page-%'")]
    assert names == [f"page-{i}" for i in range(7)]  # the prompt is hidden by the client's !=
    got = client.search_registered_models("name ILIKE 'PAGE-%' AND tags.team = 'a'",
                                          order_by=["name DESC"])
    assert [m.name for m in got] == ["page-5", "page-3", "page-1"]
    first = client.search_registered_models("name LIKE 'page-%'", max_results=3)
    assert len(first) == 3 and first.token
    rest = client.search_registered_models("name LIKE 'page-%'", max_results=3,
                                           page_token=first.token)
    assert [m.name for m in rest] == ["page-3", "page-4", "page-5"]
    with pytest.raises(MlflowException) as e:
        client.search_registered_models("name = 'x' OR name = 'y'")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"


def test_onnx_version_loads_through_pyfunc_with_our_numbers(client: MlflowClient,
                                                            server: LiveServer) -> None:
    pytest.importorskip("pandas")
    _native_onnx_version(server, "fraud-onnx", "1.2.0", 1.0)
    _native_onnx_version(server, "fraud-onnx", "1.2.5", 2.0)
    _native_onnx_version(server, "fraud-onnx", "2.0.0", 3.0)
    client.set_registered_model_alias("fraud-onnx", "champion", "2")
    assert client.get_model_version_download_uri("fraud-onnx", "2") == \
        "mlflow-artifacts:/registry/fraud-onnx/2"
    x = np.array([[0.5, 1.0, -2.0, 3.0], [1.0, 0.0, 0.0, 0.25]], dtype=np.float32)
    for uri, semver in (("models:/fraud-onnx@champion", "1.2.5"),
                        ("models:/fraud-onnx/3", "2.0.0"), ("models:/fraud-onnx/^1.2", "1.2.5"),
                        ("models:/fraud-onnx/1.2.0", "1.2.0"),
                        ("models:/fraud-onnx/latest", "2.0.0")):
        ours = requests.post(f"{server.url}/api/models/fraud-onnx/predict",
                             json={"input": x.tolist(), "version": semver}, headers=H,
                             timeout=30)
        assert ours.status_code == 200, ours.text
        expected = np.asarray(ours.json()["output"], dtype=np.float32)
        got = mlflow.pyfunc.load_model(uri).predict(x)
        np.testing.assert_allclose(np.asarray(got["y"]), expected, rtol=1e-6, err_msg=uri)
    meta = mlflow.pyfunc.load_model("models:/fraud-onnx/^1.2").metadata
    assert list(meta.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 4]
    # "latest" is the highest number, as in MLflow
    assert client.get_latest_versions("fraud-onnx")[0].version == "3"


def test_errors_are_mlflow_shaped_and_never_5xx(client: MlflowClient,
                                                server: LiveServer) -> None:
    with pytest.raises(RestException) as e:
        client.get_model_version("nope", "1")
    assert _code(e) == "RESOURCE_DOES_NOT_EXIST"
    client.create_registered_model("errs")
    with pytest.raises(RestException) as e:
        client.create_model_version("errs", "/etc/passwd")
    assert _code(e) == "INVALID_PARAMETER_VALUE" and "outside the artifact root" in str(e.value)
    with pytest.raises(RestException) as e:
        client.create_model_version("errs", "s3://bucket/../secrets")
    assert _code(e) == "INVALID_PARAMETER_VALUE" and "'..'" in str(e.value)
    with pytest.raises(RestException) as e:
        client.create_model_version("errs", "s3://b/m", tags={"semver": "1.0"})
    assert _code(e) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(RestException) as e:
        client.get_model_version("errs", "99999999999999999999")
    assert _code(e) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(RestException) as e:
        client.get_model_version_by_alias("errs", "missing")
    assert _code(e) == "RESOURCE_DOES_NOT_EXIST"
    url = f"{server.url}/api/2.0/mlflow"
    bad = [
        ("GET", "/registered-models/get", {}, None),
        ("GET", "/registered-models/search", {"max_results": "abc"}, None),
        ("GET", "/registered-models/search", {"page_token": "%%%"}, None),
        ("GET", "/registered-models/search", {"order_by": "bogus DESC"}, None),
        ("POST", "/registered-models/create", None, {"name": 5}),
        ("POST", "/registered-models/create", None, {"name": "a/b"}),
        ("POST", "/model-versions/create", None, {"name": "errs", "tags": "x"}),
        # found by the fuzz test: a NUL in a local source, and stages that are not a list
        ("POST", "/model-versions/create", None, {"name": "errs", "source": "m\u0000x"}),
        ("POST", "/model-versions/create", None, {"name": "errs", "source": "m\udc80"}),
        ("POST", "/registered-models/get-latest-versions", None,
         {"name": "errs", "stages": -7.5}),
        ("DELETE", "/model-versions/delete", None, {"name": "errs"}),
        ("GET", "/model-versions/search", {"filter": "name = "}, None),
    ]
    for method, path, params, body in bad:
        r = requests.request(method, url + path, params=params, json=body, headers=H, timeout=10)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert r.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"), r.text
    r = requests.get(url + "/registered-models/get", params={"name": "errs"}, timeout=10)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    r = requests.get(url + "/experiments/get", params={"experiment_id": "0"}, headers=H,
                     timeout=10)
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    with pytest.raises(MlflowException):  # the tracking API is not served: a clear refusal
        mlflow.register_model("runs:/0123/model", "errs")


def test_readme_mlflow_example_runs_as_written(server: LiveServer, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.test_readme_python import ROOT, readme_block
    code = readme_block("## MLflow compatibility")
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_TOKEN": TOKEN}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[:3] == ["1 1.2.0", "2 1.2.1", "2"], result.stdout
    assert "'fraud'" in lines[3]
    assert lines[-1].startswith("[[")
