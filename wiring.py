"""The composition root: the one place that assembles the service's objects.

:class:`Services` knows how to build every part from :class:`config.Settings` (each part once,
on first use, then shared): the registry validates configs through the provider catalog, the
gateway routes through the traffic table, the tracker reads what the collector recorded, the
deployment manager snapshots through the snapshot manager. :func:`process_services` keeps one
set per process and settings; ``create_app``, ``main.py`` and the seed's no-argument
constructors (``ModelRegistry()``, ``DeploymentManager()``, …, through :mod:`defaults`) all take
their parts from it. Nothing here imports Flask: ``api/`` asks this module for services.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection

import observability
from config import Settings, get_settings
from deployment.deployment_manager import DeploymentManager
from deployment.experiment import ExperimentManager
from deployment.experiment_store import ExperimentStore
from deployment.gateway import Gateway, highest_stable
from deployment.health_checker import HealthChecker
from deployment.listing import DeploymentListing
from deployment.router import Router
from deployment.shadow import ShadowManager, ShadowMirror
from deployment.shadow_store import ShadowStore
from deployment.traffic_store import TrafficStore
from deployment.traffic_switch import TrafficSwitch
from models.base_model import ProviderLimits
from models.model_loader import ModelLoader, ProviderCatalog
from registry.model_registry import ModelRegistry
from rollback.rollback_manager import AutoRollbackPolicy, RollbackManager
from rollback.snapshot_manager import SnapshotManager
from storage.database import Database
from storage.key_store import KeyStore
from storage.artifacts import ArtifactStorage, open_artifact_store
from tracking import prometheus
from tracking.ops_metrics import OpsCollector
from tracking.ops_store import OpsStore
from tracking.alerting import AlertManager
from tracking.budgets import Budgets
from tracking.metrics_collector import MetricsCollector
from tracking.metrics_store import MetricsStore, Retention
from tracking.performance_tracker import PerformanceTracker
from tracking.pricing import PriceBook
from tracking.spend import SpendReports
from tracking.spend_store import SpendStore
from webhooks.sender import WebhookSender
from webhooks.url_safety import Destinations
from webhooks.webhook_manager import WebhookManager
from webhooks.webhook_store import WebhookStore

T = TypeVar("T")
PARTS = ("database", "catalog", "registry", "artifacts", "loader", "collector", "tracker",
         "alerts", "traffic", "router", "gateway", "health", "snapshots", "deployments",
         "rollbacks", "keys", "webhooks", "webhook_sender", "prices", "budgets", "spend",
         "shadows", "experiments", "listing", "ops_metrics")
# A webhook disabled after repeated failures raises this alert (model, rule; version = its id).
WEBHOOK_ALERT_MODEL = "webhooks"
WEBHOOK_DISABLED_RULE = "webhook_disabled"


class Services:
    """Every part of one process's service, built on first use from ``settings``.

    ``database`` wraps an existing :class:`Database` instead of opening one (a seed constructor
    given only a database builds its other parts around it).
    """

    def __init__(self, settings: Settings | None = None, *,
                 database: Database | None = None) -> None:
        self.settings = settings or get_settings()
        self._parts: dict[str, Any] = {} if database is None else {"database": database}
        self._lock = threading.RLock()   # a part's builder asks for the parts it needs
        self.closed = False

    def _part(self, name: str, build: Callable[[], T]) -> T:
        value = self._parts.get(name)
        if value is None:
            with self._lock:
                value = self._parts.get(name)
                if value is None:
                    value = self._parts[name] = build()
        return value

    def build_all(self) -> "Services":
        """Build every part now (a server migrates and cleans up at start, not on a request)."""
        for name in PARTS:
            getattr(self, name)
        return self

    @property
    def database(self) -> Database:
        def build() -> Database:
            database = Database(self.settings.database_url)
            observability.trace_engine(database.engine)   # a span per statement when tracing
            return database
        return self._part("database", build)

    @property
    def catalog(self) -> ProviderCatalog:
        return self._part("catalog", ProviderCatalog)

    @property
    def registry(self) -> ModelRegistry:
        return self._part("registry", lambda: ModelRegistry(
            self.database, validate_config=self.catalog.validate_config))

    @property
    def artifacts(self) -> ArtifactStorage:
        def build() -> ArtifactStorage:
            store = open_artifact_store(self.settings)   # a directory or s3:// (issue 20)
            store.cleanup_temp()
            return store
        return self._part("artifacts", build)

    @property
    def loader(self) -> ModelLoader:
        s = self.settings

        def serving(model: str) -> set[str]:
            """What the loader must keep loaded: routed, stable, and an active rollout's pair."""
            table = self.traffic.get(model)
            keep = set(table.weights) | {table.stable_version} if table else set()
            built = self._parts.get("deployments")
            active = built.store.active_for_model(model) if built else None
            if active is not None:
                keep |= {active.version, active.previous_version}
            return {v for v in keep if v}

        limits = ProviderLimits(timeout_s=s.onnx_timeout_s, max_output_bytes=s.max_output_bytes,
                                memory_bytes=s.onnx_memory_bytes)
        return self._part("loader", lambda: ModelLoader(
            self.registry, self.artifacts, self.catalog, limits=limits,
            max_loaded=s.max_loaded_versions, max_loaded_bytes=s.max_loaded_bytes,
            serving=serving, settings=s))

    @property
    def collector(self) -> MetricsCollector:
        def build() -> MetricsCollector:
            prometheus.limit_versions(self.settings.max_series_versions)
            return MetricsCollector(
                MetricsStore(self.database,
                             retention=Retention(self.settings.metrics_retention_days)),
                flush_interval=self.settings.metrics_flush_interval_s, exporter=prometheus.export)
        return self._part("collector", build)

    @property
    def tracker(self) -> PerformanceTracker:
        def build() -> PerformanceTracker:
            return PerformanceTracker(self.database, self.collector, self.prices,
                                      max_series_versions=self.settings.max_series_versions)
        return self._part("tracker", build)

    @property
    def ops_metrics(self) -> OpsCollector:
        """Deployments, rollbacks and webhooks on /metrics, read from the database (issue 20)."""
        return self._part("ops_metrics", lambda: OpsCollector(OpsStore(self.database),
                                                                SpendStore(self.database)))

    @property
    def alerts(self) -> AlertManager:
        return self._part("alerts", lambda: AlertManager(self.database, tracker=self.tracker))

    @property
    def traffic(self) -> TrafficStore:
        return self._part("traffic", lambda: TrafficStore(self.database))

    @property
    def router(self) -> Router:
        return self._part("router", lambda: Router(self.traffic, highest_stable(self.registry),
                                                   on_change=prometheus.set_traffic))

    @property
    def gateway(self) -> Gateway:
        def build() -> Gateway:
            gateway = Gateway(self.registry, self.loader, self.router, self.collector,
                              self.settings.inflight_limit, prices=self.prices,
                              budgets=self.budgets)
            gateway.mirror = self.shadow_mirror   # issue 19: shadows mirror through it
            return gateway
        return self._part("gateway", build)

    # -- issue 19: shadow deployments and A/B experiments ------------------------------------
    @property
    def shadow_store(self) -> ShadowStore:
        return self._part("shadow_store", lambda: ShadowStore(self.database))

    @property
    def shadow_mirror(self) -> ShadowMirror:
        s = self.settings
        # its threads start with the server (api/app.py) or with the first shadow
        return self._part("shadow_mirror", lambda: ShadowMirror(
            self.shadow_store, self.loader, queue_size=s.shadow_queue_size,
            concurrency=s.shadow_concurrency, store_inputs=s.shadow_store_inputs,
            start_threads=False, start_on_shadow=True, prices=self.prices))

    @property
    def shadows(self) -> ShadowManager:
        return self._part("shadows", lambda: ShadowManager(
            self.shadow_store, self.registry, self.shadow_mirror, self.traffic.get))

    @property
    def experiments(self) -> ExperimentManager:
        def rollout_active(model: str) -> bool:
            return self.deployments.store.active_for_model(model) is not None
        return self._part("experiments", lambda: ExperimentManager(
            ExperimentStore(self.database), self.registry, self.tracker, rollout_active,
            self.switch))

    @property
    def listing(self) -> DeploymentListing:
        """``GET /api/deployments``: rollouts, shadows and experiments in one paged list."""
        return self._part("listing", lambda: DeploymentListing(
            self.deployments.store, self.shadow_store, self.experiments.store))

    def _before_deploy(self, conn: Connection, model: str, deployment_id: str) -> None:
        """No rollout while an A/B experiment holds its split (issue 19); then the snapshot."""
        self.experiments.refuse_rollout(conn, model, deployment_id)
        self.snapshots.before_deploy(conn, model, deployment_id)

    @property
    def health(self) -> HealthChecker:
        # Each probe bounded by PROVIDER_TIMEOUT_S (a deploy waits at most 3 × that, issue 12)
        # and at least the ONNX deadline (issue 21): see HealthChecker.for_settings.
        return self._part("health", lambda: HealthChecker.for_settings(self.loader,
                                                                       self.settings))

    @property
    def switch(self) -> TrafficSwitch:
        """Every traffic change (rollout step, abort, rollback, restore) goes through it."""
        return self._part("switch", lambda: TrafficSwitch(
            self.database, traffic=self.traffic, router=self.router, loader=self.loader))

    @property
    def snapshots(self) -> SnapshotManager:
        return self._part("snapshots", lambda: SnapshotManager(
            self.database, health=self.health, switch=self.switch))

    @property
    def deployments(self) -> DeploymentManager:
        return self._part("deployments", lambda: DeploymentManager(
            self.database, registry=self.registry, loader=self.loader, tracker=self.tracker,
            alerts=self.alerts, traffic=self.traffic, switch=self.switch,
            health_checker=self.health, before_deploy=self._before_deploy))

    @property
    def rollbacks(self) -> RollbackManager:
        return self._part("rollbacks", lambda: RollbackManager(
            self.database, registry=self.registry, tracker=self.tracker, alerts=self.alerts,
            health=self.health, switch=self.switch,
            policy=AutoRollbackPolicy.from_settings(self.settings)))

    @property
    def keys(self) -> KeyStore:
        return self._part("keys", lambda: KeyStore(self.database))

    @property
    def webhook_store(self) -> WebhookStore:
        return self._part("webhook_store", lambda: WebhookStore(self.database))

    @property
    def webhooks(self) -> WebhookManager:
        s = self.settings
        return self._part("webhooks", lambda: WebhookManager(
            self.webhook_store, Destinations(s.webhook_allowed_http_hosts,
                                             s.webhook_allow_private),
            on_enabled=lambda sub: self.alerts.resolve(WEBHOOK_ALERT_MODEL, sub.id,
                                                       WEBHOOK_DISABLED_RULE)))

    @property
    def webhook_sender(self) -> WebhookSender:
        return self._part("webhook_sender", lambda: WebhookSender(
            self.webhook_store, self.settings,
            on_disabled=lambda sub: self.alerts.record_event_alert(
                WEBHOOK_ALERT_MODEL, sub.id, WEBHOOK_DISABLED_RULE,
                f"webhook {sub.id} ({sub.public_url}) {sub.disabled_reason}", "critical",
                {"webhook_id": sub.id})))

    # --- cost (issue 16) ------------------------------------------------------------------------

    @property
    def prices(self) -> PriceBook:
        return self._part("prices", lambda: PriceBook(
            self.database, self.registry, default_gemini_model=self.settings.gemini_model))

    @property
    def budgets(self) -> Budgets:
        return self._part("budgets", lambda: Budgets(self.database, self.collector,
                                                     alerts=self.alerts))

    @property
    def spend(self) -> SpendReports:
        return self._part("spend", lambda: SpendReports(self.database, self.collector))

    def detach(self) -> None:
        """No longer this process's set for its settings (``process_services`` builds a new
        one), nor closed by ``reset_process_services``: whoever detaches it closes it."""
        with _process_lock:
            if _process.get(self.settings) is self:
                del _process[self.settings]

    def close(self) -> None:
        """Stop the metrics flusher and flush, stop the providers, close the pool (only what
        was built)."""
        self.detach()
        self.closed = True
        parts = self._parts
        if "webhook_sender" in parts:
            parts["webhook_sender"].close()
        if "shadow_mirror" in parts:
            parts["shadow_mirror"].close()
        if "collector" in parts:   # its flusher thread ends too, then what is left is flushed
            parts["collector"].close()
        if "loader" in parts:
            parts["loader"].close()
        if "database" in parts:
            parts["database"].dispose()


_process: dict[Settings, Services] = {}
_process_lock = threading.Lock()


def process_services(settings: Settings | None = None) -> Services:
    """This process's services for ``settings`` (default: the configured ones), built once."""
    settings = settings or get_settings()
    with _process_lock:
        services = _process.get(settings)
        if services is None:
            services = _process[settings] = Services(settings)
        return services


def build_services(settings: Settings | None = None) -> Services:
    """The process's services for ``settings`` with every part built (what a server starts)."""
    return process_services(settings).build_all()


def reset_process_services() -> None:
    """Close and forget every process-wide set: tests start and end with none, and an app a
    test built and left open stops its threads here instead of running on to the session's end."""
    with _process_lock:
        left = list(_process.values())
        _process.clear()
    for services in left:
        services.close()
