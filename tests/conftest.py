"""Shared fixtures: ``app``, ``client``, ``runner`` (as in Flask's tutorial), databases on SQLite
and — when ``TEST_DATABASE_URL`` is set — PostgreSQL, and a real server process."""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import config
import wiring
from api.app import create_app
from storage.database import Database
from tests.fake_gemini import FakeGemini
from tests.support import PG_URL, ROOT, LiveServer, free_port  # noqa: F401 (re-exported)
from tracking.metrics_collector import MetricsCollector
from tracking.metrics_store import MetricsStore
from tracking.performance_tracker import PerformanceTracker

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="TEST_DATABASE_URL is not set"))]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's ./data, .env keys or a real Gemini key.

    Settings are read once per process (``config.get_settings``): every ``monkeypatch.setenv``
    or ``delenv`` in a test forgets them, so the next read sees the change, and each test
    starts and ends with no cached settings and no process-wide services."""
    monkeypatch.setattr(config, "load_dotenv", lambda *a, **k: False)
    for name in ("setenv", "delenv"):
        change = getattr(monkeypatch, name)

        def and_forget(*args, _change=change, **kwargs):  # type: ignore[no-untyped-def]
            _change(*args, **kwargs)
            config.reset_settings()
        setattr(monkeypatch, name, and_forget)
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "data"))
    for key in ("DATABASE_URL", "ARTIFACT_ROOT", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "REGISTRY_ADMIN_TOKEN", "GOOGLE_GEMINI_BASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(key, raising=False)
    wiring.reset_process_services()
    yield
    config.reset_settings()
    wiring.reset_process_services()


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    yield from _fresh_pg_schema()


@pytest.fixture(scope="module")
def pg_schema_module() -> Iterator[str]:
    """``pg_schema_url`` shared by a module's tests (e.g. with one server per module)."""
    yield from _fresh_pg_schema()


def _fresh_pg_schema() -> Iterator[str]:
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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session: copying it is ~6x faster than migrating."""
    path = tmp_path_factory.mktemp("template") / "registry.db"
    Database(f"sqlite:///{path}").dispose()
    return path


def fresh_sqlite(template: Path, path: Path) -> str:
    """A copy of the migrated template at ``path``; its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_schema_url")
    return fresh_sqlite(sqlite_template, tmp_path / "registry.db")


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
def app(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path):
    test_config = {"TESTING": True, "data_dir": tmp_path / "data"}
    if ALL_ON_POSTGRES:
        test_config.update(database_url=request.getfixturevalue("pg_schema_url"),
                           artifact_root=tmp_path / "data" / "artifacts")
    else:
        fresh_sqlite(sqlite_template, tmp_path / "data" / "registry.db")
    app = create_app(test_config)
    yield app
    if ALL_ON_POSTGRES:   # its flusher must not outlive the schema (nor hold a connection)
        app.extensions["model_registry"].collector.close()
    app.extensions["model_registry"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


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
