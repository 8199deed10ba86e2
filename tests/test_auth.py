"""API keys and roles, end to end through the app."""
from __future__ import annotations

import pytest

from api.app import create_app


@pytest.fixture
def secured(data_dir):
    app = create_app({"TESTING": True, "data_dir": data_dir, "admin_token": "s3cret-admin"})
    yield app
    app.extensions["model_registry"].close()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_open_without_keys(client):
    assert client.post("/api/models/register", json={"name": "m"}).status_code == 201


def test_admin_token_enforces_auth_and_roles(secured):
    c = secured.test_client()
    # no key → 401 on every kind of endpoint, public health and docs stay open
    for method, url in [("post", "/api/models/register"), ("get", "/api/models"),
                        ("post", "/api/models/m/predict"), ("post", "/api/models/m/deploy"),
                        ("delete", "/api/models/m")]:
        r = getattr(c, method)(url, json={"name": "m"} if method == "post" else None)
        assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHENTICATED", url
    assert c.get("/healthz").status_code == 200 and c.get("/openapi.json").status_code == 200
    assert c.get("/api/models", headers=bearer("wrong")).status_code == 401
    admin = bearer("s3cret-admin")
    r = c.post("/api/keys", json={"name": "reader", "role": "read"}, headers=admin)
    assert r.status_code == 201 and r.json["token"].startswith("mr_")
    read = bearer(r.json["token"])
    writer_token = c.post("/api/keys", json={"name": "ci", "role": "write"},
                          headers=admin).json["token"]
    write = bearer(writer_token)
    assert c.post("/api/models/register", json={"name": "m"}, headers=read).status_code == 403
    assert c.post("/api/models/register", json={"name": "m"}, headers=write).status_code == 201
    assert c.get("/api/models", headers=read).status_code == 200
    r = c.post("/api/models/m/deploy", json={"version": "1.0.0"}, headers=read)
    assert r.status_code == 403 and r.json["error"]["code"] == "PERMISSION_DENIED"
    assert c.delete("/api/models/m", headers=write).status_code == 403
    assert c.get("/api/keys", headers=write).status_code == 403
    keys = c.get("/api/keys", headers=admin).json["keys"]
    assert {k["name"] for k in keys} == {"reader", "ci"}
    assert all("token" not in k for k in keys)


def test_audit_trail_records_the_key(secured):
    c = secured.test_client()
    token = c.post("/api/keys", json={"name": "deployer", "role": "write"},
                   headers=bearer("s3cret-admin")).json["token"]
    c.post("/api/models/register", json={"name": "audited"}, headers=bearer(token))
    from sqlalchemy import select
    from storage.schema import events
    with secured.extensions["model_registry"].database.read() as conn:
        actors = conn.execute(select(events.c.actor).where(events.c.model == "audited")).scalars()
        assert list(actors) == ["key:deployer"]


def test_revoked_key_stops_working(secured):
    c = secured.test_client()
    admin = bearer("s3cret-admin")
    r = c.post("/api/keys", json={"name": "tmp", "role": "read"}, headers=admin)
    token, key_id = r.json["token"], r.json["key"]["id"]
    assert c.get("/api/models", headers=bearer(token)).status_code == 200
    assert c.delete(f"/api/keys/{key_id}", headers=admin).json["key"]["active"] is False
    assert c.get("/api/models", headers=bearer(token)).status_code == 401
    assert c.delete("/api/keys/9999", headers=admin).status_code == 404


def test_keys_enforce_auth_without_admin_token(app, client, runner):
    result = runner.invoke(args=["keys", "create", "ops", "--role", "admin"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    app.extensions["model_registry.auth"].invalidate()
    assert client.get("/api/models").status_code == 401
    assert client.get("/api/models", headers=bearer(token)).status_code == 200
    listed = runner.invoke(args=["keys", "list"]).output
    assert "ops" in listed and token not in listed
    refused = runner.invoke(args=["keys", "revoke", "1"])   # the last admin key
    assert refused.exit_code != 0 and "last active admin key" in str(refused.exception)
    runner.invoke(args=["keys", "create", "reader", "--role", "read"])
    assert runner.invoke(args=["keys", "revoke", "2"]).exit_code == 0


@pytest.mark.parametrize("body", [{"name": "", "role": "read"}, {"name": "x", "role": "root"}])
def test_bad_key_requests(secured, body):
    r = secured.test_client().post("/api/keys", json=body, headers=bearer("s3cret-admin"))
    assert r.status_code == 400


def test_root_redirects_to_the_dashboard_even_with_auth_on(secured):
    r = secured.test_client().get("/")
    assert r.status_code in (301, 302, 308) and r.headers["Location"].endswith("/ui/")
