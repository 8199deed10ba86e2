"""Engine, transactions and migrations: the only place that knows which database is underneath.

SQLite (the default) is opened in WAL mode with foreign keys and a busy timeout, and every write
transaction starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the lock instead
of failing with "database is locked" half-way through. PostgreSQL is used as is; migrations take
an advisory lock so that several processes starting together migrate once.

Durability (issue 14). SQLite runs with ``synchronous = FULL``: in WAL mode every COMMIT fsyncs
the WAL before it returns, so a write that was acknowledged survives a SIGKILL of the server and
a power cut or kernel crash (``NORMAL`` would survive the first but may lose the last commits on
the second). The cost, one fsync per commit, is shared: concurrent write transactions of one
process are grouped into one SQLite transaction and one fsync (``_GroupCommit``), each but the
first in its own SAVEPOINT, and none of them returns before that commit has. PostgreSQL keeps its defaults
(``synchronous_commit = on``, ``fsync = on``): durable on commit, as its documentation says.
"""
from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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


def _enter_wal(cur: sqlite3.Cursor) -> None:
    """Switch the file to WAL mode (it stays so). Switching a new file takes an exclusive lock
    for which SQLite does not wait (its busy handler is not called): processes or threads
    opening a new database together got "database is locked" (about 1 start in 20 with four
    at once), so the switch is retried, within the busy timeout."""
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, emit BEGIN (pysqlite's implicit transactions would
        # defeat BEGIN IMMEDIATE).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        _enter_wal(cur)
        cur.execute("PRAGMA synchronous = FULL")  # see the module docstring
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "DEFERRED" if conn.get_execution_options().get("read_only") else "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")


@dataclass
class _Batch:
    members: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class _GroupCommit:
    """Write transactions of this process's threads, grouped: one SQLite transaction and one
    fsync for every writer that arrived while the previous one was working.

    Writers take turns on one connection (a lock); each but the group's first runs in a
    SAVEPOINT, so one that fails is rolled back alone (the first, alone in the transaction so
    far, by rolling back the transaction). The last writer of a group (nobody else waiting, or ``max_batch``
    reached) commits for all; the others wait for that commit and only then return, so nothing
    is acknowledged before it is on disk. One thread's nested ``transaction()`` would deadlock
    (as it would on SQLite's own lock without grouping).
    """

    def __init__(self, engine: Engine, max_batch: int = 32) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._turn = threading.Lock()
        self._count = threading.Lock()
        self._waiting = 0
        self._conn: Connection | None = None
        self._batch = _Batch()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._count:
            self._waiting += 1
        self._turn.acquire()
        with self._count:
            self._waiting -= 1
        failed = False
        batch = self._batch
        try:
            if self._conn is None:
                self._conn = self.engine.connect()
                self._conn.begin()
            # The group's first writer has the transaction to itself: no SAVEPOINT and RELEASE
            # (two statements fewer, every write of a lone writer); if it fails, rolling back
            # the whole transaction undoes its work and nobody else's.
            savepoint = self._conn.begin_nested() if batch.members else None
            try:
                yield self._conn
            except BaseException:
                failed = True
                if savepoint is not None:
                    savepoint.rollback()
                else:
                    self._discard()
                raise
            if savepoint is not None:
                savepoint.commit()
            batch.members += 1
        finally:
            with self._count:
                last = self._waiting == 0 or batch.members >= self.max_batch
            if last:
                self._finish(batch)
            self._turn.release()
        if not failed:
            batch.done.wait()
            if batch.error is not None:
                raise batch.error

    def _discard(self) -> None:
        """Roll back and drop the group's connection (its first writer failed: the
        transaction holds only that writer's work); the next writer opens a fresh one."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.rollback()
        except Exception:   # the writer's own error is the one to report
            log.warning("rolling back a failed write failed", exc_info=True)
            conn.invalidate()   # whatever state it is in, it is not reused
        finally:
            conn.close()

    def _finish(self, batch: _Batch) -> None:
        """Commit the group (called with the turn held), then let its writers return."""
        conn, self._conn, self._batch = self._conn, None, _Batch()
        try:
            if conn is not None:
                if batch.members:
                    conn.commit()
                else:
                    conn.rollback()
        except BaseException as exc:  # every writer of the group gets the error
            batch.error = exc
            if conn is not None:  # whatever state it is in, it is not reused
                conn.invalidate()
        finally:
            if conn is not None:
                conn.close()
            batch.done.set()


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
            self._group: _GroupCommit | None = _GroupCommit(self.engine)
        else:
            self._group = None
            self.engine = create_engine(self.url, pool_size=8, max_overflow=16,
                                        pool_pre_ping=True)
        if migrate:
            self.migrate()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any exception. On SQLite
        it may share its commit (and fsync) with concurrent writers; it returns after it. A full
        disk is a ``StorageFull`` (507), not a driver error (``domain_errors``), whether it
        strikes this writer's statements or the group's commit."""
        with domain_errors():
            if self._group is not None:
                with self._group.transaction() as conn:
                    yield conn
                return
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read-only unit of work (a deferred transaction on SQLite: never takes the write lock).

        ``snapshot``: every statement sees the same moment (REPEATABLE READ on PostgreSQL;
        SQLite's read transactions always do), for reads of many tables such as an export."""
        with domain_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(read_only=True)
            if snapshot and not self.is_sqlite:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
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
        """Bring the schema to the newest Alembic revision; safe when processes race.

        A schema already at the newest revision (every start but the first) is recognised by
        one read of ``alembic_version``: Alembic's upgrade would load and compile every
        migration script again to find it has nothing to do."""
        with self.engine.connect() as conn:
            if MigrationContext.configure(conn).get_current_revision() == _head_revision():
                return
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@functools.cache
def _head_revision() -> str | None:
    """The newest revision of the migration scripts (read once per process)."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


# SQLite reports a bad statement as an OperationalError too; these are the ones about reaching
# the database file. PostgreSQL's OperationalErrors about reaching the server carry no SQLSTATE
# (the connection failed) or one of class 08 (connection exception) or 57P (shutdown, cannot
# connect now); the others, such as a deadlock (40P01) or a serialization failure (40001), pass
# through unchanged, because callers retry them (``MetricsStore.add``).
_SQLITE_UNREACHABLE = ("database is locked", "database table is locked",
                       "unable to open database file", "disk i/o error")


def _unreachable(exc: OperationalError) -> bool:
    """Whether the database could not be reached or was too busy (retryable by the client),
    as opposed to a statement the database refused or a conflict the caller retries."""
    if exc.connection_invalidated:
        return True
    if type(exc.orig).__module__.startswith("sqlite3"):
        return any(words in str(exc.orig).lower() for words in _SQLITE_UNREACHABLE)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


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
        if not _unreachable(exc):
            raise
        log.warning("database operation failed", exc_info=True)   # the driver's words: log only
        raise Unavailable("the database does not answer or is busy; try again") from None
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
