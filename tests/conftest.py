"""Shared fixtures: ``app``, ``client``, ``runner`` (as in Flask's tutorial), databases on SQLite
and — when ``TEST_DATABASE_URL`` is set — PostgreSQL, and a real server process."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import config
from api.app import create_app
from storage.database import Database
from tests.fake_gemini import FakeGemini
from tracking.metrics_collector import MetricsCollector
from tracking.metrics_store import MetricsStore
from tracking.performance_tracker import PerformanceTracker

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="TEST_DATABASE_URL is not set"))]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's ./data, .env keys or a real Gemini key."""
    monkeypatch.setattr(config, "load_dotenv", lambda *a, **k: False)
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))
    for key in ("DATABASE_URL", "ARTIFACT_ROOT", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "REGISTRY_ADMIN_TOKEN", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    assert PG_URL
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(PG_URL).update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_schema_url")
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


# TEST_ALL_ON_POSTGRES=1 (with TEST_DATABASE_URL): every test using ``app`` runs on a fresh
# PostgreSQL schema instead of SQLite (apps that tests build themselves stay on SQLite).
ALL_ON_POSTGRES = bool(PG_URL) and os.environ.get("TEST_ALL_ON_POSTGRES") == "1"


@pytest.fixture
def db(database: Database) -> Database:
    return database


@pytest.fixture
def collector(database: Database) -> Iterator[MetricsCollector]:
    """A collector that flushes only when told to (tests decide when data is stored)."""
    c = MetricsCollector(MetricsStore(database), start_thread=False)
    yield c
    c.close()


@pytest.fixture
def tracker(database: Database, collector: MetricsCollector) -> PerformanceTracker:
    return PerformanceTracker(database, collector)


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path):
    test_config = {"TESTING": True, "data_dir": tmp_path / "data"}
    if ALL_ON_POSTGRES:
        test_config.update(database_url=request.getfixturevalue("pg_schema_url"),
                           artifact_root=tmp_path / "data" / "artifacts")
    app = create_app(test_config)
    yield app
    app.extensions["model_registry"].shadows.mirror.close()   # issue 19: its threads, if any
    if ALL_ON_POSTGRES:   # its flusher must not outlive the schema (nor hold a connection)
        app.extensions["model_registry"].collector.close()
    app.extensions["model_registry"].database.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``python api/app.py`` in a child process, on a free port of this machine."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "REGISTRY_DATA_DIR": str(data_dir), "PORT": str(self.port),
                    "HOST": "127.0.0.1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(data_dir) / "server.log"

    def start(self, timeout: float = 20.0) -> "LiveServer":
        # The log goes to a file: a pipe nobody reads fills up and blocks the server.
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "api/app.py"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start in time: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "server-data").start()
    yield server
    server.stop()


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGemini]:
    """A local fake Gemini server that the real SDK reaches through GOOGLE_GEMINI_BASE_URL."""
    with FakeGemini() as fake:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        monkeypatch.setenv("GEMINI_API_KEY", "test-key")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield fake
