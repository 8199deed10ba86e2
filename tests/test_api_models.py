"""The registry's REST endpoints: seed bodies, errors as a new user meets them."""
from __future__ import annotations

import pytest


def register(client, name="sentiment", **extra):
    return client.post("/api/models/register", json={"name": name, **extra})


def test_seed_register_and_list(client):
    r = register(client, description="Sentiment analysis", tags={"team": "nlp"})
    assert r.status_code == 201 and r.json["model"]["name"] == "sentiment"
    r = client.post("/api/models/sentiment/versions/register",
                    json={"version": "1.0.0", "status": "stable",
                          "config": {"model": "gemini-2.5-flash"}})
    assert r.status_code == 201
    assert r.json["version"]["provider"] == "gemini" and r.json["version"]["status"] == "stable"
    models = client.get("/api/models").json
    assert [m["name"] for m in models["models"]] == ["sentiment"]
    assert models["next_page_token"] is None
    versions = client.get("/api/models/sentiment/versions").json["versions"]
    assert [v["version"] for v in versions] == ["1.0.0"]


@pytest.mark.parametrize("body, fragment", [
    ({}, "name"),
    ({"name": 5}, "name"),
    ({"name": "bad name"}, "pattern"),
    ({"name": "../etc/passwd"}, "pattern"),
    ({"name": "ok", "tags": {"a": 1}}, "tags"),
    ({"name": "ok", "tags": ["x"]}, "tags"),
    ({"name": "ok", "metadata": "x"}, "metadata"),
    ({"name": "ok", "unknown": 1}, "unknown"),
    ([1, 2], ""),
])
def test_bad_model_bodies_are_400(client, body, fragment):
    r = client.post("/api/models/register", json=body)
    assert r.status_code == 400
    assert r.json["error"]["code"] == "INVALID_ARGUMENT"
    assert fragment in r.json["error"]["message"]


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", "1.0.0-", "", "1.0.0.0"])
def test_bad_versions_are_400_with_the_valid_form(client, version):
    register(client)
    r = client.post("/api/models/sentiment/versions/register", json={"version": version})
    assert r.status_code == 400 and "1.0.0" in r.json["error"]["message"]


@pytest.mark.parametrize("body", [{"version": 1}, {"version": "1.0.0", "status": "gold"},
                                  {"version": "1.0.0", "config": []},
                                  {"version": "1.0.0", "provider": ""}])
def test_bad_version_bodies_are_400(client, body):
    register(client)
    r = client.post("/api/models/sentiment/versions/register", json=body)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_ARGUMENT"


def test_duplicates_are_409(client):
    register(client)
    assert register(client).status_code == 409
    client.post("/api/models/sentiment/versions/register", json={"version": "1.0.0"})
    r = client.post("/api/models/sentiment/versions/register", json={"version": "1.0.0+other"})
    assert r.status_code == 409 and r.json["error"]["code"] == "ALREADY_EXISTS"


def test_unknown_model_is_404(client):
    r = client.post("/api/models/ghost/versions/register", json={"version": "1.0.0"})
    assert r.status_code == 404 and "ghost" in r.json["error"]["message"]
    assert client.get("/api/models/ghost").status_code == 404
    assert client.get("/api/models/ghost/versions").status_code == 404
    assert client.get("/api/models/ghost/versions/latest").status_code == 404


def test_malformed_json_wrong_type_and_huge_bodies(client, app):
    r = client.post("/api/models/register", data="{not json", content_type="application/json")
    assert r.status_code == 400 and r.json["error"]["message"] == "request body is not valid JSON"
    r = client.post("/api/models/register", data="name=x",
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415 and r.json["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    huge = '{"name": "x", "description": "' + "a" * (app.config["MAX_CONTENT_LENGTH"] + 1) + '"}'
    r = client.post("/api/models/register", data=huge, content_type="application/json")
    assert r.status_code == 413 and r.json["error"]["code"] == "TOO_LARGE"
    deep = "[" * 100_000 + "]" * 100_000
    r = client.post("/api/models/register", data=deep, content_type="application/json")
    assert r.status_code == 400


def test_flask_404_and_405_speak_json(client):
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.json["error"]["code"] == "NOT_FOUND"
    r = client.put("/api/models/register", json={})
    assert r.status_code == 405 and r.json["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_get_patch_delete_model(client):
    register(client, tags={"a": "1"})
    assert client.get("/api/models/sentiment").json["model"]["tags"] == {"a": "1"}
    r = client.patch("/api/models/sentiment", json={"description": "new", "tags": {"b": "2"}})
    assert r.status_code == 200 and r.json["model"]["description"] == "new"
    assert client.patch("/api/models/sentiment", json={"tags": "x"}).status_code == 400
    assert client.delete("/api/models/sentiment").status_code == 204
    assert client.get("/api/models/sentiment").status_code == 404


def test_versions_get_by_latest_alias_and_range_and_patch(client):
    register(client)
    for v in ("1.0.0", "1.2.0", "2.0.0-beta.1"):
        client.post("/api/models/sentiment/versions/register", json={"version": v})
    assert client.get("/api/models/sentiment/versions/latest").json["version"]["version"] == "1.2.0"
    assert client.get("/api/models/sentiment/versions/~1.0").json["version"]["version"] == "1.0.0"
    r = client.put("/api/models/sentiment/aliases/production", json={"version": "1.0.0"})
    assert r.status_code == 200 and r.json["alias"]["version"] == "1.0.0"
    assert client.get("/api/models/sentiment/versions/production").json["version"][
        "aliases"] == ["production"]
    r = client.patch("/api/models/sentiment/versions/1.2.0", json={"status": "stable"})
    assert r.status_code == 200 and r.json["version"]["status"] == "stable"
    r = client.patch("/api/models/sentiment/versions/1.2.0", json={"config": {}})
    assert r.status_code == 400  # content is immutable
    assert client.delete("/api/models/sentiment/aliases/production").status_code == 204
    assert client.delete("/api/models/sentiment/aliases/production").status_code == 404
    r = client.get("/api/models/sentiment/versions?range=^1.0&status=experimental")
    assert [v["version"] for v in r.json["versions"]] == ["1.0.0"]


def test_list_pagination_and_bad_queries(client):
    for i in range(5):
        register(client, name=f"m{i}")
    r = client.get("/api/models?limit=2")
    assert [m["name"] for m in r.json["models"]] == ["m0", "m1"]
    r = client.get(f"/api/models?limit=2&page_token={r.json['next_page_token']}")
    assert [m["name"] for m in r.json["models"]] == ["m2", "m3"]
    for query in ("limit=0", "limit=abc", "limit=100000", "page_token=%%%", "tag=novalue"):
        r = client.get(f"/api/models?{query}")
        assert r.status_code == 400, query


def test_health_and_openapi(client):
    assert client.get("/healthz").json["status"] == "ok"
    assert client.get("/readyz").json["checks"]["database"] == "ok"
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    assert "/api/models/register" in spec["paths"]
    assert client.get("/docs/swagger/").status_code == 200


def test_cli_db_upgrade(runner):
    result = runner.invoke(args=["db-upgrade"])
    assert result.exit_code == 0 and "newest revision" in result.output


@pytest.mark.slow   # a real server process
def test_seed_calls_against_a_running_server(live_server):
    """The seed's curl calls, as requests against `python api/app.py`."""
    import requests
    url = live_server.url
    r = requests.post(f"{url}/api/models/register",
                      data='{"name": "sentiment-analyzer", "description": "Sentiment analysis"}',
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 201
    r = requests.post(f"{url}/api/models/sentiment-analyzer/versions/register",
                      data='{"version": "1.0.0", "status": "stable", '
                           '"config": {"model": "gemini-2.5-flash"}}',
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 201 and r.json()["version"]["provider"] == "gemini"
    assert [m["name"] for m in requests.get(f"{url}/api/models").json()["models"]] == [
        "sentiment-analyzer"]
    versions = requests.get(f"{url}/api/models/sentiment-analyzer/versions").json()["versions"]
    assert [v["version"] for v in versions] == ["1.0.0"]


def test_closing_an_app_stops_its_metrics_flusher(app):
    """An app's services, once closed, leave no thread behind (a flusher per app that tests or
    an embedding program build and close would otherwise run until the process ends)."""
    collector = app.extensions["model_registry"].collector
    flusher = collector._thread
    assert flusher is not None and flusher.is_alive()
    app.extensions["model_registry"].close()
    assert not flusher.is_alive()
