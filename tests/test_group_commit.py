"""SQLite group commit and durability settings (issue 14): concurrent writers of one process
share commits, a failing writer is rolled back alone, nothing returns before its commit, and
the connection promises power-loss durability (synchronous = FULL)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import event, text

from errors import AlreadyExists
from registry.model_registry import ModelRegistry
from storage.database import Database
from tests.conftest import fresh_sqlite


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path):
    db = Database(fresh_sqlite(sqlite_template, tmp_path / "g.db"))
    yield db
    db.dispose()


def test_sqlite_settings_promise_durability(sqlite_db):
    with sqlite_db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_concurrent_writers_share_commits_and_fail_alone(sqlite_db, tmp_path):
    registry = ModelRegistry(sqlite_db)
    registry.register_model("m")
    commits = []
    event.listen(sqlite_db.engine, "commit", lambda conn: commits.append(1))
    errors: list[BaseException] = []
    written: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def writer(t: int) -> None:
        start.wait()
        for i in range(10):
            version = f"{t}.{i}.0" if i != 5 else "99.0.0"  # every thread tries 99.0.0 once
            try:
                registry.register_version("m", version)
            except AlreadyExists as exc:
                with lock:
                    errors.append(exc)
                continue
            with lock:  # only after the write returned, i.e. after its commit
                written.append(version)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(errors) == 15 and len(written) == 16 * 9 + 1
    assert len(commits) < len(written)  # grouped: fewer commits (and fsyncs) than writes
    other = Database(f"sqlite:///{tmp_path / 'g.db'}", migrate=False)  # another connection
    try:
        with other.read() as conn:
            count = conn.execute(text("SELECT count(*) FROM model_versions")).scalar()
        assert count == len(written)
    finally:
        other.dispose()


def test_a_failed_commit_fails_every_writer_of_its_group(sqlite_db):
    """Nobody is told 'done' for a group whose commit did not happen."""
    registry = ModelRegistry(sqlite_db)
    registry.register_model("m")

    def refuse(conn):
        raise RuntimeError("disk on fire")

    event.listen(sqlite_db.engine, "commit", refuse)
    with pytest.raises(RuntimeError, match="disk on fire"):
        registry.register_version("m", "1.0.0")
    event.remove(sqlite_db.engine, "commit", refuse)
    assert registry.list_versions("m") == []
    registry.register_version("m", "1.0.0")  # the next group works
    assert [v["version"] for v in registry.list_versions("m")] == ["1.0.0"]


def _statements(db: Database) -> list[str]:
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: seen.append(statement.split()[0].upper()))
    return seen


def test_a_lone_writer_runs_without_a_savepoint_and_fails_alone(sqlite_db):
    """The first writer of a group has the transaction to itself: no SAVEPOINT/RELEASE round
    trips. When it fails, its whole transaction is rolled back (only its own work) and the
    next write gets a fresh one."""
    registry = ModelRegistry(sqlite_db)
    registry.register_model("m")
    seen = _statements(sqlite_db)
    registry.register_version("m", "1.0.0")
    assert "SAVEPOINT" not in seen and "RELEASE" not in seen
    assert seen.count("INSERT") == 2          # the version and its event, nothing else
    with pytest.raises(AlreadyExists):
        registry.register_version("m", "1.0.0")
    registry.register_version("m", "1.0.1")
    assert [v["version"] for v in registry.list_versions("m")] == ["1.0.1", "1.0.0"]
    with sqlite_db.read() as conn:   # the failed write's event was rolled back with it
        kinds = conn.execute(text("SELECT count(*) FROM events WHERE kind = "
                                  "'version.registered'")).scalar()
    assert kinds == 2


def test_an_event_asks_for_subscriptions_only_when_one_is_enabled(sqlite_db):
    """The event's INSERT also counts the enabled subscriptions (RETURNING): with none, no
    SELECT of webhook_subscriptions is sent; with one, its delivery is queued as before."""
    from webhooks.webhook_store import WebhookStore

    registry = ModelRegistry(sqlite_db)
    seen: list[str] = []
    event.listen(sqlite_db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: seen.append(statement))
    registry.register_model("a")
    assert not [s for s in seen if s.lstrip().upper().startswith("SELECT")
                and "webhook_subscriptions" in s]
    WebhookStore(sqlite_db).create(url="http://127.0.0.1:9/hook", kind="generic",
                                   events=["model.*"], model=None, description="",
                                   secret="s" * 32, enabled=True, actor="test")
    registry.register_model("b")
    with sqlite_db.read() as conn:
        queued = conn.execute(text("SELECT model FROM webhook_deliveries")).scalars().all()
    assert queued == ["b"]
