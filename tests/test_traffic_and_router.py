"""The traffic table (SQLite and PostgreSQL) and the router that reads it: weights, history,
``at``, optimistic revisions, weighted and sticky choice, cross-process revalidation."""
from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest

from deployment.router import BUCKETS, Router, key_bucket
from deployment.traffic_store import TrafficStore
from errors import FailedPrecondition, InvalidArgument
from storage.schema import utcnow

pytestmark = pytest.mark.storage   # the PostgreSQL cases stay in the fast lane


def set_table(store: TrafficStore, weights, stable, **kw):
    with store.db.transaction() as conn:
        return store.set(conn, "m", weights, stable, actor="test", reason="because", **kw)


def test_set_get_history_and_events(database):
    store = TrafficStore(database)
    assert store.get("m") is None and store.revision("m") is None
    first = set_table(store, {"1.0.0": 100}, "1.0.0")
    second = set_table(store, {"1.1.0": 10, "1.0.0": 90}, "1.0.0", deployment_id="dep_x")
    assert (first.revision, second.revision) == (1, 2)
    table = store.get("m")
    assert table.weights == {"1.1.0": 10, "1.0.0": 90} and table.stable_version == "1.0.0"
    assert table.deployment_id == "dep_x" and store.revision("m") == 2
    history = store.history("m")
    assert [h.revision for h in history] == [2, 1]
    assert history[0].actor == "test" and history[0].reason == "because"


@pytest.mark.parametrize("weights", [{}, {"1.0.0": 90}, {"1.0.0": 50.5, "1.1.0": 49.5},
                                     {"1.0.0": 101, "1.1.0": -1}, {"1.0.0": True}])
def test_bad_weights_are_refused(database, weights):
    with pytest.raises(InvalidArgument):
        set_table(TrafficStore(database), weights, "1.0.0")


def test_zero_weights_are_dropped(database):
    table = set_table(TrafficStore(database), {"1.0.0": 100, "1.1.0": 0}, "1.0.0")
    assert table.weights == {"1.0.0": 100}


def test_expected_revision_makes_a_write_optimistic(database):
    store = TrafficStore(database)
    set_table(store, {"1.0.0": 100}, "1.0.0", expected_revision=0)
    seen = store.get("m").revision
    set_table(store, {"1.1.0": 100}, "1.1.0", expected_revision=seen)   # wins
    with pytest.raises(FailedPrecondition, match="changed meanwhile"):
        set_table(store, {"1.2.0": 100}, "1.2.0", expected_revision=seen)  # stale: loses
    assert store.get("m").weights == {"1.1.0": 100}
    assert [h.revision for h in store.history("m")] == [2, 1]   # nothing half-written


def test_a_failed_transaction_leaves_no_trace(database):
    store = TrafficStore(database)
    set_table(store, {"1.0.0": 100}, "1.0.0")
    with pytest.raises(RuntimeError):
        with database.transaction() as conn:
            store.set(conn, "m", {"2.0.0": 100}, "2.0.0", actor="t", reason="r")
            raise RuntimeError("the state change that caused it failed")
    assert store.get("m").weights == {"1.0.0": 100} and len(store.history("m")) == 1


def test_at_answers_what_served_then(database):
    store = TrafficStore(database)
    before = utcnow()
    time.sleep(0.01)
    set_table(store, {"1.0.0": 100}, "1.0.0")
    time.sleep(0.01)
    middle = utcnow()
    time.sleep(0.01)
    set_table(store, {"1.1.0": 50, "1.0.0": 50}, "1.0.0")
    assert store.at("m", before) is None
    assert store.at("m", middle).weights == {"1.0.0": 100}
    assert store.at("m", utcnow()).weights == {"1.1.0": 50, "1.0.0": 50}
    assert store.at("m", utcnow() + timedelta(days=1)).revision == 2


# -- the router ----------------------------------------------------------------------------------
def router_for(database, ttl_s: float = 0.5, default=None) -> tuple[TrafficStore, Router]:
    store = TrafficStore(database)
    return store, Router(store, lambda model: default, ttl_s=ttl_s)


def test_weighted_choice_matches_the_weights(database):
    store, router = router_for(database)
    set_table(store, {"1.1.0": 10, "1.0.0": 90}, "1.0.0", deployment_id="dep_1")
    counts = Counter(router.choose("m").version for _ in range(10_000))
    assert abs(counts["1.1.0"] / 10_000 - 0.10) < 0.02
    route = router.choose("m")
    assert route.routed_by == "weight" and route.stable_version == "1.0.0"
    assert route.deployment_id == "dep_1"


def test_sticky_keys_on_the_canary_at_10_stay_on_it_at_50(database):
    store, router = router_for(database)
    keys = [f"user-{i}" for i in range(5_000)]
    set_table(store, {"1.1.0": 10, "1.0.0": 90}, "1.0.0")
    at_10 = {k for k in keys if router.choose("m", k).version == "1.1.0"}
    assert all(router.choose("m", k).version == ("1.1.0" if k in at_10 else "1.0.0")
               for k in keys[:500])      # the same key, the same version, every time
    set_table(store, {"1.1.0": 50, "1.0.0": 50}, "1.0.0")
    router.invalidate("m")
    at_50 = {k for k in keys if router.choose("m", k).version == "1.1.0"}
    assert at_10 <= at_50
    assert abs(len(at_10) / len(keys) - 0.10) < 0.03 and abs(len(at_50) / len(keys) - 0.5) < 0.04
    assert router.choose("m", "user-1").routed_by == "key"
    assert 0 <= key_bucket("anything") < BUCKETS


def test_a_change_by_another_process_is_seen_within_the_ttl(database):
    writer_store = TrafficStore(database)          # "another process": its own store
    _, reader = router_for(database, ttl_s=0.5)
    now = [100.0]
    reader.clock = lambda: now[0]                  # an injected clock: no sleeping
    set_table(writer_store, {"1.0.0": 100}, "1.0.0")
    assert reader.choose("m").version == "1.0.0"
    set_table(writer_store, {"1.1.0": 100}, "1.1.0")
    now[0] += 0.49
    assert reader.choose("m").version == "1.0.0"   # cached within the TTL
    now[0] += 0.02
    assert reader.choose("m").version == "1.1.0"   # revalidated after it


def test_no_table_falls_back_to_the_default_version(database):
    _, router = router_for(database, default="0.9.0")
    route = router.choose("m")
    assert route.version == "0.9.0" and route.deployment_id is None
    _, nothing = router_for(database, default=None)
    assert nothing.choose("m") is None and nothing.table("m") is None
