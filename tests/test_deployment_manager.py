"""The rollout controller's state machine on SQLite and PostgreSQL, with real ONNX versions,
a real gateway and tracker, and an injected clock (nothing sleeps for a step's interval)."""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deployment.deployment_manager import DeploymentManager
from deployment.gateway import Gateway, highest_stable
from deployment.health_checker import HealthChecker, HealthReport
from deployment.router import Router
from deployment.traffic_store import TrafficStore
from errors import FailedPrecondition, InvalidArgument, NotFound
from models.model_loader import ModelLoader, ProviderCatalog
from registry.model_registry import ModelRegistry
from rollback.snapshot_manager import SnapshotManager
from storage.database import Database
from storage.model_store import ArtifactStore
from storage.schema import utcnow
from models import onnx_examples
from tracking.alerting import AlertManager
from tracking.metrics_collector import MetricsCollector
from tracking.metrics_store import MetricsStore
from tracking.performance_tracker import PerformanceTracker

X = [[1.0, 2.0, 3.0, 4.0]]
FAST = {"min_requests": 20, "interval_s": 30, "deadline_s": 120}


class Clock:
    """The controller's time: moved by hand."""

    def __init__(self) -> None:
        self.now = utcnow()
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> datetime:
        with self.lock:
            self.now += timedelta(seconds=seconds)
            return self.now

    def catch_up(self) -> datetime:
        """Moved to the real time if behind it: the tracker records calls at the real time,
        and a window read from this clock must reach them."""
        with self.lock:
            self.now = max(self.now, utcnow())
            return self.now


class Env:
    """One process's worth of the stack, on the test's database."""

    def __init__(self, database: Database, tmp_path: Path) -> None:
        self.db = database
        catalog = ProviderCatalog()
        self.registry = ModelRegistry(database, validate_config=catalog.validate_config)
        self.artifacts = ArtifactStore(tmp_path / "artifacts")
        self.loader = ModelLoader(self.registry, self.artifacts, catalog)
        self.collector = MetricsCollector(MetricsStore(database), start_thread=False)
        self.tracker = PerformanceTracker(database, self.collector)
        self.alerts = AlertManager(database, tracker=self.tracker)
        self.traffic = TrafficStore(database)
        self.router = Router(self.traffic, highest_stable(self.registry))
        self.gateway = Gateway(self.registry, self.loader, self.router, self.collector)
        self.clock = Clock()
        self.at_close: list[Callable[[], None]] = []
        self.manager = self.new_manager()
        self.registry.register_model("m")

    def new_manager(self, database: Database | None = None, **kw) -> DeploymentManager:
        db = database or self.db
        return DeploymentManager(
            db, registry=self.registry, loader=self.loader, tracker=self.tracker,
            alerts=self.alerts, traffic=TrafficStore(db), router=self.router,
            health_checker=kw.pop("health_checker", HealthChecker(self.loader, probes=2)),
            clock=self.clock, **kw)

    def version(self, version: str, status: str = "experimental", failing: bool = False) -> None:
        self.registry.register_version("m", version, status=status, provider="onnx")
        data = onnx_examples.failing_model() if failing else onnx_examples.linear_model()
        digest, size = self.artifacts.put_bytes(data)
        self.registry.attach_artifact("m", version, digest, size)

    def live(self, version: str = "1.0.0") -> str:
        """``version`` (an ONNX one) registered, deployed and serving 100%."""
        self.version(version)
        return self.go_live(version)

    def go_live(self, version: str) -> str:
        """``version``, already registered, deployed and serving 100%."""
        dep = self.manager.deploy("m", version)
        self.manager.tick()
        assert self.manager.get(dep)["state"] == "succeeded"
        return dep

    def predict(self, n: int) -> Counter:
        return Counter(self.gateway.predict("m", X)["version"] for _ in range(n))

    def track(self, version: str, ok: int, failed: int = 0, latency: float = 0.002) -> None:
        for _ in range(ok):
            self.tracker.track_prediction("m", version, latency)
        for _ in range(failed):
            self.tracker.track_prediction("m", version, latency, success=False,
                                          error="ProviderError")

    def table(self) -> tuple[dict[str, int], str | None]:
        table = self.traffic.get("m")
        return dict(table.weights), table.stable_version

    def kinds(self, dep: str) -> list[str]:
        return [e["kind"] for e in self.manager.get(dep)["events"]]

    def tick(self, seconds: float = 0.0) -> list[dict]:
        return self.manager.tick(self.clock.advance(seconds))


@pytest.fixture
def env(database: Database, tmp_path: Path):
    env = Env(database, tmp_path)
    yield env
    while env.at_close:      # what a test started on top (e.g. a shadow mirror's threads) first
        env.at_close.pop()()
    env.collector.close()
    env.loader.close()


# -- first deployment, direct, blue-green ----------------------------------------------------------
def test_first_deployment_switches_directly_after_its_health_check(env: Env):
    env.version("1.0.0")
    dep = env.manager.deploy("m", "1.0.0", "canary", actor="alice")
    changed = env.manager.get(dep)                 # done when deploy() returns, no tick()
    assert changed["state"] == "succeeded" and changed["steps"] == [100]
    created = changed["events"][0]
    assert created["kind"] == "deployment.created" and "first deployment" in created["reason"]
    assert changed["previous_version"] is None
    assert env.table() == ({"1.0.0": 100}, "1.0.0")
    assert env.kinds(dep) == ["deployment.created", "deployment.health_check", "traffic.changed",
                              "deployment.step", "deployment.succeeded"]
    health = changed["verdicts"][0]
    assert health["check"] == "health" and health["result"] == "pass"
    [check] = env.manager.store.health_checks("m", "1.0.0")
    assert check.ok and check.deployment_id == dep and len(check.probes) == 2
    assert env.manager.get(dep)["events"][0]["actor"] == "alice"
    assert env.tick() == []                        # idempotent: nothing left to do


def test_a_stable_version_serving_by_default_counts_as_live(env: Env):
    env.version("1.0.0", status="stable")           # served without a traffic table
    env.version("1.1.0")
    dep = env.manager.deploy("m", "1.1.0", "canary", analysis=FAST)
    env.tick()
    got = env.manager.get(dep)
    assert got["previous_version"] == "1.0.0" and got["state"] == "progressing"
    assert env.table() == ({"1.1.0": 10, "1.0.0": 90}, "1.0.0")


def test_direct_deployment(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    dep = env.manager.deploy("m", "1.1.0")
    got = env.manager.get(dep)                     # switched inside the call
    assert got["state"] == "succeeded" and got["previous_version"] == "1.0.0"
    assert env.table() == ({"1.1.0": 100}, "1.1.0")
    assert env.predict(20) == Counter({"1.1.0": 20})
    loaded = {v["version"] for v in env.loader.loaded()}
    assert loaded == {"1.0.0", "1.1.0"}            # the previous version stays loaded


def test_blue_green_loads_and_checks_while_the_old_version_serves_then_switches_at_once(
        env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    seen: dict = {}

    class Watching(HealthChecker):
        def check(self, model: str, version: str) -> HealthReport:
            report = super().check(model, version)
            seen["traffic"] = env.table()
            seen["loaded"] = {v["version"] for v in env.loader.loaded()}
            seen["preview"] = env.gateway.predict("m", X, version="1.1.0")
            seen["routed"] = env.predict(20)
            return report

    env.manager = env.new_manager(health_checker=Watching(env.loader, probes=2))
    dep = env.manager.deploy("m", "1.1.0", "blue-green",
                             analysis={"min_requests": 10, "interval_s": 20})
    # During the health check (inside deploy()): candidate loaded and callable by pin, old version at 100%.
    assert seen["traffic"] == ({"1.0.0": 100}, "1.0.0")
    assert seen["loaded"] == {"1.0.0", "1.1.0"}
    assert seen["preview"]["version"] == "1.1.0" and seen["preview"]["routed_by"] == "pin"
    assert seen["routed"] == Counter({"1.0.0": 20})
    # One atomic switch: 100% new, the old version the fallback while the window runs.
    got = env.manager.get(dep)
    assert got["state"] == "progressing" and got["step"] == 0
    assert env.table() == ({"1.1.0": 100}, "1.0.0")
    history = env.traffic.history("m")
    assert [h.weights for h in history[:2]] == [{"1.1.0": 100}, {"1.0.0": 100}]
    assert env.predict(30) == Counter({"1.1.0": 30})
    env.tick(5)
    assert env.manager.get(dep)["state"] == "progressing"       # window not over
    env.tick(20)
    got = env.manager.get(dep)
    assert got["state"] == "succeeded" and got["verdicts"][-1]["result"] == "pass"
    assert env.table() == ({"1.1.0": 100}, "1.1.0")
    assert {v["version"] for v in env.loader.loaded()} == {"1.0.0", "1.1.0"}


def test_a_later_deploy_closes_a_blue_green_window_instead_of_answering_409(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    env.version("1.2.0")
    window = env.manager.deploy("m", "1.1.0", "blue-green", analysis=FAST)
    assert env.manager.get(window)["state"] == "progressing"    # watched, already at 100%
    direct = env.manager.deploy("m", "1.2.0")                    # no 409, no force
    closed = env.manager.get(window)
    assert closed["state"] == "succeeded" and direct in closed["reason"]
    assert closed["verdicts"][-1]["result"] == "closed"
    got = env.manager.get(direct)
    assert got["state"] == "succeeded" and got["previous_version"] == "1.1.0"
    history = [(h.weights, h.stable_version) for h in env.traffic.history("m")[:2]]
    assert history == [({"1.2.0": 100}, "1.2.0"), ({"1.1.0": 100}, "1.1.0")]


def test_a_canary_between_steps_or_paused_still_answers_409(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    env.version("1.2.0")
    canary = env.manager.deploy("m", "1.1.0", "canary", analysis=FAST)
    with pytest.raises(FailedPrecondition, match="already in progress"):
        env.manager.deploy("m", "1.2.0", "blue-green")
    env.manager.pause(canary)
    with pytest.raises(FailedPrecondition, match="paused"):
        env.manager.deploy("m", "1.2.0")
    assert env.table() == ({"1.1.0": 10, "1.0.0": 90}, "1.0.0")


def test_a_refused_deploy_leaves_no_snapshot(env: Env):
    snapshots = SnapshotManager(env.db)
    env.manager.before_deploy = snapshots.before_deploy
    env.live("1.0.0")
    env.version("1.1.0")
    env.version("1.2.0")
    env.manager.deploy("m", "1.1.0", "canary", analysis=FAST)
    taken = snapshots.list("m", automatic=True)[0]
    assert len(taken) == 2                           # one before each accepted deploy
    with pytest.raises(FailedPrecondition, match="already in progress"):
        env.manager.deploy("m", "1.2.0")
    with pytest.raises(FailedPrecondition, match="already serves"):
        env.manager.deploy("m", "1.0.0", force=True)  # superseding would leave 1.0.0 at 100%
    assert snapshots.list("m", automatic=True)[0] == taken
    assert env.manager.get(env.manager.store.active_for_model("m").id)["state"] == "progressing"


# -- canary -------------------------------------------------------------------------------------
def test_canary_walks_10_50_100_on_passing_analysis(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    dep = env.manager.deploy("m", "1.1.0", "canary", analysis=FAST)
    env.tick()
    assert env.table() == ({"1.1.0": 10, "1.0.0": 90}, "1.0.0")
    share = env.predict(1000)
    assert 60 <= share["1.1.0"] <= 140           # ~10% of real gateway calls
    assert env.tick(10) == []                       # enough requests, but the interval runs
    env.tick(25)
    got = env.manager.get(dep)
    assert got["step"] == 1 and env.table() == ({"1.1.0": 50, "1.0.0": 50}, "1.0.0")
    verdict = got["verdicts"][-1]
    assert verdict["result"] == "pass" and verdict["weight"] == 10
    assert verdict["evidence"]["candidate"]["requests"] >= 20
    assert verdict["evidence"]["stable"]["version"] == "1.0.0"
    share = env.predict(400)
    assert 150 <= share["1.1.0"] <= 250
    env.tick(31)
    got = env.manager.get(dep)
    assert got["state"] == "succeeded" and got["step"] == 2 and got["finished_at"]
    assert env.table() == ({"1.1.0": 100}, "1.1.0")
    assert env.kinds(dep).count("deployment.step") == 3
    assert [h.weights for h in reversed(env.traffic.history("m"))][1:] == [
        {"1.1.0": 10, "1.0.0": 90}, {"1.1.0": 50, "1.0.0": 50}, {"1.1.0": 100}]


@pytest.mark.parametrize("strategy", ["canary", "blue-green"])
def test_failing_analysis_aborts_back_to_stable_with_a_rollback_record_and_an_alert(
        env: Env, strategy: str):
    env.live("1.0.0")
    env.version("1.1.0")
    dep = env.manager.deploy("m", "1.1.0", strategy, analysis=FAST)
    env.tick()
    assert env.manager.get(dep)["state"] == "progressing"
    env.track("1.1.0", ok=20, failed=10)             # 33% errors
    env.track("1.0.0", ok=200)
    [changed] = env.tick(2)                          # fails before the interval is over
    assert changed["state"] == "aborted" and changed["traffic"] == {"1.0.0": 100}
    assert env.table() == ({"1.0.0": 100}, "1.0.0")
    assert env.predict(20) == Counter({"1.0.0": 20})
    [rollback] = env.manager.store.list_rollbacks("m")[0]
    assert rollback.trigger == "automatic" and rollback.deployment_id == dep
    assert (rollback.from_version, rollback.to_version) == ("1.1.0", "1.0.0")
    assert rollback.evidence["candidate"]["error_rate"] == pytest.approx(1 / 3)
    [alert] = env.alerts.list_alerts("m", active=True)[0]
    assert alert["rule"] == "automatic_rollback" and alert["version"] == "1.1.0"
    assert alert["severity"] == "critical" and dep in alert["message"]
    kinds = env.kinds(dep)
    # The traffic change, the state change and the rollback record: one transaction, in order.
    assert kinds[-3:] == ["traffic.changed", "deployment.aborted", "rollback.recorded"]
    last = env.traffic.history("m")[0]
    assert last.deployment_id == dep and "failed analysis" in last.reason


def test_too_little_data_by_the_deadline_pauses_then_promote_resume_pause_abort(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    dep = env.manager.deploy("m", "1.1.0", "canary", analysis=FAST)
    env.tick()
    env.track("1.1.0", ok=5)
    assert env.tick(60) == []                        # inconclusive, before the deadline
    [paused] = env.tick(61)
    assert paused["state"] == "paused" and "deadline" in paused["reason"]
    assert paused["verdicts"][-1]["result"] == "inconclusive"
    assert env.table() == ({"1.1.0": 10, "1.0.0": 90}, "1.0.0")   # held, not reverted
    assert env.tick(600) == []                       # paused waits for a human
    resumed = env.manager.resume(dep, "more traffic expected", actor="bob")
    assert resumed["state"] == "progressing" and resumed["step"] == 0
    assert env.manager.resume(dep)["state"] == "progressing"       # idempotent
    promoted = env.manager.promote(dep, actor="bob")
    assert promoted["step"] == 1 and env.table() == ({"1.1.0": 50, "1.0.0": 50}, "1.0.0")
    assert env.manager.pause(dep, "lunch")["state"] == "paused"
    assert env.manager.pause(dep)["state"] == "paused"            # idempotent
    aborted = env.manager.abort(dep, "changed my mind", actor="bob")
    assert aborted["state"] == "aborted" and env.table() == ({"1.0.0": 100}, "1.0.0")
    [rollback] = env.manager.store.list_rollbacks("m")[0]
    assert rollback.trigger == "manual" and rollback.reason == "changed my mind"
    for action in (env.manager.promote, env.manager.pause, env.manager.resume,
                   env.manager.abort):
        with pytest.raises(FailedPrecondition):
            action(dep)
    events = env.manager.get(dep)["events"]
    assert [e["kind"] for e in events if e["actor"] == "bob"] == [
        "deployment.resumed", "traffic.changed", "deployment.promoted", "deployment.step",
        "traffic.changed", "deployment.aborted", "rollback.recorded"]


def test_promote_full_goes_to_the_end(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    dep = env.manager.deploy("m", "1.1.0", "canary", steps=[5, 20, 60, 100], analysis=FAST)
    assert env.table() == ({"1.1.0": 5, "1.0.0": 95}, "1.0.0")   # first step live at once
    got = env.manager.promote(dep, full=True)
    assert got["state"] == "succeeded" and env.table() == ({"1.1.0": 100}, "1.1.0")


def test_one_rollout_per_model_and_force_supersedes_from_stable(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    env.version("1.2.0")
    first = env.manager.deploy("m", "1.1.0", "canary", analysis=FAST)
    assert env.table()[0] == {"1.1.0": 10, "1.0.0": 90}
    with pytest.raises(FailedPrecondition, match="already in progress") as err:
        env.manager.deploy("m", "1.2.0", "canary")
    assert err.value.details["deployment_id"] == first
    second = env.manager.deploy("m", "1.2.0", "canary", analysis=FAST, force=True)
    old = env.manager.get(first)
    assert old["state"] == "superseded" and second in old["reason"]
    history = [h.weights for h in env.traffic.history("m")[:2]]
    assert history == [{"1.2.0": 10, "1.0.0": 90}, {"1.0.0": 100}]   # back to stable first
    assert env.table() == ({"1.2.0": 10, "1.0.0": 90}, "1.0.0")
    assert env.manager.get(second)["previous_version"] == "1.0.0"


def test_deploy_refusals(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    with pytest.raises(NotFound):
        env.manager.deploy("m", "9.9.9")
    with pytest.raises(NotFound):
        env.manager.deploy("nope", "1.0.0")
    with pytest.raises(InvalidArgument):
        env.manager.deploy("m", "1.1.0", "rolling")
    with pytest.raises(FailedPrecondition, match="already serves"):
        env.manager.deploy("m", "1.0.0")
    env.registry.update_version("m", "1.1.0", status="archived")
    with pytest.raises(FailedPrecondition, match="archived"):
        env.manager.deploy("m", "1.1.0")
    assert env.manager.list(model="m", state="health_check")[0] == []
    assert env.manager.list(model="m", state="failed")[0] == []


def test_before_deploy_hook_runs_first_and_can_refuse(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    calls = []

    def hook(conn, model: str, deployment_id: str) -> None:
        assert env.manager.store.active_for_model(model, conn) is None   # not created yet
        table = env.traffic.get(model, conn)
        calls.append((model, deployment_id, (table.weights, table.stable_version)))

    env.manager.before_deploy = hook
    dep = env.manager.deploy("m", "1.1.0", "canary")
    assert calls == [("m", dep, ({"1.0.0": 100}, "1.0.0"))]
    with pytest.raises(FailedPrecondition, match="already in progress"):
        env.manager.deploy("m", "1.1.0", "canary")   # refused: the hook is not called
    assert len(calls) == 1
    env.manager.abort(dep)

    def refuse(conn, model: str, deployment_id: str) -> None:
        raise FailedPrecondition("snapshot store unavailable")

    env.manager.before_deploy = refuse
    with pytest.raises(FailedPrecondition, match="snapshot"):
        env.manager.deploy("m", "1.1.0", "canary")
    assert env.manager.store.active_for_model("m") is None


def test_failed_health_check_fails_and_leaves_the_traffic_alone(env: Env):
    env.live("1.0.0")
    env.version("1.1.0", failing=True)
    revision = env.traffic.get("m").revision
    with pytest.raises(FailedPrecondition, match="probes of m@1.1.0 failed") as err:
        env.manager.deploy("m", "1.1.0", "canary")
    dep = err.value.details["deployment_id"]
    assert dep in err.value.message and err.value.details["health_check"]["ok"] is False
    assert env.tick() == []
    changed = env.manager.get(dep)
    assert changed["state"] == "failed" and "health check failed" in changed["reason"]
    assert changed["verdicts"][-1]["check"] == "health"
    assert env.traffic.get("m").revision == revision
    assert env.table() == ({"1.0.0": 100}, "1.0.0")
    assert "traffic.changed" not in env.kinds(dep)
    [alert] = env.alerts.list_alerts("m", active=True)[0]
    assert alert["rule"] == "health_check" and alert["version"] == "1.1.0"
    assert not env.manager.store.health_checks("m", "1.1.0")[0].ok
    # The model can be deployed again at once.
    env.version("1.2.0")
    env.manager.deploy("m", "1.2.0")


def test_a_health_check_that_never_finished_is_taken_over_after_its_lease(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")

    class Dying(HealthChecker):
        def check(self, model: str, version: str) -> HealthReport:
            raise RuntimeError("the process died while probing")

    dying = env.new_manager(health_checker=Dying(env.loader, probes=2, timeout_s=1))
    with pytest.raises(RuntimeError):
        dying.deploy("m", "1.1.0")                   # the call dies while probing
    dep = env.manager.store.active_for_model("m").id
    assert dying.tick(env.clock()) == []             # the lease holds: nothing to do
    assert env.manager.get(dep)["state"] == "health_check"
    assert env.tick(5) == []                         # the lease (2 s + 30 s) still holds
    [changed] = env.tick(30)
    assert changed["state"] == "succeeded"
    assert env.kinds(dep).count("deployment.health_check") == 2


# -- restarts and concurrency ---------------------------------------------------------------------
def test_a_new_manager_continues_a_rollout_from_its_stored_state(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    dep = env.manager.deploy("m", "1.1.0", "canary", analysis=FAST)
    env.tick()
    env.predict(400)
    env.collector.flush()                            # what a dying process had flushed
    restarted_db = Database(env.db.url)
    try:
        restarted = env.new_manager(restarted_db)
        got = restarted.get(dep)
        assert got["state"] == "progressing" and got["step"] == 0
        assert got["traffic"] == {"1.1.0": 10, "1.0.0": 90}
        restarted.tick(env.clock.advance(31))
        assert restarted.get(dep)["step"] == 1
    finally:
        restarted_db.dispose()


@pytest.mark.storage
def test_two_processes_ticking_at_once_apply_each_step_once(env: Env):
    env.live("1.0.0")
    env.version("1.1.0")
    dep = env.manager.deploy("m", "1.1.0", "canary",
                             analysis={"min_requests": 5, "interval_s": 1})
    env.track("1.1.0", ok=50)
    env.track("1.0.0", ok=50)
    other_db = Database(env.db.url)                  # the other process: its own engine
    managers = [env.manager, env.new_manager(other_db)]
    rounds = 8
    barrier = threading.Barrier(len(managers), action=lambda: env.clock.advance(2))
    errors: list[BaseException] = []

    def run(manager: DeploymentManager) -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                manager.tick()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in managers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other_db.dispose()
    assert not errors
    got = env.manager.get(dep)
    assert got["state"] == "succeeded"
    kinds = Counter(e["kind"] for e in got["events"])
    assert kinds["deployment.step"] == 3 and kinds["deployment.health_check"] == 1
    assert kinds["traffic.changed"] == 3 and kinds["deployment.succeeded"] == 1
    revisions = [h.revision for h in env.traffic.history("m")]
    assert revisions == list(range(revisions[0], 0, -1))      # no gaps, no duplicates


# -- reading --------------------------------------------------------------------------------------
def test_list_newest_first_with_filters_and_pages(env: Env):
    env.live("1.0.0")
    ids = [env.live(v) for v in ("1.1.0", "1.2.0", "1.3.0")]
    env.version("2.0.0")
    pending = env.manager.deploy("m", "2.0.0", "canary", analysis=FAST)
    page, token = env.manager.list(model="m", limit=2)
    assert [d["id"] for d in page] == [pending, ids[-1]] and token
    page2, token2 = env.manager.list(model="m", limit=2, page_token=token)
    assert [d["id"] for d in page2] == [ids[1], ids[0]] and token2
    page3, token3 = env.manager.list(model="m", limit=2, page_token=token2)
    assert len(page3) == 1 and token3 is None
    assert [d["id"] for d in env.manager.list(state="progressing")[0]] == [pending]
    assert env.manager.list(model="other")[0] == []
    with pytest.raises(InvalidArgument):
        env.manager.list(state="sleeping")
    with pytest.raises(InvalidArgument):
        env.manager.list(page_token="garbage!")
    with pytest.raises(NotFound):
        env.manager.get("dep_missing")


def test_traffic_table_now_and_then(env: Env):
    env.version("1.0.0", status="stable")
    implicit = env.manager.traffic_table("m")
    assert implicit["revision"] == 0 and implicit["weights"] == {"1.0.0": 100}
    before = utcnow()
    env.live("1.1.0")
    assert env.manager.traffic_table("m")["weights"] == {"1.1.0": 100}
    assert env.manager.traffic_table("m", at=before)["weights"] == {}
    assert env.manager.traffic_table("m", at=utcnow())["revision"] == 1
    with pytest.raises(NotFound):
        env.manager.traffic_table("nope")


def test_default_construction_uses_the_default_database(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "default"))
    manager = DeploymentManager()
    registry = manager.registry
    registry.register_model("seed")
    registry.register_version("seed", "1.0.0", provider="onnx")
    digest, size = manager.loader.store.put_bytes(onnx_examples.linear_model())
    registry.attach_artifact("seed", "1.0.0", digest, size)
    dep = manager.deploy("seed", "1.0.0", "canary")
    assert dep.startswith("dep_")
    manager.tick()
    assert manager.get(dep)["state"] == "succeeded"
    manager.loader.close()
    manager.tracker.collector.close()
