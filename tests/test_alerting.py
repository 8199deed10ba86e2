"""AlertManager: rules on the aggregates, one active alert per key, resolution, event alerts."""
from __future__ import annotations

import threading
import uuid

import pytest

from errors import InvalidArgument, NotFound
from tracking.alerting import AlertManager, AlertRule


def _name() -> str:
    return f"al-{uuid.uuid4().hex[:12]}"


def _track(tracker, model, version, n, latency=0.1, error=None):  # type: ignore[no-untyped-def]
    for _ in range(n):
        tracker.track_prediction(model, version, latency=latency, error=error)


ERROR_RULE = AlertRule("errors", "error_rate", 0.1, window="5m", min_requests=20,
                       severity="critical")


def test_error_rate_alert_opens_once_and_resolves(tracker):
    model = _name()
    alerts = AlertManager(tracker.database, rules=[ERROR_RULE], tracker=tracker)
    _track(tracker, model, "1.0.0", 9, error="timeout")
    _track(tracker, model, "1.0.0", 9)
    assert alerts.evaluate(model) == []                       # 18 requests: too few to judge
    _track(tracker, model, "1.0.0", 2)
    opened = alerts.evaluate(model)
    assert [(a["rule"], a["active"], a["severity"]) for a in opened] == [
        ("errors", True, "critical")]
    assert opened[0]["value"] == pytest.approx(0.45) and opened[0]["threshold"] == 0.1
    tracker.flush()
    again = alerts.evaluate(model)                            # still failing: same alert
    assert again[0]["id"] == opened[0]["id"] and again[0]["created_at"] == opened[0]["created_at"]
    assert len(alerts.list_alerts(model, active=True)[0]) == 1
    _track(tracker, model, "1.0.0", 100)                      # 9 / 120 = 7.5% < 10%
    resolved = alerts.evaluate(model)
    assert resolved[0]["id"] == opened[0]["id"] and resolved[0]["active"] is False
    assert resolved[0]["resolved_at"] is not None and resolved[0]["resolved_at"].endswith("Z")
    assert alerts.evaluate(model) == []                       # nothing left to resolve
    _track(tracker, model, "1.0.0", 200, error="timeout")
    reopened = alerts.evaluate(model)
    assert reopened[0]["active"] and reopened[0]["id"] != opened[0]["id"]


def test_latency_and_success_rules_compare_with_the_busiest_version(tracker):
    model = _name()
    rules = [AlertRule("slow", "p95_latency_ratio", 1.5, min_requests=20),
             AlertRule("drop", "success_rate_drop", 5.0, min_requests=20),
             AlertRule("p95", "p95_latency", 1.0, min_requests=20)]
    alerts = AlertManager(tracker.database, rules=rules, tracker=tracker)
    _track(tracker, model, "1.0.0", 100, latency=0.2)         # the stable version
    _track(tracker, model, "1.1.0", 18, latency=0.5)
    _track(tracker, model, "1.1.0", 2, latency=0.5, error="provider_error")
    found = {(a["version"], a["rule"]): a for a in alerts.evaluate() if a["model"] == model}
    assert set(found) == {("1.1.0", "slow"), ("1.1.0", "drop")}
    assert found[("1.1.0", "slow")]["value"] == pytest.approx(2.5, rel=0.01)
    assert found[("1.1.0", "drop")]["value"] == pytest.approx(10.0)
    assert found[("1.1.0", "slow")]["details"]["reference_version"] == "1.0.0"


def test_a_latency_ratio_needs_a_real_difference_too(tracker):
    """2 ms against 0.5 ms is 4x but 1.5 ms of noise: no regression by default; a rule with
    no minimum difference raises it."""
    model = _name()
    default = AlertRule("slow", "p95_latency_ratio", 1.5, min_requests=10)
    strict = AlertRule("slow-strict", "p95_latency_ratio", 1.5, min_requests=10,
                       min_latency_delta_s=0.0)
    alerts = AlertManager(tracker.database, rules=[default, strict], tracker=tracker)
    _track(tracker, model, "1.0.0", 50, latency=0.0005)
    _track(tracker, model, "1.1.0", 20, latency=0.002)
    raised = [(a["version"], a["rule"]) for a in alerts.evaluate(model)]
    assert raised == [("1.1.0", "slow-strict")]
    with pytest.raises(InvalidArgument):
        AlertRule("bad", "p95_latency_ratio", 1.5, min_latency_delta_s=-1.0)


def test_an_explicit_reference_version_is_used(tracker):
    model = _name()
    rule = AlertRule("slow", "p95_latency_ratio", 1.5, min_requests=10)
    alerts = AlertManager(tracker.database, rules=[rule], tracker=tracker,
                          reference_resolver=lambda m: "1.1.0")
    _track(tracker, model, "1.0.0", 50, latency=0.5)
    _track(tracker, model, "1.1.0", 10, latency=0.1)
    assert [(a["version"], a["rule"]) for a in alerts.evaluate(model)] == [("1.0.0", "slow")]


@pytest.mark.storage
def test_event_alerts_one_active_per_key_even_when_raced(db):
    model = _name()
    alerts = AlertManager(db)
    errors: list[BaseException] = []

    def fail(i: int) -> None:
        try:
            alerts.record_health_failure(model, "1.0.0", f"probe {i} failed")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    active, _ = alerts.list_alerts(model, active=True)
    assert len(active) == 1 and active[0]["rule"] == "health_check"
    rollback = alerts.raise_alert(model, "1.1.0", "automatic_rollback", 0.3, 0.05,
                                  "rolled back 1.1.0: error rate 30%", "critical",
                                  {"to_version": "1.0.0"})
    assert rollback["details"] == {"to_version": "1.0.0"} and rollback["value"] == 0.3
    again = alerts.record_automatic_rollback(model, "1.1.0", "rolled back 1.1.0 again")
    assert again["id"] == rollback["id"] and again["severity"] == "critical"
    assert alerts.evaluate(model) == []                        # evaluation leaves events alone
    resolved = alerts.record_health_success(model, "1.0.0")
    assert resolved is not None and not resolved["active"]
    assert alerts.record_health_success(model, "1.0.0") is None
    assert alerts.get_alert(rollback["id"])["message"] == "rolled back 1.1.0 again"
    assert alerts.resolve_alert(str(rollback["id"]))["active"] is False


def test_list_alerts_newest_first_with_keyset_pages(db):
    model = _name()
    alerts = AlertManager(db)
    made = [alerts.record_event_alert(model, f"1.0.{i}", "deploy_failed", f"failed {i}")
            for i in range(5)]
    alerts.resolve(model, "1.0.1", "deploy_failed")
    first, token = alerts.list_alerts(model, limit=2)
    second, token2 = alerts.list_alerts(model, limit=2, page_token=token)
    third, token3 = alerts.list_alerts(model, limit=2, page_token=token2)
    ids = [a["id"] for a in first + second + third]
    assert ids == [a["id"] for a in reversed(made)] and token3 is None
    assert [a["version"] for a in alerts.list_alerts(model, active=False)[0]] == ["1.0.1"]
    assert len(alerts.list_alerts(model, active=True)[0]) == 4


def test_bad_requests_are_domain_errors(db):
    alerts = AlertManager(db)
    with pytest.raises(NotFound):
        alerts.get_alert(2**31 - 2)
    for bad in ("abc", "-1", "0"):
        with pytest.raises(InvalidArgument):
            alerts.list_alerts(page_token=bad)
    with pytest.raises(InvalidArgument):
        alerts.list_alerts(limit=0)
    with pytest.raises(InvalidArgument):
        alerts.raise_alert("m", "1.0.0", "r", 1, 1, "x", severity="fatal")
    with pytest.raises(InvalidArgument):
        AlertRule("x", "latency", 1.0)
    with pytest.raises(InvalidArgument):
        AlertRule("x", "error_rate", 0.1, window="soon")
