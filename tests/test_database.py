"""storage.database: pragmas, migrations, transactions."""
from __future__ import annotations

import sqlite3
import threading

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from api.services import AUTH_KEY
from errors import InvalidArgument, Unavailable
from storage import database as database_module
from storage.database import Database, domain_errors
from storage.schema import events, utcnow

pytestmark = pytest.mark.storage   # the PostgreSQL cases stay in the fast lane


def test_sqlite_is_wal_with_foreign_keys(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    with db.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000


def test_migrations_create_schema_and_are_idempotent(database):
    database.migrate()
    database.migrate()
    with database.read() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_a_schema_at_the_newest_revision_is_not_migrated_again(database_url, monkeypatch):
    """Every start but the first reads the revision and stops: Alembic's upgrade, which loads
    and compiles every migration script, is not run."""
    Database(database_url).dispose()

    def refuse(*_args, **_kwargs):
        raise AssertionError("alembic ran on a schema already at its newest revision")
    monkeypatch.setattr(database_module.command, "upgrade", refuse)
    Database(database_url).dispose()


def test_a_schema_behind_is_brought_to_the_newest_revision(tmp_path):
    def revision(db: Database) -> str:
        with db.read() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    url = f"sqlite:///{tmp_path / 'r.db'}"
    db = Database(url)
    newest = revision(db)
    with db.engine.begin() as conn:   # one migration taken back, as after an older release
        cfg = Config()
        cfg.set_main_option("script_location", str(database_module.MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "-1")
    assert revision(db) != newest
    db.dispose()
    again = Database(url)
    assert revision(again) == newest
    again.dispose()


def test_transaction_rolls_back_on_error(database):
    with pytest.raises(RuntimeError):
        with database.transaction() as conn:
            conn.execute(insert(events).values(at=utcnow(), actor="t", kind="x", reason="",
                                               detail={}))
            raise RuntimeError("boom")
    with database.read() as conn:
        assert conn.execute(select(events)).all() == []


def test_processes_racing_to_migrate_migrate_once(empty_database_url):
    """Four starts at once on a database nothing has migrated: each would create the tables
    and the revision row without the lock (PostgreSQL's advisory lock, SQLite's write lock)."""
    errors: list[BaseException] = []
    start_line = threading.Barrier(4)

    def start() -> None:
        try:
            start_line.wait()
            Database(empty_database_url).dispose()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = Database(empty_database_url, migrate=False)
    try:
        with db.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        db.dispose()


def test_a_new_sqlite_file_another_opener_holds_is_waited_for(tmp_path):
    """Opening a new file switches it to WAL, which takes an exclusive lock SQLite does not
    wait for: a process starting while another opens the same new file must wait, not fail
    with "database is locked" (1 start in ~20 when four open a new file at once)."""
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")   # another opener, not yet in WAL mode, about to write
    release = threading.Timer(0.3, other.rollback)
    release.start()
    try:
        db = Database(f"sqlite:///{path}")
    finally:
        release.join()
        other.close()
    with db.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    db.dispose()


def test_data_dir_is_created(tmp_path):
    Database(f"sqlite:///{tmp_path / 'deep' / 'er' / 'r.db'}").dispose()
    assert (tmp_path / "deep" / "er" / "r.db").exists()


# -- the storage boundary: driver errors become domain errors here ----------------------------

DEAD_URL = "postgresql+psycopg://registry:s3cret-pw@127.0.0.1:1/nowhere?connect_timeout=2"


def test_ping_answers_on_a_live_database(database):
    database.ping()   # no exception


def test_ping_of_a_dead_database_is_unavailable_without_driver_details():
    db = Database(DEAD_URL, migrate=False)
    try:
        with pytest.raises(Unavailable) as info:
            db.ping()
    finally:
        db.dispose()
    assert info.value.message == "the database does not answer"


def test_readyz_reports_a_dead_database_without_echoing_the_driver(app, client):
    svc = app.extensions["model_registry"]
    # Auth on by token, so the before-request hook reads no table and only /readyz's own ping
    # meets the dead database. With auth off the hook re-reads "are keys required?" once its
    # 1 s cache is old: a stall of a second between the two calls on a loaded machine made that
    # read fail first (a 500 from the auth hook, which this test is not about).
    app.extensions[AUTH_KEY].admin_token = "readyz-test-token"
    assert client.get("/readyz").json["checks"]["database"] == "ok"
    svc.database.engine = create_engine(DEAD_URL)
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json == {"status": "unavailable",
                      "checks": {"database": "the database does not answer"}}
    assert "s3cret" not in r.text and "127.0.0.1" not in r.text and "psycopg" not in r.text


def test_a_request_meeting_a_dead_database_is_503_without_echoing_the_driver(app, client):
    """Not only /readyz: any request whose database work fails to reach the database is a
    retryable 503 with a generic message (the driver's text, naming hosts and users, is logged
    only), never a 500."""
    svc = app.extensions["model_registry"]
    svc.database.engine = create_engine(DEAD_URL)
    r = client.post("/api/models", json={"name": "m-dead-db"})
    assert r.status_code == 503, r.text
    assert r.json["error"]["code"] == "UNAVAILABLE"
    assert r.json["error"]["message"] == "the database does not answer or is busy; try again"
    assert "s3cret" not in r.text and "127.0.0.1" not in r.text and "psycopg" not in r.text


class _DriverError(Exception):
    """A driver exception as psycopg raises them: its SQLSTATE as an attribute."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate", [None, "08006", "57P01"])
def test_an_unreachable_server_is_unavailable(sqlstate):
    with pytest.raises(Unavailable):
        with domain_errors():
            raise OperationalError("SELECT 1", {}, _DriverError(sqlstate))


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_deadlocks_and_serialization_failures_pass_through_for_the_callers_retry(sqlstate):
    """``MetricsStore.add`` retries these: they must reach it as driver errors."""
    with pytest.raises(OperationalError):
        with domain_errors():
            raise OperationalError("UPDATE t", {}, _DriverError(sqlstate))


def test_a_lone_surrogate_is_invalid_argument_at_the_storage_boundary(database):
    with pytest.raises(InvalidArgument, match="lone UTF-16 surrogate"):
        with database.transaction() as conn:
            conn.execute(insert(events).values(at=utcnow(), actor="t", kind="k", reason="\ud800",
                                               detail={}))


def test_a_nul_character_is_invalid_argument_on_every_database(database):
    """PostgreSQL cannot store NUL; the driver's DataError becomes INVALID_ARGUMENT here. SQLite
    stores it, so there the row simply goes in."""
    try:
        with database.transaction() as conn:
            conn.execute(insert(events).values(at=utcnow(), actor="t", kind="k", reason="a\x00b",
                                               detail={}))
    except InvalidArgument as exc:
        assert not database.is_sqlite and "NUL character" in exc.message
    else:
        assert database.is_sqlite


def test_other_database_errors_pass_through(database):
    with pytest.raises(DBAPIError):
        with database.read() as conn:
            conn.execute(text("SELECT no_such_column FROM events"))
