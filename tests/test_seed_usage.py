"""The seed's own examples run as typed (``docs/SEED.md``, a verbatim copy of the description
the project was created from).

- Each Python snippet, verbatim and in order, in a fresh interpreter, against one fresh data
  directory (or a fresh PostgreSQL schema), Gemini faked through ``GOOGLE_GEMINI_BASE_URL``;
  after each, in the same interpreter, the results its comments promise are checked.
- The curl calls, in order and with no wait between them, against a real server process
  (``python api/app.py``), with the real ``curl`` binary when it is installed.

The snippets are extracted from ``docs/SEED.md`` at test time, never retyped. Two steps are not
in the seed and are marked as such below: the Deployment snippet deploys 1.1.0 and 2.0.0, which
no snippet registers, so they are registered first; and the curl sequence goes on, as a user
would, with the seed's own "Register Version" and "Deploy Model" calls for 1.1.0 (direct)
and a prediction before its rollback to 1.0.0 (otherwise 1.0.0 would already serve 100%).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import BACKENDS
from tests.support import LiveServer

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "docs" / "SEED.md"
# The original next to the project (``../shared/SEED.md``), or one level up from a worktree.
SHARED_SEED = next((p for p in (ROOT.parent / "shared" / "SEED.md",
                                ROOT.parent.parent / "shared" / "SEED.md") if p.exists()),
                   ROOT.parent / "shared" / "SEED.md")


def seed_blocks(language: str) -> dict[str, list[str]]:
    """``{heading: [code blocks of that language]}`` in the order of the document."""
    blocks: dict[str, list[str]] = {}
    heading = ""
    for part in re.split(r"(^#+ [^\n]*$|```%s\n.*?```)" % language, SEED.read_text(),
                         flags=re.M | re.S):
        if part.startswith("#"):
            heading = part.lstrip("#").strip()
        elif part.startswith("```" + language):
            blocks.setdefault(heading, []).append(part[len(language) + 4:-3])
    return blocks


PYTHON = seed_blocks("python")
CURL = [(heading, " ".join(block.replace("\\\n", " ").split()))
        for heading, blocks in seed_blocks("bash").items() for block in blocks
        if block.lstrip().startswith("curl ")]

# What each snippet's comments promise, checked in the snippet's own interpreter.
PROMISES = {
    "Model Registration": """
assert model_id["name"] == "gemini" and version_id["version"] == "1.0.0"
assert isinstance(versions, list), type(versions)
assert [v["version"] for v in versions] == ["1.0.0"]
""",
    "Version Management": """
assert is_newer is True and compatible is True
assert latest == "2.0.0" and new_version == "1.1.0"
""",
    "Deployment": """
assert isinstance(deployment_id, str) and deployment_id.startswith("dep_")
deps = {d["version"]: d for d in manager.list("gemini")[0]}
assert deps["1.0.0"]["state"] == "succeeded"                  # direct: done when it answered
assert deps["1.1.0"]["state"] == "succeeded", deps["1.1.0"]   # its window closed by the canary
assert "closed by " + deployment_id in deps["1.1.0"]["reason"]
canary = deps["2.0.0"]
assert canary["id"] == deployment_id and canary["state"] == "progressing"
assert canary["traffic"] == {"2.0.0": 10, "1.1.0": 90}      # first step live at once
assert manager.traffic_table("gemini")["weights"] == {"2.0.0": 10, "1.1.0": 90}
""",
    "Rollback": """
assert previous_version == "1.1.0", previous_version           # the canary's stable version
assert success is True
assert triggered is False                                      # no traffic, nothing to judge
assert manager.list("gemini")[0][0]["to_version"] == "1.0.0"
""",
    "Performance Tracking": """
assert metrics["avg_latency"] == 1.5 and metrics["success_rate"] == 100.0
assert comparison["v1"]["requests"] == 1 and comparison["v2"]["requests"] == 0
""",
}
# Not in the seed: the versions the Deployment snippet deploys, registered before it runs.
BEFORE = {
    "Deployment": """
from registry.model_registry import ModelRegistry
for version in ("1.1.0", "2.0.0"):
    ModelRegistry().register_version("gemini", version, "experimental")
""",
}


def test_the_copy_of_the_seed_is_verbatim():
    if not SHARED_SEED.exists():
        pytest.skip(f"{SHARED_SEED} is not on this machine")
    assert SEED.read_text() == SHARED_SEED.read_text()


def test_every_seed_example_is_covered():
    assert list(PYTHON) == list(PROMISES) and all(len(b) == 1 for b in PYTHON.values())
    assert [h for h, _ in CURL] == ["Register Model", "Register Version", "Deploy Model",
                                    "Make Prediction", "Rollback"]


@pytest.fixture(params=BACKENDS)
def seed_env(request: pytest.FixtureRequest, tmp_path: Path, gemini) -> dict[str, str]:
    """A fresh data directory (and database), the fake Gemini, none of the developer's
    settings."""
    data = tmp_path / "data"
    url = request.getfixturevalue("pg_schema_url") if request.param == "postgresql" else \
        f"sqlite:///{data / 'registry.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("ARTIFACT_ROOT",
                                                           "REGISTRY_ADMIN_TOKEN")}
    env.update(REGISTRY_DATA_DIR=str(data), DATABASE_URL=url, PYTHONUNBUFFERED="1")
    return env


def run_python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{code}\n---\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow   # six fresh interpreters per backend
def test_python_snippets_run_verbatim_in_order(seed_env: dict[str, str]):
    outputs = {}
    for heading, [snippet] in PYTHON.items():
        if heading in BEFORE:
            run_python(BEFORE[heading], seed_env)
        outputs[heading] = run_python(snippet + PROMISES[heading], seed_env)
    assert outputs["Performance Tracking"].splitlines() == ["Avg latency: 1.500s",
                                                           "Success rate: 100.0%"]


# -- the curl calls --------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=BACKENDS)
def seed_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One server per backend for the module, on a fresh data directory, Gemini faked."""
    from tests.fake_gemini import FakeGemini
    data = tmp_path_factory.mktemp("seed-server")
    env = {"ARTIFACT_ROOT": "", "REGISTRY_ADMIN_TOKEN": "", "GEMINI_API_KEY": "test-key",
           "NO_PROXY": "127.0.0.1,localhost"}
    with FakeGemini() as fake:
        env["GOOGLE_GEMINI_BASE_URL"] = fake.url
        if request.param == "postgresql":
            schema = request.getfixturevalue("pg_schema_module")
            env["DATABASE_URL"] = schema
        else:
            env["DATABASE_URL"] = f"sqlite:///{data / 'registry.db'}"
        server = LiveServer(data, env).start()
        try:
            yield server
        finally:
            server.stop()


def call(command: str, url: str) -> tuple[int, Any]:
    """Run one seed curl call (its host replaced by the test server's): the real curl when
    installed, else the same request through requests."""
    command = command.replace("http://localhost:5000", url)
    args = shlex.split(command)
    if shutil.which("curl"):
        out = subprocess.run(args + ["-s", "-w", "\n%{http_code}"], capture_output=True,
                             text=True, timeout=120, check=True).stdout
        body, _, status = out.rpartition("\n")
        return int(status), json.loads(body)
    method = args[args.index("-X") + 1]
    headers = dict(h.split(": ", 1) for i, h in enumerate(args) if args[i - 1] == "-H")
    data = args[args.index("-d") + 1] if "-d" in args else None
    target = next(a for a in args if a.startswith("http"))
    r = requests.request(method, target, headers=headers, data=data, timeout=120)
    return r.status_code, r.json()


def change(command: str, old: str, new: str) -> str:
    assert old in command
    return command.replace(old, new)


@pytest.mark.slow
def test_curl_calls_in_order_without_waiting(seed_server: LiveServer):
    calls = dict(CURL)
    url = seed_server.url
    status, body = call(calls["Register Model"], url)
    assert status == 201 and body["model"]["name"] == "gemini", body
    status, body = call(calls["Register Version"], url)
    assert status == 201 and body["version"]["version"] == "1.0.0", body
    status, body = call(calls["Deploy Model"], url)
    assert status == 201, body               # the first deployment: switched in the call
    assert body["deployment"]["state"] == "succeeded"
    assert body["deployment"]["traffic"] == {"1.0.0": 100}
    status, body = call(calls["Make Prediction"], url)
    assert status == 200 and body["version"] == "1.0.0" and body["output"], body
    # Not in the seed: its own calls again for 1.1.0, deployed directly.
    status, body = call(change(calls["Register Version"], '"1.0.0"', '"1.1.0"'), url)
    assert status == 201, body
    direct = change(change(calls["Deploy Model"], '"1.0.0"', '"1.1.0"'), "blue-green", "direct")
    status, body = call(direct, url)
    assert status == 201 and body["deployment"]["state"] == "succeeded", body
    status, body = call(calls["Make Prediction"], url)
    assert status == 200 and body["version"] == "1.1.0", body
    status, body = call(calls["Rollback"], url)
    assert status == 200, body
    assert (body["rollback"]["from_version"], body["rollback"]["to_version"]) == ("1.1.0",
                                                                                  "1.0.0")
    status, body = call(calls["Make Prediction"], url)
    assert status == 200 and body["version"] == "1.0.0", body


# -- the Quick Start -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)   # three cold starts of the whole stack
def test_quick_start_in_a_fresh_copy(tmp_path: Path):
    """``cp .env.example .env``, ``python main.py``, ``python api/app.py``, ``python tests.py``
    in a copy of the project, with none of the developer's settings: what .env says applies."""
    from tests.support import free_port
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".git", "data", ".env", "__pycache__", ".venv*", "venv", "*.db", ".pytest_cache",
        "test-output"))
    subprocess.run(["cp", ".env.example", ".env"], cwd=project, check=True)
    env = {k: v for k, v in os.environ.items() if k not in (
        "REGISTRY_DATA_DIR", "DATABASE_URL", "ARTIFACT_ROOT", "GEMINI_API_KEY", "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL", "REGISTRY_ADMIN_TOKEN", "HOST", "PORT", "TEST_DATABASE_URL")}

    demo = subprocess.run([sys.executable, "main.py", "deploy"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "all 1 sections done" in demo.stdout   # (the demonstrations use a temporary dir)

    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "api/app.py"], cwd=project,
                              env={**env, "PORT": str(port)}, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                models = requests.get(f"http://127.0.0.1:{port}/api/models", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert models.status_code == 200 and models.json()["models"] == []
        assert (project / "data" / "registry.db").exists()   # REGISTRY_DATA_DIR of .env
    finally:
        server.terminate()
        server.wait(20)
        log.close()

    tests = subprocess.run([sys.executable, "tests.py", "tests/test_seed_usage.py", "-k",
                            "covered"],
                           cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout
