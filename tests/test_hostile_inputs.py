"""Hostile inputs, tested explicitly (schemathesis fuzzes the spec; these are the known attacks).

Path traversal in every name a URL carries, oversized bodies, deeply nested JSON, awkward
Unicode, SQL meta-characters, numbers JSON cannot carry, header injection. The rule throughout
(DESIGN §4): bad input gets a 4xx with the error shape, never a 500, and nothing is written
outside the data dir.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import MAX_JSON_DEPTH, create_app
from models.onnx_examples import linear_model
from tests.conftest import fresh_sqlite, shared_app

JSON = {"Content-Type": "application/json"}
OCTETS = "application/octet-stream"


def strict_json(data: bytes):
    """Parse as RFC 8259 JSON: NaN / Infinity are not JSON."""
    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")
    return json.loads(data, parse_constant=refuse)


def assert_error(r, *statuses: int) -> None:
    assert r.status_code in statuses, (r.status_code, r.get_data(as_text=True)[:300])
    body = strict_json(r.data)
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]


def serve_m(client: FlaskClient) -> FlaskClient:
    """Model 'm' with 1.0.0 (stable, ONNX, uploaded), so routes reach their lookups."""
    client.post("/api/models/register", json={"name": "m"})
    r = client.post("/api/models/m/versions/register",
                    json={"version": "1.0.0", "provider": "onnx", "status": "stable"})
    assert r.status_code == 201, r.json
    r = client.put("/api/models/m/versions/1.0.0/artifact", data=linear_model(),
                   content_type=OCTETS)
    assert r.status_code == 201, r.json
    return client


def add_catalogue(client: FlaskClient) -> FlaskClient:
    for name, team in [("alpha", "a"), ("axb", "b"), ("a_b", "O'Brien"), ("a-b", "100%"),
                       ("c.d", "x_y"), ("cxd", "xzy"), ("back", "a\\b")]:
        r = client.post("/api/models/register", json={"name": name, "tags": {"team": team}})
        assert r.status_code == 201, r.json
    return client


# Most tests here only send requests that must be refused, or reads: they share one app per
# kind of registry (module-wide). What they could change is read after each; a test that
# changed it is an error there, instead of a puzzle in the tests after it.
STATE = ["/api/models", "/api/models/m/versions", "/api/models/m/aliases", "/api/deployments",
         "/api/snapshots", "/api/rollbacks", "/api/alerts", "/api/models/m/traffic"]


class Shared:
    """A module's shared app, and its state as its tests found it."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()
        self.state = self.read()

    def read(self) -> list[bytes]:
        return [self.client.get(path).get_data() for path in STATE]

    def unchanged(self) -> Iterator[FlaskClient]:
        yield self.client
        assert self.read() == self.state, "the test changed the registry its module shares"


@pytest.fixture(scope="module")
def served_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def served_app(request: pytest.FixtureRequest, served_root: Path) -> Iterator[Shared]:
    with shared_app(request, served_root) as app:
        serve_m(app.test_client())
        yield Shared(app)


@pytest.fixture
def served(served_app: Shared) -> Iterator[FlaskClient]:
    """``serve_m`` on the module's shared app, for tests that change nothing."""
    yield from served_app.unchanged()


@pytest.fixture
def fresh(client: FlaskClient) -> FlaskClient:
    """``serve_m`` on the test's own app, for tests that register or change things."""
    return serve_m(client)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# -- path traversal -----------------------------------------------------------------------------

TRAVERSALS = [
    "..%2F..%2Fetc%2Fpasswd", "..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%252F..%252Fetc%252Fpasswd", "..", "...", "%2e%2e", ".%2F.", "a%2Fb", "a%00b", "%00",
    "a%5Cb", "..%5C..%5Cwindows%5Cwin.ini", "..%EF%BC%8Fetc", "m%0D%0AX-Injected:%201",
    "%C0%AE%C0%AE%2Fx", "m;rm%20-rf", "m%20", "%20m",
]


@pytest.mark.parametrize("evil", TRAVERSALS)
def test_path_traversal_in_urls_is_refused_and_writes_nothing_outside(served, served_root, evil):
    before = files_under(served_root)
    data_dir = served_root / "data"
    requests_ = [
        ("GET", f"/api/models/{evil}", None),
        ("PATCH", f"/api/models/{evil}", {"description": "x"}),
        ("DELETE", f"/api/models/{evil}", None),
        ("GET", f"/api/models/{evil}/versions", None),
        ("POST", f"/api/models/{evil}/versions/register", {"version": "1.0.0"}),
        ("GET", f"/api/models/m/versions/{evil}", None),
        ("PATCH", f"/api/models/m/versions/{evil}", {"description": "x"}),
        ("GET", f"/api/models/m/versions/{evil}/artifact", None),
        ("PUT", f"/api/models/{evil}/versions/1.0.0/artifact", b"evil bytes"),
        ("PUT", f"/api/models/m/versions/{evil}/artifact", b"evil bytes"),
        ("PUT", f"/api/models/m/aliases/{evil}", {"version": "1.0.0"}),
        ("DELETE", f"/api/models/m/aliases/{evil}", None),
        ("POST", f"/api/models/{evil}/predict", {"input": [[1, 2, 3, 4]]}),
        ("POST", f"/api/models/{evil}/deploy", {"version": "1.0.0"}),
        ("POST", f"/api/models/{evil}/rollback", {}),
        ("GET", f"/api/models/{evil}/metrics", None),
        ("GET", f"/api/models/{evil}/traffic", None),
        ("GET", f"/api/snapshots/{evil}", None),
        ("DELETE", f"/api/snapshots/{evil}", None),
        ("POST", f"/api/snapshots/{evil}/restore", {}),
        ("GET", f"/api/deployments/{evil}", None),
        ("POST", f"/api/deployments/{evil}/abort", {}),
    ]
    for method, path, body in requests_:
        if isinstance(body, bytes):
            r = served.open(path, method=method, data=body, content_type=OCTETS)
        else:
            r = served.open(path, method=method, json=body)
        if evil in ("m%20", "%20m") and r.status_code == 200:
            continue   # werkzeug may strip the blank: then it is just model 'm'
        assert_error(r, 400, 404, 405)
        assert b"root:" not in r.data
    # Only the data dir changed (the SQLite file and its WAL), and no artifact appeared.
    new = files_under(served_root) - before
    assert all(data_dir in p.parents for p in new), new
    assert not [p for p in new if "sha256" in p.parts]


@pytest.mark.parametrize("name", ["../x", "..", ".", "a/b", "a\\b", "a\x00b", "m\n", ".hidden",
                                  "-rf", "x" * 129, "é", "ok\u200b", "", " m", "..\\..\\x"])
def test_hostile_names_in_bodies_are_400(served, name):
    assert_error(served.post("/api/models/register", json={"name": name}), 400)
    assert_error(served.post("/api/snapshots", json={"model": name}), 400)


@pytest.mark.parametrize("version", ["../1.0.0", "1.0.0/../..", "1.0.0\x00", "1.0.0\n",
                                     "1.0.0-a/b", "1.0.0+../x", "1.0.0-..", "1.0.0-\u0661",
                                     "99999999999999999999.0.0", "1.0.0\\..\\x"])
def test_hostile_versions_in_bodies_are_400(fresh, version):
    r = fresh.post("/api/models/m/versions/register", json={"version": version,
                                                             "provider": "onnx"})
    assert_error(r, 400)
    r = fresh.post("/api/models/m/deploy", json={"version": version})
    if r.status_code in (201, 202):   # a reference may be a range, and ranges ignore blanks
        assert version.strip() == "1.0.0" and r.json["deployment"]["version"] == "1.0.0"
    else:
        assert_error(r, 400, 404)


def test_artifact_paths_come_from_the_digest_only(fresh, tmp_path):
    """The store names files by sha256: whatever the URL, bytes land in sha256/xx/<digest>."""
    fresh.post("/api/models/m/versions/register", json={"version": "1.1.0", "provider": "onnx"})
    r = fresh.put("/api/models/m/versions/1.1.0/artifact", data=b"../../etc/passwd\x00",
                   content_type=OCTETS)
    assert r.status_code == 201
    digest = r.json["version"]["artifact"]["digest"]
    blobs = [p for p in (tmp_path / "data" / "artifacts").rglob("*") if p.is_file()]
    assert {p.parent.parent.name for p in blobs} == {"sha256"}
    assert digest in {p.name for p in blobs}


# -- oversized bodies ---------------------------------------------------------------------------

def test_oversized_bodies_are_413(served):
    limit = served.application.extensions["model_registry"].settings.max_body_bytes
    big = b'{"name":"big","description":"' + b"x" * (limit + 1) + b'"}'
    assert_error(served.post("/api/models/register", data=big, headers=JSON), 413)
    big = b'{"input":[' + b"1," * (limit // 2) + b"1]}"
    assert_error(served.post("/api/models/m/predict", data=big, headers=JSON), 413)
    assert served.get("/api/models/big").status_code == 404


def test_oversized_artifact_is_413_and_leaves_no_temp_file(tmp_path, sqlite_template):
    fresh_sqlite(sqlite_template, tmp_path / "small" / "registry.db")
    app = create_app({"TESTING": True, "data_dir": tmp_path / "small",
                      "max_artifact_bytes": 1000})
    client = app.test_client()
    client.post("/api/models/register", json={"name": "m"})
    client.post("/api/models/m/versions/register", json={"version": "1.0.0", "provider": "onnx"})
    r = client.put("/api/models/m/versions/1.0.0/artifact", data=b"x" * 5000,
                   content_type=OCTETS)
    assert_error(r, 413)
    assert client.get("/api/models/m/versions/1.0.0").json["version"]["artifact"] is None
    assert not [p for p in (tmp_path / "small" / "artifacts").rglob("*") if p.is_file()]
    app.extensions["model_registry"].database.dispose()


# -- deep nesting -------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 990, 100_000])
def test_deeply_nested_json_is_400_not_500(served, depth):
    lists = "[" * depth + "]" * depth
    objects = '{"a":' * depth + "1" + "}" * depth
    for path, body in [
        ("/api/models/register", '{"name":"deep","metadata":%s}' % objects),
        ("/api/models/register", '{"name":"deep","metadata":{"a":%s}}' % lists),
        ("/api/models/m/predict", '{"input":%s}' % lists),
        ("/api/models/m/versions/register", '{"version":"2.0.0","metadata":%s}' % objects),
        ("/api/models/m/deploy", '{"version":"1.0.0","analysis":%s}' % objects),
        ("/api/snapshots", lists),
    ]:
        assert_error(served.post(path, data=body, headers=JSON), 400)
    assert_error(served.patch("/api/models/m", data='{"metadata":%s}' % objects,
                              headers=JSON), 400)
    # Nothing half-stored that would break a listing for everyone else.
    assert served.get("/api/models/deep").status_code == 404
    assert served.get("/api/models").status_code == 200
    assert served.get("/api/models/m/versions").status_code == 200


def test_reasonable_nesting_round_trips(fresh):
    depth = 20
    nested = 1
    for _ in range(depth):
        nested = {"a": [nested]}
    r = fresh.post("/api/models/register", json={"name": "nested", "metadata": nested})
    assert r.status_code == 201
    assert fresh.get("/api/models/nested").json["model"]["metadata"] == nested


# -- Unicode ------------------------------------------------------------------------------------

AWKWARD = ["emoji 😀🚀👩‍👩‍👧", "RTL \u202eevil\u202c עברית العربية", "combining e\u0301 a\u0308",
           "zero\u200bwidth\ufeffbom", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 astral", "\u0000NUL inside"]


@pytest.mark.parametrize("text", AWKWARD)
def test_unicode_round_trips_or_is_refused_cleanly(fresh, text):
    tags = {"lang": text[:500], text[:100]: "v"}
    r = fresh.post("/api/models/register",
                    json={"name": "uni", "description": text, "tags": tags})
    if r.status_code == 400:   # e.g. NUL, which PostgreSQL cannot store
        assert_error(r, 400)
        assert "\u0000" in text
        return
    assert r.status_code == 201, r.json
    got = fresh.get("/api/models/uni").json["model"]
    assert got["description"] == text and got["tags"] == tags
    r = fresh.patch("/api/models/m/versions/1.0.0", json={"description": text, "tags": tags})
    assert r.status_code == 200
    got = fresh.get("/api/models/m/versions/1.0.0").json["version"]
    assert got["description"] == text and got["tags"] == tags
    assert [m["name"] for m in fresh.get("/api/models?tag=" + quote(f"lang:{text[:500]}"))
            .json["models"]] == ["uni"]


@pytest.mark.parametrize("path,body", [
    ("/api/models/register", '{"name":"s1","description":"\\ud800"}'),
    ("/api/models/register", '{"name":"s2","tags":{"k":"\\udfff"}}'),
    ("/api/models/register", '{"name":"s3","tags":{"\\udfff":"v"}}'),
    ("/api/models/m/predict", '{"input":[[1,2,3,4]],"key":"\\ud800"}'),
    ("/api/models/m/rollback", '{"reason":"\\ud800"}'),
    ("/api/snapshots", '{"reason":"\\udc00"}'),
    ("/api/models/m/deploy", '{"version":"1.0.0","reason":"\\ud800"}'),
])
def test_lone_surrogates_are_400(served, path, body):
    assert_error(served.post(path, data=body, headers=JSON), 400)


def test_lone_surrogates_in_json_columns_round_trip_or_are_400(fresh):
    """Free-form metadata and version tags are stored as JSON (escaped): they may keep a lone
    surrogate, and then give it back exactly."""
    r = fresh.post("/api/models/register", data='{"name":"sur","metadata":{"k":"\\ud800"}}',
                    headers=JSON)
    if r.status_code == 400:
        assert_error(r, 400)
    else:
        assert r.status_code == 201
        assert fresh.get("/api/models/sur").json["model"]["metadata"] == {"k": "\ud800"}
    r = fresh.post("/api/models/m/versions/register",
                    data='{"version":"3.0.0","provider":"onnx","tags":{"\\ud800":"v"}}',
                    headers=JSON)
    if r.status_code == 400:
        assert_error(r, 400)
    else:
        assert r.status_code == 201
        assert fresh.get("/api/models/m/versions/3.0.0").json["version"]["tags"] == {
            "\ud800": "v"}


def test_invalid_utf8_and_unicode_names_are_400(served):
    assert_error(served.post("/api/models/register", data=b'{"name":"x","description":"\xff\xfe"}',
                             headers=JSON), 400)
    assert_error(served.post("/api/models/register", data=b"\xef\xbb\xbf{}", headers=JSON), 400)
    assert served.get("/api/models?q=%ED%A0%80").status_code == 200   # decoded with U+FFFD


# -- SQL meta-characters ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def catalogue_app(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    with shared_app(request, tmp_path_factory.mktemp("catalogue")) as app:
        add_catalogue(app.test_client())
        yield Shared(app)


@pytest.fixture
def catalogue(catalogue_app: Shared) -> Iterator[FlaskClient]:
    """Seven models whose names and tags hold SQL meta-characters (module-wide, read only)."""
    yield from catalogue_app.unchanged()


@pytest.mark.parametrize("q,expected", [
    ("' OR 1=1 --", []), ("%", []), ("_", ["a_b"]), ("\\", []), ("a_b", ["a_b"]),
    ("a%b", []), ("'", []), ('"', []), ("a'; DROP TABLE models; --", []), ("%%", []),
    ("[a-z]", []), ("*", []), (".", ["c.d"]), ("x", ["axb", "cxd"]), ("A_B", ["a_b"]),
])
def test_name_search_takes_meta_characters_literally(catalogue, q, expected):
    r = catalogue.get("/api/models?q=" + quote(q))
    assert r.status_code == 200
    assert sorted(m["name"] for m in r.json["models"]) == expected


@pytest.mark.parametrize("tag,expected", [
    ("team:O'Brien", ["a_b"]), ("team:100%", ["a-b"]), ("team:%", []), ("team:_", []),
    ("team:x_y", ["c.d"]), ("team:' OR 1=1 --", []), ("team:*", []), ("%:%", []),
    ("team:a\\b", ["back"]), ("team:a\\\\b", []), ("'--:x", []), ("team:", []),
])
def test_tag_filter_takes_meta_characters_literally(catalogue, tag, expected):
    r = catalogue.get("/api/models?tag=" + quote(tag))
    assert r.status_code == 200
    assert sorted(m["name"] for m in r.json["models"]) == expected


@pytest.mark.parametrize("evil", ["' OR 1=1 --", "%", "_", "\\", "'; DROP TABLE models; --",
                                  "\"", "1; SELECT pg_sleep(5)", "a%00b"])
def test_meta_characters_anywhere_never_500(catalogue, evil):
    q = quote(evil)
    for path in [f"/api/models?q={q}", f"/api/models?tag=team:{q}", f"/api/models?tag={q}:x",
                 f"/api/models/alpha/versions?status={q}", f"/api/models/alpha/versions?range={q}",
                 f"/api/models/alpha/versions/{q}", f"/api/deployments?model={q}",
                 f"/api/deployments?state={q}", f"/api/alerts?model={q}",
                 f"/api/rollbacks?model={q}", f"/api/snapshots?model={q}",
                 f"/api/models/alpha/metrics?window={q}", f"/api/models/alpha/metrics?version={q}",
                 f"/api/models?limit={q}", f"/api/models?page_token={q}",
                 f"/api/models/alpha/traffic?at={q}", f"/api/models/alpha/compare?v1={q}&v2={q}",
                 f"/api/snapshots/{q}", f"/api/deployments/{q}", f"/api/models/{q}"]:
        r = catalogue.get(path)
        assert r.status_code in (200, 400, 404), (path, r.status_code, r.data[:200])
        if r.status_code == 200 and path.startswith("/api/models?"):
            assert len(r.json["models"]) <= 1, path   # never "everything"
    assert len(catalogue.get("/api/models").json["models"]) == 7   # no table was dropped


# -- numbers ------------------------------------------------------------------------------------

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", "1" + "0" * 400 + ".0",
              "123.4e+400"]


@pytest.mark.parametrize("number", NON_FINITE)
def test_numbers_json_cannot_carry_are_400(served, number):
    for path, body in [
        ("/api/models/m/predict", '{"input":[[%s,1,1,1]]}' % number),
        ("/api/models/register", '{"name":"n","metadata":{"x":%s}}' % number),
        ("/api/models/m/versions/register", '{"version":"4.0.0","metadata":[%s]}' % number),
        ("/api/models/m/deploy",
         '{"version":"1.0.0","strategy":"canary","analysis":{"interval_s":%s}}' % number),
    ]:
        assert_error(served.post(path, data=body, headers=JSON), 400)
    assert served.get("/api/models/n").status_code == 404


def test_numbers_at_the_edges_are_handled(fresh):
    r = fresh.post("/api/models/m/predict", data='{"input":[[-0.0,1e-320,3e38,0]]}',
                    headers=JSON)
    assert r.status_code in (200, 400)
    strict_json(r.data)
    r = fresh.post("/api/models/register",
                    data='{"name":"edges","metadata":{"z":-0.0,"big":%s,"tiny":5e-324}}'
                    % ("9" * 30), headers=JSON)
    assert r.status_code == 201
    meta = fresh.get("/api/models/edges").json["model"]["metadata"]
    assert meta["big"] == int("9" * 30) and meta["tiny"] == 5e-324 and meta["z"] == 0
    # More digits than Python parses as an int, huge limits, counts and steps.
    assert_error(fresh.post("/api/models/register",
                             data='{"name":"h","metadata":{"x":%s}}' % ("9" * 5000),
                             headers=JSON), 400)
    for path in ["/api/models?limit=" + "9" * 40, "/api/models?limit=-0",
                 "/api/models?limit=NaN", "/api/models?limit=1e309",
                 "/api/models/m/metrics?window=" + "9" * 40 + "h",
                 "/api/models/m/traffic?at=" + "9" * 40]:
        assert_error(fresh.get(path), 400)
    for body in ['{"version":"1.0.0","strategy":"canary","steps":[10,%s]}' % ("9" * 40),
                 '{"version":"1.0.0","strategy":"canary","analysis":{"min_requests":%s}}'
                 % ("9" * 40),
                 '{"version":"1.0.0","strategy":"canary","analysis":{"deadline_s":-0.0}}']:
        assert_error(fresh.post("/api/models/m/deploy", data=body, headers=JSON), 400)
    assert_error(fresh.delete("/api/keys/" + "9" * 40), 404)


def test_prediction_answers_are_always_json(served):
    r = served.post("/api/models/m/predict", json={"input": [[1e39, -1e39, 1, 1]]})
    assert r.status_code in (200, 400, 502)
    strict_json(r.data)


# -- headers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc\r\nSet-Cookie: evil=1\r\n\r\n<html>", "k" * 10_000,
                                   "\xff\xfe latin-1", "a\x00b", "\t ", "../../etc/passwd"])
def test_routing_key_header_is_only_ever_hashed(served, value):
    r = served.post("/api/models/m/predict", json={"input": [[1, 2, 3, 4]]},
                    environ_overrides={"HTTP_X_ROUTING_KEY": value})
    assert r.status_code == 200, r.json
    assert "Set-Cookie" not in r.headers and "evil" not in str(r.headers)
    assert r.json["version"] == "1.0.0"
    again = served.post("/api/models/m/predict", json={"input": [[1, 2, 3, 4]]},
                        environ_overrides={"HTTP_X_ROUTING_KEY": value})
    assert again.json["routed_by"] == r.json["routed_by"]


# -- names: '$' must not accept a trailing newline -----------------------------------------------

def test_alias_with_a_trailing_newline_is_refused(served):
    assert_error(served.put("/api/models/m/aliases/prod%0A", json={"version": "1.0.0"}), 400)
