"""Budgets as webhooks (issue 18) and the budget list's pages (issue 16): a key crossing its
soft then its hard limit is delivered ``budget.soft_limit_reached`` then
``budget.hard_limit_reached`` once each, by the real sender to a real HTTP receiver
(tests/webhook_receiver), however many requests and flushes follow."""
from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.pagination import encode_token
from tracking import metrics_store
from tests.conftest import BACKENDS
from tests.test_webhooks import deliver_all, make_app, wdb_url  # noqa: F401 - a fixture
from tests.webhook_receiver import Receiver

FLASH = "gemini-2.5-flash"
ADMIN = {"Authorization": "Bearer root"}


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def app(tmp_path, wdb_url):  # noqa: F811
    app = make_app(tmp_path / "data", database_url=wdb_url, admin_token="root")
    yield app
    app.extensions["model_registry"].close()


def key(c, name: str) -> dict:
    token = c.post("/api/keys", json={"name": name, "role": "read"}, headers=ADMIN).json["token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("wdb_url", BACKENDS, indirect=True)
def test_a_key_crossing_soft_then_hard_limit_is_delivered_once_each(app, receiver, gemini):
    c, svc = app.test_client(), app.extensions["model_registry"]
    r = c.post("/api/webhooks", headers=ADMIN,
               json={"url": receiver.url + "/budgets", "events": ["budget.*"]})
    assert r.status_code == 201, r.json
    alice, bob = key(c, "alice"), key(c, "bob")
    c.post("/api/models/register", json={"name": "chat"}, headers=ADMIN)
    c.post("/api/models/chat/versions/register", headers=ADMIN,
           json={"version": "1.0.0", "status": "stable", "config": {"model": FLASH}})
    gemini.set_usage(FLASH, prompt=1000, candidates=200)          # 800 µUSD per call
    assert c.put("/api/budgets/key/alice", headers=ADMIN, json={
        "period": "day", "soft_limit_usd": 0.0015, "hard_limit_usd": 0.0025}).status_code == 200
    statuses = []
    for _ in range(6):
        statuses.append(c.post("/api/models/chat/predict", json={"input": "hi"},
                               headers=alice).status_code)
        c.post("/api/models/chat/predict", json={"input": "hi"}, headers=bob)  # no budget
        svc.collector.flush()     # each call's spend is stored, and judged, by its own flush
    # 1600 ≥ 1500 after two calls (soft); 3200 ≥ 2500 after four (hard), then 429
    assert statuses == [200, 200, 200, 200, 429, 429]
    deliver_all(svc)
    got = [r.json() for r in receiver.at("/budgets")]
    assert [g["event"] for g in got] == ["budget.soft_limit_reached",
                                         "budget.hard_limit_reached"]
    soft, hard = (g["data"]["detail"] for g in got)
    assert (soft["threshold"], soft["spent_micro_usd"], soft["limit_micro_usd"]) == \
        ("soft", 1600, 1500)
    assert (hard["threshold"], hard["spent_micro_usd"], hard["limit_usd"]) == \
        ("hard", 3200, 0.0025)
    assert hard["budget"]["scope"] == "key" and hard["budget"]["name"] == "alice"
    assert hard["resets_at"].endswith("T00:00:00Z") and "429" in got[1]["data"]["reason"]
    # Replacing the budget forgets what was reached: limits above the spend say nothing
    # more, and a new soft limit the next call crosses is announced once.
    c.put("/api/budgets/key/alice", headers=ADMIN,
          json={"period": "day", "soft_limit_usd": 0.004, "hard_limit_usd": 1})
    for _ in range(3):            # 3200 → 4000 (soft reached) → 4800 → 5600
        assert c.post("/api/models/chat/predict", json={"input": "hi"},
                      headers=alice).status_code == 200
        svc.collector.flush()
    deliver_all(svc)
    again = [r.json() for r in receiver.at("/budgets")][2:]
    assert [(g["event"], g["data"]["detail"]["spent_micro_usd"]) for g in again] == \
        [("budget.soft_limit_reached", 4000)]
    # Prometheus sees the same stored spend over each limit (alerts.yml pages on >= 1)
    ratios = {(s.labels["name"], s.labels["limit"]): s.value
              for f in text_string_to_metric_families(c.get("/metrics", headers=ADMIN).text)
              if f.name == "registry_budget_spent_ratio" for s in f.samples}
    assert ratios == {("alice", "soft"): 5600 / 4000, ("alice", "hard"): 5600 / 1_000_000}


def test_budget_events_are_in_the_subscription_vocabulary(data_dir):
    app = make_app(data_dir)
    c = app.test_client()
    for events in (["budget.soft_limit_reached"], ["budget.*"]):
        r = c.post("/api/webhooks", json={"url": "https://example.com/h", "events": events})
        assert r.status_code == 201, r.json
    r = c.post("/api/webhooks", json={"url": "https://example.com/h",
                                      "events": ["budget.exceeded"]})
    assert r.status_code == 400 and "budget.hard_limit_reached" in r.json["error"]["message"]
    app.extensions["model_registry"].close()


def test_the_budget_list_is_paged_and_bad_tokens_are_400(data_dir):
    app = make_app(data_dir)
    c = app.test_client()
    names = [("key", "k1"), ("key", "k2"), ("model", "a"), ("model", "b"), ("model", "c")]
    for scope, name in reversed(names):
        assert c.put(f"/api/budgets/{scope}/{name}",
                     json={"period": "day", "soft_limit_usd": 1}).status_code == 200
    seen, token, pages = [], None, 0
    while True:
        r = c.get("/api/budgets", query_string={"limit": 2, **({"page_token": token}
                                                              if token else {})})
        assert r.status_code == 200, r.json
        seen += [(b["scope"], b["name"]) for b in r.json["budgets"]]
        pages += 1
        token = r.json["next_page_token"]
        if token is None:
            break
    assert seen == names and pages == 3
    everything = c.get("/api/budgets").json
    assert len(everything["budgets"]) == 5 and everything["next_page_token"] is None
    assert everything["budgets"][0]["spent_usd"] == 0
    for bad in ("!!not-a-token", encode_token(5), encode_token(["key"]), encode_token([1, 2])):
        r = c.get("/api/budgets", query_string={"page_token": bad})
        assert r.status_code == 400 and "page_token" in r.json["error"]["message"], bad
    for limit in (0, 1001, "x"):
        assert c.get("/api/budgets", query_string={"limit": limit}).status_code == 400
    app.extensions["model_registry"].close()


@pytest.mark.storage
def test_processes_flushing_the_crossing_at_once_write_the_event_once(database):
    """Eight collectors (as eight server processes) each flush a key's spend on a model of its
    own (so no metric row is shared and nothing else serialises them on PostgreSQL) that,
    summed, crosses the key's limit, all at once: the conditional UPDATE lets one write the
    event."""
    from sqlalchemy import func, select

    from storage.schema import events
    from tracking.budgets import Budgets
    from tracking.metrics_collector import MetricsCollector
    from tracking.metrics_store import MetricsStore

    collectors = [MetricsCollector(MetricsStore(database), start_thread=False)
                  for _ in range(8)]
    Budgets(database, collectors[0]).put("key", "alice", "day", soft_limit_usd=0.001)
    for i, c in enumerate(collectors):                     # 8 × 600 ≥ 1000 from the 2nd on
        c.record(f"m{i}", "1.0.0", 0.01, True, cost=600, api_key="alice")
    start = threading.Barrier(len(collectors))

    def flush(c: MetricsCollector) -> None:
        start.wait()
        c.flush()

    threads = [threading.Thread(target=flush, args=(c,)) for c in collectors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with database.read() as conn:
        written = conn.execute(select(events.c.detail).where(
            events.c.kind == "budget.soft_limit_reached")).scalars().all()
    assert len(written) == 1 and written[0]["spent_micro_usd"] >= 1200
    for c in collectors:
        c.close()


def test_the_ticker_writes_an_event_no_flush_could_see(database, monkeypatch):
    """Spend stored without the flush's check (as when two PostgreSQL flushes each missed
    the other's half): the budgets' periodic evaluation writes the event, once."""
    from sqlalchemy import select

    from storage.schema import events
    from tracking.budgets import Budgets
    from tracking.metrics_collector import MetricsCollector
    from tracking.metrics_store import MetricsStore

    collector = MetricsCollector(MetricsStore(database), start_thread=False)
    budgets = Budgets(database, collector)
    budgets.put("key", "alice", "month", hard_limit_usd=0.001)
    collector.record("m", "1.0.0", 0.01, True, cost=1500, api_key="alice")
    with monkeypatch.context() as patch:      # the flush's own check sees nothing
        patch.setattr(metrics_store, "note_limits_reached", lambda conn, rows, now: [])
        collector.flush()
    assert budgets.evaluate() == [] and budgets.evaluate() == []   # no alert manager wired
    with database.read() as conn:
        kinds = conn.execute(select(events.c.kind).where(
            events.c.kind.like("budget.%"))).scalars().all()
    assert kinds == ["budget.hard_limit_reached"]
    collector.close()
