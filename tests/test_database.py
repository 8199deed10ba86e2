"""storage.database: pragmas, migrations, transactions."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import insert, select, text

from storage.database import Database
from storage.schema import events, utcnow


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


def test_transaction_rolls_back_on_error(database):
    with pytest.raises(RuntimeError):
        with database.transaction() as conn:
            conn.execute(insert(events).values(at=utcnow(), actor="t", kind="x", reason="",
                                               detail={}))
            raise RuntimeError("boom")
    with database.read() as conn:
        assert conn.execute(select(events)).all() == []


def test_processes_racing_to_migrate_migrate_once(database_url):
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Database(database_url).dispose()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_data_dir_is_created(tmp_path):
    Database(f"sqlite:///{tmp_path / 'deep' / 'er' / 'r.db'}").dispose()
    assert (tmp_path / "deep" / "er" / "r.db").exists()
