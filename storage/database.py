"""Engine, transactions and migrations: the only place that knows which database is underneath.

SQLite (the default) is opened in WAL mode with foreign keys and a busy timeout, and every write
transaction starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the lock instead
of failing with "database is locked" half-way through. PostgreSQL is used as is; migrations take
an advisory lock so that several processes starting together migrate once.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DataError, OperationalError

from config import get_settings
from errors import InvalidArgument, Unavailable
from storage.disk import is_full, storage_full

log = logging.getLogger(__name__)

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
        disk is a ``StorageFull`` (507), not a driver error (``domain_errors``)."""
        with domain_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work (a deferred transaction on SQLite: never takes the write lock)."""
        with domain_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(read_only=True)
            with conn.begin():
                yield conn

    def ping(self) -> None:
        """Check that the database answers; :class:`errors.Unavailable` (with a generic
        message: the driver's, which may name hosts and users, goes to the log) if not."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            log.warning("database ping failed", exc_info=True)
            raise Unavailable("the database does not answer") from None

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


@contextmanager
def domain_errors() -> Iterator[None]:
    """Driver errors become domain errors here, where they arise, so that no layer above has
    to know a driver's messages: a full disk is :class:`errors.StorageFull`; text the database
    cannot store (on PostgreSQL a NUL character; on both, a lone UTF-16 surrogate such as
    ``"\\ud800"``, which JSON allows and UTF-8 cannot encode) is :class:`errors.InvalidArgument`."""
    try:
        yield
    except OperationalError as exc:
        if is_full(exc):
            raise storage_full("the database write") from exc
        raise
    except DataError as exc:
        if "NUL (0x00)" not in str(exc.orig):
            raise
        raise InvalidArgument("the request holds a NUL character (\\u0000), which the database "
                              "cannot store") from exc
    except UnicodeEncodeError as exc:
        if exc.reason != "surrogates not allowed":
            raise
        raise InvalidArgument("the request holds a lone UTF-16 surrogate (such as \\ud800): "
                              "not valid Unicode text") from exc
