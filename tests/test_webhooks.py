"""Webhooks in one process: subscriptions over the REST API, the outbox written with each
change, and the sender delivering to real HTTP receivers on 127.0.0.1 (tests/webhook_receiver)
with short backoff settings and, where time matters, an injected clock."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from api.app import create_app
from storage.schema import utcnow
from tests.conftest import BACKENDS, fresh_sqlite, shared_app
from tests.test_api_deployments import add_version
from tests.test_readme_python import readme_block
from tests.webhook_receiver import Receiver
from webhooks import sender as sender_module
from webhooks.payloads import dedup_key

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
FAST = dict(webhook_allowed_http_hosts=("127.0.0.1",), webhook_allow_private=True,
            webhook_backoff_base_s=0.01, webhook_backoff_max_s=0.05, webhook_timeout_s=2.0,
            webhook_max_attempts=5, webhook_disable_after=3)


def make_app(data_dir: Path, **settings):
    return create_app({"TESTING": True, "data_dir": data_dir, **FAST, **settings})


@pytest.fixture
def wdb_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite by default; tests that prove storage behaviour parametrize it over BACKENDS."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_schema_url")
    return fresh_sqlite(sqlite_template, tmp_path / "registry.db")


@pytest.fixture
def wapp(tmp_path: Path, wdb_url: str):
    app = make_app(tmp_path / "data", database_url=wdb_url)
    yield app
    app.extensions["model_registry"].close()


@pytest.fixture(scope="module")
def shared_client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One app for the tests that only validate requests."""
    with shared_app(request, tmp_path_factory.mktemp("shared"), **FAST) as app:
        yield app.test_client()


@pytest.fixture
def svc(wapp):
    return wapp.extensions["model_registry"]


@pytest.fixture
def wclient(wapp):
    return wapp.test_client()


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def subscribe(client, url: str, **body) -> tuple[dict, str]:
    response = client.post("/api/webhooks", json={"url": url, **body})
    assert response.status_code == 201, response.get_json()
    data = response.get_json()
    return data["webhook"], data["secret"]


def register(client, name: str) -> None:
    assert client.post("/api/models/register", json={"name": name}).status_code == 201


def version(client, name: str, ref: str) -> None:
    response = client.post(f"/api/models/{name}/versions/register",
                           json={"version": ref, "provider": "onnx"})
    assert response.status_code == 201, response.get_json()


def deliver_all(svc, timeout: float = 10.0) -> None:
    """Run the sender in this thread until the outbox is empty."""
    deadline = time.monotonic() + timeout
    while True:
        svc.webhook_sender.run_due()
        if svc.webhook_sender.store.pending_count() == 0:
            return
        assert time.monotonic() < deadline, "deliveries still pending"
        time.sleep(0.02)


def deliveries(client, webhook_id: str) -> list[dict]:
    response = client.get(f"/api/webhooks/{webhook_id}/deliveries?limit=100")
    assert response.status_code == 200
    return response.get_json()["deliveries"]


def detail(client, webhook_id: str, delivery_id: str) -> dict:
    return client.get(f"/api/webhooks/{webhook_id}/deliveries/{delivery_id}").get_json()[
        "delivery"]


def verifier():
    """The README's verification snippet, run as written."""
    namespace: dict = {}
    exec(readme_block("#### Verifying a signature"), namespace)
    return namespace["verify_signature"]


# -- subscriptions --------------------------------------------------------------------------------
def test_the_secret_is_shown_once_and_never_again(wclient, receiver, caplog):
    hook, secret = subscribe(wclient, receiver.url + "/a", events=["model.*"])
    assert secret.startswith("whsec_") and len(secret) > 30
    assert hook["events"] == ["model.*"] and hook["enabled"] and hook["kind"] == "generic"
    for response in (wclient.get("/api/webhooks"), wclient.get(f"/api/webhooks/{hook['id']}"),
                     wclient.patch(f"/api/webhooks/{hook['id']}", json={"description": "x"})):
        assert response.status_code == 200 and secret not in response.get_data(as_text=True)
    assert secret not in caplog.text


def test_list_is_paged(wclient, receiver):
    ids = {subscribe(wclient, receiver.url + f"/{i}")[0]["id"] for i in range(5)}
    first = wclient.get("/api/webhooks?limit=3").get_json()
    second = wclient.get(f"/api/webhooks?limit=3&page_token={first['next_page_token']}")
    second = second.get_json()
    assert second["next_page_token"] is None
    assert {h["id"] for h in first["webhooks"] + second["webhooks"]} == ids


@pytest.mark.parametrize("body, fragment", [
    ({"url": "http://example.com/hook"}, "must use https"),
    ({"url": "ftp://example.com/hook"}, "http(s)"),
    ({"url": "https://user:pw@example.com/hook"}, "credentials"),
    ({"url": "https://example.com/h", "events": ["deploy.*"]}, "matches no event"),
    ({"url": "https://example.com/h", "events": []}, "at least one"),
    ({"url": "https://example.com/h", "kind": "teams"}, "kind"),
    ({"url": "https://example.com/h", "kind": "pagerduty"}, "routing"),
    ({"url": "https://example.com/h", "secret": "short"}, "secret"),
    ({"url": "https://example.com/h", "model": "no spaces"}, "model"),
    ({"url": "https://example.com/h", "surprise": 1}, "surprise"),
])
def test_bad_subscriptions_are_refused_with_a_message(shared_client, body, fragment):
    response = shared_client.post("/api/webhooks", json=body)
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]["message"]


def test_private_and_loopback_addresses_are_refused_unless_allowed(data_dir, receiver):
    app = create_app({"TESTING": True, "data_dir": data_dir})
    client = app.test_client()
    try:
        for url in ("https://127.0.0.1/h", "https://10.1.2.3/h", "https://169.254.169.254/h",
                    "https://[::1]/h"):
            response = client.post("/api/webhooks", json={"url": url})
            assert response.status_code == 400, url
            assert "WEBHOOK_ALLOW_PRIVATE" in response.get_json()["error"]["message"]
        # a name resolving to loopback passes the form check, and is refused once connected,
        # before TLS or any byte of the delivery
        port = receiver.url.rsplit(":", 1)[1]
        hook = client.post("/api/webhooks", json={"url": f"https://localhost:{port}/h"}
                           ).get_json()
        svc = app.extensions["model_registry"]
        register(client, "m1")
        deliver_all(svc)
        [d] = deliveries(client, hook["webhook"]["id"])
        assert d["state"] == "failed" and d["attempts"] == 1
        assert "loopback" in d["last_error"] and receiver.requests == []
    finally:
        app.extensions["model_registry"].close()


def test_webhooks_are_admin_only(data_dir, monkeypatch):
    monkeypatch.setenv("REGISTRY_ADMIN_TOKEN", "admin-secret-token")
    app = make_app(data_dir)
    client = app.test_client()
    try:
        svc = app.extensions["model_registry"]
        _, token = svc.keys.create("ci", "write", actor="test")
        writer = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/webhooks", headers=writer).status_code == 403
        assert client.post("/api/webhooks", headers=writer,
                           json={"url": "https://example.com/h"}).status_code == 403
        admin = {"Authorization": "Bearer admin-secret-token"}
        assert client.post("/api/webhooks", headers=admin,
                           json={"url": "https://example.com/h"}).status_code == 201
    finally:
        app.extensions["model_registry"].close()


# -- delivery -------------------------------------------------------------------------------------
@pytest.mark.parametrize("wdb_url", BACKENDS, indirect=True)
def test_generic_delivery_is_signed_as_the_readme_says(wclient, svc, receiver):
    hook, secret = subscribe(wclient, receiver.url + "/ci", events=["model.created",
                                                                    "version.*"])
    register(wclient, "m1")
    version(wclient, "m1", "1.0.0")
    deliver_all(svc)
    got = receiver.at("/ci")
    assert [r.json()["event"] for r in got] == ["model.created", "version.created"]
    verify_signature = verifier()
    for request in got:
        assert verify_signature(secret, request.body, request.headers)
        assert not verify_signature(secret, request.body + b" ", request.headers)
        assert not verify_signature("whsec_wrong", request.body, request.headers)
        envelope = request.json()
        assert set(envelope) == {"id", "event", "time", "data"}
        assert envelope["id"] == request.headers["X-MLflow-Delivery-Id"]
        assert envelope["data"]["model"] == "m1"
    assert got[1].json()["data"]["version"] == "1.0.0"


@pytest.mark.parametrize("wdb_url", BACKENDS, indirect=True)
def test_503_503_200_is_delivered_on_the_third_attempt_and_logged(wclient, svc, receiver):
    url = receiver.script("/flaky", 503, 503, 200)
    hook, _ = subscribe(wclient, url, events=["model.created"])
    register(wclient, "m1")
    deliver_all(svc)
    got = receiver.at("/flaky")
    assert len(got) == 3
    assert len({r.headers["X-MLflow-Delivery-Id"] for r in got}) == 1   # one stable id
    assert len({r.body for r in got}) == 1
    [d] = deliveries(wclient, hook["id"])
    assert d["state"] == "succeeded" and d["attempts"] == 3 and d["last_status"] == 200
    log = detail(wclient, hook["id"], d["id"])["attempt_log"]
    assert [(a["status_code"], a["outcome"]) for a in log] == [
        (503, "retry"), (503, "retry"), (200, "succeeded")]
    assert all(a["latency_ms"] > 0 and a["at"] for a in log)
    assert '"status": 503' in log[0]["response_excerpt"]


def test_429_waits_as_long_as_retry_after_says(wclient, svc, receiver):
    url = receiver.script("/busy", 429, 200, headers={"Retry-After": "120"})
    hook, _ = subscribe(wclient, url, events=["model.created"])
    register(wclient, "m1")
    now = utcnow()
    svc.webhook_sender.clock = lambda: now
    assert svc.webhook_sender.run_due() == 1
    [d] = deliveries(wclient, hook["id"])
    assert d["state"] == "pending" and d["attempts"] == 1
    assert svc.webhook_sender.run_due() == 0                  # not due for two minutes
    later = now + timedelta(seconds=121)
    svc.webhook_sender.clock = lambda: later
    assert svc.webhook_sender.run_due() == 1
    assert deliveries(wclient, hook["id"])[0]["state"] == "succeeded"


def test_backoff_doubles_with_jitter_up_to_the_cap(svc):
    sender = svc.webhook_sender
    sender.jitter = lambda: 1.0
    assert [sender.delay(n) for n in (1, 2, 3, 10)] == [0.01, 0.02, 0.04, 0.05]
    sender.jitter = lambda: 0.0
    assert sender.delay(2) == 0.01
    assert sender.delay(1, retry_after=0.04) == 0.04


def test_network_errors_are_retried_until_the_limit_then_failed(wclient, svc, receiver):
    hook, _ = subscribe(wclient, "http://127.0.0.1:9/nothing-listens", events=["model.*"])
    register(wclient, "m1")
    deliver_all(svc)
    [d] = deliveries(wclient, hook["id"])
    assert d["state"] == "failed" and d["attempts"] == 5 and "gave up" in d["last_error"]
    log = detail(wclient, hook["id"], d["id"])["attempt_log"]
    assert [a["status_code"] for a in log] == [None] * 5
    assert "ConnectionError" in log[0]["error"]


def test_4xx_and_redirects_fail_at_once(wclient, svc, receiver):
    hook, _ = subscribe(wclient, receiver.script("/gone", 410), events=["model.created"])
    moved, _ = subscribe(wclient, receiver.script("/moved", 302,
                                                  headers={"Location": "http://10.0.0.1/"}),
                         events=["model.created"])
    register(wclient, "m1")
    deliver_all(svc)
    assert deliveries(wclient, hook["id"])[0]["attempts"] == 1
    [d] = deliveries(wclient, moved["id"])
    assert d["state"] == "failed" and "redirects are not followed" in d["last_error"]
    assert len(receiver.at("/moved")) == 1


@pytest.mark.parametrize("wdb_url", BACKENDS, indirect=True)
def test_repeated_failures_disable_the_subscription_and_raise_an_alert(wclient, svc, receiver):
    url = receiver.script("/down", 500)
    hook, _ = subscribe(wclient, url, events=["model.created"])
    for i in range(3):
        wclient.post("/api/models/register", json={"name": f"m{i}"})
    deliver_all(svc)
    got = wclient.get(f"/api/webhooks/{hook['id']}").get_json()["webhook"]
    assert not got["enabled"] and got["consecutive_failures"] == 3
    assert "3 consecutive failed deliveries" in got["disabled_reason"]
    [alert] = svc.alerts.list_alerts("webhooks", active=True)[0]
    assert alert["rule"] == "webhook_disabled" and alert["version"] == hook["id"]
    register(wclient, "after")       # not queued while disabled
    assert len(deliveries(wclient, hook["id"])) == 3
    receiver.script("/down", 200)
    enabled = wclient.patch(f"/api/webhooks/{hook['id']}", json={"enabled": True}).get_json()
    assert enabled["webhook"]["consecutive_failures"] == 0
    assert svc.alerts.list_alerts("webhooks", active=True)[0] == []


def test_a_hanging_receiver_delays_nothing_else(wclient, svc, receiver):
    release = threading.Event()
    slow, _ = subscribe(wclient, receiver.script("/hang", 200, hang=release), events=["model.*"])
    fast, _ = subscribe(wclient, receiver.script("/fast", 200), events=["model.*"])
    try:
        started = time.monotonic()
        register(wclient, "m1")
        register(wclient, "m2")
        while len(receiver.at("/fast")) < 2:                  # the background path: tick()
            svc.webhook_sender.tick()
            assert time.monotonic() - started < 1.5, "the fast receiver waited"
            time.sleep(0.01)
        assert len(receiver.at("/hang")) == 1                 # still held by the slow one
        assert wclient.get("/api/models").status_code == 200  # requests are not held either
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while svc.webhook_sender.store.pending_count():
        svc.webhook_sender.tick()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [d["state"] for d in deliveries(wclient, slow["id"])] == ["succeeded"] * 2


def test_a_subscription_with_more_than_a_drain_budget_is_delivered_without_a_pause(
        wclient, svc, receiver, monkeypatch):
    """A worker yields after a budget of deliveries to one subscription; the next beat goes on.
    It used to lease one delivery more than it sent when it yielded, and that delivery waited
    for its lease to run out (2 x the timeout + 5 s): 200 events took 28 s instead of 4 s."""
    monkeypatch.setattr(sender_module, "_DRAIN_BUDGET", 3)
    subscribe(wclient, receiver.script("/drain", 200), events=["model.created"])
    for i in range(7):
        register(wclient, f"m{i}")
    started = time.monotonic()
    while len(receiver.at("/drain")) < 7:                     # the background path: tick()
        svc.webhook_sender.tick()
        assert time.monotonic() - started < svc.webhook_sender.lease_s / 2, \
            f"stalled after {len(receiver.at('/drain'))} of 7"
        time.sleep(0.02)
    assert [r.json()["data"]["model"] for r in receiver.at("/drain")] == \
        [f"m{i}" for i in range(7)]


def test_hanging_receiver_times_out_and_is_retried(data_dir, receiver):
    app = make_app(data_dir, webhook_timeout_s=0.3)
    svc = app.extensions["model_registry"]
    client = app.test_client()
    release = threading.Event()
    try:
        hook, _ = subscribe(client, receiver.script("/hang", 200, hang=release),
                            events=["model.created"])
        register(client, "m1")
        svc.webhook_sender.run_due()
        release.set()
        deliver_all(svc)
        [d] = deliveries(client, hook["id"])
        log = detail(client, hook["id"], d["id"])["attempt_log"]
        assert log[0]["outcome"] == "retry" and "Timeout" in log[0]["error"]
        assert d["state"] == "succeeded"
    finally:
        release.set()
        svc.close()


@pytest.mark.storage
@pytest.mark.parametrize("wdb_url", BACKENDS, indirect=True)
def test_senders_racing_on_one_database_send_each_delivery_once(wclient, svc, wdb_url, receiver):
    from storage.database import Database
    from webhooks.sender import WebhookSender
    from webhooks.webhook_store import WebhookStore
    subscribe(wclient, receiver.url + "/race", events=["model.created"])
    for i in range(12):
        register(wclient, f"m{i}")
    others = [Database(wdb_url) for _ in range(2)]
    senders = [svc.webhook_sender] + [WebhookSender(WebhookStore(db), svc.settings)
                                      for db in others]
    try:
        threads = [threading.Thread(target=s.run_due) for s in senders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        deliver_all(svc)
    finally:
        for db in others:
            db.dispose()
    ids = Counter(r.headers["X-MLflow-Delivery-Id"] for r in receiver.at("/race"))
    assert len(ids) == 12 and set(ids.values()) == {1}
    assert [r.json()["data"]["model"] for r in receiver.at("/race")] == [
        f"m{i}" for i in range(12)]                            # in order, too


def test_a_change_that_rolls_back_queues_nothing(wclient, svc, receiver):
    hook, _ = subscribe(wclient, receiver.url + "/x", events=["model.created"])
    register(wclient, "m1")
    assert wclient.post("/api/models/register", json={"name": "m1"}).status_code == 409
    deliver_all(svc)
    assert len(deliveries(wclient, hook["id"])) == 1


def test_a_forced_deploy_delivers_the_superseded_rollout(wclient, svc, receiver):
    subscribe(wclient, receiver.url + "/deploys", events=["deployment.*"])
    register(wclient, "m")
    for ref in ("1.0.0", "1.1.0", "1.2.0"):
        add_version(wclient, ref)
    assert wclient.post("/api/models/m/deploy", json={"version": "1.0.0"}).status_code == 201
    first = wclient.post("/api/models/m/deploy", json={"version": "1.1.0", "strategy": "canary"}
                         ).json["deployment"]["id"]
    assert wclient.post("/api/models/m/deploy", json={
        "version": "1.2.0", "strategy": "canary", "force": True}).status_code == 202
    deliver_all(svc)
    superseded = [r.json() for r in receiver.at("/deploys")
                  if r.json()["event"] == "deployment.superseded"]
    assert [s["data"]["deployment_id"] for s in superseded] == [first]
    assert superseded[0]["data"]["detail"]["from_state"] == "progressing"


def test_model_filter_and_patterns_select_events(wclient, svc, receiver):
    only_m1, _ = subscribe(wclient, receiver.url + "/m1", model="m1")
    aliases, _ = subscribe(wclient, receiver.url + "/alias", events=["alias.*"])
    for name in ("m1", "m2"):
        register(wclient, name)
        version(wclient, name, "1.0.0")
        wclient.put(f"/api/models/{name}/aliases/prod", json={"version": "1.0.0"})
    deliver_all(svc)
    assert [r.json()["event"] for r in receiver.at("/m1")] == [
        "model.created", "version.created", "alias.set"]
    assert {r.json()["data"]["model"] for r in receiver.at("/m1")} == {"m1"}
    assert [r.json()["event"] for r in receiver.at("/alias")] == ["alias.set", "alias.set"]


def test_test_endpoint_and_redelivery_of_the_original_body(wclient, svc, receiver):
    hook, secret = subscribe(wclient, receiver.url + "/r", events=["model.created"])
    response = wclient.post(f"/api/webhooks/{hook['id']}/test")
    assert response.status_code == 202
    assert response.get_json()["delivery"]["event"] == "webhook.test"
    register(wclient, "m1")
    deliver_all(svc)
    first = [d for d in deliveries(wclient, hook["id"]) if d["event"] == "model.created"][0]
    again = wclient.post(f"/api/webhooks/{hook['id']}/deliveries/{first['id']}/redeliver")
    assert again.status_code == 202
    copy = again.get_json()["delivery"]
    assert copy["redelivery_of"] == first["id"] and copy["id"] != first["id"]
    deliver_all(svc)
    got = receiver.at("/r")
    assert [r.json()["event"] for r in got] == ["webhook.test", "model.created", "model.created"]
    assert got[1].body == got[2].body
    assert got[1].headers["X-MLflow-Delivery-Id"] == got[2].headers["X-MLflow-Delivery-Id"]
    assert verifier()(secret, got[2].body, got[2].headers)
    assert wclient.post(f"/api/webhooks/{hook['id']}/deliveries/whd_nope/redeliver"
                        ).status_code == 404
    assert wclient.post("/api/webhooks/wh_nope/test").status_code == 404


def test_delivery_log_is_paged_and_deleting_removes_it(wclient, svc, receiver):
    hook, _ = subscribe(wclient, receiver.url + "/p", events=["model.created"])
    for i in range(5):
        wclient.post("/api/models/register", json={"name": f"m{i}"})
    deliver_all(svc)
    page = wclient.get(f"/api/webhooks/{hook['id']}/deliveries?limit=2").get_json()
    seen = [d["id"] for d in page["deliveries"]]
    while page["next_page_token"]:
        page = wclient.get(f"/api/webhooks/{hook['id']}/deliveries?limit=2&page_token="
                           f"{page['next_page_token']}").get_json()
        seen += [d["id"] for d in page["deliveries"]]
    assert len(seen) == len(set(seen)) == 5
    assert wclient.get(f"/api/webhooks/{hook['id']}/deliveries?page_token=zz!"
                       ).status_code == 400
    assert wclient.delete(f"/api/webhooks/{hook['id']}").status_code == 204
    assert wclient.get(f"/api/webhooks/{hook['id']}/deliveries").status_code == 404


# -- Slack and PagerDuty --------------------------------------------------------------------------
def _same_shape(ours, documented, where="$"):
    """Every key of ours is one the documentation shows, with a value of the same JSON type."""
    if isinstance(documented, dict):
        assert isinstance(ours, dict), where
        extra = set(ours) - set(documented)
        assert not extra, f"{where}: keys the documentation does not have: {extra}"
        for key, value in ours.items():
            if documented[key] is not None and key != "custom_details":
                _same_shape(value, documented[key], f"{where}.{key}")
    elif isinstance(documented, list):
        assert isinstance(ours, list), where
        for item in ours:
            matches = [d for d in documented if isinstance(d, dict) and
                       d.get("type") == item.get("type") and set(item) <= set(d)
                       ] if isinstance(item, dict) else documented[:1]
            assert matches, f"{where}: no documented item like {item!r}"
            _same_shape(item, matches[0], f"{where}[]")
    else:
        assert type(ours) is type(documented), f"{where}: {ours!r} vs {documented!r}"


def test_slack_message_matches_the_documented_format(wclient, svc, receiver):
    documented = json.loads((FIXTURES / "slack_incoming_webhook.json").read_text())
    hook, _ = subscribe(wclient, receiver.url + "/services/T000/B000/XXXXXXXX", kind="slack",
                        events=["deployment.*", "model.created"])
    assert hook["url"].endswith("/…XXXX") and "T000" not in hook["url"]
    register(wclient, "m1")
    deliver_all(svc)
    [request] = receiver.at("/services/T000/B000/XXXXXXXX")
    message = request.json()
    _same_shape(message, documented)
    assert "X-MLflow-Signature" not in request.headers
    assert message["text"].startswith("[model.created]") and "m1" in message["text"]
    header = message["blocks"][0]
    assert header["type"] == "header" and len(header["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"] if "text" in b)


def test_slack_text_is_escaped():
    from webhooks.payloads import slack_message
    message = slack_message("alert.raised", utcnow(), {
        "model": "m", "detail": {"severity": "warning", "message": "<!channel> & co"}})
    assert "<!channel>" not in json.dumps(message["blocks"])
    assert "&lt;!channel&gt; &amp; co" in message["blocks"][1]["text"]["text"]


@pytest.mark.parametrize("wdb_url", BACKENDS, indirect=True)
def test_pagerduty_trigger_and_resolve_with_the_same_dedup_key(wclient, svc, receiver):
    trigger_doc = json.loads((FIXTURES / "pagerduty_trigger.json").read_text())
    resolve_doc = json.loads((FIXTURES / "pagerduty_resolve.json").read_text())
    routing_key = "R0123456789abcdef0123456789abcd"
    hook, secret = subscribe(wclient, receiver.url + "/v2/enqueue", kind="pagerduty",
                             secret=routing_key)
    assert secret == routing_key and hook["events"] == ["alert.*", "rollback.performed"]
    register(wclient, "m1")           # not for PagerDuty
    svc.alerts.raise_alert("m1", "1.0.0", "high_error_rate", 0.3, 0.05,
                           "m1 1.0.0: error rate 30.00% > 5.00%", "critical")
    svc.alerts.raise_alert("m1", "1.0.0", "high_error_rate", 0.4, 0.05, "refreshed",
                           "critical")                          # a refresh is no new event
    svc.alerts.resolve("m1", "1.0.0", "high_error_rate")
    deliver_all(svc)
    trigger, resolve = [r.json() for r in receiver.at("/v2/enqueue")]
    _same_shape(trigger, trigger_doc)
    _same_shape(resolve, resolve_doc)
    assert set(resolve) == set(resolve_doc)
    assert trigger["routing_key"] == resolve["routing_key"] == routing_key
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == dedup_key("m1", "1.0.0",
                                                                     "high_error_rate")
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == "[critical] m1 1.0.0: error rate 30.00% > 5.00%"
    logged = detail(wclient, hook["id"], deliveries(wclient, hook["id"])[0]["id"])
    assert routing_key not in json.dumps(logged)               # added at send time only


# -- the faulty canary ----------------------------------------------------------------------------
def test_faulty_canary_delivers_aborted_then_rollback_then_alert(data_dir, receiver):
    from models import onnx_examples
    from tests.test_deployment_manager import FAST as ANALYSIS, Clock
    app = make_app(data_dir)
    svc = app.extensions["model_registry"]
    client = app.test_client()
    try:
        clock = Clock()
        svc.deployments.clock = clock
        register(client, "m")
        for ref in ("1.0.0", "1.1.0"):
            version(client, "m", ref)
            digest, size = svc.artifacts.put_bytes(onnx_examples.linear_model())
            svc.registry.attach_artifact("m", ref, digest, size)
        svc.deployments.deploy("m", "1.0.0")
        svc.deployments.tick(clock.now)
        hooks = [subscribe(client, receiver.url + f"/s{i}",
                           events=["deployment.aborted", "rollback.*", "alert.*"])[0]
                 for i in range(2)]
        dep = svc.deployments.deploy("m", "1.1.0", "canary", analysis=ANALYSIS)
        svc.deployments.tick(clock.now)
        for _ in range(20):
            svc.tracker.track_prediction("m", "1.1.0", 0.002)
        for _ in range(10):
            svc.tracker.track_prediction("m", "1.1.0", 0.002, success=False, error="Boom")
        for _ in range(200):
            svc.tracker.track_prediction("m", "1.0.0", 0.002)
        [changed] = svc.deployments.tick(clock.advance(2))
        assert changed["state"] == "aborted"
        deliver_all(svc)
        for i, hook in enumerate(hooks):
            got = [r.json() for r in receiver.at(f"/s{i}")]
            assert [g["event"] for g in got] == ["deployment.aborted", "rollback.performed",
                                                 "alert.raised"]
            assert got[0]["data"]["deployment_id"] == dep
            assert got[1]["data"]["detail"]["trigger"] == "automatic"
            assert got[2]["data"]["detail"]["rule"] == "automatic_rollback"
    finally:
        svc.close()


def test_public_event_names_cover_the_issue():
    from webhooks.events import PUBLIC_EVENTS
    assert set(PUBLIC_EVENTS) == {
        "model.created", "model.updated", "model.deleted", "version.created",
        "version.updated", "alias.set", "alias.deleted", "deployment.started",
        "deployment.step", "deployment.succeeded", "deployment.aborted", "deployment.failed",
        "rollback.performed", "alert.raised", "alert.resolved", "deployment.superseded",
        "budget.soft_limit_reached", "budget.hard_limit_reached"}
    assert Counter(PUBLIC_EVENTS).most_common(1)[0][1] == 1


def test_retry_after_in_seconds_or_as_an_http_date():
    from email.utils import format_datetime
    from webhooks.sender import _retry_after
    now = utcnow()
    assert _retry_after("120", now) == 120.0
    assert _retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True),
                        now) == pytest.approx(30, abs=1)
    assert _retry_after("soon", now) is None and _retry_after(None, now) is None


def test_a_lease_left_by_a_dead_sender_is_taken_over_once_it_runs_out(wclient, svc, receiver):
    hook, _ = subscribe(wclient, receiver.url + "/lease", events=["model.created"])
    register(wclient, "m1")
    store, sender = svc.webhook_sender.store, svc.webhook_sender
    now = utcnow()
    [held] = store.claim(owner="dead-process", now=now, lease_s=sender.lease_s, limit=5,
                         busy=set())                           # then it "dies"
    sender.clock = lambda: now + timedelta(seconds=1)
    assert sender.run_due() == 0                               # the lease still holds
    sender.clock = lambda: now + timedelta(seconds=sender.lease_s + 1)
    assert sender.run_due() == 1
    [d] = deliveries(wclient, hook["id"])
    assert d["state"] == "succeeded" and d["message_id"] == held.message_id
    late = store.finish_attempt(held, now=utcnow(), outcome="succeeded", status_code=200,
                                latency_ms=1.0, error="", excerpt="", next_attempt_at=None,
                                disable_after=3)               # the dead one cannot undo it
    assert late is None and deliveries(wclient, hook["id"])[0]["attempts"] == 1
