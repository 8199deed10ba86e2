"""Shared fixtures: ``app``, ``client``, ``runner`` (as in Flask's tutorial), databases on SQLite
and — when ``TEST_DATABASE_URL`` is set — PostgreSQL, and a real server process."""
from __future__ import annotations

import gc
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import certifi
import pytest
from _pytest.mark.expression import Expression
from werkzeug.routing import Rule

from shared.lazy_import import lazy_module
from tests.fake_gemini import FakeGemini
from tests.support import PG_URL, ROOT, LiveServer, free_port  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from flask import Flask

    from storage.database import Database
    from tests.moto_s3 import MotoS3
    from tests.pg_schemas import PgSchemas
    from tracking.metrics_collector import MetricsCollector
    from tracking.performance_tracker import PerformanceTracker

# The application is imported when a fixture first needs it (fixtures import its classes
# where they use them, as ``moto`` does boto3): pytest-xdist's controller loads this file
# too, runs no test, and starts the workers only after it has (importing the application
# there delayed them by ~1.6 s).
config = lazy_module("config")
wiring = lazy_module("wiring")


def _deselects_slow(config: pytest.Config) -> bool:
    """Whether ``-m`` leaves out every slow test (the fast lane: ``-m "not slow"``)."""
    markexpr = config.getoption("markexpr", "")
    if not markexpr:
        return False
    expression = Expression.compile(markexpr)
    for others in (False, True):   # with any other markers too
        def matcher(name: str, /, **_kwargs: object) -> bool:
            return name == "slow" or others   # noqa: B023 (used before the loop moves on)
        if expression.evaluate(matcher):
            return False   # the expression may select slow tests
    return True


_fast_lane = False


def pytest_configure(config: pytest.Config) -> None:
    """Schemathesis's plugin (~0.35 s to import, in the controller and in each worker) only
    when the fuzz test, which is slow, may run."""
    global _fast_lane
    _fast_lane = _deselects_slow(config)
    if not _fast_lane:
        config.pluginmanager.import_plugin("schemathesis.pytest.plugin")


def examples(full: int) -> int:
    """How many examples a property test draws (its ``max_examples``): ``full`` in the full
    suite, a fifth of it (at least 10) in the fast lane, which is for the edit-test loop.
    Hypothesis draws new examples on every run, so the fast lane's runs add up too."""
    return max(10, full // 5) if _fast_lane else full


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A module marked slow as a whole (``pytestmark = pytest.mark.slow``, or a list of marks
    holding it, at the start of a line) is not even imported when ``-m`` deselects slow tests:
    importing the fuzz test, the MLflow, OpenAI, S3 and browser clients costs seconds the fast
    lane would only throw away (MLflow's alone ~2 s in each worker)."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_") or \
            not _deselects_slow(config):
        return None
    source = collection_path.read_text(encoding="utf-8")
    marked = re.search(r"^pytestmark = (\[[^\]]*)?pytest\.mark\.slow\b", source, re.M)
    return True if marked else None


def _runs_on_postgresql(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in callspec.params.values()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The PostgreSQL case of a test is slow unless the test is marked ``storage``: the layers
    above the stores reach the database only through them, so the fast lane runs those layers
    on SQLite and the stores (SQL, migrations, locks and races between processes) on both; the
    full suite runs every case on both. A test on the session's moto S3 server (a server
    process, ~1 s to start, and ~20 ms a request) is slow too.

    Files with tests marked slow in their source run first, each file's tests together and in
    their order. With two workers taking whole files (``python tests.py``), the long end-to-end
    files then start at once and the many short files fill the gaps, instead of one worker
    finishing the scale-out test alone while the other idles. (Not the files made slow here
    by a PostgreSQL case or moto: first among them, a long end-to-end file started late.)"""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    slow_first = {name for name, group in modules.items()
                  if any(i.get_closest_marker("slow") for i in group)}
    for item in items:
        if (_runs_on_postgresql(item) and not item.get_closest_marker("storage")) or \
                "moto" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    ordered = sorted(modules.items(), key=lambda module: module[0] not in slow_first)
    items[:] = [item for _, group in ordered for item in group]


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is alive once every test module is imported (the app's modules, the libraries,
    the collected items: about 200,000 objects) lives to the end of the session. Moved out of
    the garbage collector's sight, with collections less frequent, it halves the time spent
    collecting garbage (4.6 s to 2.3 s of ~17 s of CPU over three API test files). Only the
    test process is tuned: servers the tests start keep Python's defaults."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _build_urls_when_first_asked() -> None:
    """Most tests build an app (``create_app``, ~120 URL rules) and never build a URL from it,
    yet Werkzeug compiles two URL-builder functions per rule when the rule is added: 70% of
    the time of ``create_app``. Compile each when it is first called instead. Matching (what a
    request does) is untouched, and a built URL is the same; only its first build is later."""
    compile_builder = Rule._compile_builder

    def lazily(self: Rule, append_unknown: bool = True):  # type: ignore[no-untyped-def]
        built = []

        def build(rule: Rule, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not built:
                built.append(compile_builder(rule, append_unknown).__get__(rule, None))
            return built[0](*args, **kwargs)
        return build
    Rule._compile_builder = lazily   # type: ignore[method-assign]


_build_urls_when_first_asked()

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="TEST_DATABASE_URL is not set"))]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's ./data, .env keys or a real Gemini key.

    Settings are read once per process (``config.get_settings``): every ``monkeypatch.setenv``
    or ``delenv`` in a test forgets them, so the next read sees the change, and each test
    starts and ends with no cached settings and no process-wide services."""
    _isolate(monkeypatch, tmp_path / "data")
    wiring.reset_process_services()
    yield
    config.reset_settings()
    wiring.reset_process_services()


def _isolate(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """The environment of ``_isolated_env``, with ``data_dir`` as the default data dir."""
    monkeypatch.setattr(config, "load_dotenv", lambda *a, **k: False)
    for name in ("setenv", "delenv"):
        change = getattr(monkeypatch, name)

        def and_forget(*args, _change=change, **kwargs):  # type: ignore[no-untyped-def]
            _change(*args, **kwargs)
            config.reset_settings()
        setattr(monkeypatch, name, and_forget)
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(data_dir))
    for key in ("DATABASE_URL", "ARTIFACT_ROOT", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "REGISTRY_ADMIN_TOKEN", "GOOGLE_GEMINI_BASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(key, raising=False)


@contextmanager
def shared_app(request: pytest.FixtureRequest, root: Path, **settings: object) -> Iterator[Flask]:
    """An app for the tests of a module that need no fresh one (in a module-scoped fixture),
    its data dir ``root / "data"``, on a copy of the migrated template (with
    ``TEST_ALL_ON_POSTGRES``, a PostgreSQL schema of its own). Building an app per test costs
    ~35 ms of CPU (120 URL rules, the services, a database). It is built in the environment
    ``_isolated_env`` gives a test, then taken out of the process-wide services, which that
    fixture closes before and after each test; it is closed when the module is done."""
    from api.app import create_app
    data = root / "data"
    with ExitStack() as stack:
        if ALL_ON_POSTGRES:
            lease = contextmanager(request.getfixturevalue("pg_schemas").lease)
            settings.update(database_url=stack.enter_context(lease()),
                            artifact_root=data / "artifacts")
        else:
            fresh_sqlite(request.getfixturevalue("sqlite_template"), data / "registry.db")
        with pytest.MonkeyPatch.context() as monkeypatch:
            _isolate(monkeypatch, data)
            app = create_app({"TESTING": True, "data_dir": data, **settings})
        config.reset_settings()   # none read in that environment outlive it
        services = app.extensions["model_registry"]
        services.detach()
        stack.callback(services.close)
        yield app


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[PgSchemas]:
    """This process's PostgreSQL test schemas (``tests/pg_schemas.py``)."""
    from tests.pg_schemas import PgSchemas
    assert PG_URL
    schemas = PgSchemas(PG_URL)
    yield schemas
    schemas.close()


@pytest.fixture
def pg_schema_url(pg_schemas: PgSchemas) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is an empty, migrated schema of the test's own."""
    yield from pg_schemas.lease()


@pytest.fixture(scope="module")
def pg_schema_module(pg_schemas: PgSchemas) -> Iterator[str]:
    """``pg_schema_url`` shared by a module's tests (e.g. with one server per module)."""
    yield from pg_schemas.lease()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session: copying it is ~6x faster than migrating."""
    from storage.database import Database
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


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nothing has migrated yet: a new SQLite file, or an empty PostgreSQL schema."""
    if request.param == "postgresql":
        yield from request.getfixturevalue("pg_schemas").lease_empty()
    else:
        yield f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    from storage.database import Database
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
    from tracking.metrics_collector import MetricsCollector
    from tracking.metrics_store import MetricsStore
    c = MetricsCollector(MetricsStore(database), start_thread=False)
    yield c
    c.close()


@pytest.fixture
def tracker(database: Database, collector: MetricsCollector) -> PerformanceTracker:
    from tracking.performance_tracker import PerformanceTracker
    return PerformanceTracker(database, collector)


@pytest.fixture
def data_dir(tmp_path: Path, sqlite_template: Path) -> Path:
    """``tmp_path / "data"`` holding a migrated SQLite database (a copy of the template), for
    tests that build their own app: ``create_app`` on an empty data dir runs every migration
    again (~0.1 s of CPU each time)."""
    fresh_sqlite(sqlite_template, tmp_path / "data" / "registry.db")
    return tmp_path / "data"


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path):
    from api.app import create_app
    test_config = {"TESTING": True, "data_dir": tmp_path / "data"}
    if ALL_ON_POSTGRES:
        test_config.update(database_url=request.getfixturevalue("pg_schema_url"),
                           artifact_root=tmp_path / "data" / "artifacts")
    else:
        request.getfixturevalue("data_dir")
    app = create_app(test_config)
    yield app
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


@pytest.fixture(scope="session")
def one_ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA bundle of one certificate (certifi's first), as ``SSL_CERT_FILE`` for SDKs that
    only reach local fakes over plain HTTP: each google-genai client loads the bundle into
    three SSL contexts when it is built, ~90 ms of CPU with the full one (~140 certificates)
    and ~1 ms with this, and the fast lane builds one for most Gemini versions it loads."""
    first = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                      Path(certifi.where()).read_text(), re.S)
    assert first, "certifi's bundle holds no certificate"
    path = tmp_path_factory.mktemp("ca") / "one-ca.pem"
    path.write_text(first.group(0))
    return path


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch, one_ca_file: Path) -> Iterator[FakeGemini]:
    """A local fake Gemini server that the real SDK reaches through GOOGLE_GEMINI_BASE_URL."""
    with FakeGemini() as fake:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(one_ca_file))
        monkeypatch.setenv("GEMINI_API_KEY", "test-key")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield fake


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator["MotoS3"]:
    """One moto S3 server process for the whole session (each test takes its own bucket).
    Imported here, not at the top: boto3 is not loaded by sessions without S3 tests."""
    from tests.moto_s3 import MotoS3
    with MotoS3(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def bucket(moto: "MotoS3") -> str:
    """A fresh, empty bucket on the session's moto server."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=name)
    return name
