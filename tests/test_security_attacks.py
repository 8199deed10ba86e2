"""Issue 21: each finding's attack, replayed against a real server process (``python
api/app.py``), and shown to hold. Finding 4 (slow clients, under gunicorn) is in
test_security_slow_clients.py.

Two servers per module: ``open_server`` starts with authentication off (findings 1 and 8 are
about that state, and finding 1's test switches it on), ``server`` runs with an admin token and
small limits, and the attacker holds only a read key.
"""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto as T
from onnx import helper

from models.onnx_examples import linear_model
from tests.support import LiveServer, wait_until

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer the-admin-token"}
OVERFLOW = [[-3e38, -3e38, 3e38, 3e38]]   # finite in, non-finite out (of a sum)


def sum_model() -> bytes:
    return linear_model(weights=np.ones((4, 2), dtype=np.float32))
LIMITS = {"ONNX_TIMEOUT_S": "1", "ONNX_MEMORY_BYTES": str(256 * 1024 ** 2),
          "MAX_OUTPUT_BYTES": str(1024 ** 2), "MAX_LOADED_VERSIONS": "3",
          "MAX_SERIES_VERSIONS": "3", "MAX_RESPONSE_BYTES": str(256 * 1024),
          "AUTO_ROLLBACK_MIN_REQUESTS": "10"}


# -- models an attacker's input can make expensive ------------------------------------------------
def _model(graph: onnx.GraphProto) -> bytes:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def loop_model() -> bytes:
    """``out = n`` computed by a Loop of ``n`` iterations: the input sets the work."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])], "body",
        [helper.make_tensor_value_info("i", T.INT64, []),
         helper.make_tensor_value_info("cond_in", T.BOOL, []),
         helper.make_tensor_value_info("acc_in", T.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", T.BOOL, []),
         helper.make_tensor_value_info("acc_out", T.FLOAT, [1])],
        initializer=[helper.make_tensor("one", T.FLOAT, [1], [1.0])])
    return _model(helper.make_graph(
        [helper.make_node("ReduceMax", ["n"], ["m"], keepdims=0),
         helper.make_node("Loop", ["m", "cond", "zero"], ["out"], body=body)], "loop",
        [helper.make_tensor_value_info("n", T.INT64, [1])],
        [helper.make_tensor_value_info("out", T.FLOAT, [1])],
        initializer=[helper.make_tensor("cond", T.BOOL, [], [True]),
                     helper.make_tensor("zero", T.FLOAT, [1], [0.0])]))


def fill_model(reduce: bool) -> bytes:
    """``ConstantOfShape(shape)``: the input sets the memory (and, unreduced, the output)."""
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                              value=helper.make_tensor("v", T.FLOAT, [1], [1.0]))]
    if reduce:
        nodes.append(helper.make_node("ReduceSum", ["big"], ["out"], keepdims=0))
    return _model(helper.make_graph(
        nodes, "fill", [helper.make_tensor_value_info("shape", T.INT64, [1])],
        [helper.make_tensor_value_info("out" if reduce else "big", T.FLOAT,
                                       [] if reduce else None)]))


# -- servers --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory):
    server = LiveServer(tmp_path_factory.mktemp("open")).start()
    yield server
    server.stop()


class Api:
    def __init__(self, server: LiveServer, headers: dict[str, str]) -> None:
        self.server, self.url, self.headers = server, server.url, headers

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, headers=self.headers, timeout=30, **kw)

    def post(self, path: str, body=None, **kw) -> requests.Response:
        return requests.post(self.url + path, json=body, headers=self.headers, timeout=30, **kw)

    def put(self, path: str, data: bytes) -> requests.Response:
        return requests.put(self.url + path, data=data, timeout=30,
                            headers={**self.headers, "Content-Type": "application/octet-stream"})

    def version(self, model: str, version: str, artifact: bytes, **extra) -> None:
        if self.get(f"/api/models/{model}").status_code == 404:
            assert self.post("/api/models/register", {"name": model}).status_code == 201
        r = self.post(f"/api/models/{model}/versions/register",
                      {"version": version, "provider": "onnx", **extra})
        assert r.status_code == 201, r.text
        assert self.put(f"/api/models/{model}/versions/{version}/artifact",
                        artifact).status_code in (200, 201)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    s = LiveServer(tmp_path_factory.mktemp("secured"),
                   env={"REGISTRY_ADMIN_TOKEN": "the-admin-token", **LIMITS}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> Api:
    return Api(server, ADMIN)


@pytest.fixture(scope="module")
def reader(admin: Api) -> Api:
    token = admin.post("/api/keys", {"name": "attacker", "role": "read"}).json()["token"]
    return Api(admin.server, {"Authorization": f"Bearer {token}"})


def deploy(api: Api, model: str, version: str, **body) -> dict:
    """Deploy; the deployment as it stands once its health check is over. The check runs inside
    the call (issue 12): a failing one answers 409 naming the deployment, recorded `failed`."""
    r = api.post(f"/api/models/{model}/deploy", {"version": version, **body})
    if r.status_code == 409:
        dep_id = r.json()["error"]["details"]["deployment_id"]
    else:
        assert r.status_code in (201, 202), r.text
        dep_id = r.json()["deployment"]["id"]

    def settled():
        dep = api.get(f"/api/deployments/{dep_id}").json()["deployment"]
        return dep if dep["state"] not in ("pending", "health_check") else None
    return wait_until(settled)


# -- finding 8 and 1: auth off is local only; once on, it stays on ----------------------------------
def test_8_auth_off_refuses_foreign_host_headers(open_server):
    """A page whose name was rebound to 127.0.0.1 still sends its own name in Host."""
    url = open_server.url
    for host in ("attacker.example", f"attacker.example:{open_server.port}", "127.0.0.1.nip.io"):
        r = requests.post(url + "/api/keys", json={"name": "pwn", "role": "admin"},
                          headers={"Host": host}, timeout=10)
        assert r.status_code == 403 and r.json()["error"]["details"]["reason"] == \
            "auth_off_local_only", r.text
        assert requests.get(url + "/api/models", headers={"Host": host},
                            timeout=10).status_code == 403
    assert requests.get(url + "/api/models", timeout=10).status_code == 200   # 127.0.0.1:port
    assert requests.get(url + "/api/models", headers={"Host": f"localhost:{open_server.port}"},
                        timeout=10).status_code == 200


def _outward_address() -> str | None:
    """This machine's first non-loopback IPv4 address, if it has one."""
    import socket
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))   # no packet is sent: this only picks the route
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_1_auth_off_refuses_other_machines_whatever_the_bind(tmp_path: Path):
    """Bound to 0.0.0.0 by hand (not through gunicorn.conf.py, which would refuse): a peer
    that is not this machine's loopback is refused, even naming a loopback Host."""
    import os
    import subprocess
    import sys

    from tests.support import ROOT, free_port
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    port = free_port()
    env = {**os.environ, "REGISTRY_DATA_DIR": str(tmp_path / "data")}
    with open(tmp_path / "gunicorn.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "/dev/null", "-b", f"0.0.0.0:{port}",
                                 "api.app:create_app()"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        local = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(local + "/healthz"))
        outside = f"http://{address}:{port}"
        for headers in ({}, {"Host": f"127.0.0.1:{port}"}):
            r = requests.post(outside + "/api/keys", json={"name": "pwn", "role": "admin"},
                              headers=headers, timeout=10)
            assert r.status_code == 403, r.text
        assert requests.get(local + "/api/models", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def test_1_revoking_keys_never_turns_auth_off(open_server):
    url = open_server.url
    first = requests.post(url + "/api/keys", json={"name": "owner", "role": "admin"},
                          timeout=10).json()
    owner = {"Authorization": f"Bearer {first['token']}"}
    time.sleep(1.2)   # past the authenticator's "enabled" cache
    assert requests.get(url + "/api/models", timeout=10).status_code == 401
    # the last admin key cannot be revoked, and says why
    r = requests.delete(f"{url}/api/keys/{first['key']['id']}", headers=owner, timeout=10)
    assert r.status_code == 409 and "last active admin key" in r.json()["error"]["message"]
    # with a second admin, the first can go; then every key but that admin
    second = requests.post(url + "/api/keys", json={"name": "deputy", "role": "admin"},
                           headers=owner, timeout=10).json()
    deputy = {"Authorization": f"Bearer {second['token']}"}
    reader = requests.post(url + "/api/keys", json={"name": "r", "role": "read"},
                           headers=owner, timeout=10).json()
    for key in (first, reader):
        assert requests.delete(f"{url}/api/keys/{key['key']['id']}", headers=deputy,
                               timeout=10).status_code == 200
    time.sleep(1.5)
    # the attack of finding 1: nobody may now create an admin key without one
    r = requests.post(url + "/api/keys", json={"name": "pwn", "role": "admin"}, timeout=10)
    assert r.status_code == 401
    assert requests.get(url + "/api/models", timeout=10).status_code == 401
    assert requests.get(url + "/api/models", headers=deputy, timeout=10).status_code == 200
    # restarting keeps it on: the state is in the database
    open_server.stop()
    open_server.start()
    assert requests.get(url + "/api/models", timeout=10).status_code == 401


# -- finding 2: a read key cannot force a rollback or abort a canary ------------------------------
def test_2_caller_caused_failures_never_count_against_a_version(admin, reader):
    admin.version("ovf", "1.0.0", sum_model())
    admin.version("ovf", "1.1.0", sum_model())
    deploy(admin, "ovf", "1.0.0")
    deploy(admin, "ovf", "1.1.0")
    for _ in range(30):
        r = reader.post("/api/models/ovf/predict", {"input": OVERFLOW})
        assert r.status_code == 400 and r.json()["error"]["details"]["reason"] == \
            "non_finite_output", r.text
    # refused pins: a version without an artifact, pinned by the caller
    admin.post("/api/models/ovf/versions/register", {"version": "2.0.0", "provider": "onnx"})
    for _ in range(30):
        assert reader.post("/api/models/ovf/predict",
                           {"input": [[1, 2, 3, 4]], "version": "2.0.0"}).status_code == 409
    time.sleep(3.0)   # several watcher ticks and collector flushes
    traffic = admin.get("/api/models/ovf/traffic").json()["traffic"]
    assert traffic["weights"] == {"1.1.0": 100}
    assert admin.get("/api/rollbacks?model=ovf").json()["rollbacks"] == []
    assert admin.get("/api/alerts?model=ovf&active=true").json()["alerts"] == []
    routed = admin.get("/api/models/ovf/metrics").json()["versions"]
    assert "2.0.0" not in routed and all(m["failures"] == 0 for m in routed.values())
    pinned = admin.get("/api/models/ovf/metrics?traffic=pinned").json()["versions"]
    assert pinned["2.0.0"]["failures"] == 30          # reported, apart


def test_2_pinning_a_canary_cannot_abort_it(admin, reader):
    admin.version("can", "1.0.0", sum_model())
    admin.version("can", "1.1.0", sum_model())
    deploy(admin, "can", "1.0.0")
    dep = deploy(admin, "can", "1.1.0", strategy="canary")
    assert dep["state"] == "progressing", dep
    for _ in range(30):
        r = reader.post("/api/models/can/predict", {"input": OVERFLOW, "version": "1.1.0"})
        assert r.status_code == 400
    time.sleep(2.5)
    state = admin.get(f"/api/deployments/{dep['id']}").json()["deployment"]["state"]
    assert state not in ("aborted", "failed", "rolled_back"), state


# -- finding 3: deadlines, memory and output caps on ONNX runs; probes leave nothing running -----
def test_3_onnx_runs_are_bounded(server, admin, reader):
    admin.version("loop", "1.0.0", loop_model(), config={"sample_input": [1]})
    admin.version("fill", "1.0.0", fill_model(reduce=True), config={"sample_input": [1]})
    admin.version("blob", "1.0.0", fill_model(reduce=False), config={"sample_input": [1]})
    for model in ("loop", "fill", "blob"):
        deploy(admin, model, "1.0.0")
    admin.version("lin", "1.0.0", linear_model())
    deploy(admin, "lin", "1.0.0")
    started = time.monotonic()
    r = reader.post("/api/models/loop/predict", {"input": [10 ** 12]})
    assert r.status_code == 504 and r.json()["error"]["code"] == "PROVIDER_TIMEOUT", r.text
    assert time.monotonic() - started < 5
    assert reader.post("/api/models/loop/predict", {"input": [10]}).json()["output"] == [10.0]
    # memory: a 2 GB allocation driven by the input is refused by the capped arena
    r = reader.post("/api/models/fill/predict", {"input": [500_000_000]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "TOO_LARGE", r.text
    assert _peak_rss_mb(server) < 900
    # output: 4 MB of floats over the 1 MB cap
    r = reader.post("/api/models/blob/predict", {"input": [1_000_000]})
    assert r.status_code == 413 and "output cap" in r.json()["error"]["message"]
    assert reader.post("/api/models/lin/predict", {"input": [[1, 2, 3, 4]]}).status_code == 200


def test_3_a_probe_that_times_out_leaves_no_run_behind(server, admin):
    admin.version("probe", "1.0.0", loop_model(), config={"sample_input": [10 ** 12]})
    dep = deploy(admin, "probe", "1.0.0")
    assert dep["state"] == "failed", dep    # the health check failed at the deadline
    before = _cpu_seconds(server)
    time.sleep(2.0)
    assert _cpu_seconds(server) - before < 0.5   # nothing spinning after the answer


def _proc_status(server: LiveServer) -> str:
    return Path(f"/proc/{server.proc.pid}/status").read_text()


def _peak_rss_mb(server: LiveServer) -> float:
    line = next(x for x in _proc_status(server).splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def _cpu_seconds(server: LiveServer) -> float:
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- finding 5: pinned versions do not stay loaded forever ----------------------------------------
def test_5_loaded_versions_are_bounded_and_live_ones_kept(server, admin, reader):
    admin.version("many", "1.0.0", linear_model())
    deploy(admin, "many", "1.0.0")
    for minor in range(1, 7):
        admin.version("many", f"1.{minor}.0", linear_model())
        r = reader.post("/api/models/many/predict",
                        {"input": [[1, 2, 3, 4]], "version": f"1.{minor}.0"})
        assert r.status_code == 200
    assert reader.post("/api/models/many/predict", {"input": [[1, 2, 3, 4]]}).status_code == 200
    log = server.log()
    assert log.count("unloading many@") >= 3           # bounded at MAX_LOADED_VERSIONS=3
    assert "unloading many@1.0.0 " not in log           # the live version stays loaded


# -- finding 6: bounded answers -----------------------------------------------------------------
def test_6_series_metrics_and_lists_are_bounded(server, admin, reader):
    admin.version("wide", "1.0.0", linear_model())
    for minor in range(8):
        if minor:
            admin.version("wide", f"1.{minor}.0", linear_model())
        reader.post("/api/models/wide/predict", {"input": [[1, 2, 3, 4]],
                                                  "version": f"1.{minor}.0"})
    for minor in range(8, 20):   # refused pins (no artifact)
        admin.post("/api/models/wide/versions/register",
                   {"version": f"1.{minor}.0", "provider": "onnx"})
        reader.post("/api/models/wide/predict", {"input": [[1, 2, 3, 4]],
                                                  "version": f"1.{minor}.0"})
    time.sleep(1.5)
    series = reader.get("/api/models/wide/metrics/series?window=10m&step=10s&traffic=pinned")
    assert series.status_code == 200, series.text
    assert len(series.json()["points"]) == 3 and series.json()["versions_omitted"] == 17
    big = reader.get("/api/models/wide/metrics/series?window=4h&step=10s&traffic=pinned")
    assert big.status_code == 400 and "MAX_RESPONSE_BYTES" in big.json()["error"]["message"]
    assert len(big.content) < 2048
    text = reader.get("/metrics").text
    labels = {line.split('version="')[1].split('"')[0] for line in text.splitlines()
              if line.startswith("registry_predictions_total{") and 'model="wide#pinned"' in line}
    assert len(labels) <= 4 and labels <= {f"1.{m}.0" for m in range(20)} | {"other"}
    for _ in range(3):
        assert admin.post("/api/snapshots", {"reason": "x" * 100}).status_code == 201
    listed = admin.get("/api/snapshots").json()["snapshots"]
    assert listed and all("state" not in s and "summary" in s for s in listed)
    assert "state" in admin.get(f"/api/snapshots/{listed[0]['id']}").json()["snapshot"]


# -- finding 7: the docs pages run in their own origin, load only pinned, hashed assets ------------
@pytest.mark.parametrize("page", ["swagger", "redoc", "scalar"])
def test_7_docs_pages_are_sandboxed_pinned_and_unframeable(server, page):
    r = requests.get(f"{server.url}/docs/{page}/", timeout=10)
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox allow-scripts") and "allow-same-origin" not in csp
    assert "frame-ancestors 'none'" in csp and r.headers["X-Frame-Options"] == "DENY"
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    html = r.text
    tags = [t for t in html.split("<")[1:] if t.startswith(("script src", "link rel"))]
    assert tags
    for tag in tags:
        assert 'integrity="sha384-' in tag and 'crossorigin="anonymous"' in tag, tag
        src = tag.split('"')[1] if tag.startswith("script") else tag.split('href="')[1]
        assert "@" in src.split("/")[3] or "@" in src.split("/")[4], src   # an exact version
    spec = requests.get(f"{server.url}/docs/openapi.json", timeout=10)
    assert spec.headers["Access-Control-Allow-Origin"] == "*"
    assert requests.get(f"{server.url}/ui/", timeout=10).headers["X-Frame-Options"] == "DENY"


# -- finding 9: no internal details in public errors ----------------------------------------------
def test_9_load_errors_are_generic_and_logged(server, admin, reader):
    admin.version("junk", "1.0.0", b"this is not an onnx model" * 10)
    r = reader.post("/api/models/junk/predict", {"input": [[1, 2, 3, 4]], "version": "1.0.0"})
    assert r.status_code == 502, r.text
    message = r.json()["error"]["message"]
    data_dir = str(Path(server.env["REGISTRY_DATA_DIR"]))
    assert data_dir not in r.text and "/" not in message.replace("details in the server log", "")
    assert "pid" not in message.lower()
    incident = r.json()["error"]["details"]["incident"]
    log = server.log()
    assert f"incident {incident}" in log                       # the details, logged
    assert f"request {r.headers['X-Request-Id']}: PROVIDER_ERROR, incident {incident}" in log
    dep = deploy(admin, "junk", "1.0.0")
    assert dep["state"] == "failed" and data_dir not in json.dumps(dep)


# -- finding 10: every time that parses is served or a 400 ----------------------------------------
EDGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
              "0001-01-01T00:00:00", "9999-12-31T23:59:59.999999+00:00"]


@pytest.mark.parametrize("at", EDGE_TIMES)
def test_10_edge_times_are_served(admin, reader, at):
    if admin.get("/api/models/lin").status_code == 404:
        admin.version("lin", "1.0.0", linear_model())
        deploy(admin, "lin", "1.0.0")
    r = reader.get("/api/models/lin/traffic", params={"at": at})
    assert r.status_code in (200, 400), r.text
    token = base64.urlsafe_b64encode(json.dumps([at, "x"]).encode()).decode().rstrip("=")
    for path in ("/api/deployments", "/api/rollbacks"):
        r = reader.get(path, params={"page_token": token})
        assert r.status_code in (200, 400), (path, r.text)


def test_10_a_full_disk_is_507_and_readyz_says_so(tmp_path: Path):
    import os
    import subprocess
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("needs to mount a small tmpfs (root)")
    server = None
    try:
        server = LiveServer(mount / "data").start()
        api = Api(server, {})
        assert api.post("/api/models/register", {"name": "before"}).status_code == 201
        filler = mount / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)   # fill the disk to the last block
        try:
            for size in (65536, 4096, 512, 1):
                try:
                    while os.write(fd, b"\0" * size):
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)
        api.post("/api/models/before/versions/register", {"version": "1.0.0", "provider": "onnx"})
        r = api.put("/api/models/before/versions/1.0.0/artifact", linear_model() * 100)
        assert r.status_code in (404, 507), r.text
        codes = set()
        for i in range(50):   # SQLite may still have room in its pages for a while
            r = api.post("/api/models/register", {"name": f"m{i}", "description": "d" * 8000})
            codes.add(r.status_code)
            if r.status_code == 507:
                assert r.json()["error"]["code"] == "INSUFFICIENT_STORAGE"
                break
        assert 507 in codes and 500 not in codes, codes
        ready = api.get("/readyz")
        assert ready.status_code == 503 and "full" in ready.json()["checks"]["storage"]
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
