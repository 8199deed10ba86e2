"""Export → import (issue 17): identical answers from every read endpoint, identical artifact
digests, all or nothing on a tampered artifact or a conflict, dry runs that change nothing.
SQLite → SQLite through the CLI, SQLite → PostgreSQL through the admin endpoints."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from api.app import create_app
from registry import bundle
from tests.conftest import fresh_sqlite
from tests.support import PG_URL
from tests.test_api_predict import onnx_model


def _app(data_dir: Path, **extra):
    return create_app({"TESTING": True, "data_dir": data_dir, **extra})


@pytest.fixture
def source(tmp_path: Path, sqlite_template: Path):
    """A registry with something of everything: versions (one deleted, so numbers have a
    gap), tags, metadata, aliases, statuses, a deployment, a rollback, a snapshot, metrics."""
    fresh_sqlite(sqlite_template, tmp_path / "src" / "registry.db")
    app = _app(tmp_path / "src")
    c = app.test_client()
    svc = app.extensions["model_registry"]
    onnx_model(c, "lin", "1.0.0", status="stable")
    onnx_model(c, "lin", "1.1.0", status="beta")
    onnx_model(c, "lin", "1.2.0-rc.1", status="experimental")
    assert c.delete("/api/models/lin/versions/1.2.0-rc.1").status_code == 204
    onnx_model(c, "lin", "1.2.0", status="experimental")
    c.post("/api/models/register", json={"name": "other", "description": "d",
                                         "tags": {"team": "risk"}, "metadata": {"k": [1, 2]}})
    assert c.patch("/api/models/lin/versions/1.1.0",
                   json={"tags": {"q": "gold"}, "metadata": {"auc": 0.9}}).status_code == 200
    assert c.put("/api/models/lin/aliases/champion", json={"version": "1.1.0"}).status_code == 200
    for version in ("1.0.0", "1.1.0"):
        assert c.post("/api/models/lin/deploy", json={"version": version}).status_code in (201,
                                                                                           202)
        for _ in range(5):
            svc.deployments.tick()
    for _ in range(5):
        assert c.post("/api/models/lin/predict", json={"input": [[1, 2, 3, 4]]}).status_code == 200
    assert c.post("/api/models/lin/rollback", json={"reason": "test"}).status_code == 200
    assert c.post("/api/snapshots", json={"model": "lin"}).status_code == 201
    svc.collector.flush()
    yield app
    svc.close()


READS = ["/api/models", "/api/models/lin", "/api/models/other", "/api/models/lin/versions",
         "/api/models/lin/versions/1.1.0", "/api/models/lin/versions/champion",
         "/api/models/lin/versions/latest", "/api/models/lin/traffic", "/api/deployments",
         "/api/rollbacks", "/api/snapshots", "/api/alerts",
         "/api/models/lin/metrics?window=24h", "/api/models/lin/compare?v1=1.0.0&v2=1.1.0",
         "/api/2.0/mlflow/registered-models/search",
         "/api/2.0/mlflow/model-versions/search?filter=name%3D%27lin%27",
         "/api/2.0/mlflow/registered-models/alias?name=lin&alias=champion"]


def _answers(app) -> dict[str, object]:
    c = app.test_client()
    out = {}
    for url in READS:
        r = c.get(url)
        assert r.status_code == 200, (url, r.json)
        out[url] = r.json
    for metrics in out["/api/models/lin/metrics?window=24h"]["versions"].values():
        metrics.pop("throughput")  # requests per second up to now: changes as time passes
    for dep in out["/api/deployments"]["deployments"]:
        out[dep["id"]] = c.get(f"/api/deployments/{dep['id']}").json
    for snap in out["/api/snapshots"]["snapshots"]:
        out[snap["id"]] = c.get(f"/api/snapshots/{snap['id']}").json
    digests = {}
    for v in out["/api/models/lin/versions"]["versions"]:
        with c.get(f"/api/models/lin/versions/{v['version']}/artifact") as r:  # closes the file
            digests[v["version"]] = (hashlib.sha256(r.data).hexdigest(), r.headers["ETag"])
    out["digests"] = digests
    return out


def _export(app, path: Path) -> Path:
    svc = app.extensions["model_registry"]
    bundle.export_bundle(svc.database, svc.artifacts, path)
    return path


def test_cli_round_trip_sqlite_gives_identical_answers(source, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "src"))
    file = tmp_path / "out.zip"
    assert bundle.main(["export", str(file)]) == 0
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "dst"))
    assert bundle.main(["import", str(file), "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out.split("\n}\n", 1)[1])
    assert report["dry_run"] and report["rows"]["model_versions"] == 3
    assert not (tmp_path / "dst" / "artifacts" / "sha256").exists()  # a dry run writes nothing
    assert bundle.main(["import", str(file)]) == 0
    target = _app(tmp_path / "dst")
    try:
        before, after = _answers(source), _answers(target)
        assert after == before
        numbers = [v["number"] for v in after["/api/models/lin/versions"]["versions"]]
        assert numbers == [4, 2, 1]  # MLflow numbers survive, gap included
        # the imported registry keeps counting where the source stopped
        r = target.test_client().post("/api/2.0/mlflow/model-versions/create",
                                      json={"name": "lin", "source": "s3://b/x"})
        assert r.json["model_version"]["version"] == "5"
        # a second import is a conflict, reported, and changes nothing
        assert bundle.main(["import", str(file)]) == 1
        err = capsys.readouterr().err
        assert "model 'lin' already exists" in err and "model 'other' already exists" in err
    finally:
        target.extensions["model_registry"].close()


def _tampered(path: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.startswith("artifacts/"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(item, data)
    return out.getvalue()


def test_tampered_artifact_aborts_with_nothing_changed(source, tmp_path, sqlite_template):
    file = _export(source, tmp_path / "b.zip")
    fresh_sqlite(sqlite_template, tmp_path / "dst" / "registry.db")
    target = _app(tmp_path / "dst")
    try:
        c = target.test_client()
        r = c.post("/api/import", data=_tampered(file), content_type="application/zip")
        assert r.status_code == 409 and r.json["error"]["code"] == "DATA_CORRUPTED"
        assert all("tampered" in p for p in r.json["error"]["details"]["problems"])
        assert c.get("/api/models").json["models"] == []
        assert not list((tmp_path / "dst" / "artifacts").glob("sha256/*/*"))
        r = c.post("/api/import", data=b"not a zip", content_type="application/zip")
        assert r.status_code == 400
    finally:
        target.extensions["model_registry"].close()


@pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL is not set")
def test_api_round_trip_sqlite_to_postgres(source, tmp_path, request):
    with source.test_client().get("/api/export") as r:   # closes the temporary file
        assert r.status_code == 200 and r.mimetype == "application/zip"
        bundle_bytes = r.data
    pg = request.getfixturevalue("pg_schema_url")
    target = _app(tmp_path / "pgdata", database_url=pg, artifact_root=tmp_path / "pgart")
    try:
        c = target.test_client()
        dry = c.post("/api/import?dry_run=true", data=bundle_bytes, content_type="application/zip")
        assert dry.status_code == 200 and dry.json["import"]["dry_run"], dry.json
        assert c.get("/api/models").json["models"] == []
        done = c.post("/api/import", data=bundle_bytes, content_type="application/zip")
        assert done.status_code == 200 and done.json["import"]["models"] == ["lin", "other"]
        assert _answers(target) == _answers(source)
    finally:
        target.extensions["model_registry"].close()


def test_import_into_a_registry_that_has_other_models(source, tmp_path, sqlite_template):
    """Taken ids are remapped: versions, aliases and tags still point at the right rows."""
    file = _export(source, tmp_path / "b.zip")
    fresh_sqlite(sqlite_template, tmp_path / "dst" / "registry.db")
    target = _app(tmp_path / "dst")
    try:
        c = target.test_client()
        onnx_model(c, "zzz", "3.0.0")
        onnx_model(c, "zzz", "3.1.0")
        c.put("/api/models/zzz/aliases/prod", json={"version": "3.0.0"})
        with file.open("rb") as f:
            svc = target.extensions["model_registry"]
            report = bundle.import_bundle(svc.database, svc.artifacts, f)
        assert report["models"] == ["lin", "other"]
        assert c.get("/api/models/lin/versions/champion").json["version"]["version"] == "1.1.0"
        assert c.get("/api/models/zzz/versions/prod").json["version"]["version"] == "3.0.0"
        assert c.get("/api/models/other").json["model"]["tags"] == {"team": "risk"}
        assert [v["number"] for v in c.get("/api/models/lin/versions").json["versions"]] == \
            [4, 2, 1]
        assert c.post("/api/models/lin/predict", json={"input": [[1, 2, 3, 4]]}).status_code \
            == 200
    finally:
        target.extensions["model_registry"].close()
