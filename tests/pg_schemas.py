"""PostgreSQL schemas for tests: each test gets a migrated schema of its own, cheaply.

A schema is migrated once per session and dumped (``pg_dump``: tables, indexes, sequences and
the rows migrations insert) as a script with its name as a placeholder; a new schema is that
script run once instead of every Alembic migration. Creating one still costs the server
~0.1–0.2 s of catalog work, so a schema a test is done with is emptied (~5 ms: every table's
rows deleted, the migrations' rows and the sequences' values put back) and handed to the next
test, unless the test changed its shape (tables, or the Alembic revision); then it is dropped.
That work goes through one kept connection that does not wait for WAL flushes either: a new
PostgreSQL connection costs ~10 ms (a server process forked, the password checked), and
checking and emptying a schema on fresh connections took ~28 ms a test instead of ~5 ms.
Without a ``pg_dump`` of the server's major version every schema is created empty and migrated
by the test's ``Database`` as before, and dropped after use.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from storage.database import Database

log = logging.getLogger(__name__)

_PLACEHOLDER = "t_template_placeholder"


@dataclass(frozen=True)
class _Template:
    script: str                 # creates the schema named _PLACEHOLDER, migrated
    reset: str                  # empties it again (same placeholder)
    tables: frozenset[str]
    revision: str


class PgSchemas:
    """Fresh migrated schemas on the server at ``url`` (one pool per test process)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._admin = create_engine(make_url(url).update_query_dict(
            {"options": "-csynchronous_commit=off"}), pool_size=1)
        self._template: _Template | None = None
        self._dumped = False
        self._clean: list[str] = []

    def schema_url(self, schema: str) -> str:
        """The server's URL with ``schema`` first on the search path. Commits do not wait for
        the WAL to reach the disk (``synchronous_commit=off``, these connections only): what
        tests kill is the app's processes, never the PostgreSQL server, so nothing they check
        depends on it, and each commit is a disk flush shorter (the fast lane's PostgreSQL
        cases took 45 s serially with it on, 33 s with it off)."""
        return make_url(self.url).update_query_dict(
            {"options": f"-csearch_path={schema} -csynchronous_commit=off"}
        ).render_as_string(hide_password=False)

    def lease(self) -> Iterator[str]:
        """A URL whose search_path is an empty, migrated schema of its own while in use."""
        template = self._get_template()
        schema = self._clean.pop() if self._clean and template else self._create(template)
        try:
            yield self.schema_url(schema)
        finally:
            self._give_back(schema, template)

    def lease_empty(self) -> Iterator[str]:
        """A URL whose search_path is a schema with nothing in it yet (for tests of migrating
        itself), dropped after use."""
        schema = self._create(None)
        try:
            yield self.schema_url(schema)
        finally:
            self._drop(schema)

    def close(self) -> None:
        """Drop the schemas kept for reuse."""
        while self._clean:
            self._drop(self._clean.pop())
        self._admin.dispose()

    def _create(self, template: _Template | None) -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        if template is None:
            with self._admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        else:
            self._run(template.script.replace(_PLACEHOLDER, schema))
        return schema

    def _give_back(self, schema: str, template: _Template | None) -> None:
        if template is not None and self._same_shape(schema, template):
            try:
                self._run("SET lock_timeout = '5s';"
                          + template.reset.replace(_PLACEHOLDER, schema))
            except Exception:   # e.g. a row lock a test left behind: do not reuse it
                log.warning("test schema %s could not be emptied", schema, exc_info=True)
            else:
                self._clean.append(schema)
                return
        self._drop(schema)

    def _same_shape(self, schema: str, template: _Template) -> bool:
        with self._admin.connect() as conn:
            tables = set(conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}).scalars())
            if tables != template.tables:
                return False
            revision = conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version'))
            return list(revision.scalars()) == [template.revision]

    def _drop(self, schema: str) -> None:
        with self._admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    def _run(self, script: str) -> None:
        """Many statements in one round trip (psycopg's simple query protocol, no parameters)."""
        raw = self._admin.raw_connection()
        try:
            with raw.cursor() as cur:
                cur.execute(script)
            raw.commit()
        finally:
            raw.close()

    def _get_template(self) -> _Template | None:
        if not self._dumped:
            self._dumped = True
            self._template = self._dump_migrated_schema()
        return self._template

    def _dump_migrated_schema(self) -> _Template | None:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        url = make_url(self.url)
        try:
            with self._admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            Database(self.schema_url(schema)).dispose()
            dump = subprocess.run(
                ["pg_dump", "--schema", schema, "--no-owner", "--no-privileges", "--inserts",
                 "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
                 "-U", url.username or "postgres", url.database or "postgres"],
                env={**os.environ, "PGPASSWORD": url.password or ""},
                capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        finally:
            self._drop(schema)
        if dump.returncode != 0 or f"CREATE SCHEMA {schema};" not in dump.stdout:
            return None   # e.g. no pg_dump, or one older than the server
        lines = [line for line in dump.stdout.splitlines() if not line.startswith("\\")]
        script = re.sub(rf"\b{schema}\b", _PLACEHOLDER, "\n".join(lines))
        return _template_of(script)


def _template_of(script: str) -> _Template:
    prefix = re.escape(_PLACEHOLDER)
    tables = re.findall(rf"^CREATE TABLE {prefix}\.(\w+) \(", script, re.M)
    rows = re.findall(rf"^INSERT INTO {prefix}\..*;$", script, re.M)
    sequences = re.findall(rf"^SELECT pg_catalog\.setval\('{prefix}\..*;$", script, re.M)
    [revision] = re.findall(rf"^INSERT INTO {prefix}\.alembic_version VALUES \('(\w+)'\);$",
                            script, re.M)
    # Foreign keys are not checked while the session acts as a replica: any order will do.
    reset = "".join(
        ["SET session_replication_role = replica;"]
        + [f"DELETE FROM {_PLACEHOLDER}.{table};" for table in tables]
        + rows + sequences
        + ["SET session_replication_role = DEFAULT;"])
    return _Template(script, reset, frozenset(tables), revision)
