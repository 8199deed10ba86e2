"""Registry reads (issue 14): ranges resolved in SQL equal the Python matcher, the work of a read
is bounded whatever the number of versions, and the per-process read cache keeps the traffic
table's promise (own writes at once, any process's writes within a second), on SQLite and
PostgreSQL."""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, insert, select

from errors import NotFound
from registry.model_registry import ModelRegistry
from registry.version_manager import parse_range, parse_version, precedence_key, sort_versions
from storage.database import Database
from storage.schema import model_versions, models, utcnow
from tests.conftest import examples

pytestmark = pytest.mark.storage   # the PostgreSQL cases stay in the fast lane

# --------------------------------------------------------------------------- SQL == Python

_names = itertools.count()
_core = st.builds(lambda a, b, c: f"{a}.{b}.{c}", *(st.integers(0, 3),) * 3)
_pre = st.sampled_from(["alpha", "alpha.1", "beta", "beta.2", "beta.11", "rc.1", "rc.2", "0", "1"])
_version = st.builds(lambda core, pre: f"{core}-{pre}" if pre else core, _core,
                     st.one_of(st.none(), st.none(), _pre))
_simple = st.builds(lambda op, v: op + v,
                    st.sampled_from(["", "=", "^", "~", ">", ">=", "<", "<="]), _version)
_partial = st.sampled_from(["1", "1.x", "0.x", "1.2", "*", "2.1.x", "0.0"])
_block = st.one_of(_simple, _partial,
                   st.builds(lambda a, b: f"{a} - {b}", _version, _version))
_range = st.lists(st.lists(_block, min_size=1, max_size=3).map(" ".join),
                  min_size=1, max_size=3).map(" || ".join)


def looks_like_version(text: str) -> bool:
    try:
        parse_version(text)
    except Exception:  # noqa: BLE001
        return False
    return True


def _valid_range(text: str) -> bool:
    try:
        parse_range(text)
    except Exception:  # noqa: BLE001  (hypothesis builds some ranges npm refuses)
        return False
    return True


@pytest.fixture
def registry(database: Database) -> ModelRegistry:
    return ModelRegistry(database)


# Bounded: each example registers up to 14 versions, on both backends (150 examples took 11 s
# on SQLite and 18 s on PostgreSQL on a loaded machine). Hypothesis draws new ones every run.
@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(versions=st.lists(_version, min_size=0, max_size=14, unique_by=precedence_key),
       archived=st.sets(st.integers(0, 13), max_size=3),
       range_text=_range.filter(_valid_range))
def test_sql_intervals_equal_the_python_matcher(registry, versions, archived, range_text):
    """Listing by range and resolving a range in SQL give exactly what npm's rules give."""
    name = f"m{next(_names)}"
    registry.register_model(name)
    for i, v in enumerate(versions):
        registry.register_version(name, v, status="archived" if i in archived else "stable")
    matcher = parse_range(range_text)
    expected = [v for v in sort_versions(versions) if matcher.match(v)]

    listed = [r["version"] for r in registry.iter_versions(name, range_text=range_text)]
    assert listed == expected

    live = [v for v in expected if versions.index(v) not in archived]
    if looks_like_version(range_text):  # an exact version names itself, archived or not
        return
    if live:
        assert registry.get_version(name, range_text)["version"] == live[0]
    else:
        with pytest.raises(NotFound):
            registry.get_version(name, range_text)


def test_range_pages_in_sql(registry):
    registry.register_model("m")
    for v in ["1.0.0", "1.1.0-rc.1", "1.1.0", "1.2.0", "2.0.0-rc.1", "2.0.0", "3.0.0"]:
        registry.register_version("m", v)
    pages, token = [], None
    while True:
        page, token = registry.list_versions_page("m", range=">=1.1.0-rc.1 <3", limit=2,
                                                  page_token=token)
        pages.append([r["version"] for r in page])
        if token is None:
            break
    assert pages == [["2.0.0", "1.2.0"], ["1.1.0", "1.1.0-rc.1"]]
    assert registry.list_versions("m", range=">2.0.0 <1.0.0") == []


def test_latest_prefers_a_live_release(registry):
    registry.register_model("m")
    registry.register_version("m", "1.0.0-rc.1")
    assert registry.get_version("m", "latest")["version"] == "1.0.0-rc.1"
    registry.register_version("m", "0.9.0")
    registry.register_version("m", "2.0.0", status="archived")
    assert registry.get_version("m", "latest")["version"] == "0.9.0"


# --------------------------------------------------------------------------- bounded work


def _many_versions(db: Database, name: str, count: int) -> None:
    """``count`` releases and as many pre-releases beside them, in one transaction."""
    ModelRegistry(db).register_model(name)
    now = utcnow()
    with db.transaction() as conn:
        model_id = conn.execute(select(models.c.id).where(models.c.name == name)).scalar_one()
        rows = []
        for i in range(count):
            for pre in (None, "rc.1"):
                v = parse_version(f"{i // 1000}.{(i // 10) % 100}.{i % 10}"
                                  + (f"-{pre}" if pre else ""))
                rows.append(dict(model_id=model_id, version=str(v), precedence=precedence_key(v),
                                 major=v.major, minor=v.minor, patch=v.patch,
                                 prerelease=v.prerelease, status="stable", provider="onnx",
                                 config={}, description="", tags={}, metadata={},
                                 created_at=now, updated_at=now))
        conn.execute(insert(model_versions), rows)


class _Work:
    """Statements (SQLAlchemy events) and SQLite virtual-machine steps (a progress handler
    called every 100 instructions): what a read costs the database, not how long it took."""

    def __init__(self, db: Database) -> None:
        self.statements = self.steps = 0
        event.listen(db.engine, "before_cursor_execute", self._statement)
        event.listen(db.engine, "connect", self._connect)
        db.engine.dispose()  # pooled connections get the progress handler as they reconnect

    def _statement(self, *_args) -> None:
        self.statements += 1

    def _connect(self, dbapi_conn, _record) -> None:
        dbapi_conn.set_progress_handler(self._step, 100)

    def _step(self) -> int:
        self.steps += 1
        return 0

    def measure(self, fn) -> tuple[int, int]:
        self.statements = self.steps = 0
        fn()
        return self.statements, self.steps


@pytest.mark.slow   # builds 20,000 versions
def test_a_read_costs_the_same_with_20000_versions(tmp_path: Path):
    """Issue 21 finding 6 relies on this: a range over a huge model is bounded work."""
    db = Database(f"sqlite:///{tmp_path / 'big.db'}")
    _many_versions(db, "small", 200)  # 400 versions: enough to fill every page
    _many_versions(db, "big", 10_000)  # 20,000 versions
    registry = ModelRegistry(db)
    registry.store.cache.ttl_s = 0  # measure the SQL, not the cache
    registry.set_alias("small", "prod", "0.0.1")
    registry.set_alias("big", "prod", "0.0.1")
    deep = {m: registry.list_versions_page(m, range="*", limit=150)[1] for m in ("small", "big")}
    work = _Work(db)
    reads = {
        "latest": lambda m: registry.get_version(m, "latest"),
        "alias": lambda m: registry.get_version(m, "prod"),
        "range": lambda m: registry.get_version(m, "^0.1 || ~0.0.5-rc.1"),
        "list range": lambda m: registry.list_versions_page(m, range=">=0.0.3-rc.1 <9",
                                                            limit=100),
        "list range, deep page": lambda m: registry.list_versions_page(
            m, range="*", limit=100, page_token=deep[m]),
    }
    for what, read in reads.items():
        small_statements, small_steps = work.measure(lambda: read("small"))
        big_statements, big_steps = work.measure(lambda: read("big"))
        assert big_statements == small_statements <= 3, what  # BEGIN, versions, aliases
        # B-tree depth grows by a level or two; a scan would be ~200x.
        assert big_steps <= 1.5 * small_steps + 20, (what, small_steps, big_steps)
    db.dispose()


def test_statements_per_write(registry, database):
    """Nothing is read back after a write, and with no webhook subscription enabled the
    outbox sends no SELECT: the event's own INSERT counts the enabled subscriptions
    (storage/events.py; tests/test_group_commit.py covers the case with one)."""
    statements = []
    event.listen(database.engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2].split()[0].upper()))
    bookkeeping = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")
    registry.register_model("m", tags={"team": "a"})
    assert [s for s in statements if s not in bookkeeping] == ["INSERT"] * 3
    statements.clear()
    registry.register_version("m", "1.0.0", tags={"k": "v"})
    assert [s for s in statements if s not in bookkeeping] == \
        ["UPDATE", "INSERT", "INSERT"]


# --------------------------------------------------------------------------- coherence


@pytest.fixture
def two_processes(database_url: str):
    """Two registries on one database, each with its own engine and cache, as two processes."""
    a, b = Database(database_url), Database(database_url, migrate=False)
    yield ModelRegistry(a), ModelRegistry(b)
    a.dispose()
    b.dispose()


def _within_a_second(read, expected) -> float:
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        if read() == expected:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"still {read()!r}, not {expected!r}, after a second")


def test_own_writes_at_once_others_within_a_second(two_processes):
    a, b = two_processes
    a.register_model("m")
    a.register_version("m", "1.0.0", status="stable")
    for registry in (a, b):  # both cache 1.0.0
        assert registry.get_version("m", "latest")["version"] == "1.0.0"
        assert [v["version"] for v in registry.list_versions("m")] == ["1.0.0"]

    a.register_version("m", "1.1.0", status="stable")
    assert a.get_version("m", "latest")["version"] == "1.1.0"  # at once, no waiting
    assert [v["version"] for v in a.list_versions("m")] == ["1.1.0", "1.0.0"]
    _within_a_second(lambda: b.get_version("m", "latest")["version"], "1.1.0")

    b.set_alias("m", "prod", "1.0.0")
    assert b.get_version("m", "prod")["aliases"] == ["prod"]
    _within_a_second(lambda: a.get_version("m", "1.0.0")["aliases"], ["prod"])

    b.update_version("m", "1.1.0", status="archived")
    assert b.get_version("m", "latest")["version"] == "1.0.0"
    _within_a_second(lambda: a.get_version("m", "latest")["version"], "1.0.0")

    b.update_model("m", description="new")
    _within_a_second(lambda: a.get_model("m")["description"], "new")


def test_a_deleted_and_registered_again_model_is_not_served_stale(two_processes):
    a, b = two_processes
    a.register_model("m")
    a.register_version("m", "1.0.0")
    assert b.get_version("m", "latest")["version"] == "1.0.0"
    a.delete_model("m")
    a.register_model("m")
    a.register_version("m", "2.0.0")
    _within_a_second(lambda: b.get_version("m", "latest")["version"], "2.0.0")


def test_cached_answers_do_not_hide_unknowns(registry):
    with pytest.raises(NotFound, match="model 'nope' does not exist"):
        registry.get_version("nope", "latest")
    registry.register_model("nope")
    with pytest.raises(NotFound, match="no version of model 'nope' matches 'latest'"):
        registry.get_version("nope", "latest")
    registry.register_version("nope", "1.0.0")
    assert registry.get_version("nope", "latest")["version"] == "1.0.0"
