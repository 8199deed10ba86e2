"""Engine, transactions and migrations: the only place that knows which database is underneath.

SQLite (the default) is opened in WAL mode with foreign keys and a busy timeout, and every write
transaction starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the lock instead
of failing with "database is locked" half-way through. PostgreSQL is used as is; migrations take
an advisory lock so that several processes starting together migrate once.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from config import get_settings
from storage.disk import is_full, storage_full

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK_ID = 0x5EED_0001


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, emit BEGIN (pysqlite's implicit transactions would
        # defeat BEGIN IMMEDIATE).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "DEFERRED" if conn.get_execution_options().get("read_only") else "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """Owns one engine. ``transaction()`` for writes, ``read()`` for reads."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = url or get_settings().database_url
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=8, max_overflow=32,
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(self.url, pool_size=8, max_overflow=16,
                                        pool_pre_ping=True)
        if migrate:
            self.migrate()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any exception. A full
        disk is a ``StorageFull`` (507), not a driver error."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            if is_full(exc):
                raise storage_full("the database write") from exc
            raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work (a deferred transaction on SQLite: never takes the write lock)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(read_only=True)
            with conn.begin():
                yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision; safe when processes race."""
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


_default: Database | None = None
_default_lock = threading.Lock()


def default_database() -> Database:
    """The process-wide database named by the configuration (created and migrated on first use)."""
    global _default
    with _default_lock:
        url = get_settings().database_url
        if _default is None or _default.url != url:
            _default = Database(url)
        return _default
