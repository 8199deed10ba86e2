"""Rollback, automatic rollback and snapshots on SQLite and PostgreSQL, through the whole
stack (real ONNX versions, the real controller, tracker and alerting)."""
from __future__ import annotations

import pytest

from wiring import build_services
from config import Settings
from errors import FailedPrecondition, NotFound
from rollback.rollback_manager import AutoRollbackPolicy, RollbackManager
from models import onnx_examples

X = [[1.0, 2.0, 3.0, 4.0]]


@pytest.fixture
def svc(database_url, tmp_path):
    services = build_services(Settings.from_env({"database_url": database_url,
                                                 "data_dir": tmp_path / "d"}))
    services.registry.register_model("m")
    yield services
    services.close()


def add_version(svc, version, failing=False, status="experimental"):
    svc.registry.register_version("m", version, status=status, provider="onnx")
    data = onnx_examples.failing_model() if failing else onnx_examples.linear_model()
    digest, size = svc.artifacts.put_bytes(data)
    svc.registry.attach_artifact("m", version, digest, size)


def deploy(svc, version):
    dep = svc.deployments.deploy("m", version)      # direct: done when it returns
    assert svc.deployments.get(dep)["state"] == "succeeded", svc.deployments.get(dep)
    return dep


def test_seed_usage_runs_as_written(svc):
    for v in ("1.0.0", "1.1.0"):
        add_version(svc, v)
        deploy(svc, v)
    rollback = RollbackManager(svc.database, registry=svc.registry, tracker=svc.tracker,
                               alerts=svc.alerts, health=svc.deployments.health,
                               router=svc.router)
    assert rollback.rollback_to_previous("m") == "1.0.0"
    assert rollback.rollback_to_version("m", "1.1.0") is True
    assert svc.traffic.get("m").weights == {"1.1.0": 100}
    assert rollback.auto_rollback_on_error("m", error_threshold=0.1) is False  # no traffic yet


def test_rollback_twice_walks_back_then_says_nothing_before(svc):
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        add_version(svc, v)
        deploy(svc, v)
    first = svc.rollbacks.rollback("m", reason="1.2.0 is slow")
    assert (first["from_version"], first["to_version"], first["trigger"]) == (
        "1.2.0", "1.1.0", "manual")
    assert first["reason"] == "1.2.0 is slow"
    second = svc.rollbacks.rollback("m")
    assert (second["from_version"], second["to_version"]) == ("1.1.0", "1.0.0")
    with pytest.raises(FailedPrecondition, match="no version live before 1.0.0"):
        svc.rollbacks.rollback("m")
    assert svc.traffic.get("m").weights == {"1.0.0": 100}  # the refusal changed nothing
    states = {d["version"]: d["state"] for d in svc.deployments.list("m")[0]}
    assert states["1.2.0"] == "rolled_back" and states["1.1.0"] == "rolled_back"


def test_nothing_deployed_and_unknown_model(svc):
    with pytest.raises(FailedPrecondition, match="never been deployed"):
        svc.rollbacks.rollback("m")
    with pytest.raises(NotFound):
        svc.rollbacks.rollback("ghost")


def test_refuses_archived_and_unhealthy_targets(svc):
    add_version(svc, "1.0.0")
    deploy(svc, "1.0.0")
    add_version(svc, "1.1.0")
    deploy(svc, "1.1.0")
    add_version(svc, "0.9.0", failing=True)
    with pytest.raises(FailedPrecondition, match="health check failed"):
        svc.rollbacks.rollback("m", "0.9.0")
    svc.registry.update_version("m", "1.0.0", status="archived")
    with pytest.raises(FailedPrecondition, match="archived"):
        svc.rollbacks.rollback("m")
    assert svc.traffic.get("m").weights == {"1.1.0": 100}
    assert svc.rollbacks.list("m")[0] == []


def test_rollback_supersedes_a_rollout_in_progress(svc):
    add_version(svc, "1.0.0")
    deploy(svc, "1.0.0")
    add_version(svc, "1.1.0")
    dep = svc.deployments.deploy("m", "1.1.0", strategy="canary",
                                 analysis={"min_requests": 1000, "interval_s": 3600,
                                           "deadline_s": 7200})
    for _ in range(3):
        svc.deployments.tick()
    assert svc.traffic.get("m").weights == {"1.0.0": 90, "1.1.0": 10}
    record = svc.rollbacks.rollback("m", reason="stop the canary")
    assert (record["from_version"], record["to_version"]) == ("1.1.0", "1.0.0")
    assert record["deployment_id"] == dep
    assert svc.traffic.get("m").weights == {"1.0.0": 100}
    assert svc.deployments.get(dep)["state"] == "rolled_back"


def test_watcher_rolls_a_failing_live_version_back_with_evidence_and_alert(svc):
    add_version(svc, "1.0.0")
    deploy(svc, "1.0.0")
    add_version(svc, "1.1.0")
    deploy(svc, "1.1.0")
    svc.rollbacks.policy = AutoRollbackPolicy(max_error_rate=0.2, min_requests=20, window_s=60)
    for i in range(40):
        svc.tracker.track_prediction("m", "1.1.0", 0.01, success=i % 2 == 0,
                                     error=None if i % 2 == 0 else "PROVIDER_ERROR")
    done = svc.rollbacks.watch()
    assert [(r["from_version"], r["to_version"], r["trigger"]) for r in done] == [
        ("1.1.0", "1.0.0", "automatic")]
    evidence = done[0]["evidence"]
    assert evidence["metrics"]["requests"] == 40 and evidence["metrics"]["error_rate"] == 0.5
    assert "error rate 50.0%" in evidence["breaches"][0]
    alerts, _ = svc.alerts.list_alerts("m", active=True)
    assert any(a["rule"] == "automatic_rollback" and a["version"] == "1.1.0" for a in alerts)
    assert svc.traffic.get("m").weights == {"1.0.0": 100}
    assert svc.rollbacks.watch() == []  # 1.0.0 is healthy: nothing more to do


def test_auto_rolled_back_versions_are_not_automatic_targets(svc):
    for v in ("1.0.0", "1.1.0"):
        add_version(svc, v)
        deploy(svc, v)
    svc.rollbacks.rollback("m", trigger="automatic", reason="1.1.0 broke")  # 1.1.0 → 1.0.0
    svc.rollbacks.rollback_to_version("m", "1.1.0")                        # a person insists
    add_version(svc, "1.2.0")
    deploy(svc, "1.2.0")                                                    # 1.1.0 → 1.2.0
    assert svc.rollbacks.previous_version("m") == "1.1.0"
    assert svc.rollbacks.previous_version("m", automatic=True) == "1.0.0"


def test_auto_rollback_on_error_judges_recent_error_rate(svc):
    for v in ("1.0.0", "1.1.0"):
        add_version(svc, v)
        deploy(svc, v)
    for i in range(30):
        svc.tracker.track_prediction("m", "1.1.0", 0.01, success=i % 10 != 0)
    assert svc.rollbacks.auto_rollback_on_error("m", error_threshold=0.2) is False
    assert svc.rollbacks.auto_rollback_on_error("m", error_threshold=0.05) is True
    assert svc.traffic.get("m").weights == {"1.0.0": 100}


# -- snapshots ----------------------------------------------------------------------------------
def test_snapshot_restore_puts_traffic_aliases_and_statuses_back(svc):
    add_version(svc, "1.0.0", status="stable")
    deploy(svc, "1.0.0")
    svc.registry.set_alias("m", "production", "1.0.0")
    snap = svc.snapshots.create("m", reason="known good")
    add_version(svc, "1.1.0")
    deploy(svc, "1.1.0")
    svc.registry.set_alias("m", "production", "1.1.0")
    svc.registry.update_version("m", "1.0.0", status="deprecated")
    result = svc.snapshots.restore(snap["id"])
    assert result["restored"] == ["m"]
    assert [(r["trigger"], r["from_version"], r["to_version"]) for r in result["rollbacks"]] == [
        ("snapshot", "1.1.0", "1.0.0")]
    assert svc.traffic.get("m").weights == {"1.0.0": 100}
    assert svc.registry.get_version("m", "production")["version"] == "1.0.0"
    assert svc.registry.get_version("m", "1.0.0")["status"] == "stable"


def test_automatic_snapshot_before_every_deployment_with_retention(svc):
    svc.snapshots.retention = 2
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        add_version(svc, v)
        deploy(svc, v)
    autos, _ = svc.snapshots.list("m", automatic=True)
    assert len(autos) == 2 and all(s["reason"].startswith("before deployment") for s in autos)
    # the newest automatic snapshot is the state just before 1.2.0 was deployed
    assert autos[0]["summary"]["models"]["m"] == {"1.1.0": 100}


def test_restore_refused_when_a_model_is_gone_and_changes_nothing(svc):
    add_version(svc, "1.0.0")
    deploy(svc, "1.0.0")
    svc.registry.register_model("other")
    snap = svc.snapshots.create()
    svc.registry.delete_model("other")
    with pytest.raises(FailedPrecondition, match="no longer exist"):
        svc.snapshots.restore(snap["id"])


def test_snapshot_taken_before_a_model_existed(svc):
    snap = svc.snapshots.create(reason="empty-ish")
    svc.registry.register_model("newcomer")
    result = svc.snapshots.restore(snap["id"])
    assert result["untouched"] == ["newcomer"] and result["rollbacks"] == []


def test_restore_refuses_unhealthy_versions(svc):
    add_version(svc, "1.0.0")
    deploy(svc, "1.0.0")
    snap = svc.snapshots.create("m")
    # the artifact behind the snapshot's version is corrupted afterwards
    digest = svc.registry.get_version("m", "1.0.0")["artifact"]["digest"]
    add_version(svc, "1.1.0")
    deploy(svc, "1.1.0")
    svc.loader.unload("m", "1.0.0")
    path = svc.artifacts.path_for(digest, verify=False)
    path.chmod(0o644)
    path.write_bytes(b"corrupt")
    with pytest.raises(FailedPrecondition, match="health check"):
        svc.snapshots.restore(snap["id"])
    assert svc.traffic.get("m").weights == {"1.1.0": 100}


def test_snapshot_crud(svc):
    snap = svc.snapshots.create("m")
    assert svc.snapshots.get(snap["id"])["model"] == "m"
    svc.snapshots.delete(snap["id"])
    with pytest.raises(NotFound):
        svc.snapshots.get(snap["id"])
    with pytest.raises(NotFound):
        svc.snapshots.restore(snap["id"])


def loaded(svc) -> set[str]:
    return {v["version"] for v in svc.loader.loaded() if v["model"] == "m"}


def test_rollback_and_restore_switch_traffic_like_a_rollout_does(svc):
    """One switch for all: the router sees the change at once, and what nothing needs any
    more is unloaded (the rolled-back-from version stays, for an instant switch back)."""
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        add_version(svc, v)
        deploy(svc, v)
    snap = svc.snapshots.create("m")
    svc.loader.get("m", "1.0.0")
    assert loaded(svc) == {"1.0.0", "1.1.0", "1.2.0"}
    svc.rollbacks.rollback("m", "1.1.0")
    assert svc.gateway.predict("m", X)["version"] == "1.1.0"    # no stale router cache
    assert loaded(svc) == {"1.1.0", "1.2.0"}
    svc.loader.get("m", "1.0.0")
    svc.snapshots.restore(snap["id"])
    assert svc.gateway.predict("m", X)["version"] == "1.2.0"
    assert loaded(svc) == {"1.1.0", "1.2.0"}
