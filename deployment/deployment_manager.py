"""The rollout controller: a persisted state machine per deployment.

``deploy()`` is done when it answers, as far as its strategy allows: it creates the deployment
already claiming its health check, probes inside the call (at most ``probes × timeout_s`` of
the health checker: 3 × ``PROVIDER_TIMEOUT_S`` by default), and applies the first step before
returning. ``tick()`` — the server's background ticker, or your own calls in a script — does
what needs time: judging a canary's steps and a blue-green post-switch window.

States and transitions (every transition is one transaction: the deployment row, the traffic
table it changes, its event rows and any rollback record commit together; traffic always moves
through :class:`deployment.traffic_switch.TrafficSwitch`)::

    deploy() ─▶ health_check ─probes fail─▶ failed   (traffic untouched, alert; deploy() raises
                    │                                 FailedPrecondition naming the deployment)
                    └─probes pass─▶ step 0: final? ─yes─▶ succeeded     (direct, first deploy)
                                                └─no──▶ progressing     (blue-green at 100%,
                                                                         canary at 10%)
    ── deploy() returns here; the rest is tick()'s ──
    progressing ─pass─▶ step i+1 (progressing; succeeded when it is the final step)
    progressing ─fail─▶ aborted    (100% back to stable at once, rollback record, alert)
    progressing ─not enough data by the deadline─▶ paused      (canary)
                                              └──▶ succeeded   (blue-green: no failure seen)
    progressing ─pause─▶ paused ─resume─▶ progressing  (the step's window starts again)
    progressing | paused ─promote─▶ next step    (``full``: straight to the end)
    any active state ─abort─▶ aborted             (traffic back to stable if it had moved)
    blue-green progressing ─a later deploy()─▶ succeeded (its window closed, version kept)
    any active state ─deploy(force=True)─▶ superseded   (traffic back to stable)
    health_check whose lease expired (its process died) ─tick─▶ probed again
    pending (left by an older release) ─tick─▶ health_check
    succeeded | active ─a later rollback (rollback manager)─▶ rolled_back

Active states are ``pending``, ``health_check``, ``progressing`` and ``paused``: a model has at
most one deployment in them. A second deploy answers FAILED_PRECONDITION / 409 unless it says
``force`` — except over a blue-green post-switch window, which it closes. The others are final.

Plans (see ``deployment_strategy``): direct ``[100]``; blue-green ``[100]`` whose post-switch
window is analysed while the old version stays the fallback (``stable_version`` of the traffic
table) and stays loaded — a failing window switches back; canary ``[10, 50, 100]`` (or
``steps``), every step but the last analysed. The first deployment of a model — nothing live,
neither a traffic table nor a stable version serving by default — switches to 100% right after
its health check, whatever its strategy.

Restart safety and concurrency: nothing lives only in memory. A step's start, the next check
and the deadline are stored times; a health check in progress holds a stored lease
(``deadline_at``) that another process takes over when it expires. ``tick()`` reads the active
deployments, decides, and applies each decision with
``UPDATE deployments ... WHERE id = :id AND revision = :seen`` (see ``deployment_store``):
when several processes tick at once, one applies a step and the others find the revision
moved and drop their copy. So ``tick()`` is idempotent and can run in every process.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection

from defaults import parts_for
from deployment.analysis import FAIL, PASS, Check, analyze
from deployment.deployment_store import DeploymentStore, Lost, new_id
from deployment.deployment_strategy import (BLUE_GREEN, AnalysisSettings, Plan,
                                            first_deployment_plan, make_plan)
from deployment.gateway import highest_stable
from deployment.health_checker import HealthChecker, HealthReport
from deployment.records import ACTIVE_STATES, STATES, Deployment, TrafficTable
from deployment.router import Router
from deployment.ticker import ErrorLog
from deployment.traffic_store import TrafficStore
from deployment.traffic_switch import SwitchTransaction, TrafficSwitch
from errors import FailedPrecondition
from models.model_loader import ModelLoader
from registry.model_registry import ModelRegistry
from shared.pagination import check_limit
from shared.text import check_text
from storage.database import Database
from storage.events import record_event
from storage.schema import as_utc, iso, utcnow
from tracking.alerting import ROLLBACK_RULE, AlertManager
from tracking.performance_tracker import PerformanceTracker

log = logging.getLogger(__name__)

SYSTEM = "system"
_HEALTH_LEASE_MARGIN_S = 30.0
_ACTION_RETRIES = 5
_DEPLOY_RETRIES = 3

Clock = Callable[[], datetime]
BeforeDeploy = Callable[[Connection, str, str], None]
Event = tuple[str, dict[str, Any]]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class DeploymentManager:
    """Deploys versions and drives their rollouts. ``DeploymentManager()`` works on the
    process's services; the collaborators it is not given come from the composition root
    (``defaults.parts_for``).

    ``router``: the process's router, told to drop its cached table after each traffic change
    made here (other processes revalidate within a second by themselves).
    ``switch``: the :class:`TrafficSwitch` every traffic change goes through (built on this
    database, ``router`` and ``loader`` when not given).
    ``before_deploy(conn, model, deployment_id)``: called inside the deploy's transaction once
    every refusal check passed, before anything changes (the snapshot manager records the
    serving state there, so a refused deploy leaves no snapshot); an exception refuses the
    deploy and rolls everything back.
    ``clock``: the time source of every stored time (tests inject one).
    """

    def __init__(self, database: Database | None = None, *,
                 registry: ModelRegistry | None = None, loader: ModelLoader | None = None,
                 tracker: PerformanceTracker | None = None, alerts: AlertManager | None = None,
                 traffic: TrafficStore | None = None, router: Router | None = None,
                 health_checker: HealthChecker | None = None, switch: TrafficSwitch | None = None,
                 before_deploy: BeforeDeploy | None = None, clock: Clock | None = None) -> None:
        if database is None:
            database = registry.db if registry is not None else (
                loader.registry.db if loader is not None else None)
        parts = parts_for(database)   # the composition root's, for what is not given
        self.db = database = parts.database
        self.store = DeploymentStore(database)
        self.traffic = traffic or TrafficStore(database)
        self.switch = switch or TrafficSwitch(database, traffic=self.traffic,
                                              deployments=self.store, router=router,
                                              loader=loader)
        self.before_deploy = before_deploy
        self.clock: Clock = clock or utcnow
        self.registry: ModelRegistry = registry or (loader.registry if loader else parts.registry)
        self.loader: ModelLoader = loader or parts.loader
        self.tracker: PerformanceTracker = tracker or parts.tracker
        self.alerts: AlertManager = alerts or parts.alerts
        self.health: HealthChecker = health_checker or parts.health
        self._errors = ErrorLog(log)

    @property
    def router(self) -> Router | None:
        return self.switch.router

    # -- deploying -----------------------------------------------------------------------------
    def deploy(self, name: str, version: str, strategy: str = "direct",
               steps: list[int] | None = None,
               analysis: AnalysisSettings | dict[str, Any] | None = None,
               force: bool = False, reason: str = "", actor: str = SYSTEM) -> str:
        """Roll ``version`` (exact, ``latest``, an alias or a range) of model ``name`` out and
        return the deployment id once the call has done what its strategy allows:

        - the health check runs inside the call (at most ``probes × timeout_s`` of the health
          checker: 3 × ``PROVIDER_TIMEOUT_S`` by default); a failing one records the
          deployment ``failed`` (traffic untouched) and raises FailedPrecondition naming the
          deployment and what failed;
        - ``direct`` (and the first deployment of a model, whatever its strategy): 100% on the
          new version, ``succeeded``;
        - ``blue-green``: switched to 100%; the post-switch window stays open (``progressing``)
          until ``tick()`` judges it or a later deploy closes it (it then ends ``succeeded``);
        - ``canary``: the first step (10%) is live; ``tick()`` — the server's background
          ticker, or your own calls in a script — judges each step and moves to the next.

        Raises NotFound (model, version), InvalidArgument (strategy, steps, analysis),
        FailedPrecondition (archived version, already serving, a canary between steps or a
        paused rollout without ``force``, a failing health check)."""
        plan = make_plan(strategy, steps, analysis)
        reason = check_text(reason, "reason")
        row = self.registry.get_version(name, version)
        exact = row["version"]
        if row["status"] == "archived":
            raise FailedPrecondition(f"version '{exact}' of model '{name}' is archived; "
                                     "change its status before deploying it")
        current = self.store.active_for_model(name)
        if current is not None and not force and not _window_open(current):
            raise _busy(current)
        default = None if self.traffic.get(name) else highest_stable(self.registry)(name)
        deployment_id = new_id("dep")
        for attempt in range(_DEPLOY_RETRIES):
            try:
                with self.switch.transaction() as tx:
                    dep = self._create(tx, deployment_id, name, exact, plan, default, force,
                                       reason, actor)
                break
            except Lost:  # a concurrent deploy or tick moved the rollout we close or supersede
                if attempt == _DEPLOY_RETRIES - 1:
                    raise FailedPrecondition(f"the rollout of model '{name}' kept changing "
                                             "while superseding it; retry") from None
        try:
            done = self._probe(dep)
        except Lost:   # someone acted on it meanwhile (abort, force deploy): theirs stands
            return deployment_id
        if done.state == "failed":
            health = done.verdicts[-1]
            raise FailedPrecondition(
                f"deployment {deployment_id} failed: {health['reason']}; traffic is "
                "unchanged", details={"deployment_id": deployment_id,
                                      "health_check": health.get("evidence")})
        return deployment_id

    def _create(self, tx: SwitchTransaction, deployment_id: str, name: str, version: str,
                plan: Plan, default: str | None, force: bool, reason: str,
                actor: str) -> Deployment:
        """Refuse, or record the serving state (``before_deploy``), end the deployment in the
        way (closing a blue-green window, superseding the rest when forced) and insert this
        one, its health check claimed by this call (a lease another process takes over only
        if this one dies)."""
        conn = tx.conn
        now = self.clock()
        active = self.store.active_for_model(name, conn)
        if active is not None and not force and not _window_open(active):
            raise _busy(active)
        table = self.traffic.get(name, conn)
        stable, live = _starting_point(active, table, default)
        if table is not None and live == {version: 100}:
            raise FailedPrecondition(f"version '{version}' of model '{name}' already serves "
                                     "100% of its traffic")
        if self.before_deploy is not None:
            self.before_deploy(conn, name, deployment_id)
        if active is not None:
            if _window_open(active):
                self._close_window(tx, active, deployment_id, actor, now)
            else:
                self._supersede(tx, active, deployment_id, actor, now)
        first = table is None and stable in (None, version)
        if first:
            plan = first_deployment_plan(plan.strategy)
            reason = reason or (f"first deployment of model '{name}': nothing is live yet, so "
                                "it switches to 100% right after its health check")
            stable = None
        lease = now + timedelta(seconds=self.health.budget_s + _HEALTH_LEASE_MARGIN_S)
        dep = Deployment(
            id=deployment_id, model=name, version=version, previous_version=stable,
            strategy=plan.strategy, state="health_check", step=None, steps=list(plan.steps),
            traffic=live, analysis=plan.stored()["analysis"], verdicts=[], reason=reason,
            actor=actor, revision=1, step_started_at=None, next_check_at=lease,
            deadline_at=lease, created_at=now, updated_at=now, finished_at=None)
        self.store.insert(conn, dep)
        record_event(conn, "deployment.created", actor=actor, model=name, version=version,
                     deployment_id=deployment_id, reason=reason,
                     detail={**plan.stored(), "previous_version": stable, "force": force,
                             "first": first})
        record_event(conn, "deployment.health_check", actor=actor, model=name, version=version,
                     deployment_id=deployment_id, reason=f"probing {name}@{version}",
                     detail={"retry": False})
        return dep

    def _supersede(self, tx: SwitchTransaction, old: Deployment, by: str, actor: str,
                   now: datetime) -> None:
        """End ``old`` as superseded; if it had moved traffic, put the stable version back at
        100% in the same transaction ("a forced deploy starts from the stable traffic")."""
        stable = old.previous_version
        table = self.traffic.get(old.model, tx.conn)
        moved = (stable is not None and table is not None and table.deployment_id == old.id
                 and (table.weights != {stable: 100} or table.stable_version != stable))
        reason = f"superseded by {by}"
        self.store.transition(tx.conn, old, state="superseded", finished_at=now, updated_at=now,
                              next_check_at=None, reason=reason,
                              **({"traffic": {stable: 100}} if moved else {}))
        if moved:
            tx.switch(old.model, {stable: 100}, stable, actor=actor, now=now,
                      reason=f"{old.id} {reason}: back to the stable traffic",
                      deployment_id=old.id)
        record_event(tx.conn, "deployment.superseded", actor=actor, model=old.model,
                     version=old.version, deployment_id=old.id, reason=reason,
                     detail={"from_state": old.state, "superseded_by": by})

    def _close_window(self, tx: SwitchTransaction, old: Deployment, by: str, actor: str,
                      now: datetime) -> None:
        """A later deploy ends a blue-green post-switch window: the switched version has
        served 100% without a failing verdict, so it is kept and becomes the stable one."""
        reason = f"post-switch window closed by {by}; keeping {old.version}"
        verdict = _verdict(old.step, "window", "closed", reason, now)
        self._transition(tx, old, now, [("deployment.succeeded", {"version": old.version})],
                         reason=reason, actor=actor,
                         set_traffic=({old.version: 100}, old.version), state="succeeded",
                         traffic={old.version: 100}, finished_at=now, next_check_at=None,
                         deadline_at=None, verdicts=old.verdicts + [verdict])

    # -- reading -------------------------------------------------------------------------------
    def get(self, deployment_id: str) -> dict[str, Any]:
        """One deployment with its event timeline (oldest first)."""
        return self.store.get(deployment_id, with_events=True).as_dict()

    def list(self, model: str | None = None, state: str | None = None, limit: int = 50,
             page_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Deployments newest first; returns (deployments, next_page_token or None)."""
        rows, token = self.store.list(model, state, check_limit(limit, 50), page_token)
        return [d.as_dict() for d in rows], token

    def traffic_table(self, model: str, at: datetime | None = None) -> dict[str, Any]:
        """The model's traffic table now, or what served at ``at``. Before any table exists
        the model is served by its highest stable version (revision 0); at a time before the
        first change nothing is known to have been routed (empty weights)."""
        self.registry.get_model(model)   # NotFound for an unknown model
        table = self.traffic.at(model, as_utc(at)) if at is not None \
            else self.traffic.get(model)
        if table is not None:
            return table.as_dict()
        default = None if at is not None else highest_stable(self.registry)(model)
        return {"model": model, "revision": 0, "weights": {default: 100} if default else {},
                "stable_version": default, "deployment_id": None, "updated_at": None}

    # -- actions -------------------------------------------------------------------------------
    def promote(self, deployment_id: str, reason: str = "", actor: str = SYSTEM,
                full: bool = False) -> dict[str, Any]:
        """Skip the current step's analysis: go to the next step (``full``: to the end)."""
        reason = check_text(reason, "reason")

        def act(dep: Deployment, now: datetime) -> Deployment:
            if dep.state not in ("progressing", "paused"):
                raise FailedPrecondition(f"deployment {dep.id} is {dep.state}; only a "
                                         "progressing or paused deployment can be promoted")
            plan = _plan(dep)
            why = reason or f"promoted by {actor}"
            verdict = _verdict(dep.step, "manual", "promoted", why, now)
            promoted: Event = ("deployment.promoted", {"from_step": dep.step, "full": full})
            if dep.step is None or dep.step >= plan.last:
                return self._succeed(dep, now, why, verdict, actor, first=promoted)
            target = plan.last if full else dep.step + 1
            return self._enter_step(dep, target, now, actor=actor, reason=why, verdict=verdict,
                                    first=promoted)
        return self._act(deployment_id, act)

    def pause(self, deployment_id: str, reason: str = "", actor: str = SYSTEM) -> dict[str, Any]:
        """Hold the current step: no analysis verdict moves it until resume/promote/abort."""
        reason = check_text(reason, "reason")

        def act(dep: Deployment, now: datetime) -> Deployment:
            if dep.state == "paused":
                return dep
            if dep.state != "progressing":
                raise FailedPrecondition(f"deployment {dep.id} is {dep.state}; only a "
                                         "progressing deployment can be paused")
            why = reason or f"paused by {actor}"
            return self._commit(dep, now, [("deployment.paused", {"step": dep.step})],
                                reason=why, actor=actor, state="paused", next_check_at=None)
        return self._act(deployment_id, act)

    def resume(self, deployment_id: str, reason: str = "",
               actor: str = SYSTEM) -> dict[str, Any]:
        """Continue a paused deployment; the current step's window and deadline start anew."""
        reason = check_text(reason, "reason")

        def act(dep: Deployment, now: datetime) -> Deployment:
            if dep.state == "progressing":
                return dep
            if dep.state != "paused":
                raise FailedPrecondition(f"deployment {dep.id} is {dep.state}; only a paused "
                                         "deployment can be resumed")
            settings = _plan(dep).analysis
            deadline = now + timedelta(seconds=settings.deadline_s) if settings else None
            why = reason or f"resumed by {actor}"
            return self._commit(dep, now, [("deployment.resumed", {"step": dep.step})],
                                reason=why, actor=actor, state="progressing",
                                step_started_at=now, next_check_at=now, deadline_at=deadline)
        return self._act(deployment_id, act)

    def abort(self, deployment_id: str, reason: str = "", actor: str = SYSTEM) -> dict[str, Any]:
        """Stop the rollout; if it had moved traffic, 100% goes back to the stable version at
        once and a (manual) rollback record says so."""
        reason = check_text(reason, "reason")

        def act(dep: Deployment, now: datetime) -> Deployment:
            if not dep.active:
                raise FailedPrecondition(f"deployment {dep.id} is already {dep.state}")
            return self._abort(dep, now, actor=actor, reason=reason or f"aborted by {actor}",
                               trigger="manual")
        return self._act(deployment_id, act)

    def _act(self, deployment_id: str,
             act: Callable[[Deployment, datetime], Deployment]) -> dict[str, Any]:
        """Apply a user's action to the latest state, re-reading when a tick got there first."""
        for _ in range(_ACTION_RETRIES):
            dep = self.store.get(deployment_id)
            try:
                return act(dep, self.clock()).as_dict()
            except Lost:
                continue
        raise FailedPrecondition(f"deployment {deployment_id} kept changing; retry")

    # -- the controller ------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Advance every active deployment that is due; returns those that changed.

        Safe to call from many threads and processes at once (each change is guarded by the
        deployment's revision). A deployment whose step cannot be judged yet costs one metrics
        query and no write."""
        now = _aware(now) if now is not None else self.clock()
        changed: list[dict[str, Any]] = []
        for dep in self.store.active():
            self._warm(dep)
            if dep.state == "paused" or (dep.next_check_at is not None
                                         and dep.next_check_at > now):
                continue
            try:
                result = self._advance(dep, now)
            except Lost:
                continue  # another process applied this state change first
            except Exception as exc:  # one broken deployment must not stall the others
                self._errors.exception(dep.id, exc, "advancing deployment %s failed", dep.id)
                continue
            if result is not None:
                changed.append(result.as_dict())
        return changed

    def _advance(self, dep: Deployment, now: datetime) -> Deployment | None:
        if dep.state in ("pending", "health_check"):   # health_check here: its lease expired
            return self._health_check(dep, now)
        if dep.state == "progressing":
            return self._judge(dep, now)
        return None

    def _warm(self, dep: Deployment) -> None:
        """Load the versions a rollout is about to route to, in this process too, so that
        no worker meets a first-request load when traffic moves (best effort)."""
        for version in (dep.version, dep.previous_version):
            if version is None:
                continue
            try:
                self.loader.get(dep.model, version)
            except Exception as exc:  # the health check reports it properly
                log.debug("warming %s@%s failed: %s", dep.model, version, exc)

    def _health_check(self, dep: Deployment, now: datetime) -> Deployment:
        """The ticker's path: a deployment left ``pending`` by an older release, or whose
        in-call health check lease expired (its process died): claim it and probe."""
        lease = timedelta(seconds=self.health.budget_s + _HEALTH_LEASE_MARGIN_S)
        retry = dep.state == "health_check"
        why = ("the previous health check did not finish in time; probing again" if retry
               else f"probing {dep.model}@{dep.version}")
        claimed = self._commit(dep, now, [("deployment.health_check", {"retry": retry})],
                               reason=why, state="health_check", next_check_at=now + lease,
                               deadline_at=now + lease)
        return self._probe(claimed, now)

    def _probe(self, dep: Deployment, now: datetime | None = None) -> Deployment:
        """Run the health check of a claimed deployment; on success its first step is live,
        otherwise it ends ``failed`` with the evidence (traffic untouched)."""
        now = now if now is not None else self.clock()
        started = time.monotonic()
        report = self.health.check(dep.model, dep.version)
        now = now + timedelta(seconds=time.monotonic() - started)
        verdict = _verdict(None, "health", PASS if report.ok else FAIL, report.message, now,
                           report.as_dict())
        if report.ok:
            self._best_effort(self.alerts.record_health_success, dep.model, dep.version)
            return self._enter_step(dep, 0, now, actor=SYSTEM, reason=report.message,
                                    verdict=verdict, health=report)
        failed = self._commit(dep, now, [("deployment.failed", report.as_dict())],
                              reason=f"health check failed: {report.message}", health=report,
                              state="failed", finished_at=now, next_check_at=None,
                              deadline_at=None, verdicts=dep.verdicts + [verdict])
        self._best_effort(self.alerts.record_health_failure, dep.model, dep.version,
                          report.message, {"deployment_id": dep.id, **report.as_dict()})
        return failed

    def _judge(self, dep: Deployment, now: datetime) -> Deployment | None:
        plan = _plan(dep)
        index = dep.step or 0
        if not plan.analyzed(index):  # nothing to wait for (defensive: never stored so)
            return self._succeed(dep, now, "nothing left to analyse", None, SYSTEM)
        assert plan.analysis is not None and dep.step_started_at is not None
        elapsed = (now - dep.step_started_at).total_seconds()
        result = analyze(self.tracker, dep.model, dep.version, dep.previous_version,
                         plan.analysis, elapsed)
        verdict = _verdict(index, "analysis", result.result, result.reason, now,
                           result.evidence, weight=plan.steps[index])
        if result.result == PASS:
            if index < plan.last:
                return self._enter_step(dep, index + 1, now, actor=SYSTEM, reason=result.reason,
                                        verdict=verdict)
            return self._succeed(dep, now, result.reason, verdict, SYSTEM)
        if result.result == FAIL:
            return self._abort(dep, now, actor=SYSTEM, reason=result.reason,
                               trigger="automatic", verdict=verdict, failed=result.failed)
        if dep.deadline_at is None or now < dep.deadline_at:
            return None   # inconclusive: look again at the next tick, nothing to write
        if plan.strategy == BLUE_GREEN:
            return self._succeed(dep, now, f"the post-switch window ended without enough data "
                                           f"to judge ({result.reason}); keeping {dep.version}",
                                 verdict, SYSTEM)
        return self._commit(dep, now, [("deployment.paused", {"step": index})],
                            reason=f"not enough data by the deadline ({result.reason}); "
                                   "waiting for promote or abort",
                            state="paused", next_check_at=None,
                            verdicts=dep.verdicts + [verdict])

    # -- transitions ---------------------------------------------------------------------------
    def _enter_step(self, dep: Deployment, index: int, now: datetime, *, actor: str,
                    reason: str, verdict: dict[str, Any] | None = None,
                    health: HealthReport | None = None,
                    first: Event | None = None) -> Deployment:
        """Move the traffic to step ``index``; the final step ends the rollout."""
        plan = _plan(dep)
        weights = plan.weights(index, dep.version, dep.previous_version)
        final = plan.is_final(index)
        events: list[Event] = [first] if first else []
        events.append(("deployment.step", {"step": index, "weight": plan.steps[index],
                                           "traffic": weights}))
        changes: dict[str, Any] = dict(step=index, traffic=weights, step_started_at=now,
                                       verdicts=dep.verdicts + ([verdict] if verdict else []))
        if final:
            events.append(("deployment.succeeded", {"version": dep.version}))
            changes.update(state="succeeded", finished_at=now, next_check_at=None,
                           deadline_at=None)
        else:
            assert plan.analysis is not None
            changes.update(state="progressing", next_check_at=now,
                           deadline_at=now + timedelta(seconds=plan.analysis.deadline_s))
        # While analysed, the old version stays the table's stable one: the fallback of failed
        # calls, and what an abort returns to.
        stable = dep.version if final else (dep.previous_version or dep.version)
        reason = (f"{reason}; step {index + 1}/{len(plan.steps)}: {plan.steps[index]}% to "
                  f"{dep.version}")
        return self._commit(dep, now, events, reason=reason, actor=actor, health=health,
                            set_traffic=(weights, stable), release=final, **changes)

    def _succeed(self, dep: Deployment, now: datetime, reason: str,
                 verdict: dict[str, Any] | None, actor: str,
                 first: Event | None = None) -> Deployment:
        """End at 100% on the new version, which becomes the stable one."""
        weights = {dep.version: 100}
        events: list[Event] = [first] if first else []
        events.append(("deployment.succeeded", {"version": dep.version}))
        return self._commit(dep, now, events, reason=reason, actor=actor,
                            set_traffic=(weights, dep.version), release=True,
                            state="succeeded", traffic=weights, finished_at=now,
                            next_check_at=None, deadline_at=None,
                            verdicts=dep.verdicts + ([verdict] if verdict else []))

    def _abort(self, dep: Deployment, now: datetime, *, actor: str, reason: str, trigger: str,
               verdict: dict[str, Any] | None = None, failed: Check | None = None) -> Deployment:
        """End as aborted. Traffic that had moved goes 100% back to stable in the same
        transaction, with a rollback record carrying the evidence."""
        stable = dep.previous_version
        moved = dep.state in ("progressing", "paused") and stable is not None
        changes: dict[str, Any] = dict(state="aborted", finished_at=now, next_check_at=None,
                                       deadline_at=None,
                                       verdicts=dep.verdicts + ([verdict] if verdict else []))
        rollback = None
        set_traffic = None
        if moved:
            changes["traffic"] = {stable: 100}
            set_traffic = ({stable: 100}, stable)
            rollback = dict(from_version=dep.version, to_version=stable, trigger=trigger,
                            evidence=(verdict or {}).get("evidence") or
                            {"state": dep.state, "step": dep.step, "traffic": dep.traffic})
        new = self._commit(dep, now, [("deployment.aborted", {"trigger": trigger,
                                                              "from_state": dep.state})],
                           reason=reason, actor=actor, set_traffic=set_traffic,
                           rollback=rollback, release=True, **changes)
        if trigger == "automatic":
            self._best_effort(
                self.alerts.raise_alert, dep.model, dep.version, ROLLBACK_RULE,
                failed.value if failed else None, failed.threshold if failed else None,
                f"{dep.strategy} deployment {dep.id} of {dep.model}@{dep.version} aborted "
                f"automatically, traffic back to {stable}: {reason}", "critical",
                {"deployment_id": dep.id, "evidence": (verdict or {}).get("evidence")})
        return new

    def _commit(self, dep: Deployment, now: datetime, events: list[Event], *, reason: str,
                **kw: Any) -> Deployment:
        """One guarded transition in a transaction of its own (see :meth:`_transition`)."""
        with self.switch.transaction() as tx:
            return self._transition(tx, dep, now, events, reason=reason, **kw)

    def _transition(self, tx: SwitchTransaction, dep: Deployment, now: datetime,
                    events: list[Event], *, reason: str, actor: str = SYSTEM,
                    set_traffic: tuple[dict[str, int], str] | None = None,
                    rollback: dict[str, Any] | None = None,
                    health: HealthReport | None = None, release: bool = False,
                    **changes: Any) -> Deployment:
        """One guarded transition: the row (if its revision is still ``dep``'s), the health
        result, the traffic switch, the events and the rollback record, all in ``tx``.
        ``release``: the rollout ends — after the commit, unload what neither the table nor
        the previous version needs (an instant switch back stays possible)."""
        conn = tx.conn
        new = self.store.transition(conn, dep, updated_at=now, reason=reason, **changes)
        if health is not None:
            self.store.record_health(conn, model=dep.model, version=dep.version,
                                     deployment_id=dep.id, ok=health.ok,
                                     message=health.message, probes=health.probes, now=now)
        keep = set(new.traffic) | ({dep.previous_version} if dep.previous_version else set())

        def write_events() -> None:
            for kind, detail in events:
                record_event(conn, kind, actor=actor, model=dep.model, version=dep.version,
                             deployment_id=dep.id, reason=reason, detail=detail)

        if set_traffic is not None:   # history reads: traffic changed, aborted, rolled back
            weights, stable = set_traffic
            tx.switch(dep.model, weights, stable, actor=actor, reason=reason, now=now,
                      deployment_id=dep.id, rollback=rollback, release=release, keep=keep,
                      events=write_events)
        else:
            write_events()
            if release:
                tx.release(dep.model, keep)
        return new

    # -- process-local effects -----------------------------------------------------------------
    @staticmethod
    def _best_effort(fn: Callable[..., Any], *args: Any) -> None:
        """Side effects after the commit (alerts, unloading) must not undo a transition."""
        try:
            fn(*args)
        except Exception:
            log.exception("%s after a deployment transition failed",
                          getattr(fn, "__name__", fn))


def _plan(dep: Deployment) -> Plan:
    return Plan.restore(dep.strategy, dep.steps, dep.analysis)


def _verdict(step: int | None, check: str, result: str, reason: str, now: datetime,
             evidence: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"step": step, "check": check, "result": result, "reason": reason,
                           "at": iso(now), **extra}
    if evidence is not None:
        out["evidence"] = evidence
    return out


def _window_open(dep: Deployment) -> bool:
    """A blue-green deployment in its post-switch window: already at 100%, only watched. It
    does not block a later deploy, which closes the window instead."""
    return dep.strategy == BLUE_GREEN and dep.state == "progressing"


def _starting_point(active: Deployment | None, table: TrafficTable | None,
                    default: str | None) -> tuple[str | None, dict[str, int]]:
    """(stable version, live weights) a new deployment starts from, once ``active`` (if any)
    is out of the way: a closed window keeps its version; a superseded rollout that had moved
    traffic puts its stable version back at 100%."""
    if table is None:
        return default, ({default: 100} if default else {})
    if active is not None and table.deployment_id == active.id:
        if _window_open(active):
            return active.version, {active.version: 100}
        if active.previous_version is not None:
            return active.previous_version, {active.previous_version: 100}
    return table.stable_version or max(table.weights, key=table.weights.get), dict(table.weights)


def _busy(active: Deployment) -> FailedPrecondition:
    return FailedPrecondition(
        f"a rollout of model '{active.model}' is already in progress ({active.id}, "
        f"{active.state}, {active.version}); wait for it, abort it, or deploy with "
        "\"force\": true to supersede it", details={"deployment_id": active.id})


__all__ = ["ACTIVE_STATES", "STATES", "DeploymentManager"]
